//! Rendering cost on a real loaded host: the report a Weave Scope probe published
//! under the probe benchmark's load (442 processes, 4,019 endpoints, 22 containers).
//! Each iteration renders from scratch, as the app does for the first request after a
//! report arrives (later requests hit its cache).

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{Criterion, criterion_group, criterion_main};
use rescope_render::{RenderContext, detail, list};
use rescope_report::{GoTime, codec};

fn report() -> rescope_report::Report {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/scope/published/load-full.msgpack.gz");
    let mut r = codec::decode(&std::fs::read(path).expect("fixture")).expect("decodes");
    r.upgrade();
    rescope_render::prepare(&r)
}

fn bench(c: &mut Criterion) {
    let report = report();
    let now = GoTime::now();
    let mut g = c.benchmark_group("render busy host");
    g.sample_size(20);
    for view in ["processes", "hosts", "containers"] {
        g.bench_function(format!("{view} + summaries"), |b| {
            b.iter(|| {
                let ctx = RenderContext::new(&report, now);
                let r = rescope_render::render_in(&ctx, view, &[]).expect("view");
                let s = rescope_render::summaries(&r, &report);
                black_box(serde_json::to_vec(&s).expect("json"))
            })
        });
    }
    g.bench_function("host details", |b| {
        b.iter(|| {
            let ctx = RenderContext::new(&report, now);
            let d = detail::details(&ctx, "hosts", "vm;<host>", &[]).expect("node");
            black_box(serde_json::to_vec(&d).expect("json"))
        })
    });
    g.bench_function("topology list", |b| {
        b.iter(|| {
            let ctx = RenderContext::new(&report, now);
            black_box(serde_json::to_vec(&list::topology_list(&ctx, &[])).expect("json"))
        })
    });
    g.bench_function("prepare (drop part-merged nodes)", |b| {
        b.iter(|| black_box(rescope_render::prepare(&report)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
