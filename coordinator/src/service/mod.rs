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
    /// Held from looking for a missed decision until its catch-up is in the
    /// fleet, so that two quick connects of one host cannot both issue one.
    pub(crate) missed_catch_ups: Arc<tokio::sync::Mutex<()>>,
}
