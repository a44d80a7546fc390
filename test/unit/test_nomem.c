/*
** test_nomem.c - the engine when memory runs out.
**
** Through pm_set_allocator (failalloc.h), the Nth allocation fails, once or
** at every allocation from the Nth on, for N = 1.. until the operation
** succeeds without meeting the failure, during: opening a new store,
** opening a populated one, recovery of a store with a torn tail, a
** transaction with its commit, point reads, iteration, a compaction and a
** check of a store whose hint file is damaged (which must never say "ok").
** Every time:
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

/* An operation to starve of memory. With open_first >= -1 the store is
** opened (with that cache size) before the failures begin; otherwise run
** opens it. run returns the first error its calls gave, or PM_OK; accept
** says whether a reopened store may hold content fp after run returned rc. */
#define OPENS_ITSELF (-2)
typedef struct starved {
  const char *what;
  int64_t open_first;
  int (*run)(pm_store **s);
  int (*accept)(uint64_t fp, int rc);
} starved;

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
  tu_store_dirs(&root_dir, &store_dir);
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
  tu_store_dirs_free(&root_dir, &store_dir);
  return 0;
}

/* ---- The sweep ------------------------------------------------------------ */

/* Run op on a copy of base with the nth allocation failing; check codes,
** leaks and what reopening finds. Returns op's code; *met says whether an
** allocation failed. */
static int starve_once(sd_disk *base, const starved *op, long n, int sticky, long *met) {
  const char *how = sticky ? " and after" : "";
  sd_disk *d = sd_clone(base);
  sd_use(d);
  int rc = PM_OK;
  pm_store *s = op->open_first == OPENS_ITSELF ? NULL : open_here(op->open_first, &rc);
  assert_int_equal(rc, PM_OK);
  fa_arm(n, sticky);
  rc = op->run(&s);
  *met = fa_failed();
  fa_disarm();
  int crc = s ? pm_store_close(s, NULL) : PM_OK;
  if (rc != PM_OK && rc != PM_NOMEM) fail_msg("%s, allocation %ld%s: %s", op->what, n, how, pm_code_name(rc));
  if (crc != PM_OK && crc != PM_NOMEM) fail_msg("%s, allocation %ld%s: close said %s", op->what, n, how, pm_code_name(crc));
  if (!*met && rc != PM_OK) fail_msg("%s failed though no allocation failed", op->what);
  if (fa_live()) fail_msg("%s, allocation %ld%s: %ld blocks leaked", op->what, n, how, fa_live());
  if (!op->accept(content_of(d), rc))
    fail_msg("%s, allocation %ld%s: reopened, the store holds the wrong content", op->what, n, how);
  sd_free(d);
  runs++;
  return rc;
}

/* Fail the Nth allocation of op, once and then from the Nth on, for
** N = 1.. until op meets no failure. Some run must report PM_NOMEM. */
static void starve(sd_disk *base, const starved *op) {
  long refused = 0;
  for (int sticky = 0; sticky < 2; sticky++) {
    long met = 1;
    for (long n = 1; met; n++) refused += starve_once(base, op, n, sticky, &met) == PM_NOMEM;
  }
  if (!refused) fail_msg("%s never reported running out of memory", op->what);
}

/* ---- Operations ----------------------------------------------------------- */

static int run_open(pm_store **s) {
  int rc;
  *s = open_here(-1, &rc);
  return rc;
}

/* Read every key; what is read must be the populated store's content. */
static int run_read_all(pm_store **s) {
  static uint8_t want[WL_MAX_VALUE];
  for (int i = 0; i < WL_KEYS; i++) {
    const wl_row *row = &populated_model.row[i];
    char name[16];
    pm_key k = wl_key(i, name);
    pm_value *v = NULL;
    int rc = pm_store_get(*s, NULL, &k, &v, NULL, NULL);
    wl_value_bytes(row->vseed, row->vlen, want);
    int right = rc == PM_OK ? row->present && v->len == row->vlen && memcmp(v->data, want, v->len) == 0
                            : !row->present;
    pm_value_unref(v);
    if (rc != PM_OK && rc != PM_NOTFOUND) return rc;
    if (!right) return PM_CORRUPT;
  }
  return PM_OK;
}

