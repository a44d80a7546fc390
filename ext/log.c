/*
** log.c - manifest, segment files, record codec, appends with roll-over,
** group-commit fsync, and the scanner used by recovery and catch-up.
** See log.h for the format and the rules; the README has the byte layouts.
*/
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <xxhash.h>

static const char MANIFEST_MAGIC[8] = { 'P', 'M', 'A', 'P', 'M', 'A', 'N', '1' };
static const char SEGMENT_MAGIC[8] = { 'P', 'M', 'A', 'P', 'S', 'E', 'G', '1' };

#define WBUF_CAP (1u << 20)          /* write buffer: records are batched up to 1 MiB */
#define COMMIT_VLEN 32u              /* group id, group bytes, count, durable offset */
#define MANIFEST_MAX (16u << 20)     /* refuse absurd manifests before allocating */

void pm_seg_name(uint32_t n, char *buf, size_t cap) { snprintf(buf, cap, "%06u.log", n); }

static char *join_path(const char *dir, const char *name) { return pm_sprintf("%s/%s", dir, name); }

/* The checksum seed of segment n: records never validate in another store or segment. */
static uint64_t seg_seed(const pm_log *log, uint32_t n) {
  return log->man.seed ^ ((uint64_t)n * 0x9E3779B97F4A7C15ull);
}

/* ======================================================================== */
/* Manifest                                                                  */
/* ======================================================================== */

/* A growable byte buffer for encoding the manifest. */
typedef struct bbuf { uint8_t *p; size_t n, cap; int oom; } bbuf;

static void bb_put(bbuf *b, const void *src, size_t n) {
  if (b->oom) return;
  if (b->n + n > b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 256;
    while (cap < b->n + n) cap *= 2;
    uint8_t *p = pm_realloc(b->p, cap);
    if (!p) { b->oom = 1; return; }
    b->p = p; b->cap = cap;
  }
  memcpy(b->p + b->n, src, n);
  b->n += n;
}
static void bb_u32(bbuf *b, uint32_t v) { uint8_t t[4]; pm_put_u32(t, v); bb_put(b, t, 4); }
static void bb_u64(bbuf *b, uint64_t v) { uint8_t t[8]; pm_put_u64(t, v); bb_put(b, t, 8); }

/* A bounds-checked reader over the manifest bytes. */
typedef struct rbuf { const uint8_t *p; size_t n, at; int bad; } rbuf;

static const uint8_t *rb_take(rbuf *r, size_t n) {
  if (r->bad || n > r->n - r->at) { r->bad = 1; return NULL; }
  const uint8_t *p = r->p + r->at;
  r->at += n;
  return p;
}
static uint32_t rb_u32(rbuf *r) { const uint8_t *p = rb_take(r, 4); return p ? pm_get_u32(p) : 0; }
static uint64_t rb_u64(rbuf *r) { const uint8_t *p = rb_take(r, 8); return p ? pm_get_u64(p) : 0; }

static void manifest_encode(bbuf *b, const pm_manifest *m) {
  uint64_t shrink_bits;
  memcpy(&shrink_bits, &m->auto_shrink, 8);
  size_t clen = m->creator ? strlen(m->creator) : 0;
  bb_put(b, MANIFEST_MAGIC, 8);
  bb_u32(b, PM_FORMAT_VERSION);
  bb_u32(b, 0);                       /* total length, patched below */
  bb_put(b, m->store_id, 16);
  bb_u64(b, m->seed);
  bb_u64(b, m->gen);
  bb_u64(b, m->segment_size);
  bb_u64(b, shrink_bits);
  bb_u64(b, m->auto_shrink_min);
  bb_u64(b, m->seq_hw);
  bb_u64(b, (uint64_t)m->int_hw);
  bb_u32(b, (uint32_t)m->has_int_hw);
  bb_u32(b, m->next_segment);
  bb_u32(b, m->active);
  bb_u32(b, m->nsegs);
  bb_u32(b, (uint32_t)clen);
  for (uint32_t i = 0; i < m->nsegs; i++) bb_u32(b, m->segs[i]);
  if (clen) bb_put(b, m->creator, clen);
  if (!b->oom) pm_put_u32(b->p + 12, (uint32_t)(b->n + 8));
  if (!b->oom) bb_u64(b, XXH3_64bits(b->p, b->n));
}

static int manifest_decode(const uint8_t *p, size_t n, pm_manifest *m) {
  rbuf r = { p, n, 0, 0 };
  const uint8_t *magic = rb_take(&r, 8);
  if (!magic || memcmp(magic, MANIFEST_MAGIC, 8) != 0) return -1;
  if (rb_u32(&r) != PM_FORMAT_VERSION) return -2;
  uint32_t total = rb_u32(&r);
  /* At least the fixed fields (108 bytes) and the checksum. */
  if (total != n || n < 108 + 8 || XXH3_64bits(p, n - 8) != pm_get_u64(p + n - 8)) return -1;
  memcpy(m->store_id, rb_take(&r, 16), 16);
  m->seed = rb_u64(&r);
  m->gen = rb_u64(&r);
  m->segment_size = rb_u64(&r);
  uint64_t bits = rb_u64(&r);
  memcpy(&m->auto_shrink, &bits, 8);
  m->auto_shrink_min = rb_u64(&r);
  m->seq_hw = rb_u64(&r);
  m->int_hw = (int64_t)rb_u64(&r);
  m->has_int_hw = (int)rb_u32(&r);
  m->next_segment = rb_u32(&r);
  m->active = rb_u32(&r);
  m->nsegs = rb_u32(&r);
  uint32_t clen = rb_u32(&r);
  if (r.bad || m->nsegs == 0 || m->nsegs > (n / 4) || clen > n) return -1;
  m->segs = pm_malloc(sizeof(uint32_t) * m->nsegs);
  m->creator = pm_malloc(clen + 1u);
  if (!m->segs || !m->creator) return -3;
  for (uint32_t i = 0; i < m->nsegs; i++) m->segs[i] = rb_u32(&r);
  const uint8_t *c = rb_take(&r, clen);
  if (r.bad) return -1;
  memcpy(m->creator, c, clen);
  m->creator[clen] = 0;
  for (uint32_t i = 1; i < m->nsegs; i++) if (m->segs[i] <= m->segs[i - 1]) return -1;
  if (m->segs[m->nsegs - 1] >= m->next_segment) return -1;
  int has_active = 0;
  for (uint32_t i = 0; i < m->nsegs; i++) has_active |= m->segs[i] == m->active;
  if (!has_active) return -1;
  return 0;
}

void pm_manifest_clear(pm_manifest *m) {
  pm_free(m->segs);
  pm_free(m->creator);
  m->segs = NULL;
  m->creator = NULL;
  m->nsegs = 0;
}

int pm_manifest_copy(pm_manifest *dst, const pm_manifest *src) {
  *dst = *src;
  dst->segs = pm_malloc(sizeof(uint32_t) * (src->nsegs ? src->nsegs : 1));
  dst->creator = pm_strdup(src->creator ? src->creator : "");
  if (!dst->segs || !dst->creator) { pm_manifest_clear(dst); return PM_NOMEM; }
  memcpy(dst->segs, src->segs, sizeof(uint32_t) * src->nsegs);
  return PM_OK;
}

/* Read a whole small file into a pm_malloc'ed buffer. */
static int read_small_file(const pm_io *io, const char *path, uint8_t **out, size_t *n,
                           size_t max, pm_err *err) {
  int fd = io->open(path, O_RDONLY, 0);
  if (fd < 0) {
    if (errno == ENOENT) return PM_NOTFOUND;
    return pm_err_sys(err, errno, "cannot open %s", path);
  }
  uint64_t size = 0;
  int rc = PM_OK;
  if (io->file_size(fd, &size) < 0) rc = pm_err_sys(err, errno, "cannot stat %s", path);
  else if (size > max) rc = pm_err_set(err, PM_CORRUPT, "%s is too large (%llu bytes)", path,
                                       (unsigned long long)size);
  uint8_t *buf = rc ? NULL : pm_malloc((size_t)size + 1);
  if (!rc && !buf) rc = pm_err_set(err, PM_NOMEM, "out of memory reading %s", path);
  if (!rc && pm_io_read_full(io, fd, buf, (size_t)size, 0) != (ssize_t)size)
    rc = pm_err_sys(err, errno ? errno : EIO, "cannot read %s", path);
  io->close(fd);
  if (rc) { pm_free(buf); return rc; }
  *out = buf;
  *n = (size_t)size;
  return PM_OK;
}

