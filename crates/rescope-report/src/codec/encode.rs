//! Writing reports. One description of the wire shape (field names, order, which
//! fields are omitted when empty and which are written as `null`) drives two back ends,
//! JSON and msgpack, so the two formats cannot drift apart.
//!
//! The msgpack back end writes what Scope's Go encoder writes: structs as maps, strings
//! in the `str` family only (never `str8` or `bin`), times as the 15-byte Go binary form
//! inside a raw string, floats as float64, integers in their smallest form.

use crate::node::{LatestEntry, Metric, Node};
use crate::plugin::PluginSpec;
use crate::report::{DnsRecord, Report};
use crate::sorted::{Sets, StringSet};
use crate::str::Str;
use crate::time::GoTime;
use crate::topology::{Column, Control, MetadataTemplate, MetricTemplate, TableTemplate, Topology};
use std::collections::BTreeMap;

/// The operations a wire format offers. Maps and arrays announce their length up front
/// (msgpack needs it); JSON ignores it.
pub(crate) trait Emit {
    fn begin_map(&mut self, len: usize);
    fn end_map(&mut self);
    fn begin_array(&mut self, len: usize);
    fn end_array(&mut self);
    fn key(&mut self, key: &str);
    fn str(&mut self, s: &str);
    fn time(&mut self, t: GoTime);
    fn int(&mut self, v: i64);
    fn uint(&mut self, v: u64);
    fn float(&mut self, v: f64);
    fn bool(&mut self, v: bool);
    fn null(&mut self);
}

// ---------------------------------------------------------------------------------------
// The wire shape
// ---------------------------------------------------------------------------------------

fn count(flags: &[bool]) -> usize {
    flags.iter().filter(|b| **b).count()
}

pub(crate) fn report<E: Emit>(e: &mut E, r: &Report) {
    let with_dns = !r.dns.is_empty();
    e.begin_map(1 + r.topologies().count() + usize::from(with_dns) + 5);
    e.key("TS");
    e.time(r.ts);
    for (kind, t) in r.topologies() {
        e.key(kind.wire_key());
        topology(e, t);
    }
    if with_dns {
        e.key("DNS");
        e.begin_map(r.dns.len());
        for (ip, rec) in &r.dns {
            e.key(ip);
            dns_record(e, rec);
        }
        e.end_map();
    }
    e.key("Sampling");
    e.begin_map(2);
    e.key("Count");
    e.uint(r.sampling.count);
    e.key("Total");
    e.uint(r.sampling.total);
    e.end_map();
    e.key("Window");
    e.int(r.window);
    e.key("Shortcut");
    e.bool(r.shortcut);
    e.key("Plugins");
    e.begin_array(r.plugins.len());
    for spec in r.plugins.values() {
        plugin_spec(e, spec);
    }
    e.end_array();
    e.key("ID");
    e.str(&r.id);
    e.end_map();
}

fn dns_record<E: Emit>(e: &mut E, rec: &DnsRecord) {
    e.begin_map(count(&[!rec.forward.is_empty(), !rec.reverse.is_empty()]));
    if !rec.forward.is_empty() {
        e.key("forward");
        string_list(e, &rec.forward);
    }
    if !rec.reverse.is_empty() {
        e.key("reverse");
        string_list(e, &rec.reverse);
    }
    e.end_map();
}

fn string_list<E: Emit>(e: &mut E, set: &StringSet) {
    e.begin_array(set.len());
    for s in set {
        e.str(s);
    }
    e.end_array();
}

fn opt_str<E: Emit>(e: &mut E, key: &str, value: &Str) {
    if !value.is_empty() {
        e.key(key);
        e.str(value);
    }
}

pub(crate) fn topology<E: Emit>(e: &mut E, t: &Topology) {
    let present = [
        !t.shape.is_empty(),
        !t.tag.is_empty(),
        !t.label.is_empty(),
        !t.label_plural.is_empty(),
        !t.nodes.is_empty(),
        !t.controls.is_empty(),
        !t.metadata_templates.is_empty(),
        !t.metric_templates.is_empty(),
        !t.table_templates.is_empty(),
    ];
    e.begin_map(count(&present));
    opt_str(e, "shape", &t.shape);
    opt_str(e, "tag", &t.tag);
    opt_str(e, "label", &t.label);
    opt_str(e, "label_plural", &t.label_plural);
    if !t.nodes.is_empty() {
        e.key("nodes");
        e.begin_map(t.nodes.len());
        for (id, n) in &t.nodes {
            e.key(id);
            node(e, n);
        }
        e.end_map();
    }
    map_of(e, "controls", &t.controls, control);
    map_of(
        e,
        "metadata_templates",
        &t.metadata_templates,
        metadata_template,
    );
    map_of(e, "metric_templates", &t.metric_templates, metric_template);
    map_of(e, "table_templates", &t.table_templates, table_template);
    e.end_map();
}

