//! Update state and its partial writes.

use std::collections::BTreeMap;

use session_core::{ErrorKind, Session, UpdateState, UpdateStateChange};

use crate::support::assert_kind;
use crate::{CaseResult, Ctx};

fn state(pts: i32, qts: i32, date: i32, seq: i32, channels: &[(i64, i32)]) -> UpdateState {
    UpdateState {
        pts,
        qts,
        date,
        seq,
        channels: channels.iter().copied().collect(),
    }
}

async fn seeded(ctx: &Ctx) -> session_core::Result<(Session, UpdateState)> {
    let session = ctx.store().open("alice").await?;
    let initial = state(1, 2, 3, 4, &[(10, 100), (11, 110), (12, 120)]);
    session
        .set_update_state(UpdateStateChange::All(initial.clone()))
        .await?;
    assert_eq!(
        session.update_state().await?,
        initial,
        "All did not store the state"
    );
    Ok((session, initial))
}

/// `All` replaces every field, the channel table included.
pub async fn update_state_all_replaces_everything(ctx: Ctx) -> CaseResult {
    let (session, _) = seeded(&ctx).await?;
    let replacement = state(5, 6, 7, 8, &[(13, 130)]);
    session
        .set_update_state(UpdateStateChange::All(replacement.clone()))
        .await?;
    assert_eq!(
        session.update_state().await?,
        replacement,
        "old channels must be gone"
    );
    session
        .set_update_state(UpdateStateChange::All(UpdateState::default()))
        .await?;
    assert_eq!(session.update_state().await?, UpdateState::default());
    Ok(())
}

/// `Primary` sets pts, date and seq and keeps qts and every channel.
pub async fn update_state_primary_keeps_the_rest(ctx: Ctx) -> CaseResult {
    let (session, initial) = seeded(&ctx).await?;
    session
        .set_update_state(UpdateStateChange::Primary {
            pts: 50,
            date: 60,
            seq: 70,
        })
        .await?;
    let expected = UpdateState {
        pts: 50,
        date: 60,
        seq: 70,
        ..initial
    };
    assert_eq!(session.update_state().await?, expected);
    Ok(())
}

/// `Secondary` sets qts and keeps everything else.
pub async fn update_state_secondary_keeps_the_rest(ctx: Ctx) -> CaseResult {
    let (session, initial) = seeded(&ctx).await?;
    session
        .set_update_state(UpdateStateChange::Secondary { qts: 99 })
        .await?;
    let expected = UpdateState { qts: 99, ..initial };
    assert_eq!(session.update_state().await?, expected);
    Ok(())
}

/// `Channel` sets one channel's pts (new or existing) and keeps everything else.
pub async fn update_state_channel_keeps_the_rest(ctx: Ctx) -> CaseResult {
    let (session, initial) = seeded(&ctx).await?;
    session
        .set_update_state(UpdateStateChange::Channel { id: 11, pts: 111 })
        .await?;
    session
        .set_update_state(UpdateStateChange::Channel { id: 14, pts: 140 })
        .await?;
    let mut expected = initial;
    expected.channels.insert(11, 111);
    expected.channels.insert(14, 140);
    assert_eq!(session.update_state().await?, expected);
    Ok(())
}

/// `RemoveChannel` forgets one channel and keeps everything else; removing
/// an unknown channel changes nothing.
pub async fn update_state_remove_channel(ctx: Ctx) -> CaseResult {
    let (session, initial) = seeded(&ctx).await?;
    session
        .set_update_state(UpdateStateChange::RemoveChannel { id: 10 })
        .await?;
    let mut expected = initial;
    expected.channels.remove(&10);
    assert_eq!(session.update_state().await?, expected);
    session
        .set_update_state(UpdateStateChange::RemoveChannel { id: 999 })
        .await?;
    assert_eq!(session.update_state().await?, expected);
    Ok(())
}

/// Hundreds of channels are kept, each with its own pts; `All` with a
/// short table then replaces all of them.
pub async fn update_state_many_channels(ctx: Ctx) -> CaseResult {
    let session = ctx.store().open("alice").await?;
    let mut expected = BTreeMap::new();
    for i in 1..=500i64 {
        let id = i * 7_919;
        let pts = i32::try_from(i * 3).unwrap_or(0);
        session
            .set_update_state(UpdateStateChange::Channel { id, pts })
            .await?;
        expected.insert(id, pts);
    }
    session
        .set_update_state(UpdateStateChange::Primary {
            pts: 1,
            date: 2,
            seq: 3,
        })
        .await?;
    let stored = session.update_state().await?;
    assert_eq!(stored.channels.len(), 500, "channels lost");
    assert_eq!(stored.channels, expected);
    let short = state(1, 2, 3, 4, &[(1, 1), (2, 2)]);
    session
        .set_update_state(UpdateStateChange::All(short.clone()))
        .await?;
    assert_eq!(session.update_state().await?, short);
    Ok(())
}

/// i32 extremes in every field and i64-sized channel ids are stored exactly.
pub async fn update_state_extreme_values(ctx: Ctx) -> CaseResult {
    let session = ctx.store().open("alice").await?;
    let big = 9_007_199_254_740_993;
    let extreme = state(
        i32::MAX,
        i32::MIN,
        i32::MIN,
        i32::MAX,
        &[(1, i32::MIN), (i64::MAX, i32::MAX), (big, 0), (2, -1)],
    );
    session
        .set_update_state(UpdateStateChange::All(extreme.clone()))
        .await?;
    assert_eq!(session.update_state().await?, extreme);
    session
        .set_update_state(UpdateStateChange::Primary {
            pts: i32::MIN,
            date: i32::MAX,
            seq: i32::MIN,
        })
        .await?;
    session
        .set_update_state(UpdateStateChange::Secondary { qts: i32::MAX })
        .await?;
    session
        .set_update_state(UpdateStateChange::Channel {
            id: i64::MAX,
            pts: i32::MIN,
        })
        .await?;
    let mut expected = state(
        i32::MIN,
        i32::MAX,
        i32::MAX,
        i32::MIN,
        &[(1, i32::MIN), (i64::MAX, i32::MIN), (big, 0), (2, -1)],
    );
    assert_eq!(session.update_state().await?, expected);
    session
        .set_update_state(UpdateStateChange::RemoveChannel { id: i64::MAX })
        .await?;
    expected.channels.remove(&i64::MAX);
    assert_eq!(session.update_state().await?, expected);
    Ok(())
}

/// The handle refuses channel keys that are not bare (positive) ids and stores nothing.
pub async fn update_state_rejects_marked_channel_ids(ctx: Ctx) -> CaseResult {
    let (session, initial) = seeded(&ctx).await?;
    let inv = ErrorKind::InvalidInput;
    let marked = -1_000_000_000_042;
    assert_kind(
        session
            .set_update_state(UpdateStateChange::Channel { id: marked, pts: 1 })
            .await,
        inv,
        "Channel with a marked id",
    );
    assert_kind(
        session
            .set_update_state(UpdateStateChange::RemoveChannel { id: 0 })
            .await,
        inv,
        "RemoveChannel 0",
    );
    assert_kind(
        session
            .set_update_state(UpdateStateChange::All(state(1, 1, 1, 1, &[(-5, 1)])))
            .await,
        inv,
        "All with a negative channel id",
    );
    assert_eq!(
        session.update_state().await?,
        initial,
        "a rejected write changed the state"
    );
    Ok(())
}
