// How many cache lines does one core keep in flight when a loop does work between its reads?
// Reads a 256 MiB buffer a 64-byte line at a time and does K independent vector operations per line
// (K fixed at compile time). If the hardware prefetchers ran ahead of the reads, the bandwidth would
// stay flat as K grows until the loop became compute-bound; if it falls as 1/K, the lines in flight
// are only those the out-of-order window holds — the case `touch` in src/quant/simd128.rs answers.
//
//   for k in 0 16 32 64 128; do cc -O2 -DK=$k tools/mlp-probe.c -o /tmp/mlp-probe && /tmp/mlp-probe; done
#include <immintrin.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#ifndef K
#define K 0
#endif

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

// one independent operation on each of eight registers (no loads, no dependency on the data)
#define OP(r) __asm__ volatile("pxor %%xmm8, %%" #r : : : #r);
#define OPS8 OP(xmm9) OP(xmm10) OP(xmm11) OP(xmm12) OP(xmm13) OP(xmm14) OP(xmm15) OP(xmm7)

int main(void) {
  size_t n = (size_t)256 << 20;
  uint8_t *b = aligned_alloc(64, n);
  for (size_t i = 0; i < n; i++) b[i] = (uint8_t)i;
  double best = 1e9;
  __m128i acc = _mm_setzero_si128();
  for (int rep = 0; rep < 3; rep++) {
    double t = now();
    for (size_t i = 0; i < n; i += 64) {
      __m128i v = _mm_add_epi32(_mm_add_epi32(_mm_load_si128((void *)(b + i)), _mm_load_si128((void *)(b + i + 16))),
                                _mm_add_epi32(_mm_load_si128((void *)(b + i + 32)), _mm_load_si128((void *)(b + i + 48))));
      acc = _mm_add_epi32(acc, v);
      for (int k = 0; k < K / 8; k++) { OPS8 }
    }
    t = now() - t;
    if (t < best) best = t;
  }
  printf("K=%d: %.2f GB/s (%d)\n", K, n / best / 1e9, _mm_cvtsi128_si32(acc) & 1);
  return 0;
}
