//! Templates and control definitions: how the UI shows a plugin's values and which
//! buttons it draws. Each converts into the report model's wire type.

use rescope_report::topology::{self as model, MULTICOLUMN_TABLE, PROPERTY_LIST};
use rescope_report::{Column, Str};

/// How a metric's value is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MetricFormat {
    /// A plain number with two decimals.
    #[default]
    Plain,
    /// A percentage (`12.50%`); give the metric a maximum of 100.
    Percent,
    /// Bytes, printed as kB, MB, …
    Filesize,
    /// A whole number.
    Integer,
}

impl MetricFormat {
    fn wire(self) -> &'static str {
        match self {
            MetricFormat::Plain => "",
            MetricFormat::Percent => "percent",
            MetricFormat::Filesize => "filesize",
            MetricFormat::Integer => "integer",
        }
    }
}

/// How a metadata value or table column is interpreted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DataType {
    #[default]
    Text,
    Number,
    Ip,
    /// An RFC 3339 time.
    Datetime,
    /// A number of seconds.
    Duration,
    Link,
}

impl DataType {
    fn wire(self) -> &'static str {
        match self {
            DataType::Text => "",
            DataType::Number => "number",
            DataType::Ip => "ip",
            DataType::Datetime => "datetime",
            DataType::Duration => "duration",
            DataType::Link => "link",
        }
    }
}

/// Shows a node metric (set with [`NodeBuilder::metric`](crate::NodeBuilder::metric))
/// as a row with a sparkline. A metric without a template is not shown.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricTemplate(pub(crate) model::MetricTemplate);

impl MetricTemplate {
    /// The template for metric `id`, labelled `label`.
    pub fn new(id: &str, label: &str) -> Self {
        MetricTemplate(model::MetricTemplate::new(id, label, "", "", 0.0))
    }

    pub fn format(mut self, format: MetricFormat) -> Self {
        self.0.format = Str::new(format.wire());
        self
    }

    /// Shorthand for `format(MetricFormat::Percent)`.
    pub fn percent(self) -> Self {
        self.format(MetricFormat::Percent)
    }

    /// Rows with a lower priority come first.
    pub fn priority(mut self, priority: f64) -> Self {
        self.0.priority = priority;
        self
    }

    /// Metrics of one group are drawn together.
    pub fn group(mut self, group: &str) -> Self {
        self.0.group = Str::new(group);
        self
    }

    pub fn id(&self) -> &str {
        &self.0.id
    }
}

/// Shows a node's `latest` value (set with
/// [`NodeBuilder::latest`](crate::NodeBuilder::latest)) as a metadata row.
#[derive(Debug, Clone, PartialEq)]
pub struct MetadataTemplate(pub(crate) model::MetadataTemplate);

impl MetadataTemplate {
    /// The template for `latest` key `id`, labelled `label`.
    pub fn new(id: &str, label: &str) -> Self {
        MetadataTemplate(model::MetadataTemplate::new(id, label, "", 0.0, "latest"))
    }

    /// Reads the value from the node's `sets` (joined with `, `) instead of `latest`.
    pub fn from_sets(mut self) -> Self {
        self.0.from = Str::new("sets");
        self
    }

    pub fn data_type(mut self, data_type: DataType) -> Self {
        self.0.data_type = Str::new(data_type.wire());
        self
    }

    /// Rows with a lower priority come first; Scope hides rows above 10 in summaries.
    pub fn priority(mut self, priority: f64) -> Self {
        self.0.priority = priority;
        self
    }

    /// The UI shortens the value to this many characters.
    pub fn truncate(mut self, chars: u32) -> Self {
        self.0.truncate = i64::from(chars);
        self
    }

    pub fn id(&self) -> &str {
        &self.0.id
    }
}

/// A table in a node's details, filled from `latest` keys that start with its prefix
/// (see [`NodeBuilder::table_row`](crate::NodeBuilder::table_row) and
/// [`NodeBuilder::table_cell`](crate::NodeBuilder::table_cell)).
#[derive(Debug, Clone, PartialEq)]
pub struct TableTemplate(pub(crate) model::TableTemplate);

