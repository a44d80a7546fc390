/*
** test_faults.c - the engine when file operations fail.
**
** The workload of workload.h runs while one kind of file operation (write,
** fsync, directory fsync, rename, unlink, open, ftruncate) fails at its Nth
** call, once or at every call from the Nth on, with EIO, with ENOSPC, or
** (writes) as a short write; N runs from 1 until the workload finishes
** without meeting the fault. Every run checks that:
**
**   - each failure is reported as PM_IOERR (EIO, a short write that cannot
**     complete) or PM_FULL (ENOSPC), and a short write that can complete is
**     no failure at all;
**   - once a call failed, nothing more is acknowledged (no commit, no sync)
**     until the store is reopened;
**   - every open in the run, and one after it without faults, finds the
**     content after some commit at or after the last acknowledged one: a
**     prefix of the commits, never a partial or a later-without-earlier one;
**   - on the simulated disk, a power loss after the run keeps every commit
**     known durable (under FULL: every acknowledged one);
**   - no descriptor stays open (the simulator's table, or /proc/self/fd on
**     the real file system) and no memory block stays allocated;
**   - after the reopen the store takes writes again.
**
** The simulated disk (simdisk.h) runs all three sync modes; the real file
** system (through faultio.h, whose open faults hit only creating opens)
** runs FULL.
*/
#include "testutil.h"
#include "faultio.h"
#include "simdisk.h"
#include "failalloc.h"
#include "workload.h"

#include <dirent.h>
#include <sys/stat.h>

#define FAULT_TXNS 16
#define FAULT_SEED 0xFA017u

static char *root_dir, *store_dir;
static sd_disk *disk;                /* the simulated disk of the running case */
static long runs, faults_met;

typedef struct backend {
  const char *name;
  const pm_io *io;
  int simulated;
} backend;

typedef struct fault {
  int kind;                          /* FIO_* */
  int err;                           /* EIO, ENOSPC, or 0 for a short write */
  int sticky;
  long nth;
} fault;

static int setup(void **state) {
  (void)state;
  tu_store_dirs(&root_dir, &store_dir);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  tu_store_dirs_free(&root_dir, &store_dir);
  return 0;
}

static void describe(const fault *f, int sync, char *buf, size_t cap) {
  static const char *kinds[FIO_KINDS] = { "open", "write", "fsync", "dirsync", "rename", "unlink", "ftruncate" };
  snprintf(buf, cap, "sync %d, %s #%ld%s fails with %s", sync, kinds[f->kind], f->nth,
           f->sticky ? " and after" : "", f->err == EIO ? "EIO" : f->err == ENOSPC ? "ENOSPC" : "a short write");
}

/* The simulator's fault hook, driven by faultio's rule and counters. */
static int sim_fault(int kind) {
  static const int fio_kind[SD_F_KINDS] = { FIO_OPEN, FIO_WRITE, FIO_FSYNC, FIO_DIRSYNC,
                                            FIO_RENAME, FIO_UNLINK, FIO_TRUNC };
  if (!fio_hit(fio_kind[kind])) return 0;
  return fio_active.err ? fio_active.err : SD_SHORT;
}

/* Descriptors this process has open. */
static int count_fds(void) {
  DIR *d = opendir("/proc/self/fd");
  assert_non_null(d);
  int n = 0;
  while (readdir(d)) n++;
  closedir(d);
  return n;
}

/* A place for a new store: a fresh simulated disk with its directory, or an
** empty real directory (which the engine creates). */
static void fresh_place(const backend *b) {
  if (!b->simulated) { tu_rmtree(store_dir); return; }
  sd_free(disk);
  disk = sd_new(root_dir);
  sd_use(disk);
  assert_int_equal(mkdir(store_dir, 0755) == 0 || errno == EEXIST, 1);
  assert_int_equal(sd_io()->mkdir(store_dir, 0755), 0);
  assert_int_equal(sd_io()->fsync_dir(root_dir), 0);
}

/* ---- The checks ------------------------------------------------------------- */

static void check_codes(const wl_run *r, const fault *f, const char *what) {
  unsigned expected = 1u << (f->err == ENOSPC ? PM_FULL : PM_IOERR);
  if (f->err == 0 && !f->sticky && r->failures)
    fail_msg("%s: a short write that could complete failed: %s", what, r->last_err.msg);
  if (r->codes & ~expected)
    fail_msg("%s: failed with codes %#x, expected only %#x (last: %s)", what, r->codes, expected, r->last_err.msg);
  if (r->late_acks) fail_msg("%s: %d acknowledgements after a failure", what, r->late_acks);
  if (r->lost) fail_msg("%s: an open found a state that is not a prefix of the commits", what);
}

