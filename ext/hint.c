/*
** hint.c - hint files: what a sealed segment holds, without the values.
**
** When a segment is sealed, the writer (holding the writer lock) writes
** NNNNNN.hint next to it: the key, sequence number, value type and length,
** and offset of every record the segment's committed groups contain, in
** log order. Opening a store reads hints for sealed segments instead of
** reading the segments themselves, and replays only the active segment.
**
** A hint is trusted only when its checksum holds and it names this store,
** this segment and the segment's exact length; otherwise (missing, stale,
** corrupt) the segment is scanned as if there were no hint.
**
** Layout (little-endian): a 64-byte header - magic "PMAPHNT1", format
** version (4), header size (4), store id (16), segment number (4), zero (4),
** segment length described (8), entry count (8), highest seq in the segment
** (8) - then per entry a 32-byte head - record type, key type, value type,
** zero (1 each), key length (4), value length (4), zero (4), record offset
** (8), seq (8) - and the key, padded to 8 bytes; last, an XXH3-64 checksum of
** everything before it.
*/
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <xxhash.h>

static const char HINT_MAGIC[8] = { 'P', 'M', 'A', 'P', 'H', 'N', 'T', '1' };
#define HINT_HEADER 64u
#define HINT_ENTRY 32u
#define HINT_MAX (1ull << 34)     /* refuse absurd files before allocating */

void pm_hint_name(uint32_t seg, char *buf, size_t cap) { snprintf(buf, cap, "%06u.hint", seg); }

static uint64_t pad8(uint64_t n) { return (n + 7u) & ~(uint64_t)7u; }

/* ---- Writing ------------------------------------------------------------- */

typedef struct hint_buf {
  uint8_t *p;
  size_t n, cap;
  uint64_t count;
  int oom;
} hint_buf;

static uint8_t *hb_grow(hint_buf *b, size_t n) {
  if (b->oom) return NULL;
  if (b->n + n > b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 65536;
    while (cap < b->n + n) cap *= 2;
    uint8_t *p = pm_realloc(b->p, cap);
    if (!p) { b->oom = 1; return NULL; }
    b->p = p;
    b->cap = cap;
  }
  uint8_t *at = b->p + b->n;
  memset(at, 0, n);
  b->n += n;
  return at;
}

/* Scan callback: append each record of a committed group as an entry. */
static int collect_group(void *ctx, const pm_group *g, pm_err *err) {
  hint_buf *b = ctx;
  for (size_t i = 0; i < g->n; i++) {
    const pm_grec *r = &g->recs[i];
    uint8_t *e = hb_grow(b, HINT_ENTRY + pad8(r->klen));
    if (!e) return pm_err_set(err, PM_NOMEM, "out of memory writing a hint file");
    e[0] = r->type;
    e[1] = r->ktype;
    e[2] = r->vtype;
    pm_put_u32(e + 4, r->klen);
    pm_put_u32(e + 8, r->vlen);
    pm_put_u64(e + 16, r->at.off);
    pm_put_u64(e + 24, r->seq);
    memcpy(e + HINT_ENTRY, g->keys + r->key_off, r->klen);
    b->count++;
  }
  return PM_OK;
}

static void hint_header(uint8_t *h, const pm_log *log, uint32_t seg, uint64_t seg_size,
                        uint64_t count, uint64_t max_seq) {
  memset(h, 0, HINT_HEADER);
  memcpy(h, HINT_MAGIC, 8);
  pm_put_u32(h + 8, PM_FORMAT_VERSION);
  pm_put_u32(h + 12, HINT_HEADER);
  memcpy(h + 16, log->man.store_id, 16);
  pm_put_u32(h + 32, seg);
  pm_put_u64(h + 40, seg_size);
  pm_put_u64(h + 48, count);
  pm_put_u64(h + 56, max_seq);
}

/* Write b (header already in place) to dir/NNNNNN.hint atomically. */
static int hint_store(pm_log *log, uint32_t seg, hint_buf *b, pm_err *err) {
  uint8_t *sum = hb_grow(b, 8);
  if (!sum) return pm_err_set(err, PM_NOMEM, "out of memory writing a hint file");
  pm_put_u64(sum, XXH3_64bits(b->p, b->n - 8));
  char name[32], *tmp = NULL, *path = NULL;
  pm_hint_name(seg, name, sizeof name);
  tmp = pm_sprintf("%s/%s.tmp", log->dir, name);
  path = pm_sprintf("%s/%s", log->dir, name);
  int rc = PM_OK;
  if (!tmp || !path) { rc = pm_err_set(err, PM_NOMEM, "out of memory"); goto done; }
  int fd = log->io->open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) { rc = pm_err_sys(err, errno, "cannot create %s", tmp); goto done; }
  if (pm_io_write_all(log->io, fd, b->p, b->n, 0) < 0) rc = pm_err_sys(err, errno, "cannot write %s", tmp);
  else if (log->io->fsync(fd) < 0) rc = pm_err_sys(err, errno, "cannot fsync %s", tmp);
  log->io->close(fd);
  if (!rc && log->io->rename(tmp, path) < 0) rc = pm_err_sys(err, errno, "cannot rename %s", tmp);
  if (!rc && log->io->fsync_dir(log->dir) < 0) rc = pm_err_sys(err, errno, "cannot fsync %s", log->dir);
  if (rc) log->io->unlink(tmp);