int pm_manifest_read(const pm_io *io, const char *dir, pm_manifest *m, pm_err *err) {
  memset(m, 0, sizeof *m);
  char *path = join_path(dir, PM_MANIFEST_NAME);
  if (!path) return pm_err_set(err, PM_NOMEM, "out of memory");
  uint8_t *buf = NULL;
  size_t n = 0;
  int rc = read_small_file(io, path, &buf, &n, MANIFEST_MAX, err);
  if (rc == PM_OK) {
    int d = manifest_decode(buf, n, m);
    if (d == -3) rc = pm_err_set(err, PM_NOMEM, "out of memory reading %s", path);
    else if (d == -2) rc = pm_err_set(err, PM_CANTOPEN, "%s has an unsupported format version", path);
    else if (d < 0) rc = pm_err_set(err, PM_CORRUPT, "%s is corrupt", path);
    if (rc) pm_manifest_clear(m);
  }
  pm_free(buf);
  pm_free(path);
  return rc;
}

/* Write bytes to dir/name via dir/name.tmp: write, fsync, rename, fsync dir.
** *renamed says whether the rename happened: after it, a failure leaves it
** unknown which file a crash would keep. */
static int write_file_atomic(const pm_io *io, const char *dir, const char *name,
                             const uint8_t *p, size_t n, int *renamed, pm_err *err) {
  char *path = join_path(dir, name);
  char *tmp = pm_sprintf("%s/%s.tmp", dir, name);
  int rc = PM_OK;
  if (!path || !tmp) { rc = pm_err_set(err, PM_NOMEM, "out of memory"); goto done; }
  int fd = io->open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) { rc = pm_err_sys(err, errno, "cannot create %s", tmp); goto done; }
  if (pm_io_write_all(io, fd, p, n, 0) < 0) rc = pm_err_sys(err, errno, "cannot write %s", tmp);
  else if (io->fsync(fd) < 0) rc = pm_err_sys(err, errno, "cannot fsync %s", tmp);
  io->close(fd);
  if (!rc && io->rename(tmp, path) < 0) rc = pm_err_sys(err, errno, "cannot rename %s", tmp);
  else if (!rc) *renamed = 1;
  if (!rc && io->fsync_dir(dir) < 0) rc = pm_err_sys(err, errno, "cannot fsync directory %s", dir);
  if (rc && !*renamed) io->unlink(tmp);
done:
  pm_free(path);
  pm_free(tmp);
  return rc;
}

int pm_manifest_write(const pm_io *io, const char *dir, pm_manifest *m, int *renamed, pm_err *err) {
  bbuf b = { 0 };
  int moved = 0;
  m->gen++;
  manifest_encode(&b, m);
  int rc = b.oom ? pm_err_set(err, PM_NOMEM, "out of memory writing the manifest")
                 : write_file_atomic(io, dir, PM_MANIFEST_NAME, b.p, b.n, &moved, err);
  pm_free(b.p);
  if (rc && !moved) m->gen--;
  if (renamed) *renamed = moved;
  return rc;
}

/* ======================================================================== */
/* Segment files                                                             */
/* ======================================================================== */

static void seg_header_encode(uint8_t h[PM_SEG_HEADER], const pm_manifest *m, uint32_t num,
                              int output) {
  memset(h, 0, PM_SEG_HEADER);
  memcpy(h, SEGMENT_MAGIC, 8);
  pm_put_u32(h + 8, PM_FORMAT_VERSION);
  pm_put_u32(h + 12, PM_SEG_HEADER);
  memcpy(h + 16, m->store_id, 16);
  pm_put_u32(h + 32, num);
  h[36] = (uint8_t)output;
  pm_put_u64(h + 56, XXH3_64bits(h, 56));
}

/* Check a segment header; returns 0 when it is the header of segment num of this store. */
static int seg_header_check(const uint8_t h[PM_SEG_HEADER], const pm_manifest *m, uint32_t num) {
  if (memcmp(h, SEGMENT_MAGIC, 8) != 0) return -1;
  if (pm_get_u64(h + 56) != XXH3_64bits(h, 56)) return -1;
  if (pm_get_u32(h + 8) != PM_FORMAT_VERSION || pm_get_u32(h + 12) != PM_SEG_HEADER) return -1;
  if (memcmp(h + 16, m->store_id, 16) != 0 || pm_get_u32(h + 32) != num) return -1;
  return 0;
}

/* Create segment num with its header, fsynced (file and directory). */
static int seg_create(const pm_io *io, const char *dir, const pm_manifest *m, uint32_t num,
                      int output, int *fd_out, pm_err *err) {
  char name[32];
  pm_seg_name(num, name, sizeof name);
  char *path = join_path(dir, name);
  if (!path) return pm_err_set(err, PM_NOMEM, "out of memory");
  uint8_t h[PM_SEG_HEADER];
  seg_header_encode(h, m, num, output);
  int rc = PM_OK;
  int fd = io->open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) rc = pm_err_sys(err, errno, "cannot create %s", path);
  else if (pm_io_write_all(io, fd, h, sizeof h, 0) < 0) rc = pm_err_sys(err, errno, "cannot write %s", path);
  else if (io->fsync(fd) < 0) rc = pm_err_sys(err, errno, "cannot fsync %s", path);
  else if (io->fsync_dir(dir) < 0) rc = pm_err_sys(err, errno, "cannot fsync directory %s", dir);
  if (rc && fd >= 0) { io->close(fd); io->unlink(path); fd = -1; }
  pm_free(path);
  *fd_out = fd;
  return rc;
}

/* Open segment num of the store and check its header. */
static int seg_open(pm_log *log, uint32_t num, pm_segfile *out, pm_err *err) {
  memset(out, 0, sizeof *out);
  char name[32];
  pm_seg_name(num, name, sizeof name);
  char *path = join_path(log->dir, name);
  if (!path) return pm_err_set(err, PM_NOMEM, "out of memory");
  int rc = PM_OK;
  uint8_t h[PM_SEG_HEADER];
  int fd = log->io->open(path, log->readonly ? O_RDONLY : O_RDWR, 0);
  if (fd < 0) {
    rc = errno == ENOENT ? pm_err_set(err, PM_CORRUPT, "segment %s is missing", name)
                         : pm_err_sys(err, errno, "cannot open %s", path);
  } else if (log->io->file_size(fd, &out->size) < 0) {
    rc = pm_err_sys(err, errno, "cannot stat %s", path);
  } else if (pm_io_read_full(log->io, fd, h, sizeof h, 0) != (ssize_t)sizeof h ||
             seg_header_check(h, &log->man, num) != 0) {
    rc = pm_err_set(err, PM_CORRUPT, "segment %s corrupt at offset 0 (bad header)", name);
  }
  if (rc && fd >= 0) log->io->close(fd);
  out->num = num;
  out->fd = rc ? -1 : fd;
  /* The manifest's active segment is the append chain whatever its header
  ** says: taken for a compaction's output, its groups would not move the
  ** append point, and the first writer would cut them off. */
  out->output = rc ? 0 : h[36] == 1 && num != log->man.active;
  pm_free(path);
  return rc;
}

static pm_segfile *seg_find(pm_log *log, uint32_t num) {
  uint32_t lo = 0, hi = log->nfiles;
  while (lo < hi) {
    uint32_t mid = (lo + hi) / 2;
    if (log->files[mid].num < num) lo = mid + 1; else hi = mid;
  }
  return lo < log->nfiles && log->files[lo].num == num ? &log->files[lo] : NULL;
}

/* A segment's size and record count change under the writer (and under a
** scan that finds the file grew) while other threads read them for figures
** and limits: relaxed atomics, read with __atomic_load_n. */
static uint64_t seg_size(const pm_segfile *f) { return __atomic_load_n(&f->size, __ATOMIC_RELAXED); }
static void set_seg_size(pm_segfile *f, uint64_t v) { __atomic_store_n(&f->size, v, __ATOMIC_RELAXED); }
static void count_record(pm_segfile *f) { __atomic_fetch_add(&f->records, 1, __ATOMIC_RELAXED); }

/* Append an open segment file to the table (numbers ascend). */
static int seg_table_add(pm_log *log, pm_segfile f) {
  pthread_rwlock_wrlock(&log->segs_lock);
  uint32_t kept = 0;              /* drop the entries pm_log_drop_retired closed */
  for (uint32_t i = 0; i < log->nfiles; i++)
    if (!(log->files[i].retired && log->files[i].fd < 0)) log->files[kept++] = log->files[i];
  log->nfiles = kept;
  pm_segfile *nf = pm_realloc(log->files, sizeof *nf * (log->nfiles + 1));
  if (!nf) { pthread_rwlock_unlock(&log->segs_lock); return PM_NOMEM; }
  log->files = nf;
  uint32_t i = log->nfiles;
  while (i > 0 && log->files[i - 1].num > f.num) { log->files[i] = log->files[i - 1]; i--; }
  log->files[i] = f;
  log->nfiles++;
  pthread_rwlock_unlock(&log->segs_lock);
  return PM_OK;
}

