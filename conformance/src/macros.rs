//! The macros that stamp one test per case.
//!
//! The case lists live in [`__store_cases!`](crate::__store_cases) and
//! [`__server_cases!`](crate::__server_cases) only; the stamping macros and
//! the [`STORE_CASES`](crate::STORE_CASES) / [`SERVER_CASES`](crate::SERVER_CASES)
//! tables are generated from them, so a case cannot be listed without being
//! stamped or stamped without being listed.

/// Stamps one `#[tokio::test]` (multi-thread runtime, two workers) per store case, for a
/// backend's integration tests. Callers need no Tokio dependency of their own: the
/// attribute names the runtime re-exported by this crate, so the crate must be a
/// dependency under its own name, `session_conformance`.
///
/// ```ignore
/// session_conformance::conformance_tests! {
///     factory: MyFactory::new(),      // any expression yielding an impl StoreFactory
///     durable: true,                  // capabilities, as the literals true / false
///     shared_between_processes: true,
///     leases: true,
///     atomic_multi_key_writes: true,
/// }
/// ```
///
/// The factory expression is evaluated once per test, inside the test's Tokio
/// runtime. A case that needs a capability declared `false` is stamped with
/// `#[ignore = "requires capability <name>"]`, so it is reported as ignored,
/// never as passed. The case `capabilities_match_declaration` always runs and
/// fails when the store's [`capabilities()`](session_core::Store::capabilities)
/// disagree with the declaration.
#[macro_export]
macro_rules! conformance_tests {
    (
        factory: $factory:expr,
        durable: $durable:tt,
        shared_between_processes: $shared:tt,
        leases: $leases:tt,
        atomic_multi_key_writes: $atomic:tt $(,)?
    ) => {
        $crate::__store_cases!(__stamp_store_cases!($factory; $durable, $shared, $leases, $atomic));
    };
}

/// Stamps one `#[tokio::test]` per server-side case ([`ServerStore`](session_core::ServerStore)
/// and [`SessionSubject`](session_core::SessionSubject) observers).
///
/// ```ignore
/// session_conformance::server_conformance_tests! {
///     factory: MyServerFactory::new(), // any expression yielding an impl ServerStoreFactory
/// }
/// ```
#[macro_export]
macro_rules! server_conformance_tests {
    (factory: $factory:expr $(,)?) => {
        $crate::__server_cases!(__stamp_server_cases!($factory));
    };
}

