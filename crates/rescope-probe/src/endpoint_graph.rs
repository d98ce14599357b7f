//! The endpoint graph kept from tick to tick, updated with what changed instead of
//! built anew.
//!
//! Each tick the endpoint reporter turns every connection socket and conntrack flow
//! into a [`Link`]: an edge from the client's end point to the server's, with the pid
//! owning either side when known. The graph is a function of the multiset of links
//! (plus the NAT copies, see [`EndpointGraph::set_copies`]):
//!
//! - an end point is in the graph while at least one link ends there;
//! - its adjacency is the set of the `to` ends of the links leaving it;
//! - its pid is the smallest pid any of its links gives it (a server port shared by
//!   several worker processes shows one of them, the same one every tick).
//!
//! [`EndpointGraph::apply_links`] compares this tick's links with the last tick's
//! (position by position when the order held, as it does while sockets are followed
//! through the eBPF change tracker; as sorted lists otherwise) and adds or removes
//! only the links that differ. Every end point whose node could look different is
//! remembered, and [`EndpointGraph::take_changed`] hands them to the reporter, which
//! rebuilds those nodes only.
//!
//! The graph holds no strings: end points are small fixed-size keys.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::ops::Range;

use crate::endpoint::EndpointKey;

/// One connection's part of the graph (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Link {
    pub from: EndpointKey,
    pub to: EndpointKey,
    pub from_pid: Option<u32>,
    pub to_pid: Option<u32>,
}

/// A NAT copy: `rewritten` shows the end point `real` under the address the other
/// side of the connection used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct NatCopy {
    pub rewritten: EndpointKey,
    pub real: EndpointKey,
}

/// An end point as the report shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NodeView {
    pub pid: Option<u32>,
    /// The real end point, for a NAT copy.
    pub copy_of: Option<EndpointKey>,
    /// Sorted, without repeats.
    pub adjacency: Vec<EndpointKey>,
}

/// What the graph knows of one end point.
#[derive(Debug, Default)]
struct EndState {
    /// Links with an end here (either end).
    ends: u32,
    /// Pids links gave this end, each with how many links gave it; sorted by pid.
    pids: Vec<(u32, u32)>,
    /// Edges from here, each with how many links make it; sorted by destination.
    out: Vec<(EndpointKey, u32)>,
    /// In the changed list already.
    changed: bool,
}

/// Links whose positions differ beyond this share (plus a few) are compared sorted.
const POSITIONAL_SHARE: usize = 16;

/// See the module documentation.
#[derive(Debug, Default)]
pub(crate) struct EndpointGraph {
    ends: HashMap<EndpointKey, EndState, KeyHasher>,
    /// Sorted; each rewritten end point's real ones are together.
    copies: Vec<NatCopy>,
    /// End points whose node may have changed since the last `take_changed`.
    changed: Vec<EndpointKey>,
    /// Last tick's links, in that tick's order, and its segments.
    links: Vec<Link>,
    segments: Vec<(u64, Range<usize>)>,
    gone: Vec<Link>,
    sorted_old: Vec<Link>,
    sorted_new: Vec<Link>,
}

impl EndpointGraph {
    /// Forgets everything; every end point known so far counts as changed.
    pub fn reset(&mut self) {
        self.changed.extend(self.ends.keys().copied());
        self.changed.extend(self.copies.iter().map(|c| c.rewritten));
        self.ends.clear();
        self.copies.clear();
        self.links.clear();
        self.segments.clear();
    }

    /// Whether a link ends at `key`.
    pub fn contains(&self, key: &EndpointKey) -> bool {
        self.ends.contains_key(key)
    }

