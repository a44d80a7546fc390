/*
** store.c - the engine's core: ties the log, the index, the cache and the
** locks together behind store.h.
**
** Reading map:
**   1. Engines and handles: the process-wide registry, fork safety.
**   2. Opening: create or adopt a store, recover it, build the index.
**   3. Catching up with commits made by other engines.
**   4. Point reads and snapshots.
**   6. Durability and the background thread.
**   7. Figures, checks, destroy.
** Transactions are in txn.c, iterators in iter.c, compaction in compact.c.
*/
#include "engine.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_SEGMENT_SIZE (64ull << 20)
#define DEFAULT_CACHE_SIZE   (64ll << 20)
#define MIN_SEGMENT_SIZE     (64ull << 10)

/* ======================================================================== */
/* 1. Engines and handles                                                    */
/* ======================================================================== */

static pthread_mutex_t registry_mu = PTHREAD_MUTEX_INITIALIZER;
static pm_engine *registry;
static uint64_t fork_gen;             /* bumped in a forked child */
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

/* In a forked child, every engine inherited from the parent is abandoned:
** its descriptors share the parent's open file descriptions (and so its
** locks). The child opens its own. */
static void after_fork_child(void) {
  fork_gen++;
  registry = NULL;
  pthread_mutex_init(&registry_mu, NULL);
}

static void install_atfork(void) { pthread_atfork(NULL, NULL, after_fork_child); }

void pm_options_init(pm_options *o) {
  memset(o, 0, sizeof *o);
  o->sync = PM_SYNC_NORMAL;
  o->sync_interval_ms = 1000;
  o->busy_timeout_ms = 5000;
  o->cache_size = DEFAULT_CACHE_SIZE;
  o->segment_size = DEFAULT_SEGMENT_SIZE;
  o->auto_shrink = 2.0;
  o->auto_shrink_min = 16ull << 20;
}

const char *pm_version(void) { return "0.1.0"; }



/* ======================================================================== */
/* 2. Opening                                                                */
/* ======================================================================== */

/* Files a store owns besides its segments; a directory holding only these
** (a creation that crashed) may become a store. */
static int is_store_file(const char *name) {
  if (strcmp(name, PM_MANIFEST_NAME) == 0 || strcmp(name, PM_SHM_NAME) == 0) return 1;
  if (strcmp(name, PM_MANIFEST_NAME ".tmp") == 0) return 1;
  size_t digits = strspn(name, "0123456789");
  if (digits == 0) return 0;
  return strcmp(name + digits, ".log") == 0 || strcmp(name + digits, ".hint") == 0 ||
         strcmp(name + digits, ".hint.tmp") == 0;
}

typedef struct dir_scan { const pm_io *io; const char *dir; } dir_scan;

/* Stops the listing (returns 1) at a file that forbids making the directory
** a new store: a file that is not a store's, or a segment holding more than
** its header (a store that lost its manifest: never overwrite it). */
static int foreign_file_cb(void *ctx, const char *name) {
  const dir_scan *d = ctx;
  if (!is_store_file(name)) return 1;
  size_t n = strlen(name);
  if (n < 4 || strcmp(name + n - 4, ".log") != 0) return 0;
  char *p = pm_sprintf("%s/%s", d->dir, name);
  int fd = p ? d->io->open(p, O_RDONLY, 0) : -1;
  pm_free(p);
  uint64_t size = 0;
  int has_data = fd < 0 || d->io->file_size(fd, &size) < 0 || size > PM_SEG_HEADER;
  if (fd >= 0) d->io->close(fd);
  return has_data ? 2 : 0;
}

/* 1 if dir/MANIFEST exists, 0 if it does not, -1 (errno set) if that cannot
** be told: an error is never taken for "no store here". */
static int manifest_state(const pm_io *io, const char *path) {
  char *m = pm_sprintf("%s/%s", path, PM_MANIFEST_NAME);
  if (!m) { errno = ENOMEM; return -1; }
  int fd = io->open(m, O_RDONLY, 0);
  int saved = errno;
  pm_free(m);
  if (fd >= 0) { io->close(fd); return 1; }
  errno = saved;
  return saved == ENOENT ? 0 : -1;
}

/* Make sure path is a directory that is, or may become, a store. *fresh is
** set when it holds no manifest (a new store is to be created). */
static int prepare_dir(const pm_io *io, const char *path, const pm_options *o, int *fresh,
                       pm_err *err) {
  struct stat st;
  *fresh = 0;
  if (stat(path, &st) < 0) {
    if (errno != ENOENT) return pm_err_sys(err, errno, "cannot open store '%s'", path);
    if (!o->create || o->readonly)
      return pm_err_set(err, PM_CANTOPEN, "store '%s' does not exist", path);
    if (io->mkdir(path, 0755) < 0 && errno != EEXIST)
      return pm_err_sys(err, errno, "cannot create store directory '%s'", path);
    char *parent = pm_sprintf("%s/..", path);
    if (!parent) return pm_err_set(err, PM_NOMEM, "out of memory");
    int r = io->fsync_dir(parent);
    int saved = errno;
    pm_free(parent);
    if (r < 0) return pm_err_sys(err, saved, "cannot fsync the parent of '%s'", path);
  } else if (!S_ISDIR(st.st_mode)) {
    return pm_err_set(err, PM_CANTOPEN, "'%s' is not a persistmap store (not a directory)", path);
  }
  int state = manifest_state(io, path);
  if (state < 0) return pm_err_sys(err, errno, "cannot open the manifest of '%s'", path);
  if (state > 0) return PM_OK;
  dir_scan d = { io, path };
  int foreign = io->list_dir(path, foreign_file_cb, &d);
  if (foreign < 0) return pm_err_sys(err, errno, "cannot read directory '%s'", path);
  if (foreign == 2)
    return pm_err_set(err, PM_CORRUPT, "'%s' holds log segments but no MANIFEST", path);
  if (foreign > 0 || !o->create || o->readonly)
    return pm_err_set(err, PM_CANTOPEN, "'%s' is not a persistmap store", path);
  *fresh = 1;
  return PM_OK;
}

