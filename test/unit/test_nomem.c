/*
** test_nomem.c - the engine when memory runs out.
**
** Through pm_set_allocator (failalloc.h), the Nth allocation fails, once or
** at every allocation from the Nth on, for N = 1.. until the operation
** succeeds without meeting the failure, during: opening a new store,
** opening a populated one, recovery of a store with a torn tail, a
** transaction with its commit, point reads and iteration. Every time:
**
**   - each call answers PM_OK or PM_NOMEM, nothing else, and never crashes;
**   - what an operation that succeeded returned is right;
**   - once the store is closed, no allocated block is left (the allocator
**     counts them; ASan's leak checker watches too);
**   - reopened without failures, the store holds what it should: the same
**     content, or for a commit that failed, the content before or after it
**     (after it if the commit was acknowledged), and it takes writes.
**
** Stores live on the simulated disk (simdisk.h), which does not allocate
** through the engine's allocator.
*/
#include "testutil.h"
#include "simdisk.h"
#include "failalloc.h"
#include "workload.h"

#include <sys/stat.h>

#define TXNS 23
#define SEED 0xA110Cu

static char *root_dir, *store_dir;
static sd_disk *populated;            /* a store closed cleanly after the workload */
static wl_model populated_model;
static uint64_t populated_fp;
static sd_disk *torn;                 /* a store whose log ends in a torn write */
static uint64_t torn_fp;              /* what recovering it finds */
static long runs;

/* An operation to starve of memory, on a store held in *s (it may open or
** close it). Returns the first error code its calls gave, or PM_OK. */
typedef int (*starved_fn)(pm_store **s);

static pm_store *open_here(int64_t cache_size, int *rc) {
  wl_env env = { store_dir, sd_io(), PM_SYNC_NORMAL, cache_size, NULL };
  pm_options o;
  wl_options(&env, &o);
  pm_store *s = NULL;
  pm_err err;
  *rc = pm_store_open(store_dir, &o, &s, &err);
  return *rc == PM_OK ? s : NULL;
}

/* The fingerprint of the store on d, opened and closed without failures. */
static uint64_t content_of(sd_disk *d) {
  sd_use(d);
  int rc;
  pm_store *s = open_here(-1, &rc);
  if (!s) fail_msg("the store does not open: %s", pm_code_name(rc));
  uint64_t fp = 0;
  assert_int_equal(wl_store_fp(s, &fp, NULL), PM_OK);
  assert_int_equal(pm_store_close(s, NULL), PM_OK);
  return fp;
}

/* A fresh disk with an empty store directory, in use. */
static sd_disk *empty_disk(void) {
  sd_disk *d = sd_new(root_dir);
  sd_use(d);
  assert_int_equal(sd_io()->mkdir(store_dir, 0755), 0);
  assert_int_equal(sd_io()->fsync_dir(root_dir), 0);
  return d;
}

/* Run the workload under NORMAL; with keep_open, the disk is taken while
** the store is still open, its last commits unsynced. */
static sd_disk *workload_disk(int keep_open, wl_model *model) {
  sd_disk *d = empty_disk();
  wl_env env = { store_dir, sd_io(), PM_SYNC_NORMAL, -1, NULL };
  wl_plan plan;
  wl_plan_standard(&plan, PM_SYNC_NORMAL, TXNS);
  plan.n -= keep_open;                         /* the last step is the close */
  wl_run r;
  wl_run_init(&r, &env, SEED);
  wl_run_plan(&r, &plan);
  assert_int_equal(r.failures, 0);
  *model = r.cur;
  sd_disk *copy = keep_open ? sd_clone(d) : NULL;
  wl_run_free(&r);
  if (!keep_open) return d;
  sd_free(d);
  return copy;
}

static int group_setup(void **state) {
  (void)state;
  root_dir = tu_mkdtemp();
  store_dir = malloc(strlen(root_dir) + 16);
  sprintf(store_dir, "%s/store", root_dir);
  assert_int_equal(mkdir(store_dir, 0755), 0);
  populated = workload_disk(0, &populated_model);
  populated_fp = wl_model_fp(&populated_model);
  wl_model unused;
  sd_disk *open = workload_disk(1, &unused);
  size_t last = sd_unsynced(open) - 2;         /* the last log write: only the shm map comes after */
  sd_policy tear = { SD_KEEP_TORN, last, 512, 1, 1, SD_KEEP_ALL, 7 };
  assert_true(sd_tear_points(open, last, 512) > 0);
  torn = sd_crash(open, &tear);
  sd_free(open);
  torn_fp = content_of(torn);
  assert_int_not_equal(torn_fp, populated_fp);  /* the tear cost the last commit */
  assert_int_equal(fa_live(), 0);
  return 0;
}

static int group_teardown(void **state) {
  (void)state;
  sd_free(populated);
  sd_free(torn);
  tu_rmtree(root_dir);
  free(root_dir);
  free(store_dir);
  return 0;
}

/* ---- The sweep ------------------------------------------------------------ */

