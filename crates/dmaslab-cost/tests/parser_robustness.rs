//! The parser never panics: valid inputs mutated at random (bytes replaced, inserted, deleted;
//! tokens replaced by hostile ones; lines dropped or repeated) either parse, and then analyse and
//! render without panicking, or fail with a one-line error naming an existing line.

use dmaslab_cost::cost::{analyse, DEFAULT_MINALIGNS};
use dmaslab_cost::{render, slabinfo, SEED_SLABINFO};
use proptest::prelude::*;

const FULL: &str = "\
slabinfo - version: 2.1
# name <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : tunables <limit> <batchcount> <sharedfactor> : slabdata <active_slabs> <num_slabs> <sharedavail>
kmalloc-rnd-01-8 700 1024 8 512 1 : tunables 0 0 0 : slabdata 2 2 0
kmalloc-cg-16 300 512 16 256 1 : tunables 0 0 0 : slabdata 2 2 0
dma-kmalloc-96 10 42 96 42 1 : tunables 0 0 0 : slabdata 1 1 0
kmalloc-rcl-1k 30 64 1024 16 4 : tunables 0 0 0 : slabdata 4 4 0
dentry 1000 1050 192 21 1 : tunables 0 0 0 : slabdata 50 50 0
";

/// Tokens that stress number parsing and the fixed words.
const HOSTILE: &[&str] = &[
    "0",
    "-1",
    "-0",
    "18446744073709551615",
    "18446744073709551616",
    "9223372036854775807",
    "4294967296",
    ":",
    "tunables",
    "slabdata",
    "kmalloc-8",
    "kmalloc-rnd-99-8M",
    "kmalloc-8388608M",
    "slabinfo - version: 2.1",
    "slabinfo - version: 9",
    "#",
    "",
    "\u{0}",
    "é",
    "\r",
    "1e3",
];

#[derive(Clone, Debug)]
enum Mutation {
    SetByte(usize, u8),
    Insert(usize, u8),
    Delete(usize),
    Token(usize, usize),
    DropLine(usize),
    RepeatLine(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::SetByte(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Delete),
        (any::<usize>(), 0..HOSTILE.len()).prop_map(|(i, t)| Mutation::Token(i, t)),
        any::<usize>().prop_map(Mutation::DropLine),
        any::<usize>().prop_map(Mutation::RepeatLine),
    ]
}

fn apply(text: &mut Vec<u8>, m: &Mutation) {
    let n = text.len().max(1);
    match *m {
        Mutation::SetByte(i, b) if !text.is_empty() => text[i % n] = b,
        Mutation::Insert(i, b) => text.insert(i % (text.len() + 1), b),
        Mutation::Delete(i) if !text.is_empty() => {
            text.remove(i % n);
        }
        Mutation::Token(i, t) => {
            let s = String::from_utf8_lossy(text).into_owned();
            let mut tokens: Vec<&str> = s.split(' ').collect();
            let k = i % tokens.len();
            tokens[k] = HOSTILE[t];
            *text = tokens.join(" ").into_bytes();
        }
        Mutation::DropLine(i) | Mutation::RepeatLine(i) => {
            let s = String::from_utf8_lossy(text).into_owned();
            let mut lines: Vec<&str> = s.lines().collect();
            if !lines.is_empty() {
                let k = i % lines.len();
                if matches!(m, Mutation::DropLine(_)) {
                    lines.remove(k);
                } else {
                    lines.insert(k, lines[k]);
                }
            }
            *text = lines.join("\n").into_bytes();
        }
        _ => {}
    }
}

fn check(text: &str) {
    match slabinfo::parse(text) {
        Ok(info) => {
            let a = analyse(&info, "fuzz", 4096, &DEFAULT_MINALIGNS);
            let _ = render::text(&a);
            let _ = render::json(&a);
            if info.rows.len() < 40 {
                let _ = render::svg(&a);
            }
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.contains(['\n', '\r']), "multi-line error: {msg:?}");
            assert!(
                e.line >= 1 && e.line <= text.lines().count(),
                "line {} of {}",
                e.line,
                text.lines().count()
            );
            assert!(
                msg.starts_with(&format!("line {}: field `{}`: ", e.line, e.field)),
                "{msg}"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn mutated_inputs_never_panic(full in any::<bool>(), muts in prop::collection::vec(mutation(), 1..8)) {
        let mut text = if full { FULL } else { SEED_SLABINFO }.as_bytes().to_vec();
        for m in &muts {
            apply(&mut text, m);
        }
        check(&String::from_utf8_lossy(&text));
    }

    #[test]
    fn arbitrary_text_never_panics(text in "(?s).{0,300}") {
        check(&text);
    }

    #[test]
    fn any_numbers_in_a_row_never_panic(n in prop::collection::vec(any::<u64>(), 8), name in 0..4usize) {
        let name = ["kmalloc-8", "kmalloc-96", "dma-kmalloc-8k", "other"][name];
        let text = format!(
            "{name} {} {} {} {} {} : slabdata {} {} {}\nkmalloc-64 {} 1 64 64 1 : slabdata 1 1 0\n",
            n[0], n[1], n[2], n[3], n[4], n[5], n[6], n[7], n[0]
        );
        check(&text);
    }
}
