#!/bin/sh
# random-1M split into its phases (BENCHMARKS.md, third round): a C program allocates N objects
# of 1..=256 random bytes and writes a byte to each, frees them in a random order, then does
# both again on the recycled memory, and prints ns per call of each phase.
#   scripts/random-phases.sh [LIB ...]   # default: libdmaslab.so and the Debian peers
# Needs cc and a release build of libdmaslab.so (scripts/bench.sh builds it).
set -e
cd "$(dirname "$0")/.."
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cat >"$dir/phases.c" <<'EOF'
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static uint64_t state = 0x5eed | 1;
static uint64_t next(void) {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 500000;
    size_t *size = malloc(n * sizeof *size), *order = malloc(n * sizeof *order);
    char **p = malloc(n * sizeof *p);
    for (int i = 0; i < n; i++) {
        size[i] = 1 + next() % 256;
        order[i] = i;
    }
    for (int i = n - 1; i > 0; i--) {
        size_t j = next() % (i + 1), t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    double t[5];
    t[0] = now();
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < n; i++) {
            p[i] = malloc(size[i]);
            *(volatile char *)p[i] = 1;
        }
        t[2 * round + 1] = now();
        for (int i = 0; i < n; i++)
            free(p[order[i]]);
        t[2 * round + 2] = now();
    }
    printf("malloc %.1f  free %.1f  malloc (recycled) %.1f  free %.1f  ns per call\n",
           (t[1] - t[0]) / n, (t[2] - t[1]) / n, (t[3] - t[2]) / n, (t[4] - t[3]) / n);
    return 0;
}
EOF
cc -O2 -o "$dir/phases" "$dir/phases.c"
if [ $# -eq 0 ]; then
  set -- "${CARGO_TARGET_DIR:-target}/release/libdmaslab.so" \
    /usr/lib/x86_64-linux-gnu/libmimalloc.so.2 \
    /usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4
fi
for lib in "$@"; do
  echo "== $lib"
  for run in 1 2 3; do
    LD_PRELOAD="$lib" "$dir/phases"
  done
done
