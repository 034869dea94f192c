//! Compile-time checks: the traits are object safe, usable as `Arc<dyn …>`,
//! and their futures are `Send` (so they can be spawned on a multi-thread runtime).

use std::sync::Arc;

use session_core::{
    MemoryServerStore, MemoryStore, ServerStore, Session, SessionStore, SessionStoreExt,
};

fn assert_send<T: Send>(_: &T) {}
fn assert_send_sync<T: Send + Sync>() {}

#[tokio::test]
async fn store_futures_are_send_and_dyn_works() {
    let store: Arc<dyn SessionStore> = Arc::new(MemoryStore::new());
    assert_send(&store.list());
    assert_send(&store.exists("a"));
    assert_send(&store.open("a"));
    let session = store.open("a").await.expect("open");
    assert_send(&session.update_state());
    assert_send(&session.cache_peers(&[]));
    assert_send_sync::<Session>();
    assert_send_sync::<Arc<dyn SessionStore>>();

    // A spawned task can own a handle.
    let handle = tokio::spawn(async move { session.home_dc().await });
    assert_eq!(handle.await.expect("join").expect("home dc"), 2);
}

#[tokio::test]
async fn server_store_is_object_safe() {
    let store: Arc<dyn ServerStore> = Arc::new(MemoryServerStore::new());
    assert_send(&store.list_sessions(1));
    assert_send_sync::<Arc<dyn ServerStore>>();
}
