//! The publisher's pending report: the spy's reports of one publish interval, merged.
//!
//! Every spy tick sends a whole report (thousands of end points on a busy host), and
//! most of its nodes say what the pending report already says, only at a later time.
//! Merging such a node entry by entry builds its `latest` map again and clones every
//! newer entry into it, then drops the newer copy: that was the publisher's largest
//! cost. [`merge_newer`] gives the same report as [`Report::merge_owned`], but a node
//! whose incoming copy [`supersedes`] the pending one simply takes its place.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use rescope_report::{LatestEntry, Node, Report, SortedMap, Str, TopologyKind};

use crate::kept::{KeptNodes, SpyReport};

/// Merges `newer` into `pending`: the same result as `pending.merge_owned(newer)`.
pub fn merge_newer(pending: &mut Report, mut newer: Report) {
    let mut taken = Vec::new();
    for kind in TopologyKind::ALL {
        let nodes = &mut newer.topology_mut(kind).nodes;
        if !nodes.is_empty() {
            taken.push((kind, std::mem::take(nodes)));
        }
    }
    // Scalars and each topology's presentation (controls, templates); no nodes left.
    pending.merge_owned(newer);
    for (kind, nodes) in taken {
        let mine = &mut pending.topology_mut(kind).nodes;
        if mine.is_empty() {
            *mine = nodes;
            continue;
        }
        for (id, node) in nodes {
            merge_node(mine, kind, id, node);
        }
    }
}

/// Merges `node`, no older than what `nodes` holds under `id`, into `nodes`.
pub fn merge_node(nodes: &mut BTreeMap<Str, Node>, kind: TopologyKind, id: Str, node: Node) {
    match nodes.entry(id) {
        Entry::Vacant(slot) => {
            slot.insert(node);
        }
        Entry::Occupied(mut slot) => {
            if supersedes(&node, slot.get()) {
                *slot.get_mut() = node;
            } else if let Some(node) = replace_keeping_samples(slot.get_mut(), node) {
                slot.get_mut().merge_in_topology(&node, kind);
            }
        }
    }
}

/// When `newer` would supersede `older` but for their metrics, and both have the same
/// metrics (a process node: a new CPU and memory sample each tick), `newer` takes the
/// place of `older` with `older`'s samples merged before its own, in `older`'s
/// vectors: what a merge gives, without building every map of the node again.
/// Otherwise gives `newer` back.
fn replace_keeping_samples(older: &mut Node, mut newer: Node) -> Option<Node> {
    let same_metrics = older.metrics.len() == newer.metrics.len()
        && older
            .metrics
            .iter()
            .zip(newer.metrics.iter())
            .all(|((a, _), (b, _))| a == b);
    let applies =
        same_metrics && !older.metrics.is_empty() && supersedes_but_metrics(&newer, older);
    if !applies {
        return Some(newer);
    }
    let mut metrics = std::mem::take(&mut older.metrics);
    for ((_, mine), (_, theirs)) in metrics.iter_mut().zip(newer.metrics.iter()) {
        mine.merge_from(theirs);
    }
    newer.metrics = metrics;
    *older = newer;
    None
}

/// The spy's reports of one publish window, merged: the union the next publish sends.
///
/// A kept topology ([`crate::kept`]) is not merged tick by tick: the publisher keeps
/// its own copy and adds it, as the window's ticks reported it, when the window is
/// published. Only the copies replaced or removed during the window go into the
/// pending report as they come, so that the union still has them.
#[derive(Debug, Default)]
pub struct Pending {
    report: Option<Report>,
    kept: KeptNodes,
}

