/* malloc-large by hand (issue 13): blocks of 64 KiB .. 8 MiB allocated, written whole and
 * freed over and over, 20 live at a time, as the field's malloc-large shape. Prints wall time,
 * page faults and peak RSS from getrusage; count mmap/munmap with `strace -c -f`.
 *
 *   cc -O2 -o /tmp/malloc_large crates/dmaslab-preload/measure/malloc_large.c
 *   LD_PRELOAD=target/release/libdmaslab.so /tmp/malloc_large [iterations]
 *   strace -c -f -e trace=mmap,munmap,madvise env LD_PRELOAD=... /tmp/malloc_large
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#define LIVE 20
#define MIN_SIZE (64u << 10)
#define MAX_SIZE (8u << 20)

static unsigned long long rng = 42;
static unsigned long next(void) {
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (unsigned long)(rng >> 33);
}

int main(int argc, char **argv) {
    int iters = argc > 1 ? atoi(argv[1]) : 1000;
    char *live[LIVE] = {0};
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    unsigned long sum = 0;
    for (int i = 0; i < iters; i++) {
        int slot = next() % LIVE;
        size_t size = MIN_SIZE + next() % (MAX_SIZE - MIN_SIZE + 1);
        char *p = malloc(size);
        if (!p) {
            fprintf(stderr, "malloc(%zu) failed at iteration %d\n", size, i);
            return 1;
        }
        memset(p, i, size);
        sum += (unsigned char)p[size / 2];
        free(live[slot]);
        live[slot] = p;
    }
    for (int i = 0; i < LIVE; i++)
        free(live[i]);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("iterations=%d time_ms=%.1f minflt=%ld majflt=%ld maxrss_kib=%ld check=%lu\n", iters,
           (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6, ru.ru_minflt,
           ru.ru_majflt, ru.ru_maxrss, sum);
    return 0;
}