int pm_store_exists(const char *path, const pm_io *io) {
  return manifest_state(io ? io : &pm_io_posix, path) == 1;
}

/* Write the manifest and first segment of a new store. */
static int create_store(pm_engine *e, const pm_options *o, pm_err *err) {
  pm_manifest m;
  memset(&m, 0, sizeof m);
  if (getrandom(m.store_id, sizeof m.store_id, 0) != (ssize_t)sizeof m.store_id ||
      getrandom(&m.seed, sizeof m.seed, 0) != (ssize_t)sizeof m.seed)
    return pm_err_sys(err, errno, "cannot get random bytes for a new store");
  m.segment_size = o->segment_size < MIN_SEGMENT_SIZE ? MIN_SEGMENT_SIZE : o->segment_size;
  m.auto_shrink = o->auto_shrink;
  m.auto_shrink_min = o->auto_shrink_min;
  m.seq_hw = 1;
  m.next_segment = 1;
  m.creator = pm_strdup(o->creator ? o->creator : "");
  if (!m.creator) return pm_err_set(err, PM_NOMEM, "out of memory");
  int rc = pm_log_create(e->io, e->dir, &m, err);
  pm_manifest_clear(&m);
  return rc;
}

/* Track integer-key and sequence high-water marks of an applied record. */
static void note_record(pm_engine *e, const pm_grec *r, const uint8_t *key) {
  if (r->type == PM_REC_PUT && r->ktype == PM_INTEGER && r->klen == 8) {
    int64_t k = (int64_t)pm_get_u64(key);
    if (!e->has_int_hw || k > e->int_hw) { e->int_hw = k; e->has_int_hw = 1; }
  }
}

/* Recovery: apply a committed group in load mode (any order). */
int pm_engine_apply_load(void *ctx, const pm_group *g, pm_err *err) {
  pm_loader *l = ctx;
  for (size_t i = 0; i < g->n; i++) {
    const pm_grec *r = &g->recs[i];
    pm_key k = { r->ktype, r->klen, g->keys + r->key_off };
    int rc = r->type == PM_REC_PUT
        ? pm_index_load_put(l->ix, &k, r->seq, r->at.seg, r->at.off, r->vlen, r->vtype)
        : pm_index_load_delete(l->ix, &k, r->seq);
    if (rc == PM_NOMEM) return pm_err_set(err, PM_NOMEM, "out of memory building the index");
    note_record(l->e, r, k.data);
  }
  if (g->id > l->last_seq) l->last_seq = g->id;
  return PM_OK;
}

/* Build a fresh index of the log up to limit ({0,0}: its end, a torn tail
** allowed) from hint files and the segments without one. */
static int load_index(pm_engine *e, pm_pos limit, pm_pos durable_hint, pm_index **out,
                      pm_scan *scan, uint64_t *last_seq, pm_err *err) {
  pm_loader l = { e, pm_index_new(e->log.man.seed), 0 };
  if (!l.ix) return pm_err_set(err, PM_NOMEM, "out of memory");
  uint64_t records, key_bytes;
  pm_hint_estimate(&e->log, &records, &key_bytes);
  pm_index_reserve(l.ix, (size_t)records, (size_t)key_bytes);   /* no growth while loading */
  pm_index_load_begin(l.ix);
  uint32_t first = 0;
  for (uint32_t i = 0; i < e->log.nfiles && !first; i++) if (!e->log.files[i].retired) first = e->log.files[i].num;
  int mode = (limit.seg ? PM_SCAN_BOUNDED : PM_SCAN_OPEN) | PM_SCAN_HINTS | PM_SCAN_COUNT;
  int rc = pm_log_scan(&e->log, (pm_pos){ first, PM_SEG_HEADER }, limit, mode, durable_hint,
                       pm_engine_apply_load, &l, scan, err);
  if (!rc && pm_index_load_end(l.ix) != PM_OK) rc = pm_err_set(err, PM_NOMEM, "out of memory building the index");
  if (rc) { pm_index_free(l.ix); return rc; }
  *out = l.ix;
  *last_seq = l.last_seq;
  return PM_OK;
}

/* Live: apply a committed group to the index (exclusive lock held by caller
** or taken here). Capacity is reserved first so a group applies whole. */
int pm_engine_apply_group(pm_engine *e, const pm_group *g, pm_err *err) {
  size_t kbytes = 0;
  for (size_t i = 0; i < g->n; i++) kbytes += g->recs[i].klen;
  if (pm_index_reserve(e->ix, g->n, kbytes) != PM_OK)
    return pm_err_set(err, PM_NOMEM, "out of memory applying a commit");
  for (size_t i = 0; i < g->n; i++) {
    const pm_grec *r = &g->recs[i];
    pm_key k = { r->ktype, r->klen, g->keys + r->key_off };
    int rc = r->type == PM_REC_PUT
        ? pm_index_put(e->ix, &k, r->seq, r->at.seg, r->at.off, r->vlen, r->vtype)
        : pm_index_delete(e->ix, &k, r->seq);
    if (rc != PM_OK && rc != PM_NOTFOUND)
      return pm_err_set(err, PM_CORRUPT, "record with seq %llu is out of order",
                        (unsigned long long)r->seq);
    note_record(e, r, k.data);
  }
  return PM_OK;
}

static int apply_live(void *ctx, const pm_group *g, pm_err *err) {
  pm_engine *e = ctx;
  pthread_rwlock_wrlock(&e->ix_lock);
  int rc = pm_engine_apply_group(e, g, err);
  pthread_rwlock_unlock(&e->ix_lock);
  if (!rc && g->id > pm_load64(&e->last_seq)) pm_store64(&e->last_seq, g->id);
  return rc;
}

/* The state to publish in shared memory, from the engine's own (called by
** the writer, or by an engine alone on the store, with catch_mu held). */
pm_shared pm_engine_shared_state(pm_engine *e, pm_pos prepared) {
  pm_shared s;
  memset(&s, 0, sizeof s);
  s.commit = e->applied;
  s.commit_seq = pm_load64(&e->last_seq);
  s.next_seq = e->next_seq;
  s.int_hw = e->int_hw;
  s.has_int_hw = e->has_int_hw;
  e->manifest_gen = e->log.man.gen;     /* our own roll-overs rewrote it */
  s.manifest_gen = e->manifest_gen;
  s.prepared = pm_pos_cmp(prepared, e->applied) > 0 ? prepared : e->applied;
  return s;
}

