//! Leases: one owner of a session at a time, so one auth key is never used
//! from two places at once (`AUTH_KEY_DUPLICATED`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::{Error, Result};
use crate::store::Store;

/// A lease as the store recorded it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseInfo {
    /// The session leased.
    pub session: String,
    /// Who holds it.
    pub owner: String,
    /// When it expires, in milliseconds since the Unix epoch.
    pub expires_at_ms: i64,
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Checks a lease owner name and TTL before a backend sees them.
pub fn validate_lease(owner: &str, ttl: Duration) -> Result<()> {
    if owner.is_empty() || owner.len() > 255 {
        return Err(Error::invalid("a lease owner is 1 to 255 bytes of UTF-8"));
    }
    if ttl < Duration::from_millis(10) || ttl > Duration::from_secs(86_400) {
        return Err(Error::invalid(format!(
            "a lease TTL is between 10 ms and one day, got {ttl:?}"
        )));
    }
    Ok(())
}

/// A held lease, renewed in the background at a third of its TTL and
/// released when dropped (or by [`LeaseGuard::release`]).
#[derive(Debug)]
pub struct LeaseGuard {
    store: Store,
    session: String,
    owner: String,
    info: watch::Receiver<std::result::Result<LeaseInfo, String>>,
    renewer: Option<JoinHandle<()>>,
}

impl LeaseGuard {
    /// Acquires the lease and starts renewing it. Must be called inside a Tokio runtime.
    pub async fn acquire(
        store: Store,
        session: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<LeaseGuard> {
        validate_lease(owner, ttl)?;
        let info = store.acquire_lease(session, owner, ttl).await?;
        let (tx, rx) = watch::channel(Ok(info));
        let renewer = tokio::spawn({
            let store = store.clone();
            let session = session.to_owned();
            let owner = owner.to_owned();
            async move {
                let period = ttl / 3;
                loop {
                    tokio::time::sleep(period).await;
                    let result = store.acquire_lease(&session, &owner, ttl).await;
                    let lost = matches!(result, Err(Error::LeaseHeld { .. }));
                    if tx.send(result.map_err(|e| e.to_string())).is_err() || lost {
                        return;
                    }
                }
            }
        });
        Ok(LeaseGuard {
            store,
            session: session.to_owned(),
            owner: owner.to_owned(),
            info: rx,
            renewer: Some(renewer),
        })
    }

    /// The last renewal's outcome: the lease, or why renewing failed.
    pub fn status(&self) -> std::result::Result<LeaseInfo, String> {
        self.info.borrow().clone()
    }

    /// The leased session.
    pub fn session(&self) -> &str {
        &self.session
    }

    /// Stops renewing and releases the lease now.
    pub async fn release(mut self) -> Result<bool> {
        if let Some(renewer) = self.renewer.take() {
            renewer.abort();
        }
        self.store.release_lease(&self.session, &self.owner).await
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        if let Some(renewer) = self.renewer.take() {
            renewer.abort();
            let store = self.store.clone();
            let session = std::mem::take(&mut self.session);
            let owner = std::mem::take(&mut self.owner);
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(async move {
                    let _ = store.release_lease(&session, &owner).await;
                });
            }
        }
    }
}
