/*
** test_crash.c - the engine survives a power loss at every file operation.
**
** The workload of workload.h (transactions with puts, deletes, overwrites,
** savepoints and rollbacks, values of 0 bytes to 10 KiB, 64 KiB segments
** that roll over, compactions, a reopen) runs on the simulated disk of
** simdisk.h under each sync mode. A first run records the history and the
** number N of mutating file operations. Then, for k = 0..N, the run is
** repeated, the disk taken as it was after k operations, and turned into
** many crash states: unsynced data dropped, kept, kept up to each prefix,
** random subsets of writes or of their sectors and pages, one write torn
** at a 512 or 4096-byte boundary with zeros or garbage after; directory
** operations kept or dropped. On a copy of each state:
**
**   - the store opens (damage after the last fsync is a torn tail, never
**     corruption);
**   - it holds the content after some commit between the last one known
**     durable and the last one issued: under FULL every acknowledged commit
**     is there; when every write survived, every acknowledged one in any
**     mode; a deleted key never comes back (content is compared whole);
**   - commits made on it right after recovery (one under FULL, one not
**     synced) come through a further power loss as they should: nothing
**     stale left by recovery resurrects or breaks anything;
**   - recovery itself, crashed at each of its operations and followed by
**     another open, finds the same content (for a sample of the states).
**
** The quick run checks well over 10,000 states. PM_SOAK=n runs n rounds
** with random seeds (printed; PM_SEED=s replays one round) and crashes the
** recovery of every state. A last test checks that this harness notices a
** disk whose fsync lies.
*/
#include "testutil.h"
#include "simdisk.h"
#include "workload.h"

#include <malloc.h>
#include <sys/stat.h>
#include <time.h>

#include "store.h"

#define TXNS 48               /* transactions per run */
#define PREFIXES 8            /* prefix states per crash point, at most */
#define RANDOMS 10            /* random-subset states per crash point */
#define SETUP_OPS 2           /* the store directory's mkdir and fsync */

static char *root_dir;        /* a real directory: the engine stat()s the store path */
static char *store_dir;
static sd_disk *run_disk;     /* the disk the workload runs on (its clock) */
static int soak_rounds;       /* 0: the quick run */
static long states_checked;   /* over every round and mode */
static int sweep_every;       /* crash the recovery of one state in this many */

/* What a round checked, and its first violation. */
typedef struct tally {
  long points, states, sweeps, sweep_states;
  int violations;
  char why[768];
} tally;

static int setup(void **state) {
  (void)state;
  tu_store_dirs(&root_dir, &store_dir);
  assert_int_equal(mkdir(store_dir, 0755), 0);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  tu_store_dirs_free(&root_dir, &store_dir);
  return 0;
}

static long disk_clock(void) { return sd_ops(run_disk); }

/* Record a violation (the first one's message is kept). Returns 0. */
static int violation(tally *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int violation(tally *t, const char *fmt, ...) {
  if (t->violations++ == 0) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->why, sizeof t->why, fmt, ap);
    va_end(ap);
  }
  return 0;
}

static void describe(const sd_policy *p, char *buf, size_t cap) {
  static const char *keep[] = { "none", "all", "prefix", "random", "torn" };
  snprintf(buf, cap, "data=%s prefix=%zu unit=%u tear=%u garbage=%d dirs=%s seed=%llu", keep[p->data],
           p->prefix, p->unit, p->tear, p->garbage, keep[p->dirs], (unsigned long long)p->seed);
}

/* ---- Running the workload ---------------------------------------------------- */

/* A fresh simulated disk with an empty, durable store directory, in use. */
static sd_disk *fresh_disk(void) {
  sd_disk *d = sd_new(root_dir);
  sd_use(d);
  assert_int_equal(sd_io()->mkdir(store_dir, 0755), 0);
  assert_int_equal(sd_io()->fsync_dir(root_dir), 0);
  assert_int_equal(sd_ops(d), SETUP_OPS);
  return d;
}

