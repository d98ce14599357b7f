//! Reading reports: serde `Deserialize` for the model, shared by the JSON and msgpack
//! decoders.
//!
//! Decoding follows Scope's rules: keys match case-sensitively and unknown keys are
//! ignored; `null` is the same as absent or empty for every collection (and for
//! strings); a report starts from [`Report::empty`] and the decoded data is laid over it.
//! Legacy inputs are converted here and nowhere else: node `latestControls` and
//! `counters`, the top-level `nodes` typo for `DNS`, metric `first`/`last`.
//!
//! Pre-allocation trusts the input's length headers only up to a small bound, so a
//! msgpack header claiming four billion entries costs nothing until the entries exist.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::node::{ACTIVE_CONTROLS, COUNTER_PREFIX, LatestEntry, Metric, Node, Sample};
use crate::plugin::PluginSpec;
use crate::report::{DnsRecord, Report, Sampling};
use crate::sorted::{SortedMap, StringSet};
use crate::str::Str;
use crate::time::GoTime;
use crate::topology::{
    Column, Control, MetadataTemplate, MetricTemplate, TableTemplate, Topology, TopologyKind,
};

/// Upper bound on pre-allocation from a length header.
const MAX_PREALLOC: usize = 1024;
/// How deeply `children` may nest. Rendered nodes nest one or two levels.
pub const MAX_CHILD_DEPTH: usize = 32;

fn cap(hint: Option<usize>) -> usize {
    hint.unwrap_or(0).min(MAX_PREALLOC)
}

thread_local! {
    static CHILD_DEPTH: Cell<usize> = const { Cell::new(0) };
}

/// A map key as a borrowed or owned string, accepting `str` and `bin` in msgpack.
struct Key<'de>(std::borrow::Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(v.into()))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(v.to_owned().into()))
            }
            fn visit_borrowed_bytes<E: de::Error>(self, v: &'de [u8]) -> Result<Key<'de>, E> {
                std::str::from_utf8(v)
                    .map(|s| Key(s.into()))
                    .map_err(|_| E::custom("key is not valid UTF-8"))
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Key<'de>, E> {
                std::str::from_utf8(v)
                    .map(|s| Key(s.to_owned().into()))
                    .map_err(|_| E::custom("key is not valid UTF-8"))
            }
        }
        d.deserialize_str(V)
    }
}

/// `T`, with `null` read as `T::default()`.
pub(crate) struct Nullable<T>(pub T);

impl<'de, T: Deserialize<'de> + Default> Deserialize<'de> for Nullable<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Option::<T>::deserialize(d).map(|o| Nullable(o.unwrap_or_default()))
    }
}

fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(d: D) -> Result<T, D::Error> {
    Nullable::<T>::deserialize(d).map(|n| n.0)
}

/// An integer that may arrive as a float with an integral value (plugins written in
/// languages without an integer type send `1.0`).
fn lenient_int<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = i64;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an integer")
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<i64, E> {
            Ok(v)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<i64, E> {
            i64::try_from(v).map_err(|_| E::custom(format!("integer {v} is too large")))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<i64, E> {
            if v.fract() == 0.0 && v.abs() < 9.2e18 {
                Ok(v as i64)
            } else {
                Err(E::invalid_type(de::Unexpected::Float(v), &self))
            }
        }
        fn visit_unit<E: de::Error>(self) -> Result<i64, E> {
            Ok(0)
        }
        fn visit_none<E: de::Error>(self) -> Result<i64, E> {
            Ok(0)
        }
    }
    d.deserialize_any(V)
}

fn nullable_f64<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Option::<f64>::deserialize(d).map(|v| v.unwrap_or(0.0))
}

// ---------------------------------------------------------------------------------------
// Time
// ---------------------------------------------------------------------------------------

impl<'de> Deserialize<'de> for GoTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // The visitor hands back a time error as a value: msgpack's decoder replaces any
        // error raised while visiting a non-UTF-8 string (which Go's binary times are)
        // with a generic one, and "out of range" is the message worth keeping.
        struct V {
            binary: bool,
        }
        type Parsed = Result<GoTime, crate::time::TimeError>;
        impl Visitor<'_> for V {
            type Value = Parsed;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                if self.binary {
                    f.write_str("a Go binary time or an RFC 3339 string")
                } else {
                    f.write_str("an RFC 3339 timestamp")
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Parsed, E> {
                if self.binary && matches!(v.as_bytes().first(), Some(1 | 2)) {
                    return self.visit_bytes(v.as_bytes());
                }
                Ok(GoTime::parse_rfc3339(v))
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Parsed, E> {
                Ok(GoTime::from_binary(v))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Parsed, E> {
                Ok(Ok(GoTime::ZERO))
            }
            fn visit_none<E: de::Error>(self) -> Result<Parsed, E> {
                Ok(Ok(GoTime::ZERO))
            }
        }
        let binary = !d.is_human_readable();
        d.deserialize_any(V { binary })?.map_err(de::Error::custom)
    }
}

