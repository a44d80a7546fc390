/*
** faultio.h - a pm_io that forwards to the real file system and can fail
** chosen calls: the Nth call of a kind (write, fsync, ...), once or for
** every call from the Nth on, with an errno or as a short write.
*/
#ifndef PM_FAULTIO_H
#define PM_FAULTIO_H

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include "io.h"

enum { FIO_OPEN, FIO_WRITE, FIO_FSYNC, FIO_DIRSYNC, FIO_RENAME, FIO_UNLINK, FIO_TRUNC, FIO_KINDS };

typedef struct fio_rule {
  int kind;          /* which calls; -1 = none */
  long nth;          /* fail the nth call of that kind (1-based) */
  int sticky;        /* ... and every later one */
  int err;           /* errno to fail with; 0 = a short write (half the bytes) */
} fio_rule;

static fio_rule fio_active = { -1, 0, 0, 0 };
static long fio_count[FIO_KINDS];
static long fio_failures;

static inline void fio_reset(void) {
  memset(fio_count, 0, sizeof fio_count);
  fio_active.kind = -1;
  fio_failures = 0;
}

static inline void fio_arm(int kind, long nth, int sticky, int err) {
  fio_active = (fio_rule){ kind, nth, sticky, err };
  fio_count[kind] = 0;
}

/* Should this call of kind fail? Counts the call. */
static inline int fio_hit(int kind) {
  long n = ++fio_count[kind];
  if (fio_active.kind != kind) return 0;
  int hit = fio_active.sticky ? n >= fio_active.nth : n == fio_active.nth;
  if (hit) fio_failures++;
  return hit;
}

static int fio_open(const char *p, int f, int m) {
  if ((f & O_CREAT) && fio_hit(FIO_OPEN)) { errno = fio_active.err ? fio_active.err : EIO; return -1; }
  return pm_io_posix.open(p, f, m);
}
static ssize_t fio_pwrite(int fd, const void *b, size_t n, uint64_t off) {
  if (fio_hit(FIO_WRITE)) {
    if (fio_active.err) { errno = fio_active.err; return -1; }
    if (n > 1) return pm_io_posix.pwrite(fd, b, n / 2, off);   /* short, then the next fails */
    errno = EIO;
    return -1;
  }
  return pm_io_posix.pwrite(fd, b, n, off);
}
static int fio_fsync(int fd) {
  if (fio_hit(FIO_FSYNC)) { errno = fio_active.err ? fio_active.err : EIO; return -1; }
  return pm_io_posix.fsync(fd);
}
static int fio_fsync_dir(const char *d) {
  if (fio_hit(FIO_DIRSYNC)) { errno = fio_active.err ? fio_active.err : EIO; return -1; }
  return pm_io_posix.fsync_dir(d);
}
static int fio_rename(const char *a, const char *b) {
  if (fio_hit(FIO_RENAME)) { errno = fio_active.err ? fio_active.err : EIO; return -1; }
  return pm_io_posix.rename(a, b);
}
static int fio_unlink(const char *p) {
  if (fio_hit(FIO_UNLINK)) { errno = fio_active.err ? fio_active.err : EIO; return -1; }
  return pm_io_posix.unlink(p);
}
static int fio_ftruncate(int fd, uint64_t len) {
  if (fio_hit(FIO_TRUNC)) { errno = fio_active.err ? fio_active.err : EIO; return -1; }
  return pm_io_posix.ftruncate(fd, len);
}

/* The real file operations, with the faulty ones swapped in. */
static inline const pm_io *fio_io(void) {
  static pm_io io;
  io = pm_io_posix;
  io.open = fio_open;
  io.pwrite = fio_pwrite;
  io.fsync = fio_fsync;
  io.fsync_dir = fio_fsync_dir;
  io.rename = fio_rename;
  io.unlink = fio_unlink;
  io.ftruncate = fio_ftruncate;
  return &io;
}

#endif