void pm_engine_publish(pm_engine *e, pm_pos prepared) {
  pm_shared st = pm_engine_shared_state(e, prepared);
  e->own_counter = pm_shm_publish(&e->lock, &st);
  pm_store64(&e->shm_seen, e->own_counter);
}

static void on_durable(void *ctx, pm_pos p) { pm_shm_set_durable(ctx, p); }

/* What recovery adopted must outlive a power loss before anyone builds on
** it: the directory entries it followed (a manifest whose rename was never
** synced, after a failed directory fsync) and the log it read (a tail that
** was written but never synced, such as an abort record). */
static int make_recovered_durable(pm_engine *e, pm_err *err) {
  if (e->io->fsync_dir(e->dir) < 0) return pm_err_sys(err, errno, "cannot fsync directory %s", e->dir);
  return pm_log_sync(&e->log, e->applied, -1, err);
}

/* Is name a segment or hint file (or a temp file) the manifest m does not
** name? Such files are left by a crash in a roll-over or a compaction. */
static int is_orphan(const pm_manifest *m, const char *name) {
  size_t digits = strspn(name, "0123456789");
  if (digits == 0 || !is_store_file(name)) return 0;
  uint32_t num = (uint32_t)strtoul(name, NULL, 10);
  for (uint32_t i = 0; i < m->nsegs; i++)
    if (m->segs[i] == num) return strstr(name, ".tmp") != NULL;
  return 1;
}

typedef struct orphans { const pm_engine *e; int removed; } orphans;

static int remove_orphan_cb(void *ctx, const char *name) {
  orphans *o = ctx;
  if (!is_orphan(&o->e->log.man, name)) return 0;
  char *p = pm_sprintf("%s/%s", o->e->dir, name);
  if (p && o->e->io->unlink(p) == 0) o->removed++;
  pm_free(p);
  return 0;
}

/* Delete orphans (only by an engine alone on the store, under INIT). */
static void remove_orphans(pm_engine *e) {
  orphans o = { e, 0 };
  e->io->list_dir(e->dir, remove_orphan_cb, &o);
  if (o.removed) e->io->fsync_dir(e->dir);
}

/* Build the index from the log. An engine alone on the store trusts only the
** log, cuts a torn tail and rebuilds the shared page; otherwise the log is
** replayed up to the commit point the other engines published. */
static int recover_index(pm_engine *e, pm_err *err) {
  const pm_manifest *m = &e->log.man;
  int valid = pm_shm_valid(&e->lock, m->store_id);
  int alone = pm_lock_alone(&e->lock) || !valid;
  pm_shared sh;
  pm_shm_read(&e->lock, &sh);
  if (alone && !e->readonly) remove_orphans(e);
  pm_scan scan;
  pm_pos hint = valid ? pm_shm_durable(&e->lock) : (pm_pos){ 0, 0 };
  int rc = load_index(e, alone ? (pm_pos){ 0, 0 } : sh.commit, hint, &e->ix, &scan, &e->last_seq, err);
  if (rc) return rc;
  e->next_seq = m->seq_hw;
  if (scan.max_seq + 1 > e->next_seq) e->next_seq = scan.max_seq + 1;
  if (!alone && sh.next_seq > e->next_seq) e->next_seq = sh.next_seq;
  if (m->has_int_hw && (!e->has_int_hw || m->int_hw > e->int_hw)) { e->int_hw = m->int_hw; e->has_int_hw = 1; }
  e->manifest_gen = m->gen;
  e->dropped_bytes = scan.dropped_bytes;
  e->applied = alone ? scan.end : sh.commit;
  if (alone && !e->readonly) {
    if (e->applied.seg != m->active)      /* the torn group began in an older segment */
      e->applied = (pm_pos){ m->active, PM_SEG_HEADER };
    rc = pm_log_start_append(&e->log, e->applied, err);
    if (!rc) rc = make_recovered_durable(e, err);
    if (rc) return rc;
    pm_shared st = pm_engine_shared_state(e, e->applied);
    pm_shm_reset(&e->lock, m->store_id, &st);
    e->own_counter = pm_shm_counter(&e->lock);
  }
  e->shm_seen = pm_shm_counter(&e->lock);
  e->log.on_durable = on_durable;
  e->log.on_durable_ctx = &e->lock;
  return PM_OK;
}

/* ======================================================================== */
/* 6. Durability: the background thread                                      */
/* ======================================================================== */

/* Wait on the background thread's condition until the monotonic time
** until_ns (bg_mu held). */
static void bg_wait_until(pm_engine *e, uint64_t until_ns) {
  struct timespec ts = { (time_t)(until_ns / 1000000000u), (long)(until_ns % 1000000000u) };
  pthread_cond_timedwait(&e->bg_cv, &e->bg_mu, &ts);
}

/* Every sync_interval, or when asked, fsync what was written and do the
** upkeep; while the WRITER lock is kept between transactions, look every
** WRITER_KEEP_NS whether to let go of it. It stops when the engine closes. */
static void *bg_main(void *arg) {
  pm_engine *e = arg;
  uint64_t interval = e->sync_interval_ms * 1000000u, next_sync = pm_now_ns() + interval;
  int watching = 0;
  pthread_mutex_lock(&e->bg_mu);
  while (!e->bg_stop) {
    uint64_t now = pm_now_ns();
    if (!e->bg_sync_now && !e->bg_writer_kept && now < next_sync) {
      bg_wait_until(e, watching && now + WRITER_KEEP_NS < next_sync ? now + WRITER_KEEP_NS : next_sync);
      if (e->bg_stop) break;
    }
    int sync = e->bg_sync_now || pm_now_ns() >= next_sync;
    e->bg_sync_now = e->bg_writer_kept = 0;
    pthread_mutex_unlock(&e->bg_mu);
    watching = pm_engine_writer_let_go(e);
    if (sync) {
      pm_log_sync(&e->log, pm_log_written(&e->log), -1, NULL);
      pm_engine_upkeep(e);
      next_sync = pm_now_ns() + interval;
    }
    pthread_mutex_lock(&e->bg_mu);
  }
  pthread_mutex_unlock(&e->bg_mu);
  return NULL;
}