/* Run plan on a fresh disk with io (the simulator's, or a wrapper of it).
** The run must be clean. Returns the disk; with freeze >= 0, *frozen gets
** the disk as it was after that many operations, and the run stops at the
** end of the step during which it was taken. */
static sd_disk *run_plan(const wl_plan *plan, wl_env *env, uint64_t seed, long freeze,
                         sd_disk **frozen, wl_run *out) {
  run_disk = fresh_disk();
  if (freeze >= 0) sd_freeze_at(run_disk, freeze);
  wl_run_init(out, env, seed);
  for (size_t i = 0; i < plan->n && !(freeze >= 0 && sd_has_frozen(run_disk)); i++)
    wl_run_step(out, plan->step[i]);
  if (out->failures || out->lost)
    fail_msg("the workload itself failed (%d failures, %d lost): %s", out->failures, out->lost,
             out->last_err.msg);
  if (freeze >= 0) *frozen = sd_frozen(run_disk);
  return run_disk;
}

/* ---- Opening crash states ---------------------------------------------------- */

static pm_store *open_on(sd_disk *d, int sync, pm_err *err) {
  wl_env env = { store_dir, NULL, sync, -1, NULL };
  env.io = sd_io();
  pm_options o;
  wl_options(&env, &o);
  sd_use(d);
  pm_store *s = NULL;
  return pm_store_open(store_dir, &o, &s, err) == PM_OK ? s : NULL;
}

/* Open a copy of c and read its fingerprint. 0 and a violation if it does not open or read. */
static int fingerprint_of(sd_disk *c, uint64_t *fp, tally *t, const char *what) {
  sd_disk *d = sd_clone(c);
  pm_err err;
  pm_store *s = open_on(d, PM_SYNC_FULL, &err);
  int ok = s && wl_store_fp(s, fp, &err) == PM_OK;
  if (s && pm_store_close(s, ok ? &err : NULL) != PM_OK) ok = 0;
  sd_free(d);
  return ok ? 1 : violation(t, "%s: %s", what, err.msg);
}

/* Commit three writes drawn from rng on handle s, applying them to m. */
static int commit_drawn(pm_store *s, uint64_t *rng, wl_model *m, pm_err *err) {
  wl_op ops[3];
  wl_draw_ops(rng, m, ops, 3);
  pm_txn *x = NULL;
  if (!s || pm_txn_begin(s, &x, err) != PM_OK) return 0;
  if (wl_exec_ops(x, ops, 3, err) != PM_OK) { pm_txn_abort(x); return 0; }
  return pm_txn_commit(x, err) == PM_OK;
}

/* A store recovered from c takes a commit under FULL, then one under OFF
** (through a second handle); a power loss keeping a random part of what was
** not synced must leave the first, and the second whole or not at all:
** nothing recovery left behind may break or resurrect anything. */
static int check_new_commits(sd_disk *c, const wl_run *ref, long held, tally *t, const char *what) {
  sd_disk *d = sd_clone(c);
  pm_err err;
  pm_store *full = open_on(d, PM_SYNC_FULL, &err), *off = full ? open_on(d, PM_SYNC_OFF, &err) : NULL;
  uint64_t rng = (uint64_t)held * 7919 + (uint64_t)t->states;
  wl_model first = ref->e[held].model, second;
  int ok = commit_drawn(full, &rng, &first, &err);
  second = first;
  ok = ok && commit_drawn(off, &rng, &second, &err);
  sd_disk *cut = ok ? sd_clone(d) : NULL;         /* the power goes right after the commits */
  if (off) pm_store_close(off, NULL);
  if (full) pm_store_close(full, NULL);
  sd_free(d);
  if (!ok) return violation(t, "%s: a commit after recovery failed: %s", what, err.msg);
  sd_policy some = { .data = SD_KEEP_RANDOM, .unit = 512, .dirs = SD_KEEP_RANDOM, .seed = rng };
  sd_disk *after = sd_crash(cut, &some);
  uint64_t fp = 0;
  ok = fingerprint_of(after, &fp, t, what);
  sd_free(after);
  sd_free(cut);
  if (ok && fp != wl_model_fp(&first) && fp != wl_model_fp(&second))
    return violation(t, "%s: after commits made on the recovered store and a power loss, the "
                     "store holds neither", what);
  return ok;
}

