/*
** compact.c - rewriting the log: salvage of a damaged store
** (pm_store_recover).
*/
#include "engine.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* Salvage state: the rebuilt index and the log being rewritten. */
typedef struct salvage {
  pm_engine e;             /* a bare engine: index and log only */
  pm_scan scan;
  uint32_t first_new;      /* first segment written by the rewrite */
  uint64_t kept;
} salvage;

/* Copy every live record of the rebuilt index into new segments, as one
** committed group, and make them the store's only segments. */
static int salvage_rewrite(salvage *sv, pm_err *err) {
  pm_engine *e = &sv->e;
  pm_log *log = &e->log;
  uint64_t size = 0;
  pm_segfile *act = NULL;
  for (uint32_t i = 0; i < log->nfiles; i++) if (log->files[i].num == log->man.active) act = &log->files[i];
  if (act) size = act->size;
  int rc = pm_log_start_append(log, (pm_pos){ log->man.active, size }, err);
  if (!rc) rc = pm_log_roll(log, err);
  if (rc) return rc;
  sv->first_new = log->end.seg;
  uint32_t pos = pm_index_seek(e->ix, 0);
  pm_ientry ie;
  pm_pos start = log->end;
  uint32_t n = 0;
  while (!rc && pm_index_next(e->ix, &pos, PM_SEQ_LATEST, &ie) == PM_OK) {
    pm_value *v = NULL;
    rc = pm_engine_read_value(e, (pm_pos){ ie.seg, ie.off }, ie.key.len, ie.vtype, ie.vlen, &v, err);
    pm_pos at;
    if (!rc) rc = pm_log_add(log, PM_REC_PUT, &ie.key, ie.vtype, v->data, ie.vlen, ie.seq, &at, err);
    if (!rc && n++ == 0) start = at;
    pm_value_unref(v);
  }
  if (!rc) rc = pm_log_add_commit(log, e->next_seq++, n, start, NULL, err);
  if (!rc) rc = pm_log_flush(log, err);
  if (!rc) rc = pm_log_sync(log, log->end, -1, err);
  sv->kept = n;
  return rc;
}

/* Point the manifest at the new segments only, then delete the old ones. */
static int salvage_switch(salvage *sv, pm_err *err) {
  pm_engine *e = &sv->e;
  pm_manifest *m = &e->log.man;
  uint32_t nold = 0;
  while (nold < m->nsegs && m->segs[nold] < sv->first_new) nold++;
  uint32_t *old = pm_malloc(sizeof(uint32_t) * (nold ? nold : 1));
  if (!old) return pm_err_set(err, PM_NOMEM, "out of memory");
  memcpy(old, m->segs, sizeof(uint32_t) * nold);
  memmove(m->segs, m->segs + nold, sizeof(uint32_t) * (m->nsegs - nold));
  m->nsegs -= nold;
  m->seq_hw = e->next_seq;
  m->int_hw = e->int_hw;
  m->has_int_hw = e->has_int_hw;
  int rc = pm_manifest_write(e->io, e->dir, m, NULL, err);
  if (!rc) rc = pm_engine_remove_segments(e->io, e->dir, old, nold, err);
  if (!rc && e->io->fsync_dir(e->dir) < 0) rc = pm_err_sys(err, errno, "cannot fsync directory %s", e->dir);
  pm_free(old);
  return rc;
}

static char *salvage_report(const salvage *sv) {
  char at[96] = "null";
  if (sv->scan.damaged) {
    char name[32];
    pm_seg_name(sv->scan.damage.seg, name, sizeof name);
    snprintf(at, sizeof at, "\"%s offset %llu\"", name, (unsigned long long)sv->scan.damage.off);
  }
  return pm_sprintf("{\"damaged\":%s,\"first_damage\":%s,\"dropped_bytes\":%llu,"
                    "\"dropped_transactions\":%llu,\"transactions\":%llu,\"keys\":%llu}",
                    sv->scan.damaged ? "true" : "false", at,
                    (unsigned long long)sv->scan.dropped_bytes, (unsigned long long)sv->scan.dropped_groups,
                    (unsigned long long)sv->scan.groups, (unsigned long long)sv->kept);
}

