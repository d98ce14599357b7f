//! Shared by the endpoint test binaries.

use std::sync::{Arc, Mutex};

use rescope_probe::endpoint::EndpointReporter;
use rescope_probe::reporter::{Reporter, Tick};
use rescope_probe::walker::ProcessWalker;
use rescope_report::{GoTime, Report};

/// One spy tick: walk `/proc`, then run the endpoint reporter on that walk.
pub fn tick(walker: &Arc<Mutex<ProcessWalker>>, reporter: &mut EndpointReporter) -> Report {
    let now = GoTime::now();
    let procs = walker.lock().expect("walker").walk(now).expect("walk");
    reporter
        .report(&Tick {
            now,
            procs: Arc::new(procs),
        })
        .expect("report")
}