uint32_t pm_log_alloc_segment(pm_log *log) {
  pthread_mutex_lock(&log->num_mu);
  uint32_t n = log->man.next_segment++;
  pthread_mutex_unlock(&log->num_mu);
  return n;
}

/* Make *m (taken over, then cleared) the log's manifest (num_mu held). Only
** the fields that differ are written, under segs_lock as well: other
** threads read the store's fixed settings (seed, segment_size, auto_shrink)
** without a lock, and the active segment under segs_lock. */
static void man_install(pm_log *log, pm_manifest *m) {
  pm_manifest *cur = &log->man;
  pthread_rwlock_wrlock(&log->segs_lock);
#define PM_SET_IF_CHANGED(field) if (memcmp(&cur->field, &m->field, sizeof cur->field)) cur->field = m->field
  PM_SET_IF_CHANGED(seed);
  PM_SET_IF_CHANGED(gen);
  PM_SET_IF_CHANGED(segment_size);
  PM_SET_IF_CHANGED(auto_shrink);
  PM_SET_IF_CHANGED(auto_shrink_min);
  PM_SET_IF_CHANGED(seq_hw);
  PM_SET_IF_CHANGED(int_hw);
  PM_SET_IF_CHANGED(has_int_hw);
  PM_SET_IF_CHANGED(next_segment);
  PM_SET_IF_CHANGED(active);
#undef PM_SET_IF_CHANGED
  if (memcmp(cur->store_id, m->store_id, sizeof cur->store_id)) memcpy(cur->store_id, m->store_id, sizeof cur->store_id);
  pm_free(cur->segs);
  pm_free(cur->creator);
  cur->segs = m->segs;
  cur->nsegs = m->nsegs;
  cur->creator = m->creator;
  pthread_rwlock_unlock(&log->segs_lock);
  memset(m, 0, sizeof *m);
}

int pm_log_create(const pm_io *io, const char *dir, pm_manifest *m, pm_err *err) {
  uint32_t num = m->next_segment ? m->next_segment : 1;
  int fd;
  int rc = seg_create(io, dir, m, num, 0, &fd, err);
  if (rc) return rc;
  io->close(fd);
  pm_free(m->segs);
  m->segs = pm_malloc(sizeof(uint32_t));
  if (!m->segs) return pm_err_set(err, PM_NOMEM, "out of memory");
  m->segs[0] = num;
  m->nsegs = 1;
  m->active = num;
  m->next_segment = num + 1;
  return pm_manifest_write(io, dir, m, NULL, err);
}

int pm_log_open(pm_log *log, const pm_io *io, const char *dir, const pm_manifest *m,
                int readonly, pm_err *err) {
  memset(log, 0, sizeof *log);
  log->io = io;
  log->readonly = readonly;
  pthread_rwlock_init(&log->segs_lock, NULL);
  pthread_mutex_init(&log->sync_mu, NULL);
  pthread_mutex_init(&log->num_mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&log->sync_cv, &ca);
  pthread_condattr_destroy(&ca);
  log->dir = pm_strdup(dir);
  if (!log->dir || pm_manifest_copy(&log->man, m)) return pm_err_set(err, PM_NOMEM, "out of memory");
  for (uint32_t i = 0; i < m->nsegs; i++) {
    pm_segfile f;
    int rc = seg_open(log, m->segs[i], &f, err);
    if (rc) return rc;
    if (seg_table_add(log, f)) { io->close(f.fd); return pm_err_set(err, PM_NOMEM, "out of memory"); }
  }
  pm_segfile *act = seg_find(log, log->man.active);
  log->end = (pm_pos){ act->num, act->size };
  log->written = log->end;
  log->durable = (pm_pos){ act->num, PM_SEG_HEADER };
  return PM_OK;
}

void pm_log_close(pm_log *log) {
  for (uint32_t i = 0; i < log->nfiles; i++)
    if (log->files[i].fd >= 0) log->io->close(log->files[i].fd);
  pm_free(log->files);
  pm_free(log->wbuf);
  pm_free(log->dir);
  pm_manifest_clear(&log->man);
  pthread_rwlock_destroy(&log->segs_lock);
  pthread_mutex_destroy(&log->sync_mu);
  pthread_mutex_destroy(&log->num_mu);
  pthread_cond_destroy(&log->sync_cv);
  memset(log, 0, sizeof *log);
}

/* 1 if segment num is in the manifest m. */
static int manifest_has(const pm_manifest *m, uint32_t num) {
  for (uint32_t j = 0; j < m->nsegs; j++)
    if (m->segs[j] == num) return 1;
  return 0;
}

int pm_log_follow(pm_log *log, const pm_manifest *m, int *removed, pm_err *err) {
  pm_manifest copy;
  if (pm_manifest_copy(&copy, m)) return pm_err_set(err, PM_NOMEM, "out of memory");
  *removed = 0;
  pthread_rwlock_wrlock(&log->segs_lock);
  for (uint32_t i = 0; i < log->nfiles; i++) {
    if (log->files[i].retired || manifest_has(m, log->files[i].num)) continue;
    log->files[i].retired = 1;             /* compacted away by another process */
    *removed = 1;
  }
  pthread_rwlock_unlock(&log->segs_lock);
  pm_log_set_manifest(log, &copy);
  for (uint32_t j = 0; j < m->nsegs; j++) {
    if (seg_find(log, m->segs[j])) continue;
    pm_segfile f;
    int rc = seg_open(log, m->segs[j], &f, err);
    if (rc) return rc;
    if (seg_table_add(log, f)) { log->io->close(f.fd); return pm_err_set(err, PM_NOMEM, "out of memory"); }
  }
  return PM_OK;
}

int pm_log_read_value(pm_log *log, pm_pos at, uint32_t klen, uint8_t *dst, uint32_t len,
                      pm_err *err) {
  pthread_rwlock_rdlock(&log->segs_lock);
  pm_segfile *f = seg_find(log, at.seg);
  int fd = f ? f->fd : -1;
  ssize_t got = fd < 0 ? -1 : pm_io_read_full(log->io, fd, dst, len, at.off + PM_REC_HEADER + klen);
  int saved = errno;
  pthread_rwlock_unlock(&log->segs_lock);
  char name[32];
  pm_seg_name(at.seg, name, sizeof name);
  if (fd < 0) return pm_err_set(err, PM_CORRUPT, "segment %s is not open", name);
  if (got < 0) return pm_err_sys(err, saved, "cannot read %s at offset %llu", name,
                                 (unsigned long long)at.off);
  if ((uint32_t)got != len)
    return pm_err_set(err, PM_CORRUPT, "segment %s truncated at offset %llu", name,
                      (unsigned long long)at.off);
  return PM_OK;
}

int pm_log_read_raw(pm_log *log, uint32_t seg, uint64_t off, uint8_t *dst, size_t n, size_t *got,
                    pm_err *err) {
  pthread_rwlock_rdlock(&log->segs_lock);
  pm_segfile *f = seg_find(log, seg);
  ssize_t r = f ? pm_io_read_full(log->io, f->fd, dst, n, off) : -1;
  int saved = errno;
  pthread_rwlock_unlock(&log->segs_lock);
  char name[32];
  pm_seg_name(seg, name, sizeof name);
  if (!f) return pm_err_set(err, PM_CORRUPT, "segment %s is not open", name);
  if (r < 0) return pm_err_sys(err, saved, "cannot read %s at offset %llu", name, (unsigned long long)off);
  *got = (size_t)r;
  return PM_OK;
}

/* ======================================================================== */
/* Appending                                                                 */
/* ======================================================================== */

/* Fill the 32-byte record header (checksum left at 0). */
static void rec_header(uint8_t h[PM_REC_HEADER], uint8_t type, uint8_t ktype, uint32_t klen,
                       uint8_t vtype, uint32_t vlen, uint64_t seq) {
  memset(h, 0, PM_REC_HEADER);
  h[8] = type;
  h[9] = ktype;
  h[10] = vtype;
  pm_put_u32(h + 12, klen);
  pm_put_u32(h + 16, vlen);
  pm_put_u64(h + 24, seq);
}

