/*
** simdisk.h - an in-memory disk behind pm_io that can lose power at any
** instant, for the engine's crash and fault tests.
**
** The model. Every file keeps its durable bytes (as of its last fsync), its
** live bytes (what reads see) and the list of writes and truncations made
** since that fsync, in the order they were issued. Every directory likewise
** has durable names and the creates, renames and unlinks made since its last
** directory fsync. A memory map of a file stands for its first bytes: what is
** stored through it reaches the file only as one more unsynced write.
**
** Power loss. sd_crash() builds the disk that a power loss at this instant
** could leave behind, by a policy (sd_policy): unsynced data dropped, kept,
** kept up to a prefix of the writes, kept as a random subset (of whole
** writes, or of 512 or 4096-byte pieces of them), or kept up to one write
** torn at a 512-byte or 4 KiB boundary with zeros or garbage after the tear;
** unsynced directory operations all kept, all dropped, or each kept or
** dropped on its own. The result is a fresh disk on which every byte is
** durable, ready to be opened like a disk after a reboot.
**
** Stopping at any operation. A disk counts its mutating calls (open with
** O_CREAT or O_TRUNC, pwrite, fsync, fsync_dir, rename, unlink, ftruncate,
** mkdir, rmdir): reads cannot change what a crash leaves. sd_freeze_at()
** asks for a copy of the disk as it is when a given number of them has been
** made, so a test reruns a deterministic workload and stops it, in effect,
** at each of its operations in turn.
**
** Faults. A hook set with sd_set_fault() is asked before each call of a kind
** (SD_F_*; SD_F_OPEN is every open, not only creating ones); it answers 0
** (go on), an errno (fail the call with it) or SD_SHORT (a write of half
** the bytes, or EIO for a single byte).
**
** One disk is in use at a time (sd_use), because pm_io carries no context:
** switch only while no store is open on the other. Paths are made absolute
** and lexically canonical; the root given to sd_new() and every directory
** above it exist and are durable. Descriptors count from SD_FD_BASE so they
** never collide with real ones. Locks are an in-process table of OFD-style
** byte-range locks owned by descriptors (one process is simulated). Every
** call is serialized by one mutex. The simulator allocates with malloc, never
** through the engine's allocator, so allocation-failure tests do not touch it.
*/
#ifndef PM_SIMDISK_H
#define PM_SIMDISK_H

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io.h"

#define SD_FD_BASE 100000
#define SD_MAX_FDS 64

/* Call kinds a fault hook is asked about. */
enum { SD_F_OPEN, SD_F_WRITE, SD_F_FSYNC, SD_F_DIRSYNC, SD_F_RENAME, SD_F_UNLINK, SD_F_TRUNC,
       SD_F_KINDS };
#define SD_SHORT (-1)

/* What of the unsynced data or directory operations survives a power loss. */
enum { SD_KEEP_NONE, SD_KEEP_ALL, SD_KEEP_PREFIX, SD_KEEP_RANDOM, SD_KEEP_TORN };

typedef struct sd_policy {
  int data;           /* SD_KEEP_NONE, _ALL, _PREFIX, _RANDOM or _TORN */
  size_t prefix;      /* PREFIX, TORN: this many unsynced changes kept whole, in issue order */
  unsigned unit;      /* RANDOM: 0 = whole writes, else pieces of unit bytes;
                         TORN: the boundary (512 or 4096) the next write tears at */
  unsigned tear;      /* TORN: which of the boundaries inside that write (modulo their number) */
  int garbage;        /* TORN: after the tear, garbage (1) or zeros (0) up to the write's end */
  int dirs;           /* SD_KEEP_NONE, _ALL or _RANDOM */
  uint64_t seed;      /* RANDOM choices and garbage bytes */
} sd_policy;

typedef struct sd_disk sd_disk;

/* ======================================================================== */
/* The disk                                                                  */
/* ======================================================================== */

typedef struct sd_bytes { uint8_t *p; uint64_t n, cap; } sd_bytes;

/* One unsynced change of a file: a write of len bytes at off, or a
** truncation (or extension) to off bytes. */
typedef struct sd_change {
  uint64_t order;         /* issue order across the disk */
  int truncate;
  uint64_t off, len;
  uint8_t *data;
} sd_change;

typedef struct sd_inode {
  int is_dir;
  sd_bytes live, durable;
  sd_change *chg;
  size_t nchg, capchg;
  uint8_t *map;           /* the mapped first map_len bytes, shared by map_refs mappings */
  size_t map_len;
  int map_refs;
} sd_inode;

typedef struct sd_name { char *path; int ino; } sd_name;
typedef struct sd_names { sd_name *v; size_t n, cap; } sd_names;

enum { SD_LINK, SD_UNLINK, SD_RENAME };

/* A directory operation not yet made durable by an fsync of dir. */
typedef struct sd_dirop {
  int kind;
  char *dir;
  char *path;             /* LINK, UNLINK: the name; RENAME: the old name */
  char *to;               /* RENAME: the new name */
  int ino;
} sd_dirop;

typedef struct sd_fd { int used, ino, writable; } sd_fd;
typedef struct sd_lock { int owner, ino, type; uint64_t start, end; } sd_lock;

struct sd_disk {
  char *root;
  sd_inode *inodes;
  size_t ninodes, capinodes;
  sd_names live, durable;
  sd_dirop *dops;
  size_t ndops, capdops;
  sd_fd fds[SD_MAX_FDS];
  sd_lock *locks;
  size_t nlocks, caplocks;
  uint64_t order;         /* the next change's issue number */
  long ops;               /* mutating calls made */
  long freeze_at;         /* copy the disk when ops reaches this (-1: never) */
  sd_disk *frozen;
};

