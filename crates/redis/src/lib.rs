//! mtsession: Redis backend (work in progress).