impl TableTemplate {
    /// A two-column table of labels and values: each key `<prefix><label>` is a row.
    /// The prefix is also the table's ID.
    pub fn property_list(prefix: &str, label: &str) -> Self {
        TableTemplate(model::TableTemplate {
            id: Str::new(prefix),
            label: Str::new(label),
            prefix: Str::new(prefix),
            table_type: Str::new(PROPERTY_LIST),
            columns: Vec::new(),
            fixed_rows: Default::default(),
        })
    }

    /// A table with the given columns: each key `<prefix><row>___<column>` is a cell.
    pub fn multicolumn(prefix: &str, label: &str) -> Self {
        TableTemplate(model::TableTemplate {
            table_type: Str::new(MULTICOLUMN_TABLE),
            ..Self::property_list(prefix, label).0
        })
    }

    /// Adds a column (multicolumn tables).
    pub fn column(mut self, id: &str, label: &str, data_type: DataType) -> Self {
        self.0.columns.push(Column {
            id: Str::new(id),
            label: Str::new(label),
            data_type: Str::new(data_type.wire()),
        });
        self
    }

    /// Shows `latest` key `key` as a row labelled `label` whatever its prefix
    /// (property lists). A label starting with a space sorts first.
    pub fn fixed_row(mut self, key: &str, label: &str) -> Self {
        self.0.fixed_rows.insert(Str::new(key), Str::new(label));
        self
    }

    pub fn id(&self) -> &str {
        &self.0.id
    }
}

/// A button on nodes: defined once per topology, offered on a node with
/// [`NodeBuilder::active_controls`](crate::NodeBuilder::active_controls).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Control(pub(crate) model::Control);

impl Control {
    /// Control `id`, with the tooltip `human` and a Font Awesome icon class such as
    /// `"fa fa-pause"`.
    pub fn new(id: &str, human: &str, icon: &str) -> Self {
        Control(model::Control {
            id: Str::new(id),
            human: Str::new(human),
            icon: Str::new(icon),
            ..Default::default()
        })
    }

    /// Buttons are ordered by rank.
    pub fn rank(mut self, rank: i64) -> Self {
        self.0.rank = rank;
        self
    }

    /// The UI asks this question before running the control.
    pub fn confirmation(mut self, question: &str) -> Self {
        self.0.confirmation = Str::new(question);
        self
    }

    pub fn id(&self) -> &str {
        &self.0.id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders_fill_the_wire_fields() {
        let m = MetricTemplate::new("iowait", "IO wait")
            .percent()
            .priority(0.1)
            .group("cpu");
        assert_eq!(
            m.0,
            model::MetricTemplate::new("iowait", "IO wait", "percent", "cpu", 0.1)
        );
        let d = MetadataTemplate::new("volume_count", "# Volumes")
            .data_type(DataType::Number)
            .truncate(8);
        assert_eq!(d.0.from, "latest");
        assert_eq!(d.0.data_type, "number");
        assert_eq!(d.0.truncate, 8);
        let t =
            TableTemplate::multicolumn("disk_", "Disks").column("used", "Used", DataType::Number);
        assert_eq!(t.0.table_type, MULTICOLUMN_TABLE);
        assert_eq!(t.0.id, "disk_");
        assert_eq!(t.0.columns[0].data_type, "number");
        let p =
            TableTemplate::property_list("env_", "Environment").fixed_row("version", " Version");
        assert_eq!(p.0.table_type, PROPERTY_LIST);
        assert_eq!(
            p.0.fixed_rows.get("version").map(|s| s.as_str()),
            Some(" Version")
        );
        let c = Control::new("stop", "Stop", "fa fa-stop")
            .rank(2)
            .confirmation("Sure?");
        assert_eq!((c.0.rank, c.0.confirmation.as_str()), (2, "Sure?"));
    }
}