/* Crash the recovery of c at each of its operations, with what it had not
** synced dropped and kept; opening again must find entry held. */
static int check_recovery_crashes(sd_disk *c, const wl_run *ref, long held, tally *t,
                                  const char *what) {
  static const sd_policy ends[2] = { { .data = SD_KEEP_NONE, .dirs = SD_KEEP_NONE },
                                     { .data = SD_KEEP_ALL, .dirs = SD_KEEP_ALL } };
  t->sweeps++;
  for (long k = 0;; k++) {
    sd_disk *d = sd_clone(c);
    sd_freeze_at(d, sd_ops(d) + k);
    pm_err err;
    pm_store *s = open_on(d, PM_SYNC_FULL, &err);
    if (s) pm_store_close(s, NULL);
    sd_disk *mid = sd_frozen(d);
    sd_free(d);
    if (!s) { sd_free(mid); return violation(t, "%s: reopen failed: %s", what, err.msg); }
    if (!mid) return 1;
    for (int i = 0; i < 2; i++) {
      sd_disk *again = sd_crash(mid, &ends[i]);
      uint64_t fp = 0;
      int ok = fingerprint_of(again, &fp, t, what);
      sd_free(again);
      t->sweep_states++;
      if (ok && fp != ref->e[held].fp)
        ok = violation(t, "%s: recovery crashed at its operation %ld (%s) found other content",
                       what, k, i ? "all kept" : "unsynced lost");
      if (!ok) { sd_free(mid); return 0; }
    }
    sd_free(mid);
  }
}

/* Every check of one crash state c, taken after `done` operations of the run. */
static long hints_removed;    /* hint files deleted by check_without_hints */

/* list_dir callback: unlink the hint files of the store on the current disk. */
static int unlink_hint(void *ctx, const char *name) {
  (void)ctx;
  if (!strstr(name, ".hint")) return 0;
  hints_removed++;
  char path[1024];
  snprintf(path, sizeof path, "%s/%s", store_dir, name);
  sd_io()->unlink(path);
  return 0;
}

/* The same state opened without its hint files must read the same. */
static int check_without_hints(sd_disk *c, uint64_t fp, tally *t, const char *what) {
  sd_disk *d = sd_clone(c);
  sd_use(d);
  sd_io()->list_dir(store_dir, unlink_hint, NULL);
  uint64_t fp2 = 0;
  int ok = fingerprint_of(d, &fp2, t, what);
  sd_free(d);
  if (ok && fp2 != fp) return violation(t, "%s: opened without hint files, the content differs", what);
  return ok;
}

static int check_state(sd_disk *c, const wl_run *ref, long done, int all_kept, tally *t,
                       const char *what) {
  uint64_t fp;
  t->states++;
  if (!fingerprint_of(c, &fp, t, what)) return 0;
  if (t->states % 4 == 0 && !check_without_hints(c, fp, t, what)) return 0;
  long held = wl_match(ref, fp, done, all_kept);
  if (held < 0) {
    char why[300];
    wl_explain(ref, fp, done, all_kept, why, sizeof why);
    return violation(t, "%s: %s", what, why);
  }
  if (!check_new_commits(c, ref, held, t, what)) return 0;
  if (t->states % sweep_every == 0 && !check_recovery_crashes(c, ref, held, t, what)) return 0;
  return 1;
}

/* ---- Crash states of one point ------------------------------------------------- */