fn map_of<E: Emit, V>(e: &mut E, key: &str, map: &BTreeMap<Str, V>, write: fn(&mut E, &V)) {
    if map.is_empty() {
        return;
    }
    e.key(key);
    e.begin_map(map.len());
    for (k, v) in map {
        e.key(k);
        write(e, v);
    }
    e.end_map();
}

fn sets_or_null<E: Emit>(e: &mut E, sets: &Sets) {
    if sets.is_empty() {
        e.null();
        return;
    }
    e.begin_map(sets.len());
    for (k, v) in sets.iter() {
        e.key(k);
        string_list(e, v);
    }
    e.end_map();
}

pub(crate) fn node<E: Emit>(e: &mut E, n: &Node) {
    let present = [
        !n.id.is_empty(),
        !n.topology.is_empty(),
        true, // sets
        !n.adjacency.is_empty(),
        !n.latest.is_empty(),
        !n.metrics.is_empty(),
        true, // parents
        true, // children
    ];
    e.begin_map(count(&present));
    opt_str(e, "id", &n.id);
    opt_str(e, "topology", &n.topology);
    e.key("sets");
    sets_or_null(e, &n.sets);
    if !n.adjacency.is_empty() {
        e.key("adjacency");
        string_list(e, &n.adjacency);
    }
    if !n.latest.is_empty() {
        e.key("latest");
        e.begin_map(n.latest.len());
        for (k, entry) in n.latest.iter() {
            e.key(k);
            latest_entry(e, entry);
        }
        e.end_map();
    }
    if !n.metrics.is_empty() {
        e.key("metrics");
        e.begin_map(n.metrics.len());
        for (k, m) in n.metrics.iter() {
            e.key(k);
            metric(e, m);
        }
        e.end_map();
    }
    e.key("parents");
    sets_or_null(e, &n.parents);
    e.key("children");
    if n.children.is_empty() {
        e.null();
    } else {
        e.begin_array(n.children.len());
        for child in n.children.values() {
            node(e, child);
        }
        e.end_array();
    }
    e.end_map();
}

fn latest_entry<E: Emit>(e: &mut E, entry: &LatestEntry) {
    e.begin_map(2);
    e.key("timestamp");
    e.time(entry.timestamp);
    e.key("value");
    e.str(&entry.value);
    e.end_map();
}

pub(crate) fn metric<E: Emit>(e: &mut E, m: &Metric) {
    let with_samples = !m.samples.is_empty();
    e.begin_map(2 + usize::from(with_samples));
    if with_samples {
        e.key("samples");
        e.begin_array(m.samples.len());
        for s in &m.samples {
            e.begin_map(2);
            e.key("date");
            e.time(s.date);
            e.key("value");
            e.float(s.value);
            e.end_map();
        }
        e.end_array();
    }
    e.key("min");
    e.float(m.min);
    e.key("max");
    e.float(m.max);
    e.end_map();
}

fn control<E: Emit>(e: &mut E, c: &Control) {
    e.begin_map(4 + count(&[!c.confirmation.is_empty(), !c.probe_id.is_empty()]));
    e.key("id");
    e.str(&c.id);
    e.key("human");
    e.str(&c.human);
    e.key("icon");
    e.str(&c.icon);
    opt_str(e, "confirmation", &c.confirmation);
    e.key("rank");
    e.int(c.rank);
    opt_str(e, "probeId", &c.probe_id);
    e.end_map();
}

fn metadata_template<E: Emit>(e: &mut E, t: &MetadataTemplate) {
    e.begin_map(
        1 + count(&[
            !t.label.is_empty(),
            t.truncate != 0,
            !t.data_type.is_empty(),
            t.priority != 0.0,
            !t.from.is_empty(),
        ]),
    );
    e.key("id");
    e.str(&t.id);
    opt_str(e, "label", &t.label);
    if t.truncate != 0 {
        e.key("truncate");
        e.int(t.truncate);
    }
    opt_str(e, "dataType", &t.data_type);
    if t.priority != 0.0 {
        e.key("priority");
        e.float(t.priority);
    }
    opt_str(e, "from", &t.from);
    e.end_map();
}

fn metric_template<E: Emit>(e: &mut E, t: &MetricTemplate) {
    e.begin_map(
        1 + count(&[
            !t.label.is_empty(),
            !t.format.is_empty(),
            !t.group.is_empty(),
            t.priority != 0.0,
        ]),
    );
    e.key("id");
    e.str(&t.id);
    opt_str(e, "label", &t.label);
    opt_str(e, "format", &t.format);
    opt_str(e, "group", &t.group);
    if t.priority != 0.0 {
        e.key("priority");
        e.float(t.priority);
    }
    e.end_map();
}

