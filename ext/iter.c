/*
** iter.c - iterators: rows of a snapshot in sequence order, ascending or
** descending, filtered by seq bounds and a key predicate, read from the
** index in batches under its read lock (so a long scan never stalls
** writers), plus a write transaction's own rows.
*/
#include "engine.h"

#include <string.h>

/* ======================================================================== */
/* 4b. Iterators                                                             */
/* ======================================================================== */

#define ITER_BATCH 64

/* A row fetched from the index (or the transaction) into the iterator. */
typedef struct iter_row {
  pm_meta meta;
  pm_pos at;               /* index rows: where the record is */
  uint8_t ktype;
  uint32_t klen;
  size_t key_off;          /* in pm_iter.kbuf */
  pm_value *val;           /* transaction rows: the value (a reference) */
} iter_row;

struct pm_iter {
  pm_store *s;
  pm_engine *e;
  pm_txn *txn;
  pm_iter_spec spec;
  pm_snap own_snap;        /* pinned by the iterator when none was given */
  uint64_t snap;
  pm_index *ix;            /* the index the snapshot reads */
  int phase;               /* 0: index rows, 1: transaction rows, 2: done */
  int index_started;
  uint64_t gen;            /* index generation pos belongs to */
  uint32_t pos;
  uint64_t last_seq;       /* seq of the last index row fetched (to re-seek) */
  size_t tpos;             /* next transaction op to look at */
  size_t tend;             /* ops written before the iterator opened */
  iter_row rows[ITER_BATCH];
  size_t nrows, cur;
  uint8_t *kbuf;
  size_t klen, kcap;
  pm_key key;              /* the current row's key */
  pm_value *held;          /* the current row's value, when read as a whole */
  /* Read-ahead for values that are not cached: a scan visits records in
  ** log order, so one large read serves many rows. */
  uint8_t *ahead;
  pm_pos ahead_at;         /* what ahead[0] holds */
  size_t ahead_len;
};

#define AHEAD_SIZE (256u << 10)

static int seq_in_range(const pm_iter *it, uint64_t seq) {
  return seq >= it->spec.min_seq && seq <= it->spec.max_seq;
}

static int key_passes(const pm_iter *it, const pm_key *k) {
  return !it->spec.match || it->spec.match(it->spec.match_ctx, k);
}

/* Copy a key into the batch's key buffer, followed by a 0 byte; -1 on OOM. */
static int keep_key(pm_iter *it, iter_row *row, const pm_key *k) {
  if (it->klen + k->len + 1 > it->kcap) {
    size_t cap = it->kcap ? it->kcap * 2 : 4096;
    while (cap < it->klen + k->len + 1) cap *= 2;
    uint8_t *p = pm_realloc(it->kbuf, cap);
    if (!p) return -1;
    it->kbuf = p;
    it->kcap = cap;
  }
  if (k->len) memcpy(it->kbuf + it->klen, k->data, k->len);
  row->ktype = k->type;
  row->klen = k->len;
  row->key_off = it->klen;
  it->kbuf[it->klen + k->len] = 0;
  it->klen += k->len + 1;
  return 0;
}

/* Position in the index: first use, or after a compaction renumbered it. */
static void index_position(pm_iter *it) {
  pm_index *ix = it->ix;
  if (it->index_started && it->gen == pm_index_generation(ix)) return;
  if (!it->spec.desc) {
    uint64_t from = it->index_started ? it->last_seq + 1 : it->spec.min_seq;
    it->pos = pm_index_seek(ix, from);
  } else if (it->index_started) {
    it->pos = pm_index_seek(ix, it->last_seq);
  } else {
    it->pos = it->spec.max_seq == UINT64_MAX ? pm_index_end(ix) : pm_index_seek(ix, it->spec.max_seq + 1);
  }
  it->gen = pm_index_generation(ix);
  it->index_started = 1;
}

/* Fetch up to ITER_BATCH matching index rows under one read lock. Returns
** 1 when the index part is exhausted. */
static int fill_from_index(pm_iter *it, pm_err *err) {
  pm_engine *e = it->e;
  int done = 0;
  pthread_rwlock_rdlock(&e->ix_lock);
  index_position(it);
  while (it->nrows < ITER_BATCH) {
    pm_ientry ie;
    int rc = it->spec.desc ? pm_index_prev(it->ix, &it->pos, it->snap, &ie)
                           : pm_index_next(it->ix, &it->pos, it->snap, &ie);
    if (rc) { done = 1; break; }
    it->last_seq = ie.seq;
    if (!seq_in_range(it, ie.seq)) {
      if (it->spec.desc ? ie.seq < it->spec.min_seq : ie.seq > it->spec.max_seq) { done = 1; break; }
      continue;
    }
    if (pm_txn_find(it->txn, &ie.key) || !key_passes(it, &ie.key)) continue;
    iter_row *row = &it->rows[it->nrows];
    if (keep_key(it, row, &ie.key)) { pm_err_set(err, PM_NOMEM, "out of memory"); done = -1; break; }
    row->meta = (pm_meta){ ie.seq, ie.vtype, ie.vlen };
    row->at = (pm_pos){ ie.seg, ie.off };
    row->val = NULL;
    it->nrows++;
  }
  pthread_rwlock_unlock(&e->ix_lock);
  return done;
}

