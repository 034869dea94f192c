//! The durable and shared cases, run against a `MemoryStore` that is kept
//! per namespace (so it survives "reopen" and is shared by every open) and a
//! factory that records schema versions: this checks the cases themselves,
//! which no real backend in this crate could otherwise run. It is not a
//! backend's conformance run (that is `tests/memory.rs`).

mod common;

use common::InProcessFactory;
use common::faulty::{Fault, Faulty};
use session_core::{Capabilities, MemoryStore, SessionBackend};

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