fn table_template<E: Emit>(e: &mut E, t: &TableTemplate) {
    e.begin_map(6);
    e.key("id");
    e.str(&t.id);
    e.key("label");
    e.str(&t.label);
    e.key("prefix");
    e.str(&t.prefix);
    e.key("type");
    e.str(&t.table_type);
    e.key("columns");
    if t.columns.is_empty() {
        e.null();
    } else {
        e.begin_array(t.columns.len());
        for c in &t.columns {
            column(e, c);
        }
        e.end_array();
    }
    e.key("fixedRows");
    e.begin_map(t.fixed_rows.len());
    for (k, v) in &t.fixed_rows {
        e.key(k);
        e.str(v);
    }
    e.end_map();
    e.end_map();
}

fn column<E: Emit>(e: &mut E, c: &Column) {
    e.begin_map(3);
    e.key("id");
    e.str(&c.id);
    e.key("label");
    e.str(&c.label);
    e.key("dataType");
    e.str(&c.data_type);
    e.end_map();
}

pub(crate) fn plugin_spec<E: Emit>(e: &mut E, p: &PluginSpec) {
    e.begin_map(
        3 + count(&[
            !p.description.is_empty(),
            !p.api_version.is_empty(),
            !p.status.is_empty(),
        ]),
    );
    e.key("id");
    e.str(&p.id);
    e.key("label");
    e.str(&p.label);
    opt_str(e, "description", &p.description);
    e.key("interfaces");
    if p.interfaces.is_empty() {
        e.null();
    } else {
        e.begin_array(p.interfaces.len());
        for i in &p.interfaces {
            e.str(i);
        }
        e.end_array();
    }
    opt_str(e, "api_version", &p.api_version);
    opt_str(e, "status", &p.status);
    e.end_map();
}

// ---------------------------------------------------------------------------------------
// msgpack back end
// ---------------------------------------------------------------------------------------

/// Writes msgpack the way Scope's Go encoder does.
#[derive(Debug, Default)]
pub(crate) struct Msgpack {
    pub out: Vec<u8>,
}

impl Msgpack {
    fn raw_str_header(&mut self, len: usize) {
        if len < 32 {
            self.out.push(0xa0 | len as u8);
        } else if let Ok(len) = u16::try_from(len) {
            // Scope never writes str8 (0xd9): 32..=65535 bytes go in str16.
            self.out.push(0xda);
            self.out.extend_from_slice(&len.to_be_bytes());
        } else {
            self.out.push(0xdb);
            self.out.extend_from_slice(&(len as u32).to_be_bytes());
        }
    }

    fn container_header(&mut self, len: usize, fix: u8, w16: u8, w32: u8) {
        if len < 16 {
            self.out.push(fix | len as u8);
        } else if let Ok(len) = u16::try_from(len) {
            self.out.push(w16);
            self.out.extend_from_slice(&len.to_be_bytes());
        } else {
            self.out.push(w32);
            self.out.extend_from_slice(&(len as u32).to_be_bytes());
        }
    }
}

impl Emit for Msgpack {
    fn begin_map(&mut self, len: usize) {
        self.container_header(len, 0x80, 0xde, 0xdf);
    }
    fn end_map(&mut self) {}
    fn begin_array(&mut self, len: usize) {
        self.container_header(len, 0x90, 0xdc, 0xdd);
    }
    fn end_array(&mut self) {}
    fn key(&mut self, key: &str) {
        self.str(key);
    }
    fn str(&mut self, s: &str) {
        self.raw_str_header(s.len());
        self.out.extend_from_slice(s.as_bytes());
    }
    fn time(&mut self, t: GoTime) {
        let bytes = t.to_binary();
        self.raw_str_header(bytes.len());
        self.out.extend_from_slice(&bytes);
    }
    fn int(&mut self, v: i64) {
        if v >= 0 {
            self.uint(v as u64);
        } else if v >= -32 {
            self.out.push(v as i8 as u8);
        } else if let Ok(v) = i8::try_from(v) {
            self.out.push(0xd0);
            self.out.push(v as u8);
        } else if let Ok(v) = i16::try_from(v) {
            self.out.push(0xd1);
            self.out.extend_from_slice(&v.to_be_bytes());
        } else if let Ok(v) = i32::try_from(v) {
            self.out.push(0xd2);
            self.out.extend_from_slice(&v.to_be_bytes());
        } else {
            self.out.push(0xd3);
            self.out.extend_from_slice(&v.to_be_bytes());
        }
    }
    fn uint(&mut self, v: u64) {
        if v < 128 {
            self.out.push(v as u8);
        } else if let Ok(v) = u8::try_from(v) {
            self.out.push(0xcc);
            self.out.push(v);
        } else if let Ok(v) = u16::try_from(v) {
            self.out.push(0xcd);
            self.out.extend_from_slice(&v.to_be_bytes());
        } else if let Ok(v) = u32::try_from(v) {
            self.out.push(0xce);
            self.out.extend_from_slice(&v.to_be_bytes());
        } else {
            self.out.push(0xcf);
            self.out.extend_from_slice(&v.to_be_bytes());
        }
    }
    fn float(&mut self, v: f64) {
        self.out.push(0xcb);
        self.out.extend_from_slice(&v.to_bits().to_be_bytes());
    }
    fn bool(&mut self, v: bool) {
        self.out.push(if v { 0xc3 } else { 0xc2 });
    }
    fn null(&mut self) {
        self.out.push(0xc0);
    }
}

