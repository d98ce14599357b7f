//! Property tests: the merge laws, and what a delta can and cannot carry.
//!
//! Strategies draw IDs, keys, values and timestamps from small pools so that generated
//! reports collide often: the same node in both reports, the same `latest` key with the
//! same timestamp and different values, the same metric sample date, conflicting
//! templates and plugin specs. That is where merge rules can go wrong.

use proptest::prelude::*;
use rescope_report::codec::{self, Encoding, Format};
use rescope_report::{
    Column, Control, DnsRecord, GoTime, LatestEntry, MetadataTemplate, Metric, MetricTemplate,
    Node, PluginSpec, Report, Sample, Str, StringSet, TableTemplate, Topology, TopologyKind,
};

const KINDS: [TopologyKind; 4] = [
    TopologyKind::Endpoint,
    TopologyKind::Process,
    TopologyKind::Host,
    TopologyKind::Container,
];

fn time() -> impl Strategy<Value = GoTime> {
    (0i64..4, prop_oneof![Just(0u32), Just(500_000_000u32)])
        .prop_map(|(s, n)| GoTime::from_unix(1_700_000_000 + s, n).expect("in range"))
}

fn pick(pool: &'static [&'static str]) -> impl Strategy<Value = Str> {
    prop::sample::select(pool).prop_map(Str::new)
}

fn string_set(pool: &'static [&'static str]) -> impl Strategy<Value = StringSet> {
    prop::collection::vec(prop::sample::select(pool), 0..3).prop_map(|v| v.into_iter().collect())
}

fn metric() -> impl Strategy<Value = Metric> {
    (
        prop::collection::vec((time(), prop::sample::select(&[0.0, 1.5, 3.0][..])), 0..3),
        prop::sample::select(&[0.0, 1.0][..]),
        prop::sample::select(&[100.0, 200.0][..]),
    )
        .prop_map(|(samples, min, max)| {
            let mut samples: Vec<Sample> = samples
                .into_iter()
                .map(|(date, value)| Sample { date, value })
                .collect();
            samples.sort_by_key(|s| s.date);
            samples.dedup_by_key(|s| s.date);
            Metric { samples, min, max }
        })
}

const NODE_IDS: &[&str] = &["n1", "n2", "h;<host>"];
const KEYS: &[&str] = &["a", "b", "pid", "active_controls"];
const VALUES: &[&str] = &["", "x", "y", "host_exec", "ctrl1;ctrl2"];

fn node(id: &'static str, kind: TopologyKind) -> impl Strategy<Value = Node> {
    (
        prop::sample::select(&[0u8, 1, 1, 1, 2][..]),
        prop::collection::vec((pick(KEYS), time(), pick(VALUES)), 0..4),
        prop::collection::vec(
            (
                pick(&["local_networks", "ips"]),
                string_set(&["p", "q", "r"]),
            ),
            0..2,
        ),
        prop::collection::vec(
            (
                pick(&["host", "container"]),
                string_set(&["h;<host>", "c;<container>"]),
            ),
            0..2,
        ),
        string_set(NODE_IDS),
        prop::collection::vec((pick(&["cpu", "mem"]), metric()), 0..2),
    )
        .prop_map(
            move |(id_mode, latest, sets, parents, adjacency, metrics)| {
                let mut n = Node::default();
                match id_mode {
                    0 => {} // a delta-style node: no id, no topology
                    1 => {
                        n.id = Str::new(id);
                        n.topology = Str::new(kind.name());
                    }
                    _ => {
                        n.id = Str::new(id);
                        n.topology = Str::new("pod"); // conflicting topology
                    }
                }
                for (k, timestamp, value) in latest {
                    n.latest.insert(k, LatestEntry { timestamp, value });
                }
                for (k, v) in sets {
                    n.sets.insert(k, v);
                }
                for (k, v) in parents {
                    n.parents.insert(k, v);
                }
                n.adjacency = adjacency;
                for (k, m) in metrics {
                    n.metrics.insert(k, m);
                }
                n
            },
        )
}

