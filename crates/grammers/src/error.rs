//! The adapter's error: which grammers call failed, and the mtsession error
//! that made it fail, kept as the source.

use session_core::ErrorKind;

/// A failed call of [`GrammersSession`](crate::GrammersSession): the
/// [`grammers_session::Session`] method (or constructor) that failed and the
/// mtsession error behind it, which [`std::error::Error::source`] returns.
///
/// The message never contains key bytes or URL passwords (mtsession's errors
/// never hold them).
#[derive(Debug, thiserror::Error)]
#[error("grammers session: {operation} failed: {source}")]
pub struct Error {
    operation: &'static str,
    #[source]
    source: session_core::Error,
}

/// Result alias of the adapter.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error of `operation` caused by `source`.
    pub fn new(operation: &'static str, source: session_core::Error) -> Self {
        Error { operation, source }
    }

    /// The call that failed (`set_dc_option`, `cache_peers`, `open_exclusive`, ...).
    pub fn operation(&self) -> &'static str {
        self.operation
    }

    /// The kind of the mtsession error, to act on (`LeaseHeld`, `Unavailable`, ...).
    pub fn kind(&self) -> ErrorKind {
        self.source.kind()
    }

    /// The mtsession error.
    pub fn mtsession(&self) -> &session_core::Error {
        &self.source
    }

    /// The mtsession error, by value.
    pub fn into_mtsession(self) -> session_core::Error {
        self.source
    }
}

/// Attaches the failing operation to mtsession results.
pub(crate) trait Context<T> {
    fn during(self, operation: &'static str) -> Result<T>;
}

impl<T> Context<T> for session_core::Result<T> {
    fn during(self, operation: &'static str) -> Result<T> {
        self.map_err(|e| Error::new(operation, e))
    }
}
