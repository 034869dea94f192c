//! Runs one case: a fresh namespace, the case under `catch_unwind`, cleanup
//! that happens whatever the case did, and a clear report.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, Location};
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use session_core::{Capabilities, Error, ServerStore, Store};

use crate::{ServerStoreFactory, StoreFactory};

/// The capability a case needs before it can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Requirement {
    /// Runs against every store.
    None,
    /// Needs `durable`.
    Durable,
    /// Needs `shared_between_processes`.
    SharedBetweenProcesses,
    /// Needs `leases`.
    Leases,
    /// Needs `atomic_multi_key_writes`.
    AtomicMultiKeyWrites,
    /// Needs both `shared_between_processes` and `leases`.
    SharedBetweenProcessesAndLeases,
}

impl Requirement {
    /// Whether a store declaring `caps` runs the case.
    pub fn met_by(self, caps: Capabilities) -> bool {
        match self {
            Requirement::None => true,
            Requirement::Durable => caps.durable,
            Requirement::SharedBetweenProcesses => caps.shared_between_processes,
            Requirement::Leases => caps.leases,
            Requirement::AtomicMultiKeyWrites => caps.atomic_multi_key_writes,
            Requirement::SharedBetweenProcessesAndLeases => {
                caps.shared_between_processes && caps.leases
            }
        }
    }
}

/// One case of the suite: its name (the stamped test's name) and what it needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CaseInfo {
    /// The case function's name in [`crate::cases`], and the stamped test's name.
    pub name: &'static str,
    /// The capability the case needs.
    pub requires: Requirement,
}

/// Why a case did not pass: a store call failed where the case expected success.
///
/// Converting a [`session_core::Error`] with `?` records where in the case it happened.
pub struct CaseError {
    error: Error,
    location: &'static Location<'static>,
}

impl CaseError {
    /// The store error.
    pub fn error(&self) -> &Error {
        &self.error
    }

    /// Where in the case the error surfaced.
    pub fn location(&self) -> &'static Location<'static> {
        self.location
    }
}

impl From<Error> for CaseError {
    #[track_caller]
    fn from(error: Error) -> Self {
        CaseError {
            error,
            location: Location::caller(),
        }
    }
}

impl fmt::Display for CaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unexpected {} error at {}: {}",
            self.error.kind(),
            self.location,
            error_chain(&self.error)
        )
    }
}

impl fmt::Debug for CaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// What a case returns: `Ok` when every check passed. Checks that fail panic
/// (with `assert!`); store calls that fail unexpectedly return a [`CaseError`].
pub type CaseResult = std::result::Result<(), CaseError>;

fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Where a case failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FailureStage {
    /// Creating the namespace or opening the first store failed (e.g. the
    /// backend's server is not running).
    Setup,
    /// A check in the case panicked.
    Panicked,
    /// A store call in the case returned an unexpected error.
    Error,
    /// The case did not finish in time.
    TimedOut,
    /// The case passed but dropping its namespace failed.
    Cleanup,
}

/// A case that did not pass.
pub struct CaseFailure {
    /// The case's name.
    pub case: &'static str,
    /// Where it failed.
    pub stage: FailureStage,
    /// What went wrong, including a cleanup failure after a failed case.
    pub message: String,
    payload: Option<Box<dyn Any + Send>>,
}

impl CaseFailure {
    fn new(case: &'static str, stage: FailureStage, message: String) -> Self {
        CaseFailure {
            case,
            stage,
            message,
            payload: None,
        }
    }

    /// Fails the current test with this failure: re-raises the case's own
    /// panic, or panics with the message.
    pub fn raise(self) -> ! {
        match self.payload {
            Some(payload) if self.stage == FailureStage::Panicked => {
                std::panic::resume_unwind(payload)
            }
            _ => panic!("{self}"),
        }
    }
}

impl fmt::Display for CaseFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let stage = match self.stage {
            FailureStage::Setup => "could not set up",
            FailureStage::Panicked => "failed a check",
            FailureStage::Error => "failed with an error",
            FailureStage::TimedOut => "timed out",
            FailureStage::Cleanup => "could not clean up",
        };
        write!(
            f,
            "conformance case `{}` {stage}: {}",
            self.case, self.message
        )
    }
}

impl fmt::Debug for CaseFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&'static str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "the case panicked with a non-string payload".to_owned()
    }
}

/// A namespace of a [`StoreFactory`], with the capabilities the backend declared.
#[derive(Clone)]
pub struct Namespace {
    factory: Arc<dyn StoreFactory>,
    name: String,
    declared: Capabilities,
}

impl fmt::Debug for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Namespace")
            .field("name", &self.name)
            .field("declared", &self.declared)
            .finish_non_exhaustive()
    }
}

