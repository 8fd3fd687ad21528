//! Misuse under the preload, each case in its own child process: it must die by `SIGABRT` with
//! one `dmaslab: ...` line naming the problem and the address — in normal mode where the cheap
//! checks promise it (double free of the thread's recent object, on the magazine's top and at the
//! free-list head, invalid frees), and
//! in debug mode (`DMASLAB_DEBUG=1`) for all of them plus use after free and red-zone overflow,
//! whose reports also name the cache, the object and both call sites.

mod common;
use common::*;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Output};

/// One program, one misuse per `argv[1]`. Before the misuse it prints `key=value` lines (the
/// pointer the report must name, the bounds of the program's code) unbuffered, so they survive
/// the abort.
const MISUSE: &str = r#"
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern char __executable_start, etext;

static void show(const char *k, const void *v) { printf("%s=%p\n", k, v); }

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IONBF, 0);
    show("text_start", &__executable_start);
    show("text_end", &etext);
    const char *what = argc > 1 ? argv[1] : "";

    if (!strcmp(what, "magazine_double")) {
        /* free(p), free(p): p is the thread's recent object at the second free. */
        char *p = malloc(64);
        show("bad", p);
        free(p);
        free(p);
    } else if (!strcmp(what, "magazine_top_double")) {
        /* free(p), free(q), free(p): q is the recent object, p on top of the magazine. */
        char *p = malloc(64), *q = malloc(64);
        show("bad", p);
        free(p);
        free(q);
        free(p);
    } else if (!strcmp(what, "list_head_double")) {
        /* free(p), free(q), free(r), free(p): neither the recent object (r) nor the magazine's
           top (q) is p. The magazine holding p, q, r, p reaches the slabs once the depot is
           full: p goes to the head of its slab's free list, q and r to other slabs, and p again
           is caught at the head. p's slab neighbours (a[1..15]) stay allocated so its slab is
           not released in between. */
        enum { N = 1200, SZ = 8000 };
        static void *a[N];
        for (int i = 0; i < N; i++) a[i] = malloc(SZ);
        for (int i = 16; i < N / 2; i++) free(a[i]);
        void *p = a[0], *q = a[N - 1], *r = a[N - 2];
        show("bad", p);
        free(p);
        free(q);
        free(r);
        free(p);
        for (int i = N / 2; i < N - 2; i++) free(a[i]);
    } else if (!strcmp(what, "stack")) {
        long x[4] = {0};
        show("bad", x);
        free(x);
    } else if (!strcmp(what, "wild")) {
        void *w = (void *)(uintptr_t)0xdeadbeef000ull;
        show("bad", w);
        free(w);
    } else if (!strcmp(what, "interior")) {
        char *p = malloc(64);
        show("bad", p + 8);
        free(p + 8);
    } else if (!strcmp(what, "interior_large")) {
        char *p = malloc(20000);
        show("bad", p + 4096);
        free(p + 4096);
    } else if (!strcmp(what, "free_slab")) {
        /* Fill many slabs, free everything, then free a pointer whose slab went back to the
           page layer (malloc_usable_size 0: no object starts there any more). */
        enum { N = 2000 };
        static char *a[N];
        for (int i = 0; i < N; i++) a[i] = malloc(1000);
        for (int i = 0; i < N; i++) free(a[i]);
        for (int i = 0; i < N; i++)
            if (malloc_usable_size(a[i]) == 0) {
                show("bad", a[i]);
                free(a[i]);
                return 0;
            }
        puts("no released slab found");
        return 3;
    } else if (!strcmp(what, "corrupted_list")) {
        /* A write after free over the free-list links of objects back in their slabs: the
           next refill decodes a link that points nowhere. Odd objects stay allocated, so every
           slab stays partial (and mapped); 8000-byte magazines hold 4, so most even objects
           reach the slabs. */
        enum { N = 400, SZ = 8000 };
        static char *a[N];
        for (int i = 0; i < N; i++) a[i] = malloc(SZ);
        for (int i = 0; i < N; i += 2) free(a[i]);
        for (int i = 0; i < N; i += 2) {
            printf("clobbered=%p\n", (void *)a[i]);
            memset(a[i], 0x41, 8);
        }
        for (int i = 0; i < N; i += 2) a[i] = malloc(SZ);
        puts("not caught");
    } else if (!strcmp(what, "use_after_free")) {
        /* q keeps the slab partial, so the next allocation of the size takes p again. */
        volatile char *p = malloc(64);
        char *q = malloc(64);
        show("object", (void *)p);
        show("bad", (void *)(p + 20));
        free((void *)p);
        p[20] = 1;
        char *r = malloc(64);
        printf("not caught: %p %p\n", (void *)q, (void *)r);
    } else if (!strcmp(what, "use_after_free_at_exit")) {
        /* No later allocation takes the object: the walk at exit finds it. */
        volatile char *p = malloc(200);
        char *q = malloc(200);
        show("object", (void *)p);
        show("bad", (void *)(p + 150));
        free((void *)p);
        p[150] = 7;
        (void)q;
        return 0;
    } else if (!strcmp(what, "red_zone")) {
        volatile char *p = malloc(24);
        show("object", (void *)p);
        show("bad", (void *)(p + 24));
        p[24] = 1; /* one past the end */
        free((void *)p);
    } else if (!strcmp(what, "red_zone_exact_fit")) {
        /* 512 fills a kmalloc-512 slot: debug mode serves it from kmalloc-1k, 512-aligned. */
        volatile char *p = malloc(512);
        show("object", (void *)p);
        show("bad", (void *)(p + 512));
        if ((uintptr_t)p % 512) { puts("not 512-aligned"); return 4; }
        p[512] = 1;
        free((void *)p);
    } else {
        puts("unknown case");
        return 2;
    }
    puts("not caught");
    return 0;
}
"#;

