//! Small integer names for node IDs, for the incremental views' indexes.
//!
//! At fleet scale the live views ([`crate::live`]) do a few dozen lookups per changed
//! node in tables of a few hundred thousand node IDs. Keyed by the IDs themselves,
//! each lookup hashes a long string and then follows a pointer to its bytes to
//! compare them, and the tables miss the cache. [`NodeIds`] gives each ID a dense
//! [`NodeIx`] once, where a change enters the index, so that the tables behind it are
//! vectors indexed by the integer ([`IxVec`]) or sets of integers; the string is
//! looked up again only to build output.
//!
//! An index is freed only when its owner says the ID is gone for good (nothing in
//! its tables refers to it any more), and is then handed to the next new ID: so a
//! freed index must never still be in a table, or the new ID would inherit its
//! entries. [`NodeIds::free`] is the one place that happens.

use rescope_report::Str;
use rescope_report::fasthash::FastMap;

/// A node ID's index in a [`NodeIds`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeIx(u32);

impl NodeIx {
    /// Its position in an [`IxVec`].
    pub fn get(self) -> usize {
        self.0 as usize
    }
}

/// Node IDs and their indexes, both ways (see the module documentation).
#[derive(Debug, Default)]
pub struct NodeIds {
    index: FastMap<Str, NodeIx>,
    /// By index; `None` for a freed index.
    names: Vec<Option<Str>>,
    free: Vec<NodeIx>,
}

impl NodeIds {
    /// The index of `id`, given it one if it has none (a freed one first).
    pub fn intern(&mut self, id: &Str) -> NodeIx {
        if let Some(ix) = self.index.get(id) {
            return *ix;
        }
        let ix = match self.free.pop() {
            Some(ix) => {
                self.names[ix.get()] = Some(id.clone());
                ix
            }
            None => {
                let ix = NodeIx(u32::try_from(self.names.len()).expect("invariant: < 2³² IDs"));
                self.names.push(Some(id.clone()));
                ix
            }
        };
        self.index.insert(id.clone(), ix);
        ix
    }

    /// The index of `id`, if it has one.
    pub fn get(&self, id: &str) -> Option<NodeIx> {
        self.index.get(id).copied()
    }

    /// The ID of index `ix`. Panics on a freed index: that is a bug in the caller's
    /// bookkeeping, which would otherwise show as one node's entries under another.
    pub fn name(&self, ix: NodeIx) -> &Str {
        self.names
            .get(ix.get())
            .and_then(Option::as_ref)
            .expect("invariant: node indexes are used only while their ID is kept")
    }

    /// Forgets `ix`'s ID; the index goes to the next new ID. The caller must hold no
    /// entry for it.
    pub fn free(&mut self, ix: NodeIx) {
        if let Some(slot) = self.names.get_mut(ix.get())
            && let Some(id) = slot.take()
        {
            self.index.remove(&id);
            self.free.push(ix);
        }
    }

    /// How many IDs have an index.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// One past the highest index handed out: the length an [`IxVec`] may need.
    pub fn bound(&self) -> usize {
        self.names.len()
    }

    /// Forgets every ID.
    pub fn clear(&mut self) {
        self.index.clear();
        self.names.clear();
        self.free.clear();
    }
}

/// A table indexed by [`NodeIx`], growing as needed; absent entries read as
/// `T::default()`.
#[derive(Debug, Clone)]
pub struct IxVec<T> {
    items: Vec<T>,
    empty: T,
}

impl<T: Default> Default for IxVec<T> {
    fn default() -> Self {
        IxVec {
            items: Vec::new(),
            empty: T::default(),
        }
    }
}

impl<T: Default> IxVec<T> {
    pub fn get(&self, ix: NodeIx) -> &T {
        self.items.get(ix.get()).unwrap_or(&self.empty)
    }

    pub fn get_mut(&mut self, ix: NodeIx) -> &mut T {
        let i = ix.get();
        if i >= self.items.len() {
            self.items.resize_with(i + 1, T::default);
        }
        &mut self.items[i]
    }

