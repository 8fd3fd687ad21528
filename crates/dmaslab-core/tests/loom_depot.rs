//! Loom models of the depot's lock-free bag (`src/depot/bag.rs`, included here over loom's
//! atomics): loom runs each model under every interleaving of its threads' atomic operations
//! (and every outcome the memory orderings allow). Run with
//! `RUSTFLAGS="--cfg loom" cargo test -p dmaslab-core --release --test loom_depot`
//! (`scripts/ci.d/25-loom.sh`).
//!
//! What they show: a magazine put into the bag is taken out exactly once or is still there at
//! the end, or its put is refused and it stays the putter's (never lost, never handed to two
//! takers); and what the putter wrote into it before the put is visible to its taker (a write
//! through `UnsafeCell` that loom would report as a race otherwise).
#![cfg(loom)]

/// The atomics `bag.rs` is written against: loom's here.
mod atomic {
    pub(crate) use loom::sync::atomic::{AtomicPtr, Ordering};
}

#[allow(dead_code)] // the crate's other uses of the bag (len, Default) are not modelled
#[path = "../src/depot/bag.rs"]
mod bag;

use bag::Bag;
use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::thread;

/// A stand-in magazine: an id and a word its owner writes before giving it away.
struct Mag {
    id: usize,
    word: UnsafeCell<usize>,
}

fn mag(id: usize) -> *mut Mag {
    Box::into_raw(Box::new(Mag {
        id,
        word: UnsafeCell::new(0),
    }))
}

/// Writes `v` into `m`'s word, as a CPU cache fills a magazine it owns.
fn fill(m: *mut Mag, v: usize) {
    // SAFETY: `m` is the caller's, not in any bag.
    unsafe { (*m).word.with_mut(|w| *w = v) };
}

/// Reads `m`'s word and id, then frees it; the caller owns `m`.
fn consume(m: *mut Mag) -> (usize, usize) {
    // SAFETY: taken out of a bag (or refused by one): the caller's alone.
    let b = unsafe { Box::from_raw(m) };
    // SAFETY: the word is ours with the magazine; loom checks the read against the last write.
    let w = b.word.with(|w| unsafe { *w });
    (b.id, w)
}

/// Drains what is left in the bag.
fn leftovers<const N: usize>(bag: &Bag<Mag, N>, out: &mut Vec<(usize, usize)>) {
    while let Some(m) = bag.take() {
        out.push(consume(m));
    }
}

/// One thread fills a magazine and puts it, another takes: the taker sees the filled word.
#[test]
fn a_put_publishes_the_magazine_to_its_taker() {
    loom::model(|| {
        let bag = Arc::new(Bag::<Mag, 2>::new());
        let b = bag.clone();
        let putter = thread::spawn(move || {
            let m = mag(1);
            fill(m, 41);
            assert!(b.put(m).is_ok(), "an empty bag of 2 has room");
        });
        let mut seen = Vec::new();
        if let Some(m) = bag.take() {
            seen.push(consume(m));
        }
        putter.join().unwrap();
        leftovers(&bag, &mut seen);
        assert_eq!(seen, vec![(1, 41)]);
    });
}

/// Two putters and a taker on a bag of 2 that already holds one magazine: three magazines for
/// two slots. Each comes back exactly once (taken, left in the bag, or refused to its putter),
/// with its word.
#[test]
fn concurrent_puts_and_takes_lose_and_duplicate_nothing() {
    loom::model(|| {
        let bag = Arc::new(Bag::<Mag, 2>::new());
        let m0 = mag(0);
        fill(m0, 100);
        assert!(bag.put(m0).is_ok());
        let putters: Vec<_> = (1..=2)
            .map(|id| {
                let b = bag.clone();
                thread::spawn(move || {
                    let m = mag(id);
                    fill(m, 100 + id);
                    // Refused: still ours, handed back to the main thread.
                    b.put(m).err().map(consume)
                })
            })
            .collect();
        let mut seen = Vec::new();
        if let Some(m) = bag.take() {
            seen.push(consume(m));
        }
        for p in putters {
            seen.extend(p.join().unwrap());
        }
        leftovers(&bag, &mut seen);
        seen.sort_unstable();
        assert_eq!(seen, vec![(0, 100), (1, 101), (2, 102)]);
    });
}

/// Two takers race for one magazine: exactly one gets it.
#[test]
fn two_takers_never_share_a_magazine() {
    loom::model(|| {
        let bag = Arc::new(Bag::<Mag, 2>::new());
        let m = mag(7);
        fill(m, 70);
        assert!(bag.put(m).is_ok());
        let b = bag.clone();
        let other = thread::spawn(move || b.take().map(consume));
        let mine = bag.take().map(consume);
        let theirs = other.join().unwrap();
        let got: Vec<_> = mine.into_iter().chain(theirs).collect();
        assert_eq!(got, vec![(7, 70)]);
        assert!(bag.take().is_none());
    });
}

/// A put into a full bag while a take frees a slot: the put either lands (after the take) or is
/// refused; the bound of one is never exceeded.
#[test]
fn a_full_bag_refuses_or_takes_after_a_take() {
    loom::model(|| {
        let bag = Arc::new(Bag::<Mag, 1>::new());
        let m0 = mag(0);
        assert!(bag.put(m0).is_ok());
        let b = bag.clone();
        let taker = thread::spawn(move || b.take().map(consume));
        let m1 = mag(1);
        let refused = bag.put(m1).err().map(consume);
        let taken = taker.join().unwrap();
        let mut seen: Vec<_> = refused.into_iter().chain(taken).collect();
        leftovers(&bag, &mut seen);
        seen.sort_unstable();
        assert_eq!(seen, vec![(0, 0), (1, 0)]);
    });
}
