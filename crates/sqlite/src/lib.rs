//! mtsession: SQLite (rusqlite) backend (work in progress).