    /// Sets the entry of `ix`; what it was.
    pub fn replace(&mut self, ix: NodeIx, value: T) -> T {
        std::mem::replace(self.get_mut(ix), value)
    }

    /// Takes the entry of `ix`, leaving the default.
    pub fn take(&mut self, ix: NodeIx) -> T {
        match self.items.get_mut(ix.get()) {
            Some(v) => std::mem::take(v),
            None => T::default(),
        }
    }

    pub fn clear(&mut self) {
        self.items.clear();
    }

    /// Every index with its entry (defaults included).
    pub fn iter(&self) -> impl Iterator<Item = (NodeIx, &T)> {
        self.items
            .iter()
            .enumerate()
            .map(|(i, v)| (NodeIx(i as u32), v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: &str) -> Str {
        Str::new(x)
    }

    #[test]
    fn an_id_keeps_its_index_and_distinct_ids_get_distinct_ones() {
        let mut ids = NodeIds::default();
        let a = ids.intern(&s("host;a"));
        let b = ids.intern(&s("host;b"));
        assert_ne!(a, b);
        assert_eq!(ids.intern(&s("host;a")), a);
        assert_eq!(ids.get("host;b"), Some(b));
        assert_eq!(ids.name(a).as_str(), "host;a");
        assert_eq!(ids.len(), 2);
    }

    #[test]
    fn a_freed_index_goes_to_a_new_id_and_no_longer_names_the_old_one() {
        let mut ids = NodeIds::default();
        let a = ids.intern(&s("a"));
        let b = ids.intern(&s("b"));
        ids.free(a);
        assert_eq!(ids.get("a"), None);
        let c = ids.intern(&s("c"));
        assert_eq!(c, a, "the freed index is reused");
        assert_eq!(ids.name(c).as_str(), "c");
        assert_eq!(ids.name(b).as_str(), "b");
        // The old ID comes back under another index than the live ones.
        let a2 = ids.intern(&s("a"));
        assert!(a2 != b && a2 != c);
        assert_eq!(ids.bound(), 3);
    }

    #[test]
    fn freeing_twice_hands_the_index_out_once() {
        let mut ids = NodeIds::default();
        let a = ids.intern(&s("a"));
        ids.free(a);
        ids.free(a);
        let b = ids.intern(&s("b"));
        let c = ids.intern(&s("c"));
        assert_ne!(b, c, "a doubly freed index must not name two live IDs");
    }

    #[test]
    fn random_interning_and_freeing_never_aliases_a_live_id() {
        // A small deterministic generator: IDs come and go, and every live ID keeps
        // an index of its own that names it.
        let mut ids = NodeIds::default();
        let mut live: std::collections::BTreeMap<String, NodeIx> = Default::default();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let name = format!("ep;{}", x % 300);
            if x.is_multiple_of(3) {
                if let Some(ix) = live.remove(&name) {
                    ids.free(ix);
                }
            } else {
                let ix = ids.intern(&s(&name));
                assert_eq!(*live.entry(name.clone()).or_insert(ix), ix);
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for (name, ix) in &live {
            assert!(seen.insert(*ix), "two live IDs share index {ix:?}");
            assert_eq!(ids.name(*ix).as_str(), name);
            assert_eq!(ids.get(name), Some(*ix));
        }
        assert_eq!(ids.len(), live.len());
        assert!(ids.bound() <= 300);
    }

    #[test]
    fn an_ix_vec_reads_defaults_where_nothing_was_set() {
        let mut ids = NodeIds::default();
        let a = ids.intern(&s("a"));
        let b = ids.intern(&s("b"));
        let mut v: IxVec<Vec<u32>> = IxVec::default();
        assert!(v.get(b).is_empty());
        v.get_mut(b).push(7);
        assert_eq!(v.get(b), &vec![7]);
        assert!(v.get(a).is_empty());
        assert_eq!(v.take(b), vec![7]);
        assert!(v.get(b).is_empty());
    }
}