/* Checksum of a record from its three parts, as the scanner recomputes it. */
static uint64_t rec_checksum(uint64_t seed, const uint8_t *h, const void *key, uint32_t klen,
                             const void *val, uint32_t vlen) {
  XXH3_state_t st;
  XXH3_INITSTATE(&st);
  XXH3_64bits_reset_withSeed(&st, seed);
  XXH3_64bits_update(&st, h + 8, PM_REC_HEADER - 8);
  if (klen) XXH3_64bits_update(&st, key, klen);
  if (vlen) XXH3_64bits_update(&st, val, vlen);
  return XXH3_64bits_digest(&st);
}

static int log_failed(pm_log *log, pm_err *err) {
  return pm_err_set(err, log->failed, "%s", log->failmsg);
}

void pm_log_fail(pm_log *log, const pm_err *err) {
  pthread_mutex_lock(&log->sync_mu);
  if (!log->failed) {            /* callers may have no report (err NULL) */
    log->failed = err && err->code ? err->code : PM_IOERR;
    snprintf(log->failmsg, sizeof log->failmsg, "%s", err ? err->msg : "a write to the log failed");
  }
  pthread_cond_broadcast(&log->sync_cv);
  pthread_mutex_unlock(&log->sync_mu);
}

/* A write error: the log stops accepting writes (the store turns read-only). */
static int write_error(pm_log *log, int sys_errno, pm_pos at, pm_err *err) {
  char name[32];
  pm_seg_name(at.seg, name, sizeof name);
  pm_err e;                      /* the stop keeps its code and message even when err is NULL */
  pm_err_sys(&e, sys_errno, "write to %s at offset %llu failed", name, (unsigned long long)at.off);
  pm_log_fail(log, &e);
  return pm_err_set(err, e.code, "%s", e.msg);
}

/* The segment appends go to. */
static pm_segfile *active_file(pm_log *log) { return seg_find(log, log->man.active); }
static int active_fd(pm_log *log) { return active_file(log)->fd; }

static void note_written(pm_log *log, pm_pos p) {
  pthread_mutex_lock(&log->sync_mu);
  if (pm_pos_cmp(p, log->written) > 0) log->written = p;
  pthread_mutex_unlock(&log->sync_mu);
}

int pm_log_flush(pm_log *log, pm_err *err) {
  if (log->failed) return log_failed(log, err);
  if (log->wlen == 0) return PM_OK;
  if (pm_io_write_all(log->io, active_fd(log), log->wbuf, log->wlen, log->wstart.off) < 0)
    return write_error(log, errno, log->wstart, err);
  log->wstart.off += log->wlen;
  set_seg_size(active_file(log), log->wstart.off);
  log->wlen = 0;
  note_written(log, log->wstart);
  return PM_OK;
}

/* Seal the active segment (fsync) and start the next: new file, manifest. */
int pm_log_roll(pm_log *log, pm_err *err) {
  int rc = pm_log_flush(log, err);
  if (rc) return rc;
  pm_pos sealed = log->end;
  if (log->io->fsync(active_fd(log)) < 0) return write_error(log, errno, sealed, err);
  uint32_t num = pm_log_alloc_segment(log);
  pm_manifest next;
  pthread_mutex_lock(&log->num_mu);
  int copied = pm_manifest_copy(&next, &log->man);
  pthread_mutex_unlock(&log->num_mu);
  if (copied) return pm_err_set(err, PM_NOMEM, "out of memory");
  uint32_t *segs = pm_realloc(next.segs, sizeof(uint32_t) * (next.nsegs + 1));
  if (!segs) { pm_manifest_clear(&next); return pm_err_set(err, PM_NOMEM, "out of memory"); }
  next.segs = segs;
  next.segs[next.nsegs++] = num;
  next.active = num;
  int fd = -1;
  rc = seg_create(log->io, log->dir, &log->man, num, 0, &fd, err);
  if (!rc) rc = pm_manifest_write(log->io, log->dir, &next, NULL, err);
  if (!rc) rc = seg_table_add(log, (pm_segfile){ num, fd, PM_SEG_HEADER, 0, 0, 0, 0 })
                    ? pm_err_set(err, PM_NOMEM, "out of memory") : PM_OK;
  if (rc) {
    if (fd >= 0) log->io->close(fd);
    pm_manifest_clear(&next);
    pm_log_fail(log, err);     /* the manifest may or may not name it: reopen decides */
    return rc;
  }
  pthread_mutex_lock(&log->num_mu);
  next.next_segment = log->man.next_segment;     /* a compaction may have taken more */
  man_install(log, &next);
  pthread_mutex_unlock(&log->num_mu);
  log->end = log->wstart = (pm_pos){ num, PM_SEG_HEADER };
  pthread_mutex_lock(&log->sync_mu);
  log->fsyncs++;
  log->written = log->durable = log->end;
  pthread_mutex_unlock(&log->sync_mu);
  if (log->on_durable) log->on_durable(log->on_durable_ctx, log->end);
  return PM_OK;
}

int pm_log_roll_if_full(pm_log *log, pm_err *err) {
  if (log->failed) return log_failed(log, err);
  if (log->end.off < log->man.segment_size) return PM_OK;
  return pm_log_roll(log, err);
}

/* Make room in the write buffer for a record of size bytes. */
static int reserve_space(pm_log *log, uint64_t size, pm_err *err) {
  if (log->failed) return log_failed(log, err);
  if (!log->wbuf) {
    log->wbuf = pm_malloc(WBUF_CAP);
    if (!log->wbuf) return pm_err_set(err, PM_NOMEM, "out of memory");
    log->wcap = WBUF_CAP;
  }
  if (log->wlen + size > log->wcap) return pm_log_flush(log, err);
  return PM_OK;
}

/* Write a record too big for a buffer straight to fd at off, in pieces:
** its header (checksum included), key, value and padding. -1/errno. */
static int write_pieces(const pm_io *io, int fd, uint64_t off, uint64_t seed, uint8_t type,
                        const pm_key *k, uint8_t vtype, const void *v, uint32_t vlen, uint64_t seq) {
  static const uint8_t zeros[8];
  uint8_t h[PM_REC_HEADER];
  rec_header(h, type, k->type, k->len, vtype, vlen, seq);
  pm_put_u64(h, rec_checksum(seed, h, k->data, k->len, v, vlen));
  uint64_t size = pm_rec_size(k->len, vlen);
  uint64_t pad = size - (PM_REC_HEADER + k->len + vlen);
  if (pm_io_write_all(io, fd, h, PM_REC_HEADER, off) < 0 ||
      pm_io_write_all(io, fd, k->data, k->len, off + PM_REC_HEADER) < 0 ||
      pm_io_write_all(io, fd, v, vlen, off + PM_REC_HEADER + k->len) < 0 ||
      pm_io_write_all(io, fd, zeros, pad, off + size - pad) < 0)
    return -1;
  return 0;
}

/* Encode a record into dst, which has pm_rec_size() bytes. */
static void rec_encode(uint8_t *dst, uint64_t seed, uint8_t type, const pm_key *k, uint8_t vtype,
                       const void *v, uint32_t vlen, uint64_t seq) {
  size_t body = PM_REC_HEADER + k->len + vlen;
  rec_header(dst, type, k->type, k->len, vtype, vlen, seq);
  if (k->len) memcpy(dst + PM_REC_HEADER, k->data, k->len);
  if (vlen) memcpy(dst + PM_REC_HEADER + k->len, v, vlen);
  memset(dst + body, 0, pm_rec_size(k->len, vlen) - body);
  pm_put_u64(dst, XXH3_64bits_withSeed(dst + 8, body - 8, seed));
}

/* The active segment's version of write_pieces. */
static int write_big(pm_log *log, uint8_t type, const pm_key *k, uint8_t vtype, const void *v,
                     uint32_t vlen, uint64_t seq, pm_err *err) {
  uint64_t off = log->end.off, size = pm_rec_size(k->len, vlen);
  if (write_pieces(log->io, active_fd(log), off, seg_seed(log, log->end.seg), type, k, vtype, v, vlen, seq) < 0)
    return write_error(log, errno, log->end, err);
  log->wstart.off = off + size;
  set_seg_size(active_file(log), off + size);
  note_written(log, log->wstart);
  return PM_OK;
}

int pm_log_add(pm_log *log, uint8_t type, const pm_key *k, uint8_t vtype, const void *v,
               uint32_t vlen, uint64_t seq, pm_pos *at, pm_err *err) {
  static const pm_key nokey = { 0, 0, NULL };
  if (!k) k = &nokey;
  uint64_t size = pm_rec_size(k->len, vlen);
  int big = size > WBUF_CAP / 2;
  int rc = big ? pm_log_flush(log, err) : reserve_space(log, size, err);
  if (rc) return rc;
  if (at) *at = log->end;
  if (big) {
    rc = write_big(log, type, k, vtype, v, vlen, seq, err);
  } else {
    if (log->wlen == 0) log->wstart = log->end;
    rec_encode(log->wbuf + log->wlen, seg_seed(log, log->end.seg), type, k, vtype, v, vlen, seq);
    log->wlen += size;
  }
  if (!rc) {
    log->end.off += size;
    count_record(active_file(log));
  }
  return rc;
}

