//! Parsing and planning on a thread with a large stack.
//!
//! sqlparser, DataFusion's planner and the lowering recurse over expressions; the stack
//! of a tokio worker (2 MiB) is too small for the deepest statements [`crate::sql::limits`]
//! accepts, and too small even to drop the deepest ones it refuses. Running that work on
//! a thread of its own costs a thread start per statement, nothing next to planning.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;

/// The stack of a planning thread. Only the pages touched are ever committed.
const PLANNING_STACK_BYTES: usize = 256 << 20;

/// Runs `work` to completion on a thread with a large stack, in the caller's tokio runtime
/// when there is one (so it may start queries), and returns its result; an error only when
/// no thread could be started.
pub(crate) fn on_planning_stack<T: Send>(
    work: impl Future<Output = T> + Send,
) -> std::io::Result<T> {
    let runtime = tokio::runtime::Handle::try_current().ok();
    std::thread::scope(|scope| {
        let thread = std::thread::Builder::new()
            .name("vigil-planner".into())
            .stack_size(PLANNING_STACK_BYTES)
            .spawn_scoped(scope, move || {
                let _entered = runtime.as_ref().map(tokio::runtime::Handle::enter);
                block_on(work)
            });
        let result = thread?
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        Ok(result)
    })
}

/// Polls `future` on this thread until it is ready, parking between polls.
fn block_on<T>(future: impl Future<Output = T>) -> T {
    struct Unpark(Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut context = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        match future.as_mut().poll(&mut context) {
            Poll::Ready(value) => return value,
            Poll::Pending => std::thread::park(),
        }
    }
}
