/*
** io.c - the POSIX file operations behind pm_io, and two helpers that loop
** over short reads and writes.
*/
#include "io.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static int posix_open(const char *path, int flags, int mode) {
  int fd;
  do fd = open(path, flags | O_CLOEXEC, mode); while (fd < 0 && errno == EINTR);
  return fd;
}

static int posix_close(int fd) { return close(fd); }

static ssize_t posix_pread(int fd, void *buf, size_t n, uint64_t off) {
  ssize_t r;
  do r = pread(fd, buf, n, (off_t)off); while (r < 0 && errno == EINTR);
  return r;
}

static ssize_t posix_pwrite(int fd, const void *buf, size_t n, uint64_t off) {
  ssize_t r;
  do r = pwrite(fd, buf, n, (off_t)off); while (r < 0 && errno == EINTR);
  return r;
}

static int posix_fsync(int fd) {
  /* EINTR is not retried: after a failed fsync the page state is unknown. */
  return fdatasync(fd);
}

static int posix_fsync_dir(const char *dir) {
  int fd = posix_open(dir, O_RDONLY | O_DIRECTORY, 0);
  if (fd < 0) return -1;
  int r = fsync(fd);
  int saved = errno;
  close(fd);
  errno = saved;
  return r;
}

static int posix_rename(const char *from, const char *to) { return rename(from, to); }
static int posix_unlink(const char *path) { return unlink(path); }

static int posix_ftruncate(int fd, uint64_t len) {
  int r;
  do r = ftruncate(fd, (off_t)len); while (r < 0 && errno == EINTR);
  return r;
}

static int posix_mkdir(const char *path, int mode) { return mkdir(path, (mode_t)mode); }
static int posix_rmdir(const char *path) { return rmdir(path); }

static int posix_file_size(int fd, uint64_t *size) {
  struct stat st;
  if (fstat(fd, &st) < 0) return -1;
  *size = (uint64_t)st.st_size;
  return 0;
}

static int posix_lock(int fd, int type, uint64_t start, uint64_t len, int wait) {
  struct flock fl;
  memset(&fl, 0, sizeof fl);
  fl.l_type = (short)type;
  fl.l_whence = SEEK_SET;
  fl.l_start = (off_t)start;
  fl.l_len = (off_t)len;
  int r;
  do r = fcntl(fd, wait ? F_OFD_SETLKW : F_OFD_SETLK, &fl); while (r < 0 && errno == EINTR);
  if (r < 0 && errno == EACCES) errno = EAGAIN;
  return r;
}

static void *posix_map(int fd, size_t len, int writable) {
  void *p = mmap(NULL, len, PROT_READ | (writable ? PROT_WRITE : 0), MAP_SHARED, fd, 0);
  return p == MAP_FAILED ? NULL : p;
}

static int posix_unmap(void *p, size_t len) { return munmap(p, len); }

static int posix_list_dir(const char *dir, int (*fn)(void *, const char *), void *ctx) {
  DIR *d = opendir(dir);
  if (!d) return -1;
  int r = 0;
  struct dirent *e;
  while (r == 0 && (e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    r = fn(ctx, e->d_name);
  }
  closedir(d);
  return r;
}

const pm_io pm_io_posix = {
  posix_open, posix_close, posix_pread, posix_pwrite, posix_fsync, posix_fsync_dir,
  posix_rename, posix_unlink, posix_ftruncate, posix_mkdir, posix_rmdir,
  posix_file_size, posix_lock, posix_map, posix_unmap, posix_list_dir
};

int pm_io_write_all(const pm_io *io, int fd, const void *buf, size_t n, uint64_t off) {
  const uint8_t *p = buf;
  while (n > 0) {
    ssize_t w = io->pwrite(fd, p, n, off);
    if (w < 0) return -1;
    if (w == 0) { errno = EIO; return -1; }
    p += w; n -= (size_t)w; off += (uint64_t)w;
  }
  return 0;
}

ssize_t pm_io_read_full(const pm_io *io, int fd, void *buf, size_t n, uint64_t off) {
  uint8_t *p = buf;
  size_t got = 0;
  while (got < n) {
    ssize_t r = io->pread(fd, p + got, n - got, off + got);
    if (r < 0) return -1;
    if (r == 0) break;
    got += (size_t)r;
  }
  return (ssize_t)got;
}
