//! mtsession: MongoDB backend (work in progress).