/* The value of a commit record: group size and start, and the durable claim. */
static void commit_payload(uint8_t v[COMMIT_VLEN], uint32_t nrec, pm_pos start, pm_pos durable) {
  memset(v, 0, COMMIT_VLEN);
  pm_put_u32(v, nrec);
  pm_put_u32(v + 4, start.seg);
  pm_put_u64(v + 8, start.off);
  pm_put_u32(v + 16, durable.seg);
  pm_put_u64(v + 24, durable.off);
}

int pm_log_add_commit(pm_log *log, uint64_t group_id, uint32_t nrec, pm_pos group_start,
                      pm_pos *at, pm_err *err) {
  uint8_t v[COMMIT_VLEN];
  pthread_mutex_lock(&log->sync_mu);
  pm_pos durable = log->durable;
  pthread_mutex_unlock(&log->sync_mu);
  commit_payload(v, nrec, group_start, durable);
  return pm_log_add(log, PM_REC_COMMIT, NULL, 0, v, COMMIT_VLEN, group_id, at, err);
}

int pm_log_add_abort(pm_log *log, uint64_t group_id, pm_err *err) {
  return pm_log_add(log, PM_REC_ABORT, NULL, 0, NULL, 0, group_id, NULL, err);
}

int pm_log_start_append(pm_log *log, pm_pos end, pm_err *err) {
  pm_segfile *f = seg_find(log, end.seg);
  if (!f || f != active_file(log))
    return pm_err_set(err, PM_CORRUPT, "the log does not end in its active segment");
  uint64_t size;                 /* another process may have written since we looked */
  if (log->io->file_size(f->fd, &size) == 0 && size != seg_size(f)) set_seg_size(f, size);
  if (seg_size(f) > end.off && !log->readonly) {
    if (log->io->ftruncate(f->fd, end.off) < 0 || log->io->fsync(f->fd) < 0)
      return write_error(log, errno, end, err);
    set_seg_size(f, end.off);
  }
  log->end = log->wstart = end;
  log->wlen = 0;
  pthread_mutex_lock(&log->sync_mu);
  log->written = end;
  if (pm_pos_cmp(log->durable, end) > 0) log->durable = end;
  pthread_mutex_unlock(&log->sync_mu);
  return PM_OK;
}

pm_pos pm_log_written(pm_log *log) {
  pthread_mutex_lock(&log->sync_mu);
  pm_pos p = log->written;
  pthread_mutex_unlock(&log->sync_mu);
  return p;
}

/* Absolute CLOCK_MONOTONIC deadline timeout_ns from now. */
static struct timespec deadline_after(int64_t timeout_ns) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  uint64_t ns = (uint64_t)ts.tv_nsec + (uint64_t)timeout_ns;
  ts.tv_sec += (time_t)(ns / 1000000000u);
  ts.tv_nsec = (long)(ns % 1000000000u);
  return ts;
}

/* Lead one fsync of the active segment covering everything written so far.
** Called and returns with sync_mu held. */
static int lead_fsync(pm_log *log, pm_err *err) {
  pm_pos target = log->written;
  log->syncing = 1;
  pthread_rwlock_rdlock(&log->segs_lock);
  pm_segfile *f = seg_find(log, target.seg);
  int fd = f ? f->fd : -1;
  pthread_mutex_unlock(&log->sync_mu);
  int r = fd < 0 ? 0 : log->io->fsync(fd);
  int saved = errno;
  pthread_rwlock_unlock(&log->segs_lock);
  pthread_mutex_lock(&log->sync_mu);
  log->syncing = 0;
  log->fsyncs++;
  int rc = PM_OK;
  if (r < 0) {
    char name[32];
    pm_seg_name(target.seg, name, sizeof name);
    pm_err e;
    pm_err_sys(&e, saved, "fsync of %s failed", name);
    if (!log->failed) { log->failed = e.code; snprintf(log->failmsg, sizeof log->failmsg, "%s", e.msg); }
    rc = pm_err_set(err, e.code, "%s", e.msg);
  } else if (pm_pos_cmp(target, log->durable) > 0) {
    log->durable = target;
    if (log->on_durable) log->on_durable(log->on_durable_ctx, target);
  }
  pthread_cond_broadcast(&log->sync_cv);
  return rc;
}

int pm_log_sync(pm_log *log, pm_pos upto, int64_t timeout_ns, pm_err *err) {
  int rc = PM_OK;
  struct timespec dl = deadline_after(timeout_ns < 0 ? 0 : timeout_ns);
  pthread_mutex_lock(&log->sync_mu);
  while (pm_pos_cmp(log->durable, upto) < 0) {
    if (log->failed) { rc = log_failed(log, err); break; }
    if (!log->syncing && timeout_ns < 0) {
      rc = lead_fsync(log, err);
      if (rc) break;
      continue;
    }
    if (timeout_ns < 0) { pthread_cond_wait(&log->sync_cv, &log->sync_mu); continue; }
    if (pthread_cond_timedwait(&log->sync_cv, &log->sync_mu, &dl) == ETIMEDOUT &&
        pm_pos_cmp(log->durable, upto) < 0) {
      rc = pm_err_set(err, PM_TIMEOUT, "sync did not finish in time");
      break;
    }
  }
  pthread_mutex_unlock(&log->sync_mu);
  return rc;
}

/* ======================================================================== */
/* Scanning                                                                  */
/* ======================================================================== */

#define RBUF_CAP (1u << 20)

/* A sequential reader over one segment, with a 1 MiB window. */
typedef struct reader {
  pm_log *log;
  pm_segfile *f;
  uint64_t limit;          /* read nothing at or beyond this offset */
  uint8_t *buf;
  uint64_t boff;           /* file offset of buf[0] */
  size_t blen;
} reader;

/* Make [off, off+n) readable at *p (n <= RBUF_CAP). 0 ok, 1 past the limit, -1 I/O error. */
static int rd_get(reader *r, uint64_t off, size_t n, const uint8_t **p) {
  if (off + n > r->limit) return 1;
  if (off < r->boff || off + n > r->boff + r->blen) {
    size_t want = RBUF_CAP;
    if (off + want > r->limit) want = (size_t)(r->limit - off);
    ssize_t got = pm_io_read_full(r->log->io, r->f->fd, r->buf, want, off);
    if (got < 0) return -1;
    r->boff = off;
    r->blen = (size_t)got;
    if ((size_t)got < n) return 1;
  }
  *p = r->buf + (off - r->boff);
  return 0;
}

enum { REC_OK = 0, REC_DAMAGE = 1, REC_IOERR = 2 };

/* Checksum the key and value of a record in windows (values may be ~1 GB). */
static int rd_checksum(reader *r, uint64_t off, const uint8_t *h, uint32_t klen, uint32_t vlen,
                       uint64_t *out) {
  uint64_t body = (uint64_t)klen + vlen;
  if (body <= RBUF_CAP - PM_REC_HEADER) {      /* the common case: one window, one call */
    const uint8_t *p;
    int g = rd_get(r, off, PM_REC_HEADER + (size_t)body, &p);
    if (g) return g < 0 ? REC_IOERR : REC_DAMAGE;
    *out = XXH3_64bits_withSeed(p + 8, PM_REC_HEADER - 8 + (size_t)body, seg_seed(r->log, r->f->num));
    return REC_OK;
  }
  XXH3_state_t st;
  XXH3_INITSTATE(&st);
  XXH3_64bits_reset_withSeed(&st, seg_seed(r->log, r->f->num));
  XXH3_64bits_update(&st, h + 8, PM_REC_HEADER - 8);
  uint64_t at = off + PM_REC_HEADER, left = (uint64_t)klen + vlen;
  while (left > 0) {
    size_t n = left > RBUF_CAP ? RBUF_CAP : (size_t)left;
    const uint8_t *p;
    int g = rd_get(r, at, n, &p);
    if (g) return g < 0 ? REC_IOERR : REC_DAMAGE;
    XXH3_64bits_update(&st, p, n);
    at += n;
    left -= n;
  }
  *out = XXH3_64bits_digest(&st);
  return REC_OK;
}

