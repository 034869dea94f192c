//! The whole conformance suite against the test server
//! (`MTSESSION_TEST_MONGO_URL`, default `mongodb://127.0.0.1:27017`), one
//! fresh database per case, dropped afterwards.

mod common;

session_conformance::conformance_tests! {
    factory: common::MongoFactory::new(),
    durable: true,
    shared_between_processes: true,
    leases: true,
    atomic_multi_key_writes: true,
}
