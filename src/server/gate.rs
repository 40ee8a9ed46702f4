//! A connection task waits on its socket and on a few control futures that almost never
//! fire: the drain, the listener stopping, connection pressure and its own timer. Polling
//! those on every wake-up the socket causes costs a lock each (tokio's `Notify` takes its
//! waiter list's lock to refresh the waker), and the drain and pressure channels are shared
//! by every worker thread. The gate polls them with a waker of its own, so they are polled
//! again only after one of them woke the task.
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Wake, Waker};

use futures_util::task::AtomicWaker;

pub(super) struct Gate {
    inner: Arc<Inner>,
    waker: Waker,
}

struct Inner {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl Gate {
    /// Open at first, so the control futures are polled once and register.
    pub(super) fn new() -> Self {
        let inner = Arc::new(Inner {
            woken: AtomicBool::new(true),
            task: AtomicWaker::new(),
        });
        let waker = Waker::from(inner.clone());
        Gate { inner, waker }
    }

    /// Whether a control future woke the task since the last call. Also records the
    /// task's waker, so a control future's wake-up reaches the task.
    pub(super) fn passed(&self, cx: &Context<'_>) -> bool {
        self.inner.task.register(cx.waker());
        self.inner.woken.swap(false, Ordering::AcqRel)
    }

    /// Has the next poll look at every control future again (after the task changed
    /// what they wait for).
    pub(super) fn reopen(&self) {
        self.inner.woken.store(true, Ordering::Release);
    }

    /// The context the control futures are polled with.
    pub(super) fn context(&self) -> Context<'_> {
        Context::from_waker(&self.waker)
    }
}

impl Wake for Inner {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // The flag first: the task must see it when the wake-up makes it poll.
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::test_waker::CountingWaker;

    #[test]
    fn opens_once_then_only_after_a_control_wake_up() {
        let (count, task) = CountingWaker::new();
        let cx = Context::from_waker(&task);
        let gate = Gate::new();
        assert!(
            gate.passed(&cx),
            "the first poll must register the control futures"
        );
        assert!(!gate.passed(&cx), "a socket wake-up alone passed the gate");
        // A control future woken through the gate's context wakes the task and opens it.
        gate.context().waker().wake_by_ref();
        assert_eq!(count.wakes(), 1);
        assert!(gate.passed(&cx));
        assert!(!gate.passed(&cx));
        gate.reopen();
        assert!(gate.passed(&cx));
    }
}
