//! Plugin descriptors carried in a report's `Plugins`.

use std::collections::BTreeMap;

use crate::str::Str;

/// The plugin API version this implementation speaks.
pub const PLUGIN_API_VERSION: &str = "1";

/// Describes one plugin. `status` is set by the probe, never by the plugin.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct PluginSpec {
    pub id: Str,
    pub label: Str,
    pub description: Str,
    pub interfaces: Vec<Str>,
    pub api_version: Str,
    pub status: Str,
}

impl PluginSpec {
    pub fn implements(&self, interface: &str) -> bool {
        self.interfaces.iter().any(|i| i == interface)
    }
}

/// Plugin specs keyed (and iterated) by ID.
pub type PluginSpecs = BTreeMap<Str, PluginSpec>;
