//! Child processes for the fault suite: the conformance crate's helpers.

#![allow(unused_imports)]

pub(crate) use session_conformance::process::*;
