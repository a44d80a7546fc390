/*
** lock.c - OFD locks and the shared-memory page of a store (see lock.h).
*/
#include "lock.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <time.h>

#define SHM_SIZE 4096u
#define LOCK_BASE 8192u          /* lock bytes lie past the mapped page */
#define LOCK_WRITER (LOCK_BASE + 0)
#define LOCK_OPEN   (LOCK_BASE + 1)
#define LOCK_INIT   (LOCK_BASE + 2)
#define LOCK_SHRINK (LOCK_BASE + 3)

static const char SHM_MAGIC[8] = { 'P', 'M', 'A', 'P', 'S', 'H', 'M', '2' };

/* Layout of the page: byte offsets of 8-byte aligned fields. The published
** state lives in two slots: a publish fills the slot the counter does not
** point to, then moves the counter (one store) to it. So a writer killed in
** the middle of a publish leaves the current slot whole and the counter
** where it was, and a reader never waits for a publish to finish: it only
** retries when the slot it read was refilled meanwhile (two publishes
** later), which each slot's own sequence number shows. */
enum {
  F_MAGIC = 0, F_STORE_ID = 8,
  F_COUNTER = 24,       /* the number of the last publish; its slot is counter & 1 */
  F_DUR_SEG = 32, F_DUR_OFF = 40,
  F_WANTED = 48,        /* engines waiting for the WRITER lock, in all processes */
  F_SLOTS = 256, SLOT_SIZE = 128
};
/* Offsets within a slot. */
enum {
  S_SEQ = 0,            /* 2 x the publish it holds; odd while being filled */
  S_COMMIT_SEG = 8, S_COMMIT_OFF = 16, S_COMMIT_SEQ = 24, S_NEXT_SEQ = 32, S_INT_HW = 40,
  S_HAS_INT = 48, S_MAN_GEN = 56, S_PREP_SEG = 64, S_PREP_OFF = 72
};

static int slot_of(uint64_t counter) { return F_SLOTS + (int)(counter & 1) * SLOT_SIZE; }

static uint64_t *field(const pm_lock *l, int off) { return (uint64_t *)(void *)(l->map + off); }
static uint64_t ld(const pm_lock *l, int off) { return __atomic_load_n(field(l, off), __ATOMIC_ACQUIRE); }
static void st(pm_lock *l, int off, uint64_t v) { __atomic_store_n(field(l, off), v, __ATOMIC_RELEASE); }

int pm_lock_open(pm_lock *l, const pm_io *io, const char *dir, int readonly, pm_err *err) {
  memset(l, 0, sizeof *l);
  l->io = io;
  l->fd = -1;
  char *path = pm_sprintf("%s/%s", dir, PM_SHM_NAME);
  if (!path) return pm_err_set(err, PM_NOMEM, "out of memory");
  int rc = PM_OK;
  l->fd = io->open(path, readonly ? O_RDONLY : O_RDWR | O_CREAT, 0644);
  uint64_t size = 0;
  if (l->fd < 0) {
    if (!(readonly && (errno == ENOENT || errno == EACCES || errno == EROFS)))
      rc = pm_err_sys(err, errno, "cannot open %s", path);
  } else if (io->file_size(l->fd, &size) < 0) {
    rc = pm_err_sys(err, errno, "cannot stat %s", path);
  } else if (size < SHM_SIZE && (readonly || io->ftruncate(l->fd, SHM_SIZE) < 0)) {
    if (!readonly) rc = pm_err_sys(err, errno, "cannot size %s", path);
    else { io->close(l->fd); l->fd = -1; }     /* an empty file: treat as absent */
  }
  if (!rc && l->fd >= 0) {
    l->map = io->map(l->fd, SHM_SIZE, !readonly);
    l->writable = !readonly;
    if (!l->map) rc = pm_err_sys(err, errno, "cannot map %s", path);
    else if (io->lock(l->fd, F_RDLCK, LOCK_OPEN, 1, 1) < 0) rc = pm_err_sys(err, errno, "cannot lock %s", path);
  }
  pm_free(path);
  if (rc) pm_lock_close(l);
  return rc;
}

