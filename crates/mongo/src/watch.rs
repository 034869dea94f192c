//! What the driver tells the store through its event handlers: the state of
//! each server (its type, for telling whether transactions exist, and the
//! last failure, for messages), and which commands a call has sent (for
//! telling an unanswered write with an unknown outcome from a call that sent
//! nothing). Every call of the store runs through [`Watch::bounded`], which
//! also bounds its time.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use mongodb::ServerType;
use mongodb::event::EventHandler;
use mongodb::event::command::CommandEvent;
use mongodb::event::sdam::SdamEvent;
use session_core::{Error, Result};

use crate::error::{Access, Fail, Place, Progress, cause, db_error, timeout_error};

/// Commands that may change data when they run outside a transaction.
const WRITE_COMMANDS: [&str; 9] = [
    "insert",
    "update",
    "delete",
    "findAndModify",
    "create",
    "createIndexes",
    "drop",
    "dropDatabase",
    "bulkWrite",
];

/// What the driver knows of one server.
#[derive(Clone, Debug, Default)]
struct ServerState {
    kind: Option<ServerType>,
    max_wire_version: Option<i32>,
    /// The last failure, described for messages.
    failure: Option<String>,
}

/// The commands one call has sent, and when it sent the last one.
#[derive(Debug)]
struct Sent {
    wrote: AtomicBool,
    committed: AtomicBool,
    last: Mutex<Option<Instant>>,
}

impl Sent {
    fn new() -> Self {
        Sent {
            wrote: AtomicBool::new(false),
            committed: AtomicBool::new(false),
            last: Mutex::new(None),
        }
    }

    fn last(&self) -> MutexGuard<'_, Option<Instant>> {
        // Every critical section is one assignment or read.
        self.last.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn progress(&self) -> Progress {
        Progress {
            wrote: self.wrote.load(Ordering::Relaxed),
            committed: self.committed.load(Ordering::Relaxed),
            sent: self.last().is_some(),
        }
    }
}

tokio::task_local! {
    /// The call being polled. The driver emits a command's started event on
    /// the task that runs the command, just before it is written to the
    /// connection.
    static CALL: Arc<Sent>;
}

fn on_command(event: CommandEvent) {
    let CommandEvent::Started(started) = event else {
        return;
    };
    let _ = CALL.try_with(|call| {
        let name = started.command_name.as_str();
        if name == "commitTransaction" {
            call.committed.store(true, Ordering::Relaxed);
        } else if WRITE_COMMANDS.contains(&name) {
            call.wrote.store(true, Ordering::Relaxed);
        }
        *call.last() = Some(Instant::now());
    });
}

/// The event handlers' shared state; one per store.
#[derive(Debug, Default)]
pub(crate) struct Watch {
    servers: Mutex<BTreeMap<String, ServerState>>,
}

impl Watch {
    fn servers(&self) -> MutexGuard<'_, BTreeMap<String, ServerState>> {
        self.servers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The handler of the driver's topology events.
    pub(crate) fn sdam_handler(self: &Arc<Self>) -> EventHandler<SdamEvent> {
        let watch = Arc::clone(self);
        EventHandler::callback(move |event: SdamEvent| watch.on_sdam(event))
    }

    /// The handler of the driver's command events.
    pub(crate) fn command_handler() -> EventHandler<CommandEvent> {
        EventHandler::callback(on_command)
    }

    fn on_sdam(&self, event: SdamEvent) {
        let mut servers = self.servers();
        match event {
            SdamEvent::ServerDescriptionChanged(changed) => {
                let info = &changed.new_description;
                let state = servers.entry(changed.address.to_string()).or_default();
                state.kind = Some(info.server_type());
                state.max_wire_version = info.max_wire_version();
                if let Some(e) = info.error() {
                    state.failure = Some(cause(e));
                } else if info.server_type() != ServerType::Unknown {
                    state.failure = None;
                }
            }
            SdamEvent::ServerHeartbeatFailed(failed) => {
                servers
                    .entry(failed.server_address.to_string())
                    .or_default()
                    .failure = Some(cause(&failed.failure));
            }
            SdamEvent::ServerHeartbeatSucceeded(ok) => {
                servers
                    .entry(ok.server_address.to_string())
                    .or_default()
                    .failure = None;
            }
            SdamEvent::ServerClosed(closed) => {
                servers.remove(&closed.address.to_string());
            }
            _ => {}
        }
    }

