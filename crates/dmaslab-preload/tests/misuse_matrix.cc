/* The misuse matrix's program (tests/misuse_matrix.rs): `matrix KIND SIZE` commits one misuse
   of an allocation of SIZE bytes (after some use of the heap at that size), then uses the heap
   a little more (as a real program would:
   that is where most checks fire), then prints "unnoticed" and exits 0. A refused impossible
   request prints "refused" and exits 1. Built with -O0 -fno-builtin so that every access,
   memcpy and new/delete pair happens as written. */
#include <alloca.h>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>

static char src[2 << 20];
static volatile unsigned long sink;

/* Allocates and frees some objects of the size: reuse of freed memory, free-list refills and
   flushes happen here. */
static void churn(size_t n) {
    void *a[16];
    for (int i = 0; i < 16; i++) {
        a[i] = malloc(n);
        if (a[i]) memset(a[i], 0x5a, n);
    }
    for (int i = 15; i >= 0; i--) free(a[i]);
}

static void fill(volatile char *p, long from, long to) {
    for (long i = from; i < to; i++) p[i] = 'x';
}

template <size_t N> struct Obj {
    char c[N];
    ~Obj() { sink++; }
};

template <size_t N> static void new_delete_array() {
    Obj<N> *o = new Obj<N>;
    delete[] o;
}

template <size_t N> static void new_array_delete() {
    Obj<N / 8> *o = new Obj<N / 8>[8];
    delete o;
}

static int refused(const void *p) {
    if (p) return 0;
    puts("refused");
    return 1;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IONBF, 0);
    if (argc < 3) return 2;
    const char *k = argv[1];
    size_t n = strtoul(argv[2], NULL, 0);
    size_t big = 1 << 20;
    /* A heap in use, as in a real program: the thread's magazines hold objects of the size. */
    churn(n ? n : 24);
    char *p = n ? (char *)malloc(n) : NULL;
    volatile char *v = p;
#define IS(s) (!strcmp(k, s))
    if (IS("double_free")) {
        free(p);
        free(p);
    } else if (IS("double_free_other")) {
        char *q = (char *)malloc(n);
        free(p);
        free(q);
        free(p);
    } else if (IS("double_free_later")) {
        void *b[8];
        for (int i = 0; i < 8; i++) b[i] = malloc(n);
        free(p);
        for (int i = 0; i < 8; i++) free(b[i]);
        free(p);
    } else if (IS("double_free_realloc")) {
        char *q = (char *)realloc(p, 2 * n + 1);
        free(p);
        free(q);
    } else if (IS("free_stack")) {
        char *s = (char *)alloca(n);
        s[0] = 1;
        free(s);
    } else if (IS("free_wild")) {
        free((void *)(uintptr_t)0xdeadbeef000ull);
    } else if (IS("free_interior")) {
        free(p + (n >= 64 ? n / 2 : 16));
    } else if (IS("free_unaligned")) {
        free(p + 1);
    } else if (IS("free_nearby")) {
        /* Live neighbours: p + n is one of them where objects of the size are n apart. */
        void *b[8];
        for (int i = 0; i < 8; i++) b[i] = malloc(n);
        free(p + n);
        char *q = (char *)malloc(n), *r = (char *)malloc(n);
        memset(q, 1, n);
        memset(r, 2, n);
        (void)b;
    } else if (!strncmp(k, "overflow_", 9) || !strncmp(k, "underflow_", 10)) {
        /* {over,under}flow_{1,32,1m}_{write,memcpy} */
        int under = k[0] == 'u';
        const char *amount = k + (under ? 10 : 9);
        long by = amount[0] == '1' && amount[1] == 'm' ? (long)big : atol(amount);
        int with_memcpy = strstr(k, "memcpy") != NULL;
        if (with_memcpy && under) memcpy(p - by, src, by);
        else if (with_memcpy) memcpy(p, src, n + by);
        else if (under) fill(v, -by, 0);
        else fill(v, n, n + by);
        free(p);
    } else if (IS("read_after_free")) {
        free(p);
        for (size_t i = 0; i < n; i += 8) sink += v[i];
    } else if (IS("write_after_free")) {
        free(p);
        v[n / 2] = 1;
    } else if (IS("zero_after_free")) {
        free(p);
        memset(p, 0, n);
    } else if (IS("reuse_after_free_malloc")) {
        /* The stale pointer writes while the memory may belong to q. */
        free(p);
        char *q = (char *)malloc(n);
        memset(p, 'A', n);
        free(q);
    } else if (IS("reuse_after_free_realloc")) {
        char *q = (char *)realloc(p, 2 * n + 1);
        char *r = (char *)malloc(n);
        memset(p, 'A', n);
        free(r);
        free(q);
    } else if (IS("zero_size_read")) {
        volatile char *z = (char *)malloc(0);
        sink += z[0];
        free((void *)z);
    } else if (IS("zero_size_write")) {
        volatile char *z = (char *)malloc(0);
        z[0] = 1;
        free((void *)z);
    } else if (IS("cpp_new_delete_array") || IS("cpp_new_array_delete")) {
        int array = IS("cpp_new_array_delete");
        if (n == 24) array ? new_array_delete<24>() : new_delete_array<24>();
        else if (n == 4096) array ? new_array_delete<4096>() : new_delete_array<4096>();
        else if (n == 262144) array ? new_array_delete<262144>() : new_delete_array<262144>();
        else return 2;
    } else if (IS("cpp_sized_delete")) {
        void *o = ::operator new(n);
        ::operator delete(o, 4 * n);
    } else if (IS("huge_malloc")) {
        if (refused(malloc(SIZE_MAX))) return 1;
    } else if (IS("huge_malloc_half")) {
        if (refused(malloc(SIZE_MAX / 2 + 1))) return 1;
    } else if (IS("huge_calloc")) {
        if (refused(calloc(SIZE_MAX / 8, 16))) return 1;
    } else if (IS("huge_realloc")) {
        if (refused(realloc(malloc(24), SIZE_MAX - 4096))) return 1;
    } else if (IS("huge_aligned")) {
        if (refused(aligned_alloc(4096, SIZE_MAX - 4095))) return 1;
    } else if (IS("exec_heap")) {
        /* Heap memory must not be executable: copy a `ret` there and call it. */
#if defined(__x86_64__) || defined(__i386__)
        p[0] = (char)0xc3;
#elif defined(__aarch64__)
        memcpy(p, "\xc0\x03\x5f\xd6", 4);
#endif
        __builtin___clear_cache(p, p + 4);
        ((void (*)(void))(void *)p)();
    } else if (IS("huge_new")) {
        try {
            /* A run-time count, so that the compiler cannot refuse it. */
            volatile size_t count = SIZE_MAX / 4;
            char *c = new char[count];
            sink += (uintptr_t)c;
        } catch (std::bad_alloc &) {
            return refused(NULL);
        }
    } else {
        puts("unknown case");
        return 2;
    }
    churn(n ? n : 24);
    puts("unnoticed");
    return 0;
}
