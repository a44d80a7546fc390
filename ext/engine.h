/*
** engine.h - the engine's insides, shared by its source files:
**   store.c    engines and handles, opening and recovery, catching up with
**              other processes, point reads, sync, figures, destroy
**   txn.c      write transactions
**   iter.c     iterators over snapshots
**   compact.c  compaction, hint files and salvage
** Not an API: the SQL layer and applications use store.h only.
*/
#ifndef PM_ENGINE_H
#define PM_ENGINE_H

#include <pthread.h>
#include <sys/types.h>

#include "cache.h"
#include "index.h"
#include "lock.h"
#include "log.h"
#include "store.h"

typedef struct pm_engine pm_engine;

/* A pinned snapshot: a seq and the index it reads. */
typedef struct pm_pin { uint64_t seq; pm_index *ix; } pm_pin;

/* What recovery's scan feeds: the index being loaded, and the figures. */
typedef struct pm_loader {
  pm_engine *e;
  pm_index *ix;
  uint64_t last_seq;     /* newest committed group seen */
} pm_loader;

struct pm_engine {
  /* Registry */
  pm_engine *next;
  dev_t dev;
  ino_t ino;
  int readonly;
  uint64_t fork_gen;           /* the process generation that opened it */
  int refs;                    /* handles; guarded by the registry mutex */
  struct pm_txn *spare_txn;    /* a finished transaction kept for its buffers */

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
  uint64_t own_counter;        /* shared counter after our last publish */

  /* Guarded by catch_mu (and by holding the writer lock for the writer). */
  pthread_mutex_t catch_mu;
  pm_pos applied;              /* the index reflects the log up to here */
  uint64_t next_seq;           /* lowest seq not used yet */
  int64_t int_hw;
  int has_int_hw;
  uint64_t manifest_gen;

  /* Snapshots pinned by readers (oldest keeps index versions alive). */
  pthread_mutex_t snap_mu;
  pm_pin *pins;
  size_t npins, cap_pins;
  pm_index **old_ix;           /* indexes replaced after another process's
                                  compaction, kept while snapshots read them */
  size_t nold_ix;

  /* The writer: one transaction at a time in this process. The WRITER file
  ** lock is kept between transactions while no other engine waits for it
  ** (two fcntl calls less per commit), and let go by the background thread
  ** once it was idle for WRITER_KEEP_NS or someone waits. */
  pthread_mutex_t wmu;
  pthread_cond_t wcv;
  int writer_busy;
  int writer_file_held;        /* the WRITER file lock is held (guarded by wmu) */
  uint64_t writer_idle_since;  /* when the last transaction ended (ns; wmu) */
  int writer_watched;          /* the background thread looks at it (wmu) */

  /* Background thread: periodic fsync under NORMAL, sync requests, letting
  ** go of a kept WRITER lock. */
  pthread_t bg;
  int bg_started, bg_stop, bg_sync_now, bg_writer_kept;
  uint64_t sync_interval_ms;
  pthread_mutex_t bg_mu;
  pthread_cond_t bg_cv;

  /* Figures */
  uint64_t commits, catchups, dropped_bytes;

  /* Compaction (compact.c). */
  pthread_mutex_t shrink_mu;   /* one shrink at a time */
  int shrink_running;
  uint64_t shrinks, shrink_reclaimed, shrink_last_ms, shrink_last_us;
  uint64_t retired_at;         /* last_seq when segments were retired; 0: none */
};

struct pm_store {
  pm_engine *e;
  int readonly;
  int sync;
  uint64_t busy_ms;
};

/* One write of a transaction. Keys live in the transaction's key arena. */
typedef struct txn_op {
  uint8_t type;            /* PM_REC_PUT or PM_REC_DEL */
  uint8_t ktype;
  uint32_t klen;
  uint64_t key_off;
  uint64_t seq;
  uint64_t hash;           /* of the key, for the op map */
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
  uint64_t *map;           /* open addressing, each key's newest op: its hash's
                              high 32 bits, then op index + 1; 0 is empty */
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
  size_t grp_cap;          /* records grp.recs has room for */
};

/* A WRITER lock kept between transactions is let go after this long idle. */
#define WRITER_KEEP_NS 1000000u
/* Let go of a kept WRITER lock if it is idle long enough or wanted; returns
** 1 while it stays kept (the background thread looks again soon). */
int pm_engine_writer_let_go(pm_engine *e);
/* Tell the background thread that the WRITER lock is kept and it is not
** looking at it yet. */
void pm_engine_writer_kept(pm_engine *e);