int pm_store_recover(const char *path, const pm_options *o, char **report, pm_err *err) {
  pm_options defaults;
  if (!o) { pm_options_init(&defaults); o = &defaults; }
  *report = NULL;
  salvage sv;
  memset(&sv, 0, sizeof sv);
  pm_engine *e = &sv.e;
  e->io = o->io ? o->io : &pm_io_posix;
  e->dir = (char *)path;
  pm_lock l;
  int rc = pm_engine_lock_offline(&l, e->io, path, err);
  if (rc) return rc;
  pm_manifest m;
  rc = pm_manifest_read(e->io, path, &m, err);
  if (!rc) { rc = pm_log_open(&e->log, e->io, path, &m, 0, err); e->log_open = 1; pm_manifest_clear(&m); }
  if (!rc && !(e->ix = pm_index_new(e->log.man.seed))) rc = pm_err_set(err, PM_NOMEM, "out of memory");
  if (!rc) {
    pm_index_load_begin(e->ix);
    pm_pos from = { e->log.files[0].num, PM_SEG_HEADER };
    pm_loader l = { e, e->ix, 0 };
    rc = pm_log_scan(&e->log, from, (pm_pos){ 0, 0 }, PM_SCAN_SALVAGE, (pm_pos){ 0, 0 }, pm_engine_apply_load, &l, &sv.scan, err);
    if (!rc && pm_index_load_end(e->ix)) rc = pm_err_set(err, PM_NOMEM, "out of memory");
    e->next_seq = sv.scan.max_seq + 1 > e->log.man.seq_hw ? sv.scan.max_seq + 1 : e->log.man.seq_hw;
  }
  if (!rc && (e->cache = pm_cache_new(0)) == NULL) rc = pm_err_set(err, PM_NOMEM, "out of memory");
  if (!rc && sv.scan.damaged) rc = salvage_rewrite(&sv, err);
  if (!rc && sv.scan.damaged) rc = salvage_switch(&sv, err);
  if (!rc) sv.kept = sv.kept ? sv.kept : pm_index_count(e->ix);
  if (!rc && !(*report = salvage_report(&sv))) rc = pm_err_set(err, PM_NOMEM, "out of memory");
  if (e->log_open) pm_log_close(&e->log);
  if (e->ix) pm_index_free(e->ix);
  if (e->cache) pm_cache_free(e->cache);
  pm_lock_close(&l);
  return rc;
}

/* ======================================================================== */
/* Shrink: online compaction                                                 */
/* ======================================================================== */
/*
** A shrink rewrites the live records of every sealed segment into new
** segments and then drops the old ones, while reads and writes go on:
**
**   1. begin   (writer lock, short) seal the active segment so everything
**              written so far is in sealed segments: those are the inputs;
**              pin a snapshot S of the newest state.
**   2. copy    (no lock) every version visible at S whose record lies in an
**              input is appended, seq kept, to new segments; each new
**              segment is one committed group, fsynced, with its hint file.
**              Writers append to the active segment meanwhile.
**   3. switch  (writer lock, short) one new manifest names the new segments
**              instead of the inputs (temp file, fsync, rename, directory
**              fsync: the one atomic step). Inputs stay open for readers.
**   4. relocate (index lock in batches) the index points at the copies.
**   5. remove  the input files are deleted; they are closed once no reader
**              can need them.
**
** A crash before step 3 leaves the old state (the new files are orphans,
** deleted at the next open); after it, the new one (the inputs are orphans).
** Records written after S live in the active segment, which is never an
** input, so nothing newer is lost; a delete dropped with its input also had
** every older record of its key in the inputs, so no deleted key comes back.
** A failed shrink removes what it wrote and leaves the next one free to run.
*/

