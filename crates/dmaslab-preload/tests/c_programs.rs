//! C programs under the preload: fork and threads, the C semantics of the malloc family,
//! O_DIRECT reads into malloc'd buffers, settings from the environment, invalid frees.

mod common;
use common::*;
use std::io::Write as _;
use std::path::Path;
use std::process::Command;

const FORK_THREADS: &str = r#"
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void *churn(void *arg) {
    long id = (long)arg;
    void *keep[256] = {0};
    for (int i = 0; i < 200000; i++) {
        int j = (i * 7 + id) & 255;
        if (keep[j]) {
            if (((unsigned char *)keep[j])[0] != (unsigned char)j) abort();
            free(keep[j]);
        }
        size_t n = 1 + (size_t)((i * 2654435761u + id) % 3000);
        keep[j] = malloc(n);
        if (!keep[j]) abort();
        memset(keep[j], j, n);
    }
    for (int j = 0; j < 256; j++) free(keep[j]);
    return NULL;
}

static int run_threads(int n) {
    pthread_t t[8];
    for (long i = 0; i < n; i++)
        if (pthread_create(&t[i], NULL, churn, (void *)i)) return 1;
    for (int i = 0; i < n; i++) pthread_join(t[i], NULL);
    return 0;
}

int main(void) {
    /* Threads running while we fork: their locks may be held at fork time. */
    pthread_t bg[3];
    for (long i = 0; i < 3; i++) pthread_create(&bg[i], NULL, churn, (void *)(i + 10));
    int children = 0, failed = 0;
    for (int k = 0; k < 6; k++) {
        pid_t p = fork();
        if (p < 0) return 2;
        if (p == 0) {
            /* The child allocates, starts threads, and forks once more. */
            char *s = malloc(100);
            strcpy(s, "child");
            if (run_threads(3)) _exit(3);
            pid_t g = fork();
            if (g == 0) { free(s); exit(run_threads(2)); }
            int st; waitpid(g, &st, 0);
            free(s);
            /* exit(), not _exit(): exit handlers (and so the statistics) run. */
            exit(WIFEXITED(st) ? WEXITSTATUS(st) : 4);
        }
        children++;
        usleep(2000);
    }
    for (int k = 0; k < children; k++) {
        int st;
        wait(&st);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) failed++;
    }
    for (int i = 0; i < 3; i++) pthread_join(bg[i], NULL);
    printf("children %d failed %d\n", children, failed);
    return failed != 0;
}
"#;

#[test]
fn fork_and_threads_work_and_each_process_writes_its_table() {
    let dir = Scratch::new("fork");
    let exe = compile_c(dir.path(), "forker", FORK_THREADS);
    for p in POLICIES {
        let stats = Scratch::new("forkstats");
        let o = run(
            Command::new(&exe),
            Some(p),
            Some(&stats.path().join("slabinfo.%p")),
        );
        assert!(o.status.success(), "policy {p}: {}", show(&o));
        assert_eq!(String::from_utf8_lossy(&o.stdout), "children 6 failed 0\n");
        // The parent, 6 children and 6 grandchildren: one table each (%p).
        let tables = stats_files(stats.path());
        assert_eq!(tables.len(), 13, "policy {p}: {} tables", tables.len());
    }
}

