//! Shared by the file targets: the input written to a private temporary file.

use std::io::Write;
use std::path::PathBuf;

/// A file holding the fuzz input, in a private temporary directory made
/// once per process and reused (one input at a time).
pub fn input_file(bytes: &[u8]) -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("mtsession-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temporary directory");
        dir
    });
    let path = dir.join("input.session");
    let mut file = std::fs::File::create(&path).expect("create the input file");
    file.write_all(bytes).expect("write the input file");
    path
}

/// What a reader accepted must be what every store accepts: files are
/// validated once, on read.
pub fn check_import(imported: &session_formats::ForeignImport) {
    session_core::validate_data(&imported.data, true)
        .unwrap_or_else(|e| panic!("read as {} but no store accepts it: {e}", imported.format));
}