// ---------------------------------------------------------------------------------------
// Small structs
// ---------------------------------------------------------------------------------------

impl<'de> Deserialize<'de> for StringSet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StringSet;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of strings")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StringSet, A::Error> {
                let mut items: Vec<Str> = Vec::with_capacity(cap(seq.size_hint()));
                while let Some(s) = seq.next_element::<Nullable<Str>>()? {
                    items.push(s.0);
                }
                Ok(items.into_iter().collect())
            }
            fn visit_unit<E: de::Error>(self) -> Result<StringSet, E> {
                Ok(StringSet::new())
            }
            fn visit_none<E: de::Error>(self) -> Result<StringSet, E> {
                Ok(StringSet::new())
            }
        }
        d.deserialize_any(V)
    }
}

/// Reads a map with `Str` keys into a [`SortedMap`]; a repeated key keeps the last value.
struct SortedMapVisitor<V>(PhantomData<V>);

impl<'de, V: Deserialize<'de>> Visitor<'de> for SortedMapVisitor<V> {
    type Value = SortedMap<V>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SortedMap<V>, A::Error> {
        let mut entries = Vec::with_capacity(cap(map.size_hint()));
        while let Some((k, v)) = map.next_entry::<Str, V>()? {
            entries.push((k, v));
        }
        Ok(SortedMap::from_unsorted(entries))
    }
    fn visit_unit<E: de::Error>(self) -> Result<SortedMap<V>, E> {
        Ok(SortedMap::new())
    }
    fn visit_none<E: de::Error>(self) -> Result<SortedMap<V>, E> {
        Ok(SortedMap::new())
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for SortedMap<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(SortedMapVisitor(PhantomData))
    }
}

#[derive(Deserialize)]
struct LatestEntryWire {
    #[serde(default, deserialize_with = "nullable")]
    timestamp: GoTime,
    #[serde(default, deserialize_with = "nullable")]
    value: Str,
}

impl<'de> Deserialize<'de> for LatestEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = LatestEntryWire::deserialize(d)?;
        Ok(LatestEntry {
            timestamp: w.timestamp,
            value: w.value,
        })
    }
}

#[derive(Deserialize)]
struct SampleWire {
    #[serde(default, deserialize_with = "nullable")]
    date: GoTime,
    #[serde(default, deserialize_with = "nullable_f64")]
    value: f64,
}

#[derive(Deserialize)]
struct MetricWire {
    #[serde(default, deserialize_with = "nullable")]
    samples: Vec<SampleWire>,
    #[serde(default, deserialize_with = "nullable_f64")]
    min: f64,
    #[serde(default, deserialize_with = "nullable_f64")]
    max: f64,
}

impl<'de> Deserialize<'de> for Metric {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = MetricWire::deserialize(d)?;
        let mut samples: Vec<Sample> = w
            .samples
            .into_iter()
            .map(|s| Sample {
                date: s.date,
                value: s.value,
            })
            .collect();
        // Samples are sorted by date with unique dates; repair input that is not.
        if !samples.windows(2).all(|p| p[0].date < p[1].date) {
            samples.sort_by_key(|s| s.date);
            samples.dedup_by_key(|s| s.date);
        }
        Ok(Metric {
            samples,
            min: w.min,
            max: w.max,
        })
    }
}