    /// Makes `links` (this tick's) the graph's links. `segments` split them by source
    /// (one namespace's sockets, or its conntrack flows), each under a key: a segment
    /// is compared with the last tick's segment of the same key, so a source whose
    /// order changed (a dump, a conntrack resync) costs a sort of its own links only.
    /// Links from an end point to itself are left out.
    pub fn apply_links(&mut self, links: &[Link], segments: &[(u64, Range<usize>)]) {
        let old_links = std::mem::take(&mut self.links);
        let old_segments = std::mem::take(&mut self.segments);
        let mut gone = std::mem::take(&mut self.gone);
        gone.clear();
        let mut matched = vec![false; old_segments.len()];
        for (key, range) in segments {
            let old = match old_segments
                .iter()
                .enumerate()
                .position(|(i, (k, _))| !matched[i] && k == key)
            {
                Some(i) => {
                    matched[i] = true;
                    &old_links[old_segments[i].1.clone()]
                }
                None => &[],
            };
            self.diff(old, &links[range.clone()], &mut gone);
        }
        for (i, (_, range)) in old_segments.iter().enumerate() {
            if !matched[i] {
                gone.extend_from_slice(&old_links[range.clone()]);
            }
        }
        // Additions first, so a link that only moved never takes its end points to
        // zero links on the way.
        for link in &gone {
            self.remove(link);
        }
        self.gone = gone;
        let mut kept = old_links;
        kept.clear();
        kept.extend_from_slice(links);
        self.links = kept;
        let mut kept = old_segments;
        kept.clear();
        kept.extend_from_slice(segments);
        self.segments = kept;
    }

    /// Adds the links of `new` that `old` lacks, and puts those of `old` that `new`
    /// lacks into `gone` (both as multisets).
    fn diff(&mut self, old: &[Link], new: &[Link], gone: &mut Vec<Link>) {
        let common = old.len().min(new.len());
        let budget = common / POSITIONAL_SHARE + 16;
        let mut differing = 0;
        for i in 0..common {
            if old[i] != new[i] {
                differing += 1;
                if differing > budget {
                    break;
                }
            }
        }
        if differing <= budget {
            for i in 0..new.len() {
                if i >= common || old[i] != new[i] {
                    self.add(&new[i]);
                }
            }
            for i in 0..old.len() {
                if i >= common || old[i] != new[i] {
                    gone.push(old[i]);
                }
            }
            return;
        }
        let mut before = std::mem::take(&mut self.sorted_old);
        let mut after = std::mem::take(&mut self.sorted_new);
        before.clear();
        before.extend_from_slice(old);
        after.clear();
        after.extend_from_slice(new);
        before.sort_unstable();
        after.sort_unstable();
        let (mut i, mut j) = (0, 0);
        while i < before.len() || j < after.len() {
            match (before.get(i), after.get(j)) {
                (Some(b), Some(a)) if b == a => {
                    i += 1;
                    j += 1;
                }
                (Some(b), Some(a)) if b < a => {
                    gone.push(*b);
                    i += 1;
                }
                (Some(b), None) => {
                    gone.push(*b);
                    i += 1;
                }
                (_, Some(a)) => {
                    self.add(a);
                    j += 1;
                }
                (None, None) => break,
            }
        }
        self.sorted_old = before;
        self.sorted_new = after;
    }

    /// Sets this tick's NAT copies, for real end points in the graph (others are
    /// ignored). A copy shows the real end point's edges (but to itself) and, when
    /// it has none of its own, its pid; for an address several real end points were
    /// rewritten to, `copy_of` names the greatest.
    pub fn set_copies(&mut self, mut copies: Vec<NatCopy>) {
        copies.retain(|c| c.real != c.rewritten && self.ends.contains_key(&c.real));
        copies.sort_unstable();
        copies.dedup();
        if copies != self.copies {
            self.changed
                .extend(self.copies.iter().chain(&copies).map(|c| c.rewritten));
            self.copies = copies;
        }
    }

    /// The end points whose node may have changed since the last call (sorted, each
    /// once), into `out`.
    pub fn take_changed(&mut self, out: &mut Vec<EndpointKey>) {
        out.clear();
        out.append(&mut self.changed);
        for key in out.iter() {
            if let Some(end) = self.ends.get_mut(key) {
                end.changed = false;
            }
        }
        out.sort_unstable();
        out.dedup();
        if !self.copies.is_empty() {
            // A copy looks like its real end point.
            let changed = out.len();
            for copy in &self.copies {
                if out[..changed].binary_search(&copy.real).is_ok() {
                    out.push(copy.rewritten);
                }
            }
            out.sort_unstable();
            out.dedup();
        }
    }