void pm_engine_writer_kept(pm_engine *e) {
  pthread_mutex_lock(&e->bg_mu);
  e->bg_writer_kept = 1;
  pthread_cond_signal(&e->bg_cv);
  pthread_mutex_unlock(&e->bg_mu);
}

static int bg_start(pm_engine *e, pm_err *err) {
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&e->bg_cv, &ca);
  pthread_condattr_destroy(&ca);
  pthread_mutex_init(&e->bg_mu, NULL);
  if (e->readonly) return PM_OK;
  int r = pthread_create(&e->bg, NULL, bg_main, e);
  if (r) return pm_err_sys(err, r, "cannot start the background thread");
  e->bg_started = 1;
  return PM_OK;
}

static void bg_stop(pm_engine *e) {
  if (e->bg_started) {
    pthread_mutex_lock(&e->bg_mu);
    e->bg_stop = 1;
    pthread_cond_signal(&e->bg_cv);
    pthread_mutex_unlock(&e->bg_mu);
    pthread_join(e->bg, NULL);
    e->bg_started = 0;
  }
}

static void bg_request_sync(pm_engine *e) {
  pthread_mutex_lock(&e->bg_mu);
  e->bg_sync_now = 1;
  pthread_cond_signal(&e->bg_cv);
  pthread_mutex_unlock(&e->bg_mu);
}

/* ======================================================================== */
/* Engine lifetime                                                           */
/* ======================================================================== */

/* Stop the background thread and make everything written durable, unless
** the engine stopped on an error; a failure here stops it (log.failed). */
static void engine_flush(pm_engine *e) {
  bg_stop(e);
  if (e->log_open && !e->readonly && !e->log.failed) {
    pm_log_flush(&e->log, NULL);
    pm_log_sync(&e->log, pm_log_written(&e->log), -1, NULL);
    if (e->ix) pm_engine_write_hints(e);        /* so that the next open reads hints */
  }
}

static void engine_free(pm_engine *e) {
  engine_flush(e);
  pm_txn_destroy(e->spare_txn);
  if (e->log_open) pm_log_close(&e->log);
  if (e->lock_open) pm_lock_close(&e->lock);
  if (e->ix) pm_index_free(e->ix);
  if (e->cache) pm_cache_free(e->cache);
  pthread_rwlock_destroy(&e->ix_lock);
  pthread_mutex_destroy(&e->catch_mu);
  pthread_mutex_destroy(&e->shrink_mu);
  pthread_mutex_destroy(&e->snap_mu);
  pthread_mutex_destroy(&e->wmu);
  pthread_cond_destroy(&e->wcv);
  pthread_mutex_destroy(&e->bg_mu);
  pthread_cond_destroy(&e->bg_cv);
  pm_free(e->pins);
  for (size_t i = 0; i < e->nold_ix; i++) pm_index_free(e->old_ix[i]);
  pm_free(e->old_ix);
  pm_free(e->dir);
  pm_free(e);
}

static pm_engine *engine_alloc(const char *path, const pm_options *o) {
  pm_engine *e = pm_calloc(1, sizeof *e);
  if (!e) return NULL;
  e->dir = pm_strdup(path);
  e->io = o->io ? o->io : &pm_io_posix;
  e->readonly = o->readonly;
  e->sync_interval_ms = o->sync_interval_ms ? o->sync_interval_ms : 1000;
  e->cache_size = o->cache_size;
  e->fork_gen = fork_gen;
  pthread_rwlock_init(&e->ix_lock, NULL);
  pthread_mutex_init(&e->catch_mu, NULL);
  pthread_mutex_init(&e->shrink_mu, NULL);
  pthread_mutex_init(&e->snap_mu, NULL);
  pthread_mutex_init(&e->wmu, NULL);
  pthread_cond_init(&e->wcv, NULL);
  pthread_mutex_init(&e->bg_mu, NULL);
  pthread_cond_init(&e->bg_cv, NULL);
  if (!e->dir) { engine_free(e); return NULL; }
  return e;
}

/* Open the files, recover, start the background thread. The INIT lock
** serializes this against other processes opening or creating the store. */
static int engine_open(pm_engine *e, const pm_options *o, int fresh, pm_err *err) {
  int rc = pm_lock_open(&e->lock, e->io, e->dir, e->readonly, err);
  if (rc) return rc;
  e->lock_open = 1;
  if ((rc = pm_lock_init_acquire(&e->lock, err)) != PM_OK) return rc;
  if (fresh) {                 /* re-checked under INIT: another process may have created it */
    int state = manifest_state(e->io, e->dir);
    if (state < 0) rc = pm_err_sys(err, errno, "cannot open the manifest of '%s'", e->dir);
    else if (state == 0) rc = create_store(e, o, err);
  }
  pm_manifest m;
  memset(&m, 0, sizeof m);
  if (!rc) rc = pm_manifest_read(e->io, e->dir, &m, err);
  if (rc == PM_NOTFOUND) rc = pm_err_set(err, PM_CANTOPEN, "'%s' is not a persistmap store", e->dir);
  if (rc == PM_CORRUPT) rc = pm_err_set(err, PM_CORRUPT, "the manifest of '%s' is corrupt", e->dir);
  if (!rc) {
    rc = pm_log_open(&e->log, e->io, e->dir, &m, e->readonly, err);
    e->log_open = 1;
  }
  pm_manifest_clear(&m);
  if (!rc) rc = recover_index(e, err);
  pm_lock_init_release(&e->lock);
  if (!rc) {
    e->cache = pm_cache_new(e->cache_size);
    if (!e->cache) rc = pm_err_set(err, PM_NOMEM, "out of memory");
  }
  if (!rc) rc = bg_start(e, err);
  return rc;
}

