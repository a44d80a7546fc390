/*
** workload.h - a deterministic workload for the engine's crash, fault and
** allocation-failure tests, and the model it is judged by.
**
** A plan is a list of steps: open, transactions of several kinds (plain,
** with a savepoint rolled back, rolled back, prepared then rolled back,
** prepared twice), sync, compaction, reopen, close.
** Running a plan drives a store and records its history: every state the
** store may legitimately be found in, in log order, each with the moments
** its commit was issued, acknowledged and known to be durable. Moments come
** from a clock the test chooses (the simulated disk's count of operations).
**
** The runner never asserts on the engine's answers: it counts failures and
** their codes, commits acknowledged after a failure, and opens that found
** the store in a state that is not a prefix of its history. Each test
** judges those by its own rules.
**
** Content is compared by fingerprint: the sum over rows of a 64-bit hash of
** the key, the value type and the value bytes, so that a store is compared
** with every candidate state at the cost of one scan.
*/
#ifndef PM_WORKLOAD_H
#define PM_WORKLOAD_H

#include <limits.h>
#include <xxhash.h>

#include "testutil.h"
#include "store.h"

#define WL_KEYS 24                 /* a small key space: many overwrites and deletes */
#define WL_MAX_VALUE 10240         /* values from 0 bytes to 10 KiB */
#define WL_MAX_OPS 4               /* writes per part of a transaction */
#define WL_MAX_STEPS 256
#define WL_SEGMENT (64u << 10)     /* the smallest segment size: segments roll over */
#define WL_NEVER LONG_MAX

/* ---- The model ----------------------------------------------------------- */

typedef struct wl_row {
  uint8_t present, vtype;
  uint32_t vlen;
  uint64_t vseed;                /* the value's bytes are drawn from it */
  uint64_t hash;                 /* what the row adds to a fingerprint */
} wl_row;
typedef struct wl_model { wl_row row[WL_KEYS]; } wl_model;

/* One write of a transaction: a put of a generated value, or a delete. */
typedef struct wl_op { int key, del; uint8_t vtype; uint32_t vlen; uint64_t vseed; } wl_op;

/* The key of slot i ("key-07"); name must hold 16 bytes. */
static inline pm_key wl_key(int i, char name[16]) {
  snprintf(name, 16, "key-%02d", i);
  pm_key k = { PM_TEXT, (uint32_t)strlen(name), (const uint8_t *)name };
  return k;
}

/* The bytes of a value: vlen pseudo-random bytes drawn from vseed. */
static inline void wl_value_bytes(uint64_t vseed, uint32_t vlen, uint8_t *out) {
  uint64_t s = vseed | 1;
  for (uint32_t i = 0; i < vlen; i += 8) {
    uint8_t word[8];
    pm_put_u64(word, tu_rand(&s));
    memcpy(out + i, word, vlen - i < 8 ? vlen - i : 8);
  }
}

/* The hash a row adds to a fingerprint. */
static inline uint64_t wl_row_hash(const pm_key *k, uint8_t vtype, const uint8_t *v, uint32_t vlen) {
  uint64_t h = XXH3_64bits_withSeed(v, vlen, vtype);
  return XXH3_64bits_withSeed(k->data, k->len, h) | 1;
}

static inline uint64_t wl_model_fp(const wl_model *m) {
  uint64_t fp = 0;
  for (int i = 0; i < WL_KEYS; i++) fp += m->row[i].hash;
  return fp;
}

static inline void wl_model_apply(wl_model *m, const wl_op *op) {
  static uint8_t buf[WL_MAX_VALUE];
  wl_row *r = &m->row[op->key];
  if (op->del) { memset(r, 0, sizeof *r); return; }
  char name[16];
  pm_key k = wl_key(op->key, name);
  wl_value_bytes(op->vseed, op->vlen, buf);
  *r = (wl_row){ 1, op->vtype, op->vlen, op->vseed, wl_row_hash(&k, op->vtype, buf, op->vlen) };
}