done:
  pm_free(tmp);
  pm_free(path);
  return rc;
}

int pm_hint_write(pm_log *log, uint32_t seg, pm_err *err) {
  pthread_rwlock_rdlock(&log->segs_lock);
  uint64_t size = 0;
  for (uint32_t i = 0; i < log->nfiles; i++) if (log->files[i].num == seg) size = log->files[i].size;
  pthread_rwlock_unlock(&log->segs_lock);
  hint_buf b = { 0 };
  if (!hb_grow(&b, HINT_HEADER)) return pm_err_set(err, PM_NOMEM, "out of memory writing a hint file");
  pm_scan scan;
  int rc = pm_log_scan(log, (pm_pos){ seg, PM_SEG_HEADER }, (pm_pos){ seg, size }, PM_SCAN_BOUNDED | PM_SCAN_CHAIN,
                       (pm_pos){ 0, 0 }, collect_group, &b, &scan, err);
  if (!rc && b.oom) rc = pm_err_set(err, PM_NOMEM, "out of memory writing a hint file");
  if (!rc) {
    hint_header(b.p, log, seg, size, b.count, scan.max_seq);
    rc = hint_store(log, seg, &b, err);
  }
  pm_free(b.p);
  return rc;
}

int pm_hint_write_group(pm_log *log, uint32_t seg, uint64_t seg_size, const pm_group *g, pm_err *err) {
  hint_buf b = { 0 };
  int rc = hb_grow(&b, HINT_HEADER) ? collect_group(&b, g, err) : pm_err_set(err, PM_NOMEM, "out of memory");
  if (!rc) {
    hint_header(b.p, log, seg, seg_size, b.count, g->id);
    rc = hint_store(log, seg, &b, err);
  }
  pm_free(b.p);
  return rc;
}

/* ---- Reading ------------------------------------------------------------- */

/* Open segment seg's hint file for reading: a descriptor, or -1. */
static int hint_open(pm_log *log, uint32_t seg) {
  char name[32], path[PATH_MAX];   /* no allocation: a failed one would read as "no hint" */
  pm_hint_name(seg, name, sizeof name);
  if ((size_t)snprintf(path, sizeof path, "%s/%s", log->dir, name) >= sizeof path) return -1;
  return log->io->open(path, O_RDONLY, 0);
}

/* Read and validate the hint of segment f. On PM_OK, *buf and *n hold the whole
** file; PM_NOTFOUND when there is no usable hint. */
static int hint_load(pm_log *log, const pm_segfile *f, uint8_t **buf, size_t *n, pm_err *err) {
  char name[32];
  pm_hint_name(f->num, name, sizeof name);
  int fd = hint_open(log, f->num);
  if (fd < 0) return PM_NOTFOUND;
  uint64_t size = 0;
  uint8_t *p = NULL;
  int rc = PM_NOTFOUND;
  if (log->io->file_size(fd, &size) == 0 && size >= HINT_HEADER + 8 && size < HINT_MAX) {
    p = pm_malloc((size_t)size);
    if (!p) rc = pm_err_set(err, PM_NOMEM, "out of memory reading %s", name);
    else if (pm_io_read_full(log->io, fd, p, (size_t)size, 0) == (ssize_t)size &&
             memcmp(p, HINT_MAGIC, 8) == 0 && pm_get_u32(p + 8) == PM_FORMAT_VERSION &&
             memcmp(p + 16, log->man.store_id, 16) == 0 && pm_get_u32(p + 32) == f->num &&
             pm_get_u64(p + 40) == f->size &&
             XXH3_64bits(p, (size_t)size - 8) == pm_get_u64(p + size - 8))
      rc = PM_OK;
  }
  log->io->close(fd);
  if (rc) { pm_free(p); return rc; }
  *buf = p;
  *n = (size_t)size;
  return PM_OK;
}