/* Find or open the engine for path (registry mutex held). */
static int engine_get(const char *path, const pm_options *o, pm_engine **out, pm_err *err) {
  const pm_io *io = o->io ? o->io : &pm_io_posix;
  int fresh = 0;
  int rc = prepare_dir(io, path, o, &fresh, err);
  if (rc) return rc;
  struct stat st;
  if (stat(path, &st) < 0) return pm_err_sys(err, errno, "cannot open store '%s'", path);
  for (pm_engine *e = registry; e; e = e->next) {
    if (e->dev == st.st_dev && e->ino == st.st_ino && e->readonly == o->readonly) {
      e->refs++;
      if (o->cache_size < 0 || (e->cache_size >= 0 && o->cache_size > e->cache_size)) {
        e->cache_size = o->cache_size;
        pm_cache_set_capacity(e->cache, o->cache_size);
      }
      *out = e;
      return PM_OK;
    }
  }
  pm_engine *e = engine_alloc(path, o);
  if (!e) return pm_err_set(err, PM_NOMEM, "out of memory");
  e->dev = st.st_dev;
  e->ino = st.st_ino;
  rc = engine_open(e, o, fresh, err);
  if (rc) { engine_free(e); return rc; }
  e->refs = 1;
  e->next = registry;
  registry = e;
  *out = e;
  return PM_OK;
}

int pm_store_open(const char *path, const pm_options *opts, pm_store **out, pm_err *err) {
  pthread_once(&atfork_once, install_atfork);
  pm_options defaults;
  if (!opts) { pm_options_init(&defaults); opts = &defaults; }
  *out = NULL;
  pm_store *s = pm_calloc(1, sizeof *s);
  if (!s) return pm_err_set(err, PM_NOMEM, "out of memory");
  pthread_mutex_lock(&registry_mu);
  int rc = engine_get(path, opts, &s->e, err);
  pthread_mutex_unlock(&registry_mu);
  if (rc) { pm_free(s); return rc; }
  s->readonly = opts->readonly;
  s->sync = opts->sync;
  s->busy_ms = opts->busy_timeout_ms;
  *out = s;
  return PM_OK;
}

int pm_store_close(pm_store *s, pm_err *err) {
  if (!s) return PM_OK;
  pm_engine *e = s->e;
  int rc = PM_OK;
  pm_free(s);
  if (e->fork_gen != fork_gen) return PM_OK;     /* the parent's: never touched */
  pthread_mutex_lock(&registry_mu);
  int last = --e->refs == 0;
  if (last) {
    for (pm_engine **p = &registry; *p; p = &(*p)->next)
      if (*p == e) { *p = e->next; break; }
  }
  pthread_mutex_unlock(&registry_mu);
  if (last) {
    engine_flush(e);                /* the final fsync: its failure is reported too */
    if (e->log.failed) rc = pm_err_set(err, e->log.failed, "%s", e->log.failmsg);
    engine_free(e);
  }
  return rc;
}

/* A handle opened before a fork belongs to the parent's engine: refuse it. */
int pm_engine_handle_ok(pm_store *s, pm_err *err) {
  if (s->e->fork_gen == fork_gen) return PM_OK;
  return pm_err_set(err, PM_MISUSE, "this store was opened by the parent process; open it again");
}

/* ======================================================================== */
/* 3. Catching up with other engines                                         */
/* ======================================================================== */

/* Follow a manifest another engine rewrote (a roll-over). */
static void free_unread_indexes(pm_engine *e);

/* Another process compacted the log: build a new index from the new
** segments up to its commit point and put it in place. Snapshots already
** taken keep reading the old one (and the retired segments) until they end. */
static int reload_index(pm_engine *e, pm_pos upto, pm_err *err) {
  pm_index *ix;
  pm_scan scan;
  uint64_t last = 0;
  int rc = load_index(e, upto, (pm_pos){ 0, 0 }, &ix, &scan, &last, err);
  if (rc) return rc;
  pthread_rwlock_wrlock(&e->ix_lock);
  pthread_mutex_lock(&e->snap_mu);
  pm_index **old = pm_realloc(e->old_ix, sizeof *old * (e->nold_ix + 1));
  if (old) {
    e->old_ix = old;
    e->old_ix[e->nold_ix++] = e->ix;
    e->ix = ix;
    free_unread_indexes(e);
  }
  pthread_mutex_unlock(&e->snap_mu);
  pthread_rwlock_unlock(&e->ix_lock);
  if (!old) { pm_index_free(ix); return pm_err_set(err, PM_NOMEM, "out of memory"); }
  e->applied = upto;
  if (last > pm_load64(&e->last_seq)) pm_store64(&e->last_seq, last);
  pm_store64(&e->retired_at, pm_load64(&e->last_seq));
  e->catchups++;
  return PM_OK;
}

/* Follow a manifest another engine rewrote: a roll-over, or a compaction. */
static int follow_manifest(pm_engine *e, pm_pos upto, pm_err *err) {
  pm_manifest m;
  int removed = 0;
  int rc = pm_manifest_read(e->io, e->dir, &m, err);
  if (rc) return rc;
  rc = pm_log_follow(&e->log, &m, &removed, err);
  if (!rc) e->manifest_gen = m.gen;
  pm_manifest_clear(&m);
  if (!rc && removed) rc = reload_index(e, upto, err);
  return rc;
}

/* Apply what other engines committed since we last looked (catch_mu held).
** The writer (holding the writer lock) also adopts a group another writer
** wrote and did not get to commit before it died: such a group counts as
** committed, as it would at recovery. */
int pm_engine_catch_up_locked(pm_engine *e, int writer, pm_err *err) {
  pm_shared sh;
  pm_shm_read(&e->lock, &sh);
  if (sh.counter == e->shm_seen && !writer) return PM_OK;
  int rc = PM_OK;
  if (sh.manifest_gen != e->manifest_gen) rc = follow_manifest(e, sh.commit, err);
  pm_pos upto = writer && pm_pos_cmp(sh.prepared, sh.commit) > 0 ? sh.prepared : sh.commit;
  if (!rc && sh.commit.seg && pm_pos_cmp(upto, e->applied) > 0) {
    pm_scan scan;
    rc = pm_log_scan(&e->log, e->applied, upto, PM_SCAN_BOUNDED | PM_SCAN_CHAIN | PM_SCAN_COUNT, (pm_pos){ 0, 0 },
                     apply_live, e, &scan, err);
    if (!rc) e->applied = upto;
    e->catchups++;
  }
  if (rc) return rc;
  if (writer) {
    if (sh.next_seq > e->next_seq) e->next_seq = sh.next_seq;
    if (sh.has_int_hw && (!e->has_int_hw || sh.int_hw > e->int_hw)) { e->int_hw = sh.int_hw; e->has_int_hw = 1; }
  }
  pm_store64(&e->shm_seen, sh.counter);
  return PM_OK;
}

