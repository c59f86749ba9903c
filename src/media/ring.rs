//! Bounded lock-free single-producer single-consumer ring of `Copy` values
//! (DESIGN.md §1: commands in, events out).
//!
//! # Contract
//!
//! - [`ring`] allocates the slots once (capacity fixed at construction) and
//!   returns the two halves; each half is `Send` and is moved to its thread.
//! - [`Producer::try_push`] never waits: on a full ring it hands the value
//!   back. [`Producer::push_or_count`] is what the media thread uses: a full
//!   ring is counted (readable from either half, [`Producer::overflows`] /
//!   [`Consumer::overflows`]) and the value dropped, never waited on.
//! - [`Consumer::try_pop`] never waits: `None` on an empty ring.
//! - Neither half allocates, locks or makes a system call after [`ring`].
//!
//! # Memory ordering
//!
//! Two monotonically increasing (wrapping) counters: `tail`, written only by
//! the producer (one past the last slot written), and `head`, written only by
//! the consumer (one past the last slot read). Slot `i & mask` belongs to
//! the producer while `tail - head < capacity` says it is free, and to the
//! consumer while `head < tail` says it is full.
//!
//! - Producer: writes the slot, then stores `tail + 1` with **Release**. The
//!   consumer loads `tail` with **Acquire**; seeing the new `tail` therefore
//!   makes the slot's bytes visible to it (the write happens-before the read).
//! - Consumer: reads the slot, then stores `head + 1` with **Release**. The
//!   producer loads `head` with **Acquire** before deciding a slot is free;
//!   seeing the new `head` means the consumer's read of that slot
//!   happened-before the producer overwrites it.
//! - Each side keeps a private copy of the other side's counter and reloads
//!   it only when the copy says full (producer) or empty (consumer), so the
//!   common case touches one shared cache line. A stale copy can only make
//!   the ring look fuller or emptier than it is, never the reverse, because
//!   the counters only grow.
//! - Each side's own counter is read back with Relaxed: it is the only writer.
//!
//! The two counters sit on separate cache lines so the halves do not
//! false-share.

use std::cell::UnsafeCell;
use std::mem::MaybeUninit;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

#[repr(align(64))]
struct CachePadded<T>(T);

struct Shared<T> {
    /// A power of two of slots, so that `index & mask` stays consistent when
    /// the counters wrap around `usize`.
    slots: Box<[UnsafeCell<MaybeUninit<T>>]>,
    mask: usize,
    /// At most this many values are held (at most `slots.len()`).
    capacity: usize,
    /// Written by the consumer only.
    head: CachePadded<AtomicUsize>,
    /// Written by the producer only.
    tail: CachePadded<AtomicUsize>,
    /// Values refused because the ring was full (push_or_count).
    overflows: CachePadded<AtomicU64>,
}

// SAFETY: a slot is accessed by one side at a time, handed over through the
// Release/Acquire pairs on `head` and `tail` described in the module doc;
// `T: Send` because values move between threads.
unsafe impl<T: Send> Sync for Shared<T> {}

impl<T> Shared<T> {
    fn capacity(&self) -> usize {
        self.capacity
    }

    fn slot(&self, index: usize) -> &UnsafeCell<MaybeUninit<T>> {
        &self.slots[index & self.mask]
    }
}

/// The writing half; see the module doc.
pub struct Producer<T> {
    shared: Arc<Shared<T>>,
    tail: usize,
    head_cache: usize,
}

/// The reading half; see the module doc.
pub struct Consumer<T> {
    shared: Arc<Shared<T>>,
    head: usize,
    tail_cache: usize,
}

/// A ring holding up to `capacity` values (at least 1; the slots are
/// rounded up to a power of two). The only allocation.
pub fn ring<T: Copy + Send>(capacity: usize) -> (Producer<T>, Consumer<T>) {
    assert!(
        (1..=usize::MAX / 4).contains(&capacity),
        "ring capacity {capacity}"
    );
    let n = capacity.next_power_of_two();
    let slots = (0..n)
        .map(|_| UnsafeCell::new(MaybeUninit::uninit()))
        .collect();
    let shared = Arc::new(Shared {
        slots,
        mask: n - 1,
        capacity,
        head: CachePadded(AtomicUsize::new(0)),
        tail: CachePadded(AtomicUsize::new(0)),
        overflows: CachePadded(AtomicU64::new(0)),
    });
    (
        Producer {
            shared: shared.clone(),
            tail: 0,
            head_cache: 0,
        },
        Consumer {
            shared,
            head: 0,
            tail_cache: 0,
        },
    )
}

impl<T: Copy + Send> Producer<T> {
    /// Pushes `v`, or gives it back if the ring is full.
    pub fn try_push(&mut self, v: T) -> Result<(), T> {
        let cap = self.shared.capacity();
        if self.tail.wrapping_sub(self.head_cache) >= cap {
            // Acquire: pairs with the consumer's Release store of `head`, so
            // its read of the slot we are about to reuse is complete.
            self.head_cache = self.shared.head.0.load(Ordering::Acquire);
            if self.tail.wrapping_sub(self.head_cache) >= cap {
                return Err(v);
            }
        }
        let slot = self.shared.slot(self.tail);
        // SAFETY: tail - head < cap, so the consumer will not touch this slot
        // until it sees the `tail` stored below; we are the only producer.
        unsafe { (*slot.get()).write(v) };
        self.tail = self.tail.wrapping_add(1);
        // Release: publishes the slot write to the consumer's Acquire load.
        self.shared.tail.0.store(self.tail, Ordering::Release);
        Ok(())
    }

