//! `detect` and `read_foreign` on any bytes: never panic; a file that
//! `read_foreign` reads is one `detect` names as that format, and what it
//! accepts every store accepts.

#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let path = common::input_file(bytes);
    let detected = session_formats::detect(&path);
    if let Ok(imported) = session_formats::read_foreign(&path) {
        let detected = detected.expect("read_foreign read what detect refused");
        assert_eq!(
            detected, imported.format,
            "detect and read_foreign disagree"
        );
        common::check_import(&imported);
    }
});
