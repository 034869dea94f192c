//! The suite can fail: stores that each get one rule wrong must fail the
//! cases that check that rule, and still pass cases about other rules (so
//! the failure is the rule's, not an accident of the wrapper).

mod common;

use std::future::Future;
use std::sync::Arc;

use common::InProcessFactory;
use common::faulty::{BATCH_LIMIT, Fault, Faulty};
use session_conformance::{CaseResult, Ctx, FailureStage, StoreFactory, cases, try_run_case};
use session_core::{Capabilities, MemoryStore, SessionBackend, Store};

fn memory_caps() -> Capabilities {
    MemoryStore::new().capabilities()
}

fn factory(fault: Fault) -> Arc<dyn StoreFactory> {
    Arc::new(InProcessFactory::new(move || Faulty::new(fault)))
}

/// Runs `case` against a store with `fault` and insists it fails a check (or
/// errors), not in setup or cleanup.
async fn must_fail<C, Fut>(fault: Fault, name: &'static str, case: C)
where
    C: FnOnce(Ctx) -> Fut,
    Fut: Future<Output = CaseResult>,
{
    match try_run_case(factory(fault), memory_caps(), name, case).await {
        Ok(()) => panic!("the suite did not catch {fault:?}: case `{name}` passed"),
        Err(failure) => {
            assert!(
                matches!(failure.stage, FailureStage::Panicked | FailureStage::Error),
                "{fault:?}: case `{name}` failed for the wrong reason: {failure}"
            );
            assert_eq!(failure.case, name);
        }
    }
}

/// Runs `case` against a store with `fault` and insists it passes.
async fn must_pass<C, Fut>(fault: Fault, name: &'static str, case: C)
where
    C: FnOnce(Ctx) -> Fut,
    Fut: Future<Output = CaseResult>,
{
    if let Err(failure) = try_run_case(factory(fault), memory_caps(), name, case).await {
        panic!("{fault:?} should not affect case `{name}`, but: {failure}");
    }
}

macro_rules! check {
    ($fault:expr, fails: [$($bad:ident),* $(,)?], passes: [$($good:ident),* $(,)?]) => {{
        $( must_fail($fault, stringify!($bad), cases::$bad).await; )*
        $( must_pass($fault, stringify!($good), cases::$good).await; )*
    }};
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_faultless_wrapper_passes() {
    check!(Fault::None, fails: [], passes: [
        update_state_channel_keeps_the_rest,
        username_lookup_ignores_case_and_at,
        min_hash_never_overwrites_full,
        username_ownership_moves_to_latest_owner,
        batch_of_ten_thousand_peers,
        delete_removes_everything,
        missing_session_writes_are_not_found,
        concurrent_partial_writes_do_not_clobber,
    ]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forgotten_channel_pts_are_caught() {
    check!(Fault::ForgetsChannelPts,
    fails: [
        update_state_channel_keeps_the_rest,
        update_state_many_channels,
        concurrent_channel_writers_lose_nothing,
        concurrent_partial_writes_do_not_clobber,
    ],
    passes: [
        update_state_primary_keeps_the_rest,
        update_state_secondary_keeps_the_rest,
        update_state_all_replaces_everything,
        username_lookup_ignores_case_and_at,
        export_import_round_trip,
    ]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_sensitive_usernames_are_caught() {
    check!(Fault::CaseSensitiveUsernames,
    fails: [
        username_lookup_ignores_case_and_at,
        store_username_lookup_normalizes,
        unicode_usernames_fold_case,
        batch_of_ten_thousand_peers,
    ],
    passes: [
        renamed_username_is_forgotten,
        phone_lookup_ignores_formatting,
        min_hash_never_overwrites_full,
        update_state_channel_keeps_the_rest,
    ]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_hash_overwriting_full_is_caught() {
    check!(Fault::MinOverwritesFull,
    fails: [
        min_hash_never_overwrites_full,
        min_hash_rule_within_one_batch,
    ],
    passes: [
        min_hash_stored_when_nothing_known,
        full_hash_overwrites_min,
        known_hashes_replace_each_other,
        merge_keeps_unknown_fields,
        username_ownership_moves_to_latest_owner,
    ]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmoved_username_ownership_is_caught() {
    check!(Fault::NoOwnershipMove,
    fails: [
        username_ownership_moves_to_latest_owner,
        ownership_moves_within_one_batch,
    ],
    passes: [
        username_lookup_ignores_case_and_at,
        multiple_usernames_per_peer,
        phone_ownership_moves,
        min_hash_never_overwrites_full,
    ]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_batch_entries_are_caught() {
    // The fault must bite below the suite's largest batch.
    const { assert!(BATCH_LIMIT < 10_000) };
    check!(Fault::LosesBatchTail,
    fails: [batch_of_ten_thousand_peers],
    passes: [
        batch_of_zero_peers,
        batch_of_one_peer,
        duplicate_ids_in_one_batch_merge_in_order,
        concurrent_peer_batches_lose_nothing,
    ]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_left_behind_by_delete_is_caught() {
    check!(Fault::DeleteLeavesData,
    fails: [delete_removes_everything],
    passes: [
        delete_twice_returns_true_then_false,
        deleted_session_is_not_found,
        exists_follows_create_and_delete,
        create_twice_is_already_exists,
    ]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn implicit_creation_is_caught() {
    check!(Fault::CreatesImplicitly,
    fails: [
        missing_session_writes_are_not_found,
        missing_session_empty_batches_are_not_found,
        nothing_creates_a_session_implicitly,
    ],
    passes: [
        missing_session_reads_are_not_found,
        fresh_session_defaults,
        delete_removes_everything,
    ]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlocked_read_modify_write_is_caught() {
    check!(Fault::UnlockedReadModifyWrite,
    fails: [
        concurrent_channel_writers_lose_nothing,
        concurrent_partial_writes_do_not_clobber,
    ],
    passes: [
        update_state_primary_keeps_the_rest,
        update_state_channel_keeps_the_rest,
        update_state_extreme_values,
    ]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misdeclared_capabilities_are_caught() {
    let declared = memory_caps().durable(true);
    let result = try_run_case(
        factory(Fault::None),
        declared,
        "capabilities_match_declaration",
        cases::capabilities_match_declaration,
    )
    .await;
    let failure = result.expect_err("declaring durable for MemoryStore must fail");
    assert_eq!(failure.stage, FailureStage::Panicked, "{failure}");
    assert!(failure.message.contains("disagree"), "{failure}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_and_cleanup_failures_are_reported() {
    struct Unreachable;

    #[async_trait::async_trait]
    impl StoreFactory for Unreachable {
        async fn create_namespace(&self) -> session_core::Result<String> {
            Err(session_core::Error::Unavailable {
                backend: "test",
                message: "connection refused".into(),
                source: None,
            })
        }
        async fn open(&self, _: &str) -> session_core::Result<Store> {
            unreachable!("no namespace was created")
        }
        async fn write_schema_version(&self, _: &str, _: i64) -> session_core::Result<()> {
            unreachable!("no namespace was created")
        }
        async fn drop_namespace(&self, _: &str) -> session_core::Result<()> {
            unreachable!("no namespace was created")
        }
    }

    let failure = try_run_case(
        Arc::new(Unreachable),
        memory_caps(),
        "fresh_session_defaults",
        cases::fresh_session_defaults,
    )
    .await
    .expect_err("a missing server must fail the case, not skip it");
    assert_eq!(failure.stage, FailureStage::Setup);
    assert!(failure.message.contains("connection refused"), "{failure}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_are_dropped_even_when_a_case_panics() {
    let inner = Arc::new(InProcessFactory::new(|| {
        Faulty::new(Fault::DeleteLeavesData)
    }));
    let factory: Arc<dyn StoreFactory> = inner.clone();
    let result = try_run_case(
        factory,
        memory_caps(),
        "delete_removes_everything",
        cases::delete_removes_everything,
    )
    .await;
    assert!(result.is_err());
    // The namespace the failed case used is gone: dropping it again fails.
    let again = inner.drop_namespace("ns-0").await;
    assert!(
        again.is_err(),
        "the failed case's namespace was not dropped"
    );
    assert!(inner.open("ns-0").await.is_err());
}

/// The differential case catches, on its own, every fault a single sequential
/// client can see (everything but lost batch tails beyond its batch size and
/// races between writers).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_differential_case_catches_rule_faults() {
    must_pass(
        Fault::None,
        "differential_random_operations_match_the_reference",
        cases::differential_random_operations_match_the_reference,
    )
    .await;
    for fault in [
        Fault::ForgetsChannelPts,
        Fault::CaseSensitiveUsernames,
        Fault::MinOverwritesFull,
        Fault::NoOwnershipMove,
        Fault::DeleteLeavesData,
        Fault::CreatesImplicitly,
    ] {
        must_fail(
            fault,
            "differential_random_operations_match_the_reference",
            cases::differential_random_operations_match_the_reference,
        )
        .await;
    }
}
