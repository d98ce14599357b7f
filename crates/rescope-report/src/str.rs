//! `Str`: the shared, immutable string used for every key, ID and value in a report.
//!
//! Reports repeat the same strings over and over (`host_node_id`, `pid`, the host's node
//! ID on every process, …). Decoding is dominated by allocation, so while a decode is in
//! progress every string goes through a per-thread interner: the second `host_node_id`
//! costs a hash lookup and a reference-count increment instead of an allocation. Outside
//! a decode, `Str` is an ordinary `Arc<str>`. Cloning is always cheap, which matters in
//! the app, where merged reports share most of their strings with the reports they came
//! from.

use std::borrow::Borrow;
use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

/// An immutable, reference-counted string. Compares, hashes and orders like `str`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Str(Arc<str>);

// Equality already looks at the pointers first (`Arc`'s `Eq`); ordering does too, so
// that a search ending on the very copy it looks for does not compare the bytes.
impl Ord for Str {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        if Arc::ptr_eq(&self.0, &other.0) {
            std::cmp::Ordering::Equal
        } else {
            self.0.cmp(&other.0)
        }
    }
}

impl PartialOrd for Str {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Str {
    /// Builds a `Str`, going through the interner when a decode is in progress.
    pub fn new(s: &str) -> Self {
        INTERNER.with(|cell| match cell.borrow_mut().as_mut() {
            Some(interner) => interner.intern(s),
            None => Str(Arc::from(s)),
        })
    }

    /// The empty string (shared, no allocation after the first call on a thread).
    pub fn empty() -> Self {
        EMPTY.with(Clone::clone)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

thread_local! {
    static EMPTY: Str = Str(Arc::from(""));
    static INTERNER: RefCell<Option<Interner>> = const { RefCell::new(None) };
}

/// Strings longer than this are rarely repeated (command lines, descriptions) and are
/// not worth hashing.
const MAX_INTERNED_LEN: usize = 128;

struct Interner {
    set: HashSet<Str>,
}

impl Interner {
    fn intern(&mut self, s: &str) -> Str {
        if s.len() > MAX_INTERNED_LEN {
            return Str(Arc::from(s));
        }
        if let Some(found) = self.set.get(s) {
            return found.clone();
        }
        let new = Str(Arc::from(s));
        self.set.insert(new.clone());
        new
    }
}

/// While alive, strings built on this thread are interned. Dropping it frees the table
/// (strings already handed out stay valid). Nested scopes share the outer table.
#[derive(Debug)]
pub struct InternScope {
    owner: bool,
}

impl InternScope {
    pub fn enter() -> Self {
        INTERNER.with(|cell| {
            let mut slot = cell.borrow_mut();
            if slot.is_some() {
                InternScope { owner: false }
            } else {
                *slot = Some(Interner {
                    set: HashSet::with_capacity(1024),
                });
                InternScope { owner: true }
            }
        })
    }
}

impl Drop for InternScope {
    fn drop(&mut self) {
        if self.owner {
            INTERNER.with(|cell| *cell.borrow_mut() = None);
        }
    }
}

impl Default for Str {
    fn default() -> Self {
        Str::empty()
    }
}

impl Deref for Str {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Str {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for Str {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Str {
    fn from(s: &str) -> Self {
        Str::new(s)
    }
}

impl From<String> for Str {
    fn from(s: String) -> Self {
        Str(Arc::from(s))
    }
}

impl From<&String> for Str {
    fn from(s: &String) -> Self {
        Str::new(s)
    }
}

impl PartialEq<str> for Str {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for Str {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

impl fmt::Debug for Str {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for Str {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl serde::Serialize for Str {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Str {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Str;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Str, E> {
                Ok(Str::new(v))
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Str, E> {
                std::str::from_utf8(v)
                    .map(Str::new)
                    .map_err(|_| E::custom("string is not valid UTF-8"))
            }
        }
        deserializer.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interned_strings_share_storage_only_inside_a_scope() {
        let a = Str::new("host_node_id");
        let b = Str::new("host_node_id");
        assert!(!Arc::ptr_eq(&a.0, &b.0));
        {
            let _scope = InternScope::enter();
            let c = Str::new("host_node_id");
            let d = Str::new("host_node_id");
            assert!(Arc::ptr_eq(&c.0, &d.0));
            let long = "x".repeat(MAX_INTERNED_LEN + 1);
            assert!(!Arc::ptr_eq(&Str::new(&long).0, &Str::new(&long).0));
        }
        let e = Str::new("host_node_id");
        let f = Str::new("host_node_id");
        assert!(!Arc::ptr_eq(&e.0, &f.0));
    }

    #[test]
    fn nested_scopes_keep_the_outer_table() {
        let _outer = InternScope::enter();
        let a = Str::new("pid");
        {
            let _inner = InternScope::enter();
        }
        let b = Str::new("pid");
        assert!(Arc::ptr_eq(&a.0, &b.0));
    }
}
