//! Control and pipe messages exchanged between the UI, the app, the probe and plugins
//! (protocol.md §5.5, §6.4). Field names are Scope's, case-sensitive.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A request to run a control on a node. `AppID` is empty when the app sends it; the
/// probe fills it in before dispatching, so pipes know which app to connect back to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlRequest {
    #[serde(rename = "AppID", default)]
    pub app_id: String,
    #[serde(rename = "NodeID", default)]
    pub node_id: String,
    #[serde(rename = "Control", default)]
    pub control: String,
    #[serde(rename = "ControlArgs", default)]
    pub control_args: Option<BTreeMap<String, String>>,
}

impl ControlRequest {
    /// A control argument by name.
    pub fn arg(&self, name: &str) -> Option<&str> {
        self.control_args.as_ref()?.get(name).map(String::as_str)
    }
}

/// What running a control produced. Every field is omitted when empty, so a plain
/// success is `{}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ControlResponse {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
    /// The pipe the control opened (a terminal, a log stream).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pipe: String,
    /// The pipe carries a raw TTY (no newline translation in the UI).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub raw_tty: bool,
    /// The control to call with `pipeID`, `height`, `width` when the terminal resizes.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub resize_tty_control: String,
    /// The node no longer exists (e.g. a removed container).
    #[serde(
        rename = "removedNode",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub removed_node: String,
}

impl ControlResponse {
    pub fn error(message: impl Into<String>) -> Self {
        ControlResponse {
            error: message.into(),
            ..Default::default()
        }
    }
}

/// The header of a Go `net/rpc` call, as the app sends it over the control websocket.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RpcRequestHeader {
    #[serde(rename = "ServiceMethod", default)]
    pub service_method: String,
    #[serde(rename = "Seq", default)]
    pub seq: u64,
}

/// The header of a Go `net/rpc` reply.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RpcResponseHeader {
    #[serde(rename = "ServiceMethod", default)]
    pub service_method: String,
    #[serde(rename = "Seq", default)]
    pub seq: u64,
    #[serde(rename = "Error", default)]
    pub error: String,
}

/// One websocket text frame of the control channel. Each RPC message takes two
/// frames: one with the header (`Request` or `Response`), then one with `Value`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RpcFrame {
    #[serde(rename = "Request", default)]
    pub request: Option<RpcRequestHeader>,
    #[serde(rename = "Response", default)]
    pub response: Option<RpcResponseHeader>,
    #[serde(rename = "Value", default)]
    pub value: Option<serde_json::Value>,
}

/// The only RPC method of the control channel.
pub const CONTROL_METHOD: &str = "control.Handle";

/// Headers a probe sends on every request to an app.
pub const PROBE_ID_HEADER: &str = "X-Scope-Probe-ID";
pub const PROBE_VERSION_HEADER: &str = "X-Scope-Probe-Version";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_success_is_an_empty_object() {
        assert_eq!(
            serde_json::to_string(&ControlResponse::default()).expect("encodes"),
            "{}"
        );
    }

    #[test]
    fn the_documented_exchange_decodes() {
        let call: RpcFrame = serde_json::from_str(r#"{"Request":{"ServiceMethod":"control.Handle","Seq":0},"Response":null,"Value":null}"#).expect("decodes");
        assert_eq!(
            call.request.map(|r| r.service_method),
            Some(CONTROL_METHOD.to_string())
        );
        let body: RpcFrame = serde_json::from_str(r#"{"Request":null,"Response":null,"Value":{"AppID":"","NodeID":"host1;<host>","Control":"host_exec","ControlArgs":null}}"#).expect("decodes");
        let req: ControlRequest =
            serde_json::from_value(body.value.expect("value")).expect("request");
        assert_eq!(req.control, "host_exec");
        let resp = ControlResponse {
            pipe: "pipe-1".into(),
            raw_tty: true,
            resize_tty_control: "host_resize_exec_tty".into(),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_string(&resp).expect("encodes"),
            r#"{"pipe":"pipe-1","raw_tty":true,"resize_tty_control":"host_resize_exec_tty"}"#
        );
    }
}