/* The fingerprint of everything the store holds now (every value is read). */
static inline int wl_store_fp(pm_store *s, uint64_t *fp, pm_err *err) {
  pm_iter_spec all = { 0, 0, UINT64_MAX, NULL, NULL };
  pm_iter *it;
  int rc = pm_iter_open(s, NULL, NULL, &all, &it, err);
  if (rc) return rc;
  *fp = 0;
  while ((rc = pm_iter_next(it, err)) == PM_OK) {
    pm_value *v = NULL;
    if ((rc = pm_iter_value(it, &v, err)) != PM_OK) break;
    *fp += wl_row_hash(pm_iter_key(it), v->type, v->data, v->len);
    pm_value_unref(v);
  }
  pm_iter_close(it);
  return rc == PM_NOTFOUND ? PM_OK : rc;
}

/* ---- Drawing transactions ---------------------------------------------------- */

/* Value lengths: empty, small, medium and ~10 KiB ones. */
static inline uint32_t wl_draw_len(uint64_t *rng) {
  uint64_t r = tu_rand(rng) % 100;
  if (r < 15) return 0;
  if (r < 50) return 1 + (uint32_t)(tu_rand(rng) % 200);
  if (r < 80) return 200 + (uint32_t)(tu_rand(rng) % 1800);
  return 8000 + (uint32_t)(tu_rand(rng) % (WL_MAX_VALUE - 8000 + 1));
}

/* Draw n writes against the model w, applying them to it as they go: a
** present key is deleted one time in three and overwritten otherwise. */
static inline void wl_draw_ops(uint64_t *rng, wl_model *w, wl_op *ops, int n) {
  for (int i = 0; i < n; i++) {
    wl_op *op = &ops[i];
    op->key = (int)(tu_rand(rng) % WL_KEYS);
    op->del = w->row[op->key].present && tu_rand(rng) % 3 == 0;
    op->vlen = wl_draw_len(rng);
    op->vtype = op->vlen == 0 ? (tu_rand(rng) & 1 ? PM_NULL : PM_TEXT) : (tu_rand(rng) & 1 ? PM_TEXT : PM_BLOB);
    op->vseed = tu_rand(rng);
    wl_model_apply(w, op);
  }
}

/* Put or delete each of ops in t. */
static inline int wl_exec_ops(pm_txn *t, const wl_op *ops, int n, pm_err *err) {
  static uint8_t buf[WL_MAX_VALUE];
  for (int i = 0; i < n; i++) {
    char name[16];
    pm_key k = wl_key(ops[i].key, name);
    wl_value_bytes(ops[i].vseed, ops[i].vlen, buf);
    int rc = ops[i].del ? pm_txn_delete(t, &k, err)
                        : pm_txn_put(t, &k, ops[i].vtype, buf, ops[i].vlen, PM_PUT_REPLACE, NULL, err);
    if (rc) return rc;
  }
  return PM_OK;
}

/* ---- Plans --------------------------------------------------------------------- */

enum {
  WL_OPEN, WL_TXN, WL_SAVEPOINT, WL_ROLLBACK, WL_PREPARED_ROLLBACK, WL_REPREPARE,
  WL_SYNC, WL_REOPEN, WL_SHRINK, WL_CLOSE
};

typedef struct wl_plan { int step[WL_MAX_STEPS]; size_t n; } wl_plan;

static inline void wl_plan_add(wl_plan *p, int step) {
  assert_true(p->n < WL_MAX_STEPS);
  p->step[p->n++] = step;
}

/* The standard plan: open, txns transactions of every kind, a reopen half
** way, a compaction every sixteenth transaction, syncs as the mode needs them
** (under NORMAL every fourth transaction, standing in for the background
** sync; under OFF once, "when asked"), close. */
static inline void wl_plan_standard(wl_plan *p, int sync, int txns) {
  static const int kinds[8] = { WL_TXN, WL_TXN, WL_SAVEPOINT, WL_TXN, WL_PREPARED_ROLLBACK,
                                WL_TXN, WL_REPREPARE, WL_ROLLBACK };
  p->n = 0;
  wl_plan_add(p, WL_OPEN);
  for (int i = 0; i < txns; i++) {
    wl_plan_add(p, kinds[i % 8]);
    if (sync == PM_SYNC_NORMAL && i % 4 == 3) wl_plan_add(p, WL_SYNC);
    if (sync == PM_SYNC_OFF && i == txns * 2 / 3) wl_plan_add(p, WL_SYNC);
    if (i == txns / 2) wl_plan_add(p, WL_REOPEN);
    if (i % 16 == 15) wl_plan_add(p, WL_SHRINK);
  }
  wl_plan_add(p, WL_CLOSE);
}

