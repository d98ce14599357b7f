//! Answers to `POST /control`.

use rescope_report::xfer::ControlResponse;

use crate::report::ReportBuilder;

/// What a control handler answers: a value or an error for the UI, and optionally a
/// shortcut report the probe publishes at once, so the change shows without waiting
/// for the next poll.
#[derive(Debug, Clone, Default)]
pub struct ControlReply {
    pub(crate) response: ControlResponse,
    pub(crate) shortcut: Shortcut,
}

#[derive(Debug, Clone, Default)]
pub(crate) enum Shortcut {
    #[default]
    None,
    /// Ask the plugin for a report after the control ran and send that.
    Fresh,
    Report(Box<ReportBuilder>),
}

impl ControlReply {
    /// Success, with nothing to show.
    pub fn ok() -> Self {
        ControlReply::default()
    }

    /// Success, with a value for the caller.
    pub fn value(value: impl Into<serde_json::Value>) -> Self {
        ControlReply {
            response: ControlResponse {
                value: Some(value.into()),
                ..Default::default()
            },
            shortcut: Shortcut::None,
        }
    }

    /// Failure: the UI shows `message`. A handler returning `Err` gives the same.
    pub fn error(message: impl Into<String>) -> Self {
        ControlReply {
            response: ControlResponse::error(message),
            shortcut: Shortcut::None,
        }
    }

    /// Sends, as the shortcut report, the plugin's own report made right after the
    /// control ran. This is usually what you want: it repeats every control
    /// definition, which the probe needs to keep relaying them.
    pub fn with_fresh_report(mut self) -> Self {
        self.shortcut = Shortcut::Fresh;
        self
    }

    /// Sends `report` as the shortcut report. It should define all of the plugin's
    /// controls, as a full report does: the probe re-registers controls from it.
    pub fn with_shortcut(mut self, report: ReportBuilder) -> Self {
        self.shortcut = Shortcut::Report(Box::new(report));
        self
    }

    /// Tells the UI the node is gone (e.g. after deleting it), so it closes its
    /// details.
    pub fn removed_node(mut self, node_id: impl Into<String>) -> Self {
        self.response.removed_node = node_id.into();
        self
    }

    /// The response without the shortcut report.
    pub fn response(&self) -> &ControlResponse {
        &self.response
    }
}

/// The JSON body of a control answer: the response's fields plus `shortcutReport`
/// (Scope's spelling) when there is one.
pub(crate) fn encode_reply(response: &ControlResponse, shortcut_json: Option<&str>) -> String {
    let plain = serde_json::to_string(response).unwrap_or_else(|_| "{}".to_string());
    match shortcut_json {
        None => plain,
        Some(report) => {
            // `plain` is a JSON object: `{}` or `{"k":v,...}`.
            let head = plain.strip_suffix('}').unwrap_or("{");
            let sep = if head == "{" { "" } else { "," };
            format!("{head}{sep}\"shortcutReport\":{report}}}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shortcut_report_is_added_under_scopes_key() {
        let empty = encode_reply(&ControlResponse::default(), Some("{\"Shortcut\":true}"));
        let v: serde_json::Value = serde_json::from_str(&empty).expect("json");
        assert_eq!(v, serde_json::json!({"shortcutReport": {"Shortcut": true}}));

        let nested = ControlReply::value(serde_json::json!({"a": {"b": 1}}));
        let with_value = encode_reply(nested.response(), Some("{}"));
        let v: serde_json::Value = serde_json::from_str(&with_value).expect("json");
        assert_eq!(
            v,
            serde_json::json!({"value": {"a": {"b": 1}}, "shortcutReport": {}})
        );

        assert_eq!(
            encode_reply(ControlReply::error("no").response(), None),
            "{\"error\":\"no\"}"
        );
    }
}
