//! Leases: one owner of a session at a time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use session_core::lease::now_ms;
use session_core::{Error, ErrorKind, LeaseGuard, Store};

use crate::support::{CLOCK_SKEW_MS, assert_kind, eventually, join_all};
use crate::{CaseResult, Ctx};

/// Asserts a `LeaseHeld` error naming `session` and `owner`.
#[track_caller]
fn assert_held<T: std::fmt::Debug>(
    result: session_core::Result<T>,
    session: &str,
    owner: &str,
) -> i64 {
    match result {
        Err(Error::LeaseHeld {
            session: s,
            owner: o,
            until_ms,
        }) => {
            assert_eq!(
                (s.as_str(), o.as_str()),
                (session, owner),
                "LeaseHeld names the wrong lease"
            );
            until_ms
        }
        Err(e) => panic!(
            "expected LeaseHeld by {owner:?}, got {} error: {e}",
            e.kind()
        ),
        Ok(value) => panic!("expected LeaseHeld by {owner:?}, got Ok({value:?})"),
    }
}

async fn acquired_by(store: &Store, session: &str, owner: &str, ttl: Duration) -> bool {
    store.acquire_lease(session, owner, ttl).await.is_ok()
}

/// Acquiring a free lease returns who holds it, on what, until when; the
/// session need not exist.
pub async fn lease_acquire(ctx: Ctx) -> CaseResult {
    let store = ctx.store();
    let before = now_ms();
    let info = store
        .acquire_lease("alice", "worker-1", Duration::from_secs(10))
        .await?;
    let after = now_ms();
    assert_eq!(
        (info.session.as_str(), info.owner.as_str()),
        ("alice", "worker-1")
    );
    assert!(
        info.expires_at_ms >= before + 10_000 - CLOCK_SKEW_MS
            && info.expires_at_ms <= after + 10_000 + CLOCK_SKEW_MS,
        "expires_at_ms {} is not about 10 s after the call ({before}..{after})",
        info.expires_at_ms
    );
    assert!(!store.exists("alice").await?, "a lease created the session");
    let session = store.session("alice")?;
    assert_kind(
        session.lease("", Duration::from_secs(1)).await,
        ErrorKind::InvalidInput,
        "empty owner",
    );
    assert_kind(
        session.lease("x", Duration::ZERO).await,
        ErrorKind::InvalidInput,
        "zero TTL",
    );
    assert!(store.release_lease("alice", "worker-1").await?);
    Ok(())
}

/// The holder may acquire again; that renews (extends) the lease.
pub async fn lease_renew_by_same_owner(ctx: Ctx) -> CaseResult {
    let store = ctx.store();
    let first = store
        .acquire_lease("alice", "worker-1", Duration::from_secs(2))
        .await?;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let second = store
        .acquire_lease("alice", "worker-1", Duration::from_secs(20))
        .await?;
    assert_eq!(second.owner, "worker-1");
    assert!(
        second.expires_at_ms > first.expires_at_ms + 10_000,
        "renewal did not extend the lease ({} -> {})",
        first.expires_at_ms,
        second.expires_at_ms
    );
    assert!(store.release_lease("alice", "worker-1").await?);
    Ok(())
}

/// A second owner gets `LeaseHeld` naming the holder and its expiry.
pub async fn lease_held_names_the_owner(ctx: Ctx) -> CaseResult {
    let store = ctx.store();
    let held = store
        .acquire_lease("alice", "worker-1", Duration::from_secs(10))
        .await?;
    let result = store
        .acquire_lease("alice", "worker-2", Duration::from_secs(10))
        .await;
    if let Err(e) = &result {
        assert!(
            e.to_string().contains("worker-1"),
            "the message does not name the owner: {e}"
        );
    }
    let until = assert_held(result, "alice", "worker-1");
    assert!(
        (until - held.expires_at_ms).abs() <= 1_000,
        "LeaseHeld until {until}, but the lease expires at {}",
        held.expires_at_ms
    );
    assert_held(
        store
            .acquire_lease("alice", "worker-2", Duration::from_secs(1))
            .await,
        "alice",
        "worker-1",
    );
    store
        .acquire_lease("alice", "worker-1", Duration::from_secs(10))
        .await?;
    assert!(store.release_lease("alice", "worker-1").await?);
    Ok(())
}

/// Releasing answers true once, and lets another owner in at once.
pub async fn lease_release(ctx: Ctx) -> CaseResult {
    let store = ctx.store();
    store
        .acquire_lease("alice", "worker-1", Duration::from_secs(30))
        .await?;
    assert!(
        store.release_lease("alice", "worker-1").await?,
        "first release"
    );
    assert!(
        !store.release_lease("alice", "worker-1").await?,
        "second release"
    );
    let info = store
        .acquire_lease("alice", "worker-2", Duration::from_secs(30))
        .await?;
    assert_eq!(info.owner, "worker-2");
    assert!(!store.release_lease("never-leased", "worker-1").await?);
    assert!(store.release_lease("alice", "worker-2").await?);
    Ok(())
}

