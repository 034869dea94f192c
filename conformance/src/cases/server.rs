//! Server-side stores (`ServerStore`) and `SessionSubject` observers.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use session_core::{
    AuthKey, Error, ErrorKind, ServerSalt, ServerStore, SessionEvent, SessionObserver,
    SessionSubject,
};

use crate::CaseResult;
use crate::support::{assert_kind, eventually, every_byte_key, join_all, key};

fn salt(valid_since: i64, valid_until: i64, salt: i64) -> ServerSalt {
    ServerSalt {
        valid_since,
        valid_until,
        salt,
    }
}

/// Keys are stored under their `auth_key_id` and read back byte for byte.
pub async fn server_auth_key_round_trip(store: Arc<dyn ServerStore>) -> CaseResult {
    for key in [
        every_byte_key(),
        key(1),
        AuthKey::new([0; 256]),
        AuthKey::new([0xFF; 256]),
    ] {
        let id = store.put_auth_key(&key).await?;
        assert_eq!(
            id,
            key.id(),
            "put_auth_key must answer the key's auth_key_id"
        );
        let stored = store.auth_key(id).await?;
        assert!(
            stored.as_ref().is_some_and(|k| k.expose() == key.expose()),
            "key {id:016x} did not read back byte for byte"
        );
    }
    let unknown = key(2).id();
    assert_eq!(store.auth_key(unknown).await?, None);
    Ok(())
}

/// Putting the same key again keeps one entry, with its sessions and salts.
pub async fn server_put_same_key_twice(store: Arc<dyn ServerStore>) -> CaseResult {
    let key = key(3);
    let id = store.put_auth_key(&key).await?;
    assert!(store.create_session(id, 1).await?);
    store.add_salt(id, salt(0, 100, 5)).await?;
    assert_eq!(store.put_auth_key(&key).await?, id);
    assert_eq!(store.auth_key(id).await?, Some(key));
    assert_eq!(
        store.list_sessions(id).await?,
        vec![1],
        "re-putting the key dropped its sessions"
    );
    assert!(
        store.has_valid_salt(id, 5, 50).await?,
        "re-putting the key dropped its salts"
    );
    Ok(())
}

/// Reads about an unknown key answer nothing (false, empty, `None`).
pub async fn server_unknown_key_reads(store: Arc<dyn ServerStore>) -> CaseResult {
    let id = key(4).id();
    assert_eq!(store.auth_key(id).await?, None);
    assert!(!store.has_session(id, 1).await?);
    assert_eq!(store.list_sessions(id).await?, Vec::<i64>::new());
    assert!(!store.has_valid_salt(id, 1, 1).await?);
    assert_eq!(store.future_salts(id, 0, 10).await?, vec![]);
    assert!(!store.destroy_session(id, 1).await?);
    assert!(!store.destroy_auth_key(id).await?);
    Ok(())
}

/// Sessions and salts of an unknown key are refused with `NotFound`.
pub async fn server_unknown_key_writes_are_not_found(store: Arc<dyn ServerStore>) -> CaseResult {
    let id = key(5).id();
    assert_kind(
        store.create_session(id, 1).await,
        ErrorKind::NotFound,
        "create_session",
    );
    assert_kind(
        store.add_salt(id, salt(0, 10, 1)).await,
        ErrorKind::NotFound,
        "add_salt",
    );
    assert_eq!(
        store.auth_key(id).await?,
        None,
        "a refused write created the key"
    );
    Ok(())
}

/// Session ids are created once, found, listed sorted and destroyed once.
pub async fn server_sessions_create_has_destroy_list(store: Arc<dyn ServerStore>) -> CaseResult {
    let id = store.put_auth_key(&key(6)).await?;
    let ids = [42, i64::MIN, i64::MAX, 0, -1];
    for session in ids {
        assert!(
            store.create_session(id, session).await?,
            "first create of {session}"
        );
        assert!(
            !store.create_session(id, session).await?,
            "second create of {session}"
        );
        assert!(store.has_session(id, session).await?);
    }
    let mut sorted = ids.to_vec();
    sorted.sort_unstable();
    assert_eq!(store.list_sessions(id).await?, sorted);
    assert!(store.destroy_session(id, 42).await?);
    assert!(!store.destroy_session(id, 42).await?);
    assert!(!store.has_session(id, 42).await?);
    sorted.retain(|s| *s != 42);
    assert_eq!(store.list_sessions(id).await?, sorted);
    Ok(())
}