/* ---- Running ------------------------------------------------------------------- */

/* Where and how the store runs. */
typedef struct wl_env {
  const char *path;
  const pm_io *io;
  int sync;                      /* PM_SYNC_* of the workload's handle */
  int64_t cache_size;
  long (*clock)(void);           /* the moments of the history; NULL: a count of calls */
} wl_env;

/* A state the store may be found in: the content after a commit. */
typedef struct wl_entry {
  wl_model model;
  uint64_t fp;
  int phantom;                   /* a written group later aborted */
  long issued;                   /* when its group began to be written (-1: the empty store) */
  long acked;                    /* when its commit returned PM_OK (WL_NEVER: not) */
  long durable;                  /* from when it is known durable (phantom: its abort) */
  long retracted;                /* phantom: when its abort returned */
  long gone;                     /* when an open found an earlier state: it cannot appear since */
} wl_entry;

typedef struct wl_run {
  const wl_env *env;
  pm_store *s;
  uint64_t rng;
  long ticks;
  wl_model cur;                  /* the newest acknowledged state */
  wl_entry *e;                   /* the history, in log order */
  size_t n, cap;
  int stopped;                   /* a call failed since the store was last opened */
  int failures;                  /* failed engine calls */
  unsigned codes;                /* bit c: a call failed with code c */
  int late_acks;                 /* acknowledged while stopped */
  int lost;                      /* opens that found a state outside the history */
  pm_err last_err;
} wl_run;

static inline long wl_now(wl_run *r) { return r->env->clock ? r->env->clock() : ++r->ticks; }

static inline void wl_options(const wl_env *env, pm_options *o) {
  pm_options_init(o);
  o->create = 1;
  o->sync = env->sync;
  o->io = env->io;
  o->segment_size = WL_SEGMENT;
  o->sync_interval_ms = 3600u * 1000u;     /* no background sync or compaction: */
  o->auto_shrink = 0;                      /* runs stay deterministic */
  o->cache_size = env->cache_size;
}

/* Append a state to the history; returns its index. */
static inline size_t wl_issue(wl_run *r, const wl_model *m, int phantom) {
  if (r->n == r->cap) {
    r->cap = r->cap ? r->cap * 2 : 64;
    r->e = realloc(r->e, r->cap * sizeof *r->e);
    assert_non_null(r->e);
  }
  r->e[r->n] = (wl_entry){ *m, wl_model_fp(m), phantom, r->n ? wl_now(r) : -1,
                           WL_NEVER, WL_NEVER, WL_NEVER, WL_NEVER };
  return r->n++;
}

static inline void wl_run_init(wl_run *r, const wl_env *env, uint64_t seed) {
  memset(r, 0, sizeof *r);
  r->env = env;
  r->rng = seed | 1;
  size_t empty = wl_issue(r, &r->cur, 0);
  r->e[empty].acked = r->e[empty].durable = -1;
}

static inline void wl_run_free(wl_run *r) {
  if (r->s) pm_store_close(r->s, NULL);
  free(r->e);
  memset(r, 0, sizeof *r);
}

/* Note the answer of an engine call; returns rc. */
static inline int wl_note(wl_run *r, int rc, const pm_err *err) {
  if (rc == PM_OK) return rc;
  r->failures++;
  r->codes |= 1u << rc;
  r->stopped = 1;
  if (err) r->last_err = *err;
  return rc;
}

/* Entry i's commit returned PM_OK. */
static inline void wl_acked(wl_run *r, size_t i) {
  if (r->stopped) r->late_acks++;
  r->e[i].acked = wl_now(r);
  if (r->env->sync == PM_SYNC_FULL) r->e[i].durable = r->e[i].acked;
  r->cur = r->e[i].model;
}

