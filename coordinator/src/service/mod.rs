//! The tonic services: the agent link and the control API.

pub(crate) mod agent;
pub(crate) mod control;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::fleet::Fleet;
use crate::judge::Judge;
use crate::notify::Notifier;
use crate::store::Store;

/// What every service needs.
#[derive(Debug, Clone)]
pub(crate) struct Shared {
    pub(crate) config: Arc<Config>,
    pub(crate) fleet: Arc<Fleet>,
    pub(crate) store: Store,
    pub(crate) judge: Arc<Judge>,
    pub(crate) notifier: Notifier,
    pub(crate) metrics: Arc<crate::metrics::Metrics>,
    /// Cancelled first at shutdown: every agent and watch stream ends on it.
    pub(crate) streams_shutdown: CancellationToken,
    pub(crate) tracker: TaskTracker,
    /// Serializes rollback decisions and catch-ups, each held from reading
    /// the state it acts on until its command is in the fleet: a catch-up
    /// never repeats a decision that a newer one, still being stored, is
    /// about to replace, and two quick connects of one host cannot both
    /// issue one. Never held by the ingest path.
    pub(crate) decisions: Arc<tokio::sync::Mutex<()>>,
}