/* Parse and verify the record at off. On REC_OK, rec is filled, rec->key
** points into the window (valid until the next read) and commit/abort
** payloads are in payload[]. Lengths are checked against the limits and the
** file before anything is read or allocated. */
static int rd_record(reader *r, uint64_t off, pm_rec *rec, uint8_t payload[COMMIT_VLEN]) {
  const uint8_t *h;
  int g = rd_get(r, off, PM_REC_HEADER, &h);
  if (g) return g < 0 ? REC_IOERR : REC_DAMAGE;
  uint8_t hdr[PM_REC_HEADER];
  memcpy(hdr, h, PM_REC_HEADER);
  rec->type = hdr[8];
  rec->ktype = hdr[9];
  rec->vtype = hdr[10];
  rec->klen = pm_get_u32(hdr + 12);
  rec->vlen = pm_get_u32(hdr + 16);
  rec->seq = pm_get_u64(hdr + 24);
  rec->at = (pm_pos){ r->f->num, off };
  int is_data = rec->type == PM_REC_PUT || rec->type == PM_REC_DEL;
  if (rec->type < PM_REC_PUT || rec->type > PM_REC_ABORT || hdr[11] || pm_get_u32(hdr + 20)) return REC_DAMAGE;
  if (rec->klen > PM_MAX_KEY || rec->vlen > PM_MAX_VALUE) return REC_DAMAGE;
  if (is_data && (rec->ktype < PM_INTEGER || rec->ktype > PM_BLOB)) return REC_DAMAGE;
  if (rec->type == PM_REC_PUT && (rec->vtype < PM_INTEGER || rec->vtype > PM_NULL)) return REC_DAMAGE;
  if (!is_data && rec->klen) return REC_DAMAGE;
  if (rec->type == PM_REC_COMMIT && rec->vlen != COMMIT_VLEN) return REC_DAMAGE;
  if (off + pm_rec_size(rec->klen, rec->vlen) > r->limit) return REC_DAMAGE;
  uint64_t sum;
  g = rd_checksum(r, off, hdr, rec->klen, rec->vlen, &sum);
  if (g) return g;
  if (sum != pm_get_u64(hdr)) return REC_DAMAGE;
  if (rec->type == PM_REC_COMMIT) {
    const uint8_t *p;
    if (rd_get(r, off + PM_REC_HEADER, COMMIT_VLEN, &p)) return REC_IOERR;
    memcpy(payload, p, COMMIT_VLEN);
  }
  if (rec->klen) {
    const uint8_t *p;
    if (rd_get(r, off + PM_REC_HEADER, rec->klen, &p)) return REC_IOERR;
    rec->key = p;
  } else {
    rec->key = NULL;
  }
  return REC_OK;
}

/* Records since the last commit or abort, and the group they may become. */
typedef struct assembler {
  pm_grec *recs;
  size_t n, cap;
  uint8_t *keys;
  size_t klen, kcap;
  int held;                /* recs[skip..n) is a committed group awaiting a possible abort */
  size_t skip;
  pm_group g;
} assembler;

static int asm_push(assembler *a, const pm_rec *rec) {
  if (a->n == a->cap) {
    size_t cap = a->cap ? a->cap * 2 : 64;
    pm_grec *p = pm_realloc(a->recs, cap * sizeof *p);
    if (!p) return PM_NOMEM;
    a->recs = p;
    a->cap = cap;
  }
  if (a->klen + rec->klen > a->kcap) {
    size_t cap = a->kcap ? a->kcap : 4096;
    while (cap < a->klen + rec->klen) cap *= 2;
    uint8_t *p = pm_realloc(a->keys, cap);
    if (!p) return PM_NOMEM;
    a->keys = p;
    a->kcap = cap;
  }
  pm_grec *g = &a->recs[a->n++];
  g->type = rec->type;
  g->ktype = rec->ktype;
  g->vtype = rec->vtype;
  g->klen = rec->klen;
  g->vlen = rec->vlen;
  g->seq = rec->seq;
  g->at = rec->at;
  g->key_off = a->klen;
  if (rec->klen) memcpy(a->keys + a->klen, rec->key, rec->klen);
  a->klen += rec->klen;
  return PM_OK;
}

static void asm_reset(assembler *a) {
  a->n = a->klen = a->skip = 0;
  a->held = 0;
}

/* Scan state shared by the helpers below. */
typedef struct scanner {
  pm_log *log;
  int mode;
  pm_pos limit;
  pm_pos durable_hint;
  pm_apply_fn apply;
  void *ctx;
  pm_scan *out;
  pm_err *err;
  assembler a;
  uint8_t *buf;
  int in_output;          /* scanning a compaction's output: not the append chain */
  pm_segfile *cur;        /* the segment being scanned */
  int count;              /* keep the segments' record counts */
} scanner;

/* Apply the held group, if any, then forget the pending records. */
static int flush_held(scanner *s) {
  assembler *a = &s->a;
  int rc = PM_OK;
  if (a->held) {
    a->g.n = a->n - a->skip;
    a->g.recs = a->recs ? a->recs + a->skip : NULL;     /* an empty group may have none */
    a->g.keys = a->keys;
    rc = s->apply ? s->apply(s->ctx, &a->g, s->err) : PM_OK;
    s->out->groups++;
  }
  asm_reset(a);
  return rc;
}

static int corrupt_at(scanner *s, pm_pos at, const char *what) {
  char name[32];
  pm_seg_name(at.seg, name, sizeof name);
  return pm_err_set(s->err, PM_CORRUPT, "segment %s corrupt at offset %llu%s", name,
                    (unsigned long long)at.off, what);
}

/* A commit record closes the pending records into a group (held until the
** next record shows whether an abort cancels it). */
static int on_commit(scanner *s, const pm_rec *rec, const uint8_t *payload, uint64_t next_off) {
  assembler *a = &s->a;
  uint32_t nrec = pm_get_u32(payload);
  pm_pos start = { pm_get_u32(payload + 4), pm_get_u64(payload + 8) };
  if (nrec > a->n || (nrec > 0 && pm_pos_cmp(a->recs[a->n - nrec].at, start) != 0)) {
    if (s->mode != PM_SCAN_SALVAGE) return corrupt_at(s, rec->at, " (group does not match its commit)");
    /* Damage like any other: salvage must rewrite the log without it. */
    if (!s->out->damaged) { s->out->damaged = 1; s->out->damage = rec->at; }
    s->out->dropped_groups++;
    asm_reset(a);
    return PM_OK;
  }
  a->skip = a->n - nrec;
  a->held = 1;
  a->g.id = rec->seq;
  a->g.end = (pm_pos){ rec->at.seg, next_off };
  if (!s->in_output) s->out->end = a->g.end;
  return PM_OK;
}

/* Feed one valid record to the assembler. */
static int on_record(scanner *s, const pm_rec *rec, const uint8_t *payload, uint64_t next_off) {
  assembler *a = &s->a;
  s->out->records++;
  if (s->count) count_record(s->cur);
  if (rec->seq > s->out->max_seq) s->out->max_seq = rec->seq;
  if (rec->type == PM_REC_ABORT) {
    if (a->held && a->g.id == rec->seq && !s->in_output) s->out->end = (pm_pos){ rec->at.seg, next_off };
    if (a->held && a->g.id == rec->seq) { asm_reset(a); return PM_OK; }
    return flush_held(s);          /* an abort of nothing pending: harmless */
  }
  if (a->held) {
    int rc = flush_held(s);
    if (rc) return rc;
  }
  if (rec->type == PM_REC_COMMIT) return on_commit(s, rec, payload, next_off);
  return asm_push(a, rec) ? pm_err_set(s->err, PM_NOMEM, "out of memory during recovery") : PM_OK;
}

/* The durable claim of a valid commit record (a position). */
static pm_pos commit_claim(const uint8_t *payload) {
  return (pm_pos){ pm_get_u32(payload + 16), pm_get_u64(payload + 24) };
}

/* After damage at off in the last segment: is any later valid commit record
** claiming the log was durable beyond off? (Then the damage is corruption.) */
static int durable_beyond(reader *r, uint64_t off) {
  pm_rec rec;
  uint8_t payload[COMMIT_VLEN];
  for (uint64_t at = (off + 8) & ~(uint64_t)7; at + PM_REC_HEADER <= r->limit; at += 8) {
    if (rd_record(r, at, &rec, payload) != REC_OK) continue;
    if (rec.type != PM_REC_COMMIT) continue;
    pm_pos c = commit_claim(payload);
    if (c.seg == r->f->num && c.off > off) return 1;
  }
  return 0;
}

