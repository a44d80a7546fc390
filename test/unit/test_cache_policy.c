/*
** test_cache_policy.c - the cache's miss-ratio goals, as a unit test.
**
** Runs the quick variant of the trace-driven benchmark (test/bench/traces.h:
** 100,000 keys, five traces, three cache sizes) and asserts relations only,
** never times: on every trace and size pm_cache misses at most one
** percentage point more than LRU, Belady's OPT misses no more than any
** policy, pm_cache holds exactly as many values as its byte capacity was
** sized for, and on the scan trace pm_cache has at most 0.8 x LRU's misses
** outside the scans. For the known shortfall listed in traces.h (1%) it
** must stay at its measured level instead, and the scans must still cost
** it almost nothing there (its misses outside the scans at most 1% above
** its misses on the same accesses with the scans removed). The traces are
** seeded, so every run sees the same numbers.
*/
#include "testutil.h"

#include "../bench/traces.h"

typedef struct verdict {
  int cells;
  int failed;
} verdict;

/* tr_run_all's callback: check one cell, printing what failed. */
static void check_cell(const tr_cell *cell, void *arg) {
  verdict *v = arg;
  char why[1024];
  v->cells++;
  int failed = tr_check(cell, TR_KNOWN, why, sizeof why);
  if (cell->held != cell->entries) {
    snprintf(why + strlen(why), sizeof why - strlen(why),
             "%s at %.0f%%: pm_cache held %llu values, sized for %u\n", cell->spec->name,
             cell->size * 100, (unsigned long long)cell->held, cell->entries);
    failed++;
  }
  if (failed) print_error("%s", why);
  v->failed += failed;
}

/* Every trace at every size meets the goals (less the known shortfalls). */
static void test_policy_goals(void **state) {
  (void)state;
  verdict v = { 0, 0 };
  tr_run_all(&TR_QUICK, check_cell, &v);
  assert_int_equal(v.cells, (int)(TR_NSPECS * TR_NSIZES));
  assert_int_equal(v.failed, 0);
}

/* The reference policies themselves behave: on a trace that cycles through
** ten keys with room for five, LRU misses every access while OPT keeps five
** keys for good and never admits the others (ten misses in the first cycle,
** then five a cycle, the least any policy can do), and so does perfect LFU
** (a tie in counts keeps the held key); with room for all ten all three
** miss only the first time. Perfect LFU keeps counting a key it evicted. */
static void test_reference_policies(void **state) {
  (void)state;
  static const tr_spec loop = { "loop", TR_ZIPF, 0 };
  uint32_t keys[1000];
  uint8_t scan[1000] = { 0 };
  for (int i = 0; i < 1000; i++) keys[i] = (uint32_t)(i % 10);
  tr_trace t = { &loop, 10, 1000, keys, scan, NULL };
  tr_compute_next_use(&t);
  tr_result lru = tr_replay_lru(&t, 5), opt = tr_replay_opt(&t, 5), lfu = tr_replay_lfu(&t, 5);
  assert_int_equal(lru.misses, 1000);
  assert_int_equal(opt.misses, 10 + 99 * 5);
  assert_int_equal(lfu.misses, 10 + 99 * 5);
  tr_result lru_all = tr_replay_lru(&t, 10), opt_all = tr_replay_opt(&t, 10);
  assert_int_equal(lru_all.misses, 10);
  assert_int_equal(opt_all.misses, 10);
  assert_int_equal(tr_replay_lfu(&t, 10).misses, 10);
  free(t.next_use);
  /* room for one: 1 enters on its third read (3 > 2), and 0 comes back on
  ** its fourth, its count kept while it was out: 1 + 3 + 2 misses */
  static const uint32_t seq[] = { 0, 0, 1, 1, 1, 0, 0, 0 };
  tr_trace u = { &loop, 2, 8, (uint32_t *)seq, scan, NULL };
  tr_compute_next_use(&u);
  assert_int_equal(tr_replay_lfu(&u, 1).misses, 1 + 3 + 2);
  free(u.next_use);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_reference_policies),
    cmocka_unit_test(test_policy_goals),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