    /// Pushes `v`; on a full ring counts an overflow and drops it. Returns
    /// whether it was pushed. Never waits.
    pub fn push_or_count(&mut self, v: T) -> bool {
        match self.try_push(v) {
            Ok(()) => true,
            Err(_) => {
                self.shared.overflows.0.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Free slots now (a lower bound: the consumer may be freeing more).
    pub fn free(&mut self) -> usize {
        self.head_cache = self.shared.head.0.load(Ordering::Acquire);
        self.shared.capacity() - self.tail.wrapping_sub(self.head_cache)
    }

    pub fn capacity(&self) -> usize {
        self.shared.capacity()
    }

    /// Values dropped by [`Self::push_or_count`] so far.
    pub fn overflows(&self) -> u64 {
        self.shared.overflows.0.load(Ordering::Relaxed)
    }
}

impl<T: Copy + Send> Consumer<T> {
    /// Pops the oldest value, `None` if the ring is empty.
    pub fn try_pop(&mut self) -> Option<T> {
        if self.head == self.tail_cache {
            // Acquire: pairs with the producer's Release store of `tail`,
            // so the slot's contents are visible.
            self.tail_cache = self.shared.tail.0.load(Ordering::Acquire);
            if self.head == self.tail_cache {
                return None;
            }
        }
        let slot = self.shared.slot(self.head);
        // SAFETY: head < tail, so the producer wrote this slot (published by
        // the Acquire above) and will not reuse it until it sees our `head`.
        let v = unsafe { (*slot.get()).assume_init_read() };
        self.head = self.head.wrapping_add(1);
        // Release: our read of the slot happens-before the producer reuses it.
        self.shared.head.0.store(self.head, Ordering::Release);
        Some(v)
    }

    /// Values waiting now (a lower bound: the producer may be adding more).
    pub fn len(&mut self) -> usize {
        self.tail_cache = self.shared.tail.0.load(Ordering::Acquire);
        self.tail_cache.wrapping_sub(self.head)
    }

    pub fn is_empty(&mut self) -> bool {
        self.len() == 0
    }

    pub fn capacity(&self) -> usize {
        self.shared.capacity()
    }

    /// Values the producer dropped because the ring was full.
    pub fn overflows(&self) -> u64 {
        self.shared.overflows.0.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_order_full_and_empty() {
        let (mut p, mut c) = ring::<u32>(3);
        assert_eq!(c.try_pop(), None);
        for i in 0..3 {
            p.try_push(i).unwrap();
        }
        assert_eq!(p.try_push(9), Err(9));
        assert!(!p.push_or_count(9));
        assert_eq!(c.overflows(), 1);
        assert_eq!(c.len(), 3);
        assert_eq!(c.try_pop(), Some(0));
        assert_eq!(p.free(), 1);
        p.try_push(3).unwrap();
        assert_eq!(
            std::iter::from_fn(|| c.try_pop()).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        assert!(c.is_empty());
    }

    #[test]
    fn indices_wrap_around_usize() {
        let (mut p, mut c) = ring::<u8>(5);
        // Start both counters just below the wrap of usize.
        p.tail = usize::MAX - 2;
        p.head_cache = p.tail;
        p.shared.tail.0.store(p.tail, Ordering::Relaxed);
        p.shared.head.0.store(p.tail, Ordering::Relaxed);
        c.head = p.tail;
        c.tail_cache = p.tail;
        for round in 0..4u8 {
            for i in 0..5 {
                p.try_push(round * 10 + i).unwrap();
            }
            assert!(p.try_push(0).is_err());
            for i in 0..5 {
                assert_eq!(c.try_pop(), Some(round * 10 + i));
            }
            assert_eq!(c.try_pop(), None);
        }
    }

    /// Two threads, a small ring, a million values: every value arrives once,
    /// in order, with its payload intact (a torn or stale slot would break
    /// the checksum or the order).
    #[test]
    fn stress_two_threads_in_order_and_intact() {
        #[derive(Clone, Copy)]
        struct Msg {
            n: u64,
            check: u64,
            pad: [u64; 3],
        }
        const N: u64 = 1_000_000;
        let (mut p, mut c) = ring::<Msg>(7);
        let prod = std::thread::spawn(move || {
            let mut n = 0;
            while n < N {
                let m = Msg {
                    n,
                    check: n.wrapping_mul(0x9E37_79B9_7F4A_7C15),
                    pad: [n; 3],
                };
                if p.try_push(m).is_ok() {
                    n += 1;
                } else {
                    std::thread::yield_now();
                }
            }
            p
        });
        let mut expect = 0;
        while expect < N {
            match c.try_pop() {
                Some(m) => {
                    assert_eq!(m.n, expect);
                    assert_eq!(m.check, expect.wrapping_mul(0x9E37_79B9_7F4A_7C15));
                    assert_eq!(m.pad, [expect; 3]);
                    expect += 1;
                }
                None => std::thread::yield_now(),
            }
        }
        let p = prod.join().unwrap();
        assert_eq!(p.overflows(), 0);
        assert_eq!(c.try_pop().map(|m| m.n), None);
    }
}
