/*
** txn.c - write transactions: the writer lock, a transaction's own writes
** (an op list, a key map for read-your-writes, savepoints), and commit in
** SQLite's steps: prepare writes the group to the log, commit makes it
** visible, abort cancels it (with an abort record once it was written).
*/
#include "engine.h"

#include <errno.h>
#include <string.h>
#include <time.h>
#include <xxhash.h>

/* ======================================================================== */
/* 5. Writing                                                                */
/* ======================================================================== */

pm_key pm_txn_op_key(const pm_txn *t, const txn_op *op) {
  pm_key k = { op->ktype, op->klen, t->keys + op->key_off };
  return k;
}

static uint64_t key_hash(const pm_key *k) {
  return XXH3_64bits_withSeed(k->data, k->len, k->type);
}

static int key_eq(const pm_key *a, const pm_key *b) {
  return a->type == b->type && a->len == b->len && (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}

/* The op map: open addressing with linear probing, at most half full. A
** slot holds the high half of its key's hash beside the op index, so a
** probe compares keys only when those 32 bits match: a lookup touches the
** ops and key bytes of its own key alone. */
#define MAP_TAG(h) ((h) & 0xffffffff00000000ull)
#define MAP_OP(m) ((uint32_t)(m))          /* op index + 1 */

/* Slot of k (hash h) in the op map: its slot if present, else the empty
** slot to use. */
static size_t map_slot(const pm_txn *t, const pm_key *k, uint64_t h) {
  size_t mask = t->map_cap - 1;
  for (size_t i = h & mask;; i = (i + 1) & mask) {
    uint64_t m = t->map[i];
    if (m == 0) return i;
    if (MAP_TAG(m) != MAP_TAG(h)) continue;
    pm_key other = pm_txn_op_key(t, &t->ops[MAP_OP(m) - 1]);
    if (key_eq(&other, k)) return i;
  }
}

/* Point slot at op i. */
static void map_set(pm_txn *t, size_t slot, size_t i) {
  if (!t->map[slot]) t->map_used++;
  t->map[slot] = MAP_TAG(t->ops[i].hash) | (uint32_t)(i + 1);
}

/* Refill the map from the ops, in its current storage. */
static void map_reindex(pm_txn *t) {
  memset(t->map, 0, t->map_cap * sizeof *t->map);
  t->map_used = 0;
  for (size_t i = 0; i < t->nops; i++) {
    pm_key k = pm_txn_op_key(t, &t->ops[i]);
    map_set(t, map_slot(t, &k, t->ops[i].hash), i);
  }
}

/* Grow the map to cap slots. */
static int map_grow(pm_txn *t, size_t cap) {
  uint64_t *m = pm_calloc(cap, sizeof *m);
  if (!m) return PM_NOMEM;
  pm_free(t->map);
  t->map = m;
  t->map_cap = cap;
  map_reindex(t);
  return PM_OK;
}

/* The newest op of the transaction on k (hash h), or NULL. */
static txn_op *txn_find(const pm_txn *t, const pm_key *k, uint64_t h) {
  if (!t || t->nops == 0) return NULL;
  uint64_t m = t->map[map_slot(t, k, h)];
  return m ? &t->ops[MAP_OP(m) - 1] : NULL;
}

txn_op *pm_txn_find(const pm_txn *t, const pm_key *k) {
  if (!t || t->nops == 0) return NULL;
  return txn_find(t, k, key_hash(k));
}

/* Is op the newest on its key (so part of the transaction's net effect)? */
int pm_txn_op_is_newest(const pm_txn *t, const txn_op *op) {
  pm_key k = pm_txn_op_key(t, op);
  return txn_find(t, &k, op->hash) == op;
}

/* Writer lock: in-process first (a transaction may start on one thread and
** end on another, so not a plain mutex), then the file lock. */
int pm_engine_writer_acquire(pm_engine *e, uint64_t timeout_ms, pm_err *err) {
  struct timespec dl;
  clock_gettime(CLOCK_REALTIME, &dl);
  uint64_t ns = (uint64_t)dl.tv_nsec + timeout_ms % 1000 * 1000000u;
  dl.tv_sec += (time_t)(timeout_ms / 1000 + ns / 1000000000u);
  dl.tv_nsec = (long)(ns % 1000000000u);
  uint64_t start = pm_now_ns();
  pthread_mutex_lock(&e->wmu);
  while (e->writer_busy) {
    if (pthread_cond_timedwait(&e->wcv, &e->wmu, &dl) == ETIMEDOUT && e->writer_busy) {
      pthread_mutex_unlock(&e->wmu);
      return pm_err_set(err, PM_BUSY, "the store is locked by another writer");
    }
  }
  e->writer_busy = 1;
  int held = e->writer_file_held;
  pthread_mutex_unlock(&e->wmu);
  if (held) return PM_OK;                      /* kept from the last transaction */
  uint64_t spent_ms = (pm_now_ns() - start) / 1000000u;
  int rc = pm_lock_writer_acquire(&e->lock, timeout_ms > spent_ms ? timeout_ms - spent_ms : 0, err);
  pthread_mutex_lock(&e->wmu);
  if (rc) {
    e->writer_busy = 0;
    pthread_cond_signal(&e->wcv);
  } else {
    e->writer_file_held = 1;
  }
  pthread_mutex_unlock(&e->wmu);
  return rc;
}

/* The transaction ends: the next one in this process may begin. The file
** lock is kept for it unless another engine waits, the engine stopped, or
** no background thread would let go of it later. */
void pm_engine_writer_release(pm_engine *e) {
  int keep = e->bg_started && !e->log.failed && !pm_lock_writer_wanted(&e->lock);
  if (!keep) pm_lock_writer_release(&e->lock);
  pthread_mutex_lock(&e->wmu);
  e->writer_file_held = keep;
  e->writer_idle_since = keep ? pm_now_ns() : 0;
  e->writer_busy = 0;
  int tell = keep && !e->writer_watched;
  if (tell) e->writer_watched = 1;
  pthread_cond_signal(&e->wcv);
  pthread_mutex_unlock(&e->wmu);
  if (tell) pm_engine_writer_kept(e);
}

int pm_engine_writer_let_go(pm_engine *e) {
  pthread_mutex_lock(&e->wmu);
  if (e->writer_file_held && !e->writer_busy &&
      (pm_now_ns() - e->writer_idle_since >= WRITER_KEEP_NS || pm_lock_writer_wanted(&e->lock))) {
    pm_lock_writer_release(&e->lock);
    e->writer_file_held = 0;
  }
  int kept = e->writer_file_held;
  if (!kept) e->writer_watched = 0;      /* the next kept lock tells the thread again */
  pthread_mutex_unlock(&e->wmu);
  return kept;
}

/* The error every write gets once the engine stopped on a failed write/fsync. */
int pm_engine_stopped_error(pm_engine *e, pm_err *err) {
  return pm_err_set(err, e->log.failed, "the store stopped after an earlier error: %s", e->log.failmsg);
}

/* Drop the ops after the first n and rebuild the map. */
static void txn_truncate(pm_txn *t, size_t n) {
  for (size_t i = n; i < t->nops; i++) pm_value_unref(t->ops[i].val);
  if (n < t->nops) {
    t->klen = n ? t->ops[n - 1].key_off + t->ops[n - 1].klen : 0;
    t->nops = n;
    if (t->map) map_reindex(t);
  }
}

/* Free a transaction and its buffers. */
void pm_txn_destroy(pm_txn *t) {
  if (!t) return;
  txn_truncate(t, 0);
  pm_free(t->ops);
  pm_free(t->keys);
  pm_free(t->map);
  pm_free(t->svp);
  pm_free(t->grp.recs);
  pm_free(t);
}

/* Done with a transaction: it becomes the engine's spare, buffers and all,
** when there is none yet and it stayed small, so that a stream of small
** transactions allocates nothing for its bookkeeping; else it is freed. */
static void txn_free(pm_txn *t) {
  pm_engine *e = t->e;
  txn_truncate(t, 0);
  if (t->cap > TXN_SPARE_OPS || t->kcap > TXN_SPARE_OPS * 64 || t->map_cap > TXN_SPARE_OPS * 2) {
    pm_txn_destroy(t);
    return;
  }
  pm_txn keep = *t;
  memset(t, 0, sizeof *t);
  t->ops = keep.ops; t->cap = keep.cap;
  t->keys = keep.keys; t->kcap = keep.kcap;
  t->map = keep.map; t->map_cap = keep.map_cap;
  t->svp = keep.svp; t->cap_svp = keep.cap_svp;
  t->grp.recs = keep.grp.recs; t->grp_cap = keep.grp_cap;
  if (t->map) memset(t->map, 0, t->map_cap * sizeof *t->map);
  pm_txn *none = NULL;
  if (!__atomic_compare_exchange_n(&e->spare_txn, &none, t, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
    pm_txn_destroy(t);
}

/* A fresh transaction: the engine's spare when it has one. */
static pm_txn *txn_new(pm_engine *e) {
  pm_txn *t = __atomic_exchange_n(&e->spare_txn, NULL, __ATOMIC_ACQ_REL);
  return t ? t : pm_calloc(1, sizeof *t);
}

int pm_txn_begin(pm_store *s, pm_txn **out, pm_err *err) {
  *out = NULL;
  int rc = pm_engine_handle_ok(s, err);
  if (rc) return rc;
  pm_engine *e = s->e;
  if (s->readonly || e->readonly) return pm_err_set(err, PM_READONLY, "the store is read-only");
  if (e->log.failed) return pm_engine_stopped_error(e, err);
  pm_txn *t = txn_new(e);
  if (!t) return pm_err_set(err, PM_NOMEM, "out of memory");
  t->s = s;
  t->e = e;
  if ((rc = pm_engine_writer_acquire(e, s->busy_ms, err)) != PM_OK) { txn_free(t); return rc; }
  pthread_mutex_lock(&e->catch_mu);
  uint64_t seen = pm_shm_counter(&e->lock);
  rc = pm_engine_catch_up_locked(e, 1, err);
  /* Unless this engine wrote last, learn where the log really ends (and cut
  ** what a writer that died left after the commit point). */
  int ours = seen == e->own_counter && pm_pos_cmp(e->applied, e->log.end) == 0;
  if (!rc && !e->log.failed && !ours) rc = pm_log_start_append(&e->log, e->applied, err);
  pthread_mutex_unlock(&e->catch_mu);
  if (!rc && e->log.failed) rc = pm_engine_stopped_error(e, err);
  if (rc) { pm_engine_writer_release(e); txn_free(t); return rc; }
  *out = t;
  return PM_OK;
}

int pm_txn_dirty(const pm_txn *t) { return t->nops > 0; }

/* pm_txn_get for a checked key of hash h. */
static int txn_get(pm_txn *t, const pm_key *k, uint64_t h, pm_value **val, pm_meta *meta, pm_err *err) {
  txn_op *op = txn_find(t, k, h);
  if (!op) return pm_engine_lookup(t->e, NULL, k, val, meta, err);
  if (op->type == PM_REC_DEL) return PM_NOTFOUND;
  if (meta) *meta = (pm_meta){ op->seq, op->val->type, op->val->len };
  if (val) *val = pm_value_ref(op->val);
  return PM_OK;
}

int pm_txn_get(pm_txn *t, const pm_key *k, pm_value **val, pm_meta *meta, pm_err *err) {
  int rc = pm_engine_handle_ok(t->s, err);
  if (!rc) rc = pm_engine_check_key(k, err);
  if (rc) return rc;
  return txn_get(t, k, key_hash(k), val, meta, err);
}

/* Append an op on k (hash h): its key copied into the arena, the map
** updated. */
static int txn_add(pm_txn *t, uint8_t type, const pm_key *k, uint64_t h, pm_value *val,
                   uint64_t *seq_out, pm_err *err) {
  if (t->nops == t->cap) {
    size_t cap = t->cap ? t->cap * 2 : 16;
    txn_op *p = pm_realloc(t->ops, cap * sizeof *p);
    if (!p) return pm_err_set(err, PM_NOMEM, "out of memory");
    t->ops = p;
    t->cap = cap;
  }
  if (t->klen + k->len > t->kcap) {
    size_t cap = t->kcap ? t->kcap * 2 : 4096;
    while (cap < t->klen + k->len) cap *= 2;
    uint8_t *p = pm_realloc(t->keys, cap);
    if (!p) return pm_err_set(err, PM_NOMEM, "out of memory");
    t->keys = p;
    t->kcap = cap;
  }
  if ((t->map_used + 1) * 2 > t->map_cap && map_grow(t, t->map_cap ? t->map_cap * 2 : 64))
    return pm_err_set(err, PM_NOMEM, "out of memory");
  size_t slot = map_slot(t, k, h);
  txn_op *op = &t->ops[t->nops];
  op->type = type;
  op->ktype = k->type;
  op->klen = k->len;
  op->key_off = t->klen;
  op->val = val;
  op->seq = t->e->next_seq++;
  op->hash = h;
  if (k->len) memcpy(t->keys + t->klen, k->data, k->len);
  t->klen += k->len;
  map_set(t, slot, t->nops++);
  if (seq_out) *seq_out = op->seq;
  return PM_OK;
}

int pm_txn_put(pm_txn *t, const pm_key *k, uint8_t vtype, const void *v, uint32_t vlen, int mode,
               uint64_t *seq_out, pm_err *err) {
  int rc = pm_engine_handle_ok(t->s, err);
  if (!rc) rc = pm_engine_check_key(k, err);
  if (rc) return rc;
  if (vlen > PM_MAX_VALUE)
    return pm_err_set(err, PM_TOOBIG, "value of %u bytes is larger than %u", vlen, PM_MAX_VALUE);
  if (vtype < PM_INTEGER || vtype > PM_NULL) return pm_err_set(err, PM_MISUSE, "bad value type %u", vtype);
  uint64_t h = key_hash(k);
  if (mode == PM_PUT_INSERT) {
    rc = txn_get(t, k, h, NULL, NULL, err);
    if (rc == PM_OK) return pm_err_set(err, PM_CONSTRAINT, "key already exists");
    if (rc != PM_NOTFOUND) return rc;
  }
  pm_value *val = pm_value_new(vtype, vlen);
  if (!val) return pm_err_set(err, PM_NOMEM, "out of memory for a value of %u bytes", vlen);
  if (vlen) memcpy(val->data, v, vlen);
  rc = txn_add(t, PM_REC_PUT, k, h, val, seq_out, err);
  if (rc) { pm_value_unref(val); return rc; }
  if (k->type == PM_INTEGER && k->len == 8) {
    int64_t i = (int64_t)pm_get_u64(k->data);
    if (!t->has_int || i > t->int_max) { t->int_max = i; t->has_int = 1; }
  }
  return PM_OK;
}

int pm_txn_delete(pm_txn *t, const pm_key *k, pm_err *err) {
  int rc = pm_engine_handle_ok(t->s, err);
  if (!rc) rc = pm_engine_check_key(k, err);
  if (rc) return rc;
  uint64_t h = key_hash(k);
  rc = txn_get(t, k, h, NULL, NULL, err);
  if (rc) return rc;
  return txn_add(t, PM_REC_DEL, k, h, NULL, NULL, err);
}

int pm_txn_next_int_key(pm_txn *t, int64_t *out, pm_err *err) {
  pm_engine *e = t->e;
  int has = e->has_int_hw || t->has_int;
  int64_t hw = e->has_int_hw ? e->int_hw : INT64_MIN;
  if (t->has_int && t->int_max > hw) hw = t->int_max;
  if (!has || hw < 0) { *out = 1; return PM_OK; }
  if (hw == INT64_MAX) return pm_err_set(err, PM_FULL, "no integer key is left above %lld", (long long)hw);
  *out = hw + 1;
  return PM_OK;
}


int pm_txn_savepoint(pm_txn *t, int level, pm_err *err) {
  while (t->nsvp && t->svp[t->nsvp - 1].level >= level) t->nsvp--;
  if (t->nsvp == t->cap_svp) {
    size_t cap = t->cap_svp ? t->cap_svp * 2 : 8;
    txn_svp *p = pm_realloc(t->svp, cap * sizeof *p);
    if (!p) return pm_err_set(err, PM_NOMEM, "out of memory");
    t->svp = p;
    t->cap_svp = cap;
  }
  t->svp[t->nsvp++] = (txn_svp){ level, t->nops };
  return PM_OK;
}

int pm_txn_release(pm_txn *t, int level, pm_err *err) {
  (void)err;
  while (t->nsvp && t->svp[t->nsvp - 1].level >= level) t->nsvp--;
  return PM_OK;
}

int pm_txn_rollback_to(pm_txn *t, int level, pm_err *err) {
  (void)err;
  while (t->nsvp && t->svp[t->nsvp - 1].level > level) t->nsvp--;
  if (level < 0 || t->nsvp == 0 || t->svp[t->nsvp - 1].level != level) {
    txn_truncate(t, 0);
    if (level < 0) t->nsvp = 0;
    return PM_OK;
  }
  txn_truncate(t, t->svp[t->nsvp - 1].nops);
  return PM_OK;
}

/* Build the group of the transaction's net effect (the newest op of each
** key, in seq order) with room for each record's position. */
static int build_group(pm_txn *t, pm_err *err) {
  size_t need = t->nops ? t->nops : 1;
  if (t->grp_cap < need) {
    pm_grec *recs = pm_realloc(t->grp.recs, sizeof(pm_grec) * need);
    if (!recs) return pm_err_set(err, PM_NOMEM, "out of memory");
    t->grp.recs = recs;
    t->grp_cap = need;
  }
  size_t n = 0;
  for (size_t i = 0; i < t->nops; i++) {
    const txn_op *op = &t->ops[i];
    if (!pm_txn_op_is_newest(t, op)) continue;
    pm_grec *r = &t->grp.recs[n++];
    r->type = op->type;
    r->ktype = op->ktype;
    r->klen = op->klen;
    r->key_off = op->key_off;
    r->seq = op->seq;
    r->vtype = op->val ? op->val->type : 0;
    r->vlen = op->val ? op->val->len : 0;
  }
  t->grp.n = n;
  t->grp.keys = t->keys;
  return PM_OK;
}

/* The op a group record came from (same seq: seqs are unique). */
static const txn_op *op_of(const pm_txn *t, const pm_grec *r, size_t *hint) {
  while (*hint < t->nops && t->ops[*hint].seq != r->seq) (*hint)++;
  return &t->ops[*hint];
}

/* Write the group's records and its commit record to the log. */
static int write_group(pm_txn *t, pm_err *err) {
  pm_engine *e = t->e;
  size_t hint = 0;
  int rc = PM_OK;
  for (size_t i = 0; i < t->grp.n && !rc; i++) {
    pm_grec *r = &t->grp.recs[i];
    const txn_op *op = op_of(t, r, &hint);
    pm_key k = pm_txn_op_key(t, op);
    rc = pm_log_add(&e->log, r->type, &k, r->vtype, op->val ? op->val->data : NULL, r->vlen,
                    r->seq, &r->at, err);
  }
  if (rc) return rc;
  t->group_id = e->next_seq++;
  pm_pos start = t->grp.n ? t->grp.recs[0].at : e->log.end;
  pm_pos at;
  rc = pm_log_add_commit(&e->log, t->group_id, (uint32_t)t->grp.n, start, &at, err);
  if (!rc) rc = pm_log_flush(&e->log, err);
  if (rc) return rc;
  t->grp.id = t->group_id;
  t->group_end = e->log.end;
  return PM_OK;
}

/* Write the transaction as one group; under FULL (and when asked) wait
** until it is durable. A second call first aborts the earlier group. */
static int txn_write(pm_txn *t, int durable, pm_err *err) {
  pm_engine *e = t->e;
  if (e->log.failed) return pm_engine_stopped_error(e, err);
  int rc = PM_OK;
  if (t->prepared) {
    rc = pm_log_add_abort(&e->log, t->group_id, err);
    t->prepared = 0;
    if (rc) return rc;
  }
  if ((rc = pm_log_roll_if_full(&e->log, err)) != PM_OK) return rc;
  if ((rc = build_group(t, err)) != PM_OK) return rc;
  size_t kbytes = 0;
  for (size_t i = 0; i < t->grp.n; i++) kbytes += t->grp.recs[i].klen;
  pthread_rwlock_wrlock(&e->ix_lock);
  rc = pm_index_reserve(e->ix, t->grp.n, kbytes);
  pthread_rwlock_unlock(&e->ix_lock);
  if (rc) return pm_err_set(err, PM_NOMEM, "out of memory for the index");
  if ((rc = write_group(t, err)) != PM_OK) return rc;
  if (durable) rc = pm_log_sync(&e->log, t->group_end, -1, err);
  return rc;
}

int pm_txn_prepare(pm_txn *t, pm_err *err) {
  int rc0 = pm_engine_handle_ok(t->s, err);
  if (rc0) return rc0;
  if (t->nops == 0) return PM_OK;
  int rc = txn_write(t, t->s->sync == PM_SYNC_FULL, err);
  if (rc) return rc;
  t->prepared = 1;
  pm_engine *e = t->e;
  pthread_mutex_lock(&e->catch_mu);
  pm_engine_publish(e, t->group_end);
  pthread_mutex_unlock(&e->catch_mu);
  return PM_OK;
}

/* Free the transaction's memory. */

/* Offer the committed values to the cache: a value just written is likely
** read soon (a queue's consumer, read-your-writes). */
static void cache_group(pm_txn *t) {
  size_t hint = 0;
  for (size_t i = 0; i < t->grp.n; i++) {
    const pm_grec *r = &t->grp.recs[i];
    const txn_op *op = op_of(t, r, &hint);
    if (op->val && op->val->len) pm_cache_put(t->e->cache, pm_engine_cache_id(r->at), op->val);
  }
}

/* Make the written group visible and published to other engines. */
static int publish_group(pm_txn *t, pm_err *err) {
  pm_engine *e = t->e;
  pthread_mutex_lock(&e->catch_mu);
  pthread_rwlock_wrlock(&e->ix_lock);
  int rc = pm_engine_apply_group(e, &t->grp, err);
  /* Compaction only pays off once a fifth of the versions are dead. */
  uint64_t versions = pm_index_versions(e->ix), live = pm_index_count(e->ix);
  int compact = versions * 4 >= live * 5 + 256;
  pthread_rwlock_unlock(&e->ix_lock);
  if (!rc) {
    if (t->has_int && (!e->has_int_hw || t->int_max > e->int_hw)) { e->int_hw = t->int_max; e->has_int_hw = 1; }
    e->applied = t->group_end;
    pm_store64(&e->last_seq, t->group_id);
    pm_engine_publish(e, e->applied);
    e->commits++;
  } else {
    pm_log_fail(&e->log, err);      /* memory and log disagree: stop until reopened */
  }
  pthread_mutex_unlock(&e->catch_mu);
  if (!rc) cache_group(t);
  if (!rc && compact) {
    uint64_t keep = pm_engine_oldest_visible(e);
    pthread_rwlock_wrlock(&e->ix_lock);
    pm_index_compact(e->ix, keep);
    pthread_rwlock_unlock(&e->ix_lock);
  }
  return rc;
}

int pm_txn_commit(pm_txn *t, pm_err *err) {
  pm_engine *e = t->e;
  int rc = pm_engine_handle_ok(t->s, err);
  if (rc) { pm_txn_abort(t); return rc; }
  int late_sync = 0;
  if (t->nops && !t->prepared) {
    rc = txn_write(t, 0, err);
    late_sync = t->s->sync == PM_SYNC_FULL;
  }
  if (rc) { pm_txn_abort(t); return rc; }
  if (t->nops) rc = publish_group(t, err);
  pm_pos end = t->group_end;
  pm_engine_writer_release(e);
  txn_free(t);
  /* Outside the writer lock, so that concurrent committers share the fsync. */
  if (!rc && late_sync) rc = pm_log_sync(&e->log, end, -1, err);
  return rc;
}

void pm_txn_abort(pm_txn *t) {
  pm_engine *e = t->e;
  /* A transaction inherited through fork() belongs to the parent: its log,
  ** its mutexes and its OFD writer lock (which the child shares, so
  ** releasing it here would release the parent's). Only free the memory. */
  if (pm_engine_handle_ok(t->s, NULL) != PM_OK) { pm_txn_destroy(t); return; }
  if (t->prepared && !e->log.failed) {
    pm_err ignored;
    if (pm_log_add_abort(&e->log, t->group_id, &ignored) == PM_OK &&
        pm_log_flush(&e->log, &ignored) == PM_OK) {
      pthread_mutex_lock(&e->catch_mu);
      e->applied = e->log.end;
      pm_engine_publish(e, e->applied);
      pthread_mutex_unlock(&e->catch_mu);
    }
  }
  pm_engine_writer_release(e);
  txn_free(t);
}

/* A transaction of one operation. */
static int one_shot(pm_store *s, const pm_key *k, int is_put, uint8_t vtype, const void *v,
                    uint32_t vlen, pm_err *err) {
  pm_txn *t;
  int rc = pm_txn_begin(s, &t, err);
  if (rc) return rc;
  rc = is_put ? pm_txn_put(t, k, vtype, v, vlen, PM_PUT_REPLACE, NULL, err) : pm_txn_delete(t, k, err);
  if (rc) { pm_txn_abort(t); return rc; }
  return pm_txn_commit(t, err);
}

int pm_store_put(pm_store *s, const pm_key *k, uint8_t vtype, const void *v, uint32_t vlen,
                 pm_err *err) {
  return one_shot(s, k, 1, vtype, v, vlen, err);
}

int pm_store_delete(pm_store *s, const pm_key *k, pm_err *err) {
  return one_shot(s, k, 0, 0, NULL, 0, err);
}