/// Of 32 concurrent creates of one session id, exactly one answers `true`.
pub async fn server_create_session_is_atomic(store: Arc<dyn ServerStore>) -> CaseResult {
    let id = store.put_auth_key(&key(7)).await?;
    for session in [1i64, 2, 3] {
        let barrier = Arc::new(tokio::sync::Barrier::new(32));
        let handles = (0..32)
            .map(|_| {
                let (store, barrier) = (store.clone(), Arc::clone(&barrier));
                tokio::spawn(async move {
                    barrier.wait().await;
                    store.create_session(id, session).await
                })
            })
            .collect();
        let mut created = 0;
        for result in join_all(handles).await {
            if result? {
                created += 1;
            }
        }
        assert_eq!(
            created, 1,
            "{created} of 32 concurrent creates of session {session} said new"
        );
    }
    assert_eq!(store.list_sessions(id).await?, vec![1, 2, 3]);
    Ok(())
}

/// Session ids belong to one key: the same id under two keys is two sessions.
pub async fn server_sessions_are_per_key(store: Arc<dyn ServerStore>) -> CaseResult {
    let a = store.put_auth_key(&key(8)).await?;
    let b = store.put_auth_key(&key(9)).await?;
    assert!(store.create_session(a, 7).await?);
    assert!(!store.has_session(b, 7).await?);
    assert!(
        store.create_session(b, 7).await?,
        "session 7 under another key is new"
    );
    assert!(store.destroy_session(a, 7).await?);
    assert!(
        store.has_session(b, 7).await?,
        "destroying under one key reached the other"
    );
    assert_eq!(store.list_sessions(a).await?, Vec::<i64>::new());
    Ok(())
}

/// 8 tasks creating 100 distinct sessions each: all 800 are listed.
pub async fn server_many_sessions_concurrently(store: Arc<dyn ServerStore>) -> CaseResult {
    let id = store.put_auth_key(&key(10)).await?;
    let handles = (0..8i64)
        .map(|task| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..100 {
                    if !store.create_session(id, task * 1_000 + i).await? {
                        panic!("session {} was not new", task * 1_000 + i);
                    }
                }
                Ok::<(), session_core::Error>(())
            })
        })
        .collect();
    for result in join_all(handles).await {
        result?;
    }
    let expected: Vec<i64> = (0..8i64)
        .flat_map(|t| (0..100).map(move |i| t * 1_000 + i))
        .collect();
    assert_eq!(store.list_sessions(id).await?, expected);
    Ok(())
}

/// A salt is valid from `valid_since` (inclusive) to `valid_until` (exclusive).
pub async fn server_salt_windows(store: Arc<dyn ServerStore>) -> CaseResult {
    let id = store.put_auth_key(&key(11)).await?;
    store.add_salt(id, salt(100, 200, 1)).await?;
    store.add_salt(id, salt(150, 300, 2)).await?;
    store
        .add_salt(id, salt(i64::MIN, i64::MAX, i64::MIN))
        .await?;
    for (value, t, valid) in [
        (1, 99, false),
        (1, 100, true),
        (1, 199, true),
        (1, 200, false),
        (2, 160, true),
        (2, 299, true),
        (2, 300, false),
        (3, 150, false),
        (i64::MIN, 0, true),
    ] {
        assert_eq!(
            store.has_valid_salt(id, value, t).await?,
            valid,
            "salt {value} at {t}"
        );
    }
    Ok(())
}

/// `future_salts(t, n)` answers up to `n` salts still valid at or after `t`,
/// ordered by `valid_since`.
pub async fn server_future_salts_order_and_count(store: Arc<dyn ServerStore>) -> CaseResult {
    let id = store.put_auth_key(&key(12)).await?;
    let salts: Vec<ServerSalt> = (0..10i64)
        .map(|i| salt(1_000 + i * 100, 1_100 + i * 100, 500 - i))
        .collect();
    for i in [3usize, 9, 0, 5, 1, 8, 2, 7, 4, 6] {
        store.add_salt(id, salts[i]).await?;
    }
    assert_eq!(
        store.future_salts(id, 1_150, 3).await?,
        salts[1..4].to_vec()
    );
    assert_eq!(
        store.future_salts(id, 1_150, 100).await?,
        salts[1..].to_vec()
    );
    assert_eq!(store.future_salts(id, 0, 2).await?, salts[..2].to_vec());
    assert_eq!(store.future_salts(id, 5_000, 10).await?, vec![]);
    assert_eq!(store.future_salts(id, 1_000, 0).await?, vec![]);
    Ok(())
}

/// A salt whose window is empty or reversed is refused with `InvalidInput`.
pub async fn server_empty_salt_window_is_rejected(store: Arc<dyn ServerStore>) -> CaseResult {
    let id = store.put_auth_key(&key(13)).await?;
    assert_kind(
        store.add_salt(id, salt(100, 100, 1)).await,
        ErrorKind::InvalidInput,
        "empty",
    );
    assert_kind(
        store.add_salt(id, salt(200, 100, 1)).await,
        ErrorKind::InvalidInput,
        "reversed",
    );
    assert_eq!(store.future_salts(id, i64::MIN, 10).await?, vec![]);
    Ok(())
}

