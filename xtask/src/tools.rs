//! Programs some tests drive besides the services: built into the target
//! directory, and pointed at by environment variables.

use std::process::Command;

use crate::services::{target_dir, workspace_root};

/// Builds the grammers checker (a program outside the workspace that opens
/// session files with grammers-session's own `SqliteSession`; its libsql must
/// not share a dependency graph with rusqlite) and returns its path.
fn grammers_checker() -> Result<String, String> {
    let manifest = workspace_root().join("fixtures/scripts/grammers/Cargo.toml");
    let target = target_dir().join("grammers-checker");
    println!(
        "xtask: building the grammers checker ({})",
        manifest.display()
    );
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "build",
            "--quiet",
            "--release",
            "--locked",
            "--manifest-path",
        ])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&target)
        .status()
        .map_err(|e| format!("could not build the grammers checker: {e}"))?;
    if !status.success() {
        return Err("the grammers checker does not build".into());
    }
    Ok(target
        .join("release/grammers-session-fixtures")
        .display()
        .to_string())
}

/// The variables that point tests at the checker programs.
pub(crate) fn checkers() -> Result<Vec<(String, String)>, String> {
    Ok(vec![(
        "MTSESSION_GRAMMERS_CHECKER".to_owned(),
        grammers_checker()?,
    )])
}
