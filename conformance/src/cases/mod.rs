//! The cases, one `pub async fn` per behaviour.
//!
//! Store cases take a [`Ctx`](crate::Ctx) (a store opened on a fresh
//! namespace); server cases take an `Arc<dyn ServerStore>`. Each returns a
//! [`CaseResult`](crate::CaseResult): checks fail by panicking, unexpected
//! store errors come back as `Err`. Run them with [`try_run_case`](crate::try_run_case)
//! / [`try_run_server_case`](crate::try_run_server_case), or stamp them all with
//! [`conformance_tests!`](crate::conformance_tests) /
//! [`server_conformance_tests!`](crate::server_conformance_tests).

mod concurrency;
mod dc;
mod differential;
mod durable;
mod export;
mod files;
mod leases;
mod lifecycle;
mod meta;
mod peers;
mod secrets;
mod server;
mod shared;
mod update_state;
mod usernames;

pub use concurrency::*;
pub use dc::*;
pub use differential::*;
pub use durable::*;
pub use export::*;
pub use files::*;
pub use leases::*;
pub use lifecycle::*;
pub use meta::*;
pub use peers::*;
pub use secrets::*;
pub use server::*;
pub use shared::*;
pub use update_state::*;
pub use usernames::*;