impl Pending {
    /// Adds one spy report to the window.
    pub fn add(&mut self, spy: SpyReport) {
        let SpyReport { report, kept } = spy;
        for changes in kept {
            let kind = changes.kind;
            match self.report.as_mut() {
                Some(window) => {
                    let nodes = &mut window.topology_mut(kind).nodes;
                    self.kept.apply(changes, report.ts, |old| {
                        merge_node(nodes, kind, old.id.clone(), old)
                    });
                }
                None => self.kept.apply(changes, report.ts, drop),
            }
        }
        match self.report.as_mut() {
            Some(pending) => {
                // The plugin list is a state, not a history: the newest spy report's
                // replaces the union a merge would give.
                let plugins = report.plugins.clone();
                merge_newer(pending, report);
                pending.plugins = plugins;
            }
            None => self.report = Some(report),
        }
    }

    /// The window's report, if any spy report came in it; starts a new window.
    pub fn take(&mut self) -> Option<Report> {
        let mut report = self.report.take()?;
        self.kept.merge_into(&mut report);
        self.kept.end_window();
        Some(report)
    }
}

/// Whether merging `older` into `newer` would leave `newer` as it is: the same ID,
/// topology, sets, parents and edges, every `latest` key of `older` present in `newer`
/// and won by it (a later time, or the same time and a value no smaller: the merge's
/// rule), and nothing in `older` that merges by accumulating (metrics' samples,
/// rendered children).
pub fn supersedes(newer: &Node, older: &Node) -> bool {
    older.metrics.is_empty() && supersedes_but_metrics(newer, older)
}

/// [`supersedes`] without looking at metrics.
fn supersedes_but_metrics(newer: &Node, older: &Node) -> bool {
    older.children.is_empty()
        && newer.id == older.id
        && newer.topology == older.topology
        && newer.adjacency == older.adjacency
        && newer.sets == older.sets
        && newer.parents == older.parents
        && latest_supersedes(&newer.latest, &older.latest)
}