/* A transaction this small keeps its buffers as the engine's spare. */
#define TXN_SPARE_OPS 1024
/* Free a transaction that is not in progress, buffers and all. */
void pm_txn_destroy(pm_txn *t);

static inline uint64_t pm_load64(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline void pm_store64(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }

/* The cache id of the record at pos: segment numbers are never reused. */
static inline uint64_t pm_engine_cache_id(pm_pos at) { return (uint64_t)at.seg << 40 | at.off; }

/* A handle opened before a fork belongs to the parent: PM_MISUSE. */
int pm_engine_handle_ok(pm_store *s, pm_err *err);
/* The error every write gets once the engine stopped on a failed write/fsync. */
int pm_engine_stopped_error(pm_engine *e, pm_err *err);
/* PM_TOOBIG or PM_MISUSE for a key the store cannot hold. */
int pm_engine_check_key(const pm_key *k, pm_err *err);
/* Apply what other engines committed since we last looked (catch_mu held);
** the writer also adopts a group another writer prepared and did not commit. */
int pm_engine_catch_up_locked(pm_engine *e, int writer, pm_err *err);
/* Apply a committed group to the index (exclusive index lock held). */
int pm_engine_apply_group(pm_engine *e, const pm_group *g, pm_err *err);
/* Recovery: apply a committed group in load mode (any order). ctx is a pm_loader. */
int pm_engine_apply_load(void *ctx, const pm_group *g, pm_err *err);
/* The state to publish in shared memory (writer or lone engine, catch_mu held). */
pm_shared pm_engine_shared_state(pm_engine *e, pm_pos prepared);
/* Publish the engine's state to the other processes (catch_mu held, by the
** writer or an engine alone on the store); prepared: see pm_shared. */
void pm_engine_publish(pm_engine *e, pm_pos prepared);
/* Pin the newest committed state as a snapshot (its seq and index); PM_NOMEM. */
int pm_engine_pin_latest(pm_engine *e, uint64_t *seq, pm_index **ix);
/* Release a pin taken by pm_engine_pin_latest; frees a replaced index that no
** snapshot reads any more. */
void pm_engine_unpin(pm_engine *e, uint64_t seq, pm_index *ix);
/* What an index compaction must keep: the oldest pinned snapshot, or the
** newest published state. */
uint64_t pm_engine_oldest_visible(pm_engine *e);
/* The value of the record at `at`: from the cache, or one read of the log. */
int pm_engine_read_value(pm_engine *e, pm_pos at, uint32_t klen, uint8_t vtype, uint32_t vlen,
    pm_value **out, pm_err *err);
/* Look up k in snap (NULL: the newest state) and read what was asked. */
int pm_engine_lookup(pm_engine *e, const pm_snap *snap, const pm_key *k, pm_value **val,
    pm_meta *meta, pm_err *err);
/* Take the writer lock (in-process, then the file lock) within timeout_ms, or PM_BUSY. */
int pm_engine_writer_acquire(pm_engine *e, uint64_t timeout_ms, pm_err *err);
/* Release the writer lock. */
void pm_engine_writer_release(pm_engine *e);
/* 1 if an engine of this process has the store at path open. */
int pm_engine_open_in_process(const char *path);
/* Remove segment files (and their hints) of a store directory. */
int pm_engine_remove_segments(const pm_io *io, const char *dir, const uint32_t *segs,
    uint32_t n, pm_err *err);
/* Compact the log (compact.c); *summary is JSON. busy_ms bounds the waits
** for the writer lock. */
int pm_engine_shrink(pm_engine *e, uint64_t busy_ms, char **summary, pm_err *err);
/* Write the hint files sealed segments lack (compact.c). */
void pm_engine_write_hints(pm_engine *e);
/* Background upkeep (compact.c): write missing hint files, close retired
** segments no reader can need, and auto-shrink when the log has grown past
** its ratio. */
void pm_engine_upkeep(pm_engine *e);

/* Take what an offline operation needs: INIT and WRITER locks, and no other engine. */
int pm_engine_lock_offline(pm_lock *l, const pm_io *io, const char *path, pm_err *err);
/* The newest op of the transaction on k, or NULL (t may be NULL). */
txn_op *pm_txn_find(const pm_txn *t, const pm_key *k);
/* The key of an op (bytes in the transaction's key arena). */
pm_key pm_txn_op_key(const pm_txn *t, const txn_op *op);
/* Is op the newest on its key, so part of the transaction's net effect? */
int pm_txn_op_is_newest(const pm_txn *t, const txn_op *op);

#endif /* PM_ENGINE_H */
