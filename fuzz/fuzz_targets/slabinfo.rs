//! Fuzz target: any bytes as /proc/slabinfo text. Parsing never panics; what parses is analysed
//! and rendered (text and JSON) without panicking; errors are one line naming an existing line.
#![no_main]

use dmaslab_cost::cost::{analyse, DEFAULT_MINALIGNS};
use dmaslab_cost::{render, slabinfo};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match slabinfo::parse(&text) {
        Ok(info) => {
            let a = analyse(&info, "fuzz", 4096, &DEFAULT_MINALIGNS);
            let _ = render::text(&a);
            let _ = render::json(&a);
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.contains('\n') && !msg.contains('\r'), "{msg:?}");
            assert!(e.line >= 1 && e.line <= text.lines().count());
        }
    }
});
