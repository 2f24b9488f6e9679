//! The guest's allocator: a bump arena for the batch, the system allocator beyond it.
//!
//! A plugin instance lives for one batch, so most of what it allocates (the
//! events the host copies in, the outputs it copies out) lives until the
//! batch ends. Bumping a pointer through a fixed arena serves that at a
//! fraction of dlmalloc's cost; frees are no-ops, except that the newest
//! allocation can be freed or grown in place (the pattern of a growing
//! buffer). When the arena is full, allocations go to the system allocator,
//! so the memory a plugin can use is unchanged and at most the arena's size
//! is held longer than it would be.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::{Cell, UnsafeCell};

/// Bytes of the arena: a batch of 100 typical events and their outputs fit
/// (~40 KiB), and the arena stays inside the first pages of linear memory
/// the host keeps resident between batches (256 KiB of stack come first).
const ARENA_BYTES: usize = 128 << 10;

/// The allocator [`export_plugin!`](crate::export_plugin) installs.
pub struct BatchArena {
    memory: UnsafeCell<[u8; ARENA_BYTES]>,
    /// Offset of the first free byte.
    next: Cell<usize>,
}

// SAFETY: the module is only compiled for wasm without threads (see lib.rs),
// so the allocator is never used from two threads.
unsafe impl Sync for BatchArena {}

impl BatchArena {
    pub const fn new() -> Self {
        Self {
            memory: UnsafeCell::new([0; ARENA_BYTES]),
            next: Cell::new(0),
        }
    }

    fn base(&self) -> usize {
        self.memory.get() as usize
    }

    fn owns(&self, ptr: *mut u8) -> bool {
        let at = ptr as usize;
        at >= self.base() && at < self.base() + ARENA_BYTES
    }
}

impl Default for BatchArena {
    fn default() -> Self {
        Self::new()
    }
}

unsafe impl GlobalAlloc for BatchArena {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let base = self.base();
        let start = (base + self.next.get()).next_multiple_of(layout.align()) - base;
        match start.checked_add(layout.size()) {
            Some(end) if end <= ARENA_BYTES => {
                self.next.set(end);
                (base + start) as *mut u8
            }
            // SAFETY: the caller's layout contract is passed on unchanged.
            _ => unsafe { System.alloc(layout) },
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if self.owns(ptr) {
            // The newest allocation gives its room back; others wait for the
            // instance to end.
            if ptr as usize + layout.size() == self.base() + self.next.get() {
                self.next.set(ptr as usize - self.base());
            }
        } else {
            // SAFETY: not from the arena, so from System with this layout.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let offset = (ptr as usize).wrapping_sub(self.base());
        let newest = self.owns(ptr) && offset + layout.size() == self.next.get();
        if newest && offset + new_size <= ARENA_BYTES {
            self.next.set(offset + new_size);
            return ptr;
        }
        if !self.owns(ptr) {
            // SAFETY: not from the arena, so from System with this layout.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        // SAFETY: `new_size` with the old alignment is a valid layout (the
        // caller's contract); the copy covers the smaller of the two sizes.
        unsafe {
            let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
            let moved = self.alloc(new_layout);
            if !moved.is_null() {
                std::ptr::copy_nonoverlapping(ptr, moved, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            moved
        }
    }
}