/* Add the torn versions of unsynced change k. */
static int add_tears(sd_disk *snap, size_t k, uint64_t *rng, sd_policy *out, int n) {
  static const unsigned units[2] = { 512, 4096 };
  for (int u = 0; u < 2; u++) {
    uint64_t nb = sd_tear_points(snap, k, units[u]);
    for (int g = 0; nb && g < 2; g++)
      out[n++] = (sd_policy){ SD_KEEP_TORN, k, units[u], (unsigned)(tu_rand(rng) % nb), g,
                              SD_KEEP_ALL, tu_rand(rng) };
  }
  return n;
}

/* The crash states to try for a disk with u unsynced changes and q pending
** directory operations. Returns how many were put in out. */
static int crash_policies(sd_disk *snap, uint64_t seed, sd_policy *out) {
  size_t u = sd_unsynced(snap), q = sd_pending_dirops(snap);
  uint64_t rng = seed | 1;
  int n = 0;
  out[n++] = (sd_policy){ .data = SD_KEEP_NONE, .dirs = SD_KEEP_NONE };
  if (u == 0 && q == 0) return n;
  out[n++] = (sd_policy){ .data = SD_KEEP_ALL, .dirs = SD_KEEP_ALL };
  size_t step = u / PREFIXES + 1;
  for (size_t k = 1; k < u; k += step) out[n++] = (sd_policy){ .data = SD_KEEP_PREFIX, .prefix = k, .dirs = SD_KEEP_ALL };
  for (int r = 0; u && r < RANDOMS; r++) {
    static const unsigned units[3] = { 0, 512, 4096 };
    out[n++] = (sd_policy){ .data = SD_KEEP_RANDOM, .unit = units[r % 3], .dirs = SD_KEEP_RANDOM, .seed = tu_rand(&rng) };
  }
  if (u) n = add_tears(snap, u - 1, &rng, out, n);
  for (int i = 0; u > 1 && i < 3; i++) n = add_tears(snap, tu_rand(&rng) % (u - 1), &rng, out, n);
  if (q) {
    out[n++] = (sd_policy){ .data = SD_KEEP_ALL, .dirs = SD_KEEP_NONE };
    out[n++] = (sd_policy){ .data = SD_KEEP_NONE, .dirs = SD_KEEP_ALL };
    out[n++] = (sd_policy){ .data = SD_KEEP_ALL, .dirs = SD_KEEP_RANDOM, .seed = tu_rand(&rng) };
  }
  return n;
}

/* Check every crash state of the disk snap, taken after `done` operations. */
static int check_point(sd_disk *snap, const wl_run *ref, long done, uint64_t seed, tally *t) {
  sd_policy pol[64];
  int n = crash_policies(snap, seed, pol);
  t->points++;
  for (int i = 0; i < n; i++) {
    char what[320], how[200];
    describe(&pol[i], how, sizeof how);
    snprintf(what, sizeof what, "sync %d, after operation %ld, crash %s", ref->env->sync, done, how);
    sd_disk *c = sd_crash(snap, &pol[i]);
    int all_kept = pol[i].data == SD_KEEP_ALL && pol[i].dirs == SD_KEEP_ALL;
    int ok = check_state(c, ref, done, all_kept, t, what);
    sd_free(c);
    if (!ok) return 0;
  }
  return 1;
}

/* One round: run the plan once for its history, then stop it at every
** operation and check the crash states there. Stops at the first violation. */
static void explore(int sync, uint64_t seed, const pm_io *io, tally *t) {
  wl_plan plan;
  wl_plan_standard(&plan, sync, TXNS);
  wl_env env = { store_dir, io, sync, -1, disk_clock };
  wl_run ref, again;
  sd_disk *frozen = NULL;
  sd_disk *first = run_plan(&plan, &env, seed, -1, NULL, &ref);
  long total = sd_ops(first);
  sd_free(first);
  for (long done = SETUP_OPS; done <= total && t->violations == 0; done++) {
    sd_disk *d = run_plan(&plan, &env, seed, done, &frozen, &again);
    if (!frozen) violation(t, "the workload is not deterministic: it made %ld operations, then fewer", total);
    wl_run_free(&again);
    sd_free(d);
    if (frozen) check_point(frozen, &ref, done, seed ^ (uint64_t)done, t);
    sd_free(frozen);
  }
  wl_run_free(&ref);
}