/* Decode the entries of a validated hint into g (keys point into buf).
** -1 when an entry does not fit (a hint that lies is not used). */
static int hint_decode(const uint8_t *buf, size_t n, uint32_t seg, uint64_t seg_size, pm_group *g) {
  uint64_t count = pm_get_u64(buf + 48);
  if (count > n / HINT_ENTRY) return -1;
  g->recs = pm_malloc(sizeof(pm_grec) * (count ? count : 1));
  if (!g->recs) return -2;
  size_t at = HINT_HEADER, end = n - 8;
  for (uint64_t i = 0; i < count; i++) {
    if (at + HINT_ENTRY > end) return -1;
    const uint8_t *e = buf + at;
    pm_grec *r = &g->recs[i];
    r->type = e[0];
    r->ktype = e[1];
    r->vtype = e[2];
    r->klen = pm_get_u32(e + 4);
    r->vlen = pm_get_u32(e + 8);
    r->at = (pm_pos){ seg, pm_get_u64(e + 16) };
    r->seq = pm_get_u64(e + 24);
    r->key_off = at + HINT_ENTRY;
    if (r->klen > PM_MAX_KEY || r->vlen > PM_MAX_VALUE || (r->type != PM_REC_PUT && r->type != PM_REC_DEL) ||
        r->ktype < PM_INTEGER || r->ktype > PM_BLOB) return -1;
    /* The record must lie inside the segment: a length that lies never
    ** reaches an allocation or a read. */
    if (r->at.off < PM_SEG_HEADER || r->at.off > seg_size ||
        pm_rec_size(r->klen, r->vlen) > seg_size - r->at.off) return -1;
    at += HINT_ENTRY + pad8(r->klen);
    if (at > end) return -1;
  }
  g->n = (size_t)count;
  g->keys = (uint8_t *)buf;
  g->id = pm_get_u64(buf + 56);
  return 0;
}

int pm_hint_apply(pm_log *log, pm_segfile *f, pm_apply_fn apply, void *ctx, pm_scan *out,
                  pm_err *err) {
  uint8_t *buf;
  size_t n;
  int rc = hint_load(log, f, &buf, &n, err);
  if (rc) return rc;
  pm_group g;
  memset(&g, 0, sizeof g);
  int d = hint_decode(buf, n, f->num, f->size, &g);
  if (d == -2) rc = pm_err_set(err, PM_NOMEM, "out of memory reading a hint file");
  else if (d < 0) rc = PM_NOTFOUND;
  else {
    g.end = (pm_pos){ f->num, f->size };
    rc = apply(ctx, &g, err);
    out->records += g.n;
    f->records = g.n + 1;                     /* and a commit record, at least */
    out->groups++;
    if (g.id > out->max_seq) out->max_seq = g.id;
  }
  pm_free(g.recs);
  pm_free(buf);
  return rc;
}

/* ---- Checking ------------------------------------------------------------ */

/* Compare the hint of f, if any, with what the segment holds. */
int pm_hint_check(pm_log *log, const pm_segfile *f, char **report, pm_err *err) {
  char name[32];
  pm_hint_name(f->num, name, sizeof name);
  int fd = hint_open(log, f->num);
  if (fd < 0) return PM_OK;                 /* no hint: nothing to check */
  log->io->close(fd);
  uint8_t *buf = NULL;
  size_t n = 0;
  int rc = hint_load(log, f, &buf, &n, err);
  if (rc == PM_NOTFOUND) {
    if (pm_log_report(report, "hint %s is corrupt or stale (the segment is read instead)", name))
      return pm_err_set(err, PM_NOMEM, "out of memory");
    return PM_OK;
  }
  if (rc) return rc;
  hint_buf b = { 0 };
  pm_scan scan;
  hb_grow(&b, HINT_HEADER);
  rc = pm_log_scan(log, (pm_pos){ f->num, PM_SEG_HEADER }, (pm_pos){ f->num, f->size }, PM_SCAN_BOUNDED | PM_SCAN_CHAIN,
                   (pm_pos){ 0, 0 }, collect_group, &b, &scan, err);
  if (!rc && b.oom) rc = pm_err_set(err, PM_NOMEM, "out of memory");
  if (!rc && (b.n != n - 8 || memcmp(b.p + HINT_HEADER, buf + HINT_HEADER, b.n - HINT_HEADER) != 0) &&
      pm_log_report(report, "hint %s does not match its segment", name))
    rc = pm_err_set(err, PM_NOMEM, "out of memory");
  pm_free(b.p);
  pm_free(buf);
  return rc;
}

/* ---- Sizing -------------------------------------------------------------- */

void pm_hint_estimate(pm_log *log, uint64_t *records, uint64_t *key_bytes) {
  *records = *key_bytes = 0;
  pthread_rwlock_rdlock(&log->segs_lock);
  for (uint32_t i = 0; i < log->nfiles; i++) {
    const pm_segfile *f = &log->files[i];
    if (f->retired) continue;
    int fd = hint_open(log, f->num);
    uint8_t h[HINT_HEADER];
    uint64_t size = 0;
    int ok = fd >= 0 && pm_io_read_full(log->io, fd, h, HINT_HEADER, 0) == HINT_HEADER &&
             log->io->file_size(fd, &size) == 0 && size >= HINT_HEADER + 8 && memcmp(h, HINT_MAGIC, 8) == 0 &&
             pm_get_u32(h + 32) == f->num && pm_get_u64(h + 40) == f->size;
    if (fd >= 0) log->io->close(fd);
    uint64_t count = ok ? pm_get_u64(h + 48) : 0;
    if (ok && count <= (size - HINT_HEADER - 8) / HINT_ENTRY) {
      *records += count;
      *key_bytes += size - HINT_HEADER - 8 - count * HINT_ENTRY;
    } else {                                  /* a guess: 128-byte records */
      *records += f->size / 128;
      *key_bytes += f->size / 8;
    }
  }
  pthread_rwlock_unlock(&log->segs_lock);
}
