//! The Rescope report model.
//!
//! A [`Report`] is what a probe publishes, a plugin returns and the app merges: every
//! topology (processes, containers, hosts, connection end points, Kubernetes objects, …)
//! with its nodes, their metadata, metrics and edges, plus how to present them. The
//! model, its merge rules and its wire formats are compatible with Weave Scope in both
//! directions (see `protocol.md` in the design documents).
//!
//! This crate does no IO: no files, no sockets, no async runtime.
//!
//! ```
//! use rescope_report::{Report, Node, TopologyKind, GoTime, id, codec};
//!
//! let now = GoTime::now();
//! let mut report = Report::empty();
//! let host = id::host_id("web-1");
//! report[TopologyKind::Host].add_node(
//!     Node::new(host.as_str())
//!         .with_topology("host")
//!         .with_latest("host_name", now, "web-1"),
//! );
//! let wire = codec::encode(&report, codec::Encoding { format: codec::Format::Msgpack, gzip: true });
//! let back = codec::decode(&wire).expect("our own output decodes");
//! assert_eq!(back, report);
//! ```

pub mod codec;
pub mod delta;
pub mod fasthash;
pub mod id;
pub mod merge;
pub mod node;
pub mod plugin;
pub mod report;
pub mod secret;
pub mod sorted;
pub mod str;
pub mod summary;
pub mod synthetic;
pub mod time;
pub mod topology;
pub mod upgrade;
pub mod validate;
pub mod xfer;

pub use node::{Children, LatestEntry, Metric, Metrics, Node, Sample};
pub use plugin::{PluginSpec, PluginSpecs};
pub use report::{DnsRecord, Report, Sampling};
pub use sorted::{Sets, SortedMap, StringSet};
pub use str::Str;
pub use time::GoTime;
pub use topology::{
    Column, Control, MetadataTemplate, MetricTemplate, TableTemplate, Topology, TopologyKind,
};
