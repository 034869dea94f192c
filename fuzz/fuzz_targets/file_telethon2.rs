//! `read_telethon2` on any bytes: never panics, and what it accepts every store accepts.

#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let path = common::input_file(bytes);
    if let Ok(imported) = session_formats::read_telethon2(&path) {
        common::check_import(&imported);
    }
});