const SEMANTICS: &str = r#"
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CHECK(c) do { if (!(c)) { printf("FAIL line %d: %s\n", __LINE__, #c); return 1; } } while (0)

int main(void) {
    free(NULL);
    errno = 0;
    CHECK(malloc(SIZE_MAX - 4096) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(calloc(SIZE_MAX / 2, 3) == NULL && errno == ENOMEM);
    unsigned char *z = calloc(100, 41);
    CHECK(z != NULL);
    for (int i = 0; i < 4100; i++) CHECK(z[i] == 0);
    CHECK(malloc_usable_size(z) >= 4100);
    CHECK(malloc_usable_size(NULL) == 0);
    free(z);

    char *p = malloc(10);
    strcpy(p, "abcdefghi");
    p = realloc(p, 5000);
    CHECK(p && strcmp(p, "abcdefghi") == 0);
    p = realloc(p, 3);
    CHECK(p && memcmp(p, "abc", 3) == 0);
    CHECK(realloc(p, 0) == NULL); /* glibc: frees */
    p = realloc(NULL, 77);
    CHECK(p != NULL);
    errno = 0;
    CHECK(reallocarray(p, SIZE_MAX / 2, 4) == NULL && errno == ENOMEM);
    p = reallocarray(p, 100, 4);
    CHECK(p != NULL);
    free(p);

    void *q = (void *)1;
    CHECK(posix_memalign(&q, 24, 10) == EINVAL);
    CHECK(posix_memalign(&q, 4, 10) == EINVAL);
    CHECK(q == (void *)1);
    for (size_t a = 8; a <= 65536; a *= 2) {
        CHECK(posix_memalign(&q, a, 100) == 0 && (uintptr_t)q % a == 0);
        free(q);
        void *m = memalign(a, 3000);
        CHECK(m && (uintptr_t)m % a == 0);
        free(m);
        m = aligned_alloc(a, a * 3);
        CHECK(m && (uintptr_t)m % a == 0);
        free(m);
    }
    errno = 0;
    if (getenv("LD_PRELOAD")) /* C17 / glibc >= 2.38; older glibc treats it as memalign */
        CHECK(aligned_alloc(48, 96) == NULL && errno == EINVAL);
    void *m = memalign(48, 10); /* glibc rounds the alignment up to 64 */
    CHECK(m && (uintptr_t)m % 64 == 0);
    free(m);
    long ps = sysconf(_SC_PAGESIZE);
    void *v = valloc(10);
    CHECK(v && (uintptr_t)v % ps == 0);
    free(v);
    v = pvalloc(0);
    CHECK(v && (uintptr_t)v % ps == 0);
    if (getenv("LD_PRELOAD")) /* the man page's one page; glibc gives a minimal chunk */
        CHECK(malloc_usable_size(v) >= (size_t)ps);
    free(v);
    void *zero = malloc(0);
    CHECK(zero != NULL);
    free(zero);
    /* natural alignment up to 1 MiB (half a segment): dmaslab's guarantee, not glibc's */
    for (int k = 3; k <= 20; k++) {
        void *b = malloc((size_t)1 << k);
        CHECK(b && (!getenv("LD_PRELOAD") || (uintptr_t)b % ((size_t)1 << k) == 0));
        free(b);
    }
    for (int s = 16; s < 300; s++) {
        void *b = malloc(s);
        CHECK(b && (uintptr_t)b % 16 == 0);
        free(b);
    }
    puts("ok");
    return 0;
}
"#;

#[test]
fn c_semantics_of_the_malloc_family() {
    let dir = Scratch::new("sem");
    let exe = compile_c(dir.path(), "semantics", SEMANTICS);
    let sys = run(Command::new(&exe), None, None);
    assert!(sys.status.success(), "on glibc: {}", show(&sys));
    // Every policy, and debug mode: its checks must not change what the C functions promise.
    for (p, debug) in POLICIES.iter().map(|p| (*p, "0")).chain([("C", "1")]) {
        let mut c = Command::new(&exe);
        c.env("DMASLAB_DEBUG", debug);
        let o = run(c, Some(p), None);
        assert!(
            o.status.success(),
            "policy {p}, debug {debug}: {}",
            show(&o)
        );
        assert_eq!(String::from_utf8_lossy(&o.stdout), "ok\n");
    }
}

const BAD_FREE: &str = r#"
#include <stdlib.h>
int main(void) {
    long x[4];
    char *p = malloc(64);
    free(p + 8);      /* not an allocation */
    free(x);
    return 0;
}
"#;

#[test]
fn invalid_free_is_reported_and_aborts() {
    let dir = Scratch::new("bad");
    let exe = compile_c(dir.path(), "badfree", BAD_FREE);
    let o = run(Command::new(&exe), Some("C"), None);
    assert!(
        !o.status.success(),
        "an invalid free went unnoticed: {}",
        show(&o)
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.lines()
            .any(|l| l.starts_with("dmaslab: invalid free of 0x")),
        "{}",
        show(&o)
    );
}

#[test]
fn unknown_setting_is_reported_once_and_the_default_used() {
    let dir = Scratch::new("env");
    let stats = dir.path().join("slabinfo.%p");
    // Not `sh`: dash leaves with `_exit`, which skips exit handlers and so the statistics.
    require("perl");
    let mut cmd = Command::new("perl");
    cmd.arg("-e").arg("print qq(hi\\n)");
    cmd.env("DMASLAB_DMA_MINALIGN", "48");
    let o = run(cmd, Some("Q"), Some(&stats));
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "hi\n");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        err.matches("unknown DMASLAB_POLICY value 'Q'").count(),
        1,
        "{err}"
    );
    assert_eq!(
        err.matches("unknown DMASLAB_DMA_MINALIGN").count(),
        1,
        "{err}"
    );
    let t = stats_files(dir.path());
    assert_eq!(t.len(), 1);
    assert!(t[0].contains("policy=C dma_minalign=64 "), "{}", t[0]);
}

#[test]
fn dma_minalign_setting_changes_the_caches() {
    let dir = Scratch::new("minalign");
    let stats = dir.path().join("slabinfo.%p");
    require("perl");
    let mut cmd = Command::new("perl");
    cmd.arg("-e").arg("1").env("DMASLAB_DMA_MINALIGN", "128");
    let o = run(cmd, Some("A"), Some(&stats));
    assert!(o.status.success(), "{}", show(&o));
    let t = &stats_files(dir.path())[0];
    assert!(t.contains("policy=A dma_minalign=128 "), "{t}");
    assert!(
        !t.contains("kmalloc-64 "),
        "policy A with a 128-byte line has kmalloc-64:\n{t}"
    );
    assert!(t.contains("kmalloc-128 "), "{t}");
}

const ODIRECT: &str = r#"
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    int fd = open(argv[1], O_RDONLY | O_DIRECT);
    if (fd < 0) {
        if (errno == EINVAL) { puts("unsupported"); return 77; }
        perror("open"); return 2;
    }
    enum { N = 400 };
    void *bufs[N], *small[N];
    size_t sizes[N];
    for (int i = 0; i < N; i++) {
        small[i] = malloc(1 + (i * 37) % 200);          /* interleaved small objects */
        memset(small[i], 0x5a, 1 + (i * 37) % 200);
        sizes[i] = (i % 2) ? 4096 : 512;
        bufs[i] = malloc(sizes[i]);
        if ((uintptr_t)bufs[i] % 512) { printf("buffer %d at %p not 512-aligned\n", i, bufs[i]); return 3; }
    }
    for (int i = 0; i < N; i++) {
        off_t off = (off_t)(i % 64) * 4096;
        ssize_t r = pread(fd, bufs[i], sizes[i], off);
        if (r != (ssize_t)sizes[i]) { printf("read %d of %zu at %p: %zd (%s)\n", i, sizes[i], bufs[i], r, strerror(errno)); return 4; }
        unsigned char *b = bufs[i];
        for (size_t k = 0; k < sizes[i]; k++)
            if (b[k] != (unsigned char)((off + k) * 131 >> 3)) { printf("bad data in read %d\n", i); return 5; }
    }
    for (int i = 0; i < N; i++) {
        unsigned char *s = small[i];
        for (int k = 0; k < 1 + (i * 37) % 200; k++) if (s[k] != 0x5a) { puts("small object clobbered"); return 6; }
        free(small[i]); free(bufs[i]);
    }
    puts("ok");
    return 0;
}
"#;

#[test]
fn o_direct_reads_into_malloc_buffers() {
    let dir = Scratch::new("odirect");
    let exe = compile_c(dir.path(), "odirect", ODIRECT);
    let data: Vec<u8> = (0..64 * 4096usize)
        .map(|k| ((k * 131) >> 3) as u8)
        .collect();
    // On the target directory's filesystem, not the temporary directory: /tmp is often a tmpfs,
    // which has no O_DIRECT on older kernels.
    let file =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("odirect-{}.bin", std::process::id()));
    std::fs::write(&file, &data).unwrap();
    struct Remove<'a>(&'a Path);
    impl Drop for Remove<'_> {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(self.0);
        }
    }
    let _remove = Remove(&file);
    // Every policy, and debug mode (whose red zones must not move plain malloc's 512-byte
    // buffers off their natural alignment).
    for (p, debug) in POLICIES.iter().map(|p| (*p, "0")).chain([("C", "1")]) {
        let mut c = Command::new(&exe);
        c.arg(&file).env("DMASLAB_DEBUG", debug);
        let o = run(c, Some(p), None);
        if o.status.code() == Some(77) {
            // Straight to stderr: libtest captures eprintln! of a passing test.
            let _ = writeln!(
                std::io::stderr().lock(),
                "SKIPPED: O_DIRECT test: the filesystem of {} does not support O_DIRECT",
                file.display()
            );
            return;
        }
        assert!(
            o.status.success(),
            "policy {p}, debug {debug}: {}",
            show(&o)
        );
        assert_eq!(String::from_utf8_lossy(&o.stdout), "ok\n");
    }
}