/* Everything acknowledged or aborted so far is durable (a sync or a close
** succeeded). */
static inline void wl_all_durable(wl_run *r) {
  long now = wl_now(r);
  for (size_t i = 0; i < r->n; i++) {
    long done = r->e[i].phantom ? r->e[i].retracted : r->e[i].acked;
    if (done != WL_NEVER && r->e[i].durable == WL_NEVER) r->e[i].durable = now;
  }
}

/* The last commit (not gone at t) acknowledged, or with durable set known
** durable, at or before t. */
static inline size_t wl_last_kept(const wl_run *r, long t, int durable) {
  size_t lo = 0;
  for (size_t i = 0; i < r->n; i++)
    if (!r->e[i].phantom && r->e[i].gone > t && (durable ? r->e[i].durable : r->e[i].acked) <= t) lo = i;
  return lo;
}

/* May the store hold entry i after a crash when the clock read `when`? It
** must be at or after the last commit known durable (or, when every
** unsynced write survived, the last acknowledged one) and at or before the
** last one issued; not gone; and, for an aborted group, its abort record
** must not be known durable (or, when every write survived, written). */
static inline int wl_allowed(const wl_run *r, size_t i, long when, int all_kept) {
  const wl_entry *e = &r->e[i];
  if (i < wl_last_kept(r, when, !all_kept) || e->issued >= when || e->gone <= when) return 0;
  return !e->phantom || (e->durable > when && !(all_kept && e->retracted <= when));
}

/* The allowed entry whose content has fingerprint fp, or -1. */
static inline long wl_match(const wl_run *r, uint64_t fp, long when, int all_kept) {
  for (size_t i = r->n; i-- > 0;)
    if (r->e[i].fp == fp && wl_allowed(r, i, when, all_kept)) return (long)i;
  return -1;
}

/* Say which state of the history has fingerprint fp, and which were
** allowed, for a failure message. */
static inline void wl_explain(const wl_run *r, uint64_t fp, long when, int all_kept, char *buf,
                              size_t cap) {
  long i = (long)r->n;
  while (--i >= 0 && r->e[i].fp != fp) {}
  int n = i < 0 ? snprintf(buf, cap, "the store holds none of the history")
                : snprintf(buf, cap, "the store holds entry %ld (issued at %ld, acked at %ld, durable at %ld%s)",
                           i, r->e[i].issued, r->e[i].acked, r->e[i].durable, r->e[i].phantom ? ", aborted" : "");
  if (n >= 0 && (size_t)n < cap)
    snprintf(buf + n, cap - (size_t)n, "; allowed are entries %zu to the last issued before %ld of %zu",
             wl_last_kept(r, when, !all_kept), when, r->n);
}

/* After an open: the store must hold a state allowed after a restart that
** lost nothing; the history continues from it, and the commits after it in
** the log can no longer appear. (An aborted group can, until its abort
** record is durable: the open read that record, but did not sync it.) */
static inline void wl_adopt(wl_run *r) {
  uint64_t fp;
  pm_err err;
  if (wl_note(r, wl_store_fp(r->s, &fp, &err), &err)) return;
  long i = wl_match(r, fp, WL_NEVER - 1, 1);
  if (i < 0) { r->lost++; return; }
  long now = wl_now(r);
  for (size_t j = (size_t)i + 1; j < r->n; j++)
    if (!r->e[j].phantom && r->e[j].gone == WL_NEVER) r->e[j].gone = now;
  r->cur = r->e[i].model;
}

/* ---- Steps ----------------------------------------------------------------------- */

static inline void wl_step_open(wl_run *r) {
  if (r->s) return;
  pm_options o;
  wl_options(r->env, &o);
  pm_err err;
  if (wl_note(r, pm_store_open(r->env->path, &o, &r->s, &err), &err)) { r->s = NULL; return; }
  r->stopped = 0;
  wl_adopt(r);
}

static inline void wl_step_close(wl_run *r) {
  if (!r->s) return;
  pm_err err;
  int rc = pm_store_close(r->s, &err);
  r->s = NULL;
  if (wl_note(r, rc, &err) == PM_OK && !r->stopped) wl_all_durable(r);
}

