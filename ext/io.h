/*
** io.h - every file operation of the engine, behind one table.
**
** The engine never calls open(2), pwrite(2), fdatasync(2) and friends
** directly: it calls through a pm_io. pm_io_posix is the real thing; tests
** swap in tables that fail the Nth call with EIO or ENOSPC, or that simulate
** a disk losing power (keeping only what was fsynced). Each function returns
** what the system call would (0 or a count on success, -1 with errno set on
** failure), so callers read like plain POSIX code.
**
** Paths are absolute or relative to the process's working directory; the
** store always passes "<store dir>/<file name>".
*/
#ifndef PM_IO_H
#define PM_IO_H

#include <stdint.h>
#include <sys/types.h>

typedef struct pm_io {
  int (*open)(const char *path, int flags, int mode);     /* O_CLOEXEC is added by callers */
  int (*close)(int fd);
  ssize_t (*pread)(int fd, void *buf, size_t n, uint64_t off);   /* may return short counts */
  ssize_t (*pwrite)(int fd, const void *buf, size_t n, uint64_t off);
  int (*fsync)(int fd);                     /* data sync (fdatasync) of a file */
  int (*fsync_dir)(const char *dir);        /* make a directory's entries durable */
  int (*rename)(const char *from, const char *to);
  int (*unlink)(const char *path);
  int (*ftruncate)(int fd, uint64_t len);
  int (*mkdir)(const char *path, int mode);
  int (*rmdir)(const char *path);
  int (*file_size)(int fd, uint64_t *size);
  /* Byte-range lock on an open file description (OFD lock): type is F_RDLCK,
  ** F_WRLCK or F_UNLCK; wait != 0 blocks. -1/EAGAIN when held elsewhere. OFD
  ** locks belong to one open() of the file, so two engines (or threads, or a
  ** forked child with its own open()) exclude each other, and closing another
  ** descriptor does not drop them. */
  int (*lock)(int fd, int type, uint64_t start, uint64_t len, int wait);
  /* Map len bytes of a file shared between processes; NULL/errno on failure. */
  void *(*map)(int fd, size_t len, int writable);
  int (*unmap)(void *p, size_t len);
  /* Call fn for each name in dir (not "." and ".."); stops early when fn
  ** returns non-zero, and returns that value; -1/errno if dir can't be read. */
  int (*list_dir)(const char *dir, int (*fn)(void *ctx, const char *name), void *ctx);
} pm_io;

extern const pm_io pm_io_posix;

/* Write all n bytes at off, looping over short writes. -1/errno on failure
** (a short write that makes no progress fails with EIO). */
int pm_io_write_all(const pm_io *io, int fd, const void *buf, size_t n, uint64_t off);
/* Read exactly n bytes at off; returns the count read (less than n only at
** end of file) or -1/errno. */
ssize_t pm_io_read_full(const pm_io *io, int fd, void *buf, size_t n, uint64_t off);

#endif /* PM_IO_H */