fn topology(kind: TopologyKind) -> impl Strategy<Value = Topology> {
    (
        pick(&["", "circle", "square"]),
        prop::sample::select(&[("", ""), ("host", "hosts"), ("box", "boxes")][..]),
        prop::collection::vec(prop::sample::select(NODE_IDS), 0..3),
        prop::collection::vec(
            prop::strategy::Union::new(NODE_IDS.iter().map(|id| node(id, kind))),
            3,
        ),
        prop::collection::vec(
            (pick(&["exec", "stop"]), pick(&["Exec", "Stop"]), 0i64..2),
            0..2,
        ),
        prop::collection::vec(
            (
                pick(&["cpu", "mem"]),
                pick(&["CPU", "Memory"]),
                prop::sample::select(&[0.0, 1.0, 2.0][..]),
            ),
            0..2,
        ),
        prop::collection::vec(
            (
                pick(&["pid", "cmd"]),
                pick(&["PID", "Command"]),
                prop::sample::select(&[0.0, 1.0][..]),
            ),
            0..2,
        ),
        prop::collection::vec(
            (pick(&["labels_", "env_"]), pick(&["A", "B"]), 0usize..3),
            0..2,
        ),
    )
        .prop_map(
            move |(shape, (label, plural), ids, nodes, controls, metric_t, meta_t, tables)| {
                let mut t = Topology {
                    shape,
                    label: Str::new(label),
                    label_plural: Str::new(plural),
                    ..Topology::default()
                };
                for (id, mut n) in ids.into_iter().zip(nodes) {
                    if !n.id.is_empty() {
                        n.id = Str::new(id);
                    }
                    t.nodes.insert(Str::new(id), n);
                }
                for (id, human, rank) in controls {
                    t.controls.insert(
                        id.clone(),
                        Control {
                            id,
                            human,
                            icon: Str::new("fa"),
                            rank,
                            ..Default::default()
                        },
                    );
                }
                for (id, label, priority) in metric_t {
                    t.metric_templates.insert(
                        id.clone(),
                        MetricTemplate {
                            id,
                            label,
                            priority,
                            ..Default::default()
                        },
                    );
                }
                for (id, label, priority) in meta_t {
                    t.metadata_templates.insert(
                        id.clone(),
                        MetadataTemplate {
                            id,
                            label,
                            priority,
                            ..Default::default()
                        },
                    );
                }
                for (id, label, ncols) in tables {
                    let columns = (0..ncols)
                        .map(|i| Column {
                            id: Str::from(format!("c{i}")),
                            ..Default::default()
                        })
                        .collect();
                    t.table_templates.insert(
                        id.clone(),
                        TableTemplate {
                            id: id.clone(),
                            label,
                            prefix: id,
                            columns,
                            ..Default::default()
                        },
                    );
                }
                t
            },
        )
}

fn report() -> impl Strategy<Value = Report> {
    (
        KINDS.map(topology),
        prop_oneof![Just(GoTime::ZERO), time()],
        prop::collection::vec(
            (
                pick(&["10.0.0.1", "10.0.0.2"]),
                string_set(&["a.example", "b.example"]),
            ),
            0..2,
        ),
        any::<bool>(),
        prop::collection::vec(
            (
                pick(&["iowait", "demo"]),
                pick(&["ok", "error: x"]),
                pick(&["IOWait", "Demo"]),
            ),
            0..2,
        ),
        pick(&["", "1", "2"]),
    )
        .prop_map(|(tops, ts, dns, shortcut, plugins, id)| {
            let mut r = Report::empty();
            for (kind, t) in KINDS.into_iter().zip(tops) {
                *r.topology_mut(kind) = t;
            }
            r.ts = ts;
            for (ip, names) in dns {
                r.dns.insert(
                    ip,
                    DnsRecord {
                        forward: names,
                        reverse: StringSet::new(),
                    },
                );
            }
            r.shortcut = shortcut;
            for (pid, status, label) in plugins {
                r.plugins.insert(
                    pid.clone(),
                    PluginSpec {
                        id: pid,
                        label,
                        status,
                        interfaces: vec![Str::new("reporter")],
                        ..Default::default()
                    },
                );
            }
            r.id = id;
            r
        })
}

/// Whether a delta can say what a section became: one that went from non-empty to
/// empty looks exactly like "unchanged" on the wire.
fn representable(now_empty: bool, before_empty: bool) -> bool {
    !now_empty || before_empty
}

