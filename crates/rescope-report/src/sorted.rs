//! Small sorted collections used inside nodes.
//!
//! A node's `latest`, `sets`, `parents` and `metrics` maps hold a handful of entries
//! each, and a busy report has tens of thousands of nodes. A sorted `Vec` costs one
//! allocation per map (a `BTreeMap` costs one per few entries), iterates in key order
//! (which the wire format wants) and merges in linear time.

use crate::str::Str;

/// A map from `Str` to `V`, kept sorted by key with unique keys.
#[derive(Debug, Clone, PartialEq)]
pub struct SortedMap<V> {
    entries: Vec<(Str, V)>,
}

impl<V> Default for SortedMap<V> {
    fn default() -> Self {
        SortedMap {
            entries: Vec::new(),
        }
    }
}

impl<V> SortedMap<V> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a map from entries in any order; for a repeated key the last entry wins.
    pub fn from_unsorted(mut entries: Vec<(Str, V)>) -> Self {
        if !entries.windows(2).all(|w| w[0].0 < w[1].0) {
            // Stable sort keeps the input order among equal keys; keep the last of each run.
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            let mut out: Vec<(Str, V)> = Vec::with_capacity(entries.len());
            for (k, v) in entries {
                match out.last_mut() {
                    Some(last) if last.0 == k => *last = (k, v),
                    _ => out.push((k, v)),
                }
            }
            entries = out;
        }
        SortedMap { entries }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn position(&self, key: &str) -> Result<usize, usize> {
        self.entries.binary_search_by(|(k, _)| k.as_str().cmp(key))
    }

    pub fn get(&self, key: &str) -> Option<&V> {
        self.position(key).ok().map(|i| &self.entries[i].1)
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut V> {
        match self.position(key) {
            Ok(i) => Some(&mut self.entries[i].1),
            Err(_) => None,
        }
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.position(key).is_ok()
    }

    /// Inserts or replaces; returns the previous value.
    pub fn insert(&mut self, key: impl Into<Str>, value: V) -> Option<V> {
        let key = key.into();
        match self.position(&key) {
            Ok(i) => Some(std::mem::replace(&mut self.entries[i].1, value)),
            Err(i) => {
                self.entries.insert(i, (key, value));
                None
            }
        }
    }

    /// The value for `key`, inserting `make()` first if absent.
    pub fn get_or_insert_with(&mut self, key: &str, make: impl FnOnce() -> V) -> &mut V {
        let i = match self.position(key) {
            Ok(i) => i,
            Err(i) => {
                self.entries.insert(i, (Str::new(key), make()));
                i
            }
        };
        &mut self.entries[i].1
    }

    pub fn remove(&mut self, key: &str) -> Option<V> {
        match self.position(key) {
            Ok(i) => Some(self.entries.remove(i).1),
            Err(_) => None,
        }
    }

    pub fn retain(&mut self, mut keep: impl FnMut(&Str, &mut V) -> bool) {
        self.entries.retain_mut(|(k, v)| keep(k, v));
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&Str, &V)> + DoubleEndedIterator {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    pub fn iter_mut(&mut self) -> impl ExactSizeIterator<Item = (&Str, &mut V)> {
        self.entries.iter_mut().map(|(k, v)| (&*k, v))
    }

    pub fn keys(&self) -> impl ExactSizeIterator<Item = &Str> {
        self.entries.iter().map(|(k, _)| k)
    }

    pub fn values(&self) -> impl ExactSizeIterator<Item = &V> {
        self.entries.iter().map(|(_, v)| v)
    }

    /// Merges `other` into `self`: keys only in `other` are cloned in, shared keys are
    /// combined with `both(key, mine, theirs)`. Linear in the size of both maps.
    pub fn merge_with(&mut self, other: &Self, mut both: impl FnMut(&str, &mut V, &V))
    where
        V: Clone,
    {
        if other.entries.is_empty() {
            return;
        }
        if self.entries.is_empty() {
            self.entries = other.entries.clone();
            return;
        }
        let mine = std::mem::take(&mut self.entries);
        let mut out = Vec::with_capacity(mine.len().max(other.entries.len()));
        let mut theirs = other.entries.iter().peekable();
        for (k, mut v) in mine {
            while let Some((tk, tv)) = theirs.next_if(|(tk, _)| *tk < k) {
                out.push((tk.clone(), tv.clone()));
            }
            if let Some((_, tv)) = theirs.next_if(|(tk, _)| *tk == k) {
                both(&k, &mut v, tv);
            }
            out.push((k, v));
        }
        out.extend(theirs.map(|(k, v)| (k.clone(), v.clone())));
        self.entries = out;
    }
}

impl<V> FromIterator<(Str, V)> for SortedMap<V> {
    fn from_iter<I: IntoIterator<Item = (Str, V)>>(iter: I) -> Self {
        Self::from_unsorted(iter.into_iter().collect())
    }
}

impl<V> IntoIterator for SortedMap<V> {
    type Item = (Str, V);
    type IntoIter = std::vec::IntoIter<(Str, V)>;
    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

/// A sorted set of unique strings (Scope's `StringSet` and `IDList`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StringSet {
    items: Vec<Str>,
}

impl StringSet {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn contains(&self, item: &str) -> bool {
        self.items
            .binary_search_by(|s| s.as_str().cmp(item))
            .is_ok()
    }

    /// Adds one item; returns whether it was new.
    pub fn insert(&mut self, item: impl Into<Str>) -> bool {
        let item = item.into();
        match self.items.binary_search(&item) {
            Ok(_) => false,
            Err(i) => {
                self.items.insert(i, item);
                true
            }
        }
    }

    pub fn remove(&mut self, item: &str) -> bool {
        match self.items.binary_search_by(|s| s.as_str().cmp(item)) {
            Ok(i) => {
                self.items.remove(i);
                true
            }
            Err(_) => false,
        }
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = &Str> + DoubleEndedIterator {
        self.items.iter()
    }

    pub fn first(&self) -> Option<&Str> {
        self.items.first()
    }

    pub fn as_slice(&self) -> &[Str] {
        &self.items
    }

    /// Sorted union, in linear time.
    pub fn union_with(&mut self, other: &StringSet) {
        if other.items.is_empty() || self.items == other.items {
            return;
        }
        if self.items.is_empty() {
            self.items = other.items.clone();
            return;
        }
        let mine = std::mem::take(&mut self.items);
        let mut out = Vec::with_capacity(mine.len() + other.items.len());
        let (mut a, mut b) = (mine.into_iter().peekable(), other.items.iter().peekable());
        loop {
            match (a.peek(), b.peek()) {
                (Some(x), Some(y)) => match x.cmp(y) {
                    std::cmp::Ordering::Less => out.extend(a.next()),
                    std::cmp::Ordering::Greater => out.extend(b.next().cloned()),
                    std::cmp::Ordering::Equal => {
                        out.extend(a.next());
                        b.next();
                    }
                },
                (Some(_), None) => out.extend(a.by_ref()),
                (None, Some(_)) => out.extend(b.by_ref().cloned()),
                (None, None) => break,
            }
        }
        self.items = out;
    }
}

impl<S: Into<Str>> FromIterator<S> for StringSet {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> Self {
        let mut items: Vec<Str> = iter.into_iter().map(Into::into).collect();
        if !items.windows(2).all(|w| w[0] < w[1]) {
            items.sort();
            items.dedup();
        }
        StringSet { items }
    }
}

impl<'a> IntoIterator for &'a StringSet {
    type Item = &'a Str;
    type IntoIter = std::slice::Iter<'a, Str>;
    fn into_iter(self) -> Self::IntoIter {
        self.items.iter()
    }
}

/// A node's `sets` or `parents`: key → sorted set of strings.
pub type Sets = SortedMap<StringSet>;

impl Sets {
    /// Adds `value` to the set under `key`.
    pub fn add(&mut self, key: &str, value: impl Into<Str>) {
        self.get_or_insert_with(key, StringSet::new).insert(value);
    }

    /// Key-wise union with a sorted union per key.
    pub fn union_with(&mut self, other: &Sets) {
        self.merge_with(other, |_, mine, theirs| mine.union_with(theirs));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_unsorted_keeps_the_last_duplicate() {
        let m = SortedMap::from_unsorted(vec![
            (Str::new("b"), 1),
            (Str::new("a"), 2),
            (Str::new("b"), 3),
        ]);
        assert_eq!(
            m.iter().map(|(k, v)| (k.as_str(), *v)).collect::<Vec<_>>(),
            [("a", 2), ("b", 3)]
        );
    }

    #[test]
    fn merge_with_interleaves_and_combines_shared_keys() {
        let mut a: SortedMap<i32> = [("a", 1), ("c", 3), ("e", 5)]
            .into_iter()
            .map(|(k, v)| (Str::new(k), v))
            .collect();
        let b: SortedMap<i32> = [("b", 20), ("c", 30), ("f", 60)]
            .into_iter()
            .map(|(k, v)| (Str::new(k), v))
            .collect();
        a.merge_with(&b, |_, x, y| *x += *y);
        let got: Vec<_> = a.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        assert_eq!(got, [("a", 1), ("b", 20), ("c", 33), ("e", 5), ("f", 60)]);
    }

    #[test]
    fn string_set_union_is_sorted_and_unique() {
        let mut a: StringSet = ["z", "a", "m", "a"].into_iter().collect();
        let b: StringSet = ["b", "m", "zz"].into_iter().collect();
        a.union_with(&b);
        let got: Vec<_> = a.iter().map(|s| s.as_str()).collect();
        assert_eq!(got, ["a", "b", "m", "z", "zz"]);
        assert!(a.contains("zz"));
        assert!(!a.contains("y"));
    }
}
