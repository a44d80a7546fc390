/*
** failalloc.h - an allocator for pm_set_allocator() that counts the blocks
** the engine holds and can fail its Nth allocation: once, or every one from
** the Nth on. Install it before the engine allocates anything, so that
** every pm_free() meets a block it counted; then fa_live() == 0 whenever no
** store is open proves that nothing leaked. (test_sqlite_nomem.c drives
** SQLite's allocator with the same counter: fa_refuse, fa_arm, fa_live.)
*/
#ifndef PM_FAILALLOC_H
#define PM_FAILALLOC_H

#include <stdlib.h>

#include "common.h"

static long fa_calls;        /* allocations asked for since fa_arm */
static long fa_nth;          /* fail the nth (1-based); 0: none */
static int fa_sticky;        /* ... and every later one */
static long fa_failures;     /* allocations refused since fa_arm */
static long fa_blocks;       /* blocks the engine holds */

static inline long fa_load(long *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
static inline void fa_add(long *p, long v) { __atomic_add_fetch(p, v, __ATOMIC_RELAXED); }

/* Count an allocation; 1 if it must fail. */
static inline int fa_refuse(void) {
  long n = __atomic_add_fetch(&fa_calls, 1, __ATOMIC_RELAXED);
  long nth = fa_load(&fa_nth);
  int refuse = nth > 0 && (fa_sticky ? n >= nth : n == nth);
  if (refuse) fa_add(&fa_failures, 1);
  return refuse;
}

static void *fa_malloc(size_t n) {
  if (fa_refuse()) return NULL;
  void *p = malloc(n);
  if (p) fa_add(&fa_blocks, 1);
  return p;
}

static void *fa_realloc(void *p, size_t n) {
  if (fa_refuse()) return NULL;     /* p stays valid, as realloc promises */
  return realloc(p, n);
}

static void fa_free(void *p) {
  if (!p) return;
  fa_add(&fa_blocks, -1);
  free(p);
}

static inline void fa_install(void) {
  static const pm_allocator a = { fa_malloc, fa_realloc, fa_free };
  pm_set_allocator(&a);
}

/* Fail the nth allocation from now (and with sticky every later one). */
static inline void fa_arm(long nth, int sticky) {
  __atomic_store_n(&fa_nth, 0, __ATOMIC_RELAXED);
  fa_sticky = sticky;
  __atomic_store_n(&fa_calls, 0, __ATOMIC_RELAXED);
  __atomic_store_n(&fa_failures, 0, __ATOMIC_RELAXED);
  __atomic_store_n(&fa_nth, nth, __ATOMIC_RELAXED);
}

static inline void fa_disarm(void) { __atomic_store_n(&fa_nth, 0, __ATOMIC_RELAXED); }
static inline long fa_failed(void) { return fa_load(&fa_failures); }
static inline long fa_live(void) { return fa_load(&fa_blocks); }

#endif /* PM_FAILALLOC_H */
