/*
** lock.h - what processes sharing one store agree on: file locks and a small
** shared-memory file.
**
** The store directory holds a file named "shm" (like SQLite's -shm): its
** first 4 KiB are mapped by every process that opens the store and hold the
** published commit point (segment, offset, sequence number) in two slots
** behind a counter: a publish fills the other slot, then moves the counter,
** so a writer killed halfway leaves the page as it was. A reader learns whether another process committed by
** comparing one 64-bit counter in shared memory with the one it last saw:
** no system call on the read path.
**
** Locks are OFD byte-range locks on the same file (never plain fcntl
** locks, which a process loses when it closes any descriptor of the file;
** OFD locks belong to one open() and so also exclude two engines in one
** process, or a parent and a forked child that opened its own):
**   WRITER  exclusive, held by the one writer of the store;
**   OPEN    shared by every engine that has the store open, tried
**           exclusively to learn whether an engine is alone;
**   INIT    exclusive, serializes opening, creating and recovering;
**   SHRINK  exclusive, held by the one compaction running.
** A process that dies loses its locks, so a killed writer never blocks the
** next.
**
** The shared file is a cache of in-memory state, never the truth: the
** first engine to open the store (alone) rebuilds it from the log. Its
** durable mark is used only as a hint that a log offset was fsynced.
**
** Local file systems only: memory mapping and OFD locks do not work across
** network file systems.
*/
#ifndef PM_LOCK_H
#define PM_LOCK_H

#include "common.h"
#include "io.h"
#include "log.h"

#define PM_SHM_NAME "shm"

/* The published state, as read consistently from shared memory. */
typedef struct pm_shared {
  uint64_t counter;        /* changes at every publish */
  pm_pos commit;           /* end of the last committed (or aborted) group */
  uint64_t commit_seq;     /* newest committed seq */
  uint64_t next_seq;       /* lowest seq not yet used */
  int64_t int_hw;          /* highest integer key committed ... */
  int has_int_hw;          /* ... if any */
  uint64_t manifest_gen;   /* generation of the manifest in force */
  pm_pos prepared;         /* end of a group written but not yet committed */
} pm_shared;

typedef struct pm_lock {
  const pm_io *io;
  int fd;                  /* -1: no shared file (read-only store without one) */
  uint8_t *map;            /* the mapped page, NULL without a file */
  int writable;
} pm_lock;

/* Open (creating unless readonly) dir/shm, map it and take the OPEN lock. A
** read-only open of a store without the file works without locks. */
int pm_lock_open(pm_lock *l, const pm_io *io, const char *dir, int readonly, pm_err *err);
void pm_lock_close(pm_lock *l);

/* INIT lock: exclusive, waits. */
int pm_lock_init_acquire(pm_lock *l, pm_err *err);
void pm_lock_init_release(pm_lock *l);

/* 1 if no other engine (in any process) has the store open. */
int pm_lock_alone(pm_lock *l);

/* WRITER lock: waits up to timeout_ms (polling), then PM_BUSY. A waiter is
** counted in the shared page while it waits. */
int pm_lock_writer_acquire(pm_lock *l, uint64_t timeout_ms, pm_err *err);
void pm_lock_writer_release(pm_lock *l);
/* 1 if an engine (of any process) waits for the WRITER lock, or if there is
** no shared page to tell: a holder keeping the lock between transactions
** must then let go. (A waiter killed while waiting leaves the count too
** high: holders then merely stop keeping the lock, until an engine that is
** alone resets the page.) */
int pm_lock_writer_wanted(const pm_lock *l);

/* SHRINK lock: one compaction at a time across processes. 0, or -1 if held. */
int pm_lock_shrink_try(pm_lock *l);
void pm_lock_shrink_release(pm_lock *l);

/* The shared counter: one atomic load. 0 without a shared file. */
uint64_t pm_shm_counter(const pm_lock *l);

/* 1 if the shared page was initialized for this store id. */
int pm_shm_valid(const pm_lock *l, const uint8_t store_id[16]);
/* Read the published state consistently. */
void pm_shm_read(const pm_lock *l, pm_shared *out);
/* Initialize the page for store_id with st (by an engine that is alone,
** after recovery made st.commit durable). */
void pm_shm_reset(pm_lock *l, const uint8_t store_id[16], const pm_shared *st);
/* Publish st (by the writer); bumps the counter and returns its new value. */
uint64_t pm_shm_publish(pm_lock *l, const pm_shared *st);
/* The log is durable up to p (after an fsync); read it back as a hint. */
void pm_shm_set_durable(pm_lock *l, pm_pos p);
pm_pos pm_shm_durable(const pm_lock *l);

#endif /* PM_LOCK_H */
