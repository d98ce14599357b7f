//! Times each step of serving a fleet: merging every host's report, preparing it, and
//! rendering each view the fleet benchmark asks for (with summaries and JSON), in one
//! render context as the app's background renderer does.
//!
//! `cargo run --release -p rescope-render --example fleet_render -- 20 50 100`

use std::time::Instant;

use rescope_render::{RenderContext, detail, list};
use rescope_report::{GoTime, Report, synthetic};

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() { vec![20] } else { sizes };
    for hosts in sizes {
        let now = GoTime::now();
        let fleet = synthetic::fleet_reports(hosts, 7, now);
        let t = Instant::now();
        let mut merged = fleet.iter().fold(Report::empty(), |mut acc, r| {
            acc.merge_from(r);
            acc
        });
        merged.upgrade();
        let merge_ms = ms(t);
        let t = Instant::now();
        let report = rescope_render::prepare(&merged);
        let prepare_ms = ms(t);
        println!(
            "{hosts} hosts: {} nodes; merge {merge_ms:.0} ms, prepare {prepare_ms:.0} ms",
            report.node_count()
        );
        for round in 0..2 {
            let ctx = RenderContext::new(&report, now);
            let all = Instant::now();
            for view in ["processes", "hosts", "containers"] {
                let t = Instant::now();
                let r = rescope_render::render_in(&ctx, view, &[]).expect("view");
                let render_ms = ms(t);
                let t = Instant::now();
                let s = rescope_render::summaries(&r, &report);
                let summary_ms = ms(t);
                let t = Instant::now();
                let body = serde_json::to_vec(&s).expect("json");
                println!(
                    "  [{round}] {view:<12} render {render_ms:>7.1} ms  summaries {summary_ms:>7.1} ms  json {:>7.1} ms  ({} nodes, {} kB)",
                    ms(t),
                    r.nodes.len(),
                    body.len() / 1024
                );
            }
            let t = Instant::now();
            let body = serde_json::to_vec(&list::topology_list(&ctx, &[])).expect("json");
            println!(
                "  [{round}] topology list {:>7.1} ms ({} B)",
                ms(t),
                body.len()
            );
            let host = synthetic::HostShape::fleet_member(0).hostname;
            let t = Instant::now();
            let d = detail::details(&ctx, "hosts", &format!("{host};<host>"), &[]);
            println!(
                "  [{round}] host details {:>7.1} ms (found: {})",
                ms(t),
                d.is_some()
            );
            println!("  [{round}] all in one context {:>7.1} ms", ms(all));
        }
    }
}