typedef struct shrink_job {
  pm_engine *e;
  uint64_t busy_ms;
  uint32_t *inputs;
  uint32_t ninputs;
  uint64_t snap;
  pm_index *ix;              /* the index the snapshot reads */
  int pinned;
  uint32_t *outputs;
  uint64_t *out_recs;        /* records in each output, its commit included */
  uint32_t noutputs;
  pm_segwriter w;
  int writing;
  pm_group moved;            /* every copied record, in copy order */
  size_t cap_recs, cap_keys, keys_len;
  size_t out_first;          /* first record of the output being written */
  uint64_t bytes_before, bytes_after, copied;
  uint64_t held_ns;          /* longest time the writer lock was held */
  int switched;
} shrink_job;

static int is_input(const shrink_job *j, uint32_t seg) {
  uint32_t lo = 0, hi = j->ninputs;
  while (lo < hi) {
    uint32_t mid = (lo + hi) / 2;
    if (j->inputs[mid] < seg) lo = mid + 1; else hi = mid;
  }
  return lo < j->ninputs && j->inputs[lo] == seg;
}

static uint64_t log_bytes(pm_log *log) {
  uint64_t n = 0;
  pthread_rwlock_rdlock(&log->segs_lock);
  for (uint32_t i = 0; i < log->nfiles; i++) if (!log->files[i].retired) n += __atomic_load_n(&log->files[i].size, __ATOMIC_RELAXED);
  pthread_rwlock_unlock(&log->segs_lock);
  return n;
}

/* Step 1, under the writer lock: seal, choose the inputs, pin the snapshot. */
static int shrink_begin_locked(shrink_job *j, pm_err *err) {
  pm_engine *e = j->e;
  pthread_mutex_lock(&e->catch_mu);
  int rc = pm_engine_catch_up_locked(e, 1, err);
  if (!rc) rc = pm_log_start_append(&e->log, e->applied, err);
  if (!rc && e->log.end.off > PM_SEG_HEADER) {
    rc = pm_log_roll(&e->log, err);
    if (!rc) {
      e->applied = e->log.end;
      pm_engine_publish(e, e->applied);
    }
  }
  pthread_mutex_unlock(&e->catch_mu);
  if (rc) return rc;
  j->bytes_before = log_bytes(&e->log);
  pthread_rwlock_rdlock(&e->log.segs_lock);
  j->inputs = pm_malloc(sizeof(uint32_t) * (e->log.nfiles + 1));
  for (uint32_t i = 0; j->inputs && i < e->log.nfiles; i++) {
    const pm_segfile *f = &e->log.files[i];
    if (!f->retired && f->num != e->log.man.active) j->inputs[j->ninputs++] = f->num;
  }
  pthread_rwlock_unlock(&e->log.segs_lock);
  if (!j->inputs) return pm_err_set(err, PM_NOMEM, "out of memory");
  if (pm_engine_pin_latest(e, &j->snap, &j->ix)) return pm_err_set(err, PM_NOMEM, "out of memory");
  j->pinned = 1;
  return PM_OK;
}

/* Remember a copied record (its new position) for the hint and relocation. */
static int note_moved(shrink_job *j, const pm_ientry *ie, pm_pos at) {
  pm_group *g = &j->moved;
  if (g->n == j->cap_recs) {
    size_t cap = j->cap_recs ? j->cap_recs * 2 : 1024;
    pm_grec *p = pm_realloc(g->recs, cap * sizeof *p);
    if (!p) return PM_NOMEM;
    g->recs = p;
    j->cap_recs = cap;
  }
  if (j->keys_len + ie->key.len > j->cap_keys) {
    size_t cap = j->cap_keys ? j->cap_keys * 2 : 65536;
    while (cap < j->keys_len + ie->key.len) cap *= 2;
    uint8_t *p = pm_realloc(g->keys, cap);
    if (!p) return PM_NOMEM;
    g->keys = p;
    j->cap_keys = cap;
  }
  pm_grec *r = &g->recs[g->n++];
  *r = (pm_grec){ PM_REC_PUT, ie->key.type, ie->vtype, ie->key.len, ie->vlen, ie->seq, at, j->keys_len };
  memcpy(g->keys + j->keys_len, ie->key.data, ie->key.len);
  j->keys_len += ie->key.len;
  return PM_OK;
}

