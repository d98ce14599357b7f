//! Incremental views equal full renders: after every step of random fleet histories
//! (hosts publishing, leaving and coming back, containers stopping, processes going
//! part-merged, DNS names and local networks changing, real Scope reports replacing
//! each other), every view `LiveViews` keeps equals the view rendered from scratch.

use std::collections::BTreeMap;
use std::path::PathBuf;

use rescope_render::live::{self, LiveViews, ReportChanges};
use rescope_render::{RenderContext, render_unfiltered};
use rescope_report::synthetic::{HostShape, HostSimulator, fleet_seed};
use rescope_report::{DnsRecord, GoTime, Node, Report, Str, TopologyKind, codec};

fn merged(states: &BTreeMap<usize, Report>) -> Report {
    let mut merged = Report::empty();
    for r in states.values() {
        merged.merge_from(r);
    }
    merged.upgrade();
    rescope_render::prepare(&merged)
}

/// What a store that tracks node changes would report between two merged reports.
fn changes(old: &Report, new: &Report) -> ReportChanges {
    let mut rc = ReportChanges::new();
    for kind in TopologyKind::ALL {
        let (o, n) = (&old[kind].nodes, &new[kind].nodes);
        for (id, node) in n {
            match o.get(id) {
                Some(old) if old == node => {}
                // Only the times of its values changed, as when a full report repeats
                // the last one.
                Some(old) if same_but_times(old, node) => rc.stamp(kind, id),
                // Only new samples (and times).
                Some(old) if same_but_measures(old, node) => rc.measure(kind, id),
                _ => rc.node(kind, id),
            }
        }
        for id in o.keys() {
            if !n.contains_key(id) {
                rc.node(kind, id);
            }
        }
    }
    for (ip, rec) in &new.dns {
        if old.dns.get(ip) != Some(rec) {
            rc.dns.insert(ip.clone());
        }
    }
    for ip in old.dns.keys() {
        if !new.dns.contains_key(ip) {
            rc.dns.insert(ip.clone());
        }
    }
    rc
}

fn same_but_times(old: &Node, new: &Node) -> bool {
    let mut a = old.clone();
    for (_, e) in a.latest.iter_mut() {
        e.timestamp = GoTime::ZERO;
    }
    let mut b = new.clone();
    for (_, e) in b.latest.iter_mut() {
        e.timestamp = GoTime::ZERO;
    }
    a == b
}

fn same_but_measures(old: &Node, new: &Node) -> bool {
    let mut a = old.clone();
    a.metrics = Default::default();
    let mut b = new.clone();
    b.metrics = Default::default();
    same_but_times(&a, &b)
}

/// Brings `live` up to `next` and checks what it says changed: every node that differs
/// from before is named, and a node named as changed in its metrics only changed in
/// nothing else (listings patch only the metric rows of such nodes).
fn update(live: &mut LiveViews, next: &Report, rc: &ReportChanges, step: &str) {
    let before: BTreeMap<&str, BTreeMap<Str, Node>> = live::VIEWS
        .iter()
        .map(|v| (*v, live.view(v).expect("live view").nodes.clone()))
        .collect();
    let out = live.update(next, rc);
    for view in live::VIEWS {
        let old = &before[view];
        let new = &live.view(view).expect("live view").nodes;
        let changes = out.get(view).cloned().unwrap_or_default();
        for id in old.keys().chain(new.keys()) {
            let (a, b) = (old.get(id), new.get(id));
            if a != b {
                assert!(
                    changes.contains(id),
                    "{step}: {view}: {id} changed but is not named"
                );
            }
            if changes.measured.contains(id) {
                assert!(
                    changes.content.contains(id) && !changes.structure.contains(id),
                    "{step}: {view}: {id} is measured but not a change of content"
                );
                let (Some(a), Some(b)) = (a, b) else {
                    panic!("{step}: {view}: {id} is measured but came or went");
                };
                assert!(
                    same_but_measures(a, b),
                    "{step}: {view}: {id} is measured but changed otherwise: {a:#?} vs {b:#?}"
                );
            }
        }
    }
}