    /// The node of `key`; `None` when it is not in the graph.
    pub fn view(&self, key: &EndpointKey) -> Option<NodeView> {
        let base = self.ends.get(key);
        let start = self.copies.partition_point(|c| c.rewritten < *key);
        let end = self.copies.partition_point(|c| c.rewritten <= *key);
        let copies = &self.copies[start..end];
        if base.is_none() && copies.is_empty() {
            return None;
        }
        let mut view = NodeView {
            pid: base.and_then(|b| b.pids.first()).map(|(pid, _)| *pid),
            copy_of: None,
            adjacency: base
                .map(|b| b.out.iter().map(|(to, _)| *to).collect())
                .unwrap_or_default(),
        };
        for copy in copies {
            view.copy_of = Some(copy.real);
            if let Some(real) = self.ends.get(&copy.real) {
                if view.pid.is_none() {
                    view.pid = real.pids.first().map(|(pid, _)| *pid);
                }
                view.adjacency
                    .extend(real.out.iter().map(|(to, _)| *to).filter(|to| to != key));
            }
        }
        if !copies.is_empty() {
            view.adjacency.sort_unstable();
            view.adjacency.dedup();
        }
        Some(view)
    }

    /// Every end point in the graph, NAT copies included (sorted, each once).
    #[cfg(test)]
    pub fn keys(&self) -> Vec<EndpointKey> {
        let mut keys: Vec<EndpointKey> = self.ends.keys().copied().collect();
        keys.extend(
            self.copies
                .iter()
                .map(|c| c.rewritten)
                .filter(|k| !self.ends.contains_key(k)),
        );
        keys.sort_unstable();
        keys.dedup();
        keys
    }

    fn add(&mut self, link: &Link) {
        if link.from == link.to {
            return;
        }
        let changed = &mut self.changed;
        let from = end_mut(&mut self.ends, link.from, changed);
        let mut moved = add_pid(from, link.from_pid);
        moved |= add_counted(&mut from.out, link.to);
        mark(from, link.from, moved, changed);
        let to = end_mut(&mut self.ends, link.to, changed);
        let moved = add_pid(to, link.to_pid);
        mark(to, link.to, moved, changed);
    }

    fn remove(&mut self, link: &Link) {
        if link.from == link.to {
            return;
        }
        for (key, pid, out) in [
            (link.from, link.from_pid, Some(link.to)),
            (link.to, link.to_pid, None),
        ] {
            let Some(end) = self.ends.get_mut(&key) else {
                debug_assert!(false, "invariant: a removed link was added");
                continue;
            };
            end.ends -= 1;
            if end.ends == 0 {
                if !end.changed {
                    self.changed.push(key);
                }
                self.ends.remove(&key);
                continue;
            }
            let mut moved = pid.is_some_and(|p| remove_counted(&mut end.pids, p, true));
            if let Some(to) = out {
                moved |= remove_counted(&mut end.out, to, false);
            }
            mark(end, key, moved, &mut self.changed);
        }
    }
}

/// The state of `key`, created (and marked changed) if it is new; counts one more
/// link end.
fn end_mut<'a>(
    ends: &'a mut HashMap<EndpointKey, EndState, KeyHasher>,
    key: EndpointKey,
    changed: &mut Vec<EndpointKey>,
) -> &'a mut EndState {
    let end = ends.entry(key).or_default();
    if end.ends == 0 && !end.changed {
        end.changed = true;
        changed.push(key);
    }
    end.ends += 1;
    end
}

fn mark(end: &mut EndState, key: EndpointKey, moved: bool, changed: &mut Vec<EndpointKey>) {
    if moved && !end.changed {
        end.changed = true;
        changed.push(key);
    }
}

/// Counts one more `pid`; whether the smallest changed.
fn add_pid(end: &mut EndState, pid: Option<u32>) -> bool {
    match pid {
        None => false,
        Some(pid) => {
            let smallest = end.pids.first().map(|(p, _)| *p);
            add_counted(&mut end.pids, pid);
            smallest.is_none_or(|s| pid < s)
        }
    }
}

/// Counts one more `item` in a sorted counted list; whether it is new there.
fn add_counted<T: Ord + Copy>(list: &mut Vec<(T, u32)>, item: T) -> bool {
    match list.binary_search_by(|(x, _)| x.cmp(&item)) {
        Ok(i) => {
            list[i].1 += 1;
            false
        }
        Err(i) => {
            list.insert(i, (item, 1));
            true
        }
    }
}

/// Counts one `item` less; whether it left the list (with `first_only`: whether the
/// first entry left it).
fn remove_counted<T: Ord + Copy>(list: &mut Vec<(T, u32)>, item: T, first_only: bool) -> bool {
    let Ok(i) = list.binary_search_by(|(x, _)| x.cmp(&item)) else {
        debug_assert!(false, "invariant: a removed item was counted");
        return false;
    };
    list[i].1 -= 1;
    if list[i].1 > 0 {
        return false;
    }
    list.remove(i);
    !first_only || i == 0
}