void pm_lock_close(pm_lock *l) {
  if (l->map) l->io->unmap(l->map, SHM_SIZE);
  if (l->fd >= 0) l->io->close(l->fd);      /* drops every OFD lock of this open() */
  l->map = NULL;
  l->fd = -1;
}

int pm_lock_init_acquire(pm_lock *l, pm_err *err) {
  if (l->fd < 0 || !l->writable) return PM_OK;
  if (l->io->lock(l->fd, F_WRLCK, LOCK_INIT, 1, 1) < 0) return pm_err_sys(err, errno, "cannot lock the store");
  return PM_OK;
}

void pm_lock_init_release(pm_lock *l) {
  if (l->fd >= 0 && l->writable) l->io->lock(l->fd, F_UNLCK, LOCK_INIT, 1, 0);
}

int pm_lock_alone(pm_lock *l) {
  if (l->fd < 0) return 1;
  if (!l->writable) {
    /* A read-only descriptor cannot take a write lock: test instead. */
    struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = LOCK_OPEN, .l_len = 1 };
    fl.l_pid = 0;
    if (fcntl(l->fd, F_OFD_GETLK, &fl) < 0) return 0;
    return fl.l_type == F_UNLCK;
  }
  if (l->io->lock(l->fd, F_WRLCK, LOCK_OPEN, 1, 0) < 0) return 0;
  l->io->lock(l->fd, F_RDLCK, LOCK_OPEN, 1, 0);    /* back to shared: never fails */
  return 1;
}

/* Count this engine in (+1) or out (-1) of those waiting for the WRITER
** lock, so that an engine keeping it between transactions lets go. */
static void writer_wanted_add(pm_lock *l, int64_t d) {
  if (l->map && l->writable) __atomic_add_fetch(field(l, F_WANTED), (uint64_t)d, __ATOMIC_ACQ_REL);
}

/* Take the WRITER lock, polling with growing pauses until the deadline. */
static int writer_poll(pm_lock *l, uint64_t deadline, pm_err *err) {
  long pause_us = 100;
  for (;;) {
    if (l->io->lock(l->fd, F_WRLCK, LOCK_WRITER, 1, 0) == 0) return PM_OK;
    if (errno != EAGAIN) return pm_err_sys(err, errno, "cannot take the writer lock");
    uint64_t now = pm_now_ns();
    if (now >= deadline)
      return pm_err_set(err, PM_BUSY, "the store is locked by another writer");
    struct timespec ts = { 0, pause_us * 1000 };
    if ((uint64_t)pause_us * 1000u > deadline - now) ts.tv_nsec = (long)(deadline - now);
    nanosleep(&ts, NULL);
    if (pause_us < 10000) pause_us *= 2;
  }
}

int pm_lock_writer_acquire(pm_lock *l, uint64_t timeout_ms, pm_err *err) {
  if (l->fd < 0) return PM_OK;
  if (l->io->lock(l->fd, F_WRLCK, LOCK_WRITER, 1, 0) == 0) return PM_OK;
  if (errno != EAGAIN) return pm_err_sys(err, errno, "cannot take the writer lock");
  writer_wanted_add(l, 1);
  int rc = writer_poll(l, pm_now_ns() + timeout_ms * 1000000u, err);
  writer_wanted_add(l, -1);
  return rc;
}

int pm_lock_writer_wanted(const pm_lock *l) {
  return !l->map || !l->writable || ld(l, F_WANTED) != 0;
}

void pm_lock_writer_release(pm_lock *l) {
  if (l->fd >= 0) l->io->lock(l->fd, F_UNLCK, LOCK_WRITER, 1, 0);
}

int pm_lock_shrink_try(pm_lock *l) {
  if (l->fd < 0 || !l->writable) return 0;
  return l->io->lock(l->fd, F_WRLCK, LOCK_SHRINK, 1, 0) < 0 ? -1 : 0;
}

void pm_lock_shrink_release(pm_lock *l) {
  if (l->fd >= 0 && l->writable) l->io->lock(l->fd, F_UNLCK, LOCK_SHRINK, 1, 0);
}

