//! How sled's failures become [`session_core::Error`]s.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use session_core::Error;

use crate::codec::Decode;

/// The backend name used in errors.
pub(crate) const BACKEND: &str = "sled";

/// The store directory is open in another process.
///
/// sled lets one process at a time open a directory (stores opened twice in
/// one process share one database, so this never concerns the process
/// itself). Opening a directory that another process holds for longer than
/// the lock timeout fails with [`Error::Busy`] whose source is this type; use
/// [`is_in_use`] to recognize it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreInUse {
    /// The store directory.
    pub path: PathBuf,
}

impl fmt::Display for StoreInUse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the sled store at {} is in use by another process; sled allows one \
             process at a time (close the other process, or use a backend shared \
             between processes such as sqlite, redis or a SQL server)",
            self.path.display()
        )
    }
}

impl std::error::Error for StoreInUse {}

/// Whether `error` says that the store directory is in use by another
/// process (see [`StoreInUse`]).
pub fn is_in_use(error: &Error) -> bool {
    in_use_details(error).is_some()
}

/// The [`StoreInUse`] inside `error`, if it is one.
pub fn in_use_details(error: &Error) -> Option<&StoreInUse> {
    match error {
        Error::Busy {
            source: Some(source),
            ..
        } => source.downcast_ref::<StoreInUse>(),
        _ => None,
    }
}

/// The directory lock was held by another process for `waited`.
pub(crate) fn in_use(path: &Path, waited: Duration) -> Error {
    Error::Busy {
        what: format!("sled store {}", path.display()),
        waited,
        source: Some(Box::new(StoreInUse {
            path: path.to_owned(),
        })),
    }
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

/// A write to a store opened with [`OpenMode::ReadOnly`](session_core::OpenMode::ReadOnly).
pub(crate) fn read_only(path: &Path) -> Error {
    Error::unsupported(
        BACKEND,
        format!(
            "a write to the store at {}, opened read-only,",
            path.display()
        ),
    )
}