/// A hasher for end point keys: a multiply-and-fold of each word with a per-process
/// random seed. The keys are a few machine words, and SipHash (the standard
/// library's default) showed in profiles of busy hosts; the seed keeps an outsider
/// who picks addresses and ports from aiming at one bucket.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KeyHasher {
    seed: u64,
}

impl Default for KeyHasher {
    fn default() -> Self {
        static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        let seed = *SEED.get_or_init(|| {
            std::collections::hash_map::RandomState::new().hash_one(0x5eed_u64) | 1
        });
        KeyHasher { seed }
    }
}

impl BuildHasher for KeyHasher {
    type Hasher = KeyHash;

    fn build_hasher(&self) -> KeyHash {
        KeyHash {
            state: self.seed,
            seed: self.seed,
        }
    }
}

/// See [`KeyHasher`].
#[derive(Debug)]
pub(crate) struct KeyHash {
    state: u64,
    seed: u64,
}

impl KeyHash {
    fn mix(&mut self, word: u64) {
        let product = u128::from(self.state ^ word) * u128::from(self.seed ^ 0x9e37_79b9_7f4a_7c15);
        self.state = (product as u64) ^ ((product >> 64) as u64);
    }
}

impl Hasher for KeyHash {
    fn finish(&self) -> u64 {
        self.state
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.mix(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.mix(u64::from(n));
    }

    fn write_u16(&mut self, n: u16) {
        self.mix(u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.mix(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.mix(n);
    }

    fn write_u128(&mut self, n: u128) {
        self.mix(n as u64);
        self.mix((n >> 64) as u64);
    }

    fn write_usize(&mut self, n: usize) {
        self.mix(n as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::ScopeKey;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use std::collections::{BTreeMap, BTreeSet};
    use std::net::{IpAddr, Ipv4Addr};

    fn key(host: u8, port: u16) -> EndpointKey {
        EndpointKey::new(
            ScopeKey::Global,
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, host)),
            port,
        )
    }

    /// The graph of `links` and `copies` straight from the definitions in the module
    /// documentation, without counting anything.
    fn reference(links: &[Link], copies: &[NatCopy]) -> BTreeMap<EndpointKey, NodeView> {
        let mut pids: BTreeMap<EndpointKey, BTreeSet<u32>> = BTreeMap::new();
        let mut out: BTreeMap<EndpointKey, BTreeSet<EndpointKey>> = BTreeMap::new();
        for l in links.iter().filter(|l| l.from != l.to) {
            let from = pids.entry(l.from).or_default();
            from.extend(l.from_pid);
            let to = pids.entry(l.to).or_default();
            to.extend(l.to_pid);
            out.entry(l.from).or_default().insert(l.to);
        }
        let base = |k: &EndpointKey| {
            (
                pids.get(k).and_then(|p| p.first().copied()),
                out.get(k).cloned().unwrap_or_default(),
            )
        };
        let mut views: BTreeMap<EndpointKey, NodeView> = pids
            .keys()
            .map(|k| {
                let (pid, adjacency) = base(k);
                (
                    *k,
                    NodeView {
                        pid,
                        copy_of: None,
                        adjacency: adjacency.into_iter().collect(),
                    },
                )
            })
            .collect();
        let copies: BTreeSet<NatCopy> = copies
            .iter()
            .filter(|c| c.real != c.rewritten && pids.contains_key(&c.real))
            .copied()
            .collect();
        let mut copied: BTreeMap<EndpointKey, (Option<u32>, BTreeSet<EndpointKey>)> =
            BTreeMap::new();
        for c in &copies {
            let (own_pid, own_out) = base(&c.rewritten);
            let (real_pid, real_out) = base(&c.real);
            let entry = copied
                .entry(c.rewritten)
                .or_insert_with(|| (own_pid, own_out));
            if entry.0.is_none() {
                entry.0 = real_pid;
            }
            entry
                .1
                .extend(real_out.into_iter().filter(|to| *to != c.rewritten));
            views.insert(
                c.rewritten,
                NodeView {
                    pid: entry.0,
                    copy_of: Some(c.real),
                    adjacency: entry.1.iter().copied().collect(),
                },
            );
        }
        views
    }

    fn views(graph: &EndpointGraph) -> BTreeMap<EndpointKey, NodeView> {
        graph
            .keys()
            .into_iter()
            .map(|k| (k, graph.view(&k).expect("a key has a view")))
            .collect()
    }

    fn random_link(rng: &mut StdRng) -> Link {
        // Few hosts, ports and pids, so links share end points, pids and edges.
        let end = |rng: &mut StdRng| key(rng.random_range(1..4), rng.random_range(1..6));
        let pid = |rng: &mut StdRng| rng.random_bool(0.6).then(|| rng.random_range(1..5));
        Link {
            from: end(rng),
            to: end(rng),
            from_pid: pid(rng),
            to_pid: pid(rng),
        }
    }

    #[test]
    fn the_graph_kept_between_ticks_equals_one_built_from_scratch() {
        for seed in 0..200 {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut graph = EndpointGraph::default();
            let mut links: Vec<Link> = Vec::new();
            let mut shown: BTreeMap<EndpointKey, NodeView> = BTreeMap::new();
            for tick in 0..40 {
                // A few links open and close (the order mostly kept, as the socket
                // table keeps it), or, now and then, everything is reordered as by
                // a dump.
                for _ in 0..rng.random_range(0..4) {
                    if !links.is_empty() && rng.random_bool(0.5) {
                        let i = rng.random_range(0..links.len());
                        links.swap_remove(i);
                    }
                    if rng.random_bool(0.6) {
                        links.push(random_link(&mut rng));
                    }
                }
                if rng.random_bool(0.1) && !links.is_empty() {
                    let i = rng.random_range(0..links.len());
                    links[i].from_pid = rng.random_bool(0.5).then(|| rng.random_range(1..5));
                }
                if rng.random_bool(0.15) {
                    links.reverse();
                }
                let copies: Vec<NatCopy> = (0..rng.random_range(0..3))
                    .map(|_| NatCopy {
                        rewritten: key(rng.random_range(1..5), rng.random_range(1..6)),
                        real: key(rng.random_range(1..4), rng.random_range(1..6)),
                    })
                    .collect();
                // Two sources (as sockets and flows are), split anywhere.
                let cut = rng.random_range(0..=links.len());
                let segments = [(1, 0..cut), (2, cut..links.len())];
                let one = [(1, 0..links.len())];
                graph.apply_links(
                    &links,
                    if rng.random_bool(0.5) {
                        &segments
                    } else {
                        &one
                    },
                );
                graph.set_copies(copies.clone());
                let want = reference(&links, &copies);
                let got = views(&graph);
                assert_eq!(got, want, "seed {seed}, tick {tick}");

                // Only the end points reported as changed differ from what was shown.
                let mut changed = Vec::new();
                graph.take_changed(&mut changed);
                for k in &changed {
                    match want.get(k) {
                        Some(v) => shown.insert(*k, v.clone()),
                        None => shown.remove(k),
                    };
                }
                assert_eq!(shown, want, "seed {seed}, tick {tick}: a change was missed");
            }
        }
    }

    #[test]
    fn an_unchanged_tick_changes_nothing_and_a_reset_changes_everything() {
        let links = [
            Link {
                from: key(1, 1),
                to: key(2, 80),
                from_pid: Some(7),
                to_pid: None,
            },
            Link {
                from: key(1, 2),
                to: key(2, 80),
                from_pid: Some(8),
                to_pid: Some(9),
            },
        ];
        let mut graph = EndpointGraph::default();
        let mut changed = Vec::new();
        let all = [(0, 0..2)];
        graph.apply_links(&links, &all);
        graph.take_changed(&mut changed);
        assert_eq!(changed.len(), 3);
        graph.apply_links(&links, &all);
        graph.take_changed(&mut changed);
        assert!(changed.is_empty());
        // Same links in another order: still nothing.
        graph.apply_links(&[links[1], links[0]], &all);
        graph.take_changed(&mut changed);
        assert!(changed.is_empty());
        // One link gone: its client end goes, the server's edges stay the same.
        graph.apply_links(&links[..1], &[(0, 0..1)]);
        graph.take_changed(&mut changed);
        assert_eq!(changed, [key(1, 2), key(2, 80)], "the server lost pid 9");
        assert_eq!(graph.view(&key(2, 80)).and_then(|v| v.pid), None);
        graph.reset();
        graph.take_changed(&mut changed);
        assert_eq!(changed, [key(1, 1), key(2, 80)]);
        assert!(graph.view(&key(1, 1)).is_none());
    }
}
