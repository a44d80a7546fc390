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
  int rc = pm_manifest_write(e->io, e->dir, m, err);
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
    rc = pm_log_scan(&e->log, from, (pm_pos){ 0, 0 }, PM_SCAN_SALVAGE, (pm_pos){ 0, 0 }, pm_engine_apply_load, e, &sv.scan, err);
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
