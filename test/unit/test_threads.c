/*
** test_threads.c - threads on one engine, at its API: persistmap_check's
** scan (pm_store_check) and figures (pm_store_stats) running while another
** thread writes, rolls segments over and compacts. The segment table grows
** and is reordered under them: they must neither read freed memory (run
** under ASan and TSan by make test-asan / test-tsan) nor report a problem
** that is not there.
*/
#include "testutil.h"

#include <pthread.h>

#include "store.h"

static char *dir_path;
static char *tmp_root;

static int setup(void **state) {
  (void)state;
  tu_store_dirs(&tmp_root, &dir_path);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  tu_store_dirs_free(&tmp_root, &dir_path);
  return 0;
}

static pm_store *store;
static int stop;                      /* atomic */
static long checks, problems;         /* written by the checker, read after join */
static char first_problem[400];

static void *checker(void *arg) {
  (void)arg;
  while (!__atomic_load_n(&stop, __ATOMIC_ACQUIRE)) {
    char *report = NULL;
    pm_err err;
    int rc = pm_store_check(store, &report, &err);
    const char *what = rc ? err.msg : report;
    if (rc || strcmp(report, "ok") != 0) {
      if (!problems++) snprintf(first_problem, sizeof first_problem, "%s", what);
    }
    pm_free(report);
    pm_stats st;
    if (pm_store_stats(store, &st, &err) != PM_OK || st.keys > 200) problems++;
    checks++;
  }
  return NULL;
}

static void test_check_while_writing_and_compacting(void **state) {
  (void)state;
  pm_options o;
  pm_options_init(&o);
  o.create = 1;
  o.segment_size = 64 << 10;
  o.auto_shrink = 0;
  pm_err err;
  assert_int_equal(pm_store_open(dir_path, &o, &store, &err), PM_OK);
  char v[500];
  memset(v, 'x', sizeof v);
  __atomic_store_n(&stop, 0, __ATOMIC_RELEASE);
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, checker, NULL), 0);
  for (int round = 0; round < 25; round++) {
    for (int i = 0; i < 300; i++) {        /* about two segments a round */
      char k[32];
      snprintf(k, sizeof k, "k%d", i % 200);
      pm_key key = { PM_TEXT, (uint32_t)strlen(k), (const uint8_t *)k };
      if (pm_store_put(store, &key, PM_BLOB, v, sizeof v, &err)) fail_msg("put: %s", err.msg);
    }
    char *summary = NULL;
    if (pm_store_shrink(store, &summary, &err)) fail_msg("shrink: %s", err.msg);
    pm_free(summary);
  }
  __atomic_store_n(&stop, 1, __ATOMIC_RELEASE);
  pthread_join(th, NULL);
  print_message("%ld checks while writing and compacting\n", checks);
  if (problems) fail_msg("%ld problems reported, the first: %s", problems, first_problem);
  assert_true(checks > 0);
  char *report = NULL;
  assert_int_equal(pm_store_check(store, &report, &err), PM_OK);
  assert_string_equal(report, "ok");
  pm_free(report);
  assert_int_equal(pm_store_close(store, NULL), PM_OK);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(test_check_while_writing_and_compacting, setup, teardown),
  };
  tu_filter_from_env();
  return cmocka_run_group_tests_name("threads", tests, NULL, NULL);
}
