//! What a collector implements.

use std::sync::Arc;

use rescope_report::{GoTime, Report};

use crate::kept::NodeChanges;
use crate::walker::ProcSnapshot;

/// The inputs shared by every reporter in one spy tick.
#[derive(Debug, Clone)]
pub struct Tick {
    pub now: GoTime,
    /// This tick's walk of `/proc` (empty when process collection is off).
    pub procs: Arc<ProcSnapshot>,
}

/// A collector. `report` runs on a blocking thread once per spy tick; it returns a
/// partial report that the spy loop merges with the others'. A reporter degrades
/// rather than fails: a vanished process is not an error, a missing kernel feature is
/// logged once and the reporter returns what it can.
pub trait Reporter: Send {
    /// A short name for logs and metrics (`host`, `process`, `endpoint`, …).
    fn name(&self) -> &'static str;
    fn report(&mut self, tick: &Tick) -> Result<Report, ReporterError>;

    /// Like [`Reporter::report`], for a receiver that keeps a copy of what this
    /// reporter keeps between ticks: the kept topology's nodes are left out of the
    /// report, and what changed in them since the last call of this method is
    /// returned instead (the whole topology on the first call, or after a call of
    /// `report`). A reporter that keeps nothing returns no changes.
    fn report_changes(
        &mut self,
        tick: &Tick,
    ) -> Result<(Report, Option<NodeChanges>), ReporterError> {
        Ok((self.report(tick)?, None))
    }
}

/// Why a reporter produced nothing this tick.
#[derive(Debug, thiserror::Error)]
pub enum ReporterError {
    #[error("reading {what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Other(String),
}