/* Fetch matching rows written by the transaction itself (their seqs are
** above every committed one). Returns 1 when exhausted. */
static int fill_from_txn(pm_iter *it, pm_err *err) {
  pm_txn *t = it->txn;
  if (t && it->tend > t->nops) it->tend = t->nops;     /* a ROLLBACK TO dropped ops */
  while (t && it->nrows < ITER_BATCH && it->tpos < it->tend) {
    size_t i = it->spec.desc ? it->tend - 1 - it->tpos : it->tpos;
    it->tpos++;
    const txn_op *op = &t->ops[i];
    if (op->type != PM_REC_PUT || !seq_in_range(it, op->seq) || !pm_txn_op_is_newest(t, op)) continue;
    pm_key k = pm_txn_op_key(t, op);
    if (!key_passes(it, &k)) continue;
    iter_row *row = &it->rows[it->nrows];
    if (keep_key(it, row, &k)) return pm_err_set(err, PM_NOMEM, "out of memory"), -1;
    row->meta = (pm_meta){ op->seq, op->val->type, op->val->len };
    row->val = pm_value_ref(op->val);
    it->nrows++;
  }
  return !t || it->tpos >= it->tend;
}

/* Refill the batch, moving through the phases: ascending order reads the
** index then the transaction's rows; descending the other way round. */
static void drop_batch(pm_iter *it) {
  for (size_t i = 0; i < it->nrows; i++) pm_value_unref(it->rows[i].val);
  it->nrows = it->cur = it->klen = 0;
}

static int refill(pm_iter *it, pm_err *err) {
  drop_batch(it);
  while (it->nrows == 0 && it->phase < 2) {
    int index_phase = (it->phase == 0) != (it->spec.desc != 0);
    int done = index_phase ? fill_from_index(it, err) : fill_from_txn(it, err);
    if (done < 0) return err ? err->code : PM_NOMEM;
    if (done) it->phase++;
  }
  return PM_OK;
}

int pm_iter_open(pm_store *s, pm_txn *txn, const pm_snap *snap, const pm_iter_spec *spec,
                 pm_iter **out, pm_err *err) {
  *out = NULL;
  int rc = pm_engine_handle_ok(s, err);
  if (rc) return rc;
  pm_iter *it = pm_calloc(1, sizeof *it);
  if (!it) return pm_err_set(err, PM_NOMEM, "out of memory");
  it->s = s;
  it->e = s->e;
  it->txn = txn;
  it->spec = *spec;
  if (txn) {
    it->tend = txn->nops;
    it->ix = s->e->ix;                        /* the writer's: it cannot be replaced now */
    it->snap = pm_load64(&s->e->last_seq);     /* the writer's view: nothing newer can commit */
  } else if (snap) {
    it->snap = snap->seq;
    it->ix = snap->index ? snap->index : s->e->ix;
  } else {
    rc = pm_store_snap_begin(s, &it->own_snap, err);
    if (rc) { pm_free(it); return rc; }
    it->snap = it->own_snap.seq;
    it->ix = it->own_snap.index;
  }
  *out = it;
  return PM_OK;
}

int pm_iter_next(pm_iter *it, pm_err *err) {
  pm_value_unref(it->held);
  it->held = NULL;
  if (it->cur + 1 < it->nrows) {
    it->cur++;
  } else {
    int rc = refill(it, err);
    if (rc) return rc;
    if (it->nrows == 0) return PM_NOTFOUND;
  }
  iter_row *row = &it->rows[it->cur];
  it->key = (pm_key){ row->ktype, row->klen, it->kbuf + row->key_off };
  return PM_OK;
}

const pm_key *pm_iter_key(pm_iter *it) { return &it->key; }

void pm_iter_meta(pm_iter *it, pm_meta *out) { *out = it->rows[it->cur].meta; }

