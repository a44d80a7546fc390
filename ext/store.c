/*
** store.c - the engine: ties the log, the index, the cache and the locks
** together behind store.h.
**
** Reading map:
**   1. Engines and handles: the process-wide registry, fork safety.
**   2. Opening: create or adopt a store, recover it, build the index.
**   3. Catching up with commits made by other engines.
**   4. Reading: snapshots, point lookups, iterators.
**   5. Writing: transactions, prepare, commit, abort, savepoints.
**   6. Durability and the background thread.
**   7. Maintenance: check, recover, destroy, figures.
*/
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "cache.h"
#include "index.h"
#include "lock.h"
#include "log.h"

#define DEFAULT_SEGMENT_SIZE (64ull << 20)
#define DEFAULT_CACHE_SIZE   (64ll << 20)
#define MIN_SEGMENT_SIZE     (64ull << 10)

/* ======================================================================== */
/* 1. Engines and handles                                                    */
/* ======================================================================== */

typedef struct pm_engine pm_engine;

struct pm_engine {
  /* Registry */
  pm_engine *next;
  dev_t dev;
  ino_t ino;
  int readonly;
  uint64_t fork_gen;           /* the process generation that opened it */
  int refs;                    /* handles; guarded by the registry mutex */

  char *dir;
  const pm_io *io;
  pm_log log;
  pm_lock lock;
  int log_open, lock_open;

  /* The index and what it reflects (ix_lock: readers shared, appliers exclusive). */
  pthread_rwlock_t ix_lock;
  pm_index *ix;
  pm_cache *cache;
  int64_t cache_size;

  /* Published state (atomics, read without locks). */
  uint64_t last_seq;           /* newest committed seq */
  uint64_t shm_seen;           /* shared counter after our last catch-up or publish */

  /* Guarded by catch_mu (and by holding the writer lock for the writer). */
  pthread_mutex_t catch_mu;
  pm_pos applied;              /* the index reflects the log up to here */
  uint64_t next_seq;           /* lowest seq not used yet */
  int64_t int_hw;
  int has_int_hw;
  uint64_t manifest_gen;

  /* Snapshots pinned by readers (oldest keeps index versions alive). */
  pthread_mutex_t snap_mu;
  uint64_t *pins;
  size_t npins, cap_pins;

  /* The writer: one transaction at a time in this process. */
  pthread_mutex_t wmu;
  pthread_cond_t wcv;
  int writer_busy;

  /* Background thread: periodic fsync under NORMAL, sync requests. */
  pthread_t bg;
  int bg_started, bg_stop, bg_sync_now;
  uint64_t sync_interval_ms;
  pthread_mutex_t bg_mu;
  pthread_cond_t bg_cv;

  /* Figures */
  uint64_t commits, catchups, dropped_bytes;
};

struct pm_store {
  pm_engine *e;
  int readonly;
  int sync;
  uint64_t busy_ms;
};

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

