//! The engine's epoch, which bounds every guest's time: advanced every
//! [`EPOCH_TICK`] on a thread of its own while some guest may run, parked
//! while none can (an idle server wakes for nothing). Every store holds a
//! [`Running`] for as long as its guest may run, so the epoch moves for it.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::Thread;

use wasmtime::Engine;

use super::EPOCH_TICK;

/// Advances the engine epoch while stores hold [`Running`]; stops when dropped.
pub struct EpochTicker {
    shared: Arc<Shared>,
}

/// What the ticker thread and the stores share.
struct Shared {
    /// Stores whose guest may run.
    running: AtomicUsize,
    stop: AtomicBool,
    /// The ticker thread, woken when the first store of a busy spell
    /// arrives; set as it starts, before any store can be made.
    thread: OnceLock<Thread>,
}

impl Shared {
    fn wake(&self) {
        if let Some(thread) = self.thread.get() {
            thread.unpark();
        }
    }
}

impl EpochTicker {
    /// Starts the thread, parked until a store needs it.
    pub fn start(engine: Engine) -> Self {
        let shared =
            Arc::new(Shared { running: AtomicUsize::new(0), stop: AtomicBool::new(false), thread: OnceLock::new() });
        let ticks = shared.clone();
        let handle = std::thread::Builder::new()
            .name("plinth-epoch".into())
            .spawn(move || {
                while !ticks.stop.load(Ordering::Acquire) {
                    // A store that arrives between this load and `park`
                    // leaves its unpark behind, so `park` returns at once.
                    if ticks.running.load(Ordering::Acquire) == 0 {
                        std::thread::park();
                        continue;
                    }
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
            .expect("spawn the epoch thread");
        shared.thread.set(handle.thread().clone()).expect("set once");
        Self { shared }
    }

    /// A handle that stores are made with.
    pub fn ticking(&self) -> Ticking {
        Ticking(self.shared.clone())
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        self.shared.wake();
    }
}

/// Makes [`Running`] guards; cheap to clone.
#[derive(Clone)]
pub struct Ticking(Arc<Shared>);

impl Ticking {
    /// Keeps the epoch moving until the guard is dropped: taken before a
    /// store is made, kept in its data.
    pub fn running(&self) -> Running {
        if self.0.running.fetch_add(1, Ordering::AcqRel) == 0 {
            self.0.wake();
        }
        Running(self.0.clone())
    }
}

/// One store whose guest may run; see [`Ticking::running`].
pub struct Running(Arc<Shared>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::AcqRel);
    }
}