/* Whether the read-ahead buffer holds the whole value of row. */
static int ahead_covers(const pm_iter *it, const iter_row *row) {
  uint64_t end = row->at.off + PM_REC_HEADER + row->klen + row->meta.vlen;
  return it->ahead_len && it->ahead_at.seg == row->at.seg && row->at.off >= it->ahead_at.off &&
         end <= it->ahead_at.off + it->ahead_len;
}

/* Refill the read-ahead buffer from row's record onwards. PM_NOTFOUND when
** the record is too big for it (the caller reads the value directly). */
static int ahead_fill(pm_iter *it, const iter_row *row, pm_err *err) {
  uint64_t end = row->at.off + PM_REC_HEADER + row->klen + row->meta.vlen;
  if (end - row->at.off > AHEAD_SIZE) return PM_NOTFOUND;
  if (!it->ahead && !(it->ahead = pm_malloc(AHEAD_SIZE))) return PM_NOTFOUND;
  size_t got = 0;
  int rc = pm_log_read_raw(&it->e->log, row->at.seg, row->at.off, it->ahead, AHEAD_SIZE, &got, err);
  it->ahead_len = rc ? 0 : got;
  it->ahead_at = row->at;
  if (rc) return rc;
  if (end > row->at.off + got) {
    it->ahead_len = 0;
    return pm_err_set(err, PM_CORRUPT, "a record ends beyond its segment at offset %llu",
                      (unsigned long long)row->at.off);
  }
  return PM_OK;
}

/* Whether the rows left in the batch lie close together after row, so that
** one read-ahead serves most of them (a plain scan) rather than being read
** for one row (a sparse, filtered one): at least half of them, and two or
** more, start within AHEAD_SIZE of row in its segment. */
static int batch_is_dense(const pm_iter *it, const iter_row *row) {
  size_t left = it->nrows - it->cur, near = 0;
  for (size_t i = it->cur; i < it->nrows; i++) {
    const iter_row *r = &it->rows[i];
    near += !r->val && r->at.seg == row->at.seg && r->at.off >= row->at.off &&
            r->at.off - row->at.off < AHEAD_SIZE;
  }
  return near >= 2 && near * 2 >= left;
}

/* View the value of row in the read-ahead buffer (which must cover it). */
static void view_ahead(const pm_iter *it, const iter_row *row, pm_view *out) {
  uint64_t start = row->at.off + PM_REC_HEADER + row->klen;
  *out = (pm_view){ row->meta.vtype, row->meta.vlen, it->ahead + (start - it->ahead_at.off), NULL };
}

static void view_value(pm_value *v, pm_view *out) {
  *out = (pm_view){ v->type, v->len, v->data, v };
}

/* A scan visits records in log order, so the read-ahead buffer serves most
** rows without a lookup: when the batch's rows lie close together the
** buffer is refilled from this row on (one large read for many rows, no
** lock); a row of a sparse batch comes from the cache when cached, else
** through the buffer all the same; a value too large for the buffer is
** read on its own. */
int pm_iter_view(pm_iter *it, pm_view *out, pm_err *err) {
  iter_row *row = &it->rows[it->cur];
  if (row->val) { view_value(row->val, out); return PM_OK; }
  if (it->held) { view_value(it->held, out); return PM_OK; }
  if (ahead_covers(it, row)) { view_ahead(it, row, out); return PM_OK; }
  if (!batch_is_dense(it, row)) {
    it->held = pm_cache_get(it->e->cache, pm_engine_cache_id(row->at));
    if (it->held) { view_value(it->held, out); return PM_OK; }
  }
  int rc = ahead_fill(it, row, err);
  if (rc == PM_OK) { view_ahead(it, row, out); return PM_OK; }
  if (rc != PM_NOTFOUND) return rc;
  rc = pm_engine_read_value(it->e, row->at, row->klen, row->meta.vtype, row->meta.vlen, &it->held, err);
  if (rc) return rc;
  view_value(it->held, out);
  return PM_OK;
}

int pm_iter_value(pm_iter *it, pm_value **out, pm_err *err) {
  pm_view view;
  int rc = pm_iter_view(it, &view, err);
  if (rc) return rc;
  if (view.ref) { *out = pm_value_ref(view.ref); return PM_OK; }
  pm_value *v = pm_value_new(view.type, view.len);
  if (!v) return pm_err_set(err, PM_NOMEM, "out of memory");
  if (view.len) memcpy(v->data, view.data, view.len);
  *out = v;
  return PM_OK;
}

void pm_iter_close(pm_iter *it) {
  if (!it) return;
  pm_value_unref(it->held);
  drop_batch(it);
  pm_free(it->ahead);
  pm_store_snap_end(it->s, &it->own_snap);
  pm_free(it->kbuf);
  pm_free(it);
}

