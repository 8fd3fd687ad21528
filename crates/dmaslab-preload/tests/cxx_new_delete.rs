//! C++ `operator new`/`delete` and C23 `free_sized` through `libdmaslab.so` (src/cxx.rs): every
//! correct sized and aligned pairing passes in both modes and under every policy (no false
//! mismatch, alignment kept), `new` is served by dmaslab, a wrong size is one report line
//! then `SIGABRT`, and out of memory throws `std::bad_alloc` (the nothrow forms return null).

mod common;
use common::*;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Command;

const PROGRAM: &str = r#"
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <malloc.h>
#include <new>

extern "C" void free_sized(void *, size_t) __attribute__((weak));
extern "C" void free_aligned_sized(void *, size_t, size_t) __attribute__((weak));

struct alignas(64) Line { char c[100]; };
struct Node { Node *next; long v; ~Node() {} };

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IONBF, 0);
    const char *w = argc > 1 ? argv[1] : "";
    if (!strcmp(w, "pairs")) {
        for (size_t n = 0; n < 600000; n = n * 5 / 4 + 1) {
            void *p = ::operator new(n);
            memset(p, 1, n);
            ::operator delete(p, n);
            p = ::operator new[](n);
            ::operator delete[](p, n);
            for (size_t a = 1; a <= 65536; a *= 2) {
                p = ::operator new(n, std::align_val_t(a));
                if ((uintptr_t)p % a) { printf("new(%zu, %zu) misaligned: %p\n", n, a, p); return 1; }
                memset(p, 2, n);
                ::operator delete(p, n, std::align_val_t(a));
                p = ::operator new[](n, std::align_val_t(a), std::nothrow);
                if (!p || (uintptr_t)p % a) { printf("new[](%zu, %zu) bad: %p\n", n, a, p); return 1; }
                ::operator delete[](p, n, std::align_val_t(a));
                p = aligned_alloc(a, n);
                free_aligned_sized(p, a, n);
            }
            p = malloc(n);
            free_sized(p, n);
            p = calloc(n, 3);
            free_sized(p, 3 * n);
            /* realloc shrinking in place: the size given back is the last one asked for. */
            p = malloc(n + 1);
            p = realloc(p, n / 2 + n / 4 + 1);
            free_sized(p, n / 2 + n / 4 + 1);
        }
        Line *l = new Line;
        if ((uintptr_t)l % 64) { puts("Line misaligned"); return 1; }
        delete l;
        Node *a = new Node[10];
        delete[] a;
        Node *one = new Node;
        delete one;
        void *q = ::operator new(100, std::nothrow);
        ::operator delete(q, std::nothrow);
        q = ::operator new(100, std::align_val_t(256), std::nothrow);
        ::operator delete(q, std::align_val_t(256), std::nothrow);
        ::operator delete(NULL, 24);
        free_sized(NULL, 24);
        puts("pairs ok");
    } else if (!strcmp(w, "usable")) {
        void *p = ::operator new(100);
        printf("usable=%zu\n", malloc_usable_size(p));
        ::operator delete(p);
    } else if (!strcmp(w, "mismatch")) {
        void *p = ::operator new(24);
        printf("bad=%p\n", p);
        ::operator delete(p, 200);
        puts("unnoticed");
    } else if (!strcmp(w, "mismatch_run")) {
        void *p = ::operator new(40000);
        printf("bad=%p\n", p);
        free_sized(p, 20000);
        puts("unnoticed");
    } else if (!strcmp(w, "oom")) {
        try {
            void *p = ::operator new((size_t)1 << 62);
            printf("got %p\n", p);
        } catch (std::bad_alloc &) { puts("bad_alloc"); }
        try {
            void *p = ::operator new[]((size_t)1 << 62, std::align_val_t(128));
            printf("got %p\n", p);
        } catch (std::bad_alloc &) { puts("bad_alloc aligned"); }
        printf("nothrow=%p\n", ::operator new((size_t)1 << 62, std::nothrow));
    }
    return 0;
}
"#;

fn program() -> (Scratch, PathBuf) {
    let dir = Scratch::new("cxx");
    let exe = compile(
        dir.path(),
        "cxx",
        PROGRAM,
        "g++",
        "cc",
        &["-O0", "-std=c++17", "-w"],
    );
    (dir, exe)
}

fn run_mode(exe: &PathBuf, case: &str, policy: &str, debug: bool) -> std::process::Output {
    let mut c = Command::new(exe);
    c.arg(case)
        .env("DMASLAB_DEBUG", if debug { "1" } else { "0" });
    run(c, Some(policy), None)
}

#[test]
fn correct_sized_and_aligned_pairs_pass_in_both_modes_and_every_policy() {
    let (_dir, exe) = program();
    for policy in POLICIES {
        for debug in [false, true] {
            let o = run_mode(&exe, "pairs", policy, debug);
            assert!(
                o.status.success() && String::from_utf8_lossy(&o.stdout).contains("pairs ok"),
                "policy {policy}, debug {debug}: {}",
                show(&o)
            );
        }
    }
}

#[test]
fn operator_new_is_served_by_dmaslab() {
    let (_dir, exe) = program();
    // kmalloc-128 (policy C); glibc would say 104.
    let o = run_mode(&exe, "usable", "C", false);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "usable=128\n",
        "{}",
        show(&o)
    );
}

#[test]
fn a_wrong_size_is_one_report_line_then_sigabrt() {
    let (_dir, exe) = program();
    // Normal mode checks only frees that miss the thread's magazine: a page run's always do;
    // a slab object's are the misuse matrix's business (it records which ones).
    for (case, object, modes) in [
        (
            "mismatch",
            "size 200, object of kmalloc-32, 32 bytes",
            &[true][..],
        ),
        (
            "mismatch_run",
            "size 20000, object of a page run, 40960 bytes",
            &[false, true][..],
        ),
    ] {
        for &debug in modes {
            let o = run_mode(&exe, case, "C", debug);
            assert_eq!(o.status.signal(), Some(6), "{case}: {}", show(&o));
            let out = String::from_utf8_lossy(&o.stdout);
            let bad = out
                .lines()
                .find_map(|l| l.strip_prefix("bad="))
                .unwrap_or_else(|| panic!("{case}: no bad= line: {}", show(&o)));
            let mut want = format!("dmaslab: sized delete mismatch of {bad} ({object}");
            if debug && case == "mismatch" {
                want += ", requested 24";
            }
            want += ")";
            let err = String::from_utf8_lossy(&o.stderr);
            assert_eq!(err.trim_end(), want, "{case}, debug {debug}: {}", show(&o));
        }
    }
}

#[test]
fn out_of_memory_throws_bad_alloc_and_nothrow_gives_null() {
    let (_dir, exe) = program();
    for debug in [false, true] {
        let o = run_mode(&exe, "oom", "C", debug);
        assert!(o.status.success(), "{}", show(&o));
        assert_eq!(
            String::from_utf8_lossy(&o.stdout),
            "bad_alloc\nbad_alloc aligned\nnothrow=(nil)\n",
            "debug {debug}: {}",
            show(&o)
        );
    }
}