/* Close the output being written: commit record, fsync, hint file. */
static int finish_output(shrink_job *j, pm_err *err) {
  if (!j->writing) return PM_OK;
  j->writing = 0;
  int rc = pm_segw_finish(&j->w, err);
  if (rc) return rc;
  j->out_recs[j->noutputs - 1] = j->w.nrec + 1u;
  pm_group part = j->moved;
  part.recs += j->out_first;
  part.n -= j->out_first;
  part.id = j->w.max_seq;
  j->out_first = j->moved.n;
  j->bytes_after += j->w.off;
  return pm_hint_write_group(&j->e->log, j->w.num, j->w.off, &part, err);
}

/* Open a new output when none is open or the current one is full. */
static int output_for(shrink_job *j, pm_err *err) {
  pm_engine *e = j->e;
  if (j->writing && j->w.off < e->log.man.segment_size) return PM_OK;
  int rc = finish_output(j, err);
  if (rc) return rc;
  uint32_t *o = pm_realloc(j->outputs, sizeof(uint32_t) * (j->noutputs + 1));
  if (o) j->outputs = o;
  uint64_t *r = o ? pm_realloc(j->out_recs, sizeof(uint64_t) * (j->noutputs + 1)) : NULL;
  if (r) j->out_recs = r;
  if (!o || !r) return pm_err_set(err, PM_NOMEM, "out of memory");
  rc = pm_segw_open(&e->log, &j->w, err);
  if (rc) return rc;
  j->outputs[j->noutputs++] = j->w.num;
  j->writing = 1;
  return PM_OK;
}

/* Copy one version: read its value from the input, append it to an output. */
static int copy_version(shrink_job *j, const pm_ientry *ie, uint8_t **buf, size_t *cap, pm_err *err) {
  if (ie->vlen + 1u > *cap) {
    uint8_t *p = pm_realloc(*buf, ie->vlen + 1u);
    if (!p) return pm_err_set(err, PM_NOMEM, "out of memory");
    *buf = p;
    *cap = ie->vlen + 1u;
  }
  int rc = pm_log_read_value(&j->e->log, (pm_pos){ ie->seg, ie->off }, ie->key.len, *buf, ie->vlen, err);
  if (!rc) rc = output_for(j, err);
  pm_pos at;
  if (!rc) rc = pm_segw_add(&j->w, &ie->key, ie->vtype, *buf, ie->vlen, ie->seq, &at, err);
  if (!rc && note_moved(j, ie, at)) rc = pm_err_set(err, PM_NOMEM, "out of memory");
  j->copied += !rc;
  return rc;
}

#define COPY_BATCH 256

/* Collect up to COPY_BATCH versions visible at the snapshot that lie in
** inputs, keys copied into *kbuf (offsets in key.data until fixed). *oom is
** set when the key buffer could not grow: the batch stops short. */
static size_t collect_batch(shrink_job *j, pm_ientry *batch, uint8_t **kbuf, size_t *kcap,
                            uint32_t *pos, uint64_t *gen, uint64_t *from, int *oom) {
  pm_engine *e = j->e;
  size_t n = 0, klen = 0;
  pthread_rwlock_rdlock(&e->ix_lock);
  if (*gen != pm_index_generation(j->ix)) {
    *pos = pm_index_seek(j->ix, *from);
    *gen = pm_index_generation(j->ix);
  }
  pm_ientry ie;
  while (n < COPY_BATCH && pm_index_next(j->ix, pos, j->snap, &ie) == PM_OK) {
    *from = ie.seq + 1;
    if (!is_input(j, ie.seg)) continue;
    if (klen + ie.key.len > *kcap) {
      size_t cap = *kcap ? *kcap * 2 : 65536;
      while (cap < klen + ie.key.len) cap *= 2;
      uint8_t *p = pm_realloc(*kbuf, cap);
      if (!p) { *oom = 1; break; }
      *kbuf = p;
      *kcap = cap;
    }
    memcpy(*kbuf + klen, ie.key.data, ie.key.len);
    ie.key.data = (const uint8_t *)(uintptr_t)klen;
    klen += ie.key.len;
    batch[n++] = ie;
  }
  pthread_rwlock_unlock(&e->ix_lock);
  for (size_t i = 0; i < n; i++) batch[i].key.data = *kbuf + (uintptr_t)batch[i].key.data;
  return n;
}