impl Namespace {
    /// The namespace's identifier, as the factory returned it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The capabilities the test invocation declared.
    pub fn declared(&self) -> Capabilities {
        self.declared
    }

    /// Opens a store on the namespace.
    pub async fn open(&self) -> session_core::Result<Ctx> {
        let store = self.factory.open(&self.name).await?;
        Ok(Ctx {
            namespace: self.clone(),
            store,
        })
    }

    /// Opens another store on the namespace, keeping the caller's.
    pub async fn open_store(&self) -> session_core::Result<Store> {
        self.factory.open(&self.name).await
    }

    /// Overwrites the recorded schema version (no store of this namespace may be open).
    pub async fn write_schema_version(&self, version: i64) -> session_core::Result<()> {
        self.factory.write_schema_version(&self.name, version).await
    }
}

/// What a store case works with: a store opened on a fresh namespace.
pub struct Ctx {
    namespace: Namespace,
    store: Store,
}

impl fmt::Debug for Ctx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ctx")
            .field("namespace", &self.namespace)
            .field("store", &self.store)
            .finish()
    }
}

impl Ctx {
    /// The store (a clone of the handle).
    pub fn store(&self) -> Store {
        self.store.clone()
    }

    /// The namespace the store was opened on.
    pub fn namespace(&self) -> &Namespace {
        &self.namespace
    }

    /// The capabilities the test invocation declared.
    pub fn declared(&self) -> Capabilities {
        self.namespace.declared
    }

    /// Drops this context's store and returns the namespace. Clones of the
    /// store taken with [`Ctx::store`] must be dropped too before the
    /// namespace is reopened.
    pub fn close(self) -> Namespace {
        self.namespace
    }

    /// Closes the store and opens a new one on the same namespace.
    pub async fn reopen(self) -> session_core::Result<Ctx> {
        let namespace = self.close();
        namespace.open().await
    }
}

/// The longest a case may run; `MTSESSION_CONFORMANCE_TIMEOUT_SECS` overrides it.
fn case_timeout() -> Duration {
    let secs = std::env::var("MTSESSION_CONFORMANCE_TIMEOUT_SECS")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|secs| *secs > 0)
        .unwrap_or(600);
    Duration::from_secs(secs)
}

