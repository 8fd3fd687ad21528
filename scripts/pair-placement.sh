#!/bin/sh
# How much a malloc/free pair depends on where its object lies (BENCHMARKS.md, "Tried and
# dropped", third round): a C loop allocates K objects first, so that the object the loop
# reuses sits K slots further on, then runs 10 M pairs of malloc(8), a byte write and free.
#   scripts/pair-placement.sh [LIB ...]   # default: libdmaslab.so and the Debian peers
# Needs cc and a release build of libdmaslab.so (scripts/bench.sh builds it).
set -e
cd "$(dirname "$0")/.."
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cat >"$dir/pair.c" <<'EOF'
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
    volatile size_t size = 8;
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
    printf("k=%-4d object at page offset 0x%03lx: %.2f ns/pair\n", k,
           (unsigned long)p & 0xfff, (t1 - t0) / n);
    free(p);
    for (int j = 0; j < k; j++)
        free(held[j]);
    free(held);
    return 0;
}
EOF
cc -O2 -o "$dir/pair" "$dir/pair.c"
if [ $# -eq 0 ]; then
  set -- "${CARGO_TARGET_DIR:-target}/release/libdmaslab.so" \
    /usr/lib/x86_64-linux-gnu/libmimalloc.so.2 \
    /usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4
fi
for lib in "$@"; do
  echo "== $lib"
  for k in 0 1 2 3 4 8 16 64 200; do
    LD_PRELOAD="$lib" "$dir/pair" 10000000 "$k"
  done
done
