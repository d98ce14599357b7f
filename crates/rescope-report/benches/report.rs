//! Benchmarks of the report model's hot paths on synthetic reports (see
//! `rescope_report::synthetic`): decoding and encoding a busy host's report, merging a
//! 100-host fleet, computing and applying a delta. The budgets they are held to, and
//! the latest figures, are in `docs/performance.md`.
//!
//! Run with `cargo bench -p rescope-report --bench report`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, SamplingMode, criterion_group, criterion_main};
use rescope_report::codec::{self, Encoding, Format};
use rescope_report::synthetic::{self, HostShape, HostSimulator};
use rescope_report::{GoTime, Report};

/// Scope's probe under load, as published (a real report, for comparison).
const SCOPE_LOAD_FULL: &[u8] =
    include_bytes!("../../../testdata/scope/published/load-full.msgpack.gz");

const FLEET_HOSTS: usize = 100;
const SEED: u64 = 0x5C0BE;

fn start() -> GoTime {
    GoTime::from_unix(1_790_000_000, 123_456_789).expect("a fixed time in range")
}

const MSGPACK_GZ: Encoding = Encoding {
    format: Format::Msgpack,
    gzip: true,
};
const MSGPACK: Encoding = Encoding {
    format: Format::Msgpack,
    gzip: false,
};
const JSON: Encoding = Encoding {
    format: Format::Json,
    gzip: false,
};
const JSON_GZ: Encoding = Encoding {
    format: Format::Json,
    gzip: true,
};

/// Two consecutive full reports of the busy host.
fn busy_reports() -> (Report, Report) {
    let mut sim = HostSimulator::new(HostShape::busy_host(), SEED, start());
    let first = sim.report();
    let second = sim.next_report();
    (first, second)
}

fn kib(n: usize) -> String {
    format!("{:.1} KiB", n as f64 / 1024.0)
}

fn print_sizes(busy: &Report, next: &Report) {
    let delta = next.delta_from(busy);
    let rows = [
        ("busy host, msgpack", codec::encode(busy, MSGPACK).len()),
        (
            "busy host, gzip msgpack",
            codec::encode(busy, MSGPACK_GZ).len(),
        ),
        ("busy host, JSON", codec::encode(busy, JSON).len()),
        ("busy host, gzip JSON", codec::encode(busy, JSON_GZ).len()),
        (
            "busy host delta, gzip msgpack",
            codec::encode(&delta, MSGPACK_GZ).len(),
        ),
    ];
    eprintln!(
        "busy host: {} nodes ({} in the delta)",
        busy.node_count(),
        delta.node_count()
    );
    for (what, bytes) in rows {
        eprintln!("{what:>32}: {bytes:>10} bytes ({})", kib(bytes));
    }
}

fn codec_benches(c: &mut Criterion) {
    let (busy, next) = busy_reports();
    print_sizes(&busy, &next);
    let msgpack = codec::encode(&busy, MSGPACK);
    let msgpack_gz = codec::encode(&busy, MSGPACK_GZ);
    let json = codec::encode(&busy, JSON);
    let json_gz = codec::encode(&busy, JSON_GZ);

    let mut g = c.benchmark_group("decode");
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(6));
    let inputs = [
        ("busy_host_msgpack_gz", &msgpack_gz[..]),
        ("busy_host_msgpack", &msgpack[..]),
        ("busy_host_json", &json[..]),
        ("busy_host_json_gz", &json_gz[..]),
        ("scope_load_full_msgpack_gz", SCOPE_LOAD_FULL),
    ];
    for (name, bytes) in inputs {
        // Dropping the decoded report is left out of the timing.
        g.bench_function(name, |b| {
            b.iter_batched(
                || (),
                |()| codec::decode(black_box(bytes)).expect("decodes"),
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();

    let mut g = c.benchmark_group("encode");
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    for (name, encoding) in [
        ("busy_host_msgpack_gz", MSGPACK_GZ),
        ("busy_host_msgpack", MSGPACK),
        ("busy_host_json", JSON),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| codec::encode(black_box(&busy), encoding))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("delta");
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    g.bench_function("busy_host_delta_from", |b| {
        b.iter_batched(
            || (),
            |()| black_box(&next).delta_from(black_box(&busy)),
            BatchSize::PerIteration,
        )
    });
    let delta = next.delta_from(&busy);
    g.bench_function("busy_host_apply_delta", |b| {
        b.iter_batched(
            || busy.clone(),
            |mut base| {
                base.apply_delta(black_box(&delta));
                base
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

fn merge_benches(c: &mut Criterion) {
    let fleet = synthetic::fleet_reports(FLEET_HOSTS, SEED, start());
    let merged = fleet.iter().fold(Report::empty(), |mut acc, r| {
        acc.merge_from(r);
        acc
    });
    eprintln!(
        "fleet: {FLEET_HOSTS} hosts, {} nodes in, {} nodes merged",
        fleet.iter().map(Report::node_count).sum::<usize>(),
        merged.node_count()
    );
    drop(merged);

    let mut g = c.benchmark_group("merge");
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(8));
    // The reports are cloned outside the timing; the merged result is dropped outside it.
    g.bench_function("fleet_100_merge_owned", |b| {
        b.iter_batched(
            || fleet.clone(),
            |reports| {
                let mut acc = Report::empty();
                for r in reports {
                    acc.merge_owned(r);
                }
                acc
            },
            BatchSize::PerIteration,
        )
    });
    g.bench_function("fleet_100_merge_from", |b| {
        b.iter_batched(
            || (),
            |()| {
                let mut acc = Report::empty();
                for r in black_box(&fleet) {
                    acc.merge_from(r);
                }
                acc
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, codec_benches, merge_benches);
criterion_main!(benches);