macro_rules! wire_struct {
    ($target:ident, $wire:ident { $( $field:ident : $ty:ty = $name:literal via $with:literal ),* $(,)? }) => {
        #[derive(Deserialize, Default)]
        #[serde(default)]
        struct $wire { $( #[serde(rename = $name, deserialize_with = $with)] $field: $ty, )* }
        impl<'de> Deserialize<'de> for $target {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let w = $wire::deserialize(d)?;
                Ok($target { $( $field: w.$field, )* })
            }
        }
    };
}

wire_struct!(Control, ControlWire {
    id: Str = "id" via "nullable",
    human: Str = "human" via "nullable",
    icon: Str = "icon" via "nullable",
    confirmation: Str = "confirmation" via "nullable",
    rank: i64 = "rank" via "lenient_int",
    probe_id: Str = "probeId" via "nullable",
});

wire_struct!(MetadataTemplate, MetadataTemplateWire {
    id: Str = "id" via "nullable",
    label: Str = "label" via "nullable",
    truncate: i64 = "truncate" via "lenient_int",
    data_type: Str = "dataType" via "nullable",
    priority: f64 = "priority" via "nullable_f64",
    from: Str = "from" via "nullable",
});

wire_struct!(MetricTemplate, MetricTemplateWire {
    id: Str = "id" via "nullable",
    label: Str = "label" via "nullable",
    format: Str = "format" via "nullable",
    group: Str = "group" via "nullable",
    priority: f64 = "priority" via "nullable_f64",
});

wire_struct!(Column, ColumnWire {
    id: Str = "id" via "nullable",
    label: Str = "label" via "nullable",
    data_type: Str = "dataType" via "nullable",
});

wire_struct!(TableTemplate, TableTemplateWire {
    id: Str = "id" via "nullable",
    label: Str = "label" via "nullable",
    prefix: Str = "prefix" via "nullable",
    table_type: Str = "type" via "nullable",
    columns: Vec<Column> = "columns" via "nullable",
    fixed_rows: BTreeMap<Str, Str> = "fixedRows" via "nullable",
});

wire_struct!(PluginSpec, PluginSpecWire {
    id: Str = "id" via "nullable",
    label: Str = "label" via "nullable",
    description: Str = "description" via "nullable",
    interfaces: Vec<Str> = "interfaces" via "nullable",
    api_version: Str = "api_version" via "nullable",
    status: Str = "status" via "nullable",
});

wire_struct!(DnsRecord, DnsRecordWire {
    forward: StringSet = "forward" via "nullable",
    reverse: StringSet = "reverse" via "nullable",
});

#[derive(Deserialize, Default)]
#[serde(default)]
struct SamplingWire {
    #[serde(rename = "Count", deserialize_with = "lenient_int")]
    count: i64,
    #[serde(rename = "Total", deserialize_with = "lenient_int")]
    total: i64,
}

// ---------------------------------------------------------------------------------------
// Node
// ---------------------------------------------------------------------------------------

#[derive(Deserialize)]
struct LegacyControlState {
    #[serde(default)]
    dead: bool,
}

#[derive(Deserialize)]
struct LegacyControlEntry {
    #[serde(default, deserialize_with = "nullable")]
    timestamp: GoTime,
    value: Option<LegacyControlState>,
}

/// A list of child nodes, keyed by their IDs.
struct Children(BTreeMap<Str, Node>);

impl<'de> Deserialize<'de> for Children {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Children;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of nodes")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Children, A::Error> {
                let mut out = BTreeMap::new();
                while let Some(child) = seq.next_element::<Node>()? {
                    out.insert(child.id.clone(), child);
                }
                Ok(Children(out))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Children, E> {
                Ok(Children(BTreeMap::new()))
            }
            fn visit_none<E: de::Error>(self) -> Result<Children, E> {
                Ok(Children(BTreeMap::new()))
            }
        }
        let depth = CHILD_DEPTH.with(|c| c.get());
        if depth >= MAX_CHILD_DEPTH {
            return Err(de::Error::custom(format!(
                "node children nest deeper than {MAX_CHILD_DEPTH} levels"
            )));
        }
        CHILD_DEPTH.with(|c| c.set(depth + 1));
        let result = d.deserialize_any(V);
        CHILD_DEPTH.with(|c| c.set(depth));
        result
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Node;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a node")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
                let mut node = Node::default();
                let mut legacy_controls: Option<SortedMap<LegacyControlEntry>> = None;
                let mut counters: Option<BTreeMap<Str, Nullable<i64>>> = None;
                while let Some(key) = map.next_key::<Key<'de>>()? {
                    match &*key.0 {
                        "id" => node.id = map.next_value::<Nullable<Str>>()?.0,
                        "topology" => node.topology = map.next_value::<Nullable<Str>>()?.0,
                        "sets" => node.sets = map.next_value()?,
                        "adjacency" => node.adjacency = map.next_value()?,
                        "latest" => node.latest = map.next_value()?,
                        "metrics" => node.metrics = map.next_value()?,
                        "parents" => node.parents = map.next_value()?,
                        "children" => node.children = map.next_value::<Children>()?.0.into(),
                        "latestControls" => legacy_controls = Some(map.next_value()?),
                        "counters" => counters = map.next_value::<Option<_>>()?,
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                if let Some(controls) = legacy_controls.filter(|c| !c.is_empty()) {
                    apply_legacy_controls(&mut node, &controls);
                }
                if let Some(counters) = counters {
                    apply_legacy_counters(&mut node, counters);
                }
                Ok(node)
            }
        }
        d.deserialize_map(V)
    }
}

