//! The templates and controls the probe declares must be exactly those a real Scope
//! 1.13 probe published (testdata/scope/published/load-full.msgpack.gz), so Scope's UI
//! and ours present Rescope's data the same way.

use std::path::PathBuf;

use rescope_report::{Report, TopologyKind, codec};

fn scope_report() -> Report {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/scope/published/load-full.msgpack.gz");
    codec::decode(&std::fs::read(path).expect("fixture")).expect("decodes")
}

#[test]
fn host_templates_and_controls_match_scope() {
    let scope = scope_report();
    let mut ours = Report::empty();
    rescope_probe::host::host_presentation(&mut ours, true);
    let (s, o) = (&scope[TopologyKind::Host], &ours[TopologyKind::Host]);
    assert_eq!(o.metadata_templates, s.metadata_templates);
    assert_eq!(o.metric_templates, s.metric_templates);
    assert_eq!(o.controls, s.controls);
}

#[test]
fn process_templates_match_scope() {
    let scope = scope_report();
    let mut ours = Report::empty();
    rescope_probe::process::process_presentation(&mut ours);
    let (s, o) = (&scope[TopologyKind::Process], &ours[TopologyKind::Process]);
    assert_eq!(o.metadata_templates, s.metadata_templates);
    assert_eq!(o.metric_templates, s.metric_templates);
}

#[test]
fn container_and_image_templates_and_controls_match_scope() {
    let scope = scope_report();
    let mut ours = Report::empty();
    rescope_probe::docker::container_presentation(&mut ours, true);
    for kind in [TopologyKind::Container, TopologyKind::ContainerImage] {
        let (s, o) = (&scope[kind], &ours[kind]);
        assert_eq!(o.metadata_templates, s.metadata_templates, "{kind:?}");
        assert_eq!(o.metric_templates, s.metric_templates, "{kind:?}");
        assert_eq!(o.table_templates, s.table_templates, "{kind:?}");
        // Every Scope control exactly as Scope defines it; Rescope adds only the
        // container log stream.
        let mut ours = o.controls.clone();
        if kind == TopologyKind::Container {
            let logs = ours.remove("docker_get_logs").expect("the logs control");
            assert_eq!(logs.human.as_str(), "Get logs");
        }
        assert_eq!(ours, s.controls, "{kind:?}");
    }
}