struct Case {
    name: &'static str,
    /// The report's start, before the address.
    prefix: &'static str,
    /// Reported in normal mode too (the cheap checks).
    normal: bool,
}

const CASES: [Case; 12] = [
    Case {
        name: "magazine_double",
        prefix: "dmaslab: double free of 0x",
        normal: true,
    },
    Case {
        name: "magazine_top_double",
        prefix: "dmaslab: double free of 0x",
        normal: true,
    },
    Case {
        name: "list_head_double",
        prefix: "dmaslab: double free of 0x",
        normal: true,
    },
    Case {
        name: "stack",
        prefix: "dmaslab: invalid free of 0x",
        normal: true,
    },
    Case {
        name: "wild",
        prefix: "dmaslab: invalid free of 0x",
        normal: true,
    },
    Case {
        name: "interior",
        prefix: "dmaslab: invalid free of 0x",
        normal: true,
    },
    Case {
        name: "interior_large",
        prefix: "dmaslab: invalid free of 0x",
        normal: true,
    },
    Case {
        name: "free_slab",
        prefix: "dmaslab: invalid free of 0x",
        normal: true,
    },
    Case {
        name: "use_after_free",
        prefix: "dmaslab: use after free of 0x",
        normal: false,
    },
    Case {
        name: "use_after_free_at_exit",
        prefix: "dmaslab: use after free of 0x",
        normal: false,
    },
    Case {
        name: "red_zone",
        prefix: "dmaslab: red zone overwritten of 0x",
        normal: false,
    },
    Case {
        name: "red_zone_exact_fit",
        prefix: "dmaslab: red zone overwritten of 0x",
        normal: false,
    },
];

fn program() -> (Scratch, std::path::PathBuf) {
    let dir = Scratch::new("misuse");
    let exe = compile_c(dir.path(), "misuse", MISUSE);
    (dir, exe)
}

fn run_case(exe: &Path, case: &str, debug: bool) -> Output {
    let mut c = Command::new(exe);
    c.arg(case)
        .env("DMASLAB_DEBUG", if debug { "1" } else { "0" });
    if case == "free_slab" {
        // The case needs a slab emptied and released; quarantined objects would keep it.
        c.env("DMASLAB_QUARANTINE", "0");
    }
    run(c, Some("C"), None)
}

/// `key=0x...` from the program's output.
fn value(o: &Output, key: &str) -> usize {
    let out = String::from_utf8_lossy(&o.stdout);
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key}= line: {}", show(o)));
    hex(line).unwrap_or_else(|| panic!("bad {key}: {line}"))
}

fn hex(s: &str) -> Option<usize> {
    let s = s.trim().trim_start_matches("0x");
    let end = s.find(|c: char| !c.is_ascii_hexdigit()).unwrap_or(s.len());
    usize::from_str_radix(&s[..end], 16).ok()
}

/// The one `dmaslab:` report line, after checking the child died by SIGABRT.
fn report(o: &Output, what: &str) -> String {
    assert_eq!(
        o.status.signal(),
        Some(SIGABRT),
        "{what}: expected death by SIGABRT\n{}",
        show(o)
    );
    let err = String::from_utf8_lossy(&o.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("dmaslab:")).collect();
    assert_eq!(
        lines.len(),
        1,
        "{what}: one report line expected\n{}",
        show(o)
    );
    lines[0].to_string()
}

const SIGABRT: i32 = 6;

