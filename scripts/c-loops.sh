#!/bin/sh
# C programs that isolate one cost the bench rows mix (BENCHMARKS.md, third round), run under
# each allocator by LD_PRELOAD:
#   scripts/c-loops.sh phases [LIB ...]     # random-1M split: malloc N objects of 1..=256
#                                           # random bytes and write a byte to each, free them in
#                                           # a random order, both again on the recycled memory
#   scripts/c-loops.sh placement [LIB ...]  # 10 M pairs of malloc(8), a byte write and free,
#                                           # after allocating k objects so the reused one moves
#   scripts/c-loops.sh sizes [LIB ...]      # 20 M such pairs of malloc(s), s = 64 B .. 8 KiB,
#                                           # best of 3 (the live flags' cost from 2 KiB)
# Default LIBs: libdmaslab.so and the Debian peers. Needs cc and a release build of
# libdmaslab.so (scripts/bench.sh builds it).
set -e
cd "$(dirname "$0")/.."
what=${1:?usage: scripts/c-loops.sh phases|placement [LIB ...]}
shift
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
case $what in
phases)
  cat >"$dir/loop.c" <<'EOF'
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
  ;;
placement | sizes)
  cat >"$dir/loop.c" <<'EOF'
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

int main(int argc, char **argv) {
    int n = atoi(argv[1]), k = atoi(argv[2]);
    volatile size_t size = argc > 3 ? (size_t)atol(argv[3]) : 8;
    void **held = malloc((k + 1) * sizeof *held);
    for (int j = 0; j < k; j++)
        held[j] = malloc(size);
    free(malloc(size));
    double t0 = now();
    for (int i = 0; i < n; i++) {
        char *p = malloc(size);
        *(volatile char *)p = (char)i;
        free(p);
    }
    double t1 = now();
    char *p = malloc(size);
    printf("size=%-5zu k=%-4d object at page offset 0x%03lx: %.2f ns/pair\n", (size_t)size,
           k, (unsigned long)p & 0xfff, (t1 - t0) / n);
    free(p);
    for (int j = 0; j < k; j++)
        free(held[j]);
    free(held);
    return 0;
}
EOF
  ;;
*)
  echo "scripts/c-loops.sh: unknown program '$what' (phases, placement or sizes)" >&2
  exit 2
  ;;
esac
cc -O2 -o "$dir/loop" "$dir/loop.c"
if [ $# -eq 0 ]; then
  set -- "${CARGO_TARGET_DIR:-target}/release/libdmaslab.so" \
    /usr/lib/x86_64-linux-gnu/libmimalloc.so.2 \
    /usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4
fi
for lib in "$@"; do
  echo "== $lib"
  case $what in
  phases)
    for run in 1 2 3; do
      LD_PRELOAD="$lib" "$dir/loop"
    done
    ;;
  placement)
    for k in 0 1 2 3 4 8 16 64 200; do
      LD_PRELOAD="$lib" "$dir/loop" 10000000 "$k"
    done
    ;;
  sizes)
    for size in 64 1024 2048 4096 8192; do
      for run in 1 2 3; do
        LD_PRELOAD="$lib" "$dir/loop" 20000000 0 "$size"
      done | sort -t: -k2 -n | head -1
    done
    ;;
  esac
done
