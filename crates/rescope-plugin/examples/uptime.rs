//! A reporter and controller plugin: the host's uptime as a metric, with a control
//! that switches between seconds and hours.
//!
//! ```sh
//! cargo run -p rescope-plugin --example uptime -- /tmp/plugins
//! rescope launch --plugins-root /tmp/plugins
//! ```

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use rescope_plugin::{
    Control, ControlReply, ControlRequest, MetricTemplate, Plugin, PluginError, PluginServer,
    ReportBuilder, Spec, TopologyKind,
};

struct Uptime {
    host: String,
    in_hours: AtomicBool,
}

impl Plugin for Uptime {
    fn report(&self, r: &mut ReportBuilder) -> Result<(), PluginError> {
        let text = std::fs::read_to_string("/proc/uptime")?;
        let secs: f64 = text.split_whitespace().next().unwrap_or("").parse()?;
        let hours = self.in_hours.load(Relaxed);
        r.topology(TopologyKind::Host)
            .metric_template(MetricTemplate::new("uptime", "Uptime").priority(20.0))
            .control(Control::new(
                "toggle-unit",
                "Hours or seconds",
                "fa fa-clock",
            ));
        r.host(&self.host)
            .metric("uptime", if hours { secs / 3600.0 } else { secs }, 0.0)
            .active_controls(["toggle-unit"]);
        Ok(())
    }

    fn control(&self, _request: &ControlRequest) -> Result<ControlReply, PluginError> {
        self.in_hours.fetch_xor(true, Relaxed);
        Ok(ControlReply::ok().with_fresh_report())
    }
}

#[tokio::main]
async fn main() -> Result<(), rescope_plugin::ServeError> {
    let spec = Spec::new("uptime", "Uptime")
        .description("How long the host has been up")
        .controller();
    let plugin = Uptime {
        host: rescope_plugin::host_id(),
        in_hours: AtomicBool::new(false),
    };
    let mut server = PluginServer::new(spec, plugin);
    if let Some(root) = std::env::args().nth(1) {
        server = server.plugins_root(root);
    }
    server.serve().await
}