/* Fail the Nth allocation of op on a copy of base, for N = 1.. until op
** meets no failure; after each run check codes, leaks and what reopening
** finds (accept(fp) says whether it may hold that content). */
static void starve(sd_disk *base, starved_fn op, int (*accept)(uint64_t fp, int rc), const char *what) {
  long refused = 0;
  for (int sticky = 0; sticky < 2; sticky++) {
    for (long n = 1;; n++) {
      sd_disk *d = sd_clone(base);
      sd_use(d);
      pm_store *s = NULL;
      fa_arm(n, sticky);
      int rc = op(&s);
      long met = fa_failed();
      fa_disarm();
      if (s) {
        int crc = pm_store_close(s, NULL);
        if (crc != PM_OK && crc != PM_NOMEM) fail_msg("%s, allocation %ld: close said %s", what, n, pm_code_name(crc));
      }
      if (rc != PM_OK && rc != PM_NOMEM) fail_msg("%s, allocation %ld%s: %s", what, n, sticky ? " and after" : "", pm_code_name(rc));
      if (!met && rc != PM_OK) fail_msg("%s failed without an allocation failing", what);
      if (fa_live()) fail_msg("%s, allocation %ld%s: %ld blocks leaked", what, n, sticky ? " and after" : "", fa_live());
      uint64_t fp = content_of(d);
      if (!accept(fp, rc)) fail_msg("%s, allocation %ld%s: reopened, the store holds the wrong content", what, n, sticky ? " and after" : "");
      sd_free(d);
      runs++;
      refused += rc == PM_NOMEM;
      if (!met) break;
    }
  }
  if (!refused) fail_msg("%s never reported running out of memory", what);
}

/* ---- Operations ----------------------------------------------------------- */

static int op_open(pm_store **s) {
  int rc;
  *s = open_here(-1, &rc);
  return rc;
}

/* Open without failures, then starve only the calls that follow. */
static pm_store *open_unstarved(int64_t cache_size) {
  long nth = fa_nth;
  int sticky = fa_sticky, rc;
  fa_disarm();
  pm_store *s = open_here(cache_size, &rc);
  assert_int_equal(rc, PM_OK);
  fa_arm(nth, sticky);
  return s;
}

static int op_read_all(pm_store **s) {
  *s = open_unstarved(0);                      /* no cache: every read allocates */
  for (int i = 0; i < WL_KEYS; i++) {
    char name[16];
    pm_key k = wl_key(i, name);
    pm_value *v = NULL;
    pm_meta m;
    int rc = pm_store_get(*s, NULL, &k, &v, &m, NULL);
    if (rc == PM_OK && (v->len != m.vlen || v->type != m.vtype)) rc = PM_CORRUPT;
    pm_value_unref(v);
    if (rc != PM_OK && rc != PM_NOTFOUND) return rc;
  }
  return PM_OK;
}

static int op_iterate(pm_store **s) {
  *s = open_unstarved(0);
  uint64_t fp = 0;
  int rc = wl_store_fp(*s, &fp, NULL);
  return rc == PM_OK && fp != populated_fp ? PM_CORRUPT : rc;
}

/* The committed writes of op_commit, drawn once. */
static wl_op commit_ops[6];
static uint64_t after_commit_fp;

static int op_commit(pm_store **s) {
  *s = open_unstarved(-1);
  pm_txn *t = NULL;
  int rc = pm_txn_begin(*s, &t, NULL);
  if (rc) return rc;
  rc = wl_exec_ops(t, commit_ops, 6, NULL);
  if (rc) { pm_txn_abort(t); return rc; }
  return pm_txn_commit(t, NULL);
}

/* ---- What reopening may find ----------------------------------------------------- */

static int is_empty(uint64_t fp, int rc) { (void)rc; return fp == 0; }
static int is_populated(uint64_t fp, int rc) { (void)rc; return fp == populated_fp; }
static int is_recovered(uint64_t fp, int rc) { (void)rc; return fp == torn_fp; }
static int is_before_or_after(uint64_t fp, int rc) {
  return fp == after_commit_fp || (rc != PM_OK && fp == populated_fp);
}

/* ---- Tests ------------------------------------------------------------------------- */

static void test_nomem_open_new(void **state) {
  (void)state;
  sd_disk *d = empty_disk();
  starve(d, op_open, is_empty, "opening a new store");
  sd_free(d);
}

static void test_nomem_open_populated(void **state) {
  (void)state;
  starve(populated, op_open, is_populated, "opening a populated store");
}

static void test_nomem_recovery(void **state) {
  (void)state;
  starve(torn, op_open, is_recovered, "recovering a torn log");
}

static void test_nomem_commit(void **state) {
  (void)state;
  wl_model m = populated_model;
  uint64_t rng = SEED;
  wl_draw_ops(&rng, &m, commit_ops, 6);
  after_commit_fp = wl_model_fp(&m);
  starve(populated, op_commit, is_before_or_after, "a commit");
}

static void test_nomem_get(void **state) {
  (void)state;
  starve(populated, op_read_all, is_populated, "point reads");
}

static void test_nomem_iterate(void **state) {
  (void)state;
  starve(populated, op_iterate, is_populated, "iteration");
}

int main(void) {
  fa_install();
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_nomem_open_new),
    cmocka_unit_test(test_nomem_open_populated),
    cmocka_unit_test(test_nomem_recovery),
    cmocka_unit_test(test_nomem_commit),
    cmocka_unit_test(test_nomem_get),
    cmocka_unit_test(test_nomem_iterate),
  };
  int failed = cmocka_run_group_tests(tests, group_setup, group_teardown);
  printf("allocation failures: %ld runs\n", runs);
  return failed;
}
