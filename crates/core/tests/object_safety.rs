//! Compile-time checks: the backend trait is object safe and usable as
//! `Arc<dyn SessionBackend>`, a `Store` chooses its backend at run time, and
//! every future is `Send` (so it can be spawned on a multi-thread runtime).

use std::sync::Arc;

use session_core::{
    BackendExt, MemoryServerStore, MemoryStore, ServerStore, Session, SessionBackend, Store,
};

fn assert_send<T: Send>(_: &T) {}
fn assert_send_sync<T: Send + Sync>() {}

#[tokio::test]
async fn store_futures_are_send_and_dyn_works() {
    let backend: Arc<dyn SessionBackend> = Arc::new(MemoryStore::new());
    assert_send(&backend.list());
    assert_send(&backend.exists("a"));
    let store = Store::from_arc(backend);
    assert_send(&store.list());
    assert_send(&store.open("a"));
    let session = store.open("a").await.expect("open");
    assert_send(&session.update_state());
    assert_send(&session.cache_peers(&[]));
    assert_send_sync::<Session>();
    assert_send_sync::<Store>();
    assert_send_sync::<Arc<dyn SessionBackend>>();

    // A spawned task can own a handle.
    let handle = tokio::spawn(async move { session.home_dc().await });
    assert_eq!(handle.await.expect("join").expect("home dc"), 2);
}

#[tokio::test]
async fn a_concrete_backend_opens_sessions() {
    let future = MemoryStore::new().open("alice");
    assert_send(&future);
    let session = future.await.expect("open");
    assert_eq!(session.store().list().await.expect("list"), vec!["alice"]);
}

#[tokio::test]
async fn server_store_is_object_safe() {
    let store: Arc<dyn ServerStore> = Arc::new(MemoryServerStore::new());
    assert_send(&store.list_sessions(1));
    assert_send_sync::<Arc<dyn ServerStore>>();
}
