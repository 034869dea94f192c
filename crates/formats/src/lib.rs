#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod file;
pub mod string;

pub use file::{
    ForeignFormat, ForeignImport, PyrogramLayout, Warning, WriteOptions, detect, read_foreign,
    read_grammers, read_pyrogram, read_telethon, read_telethon2, write_grammers, write_pyrogram,
    write_telethon,
};
pub use string::{StringFormat, StringSession};