/* Step 2: copy every version visible at the snapshot out of the inputs. */
static int shrink_copy(shrink_job *j, pm_err *err) {
  pm_ientry batch[COPY_BATCH];
  uint8_t *kbuf = NULL, *vbuf = NULL;
  size_t kcap = 0, vcap = 0, n;
  uint32_t pos = 0;
  uint64_t gen = UINT64_MAX, from = 0;
  int rc = PM_OK, oom = 0;
  while (!rc && !oom && (n = collect_batch(j, batch, &kbuf, &kcap, &pos, &gen, &from, &oom)) > 0)
    for (size_t i = 0; i < n && !rc; i++) rc = copy_version(j, &batch[i], &vbuf, &vcap, err);
  if (!rc && oom) rc = pm_err_set(err, PM_NOMEM, "out of memory");   /* never a short copy */
  if (!rc) rc = finish_output(j, err);
  pm_free(kbuf);
  pm_free(vbuf);
  return rc;
}

/* The new segment list: the current one without the inputs, with the outputs. */
static int new_segment_list(const shrink_job *j, pm_manifest *m) {
  uint32_t *segs = pm_malloc(sizeof(uint32_t) * (m->nsegs + j->noutputs));
  if (!segs) return PM_NOMEM;
  uint32_t n = 0;
  for (uint32_t i = 0; i < m->nsegs; i++) if (!is_input(j, m->segs[i])) segs[n++] = m->segs[i];
  for (uint32_t i = 0; i < j->noutputs; i++) {
    uint32_t k = n++;
    while (k > 0 && segs[k - 1] > j->outputs[i]) { segs[k] = segs[k - 1]; k--; }
    segs[k] = j->outputs[i];
  }
  pm_free(m->segs);
  m->segs = segs;
  m->nsegs = n;
  return PM_OK;
}

/* Step 3, under the writer lock: the new manifest, then the segment table. */
static int shrink_switch_locked(shrink_job *j, pm_err *err) {
  pm_engine *e = j->e;
  pthread_mutex_lock(&e->catch_mu);           /* the newest manifest and high-water marks */
  int rc = pm_engine_catch_up_locked(e, 1, err);
  pthread_mutex_unlock(&e->catch_mu);
  if (rc) return rc;
  pm_manifest m;
  if (pm_log_manifest_copy(&e->log, &m) || new_segment_list(j, &m)) {
    pm_manifest_clear(&m);
    return pm_err_set(err, PM_NOMEM, "out of memory");
  }
  m.seq_hw = e->next_seq;
  m.int_hw = e->int_hw;
  m.has_int_hw = e->has_int_hw;
  int renamed = 0;
  rc = pm_manifest_write(e->io, e->dir, &m, &renamed, err);
  if (rc && renamed) {
    /* Old or new manifest: a reopen will tell. Keep every file both name. */
    j->switched = 1;
    j->ninputs = 0;
    pm_log_fail(&e->log, err);
  }
  if (rc) { pm_manifest_clear(&m); return rc; }
  j->switched = 1;
  for (uint32_t i = 0; i < j->noutputs && !rc; i++) rc = pm_log_adopt(&e->log, j->outputs[i], 1, j->out_recs[i], err);
  if (rc) pm_log_fail(&e->log, err);     /* named by the manifest but unreadable: reopen */
  for (uint32_t i = 0; i < j->ninputs; i++) pm_log_retire(&e->log, j->inputs[i]);
  pm_log_set_manifest(&e->log, &m);
  pthread_mutex_lock(&e->catch_mu);
  pm_engine_publish(e, e->applied);
  pthread_mutex_unlock(&e->catch_mu);
  pm_store64(&e->retired_at, pm_load64(&e->last_seq));
  return rc;
}