/// Gives every node its key as ID and its topology's name, as a probe's full report has.
fn complete(mut r: Report) -> Report {
    for (kind, t) in r.topologies_mut() {
        for (id, n) in t.nodes.iter_mut() {
            n.id = id.clone();
            n.topology = Str::new(kind.name());
        }
    }
    r
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn merge_is_commutative(a in report(), b in report()) {
        prop_assert_eq!(a.merged(&b), b.merged(&a));
    }

    #[test]
    fn merge_is_associative(a in report(), b in report(), c in report()) {
        prop_assert_eq!(a.merged(&b).merged(&c), a.merged(&b.merged(&c)));
    }

    #[test]
    fn merge_is_idempotent(a in report()) {
        // Window and Sampling are sums by protocol; the strategy leaves them at zero.
        prop_assert_eq!(a.merged(&a), a.clone());
        let ab_b = a.merged(&a).merged(&a);
        prop_assert_eq!(ab_b, a);
    }

    #[test]
    fn owned_merge_equals_borrowed_merge(a in report(), b in report()) {
        let mut owned = a.clone();
        owned.merge_owned(b.clone());
        prop_assert_eq!(owned, a.merged(&b));
    }

    #[test]
    fn windows_and_sampling_add_up(a in report(), b in report(), wa in 0i64..1_000_000, wb in 0i64..1_000_000) {
        let (mut a, mut b) = (a, b);
        a.window = wa;
        b.window = wb;
        a.sampling.count = 2;
        b.sampling.count = 3;
        let m = a.merged(&b);
        prop_assert_eq!(m.window, wa + wb);
        prop_assert_eq!(m.sampling.count, 5);
    }

    #[test]
    fn merged_latest_holds_the_newest_entry_of_either_side(a in report(), b in report()) {
        let m = a.merged(&b);
        for kind in KINDS {
            for (id, node) in &m.topology(kind).nodes {
                for (key, entry) in node.latest.iter() {
                    let newest = [a.topology(kind).nodes.get(id), b.topology(kind).nodes.get(id)]
                        .into_iter()
                        .flatten()
                        .filter_map(|n| n.latest.get(key))
                        .map(|e| e.timestamp)
                        .max();
                    prop_assert_eq!(Some(entry.timestamp), newest, "{} {} {}", kind.name(), id, key);
                }
            }
        }
    }

    #[test]
    fn applying_a_delta_rebuilds_every_node_the_wire_can_describe(last in report(), current in report()) {
        // Deltas are computed between full reports, whose nodes are all complete.
        let (last, current) = (complete(last), complete(current));
        let delta = current.delta_from(&last);
        // The delta survives the wire unchanged.
        let wire = codec::decode(&codec::encode(&delta, Encoding { format: Format::Msgpack, gzip: true })).expect("decodes");
        let mut expected = delta.clone();
        expected.fill_default_presentation();
        prop_assert_eq!(&wire, &expected);
        let mut rebuilt = last.clone();
        rebuilt.apply_delta(&wire);
        for kind in KINDS {
            for (id, cur) in &current.topology(kind).nodes {
                let got = &rebuilt.topology(kind).nodes[id];
                let base = last.topology(kind).nodes.get(id).filter(|b| b.id == cur.id && b.topology == cur.topology);
                let Some(base) = base else {
                    prop_assert_eq!(got, cur, "new node {} {}", kind.name(), id);
                    continue;
                };
                let values = |n: &Node| n.latest.iter().map(|(k, e)| (k.clone(), e.value.clone())).collect::<Vec<_>>();
                // A section that became empty cannot be told apart from "unchanged".
                if representable(cur.latest.is_empty(), base.latest.is_empty()) {
                    prop_assert_eq!(values(got), values(cur), "latest values of {}", id);
                }
                if representable(cur.sets.is_empty(), base.sets.is_empty()) {
                    prop_assert_eq!(&got.sets, &cur.sets);
                }
                if representable(cur.parents.is_empty(), base.parents.is_empty()) {
                    prop_assert_eq!(&got.parents, &cur.parents);
                }
                if representable(cur.adjacency.is_empty(), base.adjacency.is_empty()) {
                    prop_assert_eq!(&got.adjacency, &cur.adjacency);
                }
                if !cur.metrics.is_empty() {
                    prop_assert_eq!(&got.metrics, &cur.metrics);
                }
            }
            // Templates are never lost to a delta.
            prop_assert_eq!(&rebuilt.topology(kind).metric_templates.keys().collect::<Vec<_>>(),
                &current.topology(kind).metric_templates.keys().chain(last.topology(kind).metric_templates.keys())
                    .collect::<std::collections::BTreeSet<_>>().into_iter().collect::<Vec<_>>());
        }
    }

    #[test]
    fn every_report_round_trips_through_both_formats(r in report()) {
        // An empty presentation field is "the default" on the wire.
        let mut expected = r.clone();
        expected.fill_default_presentation();
        for format in [Format::Json, Format::Msgpack] {
            let back = codec::decode(&codec::encode(&r, Encoding { format, gzip: false })).expect("decodes");
            prop_assert_eq!(&back, &expected);
        }
    }
}
