//! Running blocking work (a write that waits for `fsync`, a file lock) from
//! async code, for the embedded backends.

use tokio::runtime::{Handle, RuntimeFlavor};

/// Runs `f`, which blocks, from async code.
///
/// On a multi-threaded tokio runtime it runs in place
/// ([`tokio::task::block_in_place`]: the worker hands its other tasks to
/// another thread first), which spares the hand-off to a pooled thread and
/// back (tens of microseconds, the cost of a whole `fsync` on a fast disk).
/// On a current-thread runtime it runs on the blocking pool
/// ([`tokio::task::spawn_blocking`]), and outside any runtime, right here.
///
/// Either way the caller's future finishes only when `f` has: a write is
/// never left running behind a dropped future on a multi-threaded runtime.
/// The error is the blocking pool's (a panic in `f`, or the runtime
/// shutting down).
pub async fn run<T, F>(f: F) -> std::result::Result<T, tokio::task::JoinError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            Ok(tokio::task::block_in_place(f))
        }
        Ok(handle) => handle.spawn_blocking(f).await,
        Err(_) => Ok(f()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_on_every_kind_of_runtime_and_outside_one() {
        let multi = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .expect("runtime");
        assert_eq!(multi.block_on(run(|| 1)).expect("in place"), 1);
        assert_eq!(
            multi
                .block_on(async { tokio::spawn(run(|| 2)).await })
                .expect("task")
                .expect("in place"),
            2
        );
        let current = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        assert_eq!(current.block_on(run(|| 3)).expect("pool"), 3);
        let outside = std::thread::spawn(|| {
            let waker = std::task::Waker::noop();
            let mut cx = std::task::Context::from_waker(waker);
            let mut fut = std::pin::pin!(run(|| 4));
            match fut.as_mut().poll(&mut cx) {
                std::task::Poll::Ready(v) => v.expect("inline"),
                std::task::Poll::Pending => 0,
            }
        });
        assert_eq!(outside.join().expect("thread"), 4);
    }
}