fn check(live: &LiveViews, report: &Report, step: &str) {
    let ctx = RenderContext::new(report, live.now());
    for view in live::VIEWS {
        let full = render_unfiltered(&ctx, view).expect("known view");
        let got = live.view(view).expect("live view");
        assert_eq!(
            got.filtered, full.filtered,
            "{step}: {view}: filtered count differs"
        );
        if got.nodes != full.nodes {
            let missing: Vec<_> = full
                .nodes
                .keys()
                .filter(|k| !got.nodes.contains_key(*k))
                .collect();
            let extra: Vec<_> = got
                .nodes
                .keys()
                .filter(|k| !full.nodes.contains_key(*k))
                .collect();
            let differ = full
                .nodes
                .iter()
                .find(|(k, n)| got.nodes.get(*k).is_some_and(|g| g != *n));
            panic!(
                "{step}: {view} differs: missing {missing:?}, extra {extra:?}, first differing node: {:#?} vs live {:#?}",
                differ.map(|(_, n)| n),
                differ.and_then(|(k, _)| got.nodes.get(k)),
            );
        }
    }
}

/// A small, deterministic random number generator (splitmix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Picks a node of `kind` in `report` and lets `f` change it.
fn mutate(rng: &mut Rng, report: &mut Report, kind: TopologyKind, f: impl FnOnce(&mut Node)) {
    let nodes = &mut report[kind].nodes;
    if nodes.is_empty() {
        return;
    }
    let i = rng.below(nodes.len());
    if let Some(n) = nodes.values_mut().nth(i) {
        f(n);
    }
}

fn random_history(seed: u64, hosts: usize, steps: usize) {
    let now = GoTime::now();
    let mut rng = Rng(seed);
    let mut sims: Vec<HostSimulator> = (0..hosts)
        .map(|i| HostSimulator::new(HostShape::small_member(i), fleet_seed(seed, i), now))
        .collect();
    let mut states: BTreeMap<usize, Report> = BTreeMap::new();
    let mut live = LiveViews::new(now);
    let mut report = Report::empty();
    live.update(&report, &ReportChanges::new());
    for step in 0..steps {
        let h = rng.below(hosts);
        let what = rng.below(20);
        let label = format!("seed {seed} step {step} (event {what} on host {h})");
        match what {
            // A host leaves (its probe expired), or comes back.
            0 => {
                if states.remove(&h).is_none() {
                    states.insert(h, sims[h].report());
                }
            }
            // A container stops and is deleted.
            1 => {
                if let Some(s) = states.get_mut(&h) {
                    mutate(&mut rng, s, TopologyKind::Container, |n| {
                        n.set_latest("docker_container_state", now, "deleted");
                    });
                }
            }
            // An end point turns out to be a NAT copy of another.
            2 => {
                if let Some(s) = states.get_mut(&h) {
                    let other = s[TopologyKind::Endpoint]
                        .nodes
                        .keys()
                        .nth(rng.below(100))
                        .cloned();
                    if let Some(other) = other {
                        mutate(&mut rng, s, TopologyKind::Endpoint, |n| {
                            n.set_latest("copy_of", now, other);
                        });
                    }
                }
            }
            // A process is only known from a delta whose full report is gone.
            3 => {
                if let Some(s) = states.get_mut(&h) {
                    mutate(&mut rng, s, TopologyKind::Process, |n| {
                        n.topology = Str::empty();
                    });
                }
            }
            // A remote address gets a cloud service name.
            4 => {
                if let Some(s) = states.get_mut(&h) {
                    let ip = s.dns.keys().nth(rng.below(s.dns.len())).cloned();
                    if let Some(ip) = ip {
                        let mut rec = DnsRecord::default();
                        rec.forward.insert("s3.eu-west-1.amazonaws.com");
                        s.dns.insert(ip, rec);
                    }
                }
            }
            // Every host stops calling its own network local.
            5 => {
                for s in states.values_mut() {
                    for n in s[TopologyKind::Host].nodes.values_mut() {
                        if let Some(set) = n.sets.get("local_networks") {
                            let kept: Vec<Str> = set
                                .iter()
                                .filter(|c| !c.starts_with("10."))
                                .cloned()
                                .collect();
                            n.sets.remove("local_networks");
                            for c in kept {
                                n.sets.add("local_networks", c);
                            }
                        }
                    }
                }
            }
            // No host reports processes for a while.
            6 => {
                for s in states.values_mut() {
                    s[TopologyKind::Process].nodes.clear();
                }
            }
            // A container's image changes.
            7 => {
                if let Some(s) = states.get_mut(&h) {
                    let image = s[TopologyKind::ContainerImage]
                        .nodes
                        .values()
                        .next()
                        .and_then(|i| i.latest_value("docker_image_id").cloned());
                    mutate(&mut rng, s, TopologyKind::Container, |n| {
                        let other = if n.latest_value("docker_image_id") == image.as_ref() {
                            Str::new("sha256:another")
                        } else {
                            image.clone().unwrap_or_default()
                        };
                        n.set_latest("docker_image_id", now, other);
                    });
                }
            }
            // A process that is not quite a process: another topology, so views copy it
            // whole instead of keeping a stub.
            8 => {
                if let Some(s) = states.get_mut(&h) {
                    mutate(&mut rng, s, TopologyKind::Process, |n| {
                        n.topology = Str::new("host");
                    });
                }
            }
            // Content changes only (the views that copy whole nodes must follow).
            9 | 10 => {
                if let Some(s) = states.get_mut(&h) {
                    for n in s[TopologyKind::Process].nodes.values_mut() {
                        n.set_latest("cmdline", now, format!("changed {step}"));
                    }
                }
            }
            // Children a probe should not send, one under another ID.
            11 => {
                if let Some(s) = states.get_mut(&h) {
                    mutate(&mut rng, s, TopologyKind::Process, |n| {
                        n.children.insert(
                            Str::new("odd;<pod>"),
                            Node::new("odd;<pod>").with_topology("pod").with_latest(
                                "name",
                                now,
                                format!("{step}"),
                            ),
                        );
                        n.children.insert(
                            Str::new("alias"),
                            Node::new("other").with_topology("endpoint"),
                        );
                    });
                }
            }
            // A node whose ID is not its key.
            12 => {
                if let Some(s) = states.get_mut(&h) {
                    mutate(&mut rng, s, TopologyKind::Process, |n| {
                        n.id = Str::new("someone-else");
                    });
                }
            }
            // A container moves to the address of another container of its host.
            13 => {
                if let Some(s) = states.get_mut(&h) {
                    let other = s[TopologyKind::Container]
                        .nodes
                        .values()
                        .next()
                        .and_then(|c| c.sets.get("docker_container_ips_with_scopes").cloned());
                    if let Some(other) = other {
                        mutate(&mut rng, s, TopologyKind::Container, |n| {
                            n.sets.remove("docker_container_ips_with_scopes");
                            for a in other.iter() {
                                n.sets.add("docker_container_ips_with_scopes", a.clone());
                            }
                        });
                    }
                }
            }
            // Otherwise the host publishes its next report.
            _ => {
                states.insert(h, sims[h].next_report());
            }
        }
        let next = merged(&states);
        let rc = changes(&report, &next);
        update(&mut live, &next, &rc, &label);
        report = next;
        check(&live, &report, &label);
    }
    // Nothing changed: nothing to do, and the views stay equal.
    let rc = ReportChanges::new();
    let out = live.update(&report, &rc);
    assert!(
        out.values().all(|c| c.is_empty()),
        "no changes in, none out"
    );
    check(&live, &report, "after an empty update");
}