uint64_t pm_shm_counter(const pm_lock *l) { return l->map ? ld(l, F_COUNTER) : 0; }

int pm_shm_valid(const pm_lock *l, const uint8_t store_id[16]) {
  return l->map && memcmp(l->map + F_MAGIC, SHM_MAGIC, 8) == 0 &&
         memcmp(l->map + F_STORE_ID, store_id, 16) == 0;
}

/* Read the fields guarded by the counter (a sequence lock: odd = being written). */
static void read_fields(const pm_lock *l, int b, pm_shared *o) {
  o->commit = (pm_pos){ (uint32_t)ld(l, b + S_COMMIT_SEG), ld(l, b + S_COMMIT_OFF) };
  o->commit_seq = ld(l, b + S_COMMIT_SEQ);
  o->next_seq = ld(l, b + S_NEXT_SEQ);
  o->int_hw = (int64_t)ld(l, b + S_INT_HW);
  o->has_int_hw = (int)ld(l, b + S_HAS_INT);
  o->manifest_gen = ld(l, b + S_MAN_GEN);
  o->prepared = (pm_pos){ (uint32_t)ld(l, b + S_PREP_SEG), ld(l, b + S_PREP_OFF) };
}

void pm_shm_read(const pm_lock *l, pm_shared *out) {
  memset(out, 0, sizeof *out);
  if (!l->map) return;
  for (;;) {
    uint64_t c = ld(l, F_COUNTER);
    int b = slot_of(c);
    uint64_t s1 = ld(l, b + S_SEQ);
    read_fields(l, b, out);
    uint64_t s2 = ld(l, b + S_SEQ);
    /* Slot b holds publish c unless publish c + 2 refilled it meanwhile
    ** (publish c + 1 completed first, so the counter has moved: retry). */
    if (s1 == s2 && s1 == 2 * c) { out->counter = c; return; }
  }
}

static void write_fields(pm_lock *l, int b, const pm_shared *s) {
  st(l, b + S_COMMIT_SEG, s->commit.seg);
  st(l, b + S_COMMIT_OFF, s->commit.off);
  st(l, b + S_COMMIT_SEQ, s->commit_seq);
  st(l, b + S_NEXT_SEQ, s->next_seq);
  st(l, b + S_INT_HW, (uint64_t)s->int_hw);
  st(l, b + S_HAS_INT, (uint64_t)s->has_int_hw);
  st(l, b + S_MAN_GEN, s->manifest_gen);
  st(l, b + S_PREP_SEG, s->prepared.seg);
  st(l, b + S_PREP_OFF, s->prepared.off);
}

uint64_t pm_shm_publish(pm_lock *l, const pm_shared *s) {
  if (!l->map || !l->writable) return 0;
  uint64_t next = ld(l, F_COUNTER) + 1;
  int b = slot_of(next);
  st(l, b + S_SEQ, 2 * next + 1);
  write_fields(l, b, s);
  st(l, b + S_SEQ, 2 * next);
  st(l, F_COUNTER, next);
  return next;
}

void pm_shm_reset(pm_lock *l, const uint8_t store_id[16], const pm_shared *s) {
  if (!l->map || !l->writable) return;
  memcpy(l->map + F_MAGIC, SHM_MAGIC, 8);
  memcpy(l->map + F_STORE_ID, store_id, 16);
  st(l, F_WANTED, 0);          /* alone: nobody waits (a killed waiter's count goes) */
  st(l, F_DUR_SEG, s->commit.seg);      /* recovery made what it adopted durable */
  st(l, F_DUR_OFF, s->commit.off);
  pm_shm_publish(l, s);
}

void pm_shm_set_durable(pm_lock *l, pm_pos p) {
  if (!l->map || !l->writable) return;
  st(l, F_DUR_SEG, p.seg);
  st(l, F_DUR_OFF, p.off);
}

pm_pos pm_shm_durable(const pm_lock *l) {
  if (!l->map) return (pm_pos){ 0, 0 };
  return (pm_pos){ (uint32_t)ld(l, F_DUR_SEG), ld(l, F_DUR_OFF) };
}
