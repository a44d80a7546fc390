/*
** testutil.h - shared helpers for the engine's cmocka unit tests.
*/
#ifndef PM_TESTUTIL_H
#define PM_TESTUTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <ftw.h>

#include "common.h"

/* Make a fresh temporary directory; returns a static-lifetime string the
** caller frees with free(). */
static inline char *tu_mkdtemp(void) {
  const char *base = getenv("TMPDIR");
  char tmpl[512];
  snprintf(tmpl, sizeof tmpl, "%s/pmtest.XXXXXX", base ? base : "/tmp");
  char *d = mkdtemp(tmpl);
  assert_non_null(d);
  return strdup(d);
}

static inline int tu_rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb; (void)flag; (void)ftw;
  return remove(p);
}

/* Remove a directory tree. */
static inline void tu_rmtree(const char *dir) {
  nftw(dir, tu_rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

/* For a test's setup: a fresh temporary directory (*root) and the path of a
** store inside it (*store, "<root>/store", not created). */
static inline void tu_store_dirs(char **root, char **store) {
  *root = tu_mkdtemp();
  *store = malloc(strlen(*root) + 16);
  assert_non_null(*store);
  sprintf(*store, "%s/store", *root);
}

/* For its teardown: remove the directory and free both paths. */
static inline void tu_store_dirs_free(char **root, char **store) {
  tu_rmtree(*root);
  free(*root);
  free(*store);
  *root = *store = NULL;
}

/* Deterministic pseudo-random numbers (xorshift64*), seedable per test. */
static inline uint64_t tu_rand(uint64_t *state) {
  uint64_t x = *state;
  x ^= x >> 12; x ^= x << 25; x ^= x >> 27;
  *state = x;
  return x * 0x2545F4914F6CDD1DULL;
}

/* Run only the tests whose names match PM_TEST_FILTER (a cmocka pattern,
** '*' and '?' allowed), when it is set: `make test-tsan` runs the threaded
** tests of a suite that would be too slow whole under ThreadSanitizer. */
static inline void tu_filter_from_env(void) {
  const char *f = getenv("PM_TEST_FILTER");
  if (f && *f) cmocka_set_test_filter(f);
}

#endif