/* Simulated disk: a power loss now must keep everything known durable. */
static void check_power_loss(const wl_run *r, const backend *b, const char *what) {
  sd_policy lose = { .data = SD_KEEP_NONE, .dirs = SD_KEEP_NONE };
  sd_disk *c = sd_crash(disk, &lose);
  sd_use(c);
  pm_options o;
  wl_options(r->env, &o);
  o.io = b->io;
  pm_store *s;
  pm_err err;
  if (pm_store_open(store_dir, &o, &s, &err)) fail_msg("%s: no open after a power loss: %s", what, err.msg);
  uint64_t fp = 0;
  assert_int_equal(wl_store_fp(s, &fp, NULL), PM_OK);
  assert_int_equal(pm_store_close(s, NULL), PM_OK);
  sd_use(disk);
  sd_free(c);
  if (wl_match(r, fp, WL_NEVER - 1, 0) < 0) {
    char why[300];
    wl_explain(r, fp, WL_NEVER - 1, 0, why, sizeof why);
    fail_msg("%s: after a power loss, %s", what, why);
  }
}

/* Reopen without faults (a restart that lost nothing): the store holds a
** prefix of the commits with every acknowledged one, and takes writes. */
static void check_reopen(wl_run *r, const char *what) {
  int failures = r->failures;
  wl_run_step(r, WL_OPEN);
  if (r->failures != failures) fail_msg("%s: reopen failed: %s", what, r->last_err.msg);
  if (r->lost) fail_msg("%s: the reopened store holds a state that is not a prefix of the commits", what);
  size_t n = r->n;
  wl_run_step(r, WL_TXN);
  wl_run_step(r, WL_CLOSE);
  if (r->failures != failures || r->n != n + 1 || r->e[n].acked == WL_NEVER)
    fail_msg("%s: the reopened store takes no writes: %s", what, r->last_err.msg);
}

/* Run the workload with fault f and check everything. Returns 1 if the
** fault was met (so the next N is worth trying). */
static int run_with_fault(const backend *b, int sync, const fault *f) {
  char what[160];
  describe(f, sync, what, sizeof what);
  int fds = count_fds();
  long blocks = fa_live();
  fresh_place(b);
  wl_env env = { store_dir, b->io, sync, -1, NULL };
  wl_plan plan;
  wl_plan_standard(&plan, sync, FAULT_TXNS);
  wl_run r;
  wl_run_init(&r, &env, FAULT_SEED);
  fio_reset();
  fio_arm(f->kind, f->nth, f->sticky, f->err);
  if (b->simulated) sd_set_fault(sim_fault);
  wl_run_plan(&r, &plan);
  int met = fio_failures > 0;
  fio_reset();
  sd_set_fault(NULL);
  check_codes(&r, f, what);
  if (b->simulated && sd_open_fds(disk)) fail_msg("%s: %d descriptors left open", what, sd_open_fds(disk));
  if (!b->simulated && count_fds() != fds) fail_msg("%s: %d descriptors leaked", what, count_fds() - fds);
  if (fa_live() != blocks) fail_msg("%s: %ld memory blocks left allocated", what, fa_live() - blocks);
  if (b->simulated) check_power_loss(&r, b, what);
  check_reopen(&r, what);
  wl_run_free(&r);
  runs++;
  faults_met += met;
  return met;
}

/* Every kind of call, every error, once and sticky, N = 1.. until unharmed. */
static void fault_matrix(const backend *b, int sync) {
  static const int kinds[] = { FIO_WRITE, FIO_FSYNC, FIO_DIRSYNC, FIO_RENAME, FIO_UNLINK, FIO_OPEN, FIO_TRUNC };
  static const int errs[] = { EIO, ENOSPC, 0 };
  long before = runs;
  uint64_t t0 = pm_now_ns();
  for (size_t k = 0; k < sizeof kinds / sizeof *kinds; k++)
    for (size_t e = 0; e < 3; e++)
      for (int sticky = 0; sticky < 2; sticky++) {
        if (errs[e] == 0 && kinds[k] != FIO_WRITE) continue;
        fault f = { kinds[k], errs[e], sticky, 1 };
        while (run_with_fault(b, sync, &f)) f.nth++;
      }
  printf("faults on %s, sync=%d: %ld runs, %.1f s\n", b->name, sync, runs - before,
         (double)(pm_now_ns() - t0) / 1e9);
}

/* The matrix on the simulated disk under one sync mode. */
static void simulated_matrix(int sync) {
  backend b = { "the simulated disk", sd_io(), 1 };
  fault_matrix(&b, sync);
}

static void test_faults_sim_full(void **state) { (void)state; simulated_matrix(PM_SYNC_FULL); }
static void test_faults_sim_normal(void **state) { (void)state; simulated_matrix(PM_SYNC_NORMAL); }
static void test_faults_sim_off(void **state) { (void)state; simulated_matrix(PM_SYNC_OFF); }

static void test_faults_real_full(void **state) {
  (void)state;
  backend b = { "the real file system", fio_io(), 0 };
  fault_matrix(&b, PM_SYNC_FULL);
}

int main(void) {
  fa_install();
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(test_faults_sim_full, setup, teardown),
    cmocka_unit_test_setup_teardown(test_faults_sim_normal, setup, teardown),
    cmocka_unit_test_setup_teardown(test_faults_sim_off, setup, teardown),
    cmocka_unit_test_setup_teardown(test_faults_real_full, setup, teardown),
  };
  int failed = cmocka_run_group_tests(tests, NULL, NULL);
  printf("faults: %ld runs, %ld met their fault\n", runs, faults_met);
  sd_free(disk);
  return failed;
}