/* Cheap check on the read path: one load of the shared counter. */
static int catch_up(pm_engine *e, pm_err *err) {
  if (pm_shm_counter(&e->lock) == pm_load64(&e->shm_seen)) return PM_OK;
  pthread_mutex_lock(&e->catch_mu);
  int rc = pm_engine_catch_up_locked(e, 0, err);
  pthread_mutex_unlock(&e->catch_mu);
  return rc;
}

/* ======================================================================== */
/* 4. Reading                                                                */
/* ======================================================================== */

/* Pin the newest committed state as a snapshot. Under snap_mu, so that an
** index compaction (which keeps what the oldest pin can see) never runs
** between reading last_seq and pinning it. */
int pm_engine_pin_latest(pm_engine *e, uint64_t *seq, pm_index **ix) {
  pthread_mutex_lock(&e->snap_mu);
  if (e->npins == e->cap_pins) {
    size_t cap = e->cap_pins ? e->cap_pins * 2 : 16;
    pm_pin *p = pm_realloc(e->pins, cap * sizeof *p);
    if (!p) { pthread_mutex_unlock(&e->snap_mu); return PM_NOMEM; }
    e->pins = p;
    e->cap_pins = cap;
  }
  *seq = pm_load64(&e->last_seq);
  *ix = e->ix;
  e->pins[e->npins++] = (pm_pin){ *seq, *ix };
  pthread_mutex_unlock(&e->snap_mu);
  return PM_OK;
}

/* Free the replaced indexes no pin reads (snap_mu held). */
static void free_unread_indexes(pm_engine *e) {
  size_t kept = 0;
  for (size_t i = 0; i < e->nold_ix; i++) {
    int read = 0;
    for (size_t p = 0; p < e->npins && !read; p++) read = e->pins[p].ix == e->old_ix[i];
    if (read) e->old_ix[kept++] = e->old_ix[i];
    else pm_index_free(e->old_ix[i]);
  }
  e->nold_ix = kept;
}

void pm_engine_unpin(pm_engine *e, uint64_t seq, pm_index *ix) {
  pthread_mutex_lock(&e->snap_mu);
  for (size_t i = 0; i < e->npins; i++)
    if (e->pins[i].seq == seq && e->pins[i].ix == ix) { e->pins[i] = e->pins[--e->npins]; break; }
  if (ix != e->ix) free_unread_indexes(e);
  pthread_mutex_unlock(&e->snap_mu);
}

/* What an index compaction must keep visible: the oldest snapshot pinned on
** the current index, and the newest published state (readers without a pin
** use it). */
uint64_t pm_engine_oldest_visible(pm_engine *e) {
  pthread_mutex_lock(&e->snap_mu);
  uint64_t m = pm_load64(&e->last_seq);
  for (size_t i = 0; i < e->npins; i++)
    if (e->pins[i].ix == e->ix && e->pins[i].seq < m) m = e->pins[i].seq;
  pthread_mutex_unlock(&e->snap_mu);
  return m;
}

int pm_store_snap_begin(pm_store *s, pm_snap *snap, pm_err *err) {
  int rc = pm_engine_handle_ok(s, err);
  if (!rc) rc = catch_up(s->e, err);
  pm_index *ix = NULL;
  if (!rc && pm_engine_pin_latest(s->e, &snap->seq, &ix)) rc = pm_err_set(err, PM_NOMEM, "out of memory");
  snap->priv = rc ? NULL : s->e;
  snap->index = ix;
  return rc;
}

void pm_store_snap_end(pm_store *s, pm_snap *snap) {
  if (snap->priv) pm_engine_unpin(s->e, snap->seq, snap->index);
  snap->priv = NULL;
}

/* The value of the record at `at`: from the cache, or one read of the log. */
int pm_engine_read_value(pm_engine *e, pm_pos at, uint32_t klen, uint8_t vtype, uint32_t vlen,
                      pm_value **out, pm_err *err) {
  uint64_t id = pm_engine_cache_id(at);
  pm_value *v = pm_cache_get(e->cache, id);
  if (v) { *out = v; return PM_OK; }
  v = pm_value_new(vtype, vlen);
  if (!v) return pm_err_set(err, PM_NOMEM, "out of memory reading a value of %u bytes", vlen);
  int rc = vlen ? pm_log_read_value(&e->log, at, klen, v->data, vlen, err) : PM_OK;
  if (rc) { pm_value_unref(v); return rc; }
  pm_cache_put(e->cache, id, v);
  *out = v;
  return PM_OK;
}

int pm_engine_check_key(const pm_key *k, pm_err *err) {
  if (k->len > PM_MAX_KEY)
    return pm_err_set(err, PM_TOOBIG, "key of %u bytes is larger than %u", k->len, PM_MAX_KEY);
  if (k->type < PM_INTEGER || k->type > PM_BLOB)
    return pm_err_set(err, PM_MISUSE, "bad key type %u", k->type);
  return PM_OK;
}

/* Look up k in snap (NULL: the newest state, read under the index lock so
** that no compaction can drop what it sees) and read what was asked. */
int pm_engine_lookup(pm_engine *e, const pm_snap *snap, const pm_key *k, pm_value **val,
                     pm_meta *meta, pm_err *err) {
  pm_ientry ie;
  pthread_rwlock_rdlock(&e->ix_lock);
  pm_index *ix = snap && snap->index ? snap->index : e->ix;
  int rc = pm_index_find(ix, k, snap ? snap->seq : pm_load64(&e->last_seq), &ie);
  pthread_rwlock_unlock(&e->ix_lock);
  if (rc) return rc;
  if (meta) *meta = (pm_meta){ ie.seq, ie.vtype, ie.vlen };
  if (!val) return PM_OK;
  return pm_engine_read_value(e, (pm_pos){ ie.seg, ie.off }, k->len, ie.vtype, ie.vlen, val, err);
}

