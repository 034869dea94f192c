//! Auth keys never leak into `Debug` output or error messages.

use std::time::Duration;

use session_core::{AUTH_KEY_LEN, AuthKey, Error};

use crate::support::Rng;
use crate::{CaseResult, Ctx};

fn base64(bytes: &[u8], alphabet: &[u8; 64]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            let index = usize::try_from((n >> (18 - 6 * i)) & 63).unwrap_or(0);
            out.push(char::from(alphabet[index]));
        }
    }
    out
}

const STANDARD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URL_SAFE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Every rendering of (part of) the key that must never appear in text.
fn key_renderings(key: &[u8; AUTH_KEY_LEN]) -> Vec<String> {
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    let mut needles = Vec::new();
    for start in 0..=AUTH_KEY_LEN - 8 {
        needles.push(hex[start * 2..start * 2 + 16].to_owned());
        let decimal: Vec<String> = key[start..start + 6].iter().map(u8::to_string).collect();
        needles.push(decimal.join(", "));
    }
    for start in (0..=AUTH_KEY_LEN - 12).step_by(3) {
        needles.push(base64(&key[start..start + 12], STANDARD));
        needles.push(base64(&key[start..start + 12], URL_SAFE));
    }
    needles
}

fn error_texts(error: &Error) -> Vec<String> {
    let mut texts = vec![
        error.to_string(),
        format!("{error:?}"),
        format!("{error:#?}"),
    ];
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        texts.push(cause.to_string());
        texts.push(format!("{cause:?}"));
        source = cause.source();
    }
    texts
}

/// `Debug` of DC options, exports, the store and the handle, and the text of
/// errors, never contain the key bytes (as hex, decimal or base64).
pub async fn errors_and_debug_never_show_keys(ctx: Ctx) -> CaseResult {
    let store = ctx.store();
    let mut bytes = [0u8; AUTH_KEY_LEN];
    Rng::new(0x005E_C2E7).fill(&mut bytes);
    let secret = AuthKey::new(bytes);
    let session = store.open("alice").await?;
    session.set_auth_key(2, Some(secret.clone())).await?;
    session.set_auth_key(4, Some(secret.clone())).await?;
    store.create("bob").await?;

    let mut texts = vec![
        format!("{:?}", session.dc_options().await?),
        format!("{:#?}", session.export().await?),
        format!("{:?}", session.home_auth_key().await?),
        format!("{store:?}"),
        format!("{session:?}"),
        format!("{ctx:?}"),
    ];
    let mut errors = Vec::new();
    if let Err(e) = session.set_auth_key(99, Some(secret.clone())).await {
        errors.push(e);
    }
    if let Err(e) = store.copy("alice", "bob", false).await {
        errors.push(e);
    }
    if let Err(e) = store.create("alice").await {
        errors.push(e);
    }
    if let Err(e) = store.export("missing").await {
        errors.push(e);
    }
    if ctx.declared().leases {
        store
            .acquire_lease("alice", "first", Duration::from_secs(5))
            .await?;
        if let Err(e) = store
            .acquire_lease("alice", "second", Duration::from_secs(5))
            .await
        {
            errors.push(e);
        }
        store.release_lease("alice", "first").await?;
    }
    assert!(
        errors.len() >= 4,
        "the suite expected 4 or more errors, got {errors:?}"
    );
    for error in &errors {
        texts.extend(error_texts(error));
    }
    let needles = key_renderings(secret.expose());
    for text in &texts {
        let lower = text.to_lowercase();
        for needle in &needles {
            let found = if needle.chars().all(|c| c.is_ascii_hexdigit()) {
                lower.contains(needle.as_str())
            } else {
                text.contains(needle.as_str())
            };
            assert!(!found, "key material ({needle}) appears in: {text}");
        }
    }
    Ok(())
}