/// The store cases, grouped by the capability they need.
#[doc(hidden)]
#[macro_export]
macro_rules! __store_cases {
    ($callback:ident ! ( $($args:tt)* )) => {
        $crate::$callback! { ($($args)*)
            always: [
                capabilities_match_declaration,
                fresh_session_defaults,
                fresh_session_times_are_set,
                create_twice_is_already_exists,
                missing_session_reads_are_not_found,
                missing_session_writes_are_not_found,
                missing_session_empty_batches_are_not_found,
                nothing_creates_a_session_implicitly,
                exists_follows_create_and_delete,
                list_is_sorted_by_bytes,
                delete_twice_returns_true_then_false,
                delete_removes_everything,
                deleted_session_is_not_found,
                names_sharing_a_prefix_are_distinct,
                maximum_length_names,
                unicode_and_special_names,
                invalid_names_are_rejected_by_the_handle,
                open_creates_once_and_keeps_data,
                copy_is_deep_and_isolated,
                copy_of_missing_source_is_not_found,
                copy_onto_existing_is_already_exists,
                copy_with_overwrite_replaces,
                copy_carries_lookup_indexes,
                sessions_are_isolated_for_every_kind,
                lookups_are_isolated_between_sessions,
                home_dc_round_trip,
                dc_option_address_variants,
                dc_keys_on_several_dcs,
                dc_option_is_replaced_whole,
                set_auth_key_on_the_handle,
                auth_key_bytes_are_exact,
                dc_options_are_sorted_by_id,
                self_user_set_and_clear,
                metadata_round_trip,
                updated_at_moves_forward_created_at_stays,
                takeout_id_set_clear_and_extremes,
                update_state_all_replaces_everything,
                update_state_primary_keeps_the_rest,
                update_state_secondary_keeps_the_rest,
                update_state_channel_keeps_the_rest,
                update_state_remove_channel,
                update_state_many_channels,
                update_state_extreme_values,
                update_state_rejects_marked_channel_ids,
                peers_round_trip_every_kind,
                marked_id_extremes,
                same_bare_id_in_three_id_spaces,
                merge_keeps_unknown_fields,
                merge_replaces_known_fields,
                min_hash_stored_when_nothing_known,
                min_hash_never_overwrites_full,
                full_hash_overwrites_min,
                known_hashes_replace_each_other,
                min_hash_rule_within_one_batch,
                username_lookup_ignores_case_and_at,
                store_username_lookup_normalizes,
                unicode_usernames_fold_case,
                username_ownership_moves_to_latest_owner,
                renamed_username_is_forgotten,
                multiple_usernames_per_peer,
                usernames_cleared_with_empty_list,
                merge_without_usernames_keeps_them,
                phone_lookup_ignores_formatting,
                phone_ownership_moves,
                changed_phone_is_forgotten,
                batch_of_zero_peers,
                batch_of_one_peer,
                batch_of_ten_thousand_peers,
                duplicate_ids_in_one_batch_merge_in_order,
                ownership_moves_within_one_batch,
                lookups_answer_in_the_order_asked,
                peer_count_counts_distinct_peers,
                unknown_peers_are_none,
                long_and_unicode_peer_text,
                disabled_peer_cache_keeps_other_data,
                sent_file_round_trip,
                sent_file_is_replaced,
                sent_file_kinds_are_distinct_keys,
                sent_file_extremes,
                export_of_fresh_session_is_default,
                export_import_round_trip,
                import_replaces_everything,
                import_creates_a_missing_session,
                import_rebuilds_lookup_indexes,
                export_is_canonical,
                concurrent_create_exactly_one_succeeds,
                concurrent_channel_writers_lose_nothing,
                concurrent_partial_writes_do_not_clobber,
                concurrent_peer_batches_lose_nothing,
                concurrent_sessions_stay_separate,
                errors_and_debug_never_show_keys,
                differential_random_operations_match_the_reference,
            ]
            durable: [
                reopen_keeps_every_kind,
                reopen_keeps_deletes_and_lists,
                newer_schema_version_is_refused,
            ]
            shared: [
                two_stores_see_each_others_writes,
                two_stores_create_exactly_one,
                two_stores_see_deletes,
            ]
            leases: [
                lease_acquire,
                lease_renew_by_same_owner,
                lease_held_names_the_owner,
                lease_release,
                lease_release_by_other_owner_is_a_no_op,
                lease_expires_after_ttl,
                lease_guard_renews_and_releases_on_drop,
                lease_guard_release,
                leases_are_per_session,
                concurrent_lease_acquire_one_wins,
            ]
            atomic: [
                import_is_atomic_for_readers,
                username_moves_are_atomic_for_readers,
            ]
            shared_leases: [
                two_stores_share_leases,
            ]
        }
    };
}

/// The server-side cases (they need no capability).
#[doc(hidden)]
#[macro_export]
macro_rules! __server_cases {
    ($callback:ident ! ( $($args:tt)* )) => {
        $crate::$callback! { ($($args)*)
            always: [
                server_auth_key_round_trip,
                server_put_same_key_twice,
                server_unknown_key_reads,
                server_unknown_key_writes_are_not_found,
                server_sessions_create_has_destroy_list,
                server_create_session_is_atomic,
                server_sessions_are_per_key,
                server_many_sessions_concurrently,
                server_salt_windows,
                server_future_salts_order_and_count,
                server_empty_salt_window_is_rejected,
                server_destroy_key_cascades,
                server_debug_never_shows_keys,
                observer_events_in_order,
                observer_failures_are_isolated,
                observer_destroy_key_reports_each_session,
                observer_no_event_without_change,
                observers_each_get_every_event,
            ]
        }
    };
}

/// Builds a `&[CaseInfo]` from a case list.
#[doc(hidden)]
#[macro_export]
macro_rules! __list_cases {
    (() $($requirement:ident : [ $($case:ident),* $(,)? ])*) => {
        &[ $( $( $crate::CaseInfo {
            name: stringify!($case),
            requires: $crate::__requirement!($requirement),
        }, )* )* ]
    };
}