int pm_store_get(pm_store *s, const pm_snap *snap, const pm_key *k, pm_value **val,
                 pm_meta *meta, pm_err *err) {
  int rc = pm_engine_handle_ok(s, err);
  if (!rc) rc = pm_engine_check_key(k, err);
  if (!rc && !snap) rc = catch_up(s->e, err);
  if (rc) return rc;
  return pm_engine_lookup(s->e, snap, k, val, meta, err);
}

/* ======================================================================== */
/* 6b. Sync                                                                  */
/* ======================================================================== */

int pm_store_sync(pm_store *s, int64_t timeout_ms, pm_err *err) {
  int rc = pm_engine_handle_ok(s, err);
  if (rc) return rc;
  pm_engine *e = s->e;
  if (e->readonly) return PM_OK;
  if (e->log.failed) return pm_engine_stopped_error(e, err);
  pm_pos upto = pm_log_written(&e->log);
  if (timeout_ms < 0) return pm_log_sync(&e->log, upto, -1, err);
  bg_request_sync(e);
  return pm_log_sync(&e->log, upto, timeout_ms * 1000000, err);
}

/* ======================================================================== */
/* 7. Maintenance and figures                                                */
/* ======================================================================== */

int pm_store_stats(pm_store *s, pm_stats *o, pm_err *err) {
  int rc = pm_engine_handle_ok(s, err);
  if (rc) return rc;
  pm_engine *e = s->e;
  catch_up(e, NULL);
  memset(o, 0, sizeof *o);
  snprintf(o->path, sizeof o->path, "%s", e->dir);
  for (int i = 0; i < 16; i++) snprintf(o->store_id + 2 * i, 3, "%02x", e->log.man.store_id[i]);
  o->sync = s->sync;
  o->readonly = s->readonly || e->readonly || e->log.failed;
  pthread_rwlock_rdlock(&e->ix_lock);
  o->keys = pm_index_count(e->ix);
  o->live_bytes = pm_index_live_bytes(e->ix) + o->keys * PM_REC_HEADER;
  o->index_bytes = pm_index_mem_bytes(e->ix);
  o->index_versions = pm_index_versions(e->ix);
  pthread_rwlock_unlock(&e->ix_lock);
  pthread_rwlock_rdlock(&e->log.segs_lock);
  for (uint32_t i = 0; i < e->log.nfiles; i++) {
    if (e->log.files[i].retired) continue;      /* compacted away, kept open for readers */
    o->log_bytes += __atomic_load_n(&e->log.files[i].size, __ATOMIC_RELAXED);
    o->records += __atomic_load_n(&e->log.files[i].records, __ATOMIC_RELAXED);
    o->segments++;
  }
  pthread_rwlock_unlock(&e->log.segs_lock);
  pthread_mutex_lock(&e->log.sync_mu);
  pm_pos w = e->log.written, d = e->log.durable;
  o->fsyncs = e->log.fsyncs;
  o->last_error_code = e->log.failed;
  snprintf(o->last_error, sizeof o->last_error, "%s", e->log.failmsg);
  pthread_mutex_unlock(&e->log.sync_mu);
  o->unsynced_bytes = w.seg == d.seg && w.off > d.off ? w.off - d.off : (w.seg > d.seg ? w.off : 0);
  o->last_seq = pm_load64(&e->last_seq);
  /* 0 when no integer key is left above the highest one (never int_hw + 1 then). */
  pthread_mutex_lock(&e->catch_mu);
  o->next_int_key = !e->has_int_hw || e->int_hw < 0 ? 1 : e->int_hw == INT64_MAX ? 0 : e->int_hw + 1;
  o->commits = e->commits;
  o->dropped_bytes = e->dropped_bytes;
  o->catchups = e->catchups;
  pthread_mutex_unlock(&e->catch_mu);
  o->shrinks = __atomic_load_n(&e->shrinks, __ATOMIC_RELAXED);
  o->shrink_reclaimed_bytes = __atomic_load_n(&e->shrink_reclaimed, __ATOMIC_RELAXED);
  o->shrink_last_ms = __atomic_load_n(&e->shrink_last_ms, __ATOMIC_RELAXED);
  o->shrink_last_duration_us = __atomic_load_n(&e->shrink_last_us, __ATOMIC_RELAXED);
  o->shrink_running = __atomic_load_n(&e->shrink_running, __ATOMIC_ACQUIRE);
  pm_cache_stats cs;
  pm_cache_get_stats(e->cache, &cs);
  o->cache_capacity = (uint64_t)cs.capacity;
  o->cache_bytes = cs.bytes;
  o->cache_entries = cs.entries;
  o->cache_hits = cs.hits;
  o->cache_misses = cs.misses;
  o->cache_evictions = cs.evictions;
  return PM_OK;
}

/* Compare the record at a live index entry with the entry. */
static int check_entry(pm_engine *e, const pm_ientry *ie, char **report) {
  uint8_t h[PM_REC_HEADER];
  uint8_t *key = pm_malloc(ie->key.len + 1u);
  if (!key) return PM_NOMEM;
  pm_pos at = { ie->seg, ie->off };
  pm_err err;
  int bad = pm_log_read_value(&e->log, (pm_pos){ at.seg, at.off - PM_REC_HEADER }, 0, h, PM_REC_HEADER, &err) ||
            pm_log_read_value(&e->log, at, 0, key, ie->key.len, &err) ||
            h[8] != PM_REC_PUT || h[9] != ie->key.type || pm_get_u32(h + 12) != ie->key.len ||
            pm_get_u32(h + 16) != ie->vlen || pm_get_u64(h + 24) != ie->seq ||
            memcmp(key, ie->key.data, ie->key.len) != 0;
  pm_free(key);
  if (bad) {
    char seg[32];
    pm_seg_name(at.seg, seg, sizeof seg);
    if (pm_log_report(report, "index entry seq %llu does not match the record in %s at offset %llu",
                      (unsigned long long)ie->seq, seg, (unsigned long long)at.off))
      return PM_NOMEM;                  /* never "ok" for a damaged store */
  }
  return PM_OK;
}

