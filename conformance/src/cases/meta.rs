//! Self user, metadata and its times, takeout id.

use std::time::Duration;

use session_core::lease::now_ms;
use session_core::{DcOption, ErrorKind, SelfUser};

use crate::support::{CLOCK_SKEW_MS, assert_kind, v4};
use crate::{CaseResult, Ctx};

/// The self user is set, replaced and cleared; ids above 2^53 stay exact.
pub async fn self_user_set_and_clear(ctx: Ctx) -> CaseResult {
    let store = ctx.store();
    let session = store.open("alice").await?;
    assert_eq!(session.self_user().await?, None);
    for user in [
        Some(SelfUser {
            id: 1,
            is_bot: false,
        }),
        Some(SelfUser {
            id: 9_007_199_254_740_993,
            is_bot: true,
        }),
        None,
        Some(SelfUser {
            id: i64::MAX,
            is_bot: false,
        }),
        None,
    ] {
        session.set_self_user(user).await?;
        assert_eq!(session.self_user().await?, user);
    }
    assert_kind(
        session
            .set_self_user(Some(SelfUser {
                id: 0,
                is_bot: false,
            }))
            .await,
        ErrorKind::InvalidInput,
        "self user id 0",
    );
    Ok(())
}

/// `api_id` and `test_mode` read back as written, including `None` and extremes.
pub async fn metadata_round_trip(ctx: Ctx) -> CaseResult {
    let store = ctx.store();
    let session = store.open("alice").await?;
    for (api_id, test_mode) in [
        (Some(1), true),
        (Some(i32::MAX), false),
        (Some(i32::MIN), true),
        (None, true),
        (Some(0), false),
        (None, false),
    ] {
        session.set_metadata(api_id, test_mode).await?;
        let meta = session.metadata().await?;
        assert_eq!((meta.api_id, meta.test_mode), (api_id, test_mode));
        let data = session.export().await?;
        assert_eq!((data.api_id, data.test_mode), (api_id, test_mode), "export");
    }
    Ok(())
}

/// Every session-level write (home DC, DC option, self user, metadata,
/// takeout id) moves `updated_at_ms` forward; `created_at_ms` never moves.
pub async fn updated_at_moves_forward_created_at_stays(ctx: Ctx) -> CaseResult {
    let store = ctx.store();
    let session = store.open("alice").await?;
    let first = session.metadata().await?;
    let mut previous = first.updated_at_ms;
    for step in 0..5 {
        tokio::time::sleep(Duration::from_millis(25)).await;
        let before = now_ms();
        let what = match step {
            0 => {
                session.set_home_dc(3).await?;
                "set_home_dc"
            }
            1 => {
                session
                    .set_dc_option(&DcOption::new(9, Some(v4(1, 2, 3, 4, 5)), None))
                    .await?;
                "set_dc_option"
            }
            2 => {
                session
                    .set_self_user(Some(SelfUser {
                        id: 5,
                        is_bot: false,
                    }))
                    .await?;
                "set_self_user"
            }
            3 => {
                session.set_metadata(Some(5), false).await?;
                "set_metadata"
            }
            _ => {
                session.set_takeout_id(Some(5)).await?;
                "set_takeout_id"
            }
        };
        let meta = session.metadata().await?;
        assert_eq!(
            meta.created_at_ms, first.created_at_ms,
            "{what} moved created_at_ms"
        );
        assert!(
            meta.updated_at_ms > previous,
            "{what} did not move updated_at_ms forward ({} -> {})",
            previous,
            meta.updated_at_ms
        );
        assert!(
            meta.updated_at_ms >= before - CLOCK_SKEW_MS,
            "{what}: updated_at_ms {} is far before the write ({before})",
            meta.updated_at_ms
        );
        previous = meta.updated_at_ms;
    }
    Ok(())
}

/// The takeout id is set and cleared; `Some(0)` is not `None`; i64 extremes are exact.
pub async fn takeout_id_set_clear_and_extremes(ctx: Ctx) -> CaseResult {
    let store = ctx.store();
    let session = store.open("alice").await?;
    assert_eq!(session.takeout_id().await?, None);
    for value in [
        Some(0),
        None,
        Some(i64::MIN),
        Some(i64::MAX),
        Some(-1),
        Some(1),
        None,
    ] {
        session.set_takeout_id(value).await?;
        assert_eq!(session.takeout_id().await?, value);
        assert_eq!(session.export().await?.takeout_id, value, "export");
    }
    Ok(())
}