#[test]
fn random_fleet_histories_render_like_full_renders() {
    for seed in 1..=4 {
        random_history(seed, 5, 60);
    }
}

#[test]
fn end_point_indexes_of_hosts_gone_are_reused_without_mixing_nodes_up() {
    // Hosts take turns leaving while others join with end points of their own: the
    // indexes of the end points gone go to the new ones, and every view stays what a
    // full render gives.
    let now = GoTime::now();
    let sims: Vec<HostSimulator> = (0..6)
        .map(|i| HostSimulator::new(HostShape::small_member(i), fleet_seed(11, i), now))
        .collect();
    let mut states: BTreeMap<usize, Report> = BTreeMap::new();
    let mut live = LiveViews::new(now);
    let mut report = Report::empty();
    live.update(&report, &ReportChanges::new());
    for (h, sim) in sims.iter().enumerate().take(3) {
        states.insert(h, sim.report());
    }
    let mut most = 0;
    for round in 0..8 {
        if round > 0 {
            // Host `gone` leaves, `comes` joins (or comes back).
            let gone = *states.keys().nth(round % states.len()).expect("a host");
            states.remove(&gone);
            let comes = (0..6)
                .find(|h| !states.contains_key(h) && *h != gone)
                .expect("a host away");
            states.insert(comes, sims[comes].report());
        }
        let next = merged(&states);
        let rc = changes(&report, &next);
        let label = format!("round {round}");
        update(&mut live, &next, &rc, &label);
        check(&live, &next, &label);
        // Exactly the end points and their edges' targets hold an index: those of
        // the end points gone were freed.
        let endpoints = &next[TopologyKind::Endpoint].nodes;
        let mut named: std::collections::BTreeSet<&Str> = endpoints.keys().collect();
        named.extend(endpoints.values().flat_map(|e| e.adjacency.iter()));
        let (indexed, bound) = live.endpoint_indexes();
        assert_eq!(indexed, named.len(), "{label}: end points indexed");
        most = most.max(indexed);
        // Freed indexes are handed out again: the table does not grow by a host's
        // end points each round.
        assert!(
            bound <= most + most / 2,
            "{label}: {bound} indexes handed out for at most {most} at once"
        );
        report = next;
    }
}