/* Every live key of the index must point at its own record. */
static int check_index(pm_engine *e, char **report, pm_err *err) {
  pthread_rwlock_rdlock(&e->ix_lock);
  uint32_t pos = pm_index_seek(e->ix, 0);
  pm_ientry ie;
  int rc = PM_OK;
  while (!rc && pm_index_next(e->ix, &pos, pm_load64(&e->last_seq), &ie) == PM_OK) rc = check_entry(e, &ie, report);
  pthread_rwlock_unlock(&e->ix_lock);
  return rc ? pm_err_set(err, PM_NOMEM, "out of memory") : PM_OK;
}

int pm_store_check(pm_store *s, char **report, pm_err *err) {
  *report = NULL;
  int rc = pm_engine_handle_ok(s, err);
  if (rc) return rc;
  pm_engine *e = s->e;
  pthread_mutex_lock(&e->catch_mu);
  pm_pos limit = e->applied;
  pthread_mutex_unlock(&e->catch_mu);
  rc = pm_log_check(&e->log, limit, report, err);
  if (!rc) rc = check_index(e, report, err);
  if (!rc && !*report) *report = pm_strdup("ok");
  if (!rc && !*report) rc = pm_err_set(err, PM_NOMEM, "out of memory");
  return rc;
}

int pm_store_shrink(pm_store *s, char **summary, pm_err *err) {
  pm_err local;                  /* a shrink that stops the engine records why, */
  if (!err) err = &local;        /* whether or not the caller asked */
  *summary = NULL;
  int rc = pm_engine_handle_ok(s, err);
  if (rc) return rc;
  if (s->readonly || s->e->readonly) return pm_err_set(err, PM_READONLY, "the store is read-only");
  return pm_engine_shrink(s->e, s->busy_ms, summary, err);
}

int pm_store_set_creator(pm_store *s, const char *creator, pm_err *err) {
  pm_txn *t;
  int rc = pm_txn_begin(s, &t, err);
  if (rc) return rc;
  pm_engine *e = s->e;
  char *c = pm_strdup(creator);
  if (!c) rc = pm_err_set(err, PM_NOMEM, "out of memory");
  if (!rc) {
    char *old = e->log.man.creator;
    e->log.man.creator = c;
    rc = pm_manifest_write(e->io, e->dir, &e->log.man, NULL, err);
    if (rc) { e->log.man.creator = old; pm_free(c); } else { pm_free(old); e->manifest_gen = e->log.man.gen; }
  }
  pm_txn_abort(t);
  return rc;
}

/* 1 if an engine of this process has the store at path open. */
int pm_engine_open_in_process(const char *path) {
  struct stat st;
  if (stat(path, &st) < 0) return 0;
  int found = 0;
  pthread_mutex_lock(&registry_mu);
  for (pm_engine *e = registry; e && !found; e = e->next) found = e->dev == st.st_dev && e->ino == st.st_ino;
  pthread_mutex_unlock(&registry_mu);
  return found;
}

/* Remove dir/name; ENOENT is fine. */
static int remove_file(const pm_io *io, const char *dir, const char *name, pm_err *err) {
  char *p = pm_sprintf("%s/%s", dir, name);
  if (!p) return pm_err_set(err, PM_NOMEM, "out of memory");
  int rc = io->unlink(p) < 0 && errno != ENOENT ? pm_err_sys(err, errno, "cannot remove %s", p) : PM_OK;
  pm_free(p);
  return rc;
}

/* Remove the segments of m (and their hint files). */
int pm_engine_remove_segments(const pm_io *io, const char *dir, const uint32_t *segs, uint32_t n, pm_err *err) {
  int rc = PM_OK;
  for (uint32_t i = 0; i < n && !rc; i++) {
    char name[40];
    pm_seg_name(segs[i], name, sizeof name);
    rc = remove_file(io, dir, name, err);
    snprintf(name, sizeof name, "%06u.hint", segs[i]);
    if (!rc) rc = remove_file(io, dir, name, err);
  }
  return rc;
}

/* Take the locks an offline operation needs: INIT, WRITER, and being alone. */
int pm_engine_lock_offline(pm_lock *l, const pm_io *io, const char *path, pm_err *err) {
  if (pm_engine_open_in_process(path)) return pm_err_set(err, PM_BUSY, "the store '%s' is open in this process", path);
  int rc = pm_lock_open(l, io, path, 0, err);
  if (!rc) rc = pm_lock_init_acquire(l, err);
  if (!rc) rc = pm_lock_writer_acquire(l, 0, err);
  if (!rc && !pm_lock_alone(l)) rc = pm_err_set(err, PM_BUSY, "the store '%s' is open in another process", path);
  if (rc) pm_lock_close(l);
  return rc;
}

int pm_store_destroy(const char *path, const char *creator, const pm_io *io, pm_err *err) {
  if (!io) io = &pm_io_posix;
  if (!pm_store_exists(path, io)) return PM_NOTFOUND;
  pm_lock l;
  int rc = pm_engine_lock_offline(&l, io, path, err);
  if (rc) return rc;
  pm_manifest m;
  rc = pm_manifest_read(io, path, &m, err);
  if (!rc && strcmp(m.creator, creator ? creator : "") != 0)
    rc = pm_err_set(err, PM_CONSTRAINT, "the store '%s' was created by someone else", path);
  if (!rc) rc = remove_file(io, path, PM_MANIFEST_NAME, err);
  if (!rc) rc = pm_engine_remove_segments(io, path, m.segs, m.nsegs, err);
  if (!rc) rc = remove_file(io, path, PM_MANIFEST_NAME ".tmp", err);
  if (!rc) rc = remove_file(io, path, PM_SHM_NAME, err);
  if (!rc) io->fsync_dir(path);
  pm_manifest_clear(&m);
  pm_lock_close(&l);
  if (!rc && io->rmdir(path) < 0 && errno != ENOTEMPTY && errno != EEXIST)
    rc = pm_err_sys(err, errno, "cannot remove directory '%s'", path);
  return rc;
}

