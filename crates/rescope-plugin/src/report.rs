//! Building the report a plugin answers with.

use rescope_report::{GoTime, Metric, Node, Report, Sample, Str, TopologyKind, id};

use crate::template::{Control, MetadataTemplate, MetricTemplate, TableTemplate};

/// The report a plugin is filling in. Everything added is stamped with one time,
/// [`ReportBuilder::now`]. The server adds the plugin's spec when it sends the report.
#[derive(Debug, Clone)]
pub struct ReportBuilder {
    report: Report,
    now: GoTime,
    probe_id: Option<String>,
}

impl Default for ReportBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl ReportBuilder {
    /// An empty report stamped with the current time.
    pub fn new() -> Self {
        Self::at(GoTime::now())
    }

    /// An empty report stamped with `now` (for tests with fixed times).
    pub fn at(now: GoTime) -> Self {
        let mut report = Report::empty();
        report.ts = now;
        ReportBuilder {
            report,
            now,
            probe_id: None,
        }
    }

    pub(crate) fn for_probe(probe_id: Option<String>) -> Self {
        ReportBuilder {
            probe_id,
            ..Self::new()
        }
    }

    /// The time every value of this report is stamped with.
    pub fn now(&self) -> GoTime {
        self.now
    }

    /// The ID of the probe asking, from the request's `probe_id` query parameter.
    pub fn probe_id(&self) -> Option<&str> {
        self.probe_id.as_deref()
    }

    /// The host node of `host_id` (`<hostID>;<host>`); use [`crate::host_id`] for this
    /// machine.
    pub fn host(&mut self, host_id: &str) -> NodeBuilder<'_> {
        self.node(TopologyKind::Host, &id::host_id(host_id))
    }

    /// The node of process `pid` on `host_id` (`<hostID>;<pid>`).
    pub fn process(&mut self, host_id: &str, pid: u32) -> NodeBuilder<'_> {
        self.node(TopologyKind::Process, &id::process_id(host_id, pid))
    }

    /// The node of a container, by its full 64-hex ID (`<containerID>;<container>`).
    pub fn container(&mut self, container_id: &str) -> NodeBuilder<'_> {
        self.node(TopologyKind::Container, &id::container_id(container_id))
    }

    /// Any node, by topology and ID. To decorate something the probe reports, the ID
    /// must be the probe's (see `rescope_report::id`); other IDs make new nodes.
    pub fn node(&mut self, kind: TopologyKind, node_id: &str) -> NodeBuilder<'_> {
        let now = self.now;
        let topology = &mut self.report[kind];
        let node = topology
            .nodes
            .entry(Str::new(node_id))
            .or_insert_with(|| Node::new(node_id).with_topology(kind.name()));
        NodeBuilder { node, now }
    }

    /// The templates and controls of one topology.
    pub fn topology(&mut self, kind: TopologyKind) -> TopologyBuilder<'_> {
        TopologyBuilder {
            topology: &mut self.report[kind],
        }
    }

    /// The report so far.
    pub fn report(&self) -> &Report {
        &self.report
    }

    /// The report, for changes the builders do not cover.
    pub fn report_mut(&mut self) -> &mut Report {
        &mut self.report
    }

    pub fn into_report(self) -> Report {
        self.report
    }
}

/// Adds templates and control definitions to a topology. Templates are static, so
/// send them in every report; they merge with the built-in ones.
#[derive(Debug)]
pub struct TopologyBuilder<'a> {
    topology: &'a mut rescope_report::Topology,
}

impl TopologyBuilder<'_> {
    pub fn metric_template(self, template: MetricTemplate) -> Self {
        self.topology
            .metric_templates
            .insert(template.0.id.clone(), template.0);
        self
    }

    pub fn metadata_template(self, template: MetadataTemplate) -> Self {
        self.topology
            .metadata_templates
            .insert(template.0.id.clone(), template.0);
        self
    }

    pub fn table_template(self, template: TableTemplate) -> Self {
        self.topology
            .table_templates
            .insert(template.0.id.clone(), template.0);
        self
    }

    /// Defines a control. Nodes offer it with
    /// [`NodeBuilder::active_controls`]; the plugin's spec must be a
    /// [controller](crate::Spec::controller).
    pub fn control(self, control: Control) -> Self {
        self.topology
            .controls
            .insert(control.0.id.clone(), control.0);
        self
    }
}

/// Fills in one node. Methods chain: `r.host(&h).metric("x", 1.0, 100.0).latest("k", "v");`
#[derive(Debug)]
pub struct NodeBuilder<'a> {
    node: &'a mut Node,
    now: GoTime,
}