/* ---- Tests ------------------------------------------------------------------------ */

static uint64_t round_seed(int round) {
  const char *s = getenv("PM_SEED");
  if (s) return strtoull(s, NULL, 0);
  if (!soak_rounds) return 0x5EED0000u + (uint64_t)round;
  uint64_t x = (uint64_t)time(NULL) * 0x9E3779B97F4A7C15ull ^ (uint64_t)getpid() << 16 ^ (uint64_t)round;
  return tu_rand(&x);
}

static void crash_mode(int sync) {
  int rounds = soak_rounds ? soak_rounds : 1;
  for (int r = 0; r < rounds; r++) {
    tally t;
    memset(&t, 0, sizeof t);
    uint64_t seed = round_seed(r);
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    explore(sync, seed, sd_io(), &t);
    clock_gettime(CLOCK_MONOTONIC, &b);
    states_checked += t.states + t.sweep_states;
    printf("crash sync=%d seed=%#llx: %ld points, %ld states, %ld recoveries crashed (%ld states), %.1f s\n",
           sync, (unsigned long long)seed, t.points, t.states, t.sweeps, t.sweep_states,
           (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9);
    if (t.violations) fail_msg("%d violation(s), first: %s (replay with PM_SEED=%#llx)", t.violations,
                               t.why, (unsigned long long)seed);
  }
}

static void test_crash_full(void **state) { (void)state; crash_mode(PM_SYNC_FULL); }
static void test_crash_normal(void **state) { (void)state; crash_mode(PM_SYNC_NORMAL); }
static void test_crash_off(void **state) { (void)state; crash_mode(PM_SYNC_OFF); }

/* An fsync that, once a file holds more than a page, claims success and
** syncs nothing: commits acknowledged under FULL then vanish in a crash,
** and the harness must say so. */
static int lying_fsync(int fd) {
  uint64_t size = 0;
  if (sd_io()->file_size(fd, &size) == 0 && size > 4096) return 0;
  return sd_io()->fsync(fd);
}

static void test_harness_catches_lying_fsync(void **state) {
  (void)state;
  pm_io liar = *sd_io();
  liar.fsync = lying_fsync;
  tally t;
  memset(&t, 0, sizeof t);
  explore(PM_SYNC_FULL, 0x5EED0000u, &liar, &t);
  assert_true(t.violations > 0);
  assert_non_null(strstr(t.why, "the store holds"));
}

int main(void) {
  /* Disks are copied tens of thousands of times: keep freed memory in the
  ** heap rather than handing it back to the kernel and faulting it in again. */
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 256 << 20);
  const char *soak = getenv("PM_SOAK");
  soak_rounds = soak ? atoi(soak) : 0;
  if (soak && soak_rounds < 1) soak_rounds = 20;
  sweep_every = soak_rounds ? 1 : 16;
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(test_crash_full, setup, teardown),
    cmocka_unit_test_setup_teardown(test_crash_normal, setup, teardown),
    cmocka_unit_test_setup_teardown(test_crash_off, setup, teardown),
    cmocka_unit_test_setup_teardown(test_harness_catches_lying_fsync, setup, teardown),
  };
  int failed = cmocka_run_group_tests(tests, NULL, NULL);
  printf("crash: %ld crash states checked (%ld hint files deleted to compare)\n", states_checked, hints_removed);
  if (!failed && hints_removed == 0) {
    fprintf(stderr, "crash: no state had hint files: the comparison without them never ran\n");
    failed = 1;
  }
  if (!failed && states_checked < 10000) {
    fprintf(stderr, "crash: only %ld crash states were checked\n", states_checked);
    failed = 1;
  }
  return failed;
}
