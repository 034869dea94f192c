//! Home DC, DC options and auth keys.

use session_core::model::production_dcs;
use session_core::{AUTH_KEY_LEN, AuthKey, DcOption, ErrorKind};

use crate::support::{assert_kind, every_byte_key, key, v4, v6};
use crate::{CaseResult, Ctx};

/// The home DC reads back as written, through the store and the handle.
pub async fn home_dc_round_trip(ctx: Ctx) -> CaseResult {
    let store = ctx.store();
    let session = store.open("alice").await?;
    for dc in [1, 3, 5, 2, 32_767, 4] {
        session.set_home_dc(dc).await?;
        assert_eq!(session.home_dc().await?, dc);
        assert_eq!(store.home_dc("alice").await?, dc);
    }
    assert_eq!(
        session.dc_options().await?,
        production_dcs(),
        "set_home_dc changed DC options"
    );
    assert_kind(
        session.set_home_dc(0).await,
        ErrorKind::InvalidInput,
        "home DC 0",
    );
    assert_eq!(
        session.home_dc().await?,
        4,
        "a rejected home DC changed the stored one"
    );
    Ok(())
}

/// A DC option may carry IPv4 only, IPv6 only, both or neither, with any
/// port, and reads back exactly.
pub async fn dc_option_address_variants(ctx: Ctx) -> CaseResult {
    let store = ctx.store();
    let session = store.open("alice").await?;
    let options = [
        DcOption::new(10, Some(v4(0, 0, 0, 0, 1)), None),
        DcOption::new(11, None, Some(v6([0, 0, 0, 0, 0, 0, 0, 1], 65_535))),
        DcOption::new(
            12,
            Some(v4(255, 255, 255, 255, 443)),
            Some(v6([0xffff, 0xabcd, 0, 0x12, 0xfe80, 1, 2, 3], 80)),
        ),
        DcOption {
            id: 13,
            ipv4: None,
            ipv6: None,
            auth_key: Some(key(13)),
        },
        DcOption::new(1, Some(v4(149, 154, 175, 58, 5222)), None),
        DcOption::new(
            3,
            None,
            Some(v6([0x2001, 0xb28, 0xf23d, 0xf003, 0, 0, 0, 0xb], 443)),
        ),
    ];
    for dc in &options {
        session.set_dc_option(dc).await?;
    }
    let stored = session.dc_options().await?;
    for dc in &options {
        let found = stored.iter().find(|s| s.id == dc.id);
        assert_eq!(found, Some(dc), "DC {} did not read back exactly", dc.id);
    }
    assert_eq!(stored.len(), 9, "DCs 1..=5 and 10..=13: {stored:?}");
    Ok(())
}

/// Every DC keeps its own key; the home key follows the home DC.
pub async fn dc_keys_on_several_dcs(ctx: Ctx) -> CaseResult {
    let store = ctx.store();
    let session = store.open("alice").await?;
    for id in 1..=5 {
        session
            .set_auth_key(id, Some(key(u64::from(id.unsigned_abs()) * 1_000)))
            .await?;
    }
    session
        .set_dc_option(&DcOption {
            auth_key: Some(key(203)),
            ..DcOption::new(203, Some(v4(10, 0, 0, 1, 443)), None)
        })
        .await?;
    let stored = session.dc_options().await?;
    for dc in &stored {
        let expected = if dc.id == 203 {
            key(203)
        } else {
            key(u64::from(dc.id.unsigned_abs()) * 1_000)
        };
        assert_eq!(dc.auth_key.as_ref(), Some(&expected), "key of DC {}", dc.id);
    }
    assert_eq!(
        session.home_auth_key().await?,
        Some(key(2_000)),
        "home DC 2's key"
    );
    session.set_home_dc(4).await?;
    assert_eq!(
        session.home_auth_key().await?,
        Some(key(4_000)),
        "home DC 4's key"
    );
    session.set_home_dc(203).await?;
    assert_eq!(session.home_auth_key().await?, Some(key(203)));
    Ok(())
}