#[test]
fn an_end_point_becoming_a_nat_copy_reroutes_the_end_points_pointing_at_it() {
    // An end point with edges to two others goes to no process (it talks to two
    // remotes); once one of them is a NAT copy of the other it talks to one, and goes
    // to its process, although it did not change itself.
    let now = GoTime::now();
    let sim = HostSimulator::new(HostShape::small_member(0), fleet_seed(5, 0), now);
    let mut next = sim.report();
    let eps = &next[TopologyKind::Endpoint].nodes;
    let with_pid: Vec<Str> = eps
        .iter()
        .filter(|(_, e)| e.latest_value("pid").is_some())
        .map(|(id, _)| id.clone())
        .take(3)
        .collect();
    let [r, t1, t2] = <[Str; 3]>::try_from(with_pid).expect("three local end points");
    if let Some(e) = next[TopologyKind::Endpoint].nodes.get_mut(&r) {
        e.adjacency = [t1.clone(), t2.clone()].into_iter().collect();
    }
    let mut live = LiveViews::new(now);
    let mut report = Report::empty();
    live.update(&report, &ReportChanges::new());
    let mut step = |next: Report, label: &str| {
        let next = rescope_render::prepare(&next);
        let rc = changes(&report, &next);
        update(&mut live, &next, &rc, label);
        check(&live, &next, label);
        report = next;
    };
    step(next.clone(), "two remotes");
    let copy = |mut rep: Report, of: Option<&Str>| {
        if let Some(e) = rep[TopologyKind::Endpoint].nodes.get_mut(&t2) {
            match of {
                Some(o) => e.set_latest("copy_of", now, o.clone()),
                None => {
                    e.latest.remove("copy_of");
                }
            }
        }
        rep
    };
    step(copy(next.clone(), Some(&t1)), "a copy of the other");
    step(copy(next.clone(), None), "a copy no more");
    step(copy(next.clone(), Some(&t1)), "a copy again");
    let mut gone = next.clone();
    gone[TopologyKind::Endpoint].nodes.remove(&t2);
    step(gone, "the copy gone");
    step(next, "back");
}

#[test]
fn real_scope_reports_render_like_full_renders() {
    let fixture = |rel: &str| -> Report {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../testdata/scope")
            .join(rel);
        let mut r = codec::decode(&std::fs::read(path).expect("fixture")).expect("decodes");
        r.upgrade();
        rescope_render::prepare(&r)
    };
    let now = GoTime::now();
    let mut live = LiveViews::new(now);
    let mut report = Report::empty();
    live.update(&report, &ReportChanges::new());
    let mut load_changed = fixture("published/load-full.msgpack.gz");
    let mut rng = Rng(9);
    for _ in 0..30 {
        mutate(&mut rng, &mut load_changed, TopologyKind::Endpoint, |n| {
            n.adjacency = Default::default();
        });
        mutate(&mut rng, &mut load_changed, TopologyKind::Process, |n| {
            n.set_latest("name", now, "renamed");
        });
    }
    for (name, next) in [
        ("load", fixture("published/load-full.msgpack.gz")),
        ("load changed", load_changed),
        ("idle", fixture("published/idle-full.msgpack.gz")),
        ("plugin", fixture("published/plugin-full.msgpack.gz")),
        ("load again", fixture("published/load-full.msgpack.gz")),
        ("empty", Report::empty()),
    ] {
        let rc = changes(&report, &next);
        update(&mut live, &next, &rc, name);
        report = next;
        check(&live, &report, name);
    }
}