impl NodeBuilder<'_> {
    /// A metadata value (shown by a [`MetadataTemplate`] with the same ID).
    pub fn latest(self, key: &str, value: impl Into<Str>) -> Self {
        self.node.set_latest(key, self.now, value);
        self
    }

    /// The metric's current value, one sample at the report's time, drawn against
    /// `max` (100 for percentages, a capacity otherwise; 0 lets the UI scale it).
    /// The probe keeps recent samples, so one per report is enough.
    pub fn metric(self, id: &str, value: f64, max: f64) -> Self {
        let metric = Metric {
            samples: vec![Sample {
                date: self.now,
                value,
            }],
            min: value.min(0.0),
            max: max.max(value),
        };
        self.metric_with(id, metric)
    }

    /// A metric with several samples and an explicit range. Samples are sorted by
    /// time; of two with the same time the later one is kept.
    pub fn metric_samples(
        self,
        id: &str,
        samples: impl IntoIterator<Item = (GoTime, f64)>,
        min: f64,
        max: f64,
    ) -> Self {
        let mut samples: Vec<Sample> = samples
            .into_iter()
            .map(|(date, value)| Sample { date, value })
            .collect();
        samples.sort_by_key(|s| s.date);
        samples.reverse();
        samples.dedup_by_key(|s| s.date);
        samples.reverse();
        self.metric_with(id, Metric { samples, min, max })
    }

    /// A metric as the report model holds it.
    pub fn metric_with(self, id: &str, metric: Metric) -> Self {
        self.node.metrics.insert(id, metric);
        self
    }

    /// A multi-valued metadata entry (shown by a template
    /// [`from_sets`](MetadataTemplate::from_sets)).
    pub fn set<S: Into<Str>>(self, key: &str, values: impl IntoIterator<Item = S>) -> Self {
        for v in values {
            self.node.sets.add(key, v);
        }
        self
    }

    /// A row of a [property list](TableTemplate::property_list) table.
    pub fn table_row(self, prefix: &str, label: &str, value: impl Into<Str>) -> Self {
        let key = format!("{prefix}{label}");
        self.latest(&key, value)
    }

    /// A cell of a [multicolumn](TableTemplate::multicolumn) table.
    pub fn table_cell(self, prefix: &str, row: &str, column: &str, value: impl Into<Str>) -> Self {
        let key = format!("{prefix}{row}___{column}");
        self.latest(&key, value)
    }

    /// The controls this node offers now, by the IDs given to
    /// [`Control::new`]. Replaces any earlier list.
    pub fn active_controls<'c>(self, controls: impl IntoIterator<Item = &'c str>) -> Self {
        let joined = controls.into_iter().collect::<Vec<_>>().join(";");
        self.latest(rescope_report::node::ACTIVE_CONTROLS, joined)
    }

    /// Links the node to a parent, e.g. a process to its container.
    pub fn parent(self, kind: TopologyKind, parent_id: &str) -> Self {
        self.node.add_parent(kind.name(), parent_id);
        self
    }

    /// An edge to another node of the same topology.
    pub fn adjacent(self, node_id: &str) -> Self {
        self.node.add_adjacent(node_id);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> GoTime {
        GoTime::from_unix(secs, 0).expect("valid time")
    }

    #[test]
    fn typed_nodes_get_the_probes_ids_and_topologies() {
        let mut r = ReportBuilder::at(at(1_700_000_000));
        r.host("web-1").latest("k", "v");
        r.process("web-1", 42).latest("k", "v");
        r.container("abc").latest("k", "v");
        let report = r.into_report();
        assert!(
            report[TopologyKind::Host]
                .nodes
                .contains_key("web-1;<host>")
        );
        assert_eq!(
            report[TopologyKind::Process].nodes["web-1;42"].topology,
            "process"
        );
        assert_eq!(
            report[TopologyKind::Container].nodes["abc;<container>"].id,
            "abc;<container>"
        );
    }

    #[test]
    fn node_values_share_the_reports_time() {
        let now = at(1_700_000_000);
        let mut r = ReportBuilder::at(now);
        r.host("h")
            .metric("iowait", 3.5, 100.0)
            .latest("note", "x")
            .set("ips", ["10.0.0.2", "10.0.0.1"])
            .table_row("env_", "PATH", "/bin")
            .table_cell("disk_", "sda", "used", "12")
            .active_controls(["a", "b"])
            .parent(TopologyKind::Container, "c;<container>");
        let report = r.into_report();
        let node = &report[TopologyKind::Host].nodes["h;<host>"];
        let m = &node.metrics.get("iowait").expect("metric");
        assert_eq!((m.min, m.max), (0.0, 100.0));
        assert_eq!(
            m.samples,
            [Sample {
                date: now,
                value: 3.5
            }]
        );
        assert_eq!(node.latest.get("note").map(|e| e.timestamp), Some(now));
        assert!(node.latest.contains_key("env_PATH"));
        assert!(node.latest.contains_key("disk_sda___used"));
        assert_eq!(node.active_controls().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(
            node.sets
                .get("ips")
                .map(|s| s.iter().map(|v| v.to_string()).collect::<Vec<_>>()),
            Some(vec!["10.0.0.1".to_string(), "10.0.0.2".to_string()])
        );
        assert!(node.parents.get("container").is_some());
    }

    #[test]
    fn metric_samples_are_sorted_and_unique_by_time() {
        let mut r = ReportBuilder::at(at(10));
        r.host("h")
            .metric_samples("m", [(at(3), 3.0), (at(1), 1.0), (at(3), 4.0)], 0.0, 10.0);
        let report = r.into_report();
        let m = report[TopologyKind::Host].nodes["h;<host>"]
            .metrics
            .get("m")
            .expect("metric")
            .clone();
        let values: Vec<f64> = m.samples.iter().map(|s| s.value).collect();
        assert_eq!(values, [1.0, 4.0]);
    }
}