/* Step 4: point the index at the copies, a batch at a time. */
static void shrink_relocate(shrink_job *j) {
  pm_engine *e = j->e;
  const pm_group *g = &j->moved;
  for (size_t i = 0; i < g->n;) {
    pthread_rwlock_wrlock(&e->ix_lock);
    for (size_t end = i + 4096; i < g->n && i < end; i++) {
      const pm_grec *r = &g->recs[i];
      pm_key k = { r->ktype, r->klen, g->keys + r->key_off };
      pm_index_relocate(e->ix, &k, r->seq, r->at.seg, r->at.off);
    }
    pthread_rwlock_unlock(&e->ix_lock);
  }
}

/* Run the steps with the writer lock where they need it. */
static int shrink_steps(shrink_job *j, pm_err *err) {
  pm_engine *e = j->e;
  /* Flush the active segment first, so that sealing it under the lock is quick. */
  int rc = pm_log_sync(&e->log, pm_log_written(&e->log), -1, err);
  if (!rc) rc = pm_engine_writer_acquire(e, j->busy_ms, err);
  if (rc) return rc;
  uint64_t t0 = pm_now_ns();
  rc = shrink_begin_locked(j, err);
  j->held_ns = pm_now_ns() - t0;
  pm_engine_writer_release(e);
  if (rc || j->ninputs == 0) return rc;
  rc = shrink_copy(j, err);
  if (!rc) rc = pm_engine_writer_acquire(e, j->busy_ms, err);
  if (rc) return rc;
  t0 = pm_now_ns();
  rc = shrink_switch_locked(j, err);
  if (pm_now_ns() - t0 > j->held_ns) j->held_ns = pm_now_ns() - t0;
  pm_engine_writer_release(e);
  if (!j->switched) return rc;
  shrink_relocate(j);
  pm_err ignored;
  if (pm_engine_remove_segments(e->io, e->dir, j->inputs, j->ninputs, &ignored) == PM_OK)
    e->io->fsync_dir(e->dir);
  return rc;
}

static char *shrink_summary(const shrink_job *j, uint64_t us) {
  return pm_sprintf("{\"segments_rewritten\":%u,\"segments_written\":%u,\"records_copied\":%llu,"
                    "\"bytes_before\":%llu,\"bytes_after\":%llu,\"duration_ms\":%.3f,"
                    "\"writer_lock_ms\":%.3f}",
                    j->ninputs, j->noutputs, (unsigned long long)j->copied,
                    (unsigned long long)j->bytes_before, (unsigned long long)log_bytes(&j->e->log),
                    (double)us / 1000.0, (double)j->held_ns / 1e6);
}

int pm_engine_shrink(pm_engine *e, uint64_t busy_ms, char **summary, pm_err *err) {
  *summary = NULL;
  if (e->log.failed) return pm_engine_stopped_error(e, err);
  if (pthread_mutex_trylock(&e->shrink_mu)) return pm_err_set(err, PM_BUSY, "a shrink is already running");
  if (pm_lock_shrink_try(&e->lock)) {
    pthread_mutex_unlock(&e->shrink_mu);
    return pm_err_set(err, PM_BUSY, "a shrink is already running in another process");
  }
  __atomic_store_n(&e->shrink_running, 1, __ATOMIC_RELEASE);
  uint64_t t0 = pm_now_ns();
  shrink_job j;
  memset(&j, 0, sizeof j);
  j.e = e;
  j.busy_ms = busy_ms;
  int rc = shrink_steps(&j, err);
  if (!j.switched) {
    if (j.writing) pm_segw_discard(&e->log, j.w.num, &j.w);
    for (uint32_t i = 0; i < j.noutputs; i++) pm_segw_discard(&e->log, j.outputs[i], NULL);
  }
  if (j.pinned) pm_engine_unpin(e, j.snap, j.ix);
  uint64_t us = (pm_now_ns() - t0) / 1000;
  if (!rc) {
    uint64_t after = log_bytes(&e->log);
    __atomic_fetch_add(&e->shrinks, 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&e->shrink_reclaimed, j.bytes_before > after ? j.bytes_before - after : 0, __ATOMIC_RELAXED);
    __atomic_store_n(&e->shrink_last_ms, pm_wall_ms(), __ATOMIC_RELAXED);
    __atomic_store_n(&e->shrink_last_us, us, __ATOMIC_RELAXED);
    if (!(*summary = shrink_summary(&j, us))) rc = pm_err_set(err, PM_NOMEM, "out of memory");
  }
  pm_free(j.inputs);
  pm_free(j.outputs);
  pm_free(j.out_recs);
  pm_free(j.moved.recs);
  pm_free(j.moved.keys);
  __atomic_store_n(&e->shrink_running, 0, __ATOMIC_RELEASE);
  pm_lock_shrink_release(&e->lock);
  pthread_mutex_unlock(&e->shrink_mu);
  return rc;
}

