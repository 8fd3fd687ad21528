//! Mutated real lines never panic the parser; a malformed line is reported by its number and
//! a field, in one line.

use dmaslab_trace::parse;
use proptest::prelude::*;

const LINES: [&str; 6] = [
    "         dmaslab-26759   [000] .....  1475.459412: kmalloc: call_site=__get_vm_area_node+0x80/0x140 ptr=ffff88810247cc00 bytes_req=72 bytes_alloc=96 gfp_flags=GFP_KERNEL|__GFP_ZERO node=-1 accounted=false",
    "         dmaslab-26762   [000] .....  1475.459604: kfree: call_site=ida_alloc_range+0x39b/0x400 ptr=ffff88810247cc00",
    "          mktemp-26763   [000] ...1.  1475.469561: kmem_cache_alloc: call_site=__es_insert_extent+0x1a3/0x390 ptr=ffff88825d379640 name=extent_status bytes_req=40 bytes_alloc=40 gfp_flags=GFP_ATOMIC node=-1 accounted=false",
    "dmaslab-dev-2815:               dd-12034 [000]   564.759401: kmem_cache_free:      (do_sys_openat2+0xa2) call_site=do_sys_openat2+0xa2 ptr=0xffff888100e71000 name=names_cache",
    "   kworker/1:1-77      [001] .....   10.000300: dma_map_sg: 0000:00:05.0 dir=TO_DEVICE nents=2/2 ents=2/2 dma_addrs={0x1000,0x3000} sizes={0x200,0x40} phys_addrs={0x1000,0x3000} attrs=",
    "   kworker/1:1-77      [001] ..s1.   10.000100: dma_map_phys: 0000:00:04.0 dir=FROM_DEVICE dma_addr=fffff000 size=1536 phys_addr=10a2c3000 attrs=",
];

#[derive(Debug, Clone)]
enum Mutation {
    Truncate(usize),
    Replace(usize, char),
    Delete(usize, usize),
    DropField(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<usize>().prop_map(Mutation::Truncate),
        (
            any::<usize>(),
            prop_oneof![
                Just('x'),
                Just(' '),
                Just('='),
                Just('{'),
                Just(':'),
                Just('['),
                Just('\u{e9}'),
                Just('9')
            ]
        )
            .prop_map(|(i, c)| Mutation::Replace(i, c)),
        (any::<usize>(), 1usize..12).prop_map(|(i, n)| Mutation::Delete(i, n)),
        any::<usize>().prop_map(Mutation::DropField),
    ]
}

fn apply(line: &str, m: &Mutation) -> String {
    let chars: Vec<char> = line.chars().collect();
    let at = |i: usize| i % (chars.len() + 1);
    match *m {
        Mutation::Truncate(i) => chars[..at(i)].iter().collect(),
        Mutation::Replace(i, c) => {
            let mut v = chars.clone();
            if !v.is_empty() {
                let i = i % v.len();
                v[i] = c;
            }
            v.into_iter().collect()
        }
        Mutation::Delete(i, n) => {
            let s = at(i);
            let e = (s + n).min(chars.len());
            chars[..s].iter().chain(&chars[e..]).collect()
        }
        Mutation::DropField(i) => {
            let words: Vec<&str> = line.split(' ').collect();
            let fields: Vec<usize> = (0..words.len())
                .filter(|&w| words[w].contains('='))
                .collect();
            let drop = fields[i % fields.len()];
            words
                .iter()
                .enumerate()
                .filter(|&(w, _)| w != drop)
                .map(|(_, s)| *s)
                .collect::<Vec<_>>()
                .join(" ")
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn mutated_lines_never_panic_and_errors_name_their_line(
        which in 0..LINES.len(),
        m in mutation(),
        before in 0usize..3,
    ) {
        let bad = apply(LINES[which], &m);
        let mut text = String::new();
        for _ in 0..before {
            text.push_str(LINES[1]);
            text.push('\n');
        }
        text.push_str(&bad);
        text.push('\n');
        text.push_str(LINES[0]);
        text.push('\n');
        if let Err(e) = parse(&text) {
            prop_assert_eq!(e.line, before + 1, "{} from {:?}", e, bad);
            prop_assert!(!e.field.is_empty());
            let msg = e.to_string();
            prop_assert!(!msg.contains('\n') && !msg.contains('\r'), "{:?}", msg);
            prop_assert!(msg.starts_with(&format!("line {}: field `", before + 1)), "{}", msg);
        }
    }

    #[test]
    fn arbitrary_text_never_panics(s in "\\PC{0,300}") {
        let _ = parse(&s);
    }
}

#[test]
fn each_kind_of_damage_names_the_field() {
    let l = LINES[0];
    let cases = [
        (l[..70].to_string(), "ptr"),
        (l.replace("bytes_req=72", "bytes_req=7x2"), "bytes_req"),
        (l.replace(" bytes_alloc=96", ""), "bytes_alloc"),
        (l.replace("ptr=ffff88810247cc00", "ptr=zz"), "ptr"),
        (l.replace("1475.459412:", "1475.4594x2:"), "timestamp"),
        (LINES[5].replace("dir=FROM_DEVICE", "dir=SIDEWAYS"), "dir"),
        (
            LINES[4].replace("sizes={0x200,0x40}", "sizes={0x200}"),
            "sizes",
        ),
    ];
    for (bad, field) in cases {
        let e = parse(&format!("{}\n{bad}\n", LINES[1])).unwrap_err();
        assert_eq!((e.line, e.field), (2, field), "{e}");
    }
}