    /// Whether the deployment supports transactions, as far as the driver
    /// has learnt: a replica-set primary (MongoDB 4.0 and newer), a `mongos`
    /// (4.2 and newer) or a load balancer. `None` when no server's type is
    /// known yet.
    pub(crate) fn transactions(&self) -> Option<bool> {
        let servers = self.servers();
        let mut answer = None;
        for state in servers.values() {
            let wire = state.max_wire_version.unwrap_or(0);
            match state.kind {
                Some(ServerType::RsPrimary) => return Some(wire >= 7),
                Some(ServerType::Mongos) => return Some(wire >= 8),
                Some(ServerType::LoadBalancer) => return Some(true),
                Some(ServerType::Standalone) => answer = Some(false),
                _ => {}
            }
        }
        answer
    }

    /// What is known of each server's last failure, for messages:
    /// `host:port: connection refused; ...`.
    pub(crate) fn failures(&self) -> String {
        let servers = self.servers();
        let failed: Vec<String> = servers
            .iter()
            .filter_map(|(address, state)| {
                state
                    .failure
                    .as_ref()
                    .map(|failure| format!("{address}: {failure}"))
            })
            .collect();
        if failed.is_empty() {
            "no server answered in time".to_owned()
        } else {
            failed.join("; ")
        }
    }

    /// Runs one call: polls `call` until it finishes, fails, or runs out of
    /// time — the server selection timeout until its first command is sent,
    /// then the response timeout after each command it sends — and maps its
    /// failure to the workspace's kinds by what it had sent (see
    /// [`crate::error`]).
    pub(crate) async fn bounded<T>(
        &self,
        place: &Place,
        access: Access,
        call: impl Future<Output = std::result::Result<T, Fail>>,
    ) -> std::result::Result<T, Failed> {
        let sent = Arc::new(Sent::new());
        let started = Instant::now();
        let deadline = |sent: &Sent| match *sent.last() {
            Some(at) => at + place.response_timeout,
            None => started + place.server_selection_timeout,
        };
        let call = CALL.scope(Arc::clone(&sent), call);
        tokio::pin!(call);
        loop {
            let until = deadline(&sent);
            tokio::select! {
                outcome = &mut call => {
                    return outcome.map_err(|fail| match fail {
                        Fail::Store(e) => Failed::Store(e),
                        Fail::Db(e) => Failed::Db(e, sent.progress()),
                    });
                }
                () = tokio::time::sleep_until(until.into()) => {
                    if deadline(&sent) > until {
                        // A command was sent meanwhile: it has its own time.
                        continue;
                    }
                    return Err(Failed::Store(timeout_error(
                        access,
                        sent.progress(),
                        place,
                        &self.failures(),
                    )));
                }
            }
        }
    }

    /// Like [`bounded`](Self::bounded), with every failure mapped.
    pub(crate) async fn call<T>(
        &self,
        place: &Place,
        access: Access,
        call: impl Future<Output = std::result::Result<T, Fail>>,
    ) -> Result<T> {
        self.bounded(place, access, call)
            .await
            .map_err(|failed| failed.into_error(access, place, self))
    }
}

/// How a bounded call failed: with the store's error, or with a driver
/// error and what the call had sent before it.
#[derive(Debug)]
pub(crate) enum Failed {
    Store(Error),
    Db(mongodb::error::Error, Progress),
}

impl Failed {
    pub(crate) fn into_error(self, access: Access, place: &Place, watch: &Watch) -> Error {
        match self {
            Failed::Store(e) => e,
            Failed::Db(e, progress) => db_error(e, access, progress, place, &watch.failures()),
        }
    }
}
