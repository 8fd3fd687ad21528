/* The seed message's workload as a C program: the active objects of its five /proc/slabinfo
 * lines (17141 x 8, 26844 x 16, 80325 x 32, 54406 x 64 and 11527 x 96 bytes), each one malloc,
 * all live at exit. glibc and policies B and C pack them by size; policy A rounds every one up
 * to the DMA line, which `dmaslab run --compare` shows as pages held:
 *
 *   cc -O2 -o small_objects examples/c/small_objects.c
 *   target/release/dmaslab run --compare -- ./small_objects
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void) {
    static const struct { size_t size; long count; } seed[] = {
        {8, 17141}, {16, 26844}, {32, 80325}, {64, 54406}, {96, 11527},
    };
    unsigned long sum = 0;
    long objects = 0;
    for (size_t i = 0; i < sizeof seed / sizeof seed[0]; i++) {
        for (long k = 0; k < seed[i].count; k++) {
            unsigned char *p = malloc(seed[i].size);
            if (!p) { perror("malloc"); return 1; }
            memset(p, (int)(k & 0xff), seed[i].size);
            sum += p[seed[i].size - 1];
            objects++;
        }
    }
    /* Kept live on purpose: the statistics at exit count them. */
    printf("%ld objects, checksum %lu\n", objects, sum);
    return 0;
}