/// `latestControls` (`{id: {timestamp, value: {dead}}}`) → `latest.active_controls`.
fn apply_legacy_controls(node: &mut Node, controls: &SortedMap<LegacyControlEntry>) {
    let live: Vec<(&Str, &LegacyControlEntry)> = controls
        .iter()
        .filter(|(_, e)| !e.value.as_ref().is_some_and(|v| v.dead))
        .collect();
    let entry = LatestEntry {
        timestamp: live
            .iter()
            .map(|(_, e)| e.timestamp)
            .max()
            .unwrap_or(GoTime::ZERO),
        value: Str::from(
            live.iter()
                .map(|(k, _)| k.as_str())
                .collect::<Vec<_>>()
                .join(";"),
        ),
    };
    match node.latest.get_mut(ACTIVE_CONTROLS) {
        Some(existing) if existing.timestamp >= entry.timestamp => {}
        Some(existing) => *existing = entry,
        None => {
            node.latest.insert(ACTIVE_CONTROLS, entry);
        }
    }
}

/// `counters` (`{name: n}`) → `latest.count_<name>`, summed with any existing value.
fn apply_legacy_counters(node: &mut Node, counters: BTreeMap<Str, Nullable<i64>>) {
    let now = GoTime::now();
    for (name, n) in counters {
        let key = format!("{COUNTER_PREFIX}{name}");
        let existing = node
            .latest_value(&key)
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or(0);
        node.set_latest(&key, now, existing.saturating_add(n.0).to_string());
    }
}

// ---------------------------------------------------------------------------------------
// Topology and report
// ---------------------------------------------------------------------------------------

/// Lays a decoded topology over one that already has default presentation fields.
struct TopologyOverlay<'a>(&'a mut Topology);

impl<'de> DeserializeSeed<'de> for TopologyOverlay<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TopologyOverlay<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a topology")
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let t = self.0;
        while let Some(key) = map.next_key::<Key<'de>>()? {
            let keep_default = |slot: &mut Str, v: Str| {
                if !v.is_empty() {
                    *slot = v;
                }
            };
            match &*key.0 {
                "shape" => keep_default(&mut t.shape, map.next_value::<Nullable<Str>>()?.0),
                "tag" => keep_default(&mut t.tag, map.next_value::<Nullable<Str>>()?.0),
                "label" => keep_default(&mut t.label, map.next_value::<Nullable<Str>>()?.0),
                "label_plural" => {
                    keep_default(&mut t.label_plural, map.next_value::<Nullable<Str>>()?.0)
                }
                "nodes" => t.nodes = map.next_value::<Nullable<_>>()?.0,
                "controls" => t.controls = map.next_value::<Nullable<_>>()?.0,
                "metadata_templates" => t.metadata_templates = map.next_value::<Nullable<_>>()?.0,
                "metric_templates" => t.metric_templates = map.next_value::<Nullable<_>>()?.0,
                "table_templates" => t.table_templates = map.next_value::<Nullable<_>>()?.0,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for Report {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Report;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a report (a map of topologies)")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Report, A::Error> {
                let mut r = Report::empty();
                let mut legacy_dns: BTreeMap<Str, DnsRecord> = BTreeMap::new();
                while let Some(key) = map.next_key::<Key<'de>>()? {
                    if let Some(kind) = TopologyKind::from_wire_key(&key.0) {
                        map.next_value_seed(TopologyOverlay(r.topology_mut(kind)))?;
                        continue;
                    }
                    match &*key.0 {
                        "TS" => r.ts = map.next_value::<Nullable<GoTime>>()?.0,
                        "DNS" => r.dns = map.next_value::<Nullable<_>>()?.0,
                        "nodes" => legacy_dns = map.next_value::<Nullable<_>>()?.0,
                        "Sampling" => {
                            let s = map.next_value::<Nullable<SamplingWire>>()?.0;
                            r.sampling = Sampling {
                                count: u64::try_from(s.count).unwrap_or(0),
                                total: u64::try_from(s.total).unwrap_or(0),
                            };
                        }
                        "Window" => r.window = map.next_value_seed(LenientInt)?,
                        "Shortcut" => r.shortcut = map.next_value::<Nullable<bool>>()?.0,
                        "Plugins" => {
                            let specs = map.next_value::<Nullable<Vec<PluginSpec>>>()?.0;
                            r.plugins = specs.into_iter().map(|s| (s.id.clone(), s)).collect();
                        }
                        "ID" => r.id = map.next_value::<Nullable<Str>>()?.0,
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                if r.dns.is_empty() && !legacy_dns.is_empty() {
                    r.dns = legacy_dns;
                }
                Ok(r)
            }
        }
        d.deserialize_map(V)
    }
}

struct LenientInt;

impl<'de> DeserializeSeed<'de> for LenientInt {
    type Value = i64;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<i64, D::Error> {
        lenient_int(d)
    }
}

/// Only the `Plugins` list of a report, as sent: in order, duplicates kept.
#[derive(Deserialize, Default)]
pub(crate) struct PluginsAsSent {
    #[serde(rename = "Plugins", default, deserialize_with = "nullable")]
    pub plugins: Vec<PluginSpec>,
}