static int run_iterate(pm_store **s) {
  uint64_t fp = 0;
  int rc = wl_store_fp(*s, &fp, NULL);
  return rc == PM_OK && fp != populated_fp ? PM_CORRUPT : rc;
}

/* A compaction: the content stays what it was. */
static int run_shrink(pm_store **s) {
  char *summary = NULL;
  int rc = pm_store_shrink(*s, &summary, NULL);
  pm_free(summary);
  return rc;
}

/* The writes of the starved commit, drawn once. */
static wl_op commit_ops[6];
static uint64_t after_commit_fp;

static int run_commit(pm_store **s) {
  pm_txn *t = NULL;
  int rc = pm_txn_begin(*s, &t, NULL);
  if (rc) return rc;
  rc = wl_exec_ops(t, commit_ops, 6, NULL);
  if (rc) { pm_txn_abort(t); return rc; }
  return pm_txn_commit(t, NULL);
}

/* persistmap_check on a store with a damaged hint file: running out of
** memory may stop the check, but it must never report "ok". */
static int run_check(pm_store **s) {
  char *report = NULL;
  int rc = pm_store_check(*s, &report, NULL);
  int said_ok = rc == PM_OK && report && strcmp(report, "ok") == 0;
  pm_free(report);
  return said_ok ? PM_CORRUPT : rc;
}

/* The name of the first hint file in the store directory. */
static int first_hint(void *ctx, const char *name) {
  size_t n = strlen(name);
  if (n > 5 && strcmp(name + n - 5, ".hint") == 0 && !*(char *)ctx) snprintf(ctx, 64, "%s", name);
  return 0;
}

/* A copy of the populated disk with one byte of a hint file flipped. */
static sd_disk *damaged_hint_disk(void) {
  sd_disk *d = sd_clone(populated);
  sd_use(d);
  char name[64] = "", path[4096];
  sd_io()->list_dir(store_dir, first_hint, name);
  assert_true(name[0]);
  snprintf(path, sizeof path, "%s/%s", store_dir, name);
  int fd = sd_io()->open(path, O_RDWR, 0);
  assert_true(fd >= 0);
  uint8_t b;
  assert_int_equal(sd_io()->pread(fd, &b, 1, 40), 1);
  b ^= 0x5a;
  assert_int_equal(sd_io()->pwrite(fd, &b, 1, 40), 1);
  assert_int_equal(sd_io()->fsync(fd), 0);
  sd_io()->close(fd);
  return d;
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
  static const starved op = { "opening a new store", OPENS_ITSELF, run_open, is_empty };
  sd_disk *d = empty_disk();
  starve(d, &op);
  sd_free(d);
}

static void test_nomem_open_populated(void **state) {
  (void)state;
  static const starved op = { "opening a populated store", OPENS_ITSELF, run_open, is_populated };
  starve(populated, &op);
}

static void test_nomem_recovery(void **state) {
  (void)state;
  static const starved op = { "recovering a torn log", OPENS_ITSELF, run_open, is_recovered };
  starve(torn, &op);
}

static void test_nomem_commit(void **state) {
  (void)state;
  static const starved op = { "a commit", -1, run_commit, is_before_or_after };
  wl_model m = populated_model;
  uint64_t rng = SEED;
  wl_draw_ops(&rng, &m, commit_ops, 6);
  after_commit_fp = wl_model_fp(&m);
  starve(populated, &op);
}

static void test_nomem_get(void **state) {
  (void)state;
  static const starved op = { "point reads", 0, run_read_all, is_populated };   /* no cache: */
  starve(populated, &op);                                                       /* every read allocates */
}

static void test_nomem_shrink(void **state) {
  (void)state;
  static const starved op = { "a compaction", -1, run_shrink, is_populated };
  starve(populated, &op);
}

static void test_nomem_check(void **state) {
  (void)state;
  static const starved op = { "a check of a damaged store", -1, run_check, is_populated };
  sd_disk *d = damaged_hint_disk();
  starve(d, &op);
  sd_free(d);
}

static void test_nomem_iterate(void **state) {
  (void)state;
  static const starved op = { "iteration", 0, run_iterate, is_populated };
  starve(populated, &op);
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
    cmocka_unit_test(test_nomem_shrink),
    cmocka_unit_test(test_nomem_check),
  };
  int failed = cmocka_run_group_tests(tests, group_setup, group_teardown);
  printf("allocation failures: %ld runs\n", runs);
  return failed;
}