fn latest_supersedes(newer: &SortedMap<LatestEntry>, older: &SortedMap<LatestEntry>) -> bool {
    if older.len() > newer.len() {
        return false;
    }
    let mut theirs = newer.iter();
    'older: for (key, entry) in older.iter() {
        for (k, e) in theirs.by_ref() {
            match k.as_str().cmp(key.as_str()) {
                std::cmp::Ordering::Less => continue,
                std::cmp::Ordering::Greater => return false,
                std::cmp::Ordering::Equal => {
                    if (e.timestamp, &e.value) >= (entry.timestamp, &entry.value) {
                        continue 'older;
                    }
                    return false;
                }
            }
        }
        return false;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kept::NodeChanges;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use rescope_report::{GoTime, Metric};

    fn t(secs: i64) -> GoTime {
        GoTime::from_unix(1_700_000_000 + secs, 0).expect("in range")
    }

    fn endpoint(id: &str, at: i64, pid: &str) -> Node {
        Node::new(id)
            .with_topology("endpoint")
            .with_latest("addr", t(at), "10.0.0.1")
            .with_latest("pid", t(at), pid)
    }

    /// Two spy reports a second apart, with every way a node can differ.
    fn reports() -> (Report, Report) {
        let mut older = Report::empty();
        let mut newer = Report::empty();
        fn e(r: &mut Report) -> &mut BTreeMap<Str, Node> {
            &mut r.topology_mut(TopologyKind::Endpoint).nodes
        }
        fn p(r: &mut Report) -> &mut BTreeMap<Str, Node> {
            &mut r.topology_mut(TopologyKind::Process).nodes
        }
        fn h(r: &mut Report) -> &mut BTreeMap<Str, Node> {
            &mut r.topology_mut(TopologyKind::Host).nodes
        }
        fn insert(nodes: &mut BTreeMap<Str, Node>, n: Node) {
            nodes.insert(n.id.clone(), n);
        }
        // Unchanged but for the time: the newer copy supersedes.
        insert(e(&mut older), endpoint("same", 1, "10"));
        insert(e(&mut newer), endpoint("same", 2, "10"));
        // A new owner.
        insert(e(&mut older), endpoint("owner", 1, "10"));
        insert(e(&mut newer), endpoint("owner", 2, "11"));
        // A key only the older copy has: the merge keeps it.
        insert(
            e(&mut older),
            endpoint("lost_key", 1, "10").with_latest("copy_of", t(1), "x"),
        );
        insert(e(&mut newer), endpoint("lost_key", 2, "10"));
        // The "newer" copy is older for one key: the merge keeps the later entry.
        insert(
            e(&mut older),
            endpoint("late", 1, "10").with_latest("pid", t(5), "12"),
        );
        insert(e(&mut newer), endpoint("late", 2, "10"));
        // Same time, different values: the larger wins, whichever side holds it.
        insert(e(&mut older), endpoint("tie", 2, "1"));
        insert(e(&mut newer), endpoint("tie", 2, "2"));
        // An edge that went: the merge keeps the union.
        let mut edged = endpoint("edge", 1, "10");
        edged.adjacency.insert("same");
        insert(e(&mut older), edged);
        insert(e(&mut newer), endpoint("edge", 2, "10"));
        // Only in one of them.
        insert(e(&mut older), endpoint("gone", 1, "10"));
        insert(e(&mut newer), endpoint("new", 2, "10"));
        // Metrics accumulate samples.
        let mut busy = Node::new("h;1").with_topology("process");
        busy.metrics.insert("cpu", Metric::single(t(1), 5.0, 100.0));
        insert(p(&mut older), busy.clone());
        busy.metrics.insert("cpu", Metric::single(t(2), 7.0, 100.0));
        insert(p(&mut newer), busy);
        // A process with the same metrics and newer details: samples kept in order.
        let proc_node = |at: i64, name: &str, cpu: f64| {
            let mut n = Node::new("h;2")
                .with_topology("process")
                .with_latest("name", t(at), name);
            n.metrics.insert("cpu", Metric::single(t(at), cpu, 100.0));
            n.metrics.insert("mem", Metric::single(t(at), 10.0, 1000.0));
            n
        };
        insert(p(&mut older), proc_node(1, "sleep", 1.0));
        insert(p(&mut newer), proc_node(2, "sleep", 3.0));
        // A metric only one copy has.
        let mut partial = proc_node(1, "x", 2.0);
        partial.id = Str::new("h;3");
        insert(p(&mut older), partial);
        let mut fuller = proc_node(2, "x", 4.0);
        fuller.id = Str::new("h;3");
        fuller.metrics.insert("io", Metric::single(t(2), 1.0, 1.0));
        insert(p(&mut newer), fuller);
        // A topology only the newer report has nodes in.
        insert(h(&mut newer), Node::new("h;<host>").with_topology("host"));
        older.ts = t(1);
        newer.ts = t(2);
        (older, newer)
    }

    #[test]
    fn merging_a_newer_report_gives_what_a_full_merge_gives() {
        let (older, newer) = reports();
        let mut expected = older.clone();
        expected.merge_owned(newer.clone());
        let mut got = older.clone();
        merge_newer(&mut got, newer.clone());
        assert_eq!(got, expected);
        // And in the other order, where almost nothing supersedes.
        let mut expected = newer.clone();
        expected.merge_owned(older.clone());
        let mut got = newer;
        merge_newer(&mut got, older);
        assert_eq!(got, expected);
    }

    #[test]
    fn only_a_copy_that_holds_everything_the_older_one_does_supersedes_it() {
        let (older, newer) = reports();
        let e = |r: &Report, id: &str| r.topology(TopologyKind::Endpoint).nodes[id].clone();
        assert!(supersedes(&e(&newer, "same"), &e(&older, "same")));
        assert!(supersedes(&e(&newer, "owner"), &e(&older, "owner")));
        assert!(supersedes(&e(&newer, "tie"), &e(&older, "tie")));
        assert!(!supersedes(&e(&older, "tie"), &e(&newer, "tie")));
        assert!(!supersedes(&e(&newer, "lost_key"), &e(&older, "lost_key")));
        assert!(!supersedes(&e(&newer, "late"), &e(&older, "late")));
        assert!(!supersedes(&e(&newer, "edge"), &e(&older, "edge")));
        let p = |r: &Report| r.topology(TopologyKind::Process).nodes["h;1"].clone();
        assert!(!supersedes(&p(&newer), &p(&older)));
    }

    /// A random endpoint topology: few IDs, pids, edges and keys, so that ticks share
    /// nodes, and change some of them.
    fn random_endpoints(rng: &mut StdRng, ts: GoTime) -> BTreeMap<Str, Node> {
        let mut nodes = BTreeMap::new();
        for i in 0..8 {
            if rng.random_bool(0.3) {
                continue;
            }
            let id = format!("h;10.0.0.1;{i}");
            let mut node = Node::new(id.as_str()).with_topology("endpoint");
            if rng.random_bool(0.7) {
                node.set_latest("pid", ts, rng.random_range(1..3).to_string());
                node.set_latest("host_node_id", ts, "h;<host>");
            }
            if rng.random_bool(0.2) {
                node.set_latest("copy_of", ts, "h;10.0.0.1;0");
            }
            for j in 0..8 {
                if rng.random_bool(0.15) {
                    node.adjacency.insert(format!("h;10.0.0.1;{j}").as_str());
                }
            }
            nodes.insert(node.id.clone(), node);
        }
        nodes
    }

    /// A random process topology: few IDs and values, so that ticks share nodes, and
    /// change some of them; each node's metrics hold one sample, at `ts`.
    fn random_processes(rng: &mut StdRng, ts: GoTime) -> BTreeMap<Str, Node> {
        let mut nodes = BTreeMap::new();
        for i in 0..8 {
            if rng.random_bool(0.2) {
                continue;
            }
            let mut node = Node::new(format!("h;{i}").as_str()).with_topology("process");
            node.set_latest("pid", ts, i.to_string());
            node.set_latest("host_node_id", ts, "h;<host>");
            node.add_parent("host", "h;<host>");
            if rng.random_bool(0.8) {
                node.set_latest("name", ts, ["sleep", "sh"][rng.random_range(0..2)]);
            }
            if rng.random_bool(0.8) {
                let cpu = [0.0, 0.0, 0.0, 2.5][rng.random_range(0..4)];
                node.metrics.insert("cpu", Metric::single(ts, cpu, 200.0));
            }
            let mem = [1000.0, 1000.0, 3000.0][rng.random_range(0..3)];
            node.metrics.insert("mem", Metric::single(ts, mem, 1e9));
            nodes.insert(node.id.clone(), node);
        }
        nodes
    }

    fn without_times(node: &Node) -> Node {
        let mut node = node.clone();
        for (_, entry) in node.latest.iter_mut() {
            entry.timestamp = GoTime::default();
        }
        for (_, metric) in node.metrics.iter_mut() {
            for sample in &mut metric.samples {
                sample.date = GoTime::default();
            }
        }
        node
    }

    /// What a reporter that keeps `nodes` sends: the whole topology the first time
    /// and now and then, else the nodes that changed since `last_sent` (unchanged
    /// ones too, now and then), with the times of half of them lost.
    fn random_changes(
        rng: &mut StdRng,
        kind: TopologyKind,
        nodes: &BTreeMap<Str, Node>,
        last_sent: &mut Option<BTreeMap<Str, Node>>,
    ) -> NodeChanges {
        let mut c = match last_sent.as_ref() {
            Some(last) if !rng.random_bool(0.1) => {
                let mut c = NodeChanges::none(kind, nodes.len());
                for (id, node) in nodes {
                    let same = last
                        .get(id)
                        .is_some_and(|n| without_times(n) == without_times(node));
                    if !same || rng.random_bool(0.1) {
                        c.nodes.insert(id.clone(), Some(node.clone()));
                    }
                }
                for id in last.keys() {
                    if !nodes.contains_key(id) {
                        c.nodes.insert(id.clone(), None);
                    }
                }
                c
            }
            _ => NodeChanges::whole(kind, nodes.values().cloned()),
        };
        c.total = nodes.len();
        // The receiver stamps kept nodes itself: times sent do not count.
        for node in c.nodes.values_mut().flatten() {
            if rng.random_bool(0.5) {
                *node = without_times(node);
            }
        }
        *last_sent = Some(nodes.clone());
        c
    }

    #[test]
    fn a_window_of_process_and_endpoint_changes_publishes_what_whole_reports_do() {
        for seed in 0..300 {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut whole = Pending::default();
            let mut changes = Pending::default();
            let (mut endpoints_sent, mut processes_sent) = (None, None);
            for tick in 0..30 {
                let ts = t(tick);
                let mut report = Report::empty();
                report.ts = ts;
                // The Docker reporter's part of some processes stays in the report.
                for i in 0..3 {
                    if rng.random_bool(0.3) {
                        let mut part =
                            Node::new(format!("h;{i}").as_str()).with_topology("process");
                        part.set_latest("docker_container_id", ts, "c1");
                        part.add_parent("container", "c1;<container>");
                        report.topology_mut(TopologyKind::Process).add_node(part);
                    }
                }
                let mut full = report.clone();
                let mut kept = Vec::new();
                // Now and then a reporter fails: its nodes are missing.
                if !rng.random_bool(0.1) {
                    let nodes = random_endpoints(&mut rng, ts);
                    for node in nodes.values() {
                        full.topology_mut(TopologyKind::Endpoint)
                            .add_node(node.clone());
                    }
                    kept.push(random_changes(
                        &mut rng,
                        TopologyKind::Endpoint,
                        &nodes,
                        &mut endpoints_sent,
                    ));
                }
                if !rng.random_bool(0.1) {
                    let nodes = random_processes(&mut rng, ts);
                    for node in nodes.values() {
                        full.topology_mut(TopologyKind::Process)
                            .add_node(node.clone());
                    }
                    kept.push(random_changes(
                        &mut rng,
                        TopologyKind::Process,
                        &nodes,
                        &mut processes_sent,
                    ));
                }
                if rng.random_bool(0.5) {
                    kept.reverse();
                }
                whole.add(SpyReport::from(full));
                changes.add(SpyReport { report, kept });
                if rng.random_bool(0.35) {
                    assert_eq!(changes.take(), whole.take(), "seed {seed}, tick {tick}");
                }
            }
            assert_eq!(changes.take(), whole.take(), "seed {seed}, at the end");
        }
    }

    #[test]
    fn a_window_of_changes_publishes_what_a_window_of_whole_reports_does() {
        for seed in 0..300 {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut whole = Pending::default();
            let mut changes = Pending::default();
            let mut last_sent = None;
            for tick in 0..30 {
                let ts = t(tick);
                let mut report = Report::empty();
                report.ts = ts;
                let mut process = Node::new("h;1").with_topology("process");
                process.set_latest("name", ts, "sleep");
                report.topology_mut(TopologyKind::Process).add_node(process);
                // Now and then the endpoint reporter fails: its nodes are missing.
                let failed = rng.random_bool(0.1);
                let nodes = random_endpoints(&mut rng, ts);
                let mut full = report.clone();
                if !failed {
                    full.topology_mut(TopologyKind::Endpoint).nodes = nodes.clone();
                }
                whole.add(SpyReport::from(full));
                let kept = (!failed).then(|| {
                    random_changes(&mut rng, TopologyKind::Endpoint, &nodes, &mut last_sent)
                });
                changes.add(SpyReport {
                    report,
                    kept: kept.into_iter().collect(),
                });
                if rng.random_bool(0.35) {
                    assert_eq!(changes.take(), whole.take(), "seed {seed}, tick {tick}");
                }
            }
            assert_eq!(changes.take(), whole.take(), "seed {seed}, at the end");
        }
    }
}
