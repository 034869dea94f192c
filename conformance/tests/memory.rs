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

/// The durable and shared cases, run against a `MemoryStore` that is kept
/// per namespace (so it survives "reopen" and is shared by every open) and a
/// factory that records schema versions: this checks the cases themselves,
/// which no real backend in this crate could otherwise run.
mod as_if_durable {
    use super::common::InProcessFactory;
    use super::common::faulty::{Fault, Faulty};
    use session_core::{Capabilities, MemoryStore, SessionStore};

    fn store() -> Faulty {
        let all = MemoryStore::new()
            .capabilities()
            .durable(true)
            .shared_between_processes(true);
        Faulty::with_capabilities(Fault::None, all)
    }

    session_conformance::conformance_tests! {
        factory: InProcessFactory::versioned(store),
        durable: true,
        shared_between_processes: true,
        leases: true,
        atomic_multi_key_writes: true,
    }

    #[test]
    fn declares_every_capability() {
        let caps: Capabilities = store().capabilities();
        assert!(caps.durable && caps.shared_between_processes && caps.leases);
        assert!(caps.atomic_multi_key_writes);
    }
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