/* Next offset at or after off where a valid record starts, or r->limit. */
static uint64_t resync(reader *r, uint64_t off) {
  pm_rec rec;
  uint8_t payload[COMMIT_VLEN];
  for (uint64_t at = (off + 8) & ~(uint64_t)7; at + PM_REC_HEADER <= r->limit; at += 8)
    if (rd_record(r, at, &rec, payload) == REC_OK) return at;
  return r->limit;
}

int pm_log_report(char **report, const char *fmt, ...) {
  if (!report) return PM_OK;
  char line[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  char *n = *report ? pm_sprintf("%s\n%s", *report, line) : pm_strdup(line);
  if (!n) return PM_NOMEM;
  pm_free(*report);
  *report = n;
  return PM_OK;
}

/* Damage at off in f: decide by mode what it means. Returns PM_OK to go on
** at *next_off, PM_NOTFOUND to stop (torn tail), or PM_CORRUPT. */
static int on_damage(scanner *s, reader *r, uint64_t off, pm_pos claim, int is_last,
                     char **report, uint64_t *next_off) {
  pm_pos at = { r->f->num, off };
  if (!s->out->damaged) { s->out->damaged = 1; s->out->damage = at; }
  if (s->mode == PM_SCAN_SALVAGE) {
    *next_off = resync(r, off);
    s->out->dropped_bytes += *next_off - off;
    char name[32];
    pm_seg_name(r->f->num, name, sizeof name);
    if (pm_log_report(report, "segment %s: %llu damaged bytes at offset %llu", name,
                      (unsigned long long)(*next_off - off), (unsigned long long)off))
      return pm_err_set(s->err, PM_NOMEM, "out of memory");
    if (s->a.held) return flush_held(s);
    if (s->a.n) s->out->dropped_groups++;
    asm_reset(&s->a);
    return PM_OK;
  }
  if (s->mode == PM_SCAN_BOUNDED || !is_last) return corrupt_at(s, at, "");
  if (claim.seg == r->f->num && claim.off > off) return corrupt_at(s, at, "");
  if (durable_beyond(r, off)) return corrupt_at(s, at, "");
  return PM_NOTFOUND;
}

/* Scan segment f from off. *stop is set when a torn tail ends the log. */
static int scan_segment(scanner *s, pm_segfile *f, uint64_t off, int is_last, char **report,
                        int *stop) {
  uint64_t limit = s->limit.seg == f->num ? s->limit.off : seg_size(f);
  if (limit > seg_size(f) || s->mode == PM_SCAN_BOUNDED) {
    uint64_t size;                /* another process may have appended */
    if (s->log->io->file_size(f->fd, &size) == 0 && size != seg_size(f)) set_seg_size(f, size);
    if (s->limit.seg != f->num) limit = seg_size(f);
  }
  if (limit > seg_size(f)) limit = seg_size(f);
  reader r = { s->log, f, limit, s->buf, 0, 0 };
  pm_pos claim = s->durable_hint;
  while (off < limit) {
    pm_rec rec;
    uint8_t payload[COMMIT_VLEN];
    int k = rd_record(&r, off, &rec, payload);
    if (k == REC_IOERR) {
      char name[32];
      pm_seg_name(f->num, name, sizeof name);
      return pm_err_sys(s->err, errno ? errno : EIO, "cannot read %s at offset %llu", name,
                        (unsigned long long)off);
    }
    if (k == REC_OK) {
      uint64_t next = off + pm_rec_size(rec.klen, rec.vlen);
      if (rec.type == PM_REC_COMMIT && pm_pos_cmp(commit_claim(payload), claim) > 0)
        claim = commit_claim(payload);
      int rc = on_record(s, &rec, payload, next);
      if (rc) return rc;
      off = next;
      continue;
    }
    int rc = on_damage(s, &r, off, claim, is_last, report, &off);
    if (rc == PM_NOTFOUND) { *stop = 1; return PM_OK; }
    if (rc) return rc;
  }
  return PM_OK;
}

/* A copy of the first entry of the segment table numbered above `after`
** (or the very first with `first`), taken under segs_lock; 0 if none. Scans
** work on copies: the table may grow (realloc) or be reordered by a writer
** rolling over or a compaction while they read, in other threads. */
static int seg_next_copy(pm_log *log, uint32_t after, int first, pm_segfile *out) {
  int found = 0;
  memset(out, 0, sizeof *out);
  pthread_rwlock_rdlock(&log->segs_lock);
  for (uint32_t i = 0; i < log->nfiles && !found; i++) {
    const pm_segfile *f = &log->files[i];
    if (!first && f->num <= after) continue;
    out->num = f->num;
    out->fd = f->fd;
    out->retired = f->retired;
    out->hinted = f->hinted;
    out->output = f->output;
    out->size = seg_size(f);
    out->records = __atomic_load_n(&f->records, __ATOMIC_RELAXED);
    found = 1;
  }
  pthread_rwlock_unlock(&log->segs_lock);
  return found;
}

/* Write back what a scan learned about a segment (its copy `cur`, which
** was `was` when taken): a size that changed, records counted, whether its
** hint file is good. */
static void seg_write_back(pm_log *log, const pm_segfile *cur, const pm_segfile *was) {
  int hinted = cur->hinted != was->hinted;
  if (hinted) pthread_rwlock_wrlock(&log->segs_lock); else pthread_rwlock_rdlock(&log->segs_lock);
  pm_segfile *f = seg_find(log, cur->num);
  if (f && cur->size != was->size) {       /* unless a writer moved it meanwhile */
    uint64_t expected = was->size;
    __atomic_compare_exchange_n(&f->size, &expected, cur->size, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
  }
  if (f && cur->records != was->records)
    __atomic_fetch_add(&f->records, cur->records - was->records, __ATOMIC_RELAXED);
  if (f && hinted) f->hinted = cur->hinted;
  pthread_rwlock_unlock(&log->segs_lock);
}

/* A scan begins (under segs_lock, so that pm_log_drop_retired sees it) or ends. */
static void scan_enter(pm_log *log) {
  pthread_rwlock_rdlock(&log->segs_lock);
  __atomic_add_fetch(&log->scanning, 1, __ATOMIC_ACQ_REL);
  pthread_rwlock_unlock(&log->segs_lock);
}
static void scan_leave(pm_log *log) { __atomic_sub_fetch(&log->scanning, 1, __ATOMIC_ACQ_REL); }

/* The active segment's number, read under segs_lock (a roll-over changes it). */
static uint32_t active_num(pm_log *log) {
  pthread_rwlock_rdlock(&log->segs_lock);
  uint32_t n = log->man.active;
  pthread_rwlock_unlock(&log->segs_lock);
  return n;
}

static int log_scan(pm_log *log, pm_pos from, pm_pos limit, int mode, pm_pos hint,
                    pm_apply_fn apply, void *ctx, pm_scan *out, char **report, pm_err *err) {
  memset(out, 0, sizeof *out);
  out->end = from;
  int hints = (mode & PM_SCAN_HINTS) != 0, chain = (mode & PM_SCAN_CHAIN) != 0;
  int count = (mode & PM_SCAN_COUNT) != 0;
  mode &= ~(PM_SCAN_HINTS | PM_SCAN_CHAIN | PM_SCAN_COUNT);
  scanner s = { log, mode, limit, hint, apply, ctx, out, err, { 0 }, NULL, 0, NULL, count };
  s.buf = pm_malloc(RBUF_CAP);
  if (!s.buf) return pm_err_set(err, PM_NOMEM, "out of memory during recovery");
  int rc = PM_OK, stop = 0;
  scan_enter(log);
  pm_segfile cur = { 0 }, was;
  uint32_t active = active_num(log);
  for (int first = 1; !rc && seg_next_copy(log, cur.num, first, &cur); first = 0) {
    pm_segfile *f = &cur;
    was = cur;
    if (f->num < from.seg) continue;
    /* A torn tail ends the append chain, not the compaction outputs after it. */
    if (stop && !f->output) continue;
    /* Past the limit only compaction outputs remain to read (all of them). */
    if (limit.seg && f->num > limit.seg && (chain || !f->output)) continue;
    uint64_t off = f->num == from.seg ? from.off : PM_SEG_HEADER;
    if (f->retired || (chain && f->output && f->num > from.seg)) continue;
    s.in_output = f->output;
    s.cur = f;
    if (hints && f->num != active && off == PM_SEG_HEADER) {
      rc = flush_held(&s);
      if (!rc) rc = pm_hint_apply(log, f, apply, ctx, out, err);
      if (rc != PM_NOTFOUND) {
        f->hinted = rc == PM_OK;
        seg_write_back(log, f, &was);
        continue;
      }
      rc = PM_OK;
    }
    rc = scan_segment(&s, f, off, f->num == active, report, &stop);
    seg_write_back(log, f, &was);
  }
  if (!rc) rc = flush_held(&s);
  if (!rc && mode != PM_SCAN_SALVAGE) {
    pthread_rwlock_rdlock(&log->segs_lock);
    pm_segfile *act = active_file(log);
    uint64_t kept = out->end.seg == act->num ? out->end.off : PM_SEG_HEADER;
    if (!limit.seg && seg_size(act) > kept) out->dropped_bytes += seg_size(act) - kept;
    pthread_rwlock_unlock(&log->segs_lock);
  }
  scan_leave(log);
  pm_free(s.a.recs);
  pm_free(s.a.keys);
  pm_free(s.buf);
  return rc;
}

int pm_log_scan(pm_log *log, pm_pos from, pm_pos limit, int mode, pm_pos durable_hint,
                pm_apply_fn apply, void *ctx, pm_scan *out, pm_err *err) {
  return log_scan(log, from, limit, mode, durable_hint, apply, ctx, out, NULL, err);
}

int pm_log_check(pm_log *log, pm_pos limit, char **report, pm_err *err) {
  pm_scan out;
  pm_segfile f;
  if (!seg_next_copy(log, 0, 1, &f)) return PM_OK;
  scan_enter(log);
  pm_pos from = { f.num, PM_SEG_HEADER };
  int rc = log_scan(log, from, limit, PM_SCAN_SALVAGE, (pm_pos){ 0, 0 }, NULL, NULL, &out, report, err);
  for (int first = 1; !rc; first = 0) {
    uint32_t active = active_num(log);       /* first: a sealed segment's size is final */
    if (!seg_next_copy(log, f.num, first, &f)) break;
    if (f.retired || f.num == active) continue;
    char *problems = NULL;
    rc = pm_hint_check(log, &f, &problems, err);
    /* A segment a compaction retired meanwhile is no longer read: not a problem. */
    pthread_rwlock_rdlock(&log->segs_lock);
    pm_segfile *now = seg_find(log, f.num);
    int gone = !now || now->retired;
    pthread_rwlock_unlock(&log->segs_lock);
    if (problems && !gone && pm_log_report(report, "%s", problems))
      rc = pm_err_set(err, PM_NOMEM, "out of memory");
    pm_free(problems);
  }
  scan_leave(log);
  return rc;
}

/* ======================================================================== */
/* Segments written beside the log (compaction)                              */
/* ======================================================================== */

/* Write the buffer; every 32 MiB also fsync, so that a compaction never
** piles up enough dirty pages for the kernel to stall the writer's appends. */
static int segw_flush(pm_segwriter *w) {
  if (w->len && pm_io_write_all(w->log->io, w->fd, w->buf, w->len, w->off - w->len) < 0) return -1;
  w->len = 0;
  if (w->off - w->synced >= (32u << 20)) {
    if (w->log->io->fsync(w->fd) < 0) return -1;
    w->synced = w->off;
  }
  return 0;
}

int pm_segw_open(pm_log *log, pm_segwriter *w, pm_err *err) {
  memset(w, 0, sizeof *w);
  w->log = log;
  w->num = pm_log_alloc_segment(log);
  w->off = PM_SEG_HEADER;
  w->buf = pm_malloc(WBUF_CAP);
  if (!w->buf) return pm_err_set(err, PM_NOMEM, "out of memory");
  w->cap = WBUF_CAP;
  int rc = seg_create(log->io, log->dir, &log->man, w->num, 1, &w->fd, err);
  if (rc) { pm_free(w->buf); w->buf = NULL; w->fd = -1; }
  return rc;
}

static int segw_error(pm_segwriter *w, pm_err *err) {
  char name[32];
  pm_seg_name(w->num, name, sizeof name);
  return pm_err_sys(err, errno, "cannot write %s", name);
}

int pm_segw_add(pm_segwriter *w, const pm_key *k, uint8_t vtype, const void *v, uint32_t vlen,
                uint64_t seq, pm_pos *at, pm_err *err) {
  uint64_t size = pm_rec_size(k->len, vlen), seed = seg_seed(w->log, w->num);
  *at = (pm_pos){ w->num, w->off };
  if (w->nrec == 0) w->start = *at;
  if (size > w->cap / 2) {
    if (segw_flush(w) < 0 || write_pieces(w->log->io, w->fd, w->off, seed, PM_REC_PUT, k, vtype, v, vlen, seq) < 0)
      return segw_error(w, err);
  } else {
    if (w->len + size > w->cap && segw_flush(w) < 0) return segw_error(w, err);
    rec_encode(w->buf + w->len, seed, PM_REC_PUT, k, vtype, v, vlen, seq);
    w->len += size;
  }
  w->off += size;
  w->nrec++;
  if (seq > w->max_seq) w->max_seq = seq;
  return PM_OK;
}

int pm_segw_finish(pm_segwriter *w, pm_err *err) {
  static const pm_key nokey = { 0, 0, NULL };
  uint8_t v[COMMIT_VLEN];
  commit_payload(v, w->nrec, w->nrec ? w->start : (pm_pos){ w->num, PM_SEG_HEADER }, (pm_pos){ 0, 0 });
  uint64_t size = pm_rec_size(0, COMMIT_VLEN);
  int rc = PM_OK;
  if (w->len + size > w->cap && segw_flush(w) < 0) rc = segw_error(w, err);
  if (!rc) {
    rec_encode(w->buf + w->len, seg_seed(w->log, w->num), PM_REC_COMMIT, &nokey, 0, v, COMMIT_VLEN, w->max_seq);
    w->len += size;
    w->off += size;
    if (segw_flush(w) < 0 || w->log->io->fsync(w->fd) < 0) rc = segw_error(w, err);
  }
  w->log->io->close(w->fd);       /* finished or failed, the writer is done */
  w->fd = -1;
  pm_free(w->buf);
  w->buf = NULL;
  return rc;
}

void pm_segw_discard(pm_log *log, uint32_t num, pm_segwriter *w) {
  if (w && w->fd >= 0) log->io->close(w->fd);
  if (w) { pm_free(w->buf); w->buf = NULL; w->fd = -1; }
  char name[32];
  pm_seg_name(num, name, sizeof name);
  char *path = pm_sprintf("%s/%s", log->dir, name);
  if (path) log->io->unlink(path);
  pm_free(path);
  pm_hint_name(num, name, sizeof name);
  path = pm_sprintf("%s/%s", log->dir, name);
  if (path) log->io->unlink(path);
  pm_free(path);
}

int pm_log_adopt(pm_log *log, uint32_t num, int hinted, uint64_t records, pm_err *err) {
  pm_segfile f;
  int rc = seg_open(log, num, &f, err);
  if (rc) return rc;
  f.hinted = hinted;
  f.records = records;
  if (seg_table_add(log, f)) { log->io->close(f.fd); return pm_err_set(err, PM_NOMEM, "out of memory"); }
  return PM_OK;
}

void pm_log_retire(pm_log *log, uint32_t num) {
  pthread_rwlock_wrlock(&log->segs_lock);
  pm_segfile *f = seg_find(log, num);
  if (f) f->retired = 1;
  pthread_rwlock_unlock(&log->segs_lock);
}

/* The entries stay where they are (closed, fd -1), so that the writer's
** pointer to the active segment's entry, taken without segs_lock, stays
** valid; seg_table_add drops them later, under the writer lock. */
int pm_log_drop_retired(pm_log *log) {
  pthread_rwlock_wrlock(&log->segs_lock);
  if (__atomic_load_n(&log->scanning, __ATOMIC_ACQUIRE) > 0) {
    pthread_rwlock_unlock(&log->segs_lock);
    return 0;
  }
  for (uint32_t i = 0; i < log->nfiles; i++) {
    if (!log->files[i].retired || log->files[i].fd < 0) continue;
    log->io->close(log->files[i].fd);
    log->files[i].fd = -1;
  }
  pthread_rwlock_unlock(&log->segs_lock);
  return 1;
}

void pm_log_set_manifest(pm_log *log, pm_manifest *m) {
  pthread_mutex_lock(&log->num_mu);
  if (m->next_segment < log->man.next_segment) m->next_segment = log->man.next_segment;
  man_install(log, m);
  pthread_mutex_unlock(&log->num_mu);
}

int pm_log_manifest_copy(pm_log *log, pm_manifest *out) {
  pthread_mutex_lock(&log->num_mu);
  int rc = pm_manifest_copy(out, &log->man);
  pthread_mutex_unlock(&log->num_mu);
  return rc;
}