static inline void wl_step_sync(wl_run *r) {
  pm_err err;
  if (!r->s || wl_note(r, pm_store_sync(r->s, -1, &err), &err)) return;
  if (r->stopped) r->late_acks++;
  wl_all_durable(r);
}

/* A compaction. One that fails on its own files removes them and leaves
** the store running (stats say whether it stopped); its error is noted, but
** counts as stopping the store only if the store says it stopped. */
static inline void wl_step_shrink(wl_run *r) {
  char *summary = NULL;
  pm_err err;
  pm_stats st;
  if (!r->s) return;
  int stopped = r->stopped;
  if (wl_note(r, pm_store_shrink(r->s, &summary, &err), &err) != PM_OK &&
      pm_store_stats(r->s, &st, NULL) == PM_OK && st.last_error_code == PM_OK)
    r->stopped = stopped;
  pm_free(summary);
}

/* A transaction in progress: what it wrote to the history so far. */
typedef struct wl_txn {
  pm_txn *t;
  size_t mark;                   /* history length when it began */
  int was_stopped;
  int rc;
  pm_err err;
} wl_txn;

static inline int wl_begin(wl_run *r, wl_txn *x) {
  x->mark = r->n;
  x->was_stopped = r->stopped;
  x->t = NULL;
  x->rc = r->s ? pm_txn_begin(r->s, &x->t, &x->err) : PM_MISUSE;
  if (r->s) wl_note(r, x->rc, &x->err);
  return x->rc == PM_OK;
}

/* Step of a transaction: run it unless an earlier one failed. */
static inline int wl_do(wl_run *r, wl_txn *x, int rc) {
  if (x->rc == PM_OK) x->rc = wl_note(r, rc, &x->err);
  return x->rc == PM_OK;
}

/* End a transaction that failed: abort it; what it issued while the store
** was already stopped was never written and leaves the history. */
static inline void wl_fail(wl_run *r, wl_txn *x) {
  if (x->t) pm_txn_abort(x->t);
  if (x->was_stopped) r->n = x->mark;
}

static inline void wl_txn_plain(wl_run *r) {
  wl_model w = r->cur;
  wl_op ops[WL_MAX_OPS];
  int n = 1 + (int)(tu_rand(&r->rng) % WL_MAX_OPS);
  wl_draw_ops(&r->rng, &w, ops, n);
  wl_txn x;
  if (!wl_begin(r, &x) || !wl_do(r, &x, wl_exec_ops(x.t, ops, n, &x.err))) { wl_fail(r, &x); return; }
  size_t e = wl_issue(r, &w, 0);
  int rc = pm_txn_commit(x.t, &x.err);
  x.t = NULL;
  if (wl_do(r, &x, rc)) wl_acked(r, e); else wl_fail(r, &x);
}

/* Writes, a savepoint, writes rolled back to it, more writes, commit. */
static inline void wl_txn_savepoint(wl_run *r) {
  wl_model w = r->cur, undone;
  wl_op a[WL_MAX_OPS], b[WL_MAX_OPS], c[WL_MAX_OPS];
  wl_draw_ops(&r->rng, &w, a, 2);
  undone = w;
  wl_draw_ops(&r->rng, &undone, b, 3);
  wl_draw_ops(&r->rng, &w, c, 2);
  wl_txn x;
  if (!wl_begin(r, &x) || !wl_do(r, &x, wl_exec_ops(x.t, a, 2, &x.err)) ||
      !wl_do(r, &x, pm_txn_savepoint(x.t, 1, &x.err)) || !wl_do(r, &x, wl_exec_ops(x.t, b, 3, &x.err)) ||
      !wl_do(r, &x, pm_txn_rollback_to(x.t, 1, &x.err)) || !wl_do(r, &x, wl_exec_ops(x.t, c, 2, &x.err)) ||
      !wl_do(r, &x, pm_txn_release(x.t, 1, &x.err))) { wl_fail(r, &x); return; }
  size_t e = wl_issue(r, &w, 0);
  int rc = pm_txn_commit(x.t, &x.err);
  x.t = NULL;
  if (wl_do(r, &x, rc)) wl_acked(r, e); else wl_fail(r, &x);
}

