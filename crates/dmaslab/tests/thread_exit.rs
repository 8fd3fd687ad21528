//! Thread exit gives the thread's magazines back. Its own test binary: the depot counts it
//! compares are process-wide, and tests running beside it in one process would move them.

use dmaslab::heap;
use std::thread;

/// A thread's magazines go back to the depot when it exits, and its objects can be reused.
#[test]
fn thread_exit_returns_magazines() {
    let before = heap().depot_counts();
    thread::spawn(|| {
        let v: Vec<usize> = (0..500).map(|_| heap().malloc(200) as usize).collect();
        for p in v {
            // SAFETY: our own blocks.
            unsafe { heap().free(p as *mut u8) };
        }
    })
    .join()
    .unwrap();
    let after = heap().depot_counts();
    assert!(
        after.0 + after.1 > before.0 + before.1 || after.2 > before.2,
        "no magazine came back: {before:?} -> {after:?}"
    );
}