static uint64_t load64(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static void store64(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }

/* The cache id of the record at pos: segment numbers are never reused. */
static uint64_t cache_id(pm_pos at) { return (uint64_t)at.seg << 40 | at.off; }

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

static int foreign_file_cb(void *ctx, const char *name) {
  (void)ctx;
  return is_store_file(name) ? 0 : 1;
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
  if (pm_store_exists(path, io)) return PM_OK;
  int foreign = io->list_dir(path, foreign_file_cb, NULL);
  if (foreign < 0) return pm_err_sys(err, errno, "cannot read directory '%s'", path);
  if (foreign > 0 || !o->create || o->readonly)
    return pm_err_set(err, PM_CANTOPEN, "'%s' is not a persistmap store", path);
  *fresh = 1;
  return PM_OK;
}

int pm_store_exists(const char *path, const pm_io *io) {
  if (!io) io = &pm_io_posix;
  char *m = pm_sprintf("%s/%s", path, PM_MANIFEST_NAME);
  if (!m) return 0;
  int fd = io->open(m, O_RDONLY, 0);
  pm_free(m);
  if (fd < 0) return 0;
  io->close(fd);
  return 1;
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
static int apply_load(void *ctx, const pm_group *g, pm_err *err) {
  pm_engine *e = ctx;
  for (size_t i = 0; i < g->n; i++) {
    const pm_grec *r = &g->recs[i];
    pm_key k = { r->ktype, r->klen, g->keys + r->key_off };
    int rc = r->type == PM_REC_PUT
        ? pm_index_load_put(e->ix, &k, r->seq, r->at.seg, r->at.off, r->vlen, r->vtype)
        : pm_index_load_delete(e->ix, &k, r->seq);
    if (rc == PM_NOMEM) return pm_err_set(err, PM_NOMEM, "out of memory building the index");
    note_record(e, r, k.data);
  }
  if (g->id > e->last_seq) e->last_seq = g->id;
  return PM_OK;
}

/* Live: apply a committed group to the index (exclusive lock held by caller
** or taken here). Capacity is reserved first so a group applies whole. */
static int apply_group_locked(pm_engine *e, const pm_group *g, pm_err *err) {
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
  int rc = apply_group_locked(e, g, err);
  pthread_rwlock_unlock(&e->ix_lock);
  if (!rc && g->id > load64(&e->last_seq)) store64(&e->last_seq, g->id);
  return rc;
}

/* The state to publish in shared memory, from the engine's own (called by
** the writer, or by an engine alone on the store, with catch_mu held). */
static pm_shared shared_state(pm_engine *e, pm_pos prepared) {
  pm_shared s;
  memset(&s, 0, sizeof s);
  s.commit = e->applied;
  s.commit_seq = load64(&e->last_seq);
  s.next_seq = e->next_seq;
  s.int_hw = e->int_hw;
  s.has_int_hw = e->has_int_hw;
  e->manifest_gen = e->log.man.gen;     /* our own roll-overs rewrote it */
  s.manifest_gen = e->manifest_gen;
  s.prepared = pm_pos_cmp(prepared, e->applied) > 0 ? prepared : e->applied;
  return s;
}

static void on_durable(void *ctx, pm_pos p) { pm_shm_set_durable(ctx, p); }

/* Build the index from the log. An engine alone on the store trusts only the
** log, cuts a torn tail and rebuilds the shared page; otherwise the log is
** replayed up to the commit point the other engines published. */
static int recover_index(pm_engine *e, pm_err *err) {
  const pm_manifest *m = &e->log.man;
  int valid = pm_shm_valid(&e->lock, m->store_id);
  int alone = pm_lock_alone(&e->lock) || !valid;
  pm_shared sh;
  pm_shm_read(&e->lock, &sh);
  e->ix = pm_index_new(m->seed);
  if (!e->ix) return pm_err_set(err, PM_NOMEM, "out of memory");
  pm_index_load_begin(e->ix);
  pm_scan scan;
  pm_pos from = { e->log.files[0].num, PM_SEG_HEADER };
  pm_pos hint = valid ? pm_shm_durable(&e->lock) : (pm_pos){ 0, 0 };
  int rc = alone ? pm_log_scan(&e->log, from, (pm_pos){ 0, 0 }, PM_SCAN_OPEN, hint, apply_load, e, &scan, err)
                 : pm_log_scan(&e->log, from, sh.commit, PM_SCAN_BOUNDED, hint, apply_load, e, &scan, err);
  if (!rc && pm_index_load_end(e->ix) != PM_OK) rc = pm_err_set(err, PM_NOMEM, "out of memory building the index");
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
    if (rc) return rc;
    pm_shared st = shared_state(e, e->applied);
    pm_shm_reset(&e->lock, m->store_id, &st);
  }
  e->shm_seen = pm_shm_counter(&e->lock);
  e->log.on_durable = on_durable;
  e->log.on_durable_ctx = &e->lock;
  return PM_OK;
}

/* ======================================================================== */
/* 6. Durability: the background thread                                      */
/* ======================================================================== */

/* Every sync_interval, or when asked, fsync what was written. It stops when
** the engine closes. */
static void *bg_main(void *arg) {
  pm_engine *e = arg;
  pthread_mutex_lock(&e->bg_mu);
  while (!e->bg_stop) {
    if (!e->bg_sync_now) {
      struct timespec ts;
      clock_gettime(CLOCK_MONOTONIC, &ts);
      uint64_t ns = (uint64_t)ts.tv_nsec + e->sync_interval_ms * 1000000u;
      ts.tv_sec += (time_t)(ns / 1000000000u);
      ts.tv_nsec = (long)(ns % 1000000000u);
      pthread_cond_timedwait(&e->bg_cv, &e->bg_mu, &ts);
      if (e->bg_stop) break;
    }
    e->bg_sync_now = 0;
    pthread_mutex_unlock(&e->bg_mu);
    pm_log_sync(&e->log, pm_log_written(&e->log), -1, NULL);
    pthread_mutex_lock(&e->bg_mu);
  }
  pthread_mutex_unlock(&e->bg_mu);
  return NULL;
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

static void engine_free(pm_engine *e) {
  bg_stop(e);
  if (e->log_open && !e->readonly && !e->log.failed) {
    pm_log_flush(&e->log, NULL);
    pm_log_sync(&e->log, pm_log_written(&e->log), -1, NULL);
  }
  if (e->log_open) pm_log_close(&e->log);
  if (e->lock_open) pm_lock_close(&e->lock);
  if (e->ix) pm_index_free(e->ix);
  if (e->cache) pm_cache_free(e->cache);
  pthread_rwlock_destroy(&e->ix_lock);
  pthread_mutex_destroy(&e->catch_mu);
  pthread_mutex_destroy(&e->snap_mu);
  pthread_mutex_destroy(&e->wmu);
  pthread_cond_destroy(&e->wcv);
  pthread_mutex_destroy(&e->bg_mu);
  pthread_cond_destroy(&e->bg_cv);
  pm_free(e->pins);
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
  if (fresh && !pm_store_exists(e->dir, e->io)) rc = create_store(e, o, err);
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
    if (e->log.failed) rc = pm_err_set(err, e->log.failed, "%s", e->log.failmsg);
    engine_free(e);
  }
  return rc;
}

/* A handle opened before a fork belongs to the parent's engine: refuse it. */
static int handle_ok(pm_store *s, pm_err *err) {
  if (s->e->fork_gen == fork_gen) return PM_OK;
  return pm_err_set(err, PM_MISUSE, "this store was opened by the parent process; open it again");
}

/* ======================================================================== */
/* 3. Catching up with other engines                                         */
/* ======================================================================== */

/* Follow a manifest another engine rewrote (a roll-over). */
static int follow_manifest(pm_engine *e, pm_err *err) {
  pm_manifest m;
  int rc = pm_manifest_read(e->io, e->dir, &m, err);
  if (rc) return rc;
  rc = pm_log_follow(&e->log, &m, err);
  if (rc == PM_BUSY)
    rc = pm_err_set(err, PM_BUSY, "the store was compacted by another process; reopen it");
  if (!rc) e->manifest_gen = m.gen;
  pm_manifest_clear(&m);
  return rc;
}

/* Apply what other engines committed since we last looked (catch_mu held).
** The writer (holding the writer lock) also adopts a group another writer
** wrote and did not get to commit before it died: such a group counts as
** committed, as it would at recovery. */
static int catch_up_locked(pm_engine *e, int writer, pm_err *err) {
  pm_shared sh;
  pm_shm_read(&e->lock, &sh);
  if (sh.counter == e->shm_seen && !writer) return PM_OK;
  int rc = PM_OK;
  if (sh.manifest_gen != e->manifest_gen) rc = follow_manifest(e, err);
  pm_pos upto = writer && pm_pos_cmp(sh.prepared, sh.commit) > 0 ? sh.prepared : sh.commit;
  if (!rc && sh.commit.seg && pm_pos_cmp(upto, e->applied) > 0) {
    pm_scan scan;
    rc = pm_log_scan(&e->log, e->applied, upto, PM_SCAN_BOUNDED, (pm_pos){ 0, 0 }, apply_live, e, &scan, err);
    if (!rc) e->applied = upto;
    e->catchups++;
  }
  if (rc) return rc;
  if (writer) {
    if (sh.next_seq > e->next_seq) e->next_seq = sh.next_seq;
    if (sh.has_int_hw && (!e->has_int_hw || sh.int_hw > e->int_hw)) { e->int_hw = sh.int_hw; e->has_int_hw = 1; }
  }
  e->shm_seen = sh.counter;
  return PM_OK;
}

/* Cheap check on the read path: one load of the shared counter. */
static int catch_up(pm_engine *e, pm_err *err) {
  if (pm_shm_counter(&e->lock) == load64(&e->shm_seen)) return PM_OK;
  pthread_mutex_lock(&e->catch_mu);
  int rc = catch_up_locked(e, 0, err);
  pthread_mutex_unlock(&e->catch_mu);
  return rc;
}

/* ======================================================================== */
/* 4. Reading                                                                */
/* ======================================================================== */

/* Pin the newest committed state as a snapshot. Under snap_mu, so that an
** index compaction (which keeps what the oldest pin can see) never runs
** between reading last_seq and pinning it. */
static int pin_latest(pm_engine *e, uint64_t *seq) {
  pthread_mutex_lock(&e->snap_mu);
  if (e->npins == e->cap_pins) {
    size_t cap = e->cap_pins ? e->cap_pins * 2 : 16;
    uint64_t *p = pm_realloc(e->pins, cap * sizeof *p);
    if (!p) { pthread_mutex_unlock(&e->snap_mu); return PM_NOMEM; }
    e->pins = p;
    e->cap_pins = cap;
  }
  *seq = load64(&e->last_seq);
  e->pins[e->npins++] = *seq;
  pthread_mutex_unlock(&e->snap_mu);
  return PM_OK;
}

static void unpin(pm_engine *e, uint64_t seq) {
  pthread_mutex_lock(&e->snap_mu);
  for (size_t i = 0; i < e->npins; i++)
    if (e->pins[i] == seq) { e->pins[i] = e->pins[--e->npins]; break; }
  pthread_mutex_unlock(&e->snap_mu);
}

/* What an index compaction must keep visible: the oldest pinned snapshot,
** and the newest published state (readers without a pin use it). */
static uint64_t oldest_visible(pm_engine *e) {
  pthread_mutex_lock(&e->snap_mu);
  uint64_t m = load64(&e->last_seq);
  for (size_t i = 0; i < e->npins; i++) if (e->pins[i] < m) m = e->pins[i];
  pthread_mutex_unlock(&e->snap_mu);
  return m;
}

int pm_store_snap_begin(pm_store *s, pm_snap *snap, pm_err *err) {
  int rc = handle_ok(s, err);
  if (!rc) rc = catch_up(s->e, err);
  if (!rc && pin_latest(s->e, &snap->seq)) rc = pm_err_set(err, PM_NOMEM, "out of memory");
  snap->priv = rc ? NULL : s->e;
  return rc;
}

void pm_store_snap_end(pm_store *s, pm_snap *snap) {
  if (snap->priv) unpin(s->e, snap->seq);
  snap->priv = NULL;
}

/* The value of the record at `at`: from the cache, or one read of the log. */
static int read_value(pm_engine *e, pm_pos at, uint32_t klen, uint8_t vtype, uint32_t vlen,
                      pm_value **out, pm_err *err) {
  uint64_t id = cache_id(at);
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

static int check_key(const pm_key *k, pm_err *err) {
  if (k->len > PM_MAX_KEY)
    return pm_err_set(err, PM_TOOBIG, "key of %u bytes is larger than %u", k->len, PM_MAX_KEY);
  if (k->type < PM_INTEGER || k->type > PM_BLOB)
    return pm_err_set(err, PM_MISUSE, "bad key type %u", k->type);
  return PM_OK;
}

/* Look up k in snap (NULL: the newest state, read under the index lock so
** that no compaction can drop what it sees) and read what was asked. */
static int index_get(pm_engine *e, const pm_snap *snap, const pm_key *k, pm_value **val,
                     pm_meta *meta, pm_err *err) {
  pm_ientry ie;
  pthread_rwlock_rdlock(&e->ix_lock);
  int rc = pm_index_find(e->ix, k, snap ? snap->seq : load64(&e->last_seq), &ie);
  pthread_rwlock_unlock(&e->ix_lock);
  if (rc) return rc;
  if (meta) *meta = (pm_meta){ ie.seq, ie.vtype, ie.vlen };
  if (!val) return PM_OK;
  return read_value(e, (pm_pos){ ie.seg, ie.off }, k->len, ie.vtype, ie.vlen, val, err);
}

int pm_store_get(pm_store *s, const pm_snap *snap, const pm_key *k, pm_value **val,
                 pm_meta *meta, pm_err *err) {
  int rc = handle_ok(s, err);
  if (!rc) rc = check_key(k, err);
  if (!rc && !snap) rc = catch_up(s->e, err);
  if (rc) return rc;
  return index_get(s->e, snap, k, val, meta, err);
}

/* ======================================================================== */
/* 5. Writing                                                                */
/* ======================================================================== */

/* One write of a transaction. Keys live in the transaction's key arena. */
typedef struct txn_op {
  uint8_t type;            /* PM_REC_PUT or PM_REC_DEL */
  uint8_t ktype;
  uint32_t klen;
  uint64_t key_off;
  uint64_t seq;
  pm_value *val;           /* PUT: the value (owned) */
} txn_op;

typedef struct txn_svp { int level; size_t nops; } txn_svp;

struct pm_txn {
  pm_store *s;
  pm_engine *e;
  txn_op *ops;
  size_t nops, cap;
  uint8_t *keys;
  size_t klen, kcap;
  uint32_t *map;           /* open addressing: op index + 1 of each key's newest op */
  size_t map_cap, map_used;
  txn_svp *svp;
  size_t nsvp, cap_svp;
  int64_t int_max;
  int has_int;
  /* The written group (after prepare). */
  int prepared;
  uint64_t group_id;
  pm_pos group_end;
  pm_group grp;
};

static pm_key op_key(const pm_txn *t, const txn_op *op) {
  pm_key k = { op->ktype, op->klen, t->keys + op->key_off };
  return k;
}

static uint64_t key_hash(const pm_key *k) {
  return XXH3_64bits_withSeed(k->data, k->len, k->type);
}

static int key_eq(const pm_key *a, const pm_key *b) {
  return a->type == b->type && a->len == b->len && (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}

/* Slot of k in the op map: its slot if present, else the empty slot to use. */
static size_t map_slot(const pm_txn *t, const pm_key *k) {
  size_t mask = t->map_cap - 1;
  for (size_t i = key_hash(k) & mask;; i = (i + 1) & mask) {
    if (t->map[i] == 0) return i;
    pm_key other = op_key(t, &t->ops[t->map[i] - 1]);
    if (key_eq(&other, k)) return i;
  }
}

/* Refill the map from the ops, in its current storage. */
static void map_reindex(pm_txn *t) {
  memset(t->map, 0, t->map_cap * sizeof *t->map);
  t->map_used = 0;
  for (size_t i = 0; i < t->nops; i++) {
    pm_key k = op_key(t, &t->ops[i]);
    size_t slot = map_slot(t, &k);
    if (!t->map[slot]) t->map_used++;
    t->map[slot] = (uint32_t)(i + 1);
  }
}

/* Grow the map to cap slots. */
static int map_grow(pm_txn *t, size_t cap) {
  uint32_t *m = pm_calloc(cap, sizeof *m);
  if (!m) return PM_NOMEM;
  pm_free(t->map);
  t->map = m;
  t->map_cap = cap;
  map_reindex(t);
  return PM_OK;
}

/* The newest op of the transaction on k, or NULL. */
static txn_op *txn_find(const pm_txn *t, const pm_key *k) {
  if (!t || t->nops == 0) return NULL;
  size_t slot = map_slot(t, k);
  return t->map[slot] ? &t->ops[t->map[slot] - 1] : NULL;
}

/* Is op the newest on its key (so part of the transaction's net effect)? */
static int op_is_newest(const pm_txn *t, const txn_op *op) {
  pm_key k = op_key(t, op);
  return txn_find(t, &k) == op;
}

/* Writer lock: in-process first (a transaction may start on one thread and
** end on another, so not a plain mutex), then the file lock. */
static int writer_acquire(pm_engine *e, uint64_t timeout_ms, pm_err *err) {
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
  pthread_mutex_unlock(&e->wmu);
  uint64_t spent_ms = (pm_now_ns() - start) / 1000000u;
  int rc = pm_lock_writer_acquire(&e->lock, timeout_ms > spent_ms ? timeout_ms - spent_ms : 0, err);
  if (rc) {
    pthread_mutex_lock(&e->wmu);
    e->writer_busy = 0;
    pthread_cond_signal(&e->wcv);
    pthread_mutex_unlock(&e->wmu);
  }
  return rc;
}

static void writer_release(pm_engine *e) {
  pm_lock_writer_release(&e->lock);
  pthread_mutex_lock(&e->wmu);
  e->writer_busy = 0;
  pthread_cond_signal(&e->wcv);
  pthread_mutex_unlock(&e->wmu);
}

/* The error every write gets once the engine stopped on a failed write/fsync. */
static int stopped_error(pm_engine *e, pm_err *err) {
  return pm_err_set(err, e->log.failed, "the store stopped after an earlier error: %s", e->log.failmsg);
}

int pm_txn_begin(pm_store *s, pm_txn **out, pm_err *err) {
  *out = NULL;
  int rc = handle_ok(s, err);
  if (rc) return rc;
  pm_engine *e = s->e;
  if (s->readonly || e->readonly) return pm_err_set(err, PM_READONLY, "the store is read-only");
  if (e->log.failed) return stopped_error(e, err);
  pm_txn *t = pm_calloc(1, sizeof *t);
  if (!t) return pm_err_set(err, PM_NOMEM, "out of memory");
  t->s = s;
  t->e = e;
  if ((rc = writer_acquire(e, s->busy_ms, err)) != PM_OK) { pm_free(t); return rc; }
  pthread_mutex_lock(&e->catch_mu);
  rc = catch_up_locked(e, 1, err);
  if (!rc && !e->log.failed) rc = pm_log_start_append(&e->log, e->applied, err);
  pthread_mutex_unlock(&e->catch_mu);
  if (!rc && e->log.failed) rc = stopped_error(e, err);
  if (rc) { writer_release(e); pm_free(t); return rc; }
  *out = t;
  return PM_OK;
}

int pm_txn_dirty(const pm_txn *t) { return t->nops > 0; }

int pm_txn_get(pm_txn *t, const pm_key *k, pm_value **val, pm_meta *meta, pm_err *err) {
  int rc = check_key(k, err);
  if (rc) return rc;
  txn_op *op = txn_find(t, k);
  if (!op) return index_get(t->e, NULL, k, val, meta, err);
  if (op->type == PM_REC_DEL) return PM_NOTFOUND;
  if (meta) *meta = (pm_meta){ op->seq, op->val->type, op->val->len };
  if (val) *val = pm_value_ref(op->val);
  return PM_OK;
}

/* Append an op (its key copied into the arena, the map updated). */
static int txn_add(pm_txn *t, uint8_t type, const pm_key *k, pm_value *val, uint64_t *seq_out,
                   pm_err *err) {
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
  if ((t->map_used + 1) * 4 > t->map_cap * 3 && map_grow(t, t->map_cap ? t->map_cap * 2 : 64))
    return pm_err_set(err, PM_NOMEM, "out of memory");
  txn_op *op = &t->ops[t->nops];
  op->type = type;
  op->ktype = k->type;
  op->klen = k->len;
  op->key_off = t->klen;
  op->val = val;
  op->seq = t->e->next_seq++;
  if (k->len) memcpy(t->keys + t->klen, k->data, k->len);
  t->klen += k->len;
  t->nops++;
  pm_key stored = op_key(t, op);
  size_t slot = map_slot(t, &stored);
  if (!t->map[slot]) t->map_used++;
  t->map[slot] = (uint32_t)t->nops;
  if (seq_out) *seq_out = op->seq;
  return PM_OK;
}

int pm_txn_put(pm_txn *t, const pm_key *k, uint8_t vtype, const void *v, uint32_t vlen, int mode,
               uint64_t *seq_out, pm_err *err) {
  int rc = check_key(k, err);
  if (rc) return rc;
  if (vlen > PM_MAX_VALUE)
    return pm_err_set(err, PM_TOOBIG, "value of %u bytes is larger than %u", vlen, PM_MAX_VALUE);
  if (vtype < PM_INTEGER || vtype > PM_NULL) return pm_err_set(err, PM_MISUSE, "bad value type %u", vtype);
  if (mode == PM_PUT_INSERT) {
    rc = pm_txn_get(t, k, NULL, NULL, err);
    if (rc == PM_OK) return pm_err_set(err, PM_CONSTRAINT, "key already exists");
    if (rc != PM_NOTFOUND) return rc;
  }
  pm_value *val = pm_value_new(vtype, vlen);
  if (!val) return pm_err_set(err, PM_NOMEM, "out of memory for a value of %u bytes", vlen);
  if (vlen) memcpy(val->data, v, vlen);
  rc = txn_add(t, PM_REC_PUT, k, val, seq_out, err);
  if (rc) { pm_value_unref(val); return rc; }
  if (k->type == PM_INTEGER && k->len == 8) {
    int64_t i = (int64_t)pm_get_u64(k->data);
    if (!t->has_int || i > t->int_max) { t->int_max = i; t->has_int = 1; }
  }
  return PM_OK;
}

int pm_txn_delete(pm_txn *t, const pm_key *k, pm_err *err) {
  int rc = pm_txn_get(t, k, NULL, NULL, err);
  if (rc) return rc;
  return txn_add(t, PM_REC_DEL, k, NULL, NULL, err);
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

/* Drop the ops after the first n and rebuild the map. */
static void txn_truncate(pm_txn *t, size_t n) {
  for (size_t i = n; i < t->nops; i++) pm_value_unref(t->ops[i].val);
  if (n < t->nops) {
    t->klen = n ? t->ops[n - 1].key_off + t->ops[n - 1].klen : 0;
    t->nops = n;
    if (t->map) map_reindex(t);
  }
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
  pm_free(t->grp.recs);
  t->grp.recs = pm_malloc(sizeof(pm_grec) * (t->nops ? t->nops : 1));
  if (!t->grp.recs) return pm_err_set(err, PM_NOMEM, "out of memory");
  size_t n = 0;
  for (size_t i = 0; i < t->nops; i++) {
    const txn_op *op = &t->ops[i];
    if (!op_is_newest(t, op)) continue;
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
    pm_key k = op_key(t, op);
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
  if (e->log.failed) return stopped_error(e, err);
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
  if (t->nops == 0) return PM_OK;
  int rc = txn_write(t, t->s->sync == PM_SYNC_FULL, err);
  if (rc) return rc;
  t->prepared = 1;
  pm_engine *e = t->e;
  pthread_mutex_lock(&e->catch_mu);
  pm_shared st = shared_state(e, t->group_end);
  e->shm_seen = pm_shm_publish(&e->lock, &st);
  pthread_mutex_unlock(&e->catch_mu);
  return PM_OK;
}

/* Free the transaction's memory. */
static void txn_free(pm_txn *t) {
  txn_truncate(t, 0);
  pm_free(t->ops);
  pm_free(t->keys);
  pm_free(t->map);
  pm_free(t->svp);
  pm_free(t->grp.recs);
  pm_free(t);
}

/* Offer the committed values to the cache: a value just written is likely
** read soon (a queue's consumer, read-your-writes). */
static void cache_group(pm_txn *t) {
  size_t hint = 0;
  for (size_t i = 0; i < t->grp.n; i++) {
    const pm_grec *r = &t->grp.recs[i];
    const txn_op *op = op_of(t, r, &hint);
    if (op->val && op->val->len) pm_cache_put(t->e->cache, cache_id(r->at), op->val);
  }
}

/* Make the written group visible and published to other engines. */
static int publish_group(pm_txn *t, pm_err *err) {
  pm_engine *e = t->e;
  pthread_mutex_lock(&e->catch_mu);
  pthread_rwlock_wrlock(&e->ix_lock);
  int rc = apply_group_locked(e, &t->grp, err);
  pthread_rwlock_unlock(&e->ix_lock);
  if (!rc) {
    if (t->has_int && (!e->has_int_hw || t->int_max > e->int_hw)) { e->int_hw = t->int_max; e->has_int_hw = 1; }
    e->applied = t->group_end;
    store64(&e->last_seq, t->group_id);
    pm_shared st = shared_state(e, e->applied);
    e->shm_seen = pm_shm_publish(&e->lock, &st);
    e->commits++;
  } else {
    pm_log_fail(&e->log, err);      /* memory and log disagree: stop until reopened */
  }
  pthread_mutex_unlock(&e->catch_mu);
  if (!rc) {
    cache_group(t);
    uint64_t keep = oldest_visible(e);
    pthread_rwlock_wrlock(&e->ix_lock);
    pm_index_compact(e->ix, keep);
    pthread_rwlock_unlock(&e->ix_lock);
  }
  return rc;
}

int pm_txn_commit(pm_txn *t, pm_err *err) {
  pm_engine *e = t->e;
  int rc = PM_OK;
  int late_sync = 0;
  if (t->nops && !t->prepared) {
    rc = txn_write(t, 0, err);
    late_sync = t->s->sync == PM_SYNC_FULL;
  }
  if (rc) { pm_txn_abort(t); return rc; }
  if (t->nops) rc = publish_group(t, err);
  pm_pos end = t->group_end;
  writer_release(e);
  txn_free(t);
  /* Outside the writer lock, so that concurrent committers share the fsync. */
  if (!rc && late_sync) rc = pm_log_sync(&e->log, end, -1, err);
  return rc;
}

void pm_txn_abort(pm_txn *t) {
  pm_engine *e = t->e;
  if (t->prepared && !e->log.failed) {
    pm_err ignored;
    if (pm_log_add_abort(&e->log, t->group_id, &ignored) == PM_OK &&
        pm_log_flush(&e->log, &ignored) == PM_OK) {
      pthread_mutex_lock(&e->catch_mu);
      e->applied = e->log.end;
      pm_shared st = shared_state(e, e->applied);
      e->shm_seen = pm_shm_publish(&e->lock, &st);
      pthread_mutex_unlock(&e->catch_mu);
    }
  }
  writer_release(e);
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
};

static int seq_in_range(const pm_iter *it, uint64_t seq) {
  return seq >= it->spec.min_seq && seq <= it->spec.max_seq;
}

static int key_passes(const pm_iter *it, const pm_key *k) {
  return !it->spec.match || it->spec.match(it->spec.match_ctx, k);
}

/* Copy a key into the batch's key buffer; -1 on OOM. */
static int keep_key(pm_iter *it, iter_row *row, const pm_key *k) {
  if (it->klen + k->len > it->kcap) {
    size_t cap = it->kcap ? it->kcap * 2 : 4096;
    while (cap < it->klen + k->len) cap *= 2;
    uint8_t *p = pm_realloc(it->kbuf, cap);
    if (!p) return -1;
    it->kbuf = p;
    it->kcap = cap;
  }
  if (k->len) memcpy(it->kbuf + it->klen, k->data, k->len);
  row->ktype = k->type;
  row->klen = k->len;
  row->key_off = it->klen;
  it->klen += k->len;
  return 0;
}

/* Position in the index: first use, or after a compaction renumbered it. */
static void index_position(pm_iter *it) {
  pm_index *ix = it->e->ix;
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
    int rc = it->spec.desc ? pm_index_prev(e->ix, &it->pos, it->snap, &ie)
                           : pm_index_next(e->ix, &it->pos, it->snap, &ie);
    if (rc) { done = 1; break; }
    it->last_seq = ie.seq;
    if (!seq_in_range(it, ie.seq)) {
      if (it->spec.desc ? ie.seq < it->spec.min_seq : ie.seq > it->spec.max_seq) { done = 1; break; }
      continue;
    }
    if (txn_find(it->txn, &ie.key) || !key_passes(it, &ie.key)) continue;
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
    if (op->type != PM_REC_PUT || !seq_in_range(it, op->seq) || !op_is_newest(t, op)) continue;
    pm_key k = op_key(t, op);
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
  int rc = handle_ok(s, err);
  if (rc) return rc;
  pm_iter *it = pm_calloc(1, sizeof *it);
  if (!it) return pm_err_set(err, PM_NOMEM, "out of memory");
  it->s = s;
  it->e = s->e;
  it->txn = txn;
  it->spec = *spec;
  if (txn) {
    it->tend = txn->nops;
    it->snap = load64(&s->e->last_seq);     /* the writer's view: nothing newer can commit */
  } else if (snap) {
    it->snap = snap->seq;
  } else {
    rc = pm_store_snap_begin(s, &it->own_snap, err);
    if (rc) { pm_free(it); return rc; }
    it->snap = it->own_snap.seq;
  }
  *out = it;
  return PM_OK;
}

int pm_iter_next(pm_iter *it, pm_err *err) {
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

int pm_iter_value(pm_iter *it, pm_value **out, pm_err *err) {
  iter_row *row = &it->rows[it->cur];
  if (row->val) { *out = pm_value_ref(row->val); return PM_OK; }
  return read_value(it->e, row->at, row->klen, row->meta.vtype, row->meta.vlen, out, err);
}

void pm_iter_close(pm_iter *it) {
  if (!it) return;
  drop_batch(it);
  pm_store_snap_end(it->s, &it->own_snap);
  pm_free(it->kbuf);
  pm_free(it);
}

/* ======================================================================== */
/* 6b. Sync                                                                  */
/* ======================================================================== */

int pm_store_sync(pm_store *s, int64_t timeout_ms, pm_err *err) {
  int rc = handle_ok(s, err);
  if (rc) return rc;
  pm_engine *e = s->e;
  if (e->readonly) return PM_OK;
  if (e->log.failed) return stopped_error(e, err);
  pm_pos upto = pm_log_written(&e->log);
  if (timeout_ms < 0) return pm_log_sync(&e->log, upto, -1, err);
  bg_request_sync(e);
  return pm_log_sync(&e->log, upto, timeout_ms * 1000000, err);
}

/* ======================================================================== */
/* 7. Maintenance and figures                                                */
/* ======================================================================== */

int pm_store_stats(pm_store *s, pm_stats *o, pm_err *err) {
  int rc = handle_ok(s, err);
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
  for (uint32_t i = 0; i < e->log.nfiles; i++) o->log_bytes += e->log.files[i].size;
  o->segments = e->log.nfiles;
  pthread_rwlock_unlock(&e->log.segs_lock);
  pthread_mutex_lock(&e->log.sync_mu);
  pm_pos w = e->log.written, d = e->log.durable;
  o->fsyncs = e->log.fsyncs;
  o->last_error_code = e->log.failed;
  snprintf(o->last_error, sizeof o->last_error, "%s", e->log.failmsg);
  pthread_mutex_unlock(&e->log.sync_mu);
  o->unsynced_bytes = w.seg == d.seg && w.off > d.off ? w.off - d.off : (w.seg > d.seg ? w.off : 0);
  o->last_seq = load64(&e->last_seq);
  o->next_int_key = e->has_int_hw ? (e->int_hw < 0 ? 1 : e->int_hw + 1) : 1;
  o->commits = e->commits;
  o->dropped_bytes = e->dropped_bytes;
  o->catchups = e->catchups;
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
    char seg[32], line[128];
    pm_seg_name(at.seg, seg, sizeof seg);
    snprintf(line, sizeof line, "index entry seq %llu does not match the record in %s at offset %llu",
             (unsigned long long)ie->seq, seg, (unsigned long long)at.off);
    char *n = *report ? pm_sprintf("%s\n%s", *report, line) : pm_strdup(line);
    if (n) { pm_free(*report); *report = n; }
  }
  return PM_OK;
}

/* Every live key of the index must point at its own record. */
static int check_index(pm_engine *e, char **report, pm_err *err) {
  pthread_rwlock_rdlock(&e->ix_lock);
  uint32_t pos = pm_index_seek(e->ix, 0);
  pm_ientry ie;
  int rc = PM_OK;
  while (!rc && pm_index_next(e->ix, &pos, load64(&e->last_seq), &ie) == PM_OK) rc = check_entry(e, &ie, report);
  pthread_rwlock_unlock(&e->ix_lock);
  return rc ? pm_err_set(err, PM_NOMEM, "out of memory") : PM_OK;
}

int pm_store_check(pm_store *s, char **report, pm_err *err) {
  *report = NULL;
  int rc = handle_ok(s, err);
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
  (void)s;
  *summary = NULL;
  return pm_err_set(err, PM_ERROR, "shrink is not available yet in this version");
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
    rc = pm_manifest_write(e->io, e->dir, &e->log.man, err);
    if (rc) { e->log.man.creator = old; pm_free(c); } else { pm_free(old); e->manifest_gen = e->log.man.gen; }
  }
  pm_txn_abort(t);
  return rc;
}

/* 1 if an engine of this process has the store at path open. */
static int open_in_process(const char *path) {
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
static int remove_segments(const pm_io *io, const char *dir, const uint32_t *segs, uint32_t n, pm_err *err) {
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
static int lock_offline(pm_lock *l, const pm_io *io, const char *path, pm_err *err) {
  if (open_in_process(path)) return pm_err_set(err, PM_BUSY, "the store '%s' is open in this process", path);
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
  int rc = lock_offline(&l, io, path, err);
  if (rc) return rc;
  pm_manifest m;
  rc = pm_manifest_read(io, path, &m, err);
  if (!rc && strcmp(m.creator, creator ? creator : "") != 0)
    rc = pm_err_set(err, PM_CONSTRAINT, "the store '%s' was created by someone else", path);
  if (!rc) rc = remove_file(io, path, PM_MANIFEST_NAME, err);
  if (!rc) rc = remove_segments(io, path, m.segs, m.nsegs, err);
  if (!rc) rc = remove_file(io, path, PM_MANIFEST_NAME ".tmp", err);
  if (!rc) rc = remove_file(io, path, PM_SHM_NAME, err);
  if (!rc) io->fsync_dir(path);
  pm_manifest_clear(&m);
  pm_lock_close(&l);
  if (!rc && io->rmdir(path) < 0 && errno != ENOTEMPTY && errno != EEXIST)
    rc = pm_err_sys(err, errno, "cannot remove directory '%s'", path);
  return rc;
}

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
    rc = read_value(e, (pm_pos){ ie.seg, ie.off }, ie.key.len, ie.vtype, ie.vlen, &v, err);
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
  if (!rc) rc = remove_segments(e->io, e->dir, old, nold, err);
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
  int rc = lock_offline(&l, e->io, path, err);
  if (rc) return rc;
  pm_manifest m;
  rc = pm_manifest_read(e->io, path, &m, err);
  if (!rc) { rc = pm_log_open(&e->log, e->io, path, &m, 0, err); e->log_open = 1; pm_manifest_clear(&m); }
  if (!rc && !(e->ix = pm_index_new(e->log.man.seed))) rc = pm_err_set(err, PM_NOMEM, "out of memory");
  if (!rc) {
    pm_index_load_begin(e->ix);
    pm_pos from = { e->log.files[0].num, PM_SEG_HEADER };
    rc = pm_log_scan(&e->log, from, (pm_pos){ 0, 0 }, PM_SCAN_SALVAGE, (pm_pos){ 0, 0 }, apply_load, e, &sv.scan, err);
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
