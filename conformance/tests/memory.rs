//! The whole suite against session-core's in-memory stores: every case must pass.

mod common;

use common::{InProcessFactory, MemoryServerFactory};
use session_core::MemoryStore;

session_conformance::conformance_tests! {
    factory: InProcessFactory::new(MemoryStore::new),
    durable: false,
    shared_between_processes: false,
    leases: true,
    atomic_multi_key_writes: true,
}

session_conformance::server_conformance_tests! {
    factory: MemoryServerFactory::default(),
}

/// The suite is as large as its documentation says, and every case name is unique.
#[test]
fn suite_has_at_least_fifty_cases() {
    use std::collections::HashSet;
    let store = session_conformance::STORE_CASES;
    let server = session_conformance::SERVER_CASES;
    assert!(store.len() >= 50, "only {} store cases", store.len());
    assert!(server.len() >= 10, "only {} server cases", server.len());
    let names: HashSet<&str> = store.iter().chain(server).map(|c| c.name).collect();
    assert_eq!(
        names.len(),
        store.len() + server.len(),
        "duplicate case names"
    );
}