/// Checks the report names the cache, the object and call sites inside the program's code.
fn check_debug_details(line: &str, o: &Output, what: &str, object: usize) {
    assert!(line.contains("kmalloc-"), "{what}: no cache named: {line}");
    assert!(
        line.contains(&format!("object {object:#x},")),
        "{what}: object {object:#x} not named: {line}"
    );
    let (lo, hi) = (value(o, "text_start"), value(o, "text_end"));
    let site = |key: &str| {
        let at = line
            .find(key)
            .unwrap_or_else(|| panic!("{what}: no '{key}': {line}"));
        hex(&line[at + key.len()..]).unwrap()
    };
    let alloc = site("allocated at ");
    assert!(
        (lo..hi).contains(&alloc),
        "{what}: allocation site {alloc:#x} outside the program's code {lo:#x}..{hi:#x}: {line}"
    );
    let freed = site("freed at ");
    assert!(
        (lo..hi).contains(&freed),
        "{what}: free site {freed:#x} outside the program's code {lo:#x}..{hi:#x}: {line}"
    );
}

#[test]
fn a_free_list_written_after_free_stops_the_next_refill_with_one_line() {
    let (_dir, exe) = program();
    let o = run_case(&exe, "corrupted_list", false);
    let line = report(&o, "corrupted_list");
    // One line: the heap's report, not a panic message around it.
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        err.trim_end(),
        line,
        "stderr beyond the report\n{}",
        show(&o)
    );
    // Objects still in a magazine carry the freed-object tag, whose damage is a use after
    // free at reuse; objects back in their slabs hold links, whose damage is a corrupted list.
    let at = line
        .strip_prefix("dmaslab: corrupted free list at 0x")
        .and_then(hex_digits)
        .or_else(|| {
            let rest = line.strip_prefix("dmaslab: use after free of 0x")?;
            hex_digits(rest.split(' ').next()?)
        })
        .unwrap_or_else(|| panic!("wrong report: {line}\n{}", show(&o)));
    let out = String::from_utf8_lossy(&o.stdout);
    let clobbered: Vec<usize> = out
        .lines()
        .filter_map(|l| l.strip_prefix("clobbered=").and_then(hex))
        .collect();
    assert!(
        clobbered.contains(&at),
        "the report names {at:#x}, which was not written\n{}",
        show(&o)
    );
}

fn hex_digits(s: &str) -> Option<usize> {
    usize::from_str_radix(s, 16).ok()
}

#[test]
fn misuse_in_normal_mode_aborts_with_a_one_line_report() {
    let (_dir, exe) = program();
    for case in CASES.iter().filter(|c| c.normal) {
        let o = run_case(&exe, case.name, false);
        let line = report(&o, case.name);
        let bad = value(&o, "bad");
        // The address, then the end of the line or the object's details.
        let want = format!("{}{:x}", case.prefix, bad);
        assert!(
            line == want || line.starts_with(&format!("{want} (")),
            "{}: wrong report\n{}",
            case.name,
            show(&o)
        );
    }
}

#[test]
fn use_after_free_and_red_zones_pass_unnoticed_in_normal_mode() {
    // What debug mode is for: the normal mode promises nothing here (and must not crash).
    let (_dir, exe) = program();
    for case in CASES.iter().filter(|c| !c.normal) {
        let o = run_case(&exe, case.name, false);
        assert!(o.status.success(), "{}: {}", case.name, show(&o));
    }
}

#[test]
fn every_misuse_in_debug_mode_aborts_naming_cache_object_and_call_sites() {
    let (_dir, exe) = program();
    for case in &CASES {
        let o = run_case(&exe, case.name, true);
        let line = report(&o, case.name);
        let bad = value(&o, "bad");
        let head = format!("{}{:x}", case.prefix, bad);
        assert!(
            line.starts_with(&head),
            "{}: expected '{head}...'\n{}",
            case.name,
            show(&o)
        );
        match case.name {
            "magazine_double" | "magazine_top_double" | "list_head_double" => {
                // The full check: at the second free, with the first free's site.
                check_debug_details(&line, &o, case.name, bad);
            }
            "use_after_free" | "use_after_free_at_exit" | "red_zone" | "red_zone_exact_fit" => {
                check_debug_details(&line, &o, case.name, value(&o, "object"));
            }
            _ => assert_eq!(line, head, "{}: invalid frees name no object", case.name),
        }
        if case.name == "red_zone_exact_fit" {
            assert!(line.contains("kmalloc-1k object"), "{line}");
            assert!(line.contains("offset 512;"), "{line}");
        }
        if case.name == "use_after_free" {
            assert!(line.contains("offset 20;"), "{line}");
        }
    }
}
