//! Two stores open on one namespace at once (backends shared between processes).

use std::sync::Arc;
use std::time::Duration;

use session_core::{Error, ErrorKind, Peer, UpdateStateChange};

use crate::support::{assert_kind, join_all, rich_session, user};
use crate::{CaseResult, Ctx};

/// Writes through one store are read through the other, both ways.
pub async fn two_stores_see_each_others_writes(ctx: Ctx) -> CaseResult {
    let first = ctx.store();
    let second = ctx.namespace().open_store().await?;
    let data = rich_session(60);
    first.import("alice", &data).await?;
    first.flush().await?;
    assert!(second.exists("alice").await?);
    assert_eq!(second.export("alice").await?, data);
    let session = second.session("alice")?;
    session
        .cache_peer(&Peer::new(user(999)).with_username("from_second"))
        .await?;
    session
        .set_update_state(UpdateStateChange::Channel { id: 4242, pts: 7 })
        .await?;
    second.flush().await?;
    let seen = first.session("alice")?;
    assert_eq!(
        seen.peer_by_username("FROM_SECOND").await?.map(|p| p.id),
        Some(user(999))
    );
    assert_eq!(seen.update_state().await?.channels.get(&4242), Some(&7));
    assert_eq!(first.list().await?, second.list().await?);
    Ok(())
}

/// Concurrent creates of one session through two stores: exactly one succeeds.
pub async fn two_stores_create_exactly_one(ctx: Ctx) -> CaseResult {
    let stores = [ctx.store(), ctx.namespace().open_store().await?];
    for round in 0..5 {
        let name = format!("race-{round}");
        let barrier = Arc::new(tokio::sync::Barrier::new(8));
        let handles = (0..8)
            .map(|i| {
                let store = stores[i % 2].clone();
                let (name, barrier) = (name.clone(), Arc::clone(&barrier));
                tokio::spawn(async move {
                    barrier.wait().await;
                    store.create(&name).await
                })
            })
            .collect();
        let results = join_all(handles).await;
        let ok = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(
            ok, 1,
            "{ok} of 8 creates of {name:?} through two stores succeeded"
        );
        for result in results.into_iter().filter(Result::is_err) {
            assert_kind(result, ErrorKind::AlreadyExists, "losing create");
        }
    }
    Ok(())
}

/// A delete through one store is seen by the other.
pub async fn two_stores_see_deletes(ctx: Ctx) -> CaseResult {
    let first = ctx.store();
    let second = ctx.namespace().open_store().await?;
    first.import("alice", &rich_session(61)).await?;
    first.create("bob").await?;
    assert!(second.exists("alice").await?);
    assert!(first.delete("alice").await?);
    first.flush().await?;
    assert!(!second.exists("alice").await?);
    assert_kind(
        second.export("alice").await,
        ErrorKind::NotFound,
        "export after delete",
    );
    assert!(!second.delete("alice").await?);
    assert_eq!(second.list().await?, vec!["bob".to_owned()]);
    Ok(())
}

/// A lease taken through one store holds against owners using the other.
pub async fn two_stores_share_leases(ctx: Ctx) -> CaseResult {
    let first = ctx.store();
    let second = ctx.namespace().open_store().await?;
    first
        .acquire_lease("alice", "process-1", Duration::from_secs(30))
        .await?;
    match second
        .acquire_lease("alice", "process-2", Duration::from_secs(30))
        .await
    {
        Err(Error::LeaseHeld { owner, .. }) => assert_eq!(owner, "process-1"),
        other => panic!("expected LeaseHeld by process-1 through the second store, got {other:?}"),
    }
    assert!(first.release_lease("alice", "process-1").await?);
    second
        .acquire_lease("alice", "process-2", Duration::from_secs(30))
        .await?;
    assert!(second.release_lease("alice", "process-2").await?);
    Ok(())
}
