//! What a plugin says about itself in every answer (`Plugins` in its report).

use rescope_report::plugin::PLUGIN_API_VERSION;
use rescope_report::{PluginSpec, Str};

/// A plugin's ID, label, description and interfaces.
///
/// The ID names the socket (`<id>.sock`), and the probe checks that every answer
/// carries the same ID; see [`valid_plugin_id`] for what an ID may contain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    id: String,
    label: String,
    description: String,
    controller: bool,
}

/// A spec the probe would ignore or reject.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidSpec {
    #[error(
        "{0:?} is not a valid plugin ID: use letters and digits in groups separated by single dashes"
    )]
    Id(String),
    #[error("plugin {0:?} needs a label")]
    NoLabel(String),
}

impl Spec {
    /// A reporter plugin. The label is what the UI lists under PLUGINS.
    pub fn new(id: impl Into<String>, label: impl Into<String>) -> Self {
        Spec {
            id: id.into(),
            label: label.into(),
            description: String::new(),
            controller: false,
        }
    }

    /// The description the UI shows in the plugin's tooltip.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }

    /// Declares the `controller` interface: the plugin offers controls and answers
    /// `POST /control`. Without it the probe neither shows nor relays its controls.
    pub fn controller(mut self) -> Self {
        self.controller = true;
        self
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn is_controller(&self) -> bool {
        self.controller
    }

    /// Checks the ID and label as the probe will.
    pub fn validate(&self) -> Result<(), InvalidSpec> {
        if !valid_plugin_id(&self.id) {
            Err(InvalidSpec::Id(self.id.clone()))
        } else if self.label.is_empty() {
            Err(InvalidSpec::NoLabel(self.id.clone()))
        } else {
            Ok(())
        }
    }

    /// The spec as it goes on the wire.
    pub fn to_wire(&self) -> PluginSpec {
        let mut interfaces = vec![Str::new("reporter")];
        if self.controller {
            interfaces.push(Str::new("controller"));
        }
        PluginSpec {
            id: Str::new(&self.id),
            label: Str::new(&self.label),
            description: Str::new(&self.description),
            interfaces,
            api_version: Str::new(PLUGIN_API_VERSION),
            status: Str::empty(),
        }
    }
}

/// Whether the probe accepts `id` as a plugin ID: ASCII letters and digits in groups
/// separated by single dashes (`io-wait`, not `io--wait`, `-io`, `io_wait` or `io~w`).
pub fn valid_plugin_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .split('-')
            .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_ids_follow_the_probes_rule() {
        for ok in ["iowait", "volume-count", "P-L-U-G-I-N", "a1-b2-c3"] {
            assert!(valid_plugin_id(ok), "{ok}");
        }
        for bad in ["", "-a", "a-", "a--b", "io_wait", "test~plugin", "a.b", "é"] {
            assert!(!valid_plugin_id(bad), "{bad}");
        }
    }

    #[test]
    fn a_controller_declares_both_interfaces_and_api_version_one() {
        let wire = Spec::new("iowait", "IO wait")
            .description("d")
            .controller()
            .to_wire();
        assert_eq!(
            wire.interfaces,
            [Str::new("reporter"), Str::new("controller")]
        );
        assert_eq!(wire.api_version, "1");
        assert_eq!(wire.status, "");
        let reporter = Spec::new("x", "X").to_wire();
        assert_eq!(reporter.interfaces, [Str::new("reporter")]);
    }
}
