/* malloc-large by hand (issues 13 and 15). Two shapes:
 *   field (default): the bench's malloc-large (crates/dmaslab-bench/src/shapes/large.rs):
 *     LIVE (8) blocks of 64 KiB .. MAX_KIB (4096) KiB, log-uniform sizes, one replaced per
 *     step, every page of a new block written once;
 *   uniform: the first by-hand shape (issue 13): uniform sizes, each block memset whole.
 * Prints wall time, page faults and peak RSS from getrusage; count mmap/munmap with
 * `strace -c -f`.
 *
 *   cc -O2 -o /tmp/malloc_large crates/dmaslab-preload/measure/malloc_large.c
 *   LD_PRELOAD=target/release/libdmaslab.so /tmp/malloc_large [steps [live [max_kib [shape]]]]
 *   /tmp/malloc_large 600 8 4096 field        (the bench's row; the defaults)
 *   /tmp/malloc_large 1000 20 8192 uniform    (issue 13's first figures)
 *   strace -c -f -e trace=mmap,munmap,madvise env LD_PRELOAD=... /tmp/malloc_large
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#define MIN_SIZE (64u << 10)
#define PAGE 4096u

static unsigned long long rng = 42;
static unsigned long next(void) {
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (unsigned long)(rng >> 33);
}

/* A size in [MIN_SIZE, max]: uniform, or log-uniform (as many 64..128 KiB blocks as
   2..4 MiB ones). */
static size_t pick(size_t max, int uniform) {
    if (uniform) return MIN_SIZE + next() % (max - MIN_SIZE + 1);
    int lo = __builtin_ctzl(MIN_SIZE), hi = __builtin_ctzl(max / 2);
    int bits = lo + (int)(next() % (unsigned long)(hi - lo + 1));
    size_t from = (size_t)1 << bits, to = (size_t)2 << bits;
    if (to > max) to = max;
    return from + next() % (to - from + 1);
}

static char *block(size_t size, int i, int uniform, unsigned long *sum) {
    char *p = malloc(size);
    if (!p) {
        fprintf(stderr, "malloc(%zu) failed at step %d\n", size, i);
        exit(1);
    }
    if (uniform) memset(p, i, size);
    else
        for (size_t off = 0; off < size; off += PAGE) p[off] = (char)i;
    *sum += (unsigned char)p[size / 2 / PAGE * PAGE];
    return p;
}

int main(int argc, char **argv) {
    int steps = argc > 1 ? atoi(argv[1]) : 600;
    int nlive = argc > 2 ? atoi(argv[2]) : 8;
    size_t max = (argc > 3 ? strtoul(argv[3], NULL, 0) : 4096) << 10;
    int uniform = argc > 4 && !strcmp(argv[4], "uniform");
    if (steps < 0 || nlive < 1 || nlive > 1024 || max < 2 * MIN_SIZE) {
        fprintf(stderr, "usage: malloc_large [steps [live (1..1024) [max_kib (>= 128) [field|uniform]]]]\n");
        return 2;
    }
    char *live[1024] = {0};
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    unsigned long sum = 0;
    if (!uniform)
        for (int i = 0; i < nlive; i++) live[i] = block(pick(max, uniform), i, uniform, &sum);
    for (int i = 0; i < steps; i++) {
        int slot = (int)(next() % (unsigned long)nlive);
        size_t size = pick(max, uniform);
        /* The bench frees first; the first by-hand shape allocated the new block first. */
        if (!uniform) free(live[slot]);
        char *p = block(size, i, uniform, &sum);
        if (uniform) free(live[slot]);
        live[slot] = p;
    }
    for (int i = 0; i < nlive; i++) free(live[i]);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("steps=%d live=%d max_kib=%zu shape=%s time_ms=%.1f minflt=%ld majflt=%ld "
           "maxrss_kib=%ld check=%lu\n",
           steps, nlive, max >> 10, uniform ? "uniform" : "field",
           (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6, ru.ru_minflt,
           ru.ru_majflt, ru.ru_maxrss, sum);
    return 0;
}