/// Destroying a key removes its sessions and salts; putting it again starts empty.
pub async fn server_destroy_key_cascades(store: Arc<dyn ServerStore>) -> CaseResult {
    let key = key(14);
    let other = store.put_auth_key(&self::key(15)).await?;
    let id = store.put_auth_key(&key).await?;
    for (owner, session) in [(id, 1), (id, 2), (other, 1)] {
        store.create_session(owner, session).await?;
        store.add_salt(owner, salt(0, 1_000, session)).await?;
    }
    assert!(store.destroy_auth_key(id).await?);
    assert!(!store.destroy_auth_key(id).await?);
    assert_eq!(store.auth_key(id).await?, None);
    assert!(!store.has_session(id, 1).await?);
    assert_eq!(store.list_sessions(id).await?, Vec::<i64>::new());
    assert!(!store.has_valid_salt(id, 1, 10).await?);
    assert_eq!(store.future_salts(id, 0, 10).await?, vec![]);
    assert_eq!(
        store.list_sessions(other).await?,
        vec![1],
        "another key's sessions were lost"
    );
    assert!(
        store.has_valid_salt(other, 1, 10).await?,
        "another key's salts were lost"
    );
    assert_eq!(store.put_auth_key(&key).await?, id);
    assert_eq!(
        store.list_sessions(id).await?,
        Vec::<i64>::new(),
        "sessions came back"
    );
    assert_eq!(
        store.future_salts(id, 0, 10).await?,
        vec![],
        "salts came back"
    );
    assert!(store.create_session(id, 1).await?);
    Ok(())
}

/// `Debug` of the store and its errors never shows key bytes.
pub async fn server_debug_never_shows_keys(store: Arc<dyn ServerStore>) -> CaseResult {
    let key = AuthKey::new([0xA5; 256]);
    let id = store.put_auth_key(&key).await?;
    let mut texts = vec![
        format!("{store:?}"),
        format!("{:?}", store.auth_key(id).await?),
    ];
    if let Err(e) = store.create_session(self::key(16).id(), 1).await {
        texts.push(format!("{e} {e:?}"));
    }
    for text in texts {
        assert!(
            !text.to_lowercase().contains("a5a5a5a5"),
            "key bytes appear in: {text}"
        );
        assert!(
            !text.contains("165, 165, 165"),
            "key bytes appear in: {text}"
        );
    }
    Ok(())
}

#[derive(Default)]
struct Recorder(Mutex<Vec<SessionEvent>>);

impl Recorder {
    fn events(&self) -> Vec<SessionEvent> {
        self.0.lock().map(|e| e.clone()).unwrap_or_default()
    }

    async fn wait_for(&self, count: usize) -> Vec<SessionEvent> {
        eventually(Duration::from_secs(5), || async {
            self.events().len() >= count
        })
        .await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.events()
    }
}

#[async_trait]
impl SessionObserver for Recorder {
    async fn on_event(&self, event: SessionEvent) -> session_core::Result<()> {
        if let Ok(mut events) = self.0.lock() {
            events.push(event);
        }
        Ok(())
    }
}

struct Failing;

#[async_trait]
impl SessionObserver for Failing {
    async fn on_event(&self, _: SessionEvent) -> session_core::Result<()> {
        Err(Error::invalid("this observer always fails"))
    }
}

struct Panicking;

#[async_trait]
impl SessionObserver for Panicking {
    async fn on_event(&self, _: SessionEvent) -> session_core::Result<()> {
        panic!("this observer always panics (expected by the conformance suite)");
    }
}

fn created(auth_key_id: u64, session_id: i64) -> SessionEvent {
    SessionEvent::Created {
        auth_key_id,
        session_id,
    }
}

fn destroyed(auth_key_id: u64, session_id: i64) -> SessionEvent {
    SessionEvent::Destroyed {
        auth_key_id,
        session_id,
    }
}

fn session_of(event: &SessionEvent) -> i64 {
    match event {
        SessionEvent::Created { session_id, .. } | SessionEvent::Destroyed { session_id, .. } => {
            *session_id
        }
    }
}

