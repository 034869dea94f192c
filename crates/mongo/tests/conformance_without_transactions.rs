//! The whole conformance suite on the fallback path for servers without
//! transactions (standalone `mongod`): the same test server, with
//! transactions turned off in the store. Multi-document writes are then not
//! atomic, so the cases that need `atomic_multi_key_writes` are ignored;
//! everything else, concurrent writers included, must pass.

mod common;

session_conformance::conformance_tests! {
    factory: common::MongoFactory::without_transactions(),
    durable: true,
    shared_between_processes: true,
    leases: true,
    atomic_multi_key_writes: false,
}
