//! Fuzz target: the core allocator's API driven by arbitrary bytes against a model, with
//! deliberate misuse (see `crates/dmaslab-core/tests/fuzz_harness/mod.rs`, shared with the
//! bounded proptest run CI does). Any panic is a bug: a broken promise or a crash inside the
//! allocator.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../crates/dmaslab-core/tests/fuzz_harness/mod.rs"]
mod fuzz_harness;

fuzz_target!(|data: &[u8]| {
    fuzz_harness::run(data);
});