/* Writes, then ROLLBACK: nothing reaches the log. */
static inline void wl_txn_rollback(wl_run *r) {
  wl_model w = r->cur;
  wl_op ops[WL_MAX_OPS];
  wl_draw_ops(&r->rng, &w, ops, 3);
  wl_txn x;
  if (wl_begin(r, &x)) wl_do(r, &x, wl_exec_ops(x.t, ops, 3, &x.err));
  if (x.t) pm_txn_abort(x.t);
}

/* Abort a prepared transaction; 1 if its abort record was written. The
** abort cannot report a failure (SQLite ignores xRollback's), but it stops
** the store; then the group stays in the log and counts as committed, as
** after a crash before the abort. */
static inline int wl_abort_prepared(wl_run *r, pm_txn *t) {
  pm_stats st;
  pm_txn_abort(t);
  if (pm_store_stats(r->s, &st, NULL) != PM_OK || st.last_error_code == PM_OK) return 1;
  pm_err err;
  pm_err_set(&err, st.last_error_code, "the abort failed: %s", st.last_error);
  wl_note(r, st.last_error_code, &err);
  return 0;
}

/* Writes, prepare (SQLite's xSync), then rollback: an abort record follows
** the group, which until then would count as committed. */
static inline void wl_txn_prepared_rollback(wl_run *r) {
  wl_model w = r->cur;
  wl_op ops[WL_MAX_OPS];
  wl_draw_ops(&r->rng, &w, ops, 3);
  wl_txn x;
  if (!wl_begin(r, &x) || !wl_do(r, &x, wl_exec_ops(x.t, ops, 3, &x.err))) { wl_fail(r, &x); return; }
  size_t e = wl_issue(r, &w, 1);
  if (!wl_do(r, &x, pm_txn_prepare(x.t, &x.err))) { wl_fail(r, &x); return; }
  if (wl_abort_prepared(r, x.t)) r->e[e].retracted = wl_now(r);
}

/* Writes, prepare, more writes, prepare again (which aborts the first
** group and writes the whole transaction anew), commit. */
static inline void wl_txn_reprepare(wl_run *r) {
  wl_model w = r->cur;
  wl_op a[WL_MAX_OPS], b[WL_MAX_OPS];
  wl_draw_ops(&r->rng, &w, a, 2);
  wl_model first = w;
  wl_draw_ops(&r->rng, &w, b, 2);
  wl_txn x;
  if (!wl_begin(r, &x) || !wl_do(r, &x, wl_exec_ops(x.t, a, 2, &x.err))) { wl_fail(r, &x); return; }
  size_t p = wl_issue(r, &first, 1);
  if (!wl_do(r, &x, pm_txn_prepare(x.t, &x.err)) || !wl_do(r, &x, wl_exec_ops(x.t, b, 2, &x.err))) {
    wl_fail(r, &x);
    return;
  }
  size_t e = wl_issue(r, &w, 0);
  if (!wl_do(r, &x, pm_txn_prepare(x.t, &x.err))) { wl_fail(r, &x); return; }
  r->e[p].retracted = wl_now(r);
  int rc = pm_txn_commit(x.t, &x.err);
  x.t = NULL;
  if (wl_do(r, &x, rc)) wl_acked(r, e); else wl_fail(r, &x);
}

static inline void wl_run_step(wl_run *r, int step) {
  switch (step) {
    case WL_OPEN: wl_step_open(r); break;
    case WL_TXN: wl_txn_plain(r); break;
    case WL_SAVEPOINT: wl_txn_savepoint(r); break;
    case WL_ROLLBACK: wl_txn_rollback(r); break;
    case WL_PREPARED_ROLLBACK: wl_txn_prepared_rollback(r); break;
    case WL_REPREPARE: wl_txn_reprepare(r); break;
    case WL_SYNC: wl_step_sync(r); break;
    case WL_REOPEN: wl_step_close(r); wl_step_open(r); break;
    case WL_SHRINK: wl_step_shrink(r); break;
    case WL_CLOSE: wl_step_close(r); break;
  }
}

static inline void wl_run_plan(wl_run *r, const wl_plan *p) {
  for (size_t i = 0; i < p->n; i++) wl_run_step(r, p->step[i]);
}

#endif /* PM_WORKLOAD_H */
