//! mtsession: sea-orm backend for SQLite, PostgreSQL and MySQL (work in progress).
