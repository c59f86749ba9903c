//! A bounded single-producer single-consumer ring of `Copy` values, the
//! simulators' own (DESIGN.md §1: "fixed-capacity SPSC rings"). It is
//! private to `sim` until the media engine's `media::ring` is on main; then
//! the simulators should move to that one.
//!
//! [`spsc`] allocates the slots once; [`Producer::push`] and
//! [`Consumer::pop`] never allocate, lock or block: a full ring refuses the
//! value (the caller counts it), an empty one returns `None`.

use std::cell::UnsafeCell;
use std::mem::MaybeUninit;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

struct Shared<T> {
    slots: Box<[UnsafeCell<MaybeUninit<T>>]>,
    /// Next slot to read (written by the consumer only).
    head: AtomicUsize,
    /// Next slot to write (written by the producer only).
    tail: AtomicUsize,
}

// SAFETY: a slot is written by the producer only while it is outside
// head..tail and read by the consumer only while inside; the Release store
// of `tail` (resp. `head`) publishes the slot's write (resp. frees it).
unsafe impl<T: Copy + Send> Sync for Shared<T> {}
unsafe impl<T: Copy + Send> Send for Shared<T> {}

/// The writing end.
pub struct Producer<T: Copy> {
    shared: Arc<Shared<T>>,
}

/// The reading end.
pub struct Consumer<T: Copy> {
    shared: Arc<Shared<T>>,
}

/// A ring holding up to `capacity` values (at least 1).
pub fn spsc<T: Copy + Send>(capacity: usize) -> (Producer<T>, Consumer<T>) {
    // One slot stays empty to tell full from empty.
    let n = capacity.max(1) + 1;
    let slots = (0..n)
        .map(|_| UnsafeCell::new(MaybeUninit::uninit()))
        .collect::<Vec<_>>()
        .into_boxed_slice();
    let shared = Arc::new(Shared {
        slots,
        head: AtomicUsize::new(0),
        tail: AtomicUsize::new(0),
    });
    (
        Producer {
            shared: shared.clone(),
        },
        Consumer { shared },
    )
}

impl<T: Copy> Producer<T> {
    /// Appends `v`; `Err(v)` when the ring is full.
    pub fn push(&mut self, v: T) -> Result<(), T> {
        let s = &*self.shared;
        let tail = s.tail.load(Ordering::Relaxed);
        let next = (tail + 1) % s.slots.len();
        if next == s.head.load(Ordering::Acquire) {
            return Err(v);
        }
        // SAFETY: `tail` is outside head..tail: only we touch it (see Shared).
        unsafe { (*s.slots[tail].get()).write(v) };
        s.tail.store(next, Ordering::Release);
        Ok(())
    }

    /// Free slots right now (may grow as the consumer reads).
    pub fn free(&self) -> usize {
        let s = &*self.shared;
        let n = s.slots.len();
        let used = (s.tail.load(Ordering::Relaxed) + n - s.head.load(Ordering::Acquire)) % n;
        n - 1 - used
    }
}

impl<T: Copy> Consumer<T> {
    /// Takes the oldest value.
    pub fn pop(&mut self) -> Option<T> {
        let s = &*self.shared;
        let head = s.head.load(Ordering::Relaxed);
        if head == s.tail.load(Ordering::Acquire) {
            return None;
        }
        // SAFETY: `head` is inside head..tail, published by the Release
        // store of `tail` that the Acquire load above saw.
        let v = unsafe { (*s.slots[head].get()).assume_init() };
        s.head.store((head + 1) % s.slots.len(), Ordering::Release);
        Some(v)
    }

    /// Values waiting right now.
    pub fn len(&self) -> usize {
        let s = &*self.shared;
        let n = s.slots.len();
        (s.tail.load(Ordering::Acquire) + n - s.head.load(Ordering::Relaxed)) % n
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_full_and_empty() {
        let (mut p, mut c) = spsc::<u32>(3);
        assert_eq!(c.pop(), None);
        for i in 0..3 {
            p.push(i).unwrap();
        }
        assert_eq!(p.push(9), Err(9));
        assert_eq!(p.free(), 0);
        assert_eq!(c.len(), 3);
        assert_eq!(c.pop(), Some(0));
        p.push(3).unwrap();
        assert_eq!(
            [c.pop(), c.pop(), c.pop(), c.pop()],
            [Some(1), Some(2), Some(3), None]
        );
    }

    #[test]
    fn crosses_threads_in_order() {
        let (mut p, mut c) = spsc::<u64>(16);
        let t = std::thread::spawn(move || {
            let mut i = 0;
            while i < 100_000 {
                if p.push(i).is_ok() {
                    i += 1;
                } else {
                    std::thread::yield_now();
                }
            }
        });
        let mut want = 0;
        while want < 100_000 {
            match c.pop() {
                Some(v) => {
                    assert_eq!(v, want);
                    want += 1;
                }
                None => std::thread::yield_now(),
            }
        }
        t.join().unwrap();
    }
}