// ---------------------------------------------------------------------------------------
// JSON back end
// ---------------------------------------------------------------------------------------

/// Writes compact JSON (or indented, for people). Integral floats keep a `.0` as Go's
/// encoder writes them; non-finite floats, which JSON cannot express, become `null`.
#[derive(Debug, Default)]
pub(crate) struct Json {
    pub out: String,
    /// Per open container: how many items were written so far.
    stack: Vec<usize>,
    /// Set right after a key, so the value that follows gets no separator.
    after_key: bool,
    pretty: bool,
}

impl Json {
    pub fn new(pretty: bool) -> Self {
        Json {
            pretty,
            ..Json::default()
        }
    }

    fn newline(&mut self) {
        if self.pretty {
            self.out.push('\n');
            for _ in 0..self.stack.len() {
                self.out.push_str("  ");
            }
        }
    }

    fn before_value(&mut self) {
        if self.after_key {
            self.after_key = false;
            return;
        }
        if let Some(n) = self.stack.last_mut() {
            if *n > 0 {
                self.out.push(',');
            }
            *n += 1;
            self.newline();
        }
    }

    fn close(&mut self, c: char) {
        let had_items = self.stack.pop().unwrap_or(0) > 0;
        if had_items {
            self.newline();
        }
        self.out.push(c);
    }

    fn escaped(&mut self, s: &str) {
        self.out.push('"');
        let bytes = s.as_bytes();
        let mut start = 0;
        for (i, &b) in bytes.iter().enumerate() {
            let esc: Option<&str> = match b {
                b'"' => Some("\\\""),
                b'\\' => Some("\\\\"),
                b'\n' => Some("\\n"),
                b'\r' => Some("\\r"),
                b'\t' => Some("\\t"),
                0..=0x1f => None,
                _ => continue,
            };
            self.out.push_str(&s[start..i]);
            match esc {
                Some(e) => self.out.push_str(e),
                None => {
                    use std::fmt::Write;
                    let _ = write!(self.out, "\\u{b:04x}");
                }
            }
            start = i + 1;
        }
        self.out.push_str(&s[start..]);
        self.out.push('"');
    }
}

impl Emit for Json {
    fn begin_map(&mut self, _len: usize) {
        self.before_value();
        self.out.push('{');
        self.stack.push(0);
    }
    fn end_map(&mut self) {
        self.close('}');
    }
    fn begin_array(&mut self, _len: usize) {
        self.before_value();
        self.out.push('[');
        self.stack.push(0);
    }
    fn end_array(&mut self) {
        self.close(']');
    }
    fn key(&mut self, key: &str) {
        self.before_value();
        self.escaped(key);
        self.out.push(':');
        if self.pretty {
            self.out.push(' ');
        }
        self.after_key = true;
    }
    fn str(&mut self, s: &str) {
        self.before_value();
        self.escaped(s);
    }
    fn time(&mut self, t: GoTime) {
        self.before_value();
        self.out.push('"');
        t.write_rfc3339(&mut self.out);
        self.out.push('"');
    }
    fn int(&mut self, v: i64) {
        use std::fmt::Write;
        self.before_value();
        let _ = write!(self.out, "{v}");
    }
    fn uint(&mut self, v: u64) {
        use std::fmt::Write;
        self.before_value();
        let _ = write!(self.out, "{v}");
    }
    fn float(&mut self, v: f64) {
        use std::fmt::Write;
        self.before_value();
        if !v.is_finite() {
            self.out.push_str("null");
            return;
        }
        let start = self.out.len();
        let _ = write!(self.out, "{v}");
        if !self.out[start..].contains(['.', 'e', 'E']) {
            self.out.push_str(".0");
        }
    }
    fn bool(&mut self, v: bool) {
        self.before_value();
        self.out.push_str(if v { "true" } else { "false" });
    }
    fn null(&mut self) {
        self.before_value();
        self.out.push_str("null");
    }
}
