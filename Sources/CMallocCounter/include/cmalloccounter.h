#pragma once
#include <stdint.h>

/// Heap allocations (malloc, calloc, realloc, posix_memalign, aligned_alloc) made by this
/// process since it started. Linked only into the micro-benchmark: its malloc family wraps
/// glibc's (__libc_*) and counts, so "0 allocations per frame" is measured, not assumed.
uint64_t cmc_allocations(void);