static pthread_mutex_t sd_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t sd_cv = PTHREAD_COND_INITIALIZER;    /* a lock was released */
static sd_disk *sd_cur;
static int (*sd_fault_hook)(int kind);

/* ---- Memory and small helpers ------------------------------------------ */

static void *sd_alloc(size_t n) {
  void *p = calloc(1, n ? n : 1);
  if (!p) abort();
  return p;
}

/* Make room for need elements of elem bytes in the array p of capacity *cap. */
static void *sd_grow(void *p, size_t *cap, size_t need, size_t elem) {
  if (need <= *cap) return p;
  size_t c = *cap ? *cap : 8;
  while (c < need) c *= 2;
  p = realloc(p, c * elem);
  if (!p) abort();
  *cap = c;
  return p;
}

static char *sd_strdup(const char *s) {
  char *d = sd_alloc(strlen(s) + 1);
  strcpy(d, s);
  return d;
}

static void *sd_memdup(const void *p, uint64_t n) {
  void *d = sd_alloc((size_t)n);
  if (n) memcpy(d, p, (size_t)n);
  return d;
}

/* splitmix64: the random choices of a crash policy. */
static uint64_t sd_rand(uint64_t *s) {
  uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/* Set b to exactly n bytes, zero-filling what grows. */
static void bytes_resize(sd_bytes *b, uint64_t n) {
  if (n > b->cap) {
    size_t cap = (size_t)b->cap;
    b->p = sd_grow(b->p, &cap, (size_t)n, 1);
    b->cap = cap;
  }
  if (n > b->n) memset(b->p + b->n, 0, (size_t)(n - b->n));
  b->n = n;
}

static void bytes_write(sd_bytes *b, uint64_t off, const void *src, uint64_t len) {
  if (off + len > b->n) bytes_resize(b, off + len);
  if (len) memcpy(b->p + off, src, (size_t)len);
}

static void bytes_copy(sd_bytes *dst, const sd_bytes *src) {
  if (src->n > dst->cap) {
    size_t cap = (size_t)dst->cap;
    dst->p = sd_grow(dst->p, &cap, (size_t)src->n, 1);
    dst->cap = cap;
  }
  if (src->n) memcpy(dst->p, src->p, (size_t)src->n);
  dst->n = src->n;
}

/* ---- Paths --------------------------------------------------------------- */

/* path made absolute, without ".", "..", repeated or trailing '/' (malloc'ed). */
static char *sd_canon(const char *path) {
  char cwd[4096] = "";
  if (path[0] != '/' && !getcwd(cwd, sizeof cwd)) abort();
  size_t cap = strlen(cwd) + strlen(path) + 3;
  char *in = sd_alloc(cap), *out = sd_alloc(cap);
  snprintf(in, cap, "%s/%s", cwd, path);
  size_t n = 0;
  for (char *save = NULL, *c = strtok_r(in, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
    if (strcmp(c, ".") == 0) continue;
    if (strcmp(c, "..") == 0) {
      while (n > 0 && out[n - 1] != '/') n--;
      if (n > 0) n--;
      continue;
    }
    out[n++] = '/';
    memcpy(out + n, c, strlen(c));
    n += strlen(c);
  }
  if (n == 0) out[n++] = '/';
  out[n] = 0;
  free(in);
  return out;
}

/* The directory holding the canonical path p (malloc'ed). */
static char *sd_parent(const char *p) {
  const char *slash = strrchr(p, '/');
  size_t n = slash > p ? (size_t)(slash - p) : 1;
  char *d = sd_alloc(n + 1);
  memcpy(d, p, n);
  return d;
}

/* ---- Names --------------------------------------------------------------- */

static long names_find(const sd_names *ns, const char *path) {
  for (size_t i = 0; i < ns->n; i++)
    if (strcmp(ns->v[i].path, path) == 0) return (long)i;
  return -1;
}

static void names_set(sd_names *ns, const char *path, int ino) {
  long i = names_find(ns, path);
  if (i >= 0) { ns->v[i].ino = ino; return; }
  ns->v = sd_grow(ns->v, &ns->cap, ns->n + 1, sizeof *ns->v);
  ns->v[ns->n++] = (sd_name){ sd_strdup(path), ino };
}

/* Remove path if it names ino. */
static void names_remove(sd_names *ns, const char *path, int ino) {
  long i = names_find(ns, path);
  if (i < 0 || ns->v[i].ino != ino) return;
  free(ns->v[i].path);
  memmove(&ns->v[i], &ns->v[i + 1], (ns->n - (size_t)i - 1) * sizeof *ns->v);
  ns->n--;
}

static void names_copy(sd_names *dst, const sd_names *src) {
  for (size_t i = 0; i < src->n; i++) names_set(dst, src->v[i].path, src->v[i].ino);
}

static void names_free(sd_names *ns) {
  for (size_t i = 0; i < ns->n; i++) free(ns->v[i].path);
  free(ns->v);
  memset(ns, 0, sizeof *ns);
}

static void dirop_apply(sd_names *ns, const sd_dirop *op) {
  if (op->kind == SD_LINK) names_set(ns, op->path, op->ino);
  if (op->kind == SD_UNLINK) names_remove(ns, op->path, op->ino);
  if (op->kind == SD_RENAME) { names_remove(ns, op->path, op->ino); names_set(ns, op->to, op->ino); }
}

static void dirop_free(sd_dirop *op) {
  free(op->dir);
  free(op->path);
  free(op->to);
}

/* Change the live names now and remember the operation until dir is fsynced. */
static void dirop_add(sd_disk *d, int kind, const char *path, const char *to, int ino) {
  sd_dirop op = { kind, sd_parent(to ? to : path), sd_strdup(path), to ? sd_strdup(to) : NULL, ino };
  dirop_apply(&d->live, &op);
  d->dops = sd_grow(d->dops, &d->capdops, d->ndops + 1, sizeof *d->dops);
  d->dops[d->ndops++] = op;
}

/* 1 if path is a directory: the root, one above it, or one made by mkdir. */
static int sd_is_dir(const sd_disk *d, const char *path) {
  size_t n = strlen(path);
  if (strncmp(d->root, path, n) == 0 && (d->root[n] == 0 || d->root[n] == '/' || n == 1)) return 1;
  long i = names_find(&d->live, path);
  return i >= 0 && d->inodes[d->live.v[i].ino].is_dir;
}

static int sd_has_children(const sd_disk *d, const char *dir) {
  for (size_t i = 0; i < d->live.n; i++) {
    char *p = sd_parent(d->live.v[i].path);
    int child = strcmp(p, dir) == 0;
    free(p);
    if (child) return 1;
  }
  return 0;
}

/* ---- Files --------------------------------------------------------------- */

static int inode_new(sd_disk *d, int is_dir) {
  d->inodes = sd_grow(d->inodes, &d->capinodes, d->ninodes + 1, sizeof *d->inodes);
  memset(&d->inodes[d->ninodes], 0, sizeof *d->inodes);
  d->inodes[d->ninodes].is_dir = is_dir;
  return (int)d->ninodes++;
}

static void inode_free(sd_inode *f) {
  free(f->live.p);
  free(f->durable.p);
  for (size_t i = 0; i < f->nchg; i++) free(f->chg[i].data);
  free(f->chg);
  free(f->map);
}

/* Record an unsynced change of f and make it live. */
static void change_add(sd_disk *d, sd_inode *f, int truncate, uint64_t off, const void *data,
                       uint64_t len) {
  f->chg = sd_grow(f->chg, &f->capchg, f->nchg + 1, sizeof *f->chg);
  f->chg[f->nchg++] = (sd_change){ d->order++, truncate, off, len, truncate ? NULL : sd_memdup(data, len) };
  if (truncate) bytes_resize(&f->live, off);
  else bytes_write(&f->live, off, data, len);
}

/* What was stored through a map is in the file's live bytes (one memory). */
static void map_to_live(sd_inode *f) {
  if (!f->map) return;
  uint64_t n = f->map_len < f->live.n ? f->map_len : f->live.n;
  if (n) memcpy(f->live.p, f->map, (size_t)n);
}

static void live_to_map(sd_inode *f) {
  if (!f->map) return;
  uint64_t n = f->map_len < f->live.n ? f->map_len : f->live.n;
  if (n) memcpy(f->map, f->live.p, (size_t)n);
}

/* The mapped bytes become an ordinary unsynced write; the map goes away. */
static void map_release(sd_disk *d, sd_inode *f) {
  map_to_live(f);
  change_add(d, f, 0, 0, f->map, f->map_len);
  free(f->map);
  f->map = NULL;
  f->map_len = 0;
  f->map_refs = 0;
}

static void inode_sync(sd_inode *f) {
  map_to_live(f);
  bytes_copy(&f->durable, &f->live);
  for (size_t i = 0; i < f->nchg; i++) free(f->chg[i].data);
  f->nchg = 0;
}

/* The open file behind fd, or NULL. */
static sd_fd *fd_get(sd_disk *d, int fd) {
  int i = fd - SD_FD_BASE;
  if (i < 0 || i >= SD_MAX_FDS || !d->fds[i].used) return NULL;
  return &d->fds[i];
}

/* Count a mutating call; copy the disk first when it is the one asked for. */
static sd_disk *sd_clone_locked(const sd_disk *d);
static void sd_tick(sd_disk *d) {
  if (d->ops == d->freeze_at && !d->frozen) d->frozen = sd_clone_locked(d);
  d->ops++;
}

static int sd_faulty(int kind) { return sd_fault_hook ? sd_fault_hook(kind) : 0; }

/* ---- Whole disks ----------------------------------------------------------- */

static sd_disk *sd_disk_empty(const char *root) {
  sd_disk *d = sd_alloc(sizeof *d);
  d->root = sd_canon(root);
  d->freeze_at = -1;
  return d;
}

static void sd_copy_inode(sd_inode *dst, const sd_inode *src) {
  dst->is_dir = src->is_dir;
  bytes_copy(&dst->live, &src->live);
  bytes_copy(&dst->durable, &src->durable);
  dst->chg = sd_alloc((src->nchg ? src->nchg : 1) * sizeof *dst->chg);
  dst->capchg = src->nchg ? src->nchg : 1;
  for (size_t i = 0; i < src->nchg; i++) {
    dst->chg[i] = src->chg[i];
    if (!src->chg[i].truncate) dst->chg[i].data = sd_memdup(src->chg[i].data, src->chg[i].len);
  }
  dst->nchg = src->nchg;
}

/* A copy of d with no descriptors, locks or maps: what a map held becomes
** its last unsynced write. */
static sd_disk *sd_clone_locked(const sd_disk *d) {
  sd_disk *c = sd_disk_empty(d->root);
  c->order = d->order;
  c->ops = d->ops;
  for (size_t i = 0; i < d->ninodes; i++) {
    int ino = inode_new(c, 0);
    sd_inode *f = &c->inodes[ino];
    sd_copy_inode(f, &d->inodes[i]);
    if (d->inodes[i].map) {
      f->map = sd_memdup(d->inodes[i].map, d->inodes[i].map_len);
      f->map_len = d->inodes[i].map_len;
      map_release(c, f);
    }
  }
  names_copy(&c->live, &d->live);
  names_copy(&c->durable, &d->durable);
  for (size_t i = 0; i < d->ndops; i++) {
    const sd_dirop *op = &d->dops[i];
    c->dops = sd_grow(c->dops, &c->capdops, c->ndops + 1, sizeof *c->dops);
    c->dops[c->ndops++] = (sd_dirop){ op->kind, sd_strdup(op->dir), sd_strdup(op->path),
                                      op->to ? sd_strdup(op->to) : NULL, op->ino };
  }
  return c;
}

/* ======================================================================== */
/* Power loss                                                                */
/* ======================================================================== */

/* An unsynced change, seen across the disk. */
typedef struct sd_ref { int ino; size_t idx; uint64_t order; } sd_ref;

static int sd_ref_cmp(const void *a, const void *b) {
  uint64_t x = ((const sd_ref *)a)->order, y = ((const sd_ref *)b)->order;
  return x < y ? -1 : x > y;
}

/* Every unsynced change of d in issue order (*n of them; free the array). A
** live map counts as a last write of its bytes. */
static sd_ref *sd_unsynced_list(const sd_disk *d, size_t *n) {
  size_t cap = 1;
  for (size_t i = 0; i < d->ninodes; i++) cap += d->inodes[i].nchg + 1;
  sd_ref *v = sd_alloc(cap * sizeof *v);
  *n = 0;
  for (size_t i = 0; i < d->ninodes; i++) {
    for (size_t j = 0; j < d->inodes[i].nchg; j++)
      v[(*n)++] = (sd_ref){ (int)i, j, d->inodes[i].chg[j].order };
    if (d->inodes[i].map) v[(*n)++] = (sd_ref){ (int)i, SIZE_MAX, UINT64_MAX - i };
  }
  qsort(v, *n, sizeof *v, sd_ref_cmp);
  return v;
}

/* The change a ref points to (a map is a write of its bytes at 0). */
static sd_change sd_ref_change(const sd_disk *d, sd_ref r) {
  const sd_inode *f = &d->inodes[r.ino];
  if (r.idx != SIZE_MAX) return f->chg[r.idx];
  return (sd_change){ r.order, 0, 0, f->map_len, f->map };
}

/* Boundaries of unit bytes strictly inside the write c. */
static uint64_t sd_boundaries(const sd_change *c, unsigned unit) {
  if (c->truncate || c->len == 0 || unit == 0) return 0;
  uint64_t first = c->off / unit + 1, last = (c->off + c->len - 1) / unit;
  return last >= first ? last - first + 1 : 0;
}

/* Apply bytes [from, to) of the write c to b. */
static void sd_apply_part(sd_bytes *b, const sd_change *c, uint64_t from, uint64_t to) {
  if (to > from) bytes_write(b, from, c->data + (from - c->off), to - from);
}

/* A write torn at a boundary: its bytes before, zeros or garbage after. */
static void sd_apply_torn(sd_bytes *b, const sd_change *c, const sd_policy *p, uint64_t *rng) {
  uint64_t nb = sd_boundaries(c, p->unit);
  if (nb == 0) return;                      /* nothing to tear: the write is lost */
  uint64_t cut = (c->off / p->unit + 1 + p->tear % nb) * p->unit;
  sd_apply_part(b, c, c->off, cut);
  uint64_t n = c->off + c->len - cut;
  uint8_t *fill = sd_alloc((size_t)n);
  for (uint64_t i = 0; p->garbage && i < n; i++) fill[i] = (uint8_t)sd_rand(rng);
  bytes_write(b, cut, fill, n);
  free(fill);
}

/* A random subset of the pieces of the write c (whole when unit is 0). */
static void sd_apply_pieces(sd_bytes *b, const sd_change *c, unsigned unit, uint64_t *rng) {
  if (unit == 0) {
    if (sd_rand(rng) & 1) sd_apply_part(b, c, c->off, c->off + c->len);
    return;
  }
  for (uint64_t at = c->off; at < c->off + c->len;) {
    uint64_t next = (at / unit + 1) * unit;
    if (next > c->off + c->len) next = c->off + c->len;
    if (sd_rand(rng) & 1) sd_apply_part(b, c, at, next);
    at = next;
  }
}

/* Apply the k-th unsynced change c (in issue order) to b as policy p says. */
static void sd_apply_by_policy(sd_bytes *b, const sd_change *c, size_t k, const sd_policy *p,
                               uint64_t *rng) {
  int whole = p->data == SD_KEEP_ALL ||
              ((p->data == SD_KEEP_PREFIX || p->data == SD_KEEP_TORN) && k < p->prefix);
  if (!whole && p->data == SD_KEEP_RANDOM && c->truncate) whole = sd_rand(rng) & 1;
  if (whole && c->truncate) bytes_resize(b, c->off);
  else if (whole) sd_apply_part(b, c, c->off, c->off + c->len);
  else if (p->data == SD_KEEP_RANDOM && !c->truncate) sd_apply_pieces(b, c, p->unit, rng);
  else if (p->data == SD_KEEP_TORN && k == p->prefix) sd_apply_torn(b, c, p, rng);
}

/* The names after a power loss: the durable ones and the pending operations
** that p->dirs keeps, in order. */
static void sd_crash_names(const sd_disk *d, sd_names *out, const sd_policy *p, uint64_t *rng) {
  names_copy(out, &d->durable);
  for (size_t i = 0; i < d->ndops; i++) {
    int keep = p->dirs == SD_KEEP_ALL || (p->dirs == SD_KEEP_RANDOM && (sd_rand(rng) & 1));
    if (keep) dirop_apply(out, &d->dops[i]);
  }
}

/* ======================================================================== */
/* The pm_io functions                                                       */
/* ======================================================================== */

/* Each works on the disk in use with the mutex held and returns a result or
** -errno; sd_ret() turns that into the POSIX convention. */
static long sd_ret(long r) {
  if (r >= 0) return r;
  errno = (int)-r;
  return -1;
}


/* A fault hook's answer for a call that writes no bytes: an errno or 0. */
static int sd_fault_errno(int kind) {
  int f = sd_faulty(kind);
  return f == SD_SHORT ? EIO : f;
}

/* Open the canonical path p in directory dir. */
static long sd_open_path(sd_disk *d, const char *p, const char *dir, int flags) {
  int writable = (flags & O_ACCMODE) != O_RDONLY;
  long i = names_find(&d->live, p);
  if (!sd_is_dir(d, dir)) return -ENOENT;
  if (sd_is_dir(d, p)) return -EISDIR;       /* directories are reached by fsync_dir only */
  if (i >= 0 && (flags & O_CREAT) && (flags & O_EXCL)) return -EEXIST;
  if (i < 0 && !(flags & O_CREAT)) return -ENOENT;
  int slot = 0;
  while (slot < SD_MAX_FDS && d->fds[slot].used) slot++;
  if (slot == SD_MAX_FDS) return -EMFILE;
  int ino = i >= 0 ? d->live.v[i].ino : inode_new(d, 0);
  if (i < 0) dirop_add(d, SD_LINK, p, NULL, ino);
  sd_inode *f = &d->inodes[ino];
  if ((flags & O_TRUNC) && writable && f->live.n) change_add(d, f, 1, 0, NULL, 0);
  d->fds[slot] = (sd_fd){ 1, ino, writable };
  return SD_FD_BASE + slot;
}

static long sd_open_locked(sd_disk *d, const char *path, int flags) {
  int f = sd_fault_errno(SD_F_OPEN);
  if (f) return -f;
  if (flags & (O_CREAT | O_TRUNC)) sd_tick(d);
  char *p = sd_canon(path), *dir = sd_parent(p);
  long r = sd_open_path(d, p, dir, flags);
  free(p);
  free(dir);
  return r;
}

/* ---- Locks: OFD semantics, one owner per descriptor ------------------------ */

static int sd_lock_overlaps(const sd_lock *l, int ino, uint64_t start, uint64_t end) {
  return l->ino == ino && l->start < end && start < l->end;
}

static int sd_lock_conflict(const sd_disk *d, int owner, int ino, int type, uint64_t start,
                            uint64_t end) {
  for (size_t i = 0; i < d->nlocks; i++) {
    const sd_lock *l = &d->locks[i];
    if (l->owner != owner && sd_lock_overlaps(l, ino, start, end) &&
        (type == F_WRLCK || l->type == F_WRLCK)) return 1;
  }
  return 0;
}

/* Drop owner's locks that overlap [start, end). Ranges are not split: the
** engine locks single bytes. */
static void sd_lock_drop(sd_disk *d, int owner, int ino, uint64_t start, uint64_t end) {
  size_t kept = 0;
  for (size_t i = 0; i < d->nlocks; i++)
    if (d->locks[i].owner != owner || !sd_lock_overlaps(&d->locks[i], ino, start, end))
      d->locks[kept++] = d->locks[i];
  d->nlocks = kept;
  pthread_cond_broadcast(&sd_cv);
}

static long sd_lock_locked(sd_disk *d, int fd, int type, uint64_t start, uint64_t len, int wait) {
  sd_fd *h = fd_get(d, fd);
  if (!h) return -EBADF;
  int ino = h->ino;
  uint64_t end = len ? start + len : UINT64_MAX;
  if (type == F_UNLCK) { sd_lock_drop(d, fd, ino, start, end); return 0; }
  while (sd_lock_conflict(d, fd, ino, type, start, end)) {
    if (!wait) return -EAGAIN;
    pthread_cond_wait(&sd_cv, &sd_mu);
  }
  sd_lock_drop(d, fd, ino, start, end);
  d->locks = sd_grow(d->locks, &d->caplocks, d->nlocks + 1, sizeof *d->locks);
  d->locks[d->nlocks++] = (sd_lock){ fd, ino, type, start, end };
  return 0;
}

/* ---- The other calls --------------------------------------------------------- */

static long sd_close_locked(sd_disk *d, int fd) {
  sd_fd *h = fd_get(d, fd);
  if (!h) return -EBADF;
  sd_lock_drop(d, fd, h->ino, 0, UINT64_MAX);       /* a descriptor's locks die with it */
  h->used = 0;
  return 0;
}

static long sd_pread_locked(sd_disk *d, int fd, void *buf, size_t n, uint64_t off) {
  sd_fd *h = fd_get(d, fd);
  if (!h) return -EBADF;
  sd_inode *f = &d->inodes[h->ino];
  map_to_live(f);
  if (off >= f->live.n) return 0;
  if (n > f->live.n - off) n = (size_t)(f->live.n - off);
  memcpy(buf, f->live.p + off, n);
  return (long)n;
}

static long sd_pwrite_locked(sd_disk *d, int fd, const void *buf, size_t n, uint64_t off) {
  int fault = sd_faulty(SD_F_WRITE);
  if (fault == SD_SHORT && n <= 1) return -EIO;
  if (fault == SD_SHORT) n /= 2;
  else if (fault) return -fault;
  sd_fd *h = fd_get(d, fd);
  if (!h || !h->writable) return -EBADF;
  sd_tick(d);
  sd_inode *f = &d->inodes[h->ino];
  map_to_live(f);
  change_add(d, f, 0, off, buf, n);
  live_to_map(f);
  return (long)n;
}

static long sd_fsync_locked(sd_disk *d, int fd) {
  int fault = sd_fault_errno(SD_F_FSYNC);
  if (fault) return -fault;              /* what was unsynced stays unsynced */
  sd_fd *h = fd_get(d, fd);
  if (!h) return -EBADF;
  sd_tick(d);
  inode_sync(&d->inodes[h->ino]);
  return 0;
}

/* Make the pending operations on dir durable, in order. */
static void sd_sync_dir(sd_disk *d, const char *dir) {
  size_t kept = 0;
  for (size_t i = 0; i < d->ndops; i++) {
    if (strcmp(d->dops[i].dir, dir) != 0) { d->dops[kept++] = d->dops[i]; continue; }
    dirop_apply(&d->durable, &d->dops[i]);
    dirop_free(&d->dops[i]);
  }
  d->ndops = kept;
}

static long sd_fsync_dir_locked(sd_disk *d, const char *dir) {
  int fault = sd_fault_errno(SD_F_DIRSYNC);
  if (fault) return -fault;
  char *p = sd_canon(dir);
  long r = sd_is_dir(d, p) ? 0 : -ENOENT;
  if (r == 0) { sd_tick(d); sd_sync_dir(d, p); }
  free(p);
  return r;
}

static long sd_rename_locked(sd_disk *d, const char *from, const char *to) {
  int fault = sd_fault_errno(SD_F_RENAME);
  if (fault) return -fault;
  char *a = sd_canon(from), *b = sd_canon(to), *bdir = sd_parent(b);
  long i = names_find(&d->live, a);
  long r = i < 0 || !sd_is_dir(d, bdir) ? -ENOENT : 0;
  if (r == 0) { sd_tick(d); dirop_add(d, SD_RENAME, a, b, d->live.v[i].ino); }
  free(a);
  free(b);
  free(bdir);
  return r;
}

static long sd_unlink_locked(sd_disk *d, const char *path) {
  int fault = sd_fault_errno(SD_F_UNLINK);
  if (fault) return -fault;
  char *p = sd_canon(path);
  long i = names_find(&d->live, p);
  long r = i < 0 ? -ENOENT : d->inodes[d->live.v[i].ino].is_dir ? -EISDIR : 0;
  if (r == 0) { sd_tick(d); dirop_add(d, SD_UNLINK, p, NULL, d->live.v[i].ino); }
  free(p);
  return r;
}

static long sd_ftruncate_locked(sd_disk *d, int fd, uint64_t len) {
  int fault = sd_fault_errno(SD_F_TRUNC);
  if (fault) return -fault;
  sd_fd *h = fd_get(d, fd);
  if (!h || !h->writable) return -EBADF;
  sd_tick(d);
  sd_inode *f = &d->inodes[h->ino];
  map_to_live(f);
  change_add(d, f, 1, len, NULL, 0);
  live_to_map(f);
  return 0;
}

static long sd_mkdir_locked(sd_disk *d, const char *path) {
  char *p = sd_canon(path), *dir = sd_parent(p);
  long r = !sd_is_dir(d, dir) ? -ENOENT : (sd_is_dir(d, p) || names_find(&d->live, p) >= 0) ? -EEXIST : 0;
  if (r == 0) { sd_tick(d); dirop_add(d, SD_LINK, p, NULL, inode_new(d, 1)); }
  free(p);
  free(dir);
  return r;
}

static long sd_rmdir_locked(sd_disk *d, const char *path) {
  char *p = sd_canon(path);
  long i = names_find(&d->live, p);
  long r = i < 0 ? -ENOENT : !d->inodes[d->live.v[i].ino].is_dir ? -ENOTDIR
         : sd_has_children(d, p) ? -ENOTEMPTY : 0;
  if (r == 0) { sd_tick(d); dirop_add(d, SD_UNLINK, p, NULL, d->live.v[i].ino); }
  free(p);
  return r;
}

static long sd_file_size_locked(sd_disk *d, int fd, uint64_t *size) {
  sd_fd *h = fd_get(d, fd);
  if (!h) return -EBADF;
  *size = d->inodes[h->ino].live.n;
  return 0;
}

static void *sd_map_locked(sd_disk *d, int fd, size_t len) {
  sd_fd *h = fd_get(d, fd);
  sd_inode *f = h ? &d->inodes[h->ino] : NULL;
  if (!f || (f->map && f->map_len != len)) { errno = h ? EINVAL : EBADF; return NULL; }
  if (!f->map) {
    f->map = sd_alloc(len);
    f->map_len = len;
    live_to_map(f);
  }
  f->map_refs++;
  return f->map;
}

static long sd_unmap_locked(sd_disk *d, void *p) {
  for (size_t i = 0; i < d->ninodes; i++) {
    sd_inode *f = &d->inodes[i];
    if (f->map != p) continue;
    if (--f->map_refs == 0) map_release(d, f);
    return 0;
  }
  return -EINVAL;
}

/* Names of the entries of dir (base names, malloc'ed), or NULL if dir is missing. */
static char **sd_list_locked(sd_disk *d, const char *dir, size_t *n) {
  char *p = sd_canon(dir);
  char **names = NULL;
  *n = 0;
  if (sd_is_dir(d, p)) {
    names = sd_alloc((d->live.n + 1) * sizeof *names);
    for (size_t i = 0; i < d->live.n; i++) {
      char *parent = sd_parent(d->live.v[i].path);
      if (strcmp(parent, p) == 0) names[(*n)++] = sd_strdup(d->live.v[i].path + strlen(p) + (strlen(p) > 1));
      free(parent);
    }
  }
  free(p);
  return names;
}

/* ---- The table ------------------------------------------------------------ */

/* Run a *_locked call on the disk in use under the mutex; POSIX result. */
#define SD_LOCKED(call) \
  __extension__({ pthread_mutex_lock(&sd_mu); long r_ = (call); pthread_mutex_unlock(&sd_mu); sd_ret(r_); })

static int sd_io_open(const char *p, int flags, int mode) {
  (void)mode;
  return (int)SD_LOCKED(sd_open_locked(sd_cur, p, flags));
}
static int sd_io_close(int fd) { return (int)SD_LOCKED(sd_close_locked(sd_cur, fd)); }
static ssize_t sd_io_pread(int fd, void *buf, size_t n, uint64_t off) {
  return SD_LOCKED(sd_pread_locked(sd_cur, fd, buf, n, off));
}
static ssize_t sd_io_pwrite(int fd, const void *buf, size_t n, uint64_t off) {
  return SD_LOCKED(sd_pwrite_locked(sd_cur, fd, buf, n, off));
}
static int sd_io_fsync(int fd) { return (int)SD_LOCKED(sd_fsync_locked(sd_cur, fd)); }
static int sd_io_fsync_dir(const char *dir) { return (int)SD_LOCKED(sd_fsync_dir_locked(sd_cur, dir)); }
static int sd_io_rename(const char *a, const char *b) { return (int)SD_LOCKED(sd_rename_locked(sd_cur, a, b)); }
static int sd_io_unlink(const char *p) { return (int)SD_LOCKED(sd_unlink_locked(sd_cur, p)); }
static int sd_io_ftruncate(int fd, uint64_t len) { return (int)SD_LOCKED(sd_ftruncate_locked(sd_cur, fd, len)); }
static int sd_io_mkdir(const char *p, int mode) {
  (void)mode;
  return (int)SD_LOCKED(sd_mkdir_locked(sd_cur, p));
}
static int sd_io_rmdir(const char *p) { return (int)SD_LOCKED(sd_rmdir_locked(sd_cur, p)); }
static int sd_io_file_size(int fd, uint64_t *size) { return (int)SD_LOCKED(sd_file_size_locked(sd_cur, fd, size)); }
static int sd_io_lock(int fd, int type, uint64_t start, uint64_t len, int wait) {
  return (int)SD_LOCKED(sd_lock_locked(sd_cur, fd, type, start, len, wait));
}
static int sd_io_unmap(void *p, size_t len) {
  (void)len;
  return (int)SD_LOCKED(sd_unmap_locked(sd_cur, p));
}

static void *sd_io_map(int fd, size_t len, int writable) {
  (void)writable;
  pthread_mutex_lock(&sd_mu);
  void *p = sd_map_locked(sd_cur, fd, len);
  int saved = errno;
  pthread_mutex_unlock(&sd_mu);
  errno = saved;
  return p;
}

/* The callback runs without the mutex, so it may call the disk itself. */
static int sd_io_list_dir(const char *dir, int (*fn)(void *, const char *), void *ctx) {
  size_t n;
  pthread_mutex_lock(&sd_mu);
  char **names = sd_list_locked(sd_cur, dir, &n);
  pthread_mutex_unlock(&sd_mu);
  if (!names) { errno = ENOENT; return -1; }
  int r = 0;
  for (size_t i = 0; i < n; i++) {
    if (r == 0) r = fn(ctx, names[i]);
    free(names[i]);
  }
  free(names);
  return r;
}

static const pm_io sd_io_table = {
  sd_io_open, sd_io_close, sd_io_pread, sd_io_pwrite, sd_io_fsync, sd_io_fsync_dir,
  sd_io_rename, sd_io_unlink, sd_io_ftruncate, sd_io_mkdir, sd_io_rmdir,
  sd_io_file_size, sd_io_lock, sd_io_map, sd_io_unmap, sd_io_list_dir
};

/* ======================================================================== */
/* The API of the tests                                                      */
/* ======================================================================== */

/* A new, empty disk; root and every directory above it exist. */
static inline sd_disk *sd_new(const char *root) { return sd_disk_empty(root); }

static inline void sd_free(sd_disk *d) {
  if (!d) return;
  pthread_mutex_lock(&sd_mu);
  if (sd_cur == d) sd_cur = NULL;
  pthread_mutex_unlock(&sd_mu);
  for (size_t i = 0; i < d->ninodes; i++) inode_free(&d->inodes[i]);
  free(d->inodes);
  names_free(&d->live);
  names_free(&d->durable);
  for (size_t i = 0; i < d->ndops; i++) dirop_free(&d->dops[i]);
  free(d->dops);
  free(d->locks);
  sd_free(d->frozen);
  free(d->root);
  free(d);
}

/* Make d the disk behind sd_io(); no store may be open on the previous one. */
static inline void sd_use(sd_disk *d) {
  pthread_mutex_lock(&sd_mu);
  sd_cur = d;
  pthread_mutex_unlock(&sd_mu);
}

static inline const pm_io *sd_io(void) { return &sd_io_table; }

/* A copy of d as it is now (without descriptors, locks or maps). */
static inline sd_disk *sd_clone(sd_disk *d) {
  pthread_mutex_lock(&sd_mu);
  sd_disk *c = sd_clone_locked(d);
  pthread_mutex_unlock(&sd_mu);
  return c;
}

/* The disk a power loss now could leave, by policy p: a new disk on which
** everything is durable. A TORN policy whose write has no boundary inside
** (or that is a truncation) loses that write. */
static inline sd_disk *sd_crash(sd_disk *d, const sd_policy *p) {
  pthread_mutex_lock(&sd_mu);
  uint64_t rng = p->seed ^ 0x5DEECE66Dull;
  sd_disk *c = sd_disk_empty(d->root);
  for (size_t i = 0; i < d->ninodes; i++) {
    int ino = inode_new(c, d->inodes[i].is_dir);
    bytes_copy(&c->inodes[ino].durable, &d->inodes[i].durable);
  }
  size_t n;
  sd_ref *refs = sd_unsynced_list(d, &n);
  for (size_t k = 0; k < n; k++) {
    sd_change ch = sd_ref_change(d, refs[k]);
    sd_apply_by_policy(&c->inodes[refs[k].ino].durable, &ch, k, p, &rng);
  }
  free(refs);
  for (size_t i = 0; i < c->ninodes; i++) bytes_copy(&c->inodes[i].live, &c->inodes[i].durable);
  sd_crash_names(d, &c->durable, p, &rng);
  names_copy(&c->live, &c->durable);
  pthread_mutex_unlock(&sd_mu);
  return c;
}

/* Unsynced changes of d (what PREFIX and TORN policies count). */
static inline size_t sd_unsynced(sd_disk *d) {
  pthread_mutex_lock(&sd_mu);
  size_t n;
  free(sd_unsynced_list(d, &n));
  pthread_mutex_unlock(&sd_mu);
  return n;
}

/* Boundaries of unit bytes inside the k-th unsynced change (0: it cannot tear). */
static inline uint64_t sd_tear_points(sd_disk *d, size_t k, unsigned unit) {
  pthread_mutex_lock(&sd_mu);
  size_t n;
  sd_ref *refs = sd_unsynced_list(d, &n);
  sd_change c = k < n ? sd_ref_change(d, refs[k]) : (sd_change){ 0, 1, 0, 0, NULL };
  uint64_t nb = sd_boundaries(&c, unit);
  free(refs);
  pthread_mutex_unlock(&sd_mu);
  return nb;
}

/* Directory operations not yet made durable. */
static inline size_t sd_pending_dirops(sd_disk *d) {
  pthread_mutex_lock(&sd_mu);
  size_t n = d->ndops;
  pthread_mutex_unlock(&sd_mu);
  return n;
}

/* Mutating calls made on d so far. */
static inline long sd_ops(sd_disk *d) {
  pthread_mutex_lock(&sd_mu);
  long n = d->ops;
  pthread_mutex_unlock(&sd_mu);
  return n;
}

/* Descriptors open on d. */
static inline int sd_open_fds(sd_disk *d) {
  pthread_mutex_lock(&sd_mu);
  int n = 0;
  for (int i = 0; i < SD_MAX_FDS; i++) n += d->fds[i].used;
  pthread_mutex_unlock(&sd_mu);
  return n;
}

/* Ask for a copy of d as it is when exactly `done` mutating calls were made. */
static inline void sd_freeze_at(sd_disk *d, long done) {
  pthread_mutex_lock(&sd_mu);
  sd_disk *old = d->frozen;
  d->freeze_at = done;
  d->frozen = NULL;
  pthread_mutex_unlock(&sd_mu);
  sd_free(old);
}

/* 1 once the copy asked for with sd_freeze_at has been taken. */
static inline int sd_has_frozen(sd_disk *d) {
  pthread_mutex_lock(&sd_mu);
  int taken = d->frozen != NULL;
  pthread_mutex_unlock(&sd_mu);
  return taken;
}

/* The copy asked for with sd_freeze_at (the caller frees it): taken during
** the run, or now if the run ended with exactly that many calls; NULL if it
** made fewer. */
static inline sd_disk *sd_frozen(sd_disk *d) {
  pthread_mutex_lock(&sd_mu);
  sd_disk *c = d->frozen;
  if (!c && d->ops == d->freeze_at) c = sd_clone_locked(d);
  d->frozen = NULL;
  d->freeze_at = -1;
  pthread_mutex_unlock(&sd_mu);
  return c;
}

/* Install (or with NULL remove) the fault hook. */
static inline void sd_set_fault(int (*hook)(int kind)) {
  pthread_mutex_lock(&sd_mu);
  sd_fault_hook = hook;
  pthread_mutex_unlock(&sd_mu);
}

#endif /* PM_SIMDISK_H */
