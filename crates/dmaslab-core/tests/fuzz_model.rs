//! The `cargo fuzz` harness (`fuzz/fuzz_targets/allocator_api.rs`) as a bounded proptest, so CI
//! runs it without nightly: random operation bytes against a model, with deliberate misuse
//! (double frees, interior, stack, wild and free-slab frees; in debug mode writes after free and
//! red-zone overflows). Every misuse must be reported and nothing may panic in the allocator.

mod fuzz_harness;

use proptest::prelude::*;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: if cfg!(miri) { 2 } else { 8000 },
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Inputs biased to start in debug mode half of the time and to carry enough operations.
fn input() -> impl Strategy<Value = Vec<u8>> {
    let len = if cfg!(miri) { 40 } else { 3000 };
    (any::<u8>(), prop::collection::vec(any::<u8>(), 1..len)).prop_map(|(cfg, mut ops)| {
        ops.insert(0, cfg);
        ops
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn random_operations_and_misuse_against_the_model(data in input()) {
        fuzz_harness::run(&data);
    }
}

#[test]
fn misuse_is_reported_in_both_modes() {
    // Fixed inputs that surely misuse: allocate, free, free again (immediate double free), then
    // an interior free and a stack free.
    for cfg in [0x02u8, 0x82] {
        let data = [
            cfg, 0, 64, 0, 0, // alloc 65 bytes
            4, 0, 0, // free it
            6, 0, // free of the freed (immediate)
            0, 100, 0, 0, // alloc 101
            7, 0, 0, 0, 0, 0, // interior free of it
            7, 1, 0, 0, 0, 0, // stack free
        ];
        let r = fuzz_harness::run(&data);
        assert!(r.at_free >= 3, "cfg {cfg:#x}: {r:?}");
    }
}
