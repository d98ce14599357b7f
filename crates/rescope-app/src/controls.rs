//! Controls: `POST /api/control/{probeID}/{nodeID}/{control}` (protocol.md §7.4).
//!
//! The app relays a control to the probe that owns the node and returns the probe's
//! answer. How the app reaches a probe is a [`ProbeLink`]: the probe's control
//! websocket for remote probes, a direct call for the probe inside `rescope launch`.
//!
//! Security: controls that run commands (shells, exec, attach) are refused when the
//! app is reachable from other machines without authentication, unless the operator
//! explicitly allowed it.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rescope_report::xfer::{ControlRequest, ControlResponse};

/// How long the app waits for a probe to answer a control.
pub const CONTROL_TIMEOUT: Duration = Duration::from_secs(30);

/// A way to run controls on one probe.
pub trait ProbeLink: Send + Sync {
    fn call(
        &self,
        request: ControlRequest,
    ) -> Pin<Box<dyn Future<Output = Result<ControlResponse, String>> + Send>>;
}

/// Controls that start a process or a terminal on the host or in a container.
pub fn runs_commands(control: &str) -> bool {
    matches!(
        control,
        "host_exec" | "docker_exec_container" | "docker_attach_container"
    )
}

/// A registered link and the token that identifies this registration.
type Registered = (u64, Arc<dyn ProbeLink>);

/// The probes the app can reach, by probe ID. The newest link for an ID wins.
#[derive(Default, Clone)]
pub struct ControlRouter {
    links: Arc<Mutex<HashMap<String, Registered>>>,
    next: Arc<std::sync::atomic::AtomicU64>,
}

impl std::fmt::Debug for ControlRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<String> = self
            .links
            .lock()
            .map(|l| l.keys().cloned().collect())
            .unwrap_or_default();
        f.debug_struct("ControlRouter")
            .field("probes", &ids)
            .finish()
    }
}

impl ControlRouter {
    /// Registers a link; returns a token to unregister exactly this one later.
    pub fn register(&self, probe_id: &str, link: Arc<dyn ProbeLink>) -> u64 {
        let token = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Ok(mut links) = self.links.lock() {
            links.insert(probe_id.to_string(), (token, link));
        }
        token
    }

    /// Removes the link, unless a newer one for the same probe replaced it.
    pub fn unregister(&self, probe_id: &str, token: u64) {
        if let Ok(mut links) = self.links.lock()
            && links.get(probe_id).is_some_and(|(t, _)| *t == token)
        {
            links.remove(probe_id);
        }
    }

    /// Runs a control on a probe. `Err` carries the message for a 400 answer.
    pub async fn call(
        &self,
        probe_id: &str,
        request: ControlRequest,
    ) -> Result<ControlResponse, String> {
        let link = self
            .links
            .lock()
            .ok()
            .and_then(|l| l.get(probe_id).map(|(_, link)| link.clone()))
            .ok_or_else(|| format!("probe {probe_id} is not connected right now"))?;
        match tokio::time::timeout(CONTROL_TIMEOUT, link.call(request)).await {
            Ok(r) => r,
            Err(_) => Err(format!(
                "probe {probe_id} did not answer within {}s",
                CONTROL_TIMEOUT.as_secs()
            )),
        }
    }
}