/// `set_dc_option` replaces addresses and key together: a DC written
/// without a key loses its old one.
pub async fn dc_option_is_replaced_whole(ctx: Ctx) -> CaseResult {
    let store = ctx.store();
    let session = store.open("alice").await?;
    let first = DcOption {
        id: 2,
        ipv4: Some(v4(1, 1, 1, 1, 443)),
        ipv6: Some(v6([1, 2, 3, 4, 5, 6, 7, 8], 443)),
        auth_key: Some(key(1)),
    };
    session.set_dc_option(&first).await?;
    assert_eq!(session.dc_option(2).await?, Some(first));
    let second = DcOption::new(2, Some(v4(2, 2, 2, 2, 80)), None);
    session.set_dc_option(&second).await?;
    assert_eq!(
        session.dc_option(2).await?,
        Some(second),
        "the key or IPv6 address survived"
    );
    let third = DcOption {
        id: 2,
        ipv4: None,
        ipv6: None,
        auth_key: Some(key(3)),
    };
    session.set_dc_option(&third).await?;
    assert_eq!(session.dc_option(2).await?, Some(third));
    assert_eq!(
        session.dc_options().await?.len(),
        5,
        "replacing DC 2 added or lost a DC"
    );
    Ok(())
}

/// `Session::set_auth_key` sets and clears one DC's key and keeps its
/// addresses; on an unknown DC it is `NotFound`.
pub async fn set_auth_key_on_the_handle(ctx: Ctx) -> CaseResult {
    let store = ctx.store();
    let session = store.open("alice").await?;
    let before = session.dc_option(4).await?;
    session.set_auth_key(4, Some(key(44))).await?;
    let after = session.dc_option(4).await?;
    let expected = before.map(|dc| DcOption {
        auth_key: Some(key(44)),
        ..dc
    });
    assert_eq!(after, expected);
    assert_eq!(session.home_auth_key().await?, None, "DC 4 is not home");
    session.set_auth_key(2, Some(key(22))).await?;
    assert_eq!(session.home_auth_key().await?, Some(key(22)));
    session.set_auth_key(4, None).await?;
    assert_eq!(
        session.dc_option(4).await?.and_then(|dc| dc.auth_key),
        None,
        "key not cleared"
    );
    assert_eq!(
        session.home_auth_key().await?,
        Some(key(22)),
        "clearing DC 4 touched DC 2"
    );
    assert_kind(
        session.set_auth_key(99, Some(key(99))).await,
        ErrorKind::NotFound,
        "unknown DC",
    );
    assert_eq!(
        session.dc_option(99).await?,
        None,
        "set_auth_key created DC 99"
    );
    Ok(())
}

/// Auth keys read back byte for byte, whatever the bytes (NUL, 0xFF, every value).
pub async fn auth_key_bytes_are_exact(ctx: Ctx) -> CaseResult {
    let store = ctx.store();
    let session = store.open("alice").await?;
    let mut reversed = *every_byte_key().expose();
    reversed.reverse();
    let mut text_like = [b'\''; AUTH_KEY_LEN];
    text_like[0] = 0;
    text_like[1] = b'\\';
    text_like[AUTH_KEY_LEN - 1] = 0xC3;
    let keys = [
        every_byte_key(),
        AuthKey::new([0; AUTH_KEY_LEN]),
        AuthKey::new([0xFF; AUTH_KEY_LEN]),
        AuthKey::new(reversed),
        AuthKey::new(text_like),
    ];
    for (dc, key) in (1..=5).zip(keys.iter()) {
        session.set_auth_key(dc, Some(key.clone())).await?;
    }
    let stored = session.dc_options().await?;
    let exported = session.export().await?;
    for (dc, key) in (1..=5).zip(keys.iter()) {
        for (source, list) in [("dc_options", &stored), ("export", &exported.dcs)] {
            let found = list
                .iter()
                .find(|o| o.id == dc)
                .and_then(|o| o.auth_key.as_ref());
            assert!(
                found.is_some_and(|k| k.expose() == key.expose()),
                "{source}: the key of DC {dc} did not read back byte for byte"
            );
        }
    }
    assert_eq!(
        session.home_auth_key().await?.map(|k| *k.expose()),
        Some(*keys[1].expose())
    );
    Ok(())
}

/// `dc_options` and `export` list DCs sorted by id, whatever the write order.
pub async fn dc_options_are_sorted_by_id(ctx: Ctx) -> CaseResult {
    let store = ctx.store();
    let session = store.open("alice").await?;
    for id in [300, 7, 100, 6, 32_767] {
        session
            .set_dc_option(&DcOption::new(id, Some(v4(10, 0, 0, 7, 443)), None))
            .await?;
    }
    let expected = vec![1, 2, 3, 4, 5, 6, 7, 100, 300, 32_767];
    let ids: Vec<i32> = session.dc_options().await?.iter().map(|dc| dc.id).collect();
    assert_eq!(ids, expected, "dc_options");
    let ids: Vec<i32> = session.export().await?.dcs.iter().map(|dc| dc.id).collect();
    assert_eq!(ids, expected, "export");
    Ok(())
}