/// Observers receive created / destroyed events in order for each session.
pub async fn observer_events_in_order(store: Arc<dyn ServerStore>) -> CaseResult {
    let id = store.put_auth_key(&key(20)).await?;
    let subject = SessionSubject::new(store.clone());
    let recorder = Arc::new(Recorder::default());
    subject.subscribe(recorder.clone());
    let mut expected = Vec::new();
    for round in 0..10 {
        for session in [1, 2] {
            assert!(subject.create_session(id, session).await?);
            expected.push(created(id, session));
        }
        let victim = if round % 2 == 0 { 1 } else { 2 };
        assert!(subject.destroy_session(id, victim).await?);
        expected.push(destroyed(id, victim));
        assert!(subject.destroy_session(id, 3 - victim).await?);
        expected.push(destroyed(id, 3 - victim));
    }
    let events = recorder.wait_for(expected.len()).await;
    assert_eq!(
        events.len(),
        expected.len(),
        "events lost or duplicated: {events:?}"
    );
    for session in [1, 2] {
        let got: Vec<_> = events.iter().filter(|e| session_of(e) == session).collect();
        let want: Vec<_> = expected
            .iter()
            .filter(|e| session_of(e) == session)
            .collect();
        assert_eq!(got, want, "events of session {session} out of order");
    }
    Ok(())
}

/// A failing and a panicking observer neither fail the calls nor stop other
/// observers (subscribed before or after them) from getting every event.
pub async fn observer_failures_are_isolated(store: Arc<dyn ServerStore>) -> CaseResult {
    let id = store.put_auth_key(&key(21)).await?;
    let subject = SessionSubject::new(store.clone());
    let before = Arc::new(Recorder::default());
    let after = Arc::new(Recorder::default());
    subject.subscribe(before.clone());
    subject.subscribe(Arc::new(Failing));
    subject.subscribe(Arc::new(Panicking));
    subject.subscribe(after.clone());
    let mut expected = Vec::new();
    for session in 0..10 {
        assert!(
            subject.create_session(id, session).await?,
            "create {session} through the subject"
        );
        expected.push(created(id, session));
    }
    assert!(subject.destroy_session(id, 0).await?);
    expected.push(destroyed(id, 0));
    assert_eq!(
        before.wait_for(expected.len()).await,
        expected,
        "observer subscribed first"
    );
    assert_eq!(
        after.wait_for(expected.len()).await,
        expected,
        "observer subscribed last"
    );
    assert_eq!(store.list_sessions(id).await?, (1..10).collect::<Vec<_>>());
    Ok(())
}

/// Destroying a key through the subject reports each of its sessions destroyed.
pub async fn observer_destroy_key_reports_each_session(store: Arc<dyn ServerStore>) -> CaseResult {
    let id = store.put_auth_key(&key(22)).await?;
    let subject = SessionSubject::new(store.clone());
    let recorder = Arc::new(Recorder::default());
    subject.subscribe(recorder.clone());
    for session in [5, 6, 7] {
        subject.create_session(id, session).await?;
    }
    assert!(subject.destroy_auth_key(id).await?);
    let events = recorder.wait_for(6).await;
    assert_eq!(events.len(), 6, "{events:?}");
    let gone: HashSet<SessionEvent> = events[3..].iter().copied().collect();
    let want: HashSet<SessionEvent> = [5, 6, 7].into_iter().map(|s| destroyed(id, s)).collect();
    assert_eq!(gone, want);
    assert_eq!(store.list_sessions(id).await?, Vec::<i64>::new());
    Ok(())
}

/// Creating an existing session, destroying a missing one, or a refused
/// create on an unknown key reports nothing.
pub async fn observer_no_event_without_change(store: Arc<dyn ServerStore>) -> CaseResult {
    let id = store.put_auth_key(&key(23)).await?;
    let subject = SessionSubject::new(store.clone());
    let recorder = Arc::new(Recorder::default());
    subject.subscribe(recorder.clone());
    assert!(subject.create_session(id, 1).await?);
    assert!(!subject.create_session(id, 1).await?);
    assert!(!subject.destroy_session(id, 2).await?);
    assert_kind(
        subject.create_session(key(24).id(), 1).await,
        ErrorKind::NotFound,
        "unknown key",
    );
    assert!(subject.create_session(id, 3).await?);
    let events = recorder.wait_for(2).await;
    assert_eq!(events, vec![created(id, 1), created(id, 3)]);
    Ok(())
}

/// Every subscribed observer gets every event.
pub async fn observers_each_get_every_event(store: Arc<dyn ServerStore>) -> CaseResult {
    let id = store.put_auth_key(&key(25)).await?;
    let subject = SessionSubject::new(store.clone());
    let recorders: Vec<Arc<Recorder>> = (0..3).map(|_| Arc::new(Recorder::default())).collect();
    for recorder in &recorders {
        subject.subscribe(recorder.clone());
    }
    let clone = subject.clone();
    let mut expected = Vec::new();
    for session in 0..5 {
        clone.create_session(id, session).await?;
        expected.push(created(id, session));
    }
    for (i, recorder) in recorders.iter().enumerate() {
        assert_eq!(recorder.wait_for(5).await, expected, "observer {i}");
    }
    Ok(())
}
