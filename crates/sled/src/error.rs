//! How sled's failures become [`session_core::Error`]s.

use std::fmt;
use std::path::{Path, PathBuf};

use session_core::Error;

use crate::codec::Decode;

/// The backend name used in errors.
pub(crate) const BACKEND: &str = "sled";

/// The store directory is open elsewhere: in another process, or in another
/// [`SledStore`](crate::SledStore) of this process.
///
/// sled lets one process at a time open a directory. Opening a directory that
/// is in use fails with [`Error::Backend`] whose source is this type; use
/// [`is_in_use`] to recognize it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreInUse {
    /// The store directory.
    pub path: PathBuf,
    /// Whether the other user is this very process.
    pub by_this_process: bool,
}

impl fmt::Display for StoreInUse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.by_this_process {
            write!(
                f,
                "the sled store at {} is in use: this process has it open already \
                 (drop the other SledStore first, or share one store through an Arc)",
                self.path.display()
            )
        } else {
            write!(
                f,
                "the sled store at {} is in use by another process; sled allows one \
                 process at a time (close the other process, or use a backend shared \
                 between processes such as sqlite, redis or a SQL server)",
                self.path.display()
            )
        }
    }
}

impl std::error::Error for StoreInUse {}

/// Whether `error` says that the store directory is in use (see [`StoreInUse`]).
pub fn is_in_use(error: &Error) -> bool {
    in_use_details(error).is_some()
}

/// The [`StoreInUse`] inside `error`, if it is one.
pub fn in_use_details(error: &Error) -> Option<&StoreInUse> {
    match error {
        Error::Backend { source, .. } => source.downcast_ref::<StoreInUse>(),
        _ => None,
    }
}

pub(crate) fn in_use(path: &Path, by_this_process: bool) -> Error {
    Error::backend(
        BACKEND,
        StoreInUse {
            path: path.to_owned(),
            by_this_process,
        },
    )
}

/// Whether sled failed to take its lock file because someone else holds it.
pub(crate) fn is_lock_error(error: &sled::Error) -> bool {
    matches!(error, sled::Error::Io(io) if io.to_string().contains("could not acquire lock"))
}

/// Any other sled error: corruption keeps its kind, the rest are backend errors.
pub(crate) fn from_sled(path: &Path, error: sled::Error) -> Error {
    match error {
        sled::Error::Corruption { .. } => Error::Corrupt {
            what: format!("sled store {}", path.display()),
            message: "sled found corrupt data in its files".to_owned(),
            source: Some(Box::new(error)),
        },
        other => Error::backend(BACKEND, other),
    }
}

/// An undecodable value or key.
pub(crate) fn corrupt(path: &Path, tree: &str, key: &str, decode: Decode) -> Error {
    Error::corrupt(
        format!("sled store {} (tree {tree}, {key})", path.display()),
        decode.0,
    )
}

/// A blocking task that did not finish (it panicked or the runtime is shutting down).
pub(crate) fn join(error: tokio::task::JoinError) -> Error {
    Error::backend(BACKEND, error)
}