/// Maps a requirement name of the case lists to a [`Requirement`](crate::Requirement).
#[doc(hidden)]
#[macro_export]
macro_rules! __requirement {
    (always) => {
        $crate::Requirement::None
    };
    (durable) => {
        $crate::Requirement::Durable
    };
    (shared) => {
        $crate::Requirement::SharedBetweenProcesses
    };
    (leases) => {
        $crate::Requirement::Leases
    };
    (atomic) => {
        $crate::Requirement::AtomicMultiKeyWrites
    };
    (shared_leases) => {
        $crate::Requirement::SharedBetweenProcessesAndLeases
    };
}

/// Stamps every store case.
#[doc(hidden)]
#[macro_export]
macro_rules! __stamp_store_cases {
    (
        ($factory:expr; $durable:tt, $shared:tt, $leases:tt, $atomic:tt)
        $($requirement:ident : [ $($case:ident),* $(,)? ])*
    ) => {
        $( $(
            $crate::__gate! { $requirement ($durable, $shared, $leases, $atomic)
                #[$crate::__private::tokio::test(
                    flavor = "multi_thread",
                    worker_threads = 2,
                    crate = "session_conformance::__private::tokio"
                )]
                async fn $case() {
                    $crate::__private::run_store_case(
                        || $factory,
                        $crate::__private::caps($durable, $shared, $leases, $atomic),
                        stringify!($case),
                        $crate::cases::$case,
                    )
                    .await;
                }
            }
        )* )*
    };
}

/// Stamps every server case.
#[doc(hidden)]
#[macro_export]
macro_rules! __stamp_server_cases {
    (($factory:expr) $($requirement:ident : [ $($case:ident),* $(,)? ])*) => {
        $( $(
            #[$crate::__private::tokio::test(
                flavor = "multi_thread",
                worker_threads = 2,
                crate = "session_conformance::__private::tokio"
            )]
            async fn $case() {
                $crate::__private::run_server_case(
                    || $factory,
                    stringify!($case),
                    $crate::cases::$case,
                )
                .await;
            }
        )* )*
    };
}

/// Passes a test item through, or marks it ignored when the capability it
/// needs is declared `false`. Declarations must be the literals `true` / `false`.
#[doc(hidden)]
#[macro_export]
macro_rules! __gate {
    (always $caps:tt $($item:tt)*) => { $($item)* };

    (durable (true, $s:tt, $l:tt, $a:tt) $($item:tt)*) => { $($item)* };
    (durable (false, $s:tt, $l:tt, $a:tt) $($item:tt)*) => {
        #[ignore = "requires capability durable"]
        $($item)*
    };

    (shared ($d:tt, true, $l:tt, $a:tt) $($item:tt)*) => { $($item)* };
    (shared ($d:tt, false, $l:tt, $a:tt) $($item:tt)*) => {
        #[ignore = "requires capability shared_between_processes"]
        $($item)*
    };

    (leases ($d:tt, $s:tt, true, $a:tt) $($item:tt)*) => { $($item)* };
    (leases ($d:tt, $s:tt, false, $a:tt) $($item:tt)*) => {
        #[ignore = "requires capability leases"]
        $($item)*
    };

    (atomic ($d:tt, $s:tt, $l:tt, true) $($item:tt)*) => { $($item)* };
    (atomic ($d:tt, $s:tt, $l:tt, false) $($item:tt)*) => {
        #[ignore = "requires capability atomic_multi_key_writes"]
        $($item)*
    };

    (shared_leases ($d:tt, true, true, $a:tt) $($item:tt)*) => { $($item)* };
    (shared_leases ($d:tt, false, $l:tt, $a:tt) $($item:tt)*) => {
        #[ignore = "requires capability shared_between_processes"]
        $($item)*
    };
    (shared_leases ($d:tt, true, false, $a:tt) $($item:tt)*) => {
        #[ignore = "requires capability leases"]
        $($item)*
    };

    ($requirement:ident $caps:tt $($item:tt)*) => {
        ::core::compile_error!(
            "conformance_tests!: declare each capability with the literal `true` or `false`"
        );
    };
}
