//! mtsession: sled backend (work in progress).