/* ======================================================================== */
/* Background upkeep                                                         */
/* ======================================================================== */

/* Write the hint of one sealed segment that lacks one, under the writer
** lock (taken without waiting). Returns 1 if there may be more to do. */
static int write_one_hint(pm_engine *e) {
  uint32_t num = 0;
  pthread_rwlock_rdlock(&e->log.segs_lock);
  for (uint32_t i = 0; i < e->log.nfiles && !num; i++) {
    const pm_segfile *f = &e->log.files[i];
    if (!f->retired && !f->hinted && f->num != e->log.man.active) num = f->num;
  }
  pthread_rwlock_unlock(&e->log.segs_lock);
  pm_err err;
  if (!num || pm_engine_writer_acquire(e, 0, &err)) return 0;
  int done = 0;
  pthread_rwlock_rdlock(&e->log.segs_lock);
  int still_sealed = num != e->log.man.active;
  pthread_rwlock_unlock(&e->log.segs_lock);
  if (still_sealed && pm_hint_write(&e->log, num, &err) == PM_OK) done = 1;
  pthread_rwlock_wrlock(&e->log.segs_lock);
  for (uint32_t i = 0; i < e->log.nfiles; i++)
    if (e->log.files[i].num == num) e->log.files[i].hinted = 1;   /* on failure: not retried */
  pthread_rwlock_unlock(&e->log.segs_lock);
  pm_engine_writer_release(e);
  return done;
}

void pm_engine_write_hints(pm_engine *e) {
  if (e->readonly || e->log.failed) return;
  while (write_one_hint(e)) {}
}

/* Should the log be compacted by itself? */
static int wants_shrink(pm_engine *e) {
  double ratio = e->log.man.auto_shrink;
  if (ratio <= 0 || __atomic_load_n(&e->shrink_running, __ATOMIC_ACQUIRE)) return 0;
  uint64_t logb = log_bytes(&e->log);
  if (logb < e->log.man.auto_shrink_min) return 0;
  pthread_rwlock_rdlock(&e->ix_lock);
  uint64_t live = pm_index_live_bytes(e->ix) + pm_index_count(e->ix) * PM_REC_HEADER;
  pthread_rwlock_unlock(&e->ix_lock);
  return (double)logb > ratio * (double)live;
}

void pm_engine_upkeep(pm_engine *e) {
  if (e->readonly || e->log.failed) return;
  uint64_t retired = pm_load64(&e->retired_at);
  pthread_mutex_lock(&e->snap_mu);
  int old_indexes = e->nold_ix > 0;
  pthread_mutex_unlock(&e->snap_mu);
  if (retired && !old_indexes && pm_engine_oldest_visible(e) > retired &&
      !__atomic_load_n(&e->shrink_running, __ATOMIC_ACQUIRE)) {
    if (pm_log_drop_retired(&e->log)) pm_store64(&e->retired_at, 0);   /* else: a scan runs, later */
  }
  pm_engine_write_hints(e);
  if (wants_shrink(e)) {
    char *summary = NULL;
    pm_err err;
    pm_engine_shrink(e, 0, &summary, &err);
    pm_free(summary);
  }
}