/// Another owner's release neither answers true nor frees the lease.
pub async fn lease_release_by_other_owner_is_a_no_op(ctx: Ctx) -> CaseResult {
    let store = ctx.store();
    store
        .acquire_lease("alice", "worker-1", Duration::from_secs(30))
        .await?;
    assert!(!store.release_lease("alice", "worker-2").await?);
    assert_held(
        store
            .acquire_lease("alice", "worker-2", Duration::from_secs(1))
            .await,
        "alice",
        "worker-1",
    );
    assert!(store.release_lease("alice", "worker-1").await?);
    Ok(())
}

/// A lease that is not renewed expires after its TTL and another owner gets it.
pub async fn lease_expires_after_ttl(ctx: Ctx) -> CaseResult {
    let store = ctx.store();
    let start = Instant::now();
    store
        .acquire_lease("alice", "worker-1", Duration::from_millis(1_000))
        .await?;
    assert_held(
        store
            .acquire_lease("alice", "worker-2", Duration::from_secs(5))
            .await,
        "alice",
        "worker-1",
    );
    let taken = eventually(Duration::from_secs(5), || {
        acquired_by(&store, "alice", "worker-2", Duration::from_secs(5))
    })
    .await;
    assert!(taken, "the lease did not expire within 5 s of its 1 s TTL");
    assert!(
        start.elapsed() >= Duration::from_millis(900),
        "another owner got the lease after {:?}, before its 1 s TTL ran out",
        start.elapsed()
    );
    assert!(
        !store.release_lease("alice", "worker-1").await?,
        "an expired holder released"
    );
    assert_held(
        store
            .acquire_lease("alice", "worker-1", Duration::from_secs(1))
            .await,
        "alice",
        "worker-2",
    );
    assert!(store.release_lease("alice", "worker-2").await?);
    Ok(())
}

/// A `LeaseGuard` keeps its lease well past the TTL (2.5 s on a 1 s TTL) by
/// renewing it, and releases it when dropped.
pub async fn lease_guard_renews_and_releases_on_drop(ctx: Ctx) -> CaseResult {
    let store = ctx.store();
    let guard = LeaseGuard::acquire(
        store.clone(),
        "alice",
        "guard",
        Duration::from_millis(1_000),
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_held(
        store
            .acquire_lease("alice", "other", Duration::from_secs(5))
            .await,
        "alice",
        "guard",
    );
    let status = guard.status();
    assert!(
        status.is_ok(),
        "the guard reports a failed renewal: {status:?}"
    );
    drop(guard);
    let taken = eventually(Duration::from_secs(2), || {
        acquired_by(&store, "alice", "other", Duration::from_secs(5))
    })
    .await;
    assert!(taken, "dropping the guard did not release the lease");
    assert!(store.release_lease("alice", "other").await?);
    Ok(())
}

/// `LeaseGuard::release` frees the lease at once.
pub async fn lease_guard_release(ctx: Ctx) -> CaseResult {
    let store = ctx.store();
    let session = store.session("alice")?;
    let guard = session.lease("guard", Duration::from_secs(30)).await?;
    assert_eq!(guard.session(), "alice");
    assert!(guard.release().await?, "release of a held lease");
    store
        .acquire_lease("alice", "other", Duration::from_secs(5))
        .await?;
    assert!(store.release_lease("alice", "other").await?);
    Ok(())
}

/// Leases on different sessions are independent.
pub async fn leases_are_per_session(ctx: Ctx) -> CaseResult {
    let store = ctx.store();
    store
        .acquire_lease("alice", "worker-1", Duration::from_secs(30))
        .await?;
    store
        .acquire_lease("bob", "worker-2", Duration::from_secs(30))
        .await?;
    store
        .acquire_lease("alice:bob", "worker-3", Duration::from_secs(30))
        .await?;
    assert_held(
        store
            .acquire_lease("bob", "worker-1", Duration::from_secs(1))
            .await,
        "bob",
        "worker-2",
    );
    assert!(store.release_lease("alice", "worker-1").await?);
    assert_held(
        store
            .acquire_lease("bob", "worker-1", Duration::from_secs(1))
            .await,
        "bob",
        "worker-2",
    );
    assert!(store.release_lease("bob", "worker-2").await?);
    assert!(store.release_lease("alice:bob", "worker-3").await?);
    Ok(())
}

/// Of 16 owners racing for one lease, exactly one wins and the others are
/// told who did.
pub async fn concurrent_lease_acquire_one_wins(ctx: Ctx) -> CaseResult {
    let store = ctx.store();
    let barrier = Arc::new(tokio::sync::Barrier::new(16));
    let handles = (0..16)
        .map(|i| {
            let store = store.clone();
            let barrier = Arc::clone(&barrier);
            tokio::spawn(async move {
                barrier.wait().await;
                store
                    .acquire_lease("alice", &format!("worker-{i}"), Duration::from_secs(30))
                    .await
            })
        })
        .collect();
    let results = join_all(handles).await;
    let winners: Vec<String> = results
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .map(|i| i.owner.clone())
        .collect();
    assert_eq!(
        winners.len(),
        1,
        "{} owners got the lease at once: {winners:?}",
        winners.len()
    );
    let winner = winners.first().cloned().unwrap_or_default();
    for result in results.into_iter().filter(Result::is_err) {
        assert_held(result, "alice", &winner);
    }
    assert!(store.release_lease("alice", &winner).await?);
    Ok(())
}
