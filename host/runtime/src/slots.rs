//! The pooling allocator's instance slots, taken in turn.
//!
//! The pool holds a fixed number of instances
//! ([`crate::RuntimeSettings::max_concurrent_instances`]). A call that found
//! every slot taken would fail to instantiate, and that failure would count as
//! the plugin's: its records dead-lettered as a trap, its circuit breaker one
//! fault nearer to opening, for a host that was merely busy (many shards, and
//! the console's checks on the blocking pool, at once). So a call waits for a
//! slot instead.

use std::sync::{Condvar, Mutex, MutexGuard};

pub(crate) struct InstanceSlots {
    free: Mutex<u32>,
    freed: Condvar,
}

/// A taken slot, given back when dropped: after the store that used it (declare
/// it before the store).
pub(crate) struct Slot<'a>(&'a InstanceSlots);

impl InstanceSlots {
    pub(crate) fn new(slots: u32) -> Self {
        Self {
            free: Mutex::new(slots),
            freed: Condvar::new(),
        }
    }

    fn free(&self) -> MutexGuard<'_, u32> {
        // The count stays right whatever panicked while holding it.
        self.free.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until a slot is free, and takes it.
    pub(crate) fn take(&self) -> Slot<'_> {
        let mut free = self.free();
        if *free == 0 {
            tracing::debug!("every plugin instance slot is in use: waiting for one");
        }
        while *free == 0 {
            free = self.freed.wait(free).unwrap_or_else(|e| e.into_inner());
        }
        *free -= 1;
        Slot(self)
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        *self.0.free() += 1;
        self.0.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn never_more_slots_taken_than_there_are() {
        let slots = Arc::new(InstanceSlots::new(2));
        let taken = Arc::new(AtomicU32::new(0));
        let most = Arc::new(AtomicU32::new(0));
        let threads: Vec<_> = (0..6)
            .map(|_| {
                let (slots, taken, most) = (slots.clone(), taken.clone(), most.clone());
                std::thread::spawn(move || {
                    for _ in 0..200 {
                        let _slot = slots.take();
                        let now = taken.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        std::thread::yield_now();
                        taken.fetch_sub(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), 2);
        assert_eq!(*slots.free(), 2, "every slot given back");
    }
}
