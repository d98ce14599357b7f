//! The publisher's pending report: the spy's reports of one publish interval, merged.
//!
//! Every spy tick sends a whole report (thousands of end points on a busy host), and
//! most of its nodes say what the pending report already says, only at a later time.
//! Merging such a node entry by entry builds its `latest` map again and clones every
//! newer entry into it, then drops the newer copy: that was the publisher's largest
//! cost. [`merge_newer`] gives the same report as [`Report::merge_owned`], but a node
//! whose incoming copy [`supersedes`] the pending one simply takes its place.

use std::collections::btree_map::Entry;

use rescope_report::{LatestEntry, Node, Report, SortedMap, TopologyKind};

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
            match mine.entry(id) {
                Entry::Vacant(slot) => {
                    slot.insert(node);
                }
                Entry::Occupied(mut slot) => {
                    if supersedes(&node, slot.get()) {
                        *slot.get_mut() = node;
                    } else {
                        slot.get_mut().merge_in_topology(&node, kind);
                    }
                }
            }
        }
    }
}

/// Whether merging `older` into `newer` would leave `newer` as it is: the same ID,
/// topology, sets, parents and edges, every `latest` key of `older` present in `newer`
/// and won by it (a later time, or the same time and a value no smaller: the merge's
/// rule), and nothing in `older` that merges by accumulating (metrics' samples,
/// rendered children).
pub fn supersedes(newer: &Node, older: &Node) -> bool {
    older.metrics.is_empty()
        && older.children.is_empty()
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
    use rescope_report::{GoTime, Metric, Str};
    use std::collections::BTreeMap;

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
}