/// Runs `body` under `catch_unwind` and a timeout, mapping the outcome to a stage.
async fn guarded<Fut>(case: &'static str, body: Fut) -> Result<(), CaseFailure>
where
    Fut: Future<Output = CaseResult>,
{
    let timeout = case_timeout();
    match tokio::time::timeout(timeout, AssertUnwindSafe(body).catch_unwind()).await {
        Ok(Ok(Ok(()))) => Ok(()),
        Ok(Ok(Err(error))) => Err(CaseFailure::new(
            case,
            FailureStage::Error,
            error.to_string(),
        )),
        Ok(Err(payload)) => {
            let mut failure = CaseFailure::new(
                case,
                FailureStage::Panicked,
                panic_message(payload.as_ref()),
            );
            failure.payload = Some(payload);
            Err(failure)
        }
        Err(_) => Err(CaseFailure::new(
            case,
            FailureStage::TimedOut,
            format!(
                "still running after {timeout:?} (set MTSESSION_CONFORMANCE_TIMEOUT_SECS to allow more)"
            ),
        )),
    }
}

/// A failure to create or open the case's namespace (e.g. no server).
fn setup_failure(case: &'static str, call: &str, error: &Error) -> CaseFailure {
    CaseFailure::new(
        case,
        FailureStage::Setup,
        format!("{call} failed: {}", error_chain(error)),
    )
}

/// Appends a cleanup failure to the case's own outcome.
fn with_cleanup(
    case: &'static str,
    namespace: &str,
    outcome: Result<(), CaseFailure>,
    cleanup: session_core::Result<()>,
) -> Result<(), CaseFailure> {
    match (outcome, cleanup) {
        (outcome, Ok(())) => outcome,
        (Ok(()), Err(e)) => Err(CaseFailure::new(
            case,
            FailureStage::Cleanup,
            format!("drop_namespace({namespace:?}) failed: {}", error_chain(&e)),
        )),
        (Err(mut failure), Err(e)) => {
            failure.message.push_str(&format!(
                "\n(and drop_namespace({namespace:?}) failed afterwards: {})",
                error_chain(&e)
            ));
            Err(failure)
        }
    }
}

/// Runs one store case against a fresh namespace and always drops the
/// namespace afterwards, even when the case panics.
///
/// This is what each stamped test does; call it directly to run a case
/// without failing the current test (e.g. to prove that a broken store fails it).
pub async fn try_run_case<C, Fut>(
    factory: Arc<dyn StoreFactory>,
    declared: Capabilities,
    case_name: &'static str,
    case: C,
) -> Result<(), CaseFailure>
where
    C: FnOnce(Ctx) -> Fut,
    Fut: Future<Output = CaseResult>,
{
    let name = factory
        .create_namespace()
        .await
        .map_err(|e| setup_failure(case_name, "create_namespace()", &e))?;
    let namespace = Namespace {
        factory: Arc::clone(&factory),
        name: name.clone(),
        declared,
    };
    let outcome = match namespace.open().await {
        Ok(ctx) => guarded(case_name, case(ctx)).await,
        Err(e) => Err(setup_failure(case_name, &format!("open({name:?})"), &e)),
    };
    drop(namespace);
    let cleanup = factory.drop_namespace(&name).await;
    with_cleanup(case_name, &name, outcome, cleanup)
}

/// Runs one server case against a fresh namespace and always drops it afterwards.
pub async fn try_run_server_case<C, Fut>(
    factory: Arc<dyn ServerStoreFactory>,
    case_name: &'static str,
    case: C,
) -> Result<(), CaseFailure>
where
    C: FnOnce(Arc<dyn ServerStore>) -> Fut,
    Fut: Future<Output = CaseResult>,
{
    let name = factory
        .create_namespace()
        .await
        .map_err(|e| setup_failure(case_name, "create_namespace()", &e))?;
    let outcome = match factory.open(&name).await {
        Ok(store) => guarded(case_name, case(store)).await,
        Err(e) => Err(setup_failure(case_name, &format!("open({name:?})"), &e)),
    };
    let cleanup = factory.drop_namespace(&name).await;
    with_cleanup(case_name, &name, outcome, cleanup)
}

/// The declared capabilities as a value.
pub const fn caps(
    durable: bool,
    shared_between_processes: bool,
    leases: bool,
    atomic_multi_key_writes: bool,
) -> Capabilities {
    Capabilities::NONE
        .durable(durable)
        .shared_between_processes(shared_between_processes)
        .leases(leases)
        .atomic_multi_key_writes(atomic_multi_key_writes)
}

/// The runtime every stamped test runs on: the same as
/// `#[tokio::test(flavor = "multi_thread", worker_threads = 2)]`, built here so
/// that callers need no Tokio dependency of their own.
/// The body of each stamped store test, awaited inside its `#[tokio::test]`.
pub async fn run_store_case<F, C, Fut>(
    factory: impl FnOnce() -> F,
    declared: Capabilities,
    case_name: &'static str,
    case: C,
) where
    F: StoreFactory,
    C: FnOnce(Ctx) -> Fut,
    Fut: Future<Output = CaseResult>,
{
    let factory: Arc<dyn StoreFactory> = Arc::new(factory());
    if let Err(failure) = try_run_case(factory, declared, case_name, case).await {
        failure.raise();
    }
}

/// The body of each stamped server test, awaited inside its `#[tokio::test]`.
pub async fn run_server_case<F, C, Fut>(
    factory: impl FnOnce() -> F,
    case_name: &'static str,
    case: C,
) where
    F: ServerStoreFactory,
    C: FnOnce(Arc<dyn ServerStore>) -> Fut,
    Fut: Future<Output = CaseResult>,
{
    let factory: Arc<dyn ServerStoreFactory> = Arc::new(factory());
    if let Err(failure) = try_run_server_case(factory, case_name, case).await {
        failure.raise();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fails() -> CaseResult {
        Err(Error::invalid("boom"))?;
        Ok(())
    }

    #[test]
    fn case_errors_point_at_the_question_mark() {
        let line = line!() - 6;
        let error = fails().expect_err("fails() returns an error");
        assert_eq!(error.location().file(), file!());
        assert_eq!(error.location().line(), line, "{error}");
        assert!(error.to_string().contains("InvalidInput"), "{error}");
    }

    #[test]
    fn requirements_follow_capabilities() {
        let none = Capabilities::NONE;
        assert!(Requirement::None.met_by(none));
        assert!(!Requirement::Durable.met_by(none));
        assert!(Requirement::Durable.met_by(none.durable(true)));
        let shared = none.shared_between_processes(true);
        assert!(!Requirement::SharedBetweenProcessesAndLeases.met_by(shared));
        assert!(Requirement::SharedBetweenProcessesAndLeases.met_by(shared.leases(true)));
    }

    #[test]
    fn every_listed_case_names_its_requirement() {
        let gated = crate::STORE_CASES
            .iter()
            .filter(|c| c.requires != Requirement::None)
            .count();
        assert_eq!(gated, 19, "gated store cases");
        assert!(
            crate::SERVER_CASES
                .iter()
                .all(|c| c.requires == Requirement::None)
        );
    }
}
