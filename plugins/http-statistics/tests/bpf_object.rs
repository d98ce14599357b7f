//! The committed BPF object matches its C source: when clang is installed, the
//! object is rebuilt with bpf/build.sh, loaded and attached, and (when llvm-strip
//! is there too, as build.sh needs to strip it) compared byte for byte with the
//! committed one.

mod support;

use std::path::Path;
use std::process::Command;

use rescope_http_statistics::probe::{BPF_OBJECT, HttpProbe, Limits};

const BPF_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/bpf");

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn the_c_source_still_compiles_loads_and_matches_the_committed_object() {
    if !have("clang") {
        eprintln!("SKIPPED: clang is not installed, so the object cannot be rebuilt");
        return;
    }
    let out = tempfile::tempdir().expect("tempdir");
    let rebuilt = out.path().join("http_stats.bpf.o");
    let build = Command::new(Path::new(BPF_DIR).join("build.sh"))
        .arg(&rebuilt)
        .output()
        .expect("build.sh runs");
    assert!(
        build.status.success(),
        "bpf/build.sh failed:\n{}",
        String::from_utf8_lossy(&build.stderr)
    );
    let bytes = std::fs::read(&rebuilt).expect("rebuilt object");

    match support::bpf_unavailable() {
        Some(why) => eprintln!("SKIPPED loading the rebuilt object: {why}"),
        None => {
            let probe = HttpProbe::load(&bytes, std::process::id())
                .expect("the rebuilt object loads and attaches");
            probe.snapshot().expect("its maps read");
        }
    }

    if have("llvm-strip") {
        assert!(
            bytes == BPF_OBJECT,
            "bpf/http_stats.bpf.o differs from what its source compiles to: run \
             plugins/http-statistics/bpf/build.sh and commit the object ({} bytes \
             rebuilt, {} committed). The committed one was built by Debian's clang \
             14.0.6; another clang version also gives different bytes.",
            bytes.len(),
            BPF_OBJECT.len()
        );
    } else {
        eprintln!("SKIPPED the byte comparison: llvm-strip is not installed (Debian: llvm)");
    }
}

#[test]
fn the_committed_object_loads_with_smaller_maps() {
    require_bpf!();
    let limits = Limits {
        max_processes: Some(16),
    };
    let probe = HttpProbe::load_with(BPF_OBJECT, std::process::id(), &limits).expect("loads");
    let snapshot = probe.snapshot().expect("maps read");
    assert!(
        snapshot.processes.len() <= 16,
        "{}",
        snapshot.processes.len()
    );
}
