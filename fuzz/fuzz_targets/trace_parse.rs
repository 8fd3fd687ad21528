//! Fuzz target: any bytes as ftrace text. Parsing never panics; what parses is paired, replayed
//! under A at 64, B and C and rendered (text and JSON) without panicking; an error is one line
//! naming an existing line.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = dmaslab_trace::text_of(data) else {
        return;
    };
    match dmaslab_trace::parse(&text) {
        Ok(trace) => {
            // Bound the replay's work: the parser is the target, the replay a smoke test.
            if trace.events.len() <= 4096 {
                let r = dmaslab_trace::analyse(&trace, &[64]);
                let _ = dmaslab_trace::text(&r);
                let _ = dmaslab_trace::json(&r);
            }
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.contains('\n') && !msg.contains('\r'), "{msg:?}");
            assert!(e.line >= 1 && e.line <= text.lines().count().max(1));
        }
    }
});
