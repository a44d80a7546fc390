/*
** fuzz_recovery.c - libFuzzer target: arbitrary bytes as the files of a
** store, then open, recovery and a few operations.
**
** At start-up a valid store is written (several sealed segments with their
** hint files, an active segment, puts, deletes, overwrites, an aborted
** group). Each input is then applied to a fresh copy of it:
**
**   byte 0       flags: 1 fix record checksums, 2 fix segment headers,
**                4 fix hint headers and checksums, 8 fix the manifest's
**                length and checksum, 16 compact, 32 a second reopen,
**                64 a read-only open first
**   then parts   [file][op][len:2][bytes...]: file picks one of the
**                store's files (MANIFEST, each NNNNNN.log and .hint), op:
**                0 replace it with the bytes, 1 write the bytes at offset
**                u16 (first two bytes), 2 truncate it to u16, 3 delete it,
**                4 append the bytes
**
** The fix-ups recompute checksums over whatever lengths the bytes claim,
** so the fuzzer gets past them to the code that trusts lengths, types,
** offsets and counts. Then: open; when it refuses with PM_CORRUPT,
** persistmap_recover and open again (which must then succeed, with a clean
** check); reads, an iteration both ways with every value, a check, a
** write transaction, optionally a compaction, close, and a reopen that
** must succeed and hold the same rows when every step before succeeded.
** Run with -malloc_limit_mb: a length field that lies must never become an
** allocation.
*/
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "store.h"
#include "log.h"

#define MAX_FILES 16

typedef struct tfile {
  char name[32];
  uint8_t *data;
  size_t len;
} tfile;

static char *root;                 /* TMPDIR/pmfuzz.XXXXXX */
static char *work;                 /* root/store: the store each input gets */
static tfile tmpl[MAX_FILES];      /* the template store's files */
static int ntmpl;
static pm_io fast_io;              /* the real file system without fsyncs */

static int verbose;                /* PM_FUZZ_VERBOSE: say what each step returned */
#define SAY(...) do { if (verbose) fprintf(stderr, __VA_ARGS__); } while (0)

static void die(const char *what) {
  fprintf(stderr, "fuzz_recovery: %s\n", what);
  abort();
}

static int no_fsync(int fd) { (void)fd; return 0; }
static int no_fsync_dir(const char *d) { (void)d; return 0; }

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb; (void)flag; (void)ftw;
  return remove(p);
}

static void rmtree(const char *dir) { nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS); }

static void options(pm_options *o) {
  pm_options_init(o);
  o->io = &fast_io;
  o->sync = PM_SYNC_OFF;
  o->cache_size = 64 << 10;
  o->busy_timeout_ms = 0;
  o->segment_size = 64 << 10;      /* the smallest the engine takes */
  o->auto_shrink = 0;
  o->creator = "fuzz";
}

/* ---- The template store -------------------------------------------------- */

static pm_key text_key(const char *s) { return (pm_key){ PM_TEXT, (uint32_t)strlen(s), (const uint8_t *)s }; }

static void build_template(void) {
  pm_options o;
  options(&o);
  o.create = 1;
  pm_store *s;
  pm_err err;
  if (pm_store_open(work, &o, &s, &err)) die(err.msg);
  static uint8_t val[3000];
  for (size_t i = 0; i < sizeof val; i++) val[i] = (uint8_t)(i * 7 + 1);
  for (int t = 0; t < 72; t++) {
    pm_txn *x;
    if (pm_txn_begin(s, &x, &err)) die(err.msg);
    for (int i = 0; i < 3; i++) {
      char k[32];
      snprintf(k, sizeof k, "k%02d", (t * 3 + i) % 40);
      pm_key key = text_key(k);
      uint8_t vt = (uint8_t)(1 + (t + i) % 5);
      uint32_t vlen = vt == PM_INTEGER || vt == PM_REAL ? 8 : vt == PM_NULL ? 0 : (uint32_t)((t * 371 + i * 1013) % 3000);
      if (pm_txn_put(x, &key, vt, val, vlen, PM_PUT_REPLACE, NULL, &err)) die(err.msg);
    }
    uint8_t ib[8];
    pm_key ik = pm_key_int(t, ib);
    if (pm_txn_put(x, &ik, PM_BLOB, val, 16, PM_PUT_REPLACE, NULL, &err)) die(err.msg);
    if (t % 5 == 4) {
      pm_key dk = text_key("k01");
      int rc = pm_txn_delete(x, &dk, &err);
      if (rc && rc != PM_NOTFOUND) die(err.msg);
    }
    if (t == 70) {                        /* a group written, then aborted */
      if (pm_txn_prepare(x, &err)) die(err.msg);
      pm_txn_abort(x);
      continue;
    }
    if (pm_txn_commit(x, &err)) die(err.msg);
  }
  if (pm_store_close(s, &err)) die(err.msg);

  DIR *d = opendir(work);
  if (!d) die("opendir");
  struct dirent *de;
  while ((de = readdir(d))) {
    if (de->d_name[0] == '.' || strcmp(de->d_name, "shm") == 0) continue;
    if (ntmpl == MAX_FILES) die("too many files in the template");
    tfile *f = &tmpl[ntmpl++];
    snprintf(f->name, sizeof f->name, "%s", de->d_name);
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", work, de->d_name);
    FILE *fp = fopen(path, "rb");
    if (!fp) die("fopen");
    fseek(fp, 0, SEEK_END);
    f->len = (size_t)ftell(fp);
    rewind(fp);
    f->data = malloc(f->len ? f->len : 1);
    if (fread(f->data, 1, f->len, fp) != f->len) die("fread");
    fclose(fp);
  }
  closedir(d);
  /* A fixed order: MANIFEST first, then by name. */
  for (int i = 0; i < ntmpl; i++)
    for (int j = i + 1; j < ntmpl; j++) {
      int ai = strcmp(tmpl[i].name, "MANIFEST") == 0, aj = strcmp(tmpl[j].name, "MANIFEST") == 0;
      if (aj > ai || (ai == aj && strcmp(tmpl[j].name, tmpl[i].name) < 0)) {
        tfile t = tmpl[i]; tmpl[i] = tmpl[j]; tmpl[j] = t;
      }
    }
  rmtree(work);
  if (getenv("PM_FUZZ_LIST"))             /* the file numbers inputs use */
    for (int i = 0; i < ntmpl; i++) fprintf(stderr, "file %d: %s, %zu bytes\n", i, tmpl[i].name, tmpl[i].len);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc; (void)argv;
  verbose = getenv("PM_FUZZ_VERBOSE") != NULL;
  fast_io = pm_io_posix;
  fast_io.fsync = no_fsync;
  fast_io.fsync_dir = no_fsync_dir;
  const char *base = getenv("TMPDIR");
  char tmpl_dir[4096];
  snprintf(tmpl_dir, sizeof tmpl_dir, "%s/pmfuzz.XXXXXX", base && *base ? base : "/tmp");
  root = strdup(mkdtemp(tmpl_dir) ? tmpl_dir : "");
  if (!*root) die("mkdtemp");
  work = malloc(strlen(root) + 8);
  sprintf(work, "%s/store", root);
  build_template();
  return 0;
}

static void cleanup(void) { if (root) rmtree(root); }
__attribute__((constructor)) static void register_cleanup(void) { atexit(cleanup); }

/* ---- Applying an input ---------------------------------------------------- */

typedef struct wfile {
  uint8_t *data;
  size_t len;
  int gone;
} wfile;

static void wf_reserve(wfile *f, size_t len) {
  if (len <= f->len) return;
  f->data = realloc(f->data, len);
  memset(f->data + f->len, 0, len - f->len);
  f->len = len;
}

static uint64_t pad8(uint64_t n) { return (n + 7) & ~(uint64_t)7; }

static int seg_number(const char *name, const char *ext) {
  size_t digits = strspn(name, "0123456789");
  return digits && strcmp(name + digits, ext) == 0 ? atoi(name) : -1;
}

static void fix_segment(wfile *f, uint32_t num, const uint8_t *man, size_t mlen, int flags) {
  if (mlen < 40 || f->len < PM_SEG_HEADER) return;
  uint64_t seed = pm_get_u64(man + 32) ^ ((uint64_t)num * 0x9E3779B97F4A7C15ull);
  if (flags & 2) {
    memcpy(f->data, "PMAPSEG1", 8);
    pm_put_u32(f->data + 8, PM_FORMAT_VERSION);
    pm_put_u32(f->data + 12, PM_SEG_HEADER);
    memcpy(f->data + 16, man + 16, 16);
    pm_put_u32(f->data + 32, num);
    pm_put_u64(f->data + 56, XXH3_64bits(f->data, 56));
  }
  if (flags & 1) {
    uint64_t off = PM_SEG_HEADER;
    while (off + PM_REC_HEADER <= f->len) {
      uint8_t *h = f->data + off;
      uint64_t body = (uint64_t)pm_get_u32(h + 12) + pm_get_u32(h + 16);
      if (off + PM_REC_HEADER + body > f->len) break;
      pm_put_u64(h, XXH3_64bits_withSeed(h + 8, PM_REC_HEADER - 8 + (size_t)body, seed));
      off += pad8(PM_REC_HEADER + body);
    }
  }
}

static void fix_hint(wfile *f, uint32_t num, const wfile *seg, const uint8_t *man, size_t mlen) {
  if (mlen < 32 || f->len < 64) return;
  memcpy(f->data, "PMAPHNT1", 8);
  pm_put_u32(f->data + 8, PM_FORMAT_VERSION);
  pm_put_u32(f->data + 12, 64);
  memcpy(f->data + 16, man + 16, 16);
  pm_put_u32(f->data + 32, num);
  pm_put_u64(f->data + 40, seg && !seg->gone ? seg->len : 0);
  if (f->len >= 72) pm_put_u64(f->data + f->len - 8, XXH3_64bits(f->data, f->len - 8));
}

static int write_file(const char *name, const wfile *f) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", work, name);
  if (f->gone) return 0;
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return -1;
  size_t done = 0;
  while (done < f->len) {
    ssize_t n = write(fd, f->data + done, f->len - done);
    if (n <= 0) { close(fd); return -1; }
    done += (size_t)n;
  }
  close(fd);
  return 0;
}

/* ---- Operations ----------------------------------------------------------- */

typedef struct rowset {
  uint64_t n, hash;               /* rows, and a hash of every key, value and seq */
} rowset;

static void mix(uint64_t *h, const void *p, size_t n) { *h = XXH3_64bits_withSeed(p, n, *h); }

/* Read every row with its value, in both orders. Returns 0 when every step
** succeeded. */
static int read_all(pm_store *s, rowset *out) {
  pm_err err;
  pm_snap snap;
  if (pm_store_snap_begin(s, &snap, &err)) return -1;
  int bad = 0;
  rowset sets[2] = { { 0, 0 }, { 0, 0 } };
  for (int desc = 0; desc < 2; desc++) {
    pm_iter_spec spec = { desc, 0, UINT64_MAX, NULL, NULL };
    pm_iter *it;
    if (pm_iter_open(s, NULL, &snap, &spec, &it, &err)) { bad = 1; break; }
    int rc;
    while ((rc = pm_iter_next(it, &err)) == PM_OK) {
      const pm_key *k = pm_iter_key(it);
      pm_meta m;
      pm_iter_meta(it, &m);
      pm_value *v = NULL;
      if (pm_iter_value(it, &v, &err)) { bad = 1; continue; }
      if (v->len != m.vlen || v->type != m.vtype) {
        fprintf(stderr, "key type %u len %u seq %llu: metadata says type %u, %u bytes; value is type %u, %u bytes\n",
                k->type, k->len, (unsigned long long)m.seq, m.vtype, m.vlen, v->type, v->len);
        die("a value differs from its metadata");
      }
      uint64_t h = m.seq;
      mix(&h, &k->type, 1);
      mix(&h, k->data, k->len);
      mix(&h, &v->type, 1);
      mix(&h, v->data, v->len);
      sets[desc].hash += h;       /* order-independent */
      sets[desc].n++;
      pm_value *v2 = NULL;
      int g = pm_store_get(s, &snap, k, &v2, NULL, &err);
      if (g == PM_OK) {
        if (v2->len != v->len || v2->type != v->type || memcmp(v2->data, v->data, v->len))
          die("a lookup and an iteration disagree");
        pm_value_unref(v2);
      } else {
        bad = 1;
      }
      pm_value_unref(v);
    }
    pm_iter_close(it);
    if (rc != PM_NOTFOUND) bad = 1;
  }
  pm_store_snap_end(s, &snap);
  if (!bad && (sets[0].n != sets[1].n || sets[0].hash != sets[1].hash))
    die("the two iteration orders see different rows");
  if (out) *out = sets[0];
  return bad ? -1 : 0;
}

static int check_ok(pm_store *s, int must_be_ok) {
  pm_err err;
  char *report = NULL;
  int rc = pm_store_check(s, &report, &err);
  int ok = rc == PM_OK && report && strcmp(report, "ok") == 0;
  if (must_be_ok && !ok) {
    fprintf(stderr, "check after recovery: %s\n", rc ? err.msg : report);
    die("a recovered store does not check clean");
  }
  pm_free(report);
  return rc == PM_OK ? 0 : -1;
}

static int write_some(pm_store *s) {
  pm_err err;
  pm_txn *x;
  if (pm_txn_begin(s, &x, &err)) return -1;
  pm_key a = text_key("k03"), b = text_key("fuzz-new"), d = text_key("k05");
  int64_t next;
  uint8_t ib[8];
  int rc = pm_txn_put(x, &a, PM_TEXT, "hello", 5, PM_PUT_REPLACE, NULL, &err);
  if (!rc) rc = pm_txn_put(x, &b, PM_BLOB, "\0\1\2", 3, PM_PUT_REPLACE, NULL, &err);
  if (!rc) { rc = pm_txn_delete(x, &d, &err); if (rc == PM_NOTFOUND) rc = 0; }
  if (!rc) rc = pm_txn_next_int_key(x, &next, &err);
  if (!rc) { pm_key ik = pm_key_int(next, ib); rc = pm_txn_put(x, &ik, PM_NULL, NULL, 0, PM_PUT_INSERT, NULL, &err); }
  if (rc) { pm_txn_abort(x); return -1; }
  return pm_txn_commit(x, &err) ? -1 : 0;
}

/* Open, use, close; returns 0 if every step succeeded (then *rows is what
** the store held at close). */
static int session(int flags, int after_recover, rowset *rows) {
  pm_options o;
  options(&o);
  pm_store *s;
  pm_err err;
  int rc = pm_store_open(work, &o, &s, &err);
  SAY("open%s: %d %s\n", after_recover ? " after recovery" : "", rc, rc ? err.msg : "");
  if (rc) {
    if (after_recover) {
      fprintf(stderr, "open after recovery: %s\n", err.msg);
      die("a recovered store does not open");
    }
    return rc;
  }
  int bad = 0;
  if (check_ok(s, after_recover)) bad = 1;
  uint8_t ib[8];
  pm_key probe[3] = { text_key("k07"), pm_key_int(3, ib), text_key("missing") };
  for (int i = 0; i < 3; i++) {
    pm_value *v = NULL;
    pm_meta m;
    int g = pm_store_get(s, NULL, &probe[i], &v, &m, &err);
    if (g != PM_OK && g != PM_NOTFOUND) bad = 1;
    pm_value_unref(v);
  }
  if (read_all(s, NULL)) bad = 1;
  if (write_some(s)) bad = 1;
  if (flags & 16) {
    char *summary = NULL;
    if (pm_store_shrink(s, &summary, &err)) bad = 1;
    pm_free(summary);
  }
  if (read_all(s, rows)) bad = 1;
  if (pm_store_close(s, &err)) bad = 1;
  return bad ? -1 : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1 || size > (1 << 20)) return 0;
  int flags = data[0];
  wfile files[MAX_FILES];
  memset(files, 0, sizeof files);
  for (int i = 0; i < ntmpl; i++) {
    wf_reserve(&files[i], tmpl[i].len);
    memcpy(files[i].data, tmpl[i].data, tmpl[i].len);
  }
  size_t at = 1;
  while (at + 4 <= size) {
    int fi = data[at] % ntmpl, op = data[at + 1] % 5;
    size_t len = (size_t)data[at + 2] | (size_t)data[at + 3] << 8;
    at += 4;
    if (len > size - at) len = size - at;
    const uint8_t *p = data + at;
    at += len;
    wfile *f = &files[fi];
    f->gone = 0;
    switch (op) {
      case 0:
        f->len = 0;
        wf_reserve(f, len);
        if (len) memcpy(f->data, p, len);
        break;
      case 1:
        if (len >= 2) {
          size_t off = (size_t)p[0] | (size_t)p[1] << 8;
          wf_reserve(f, off + len - 2);
          memcpy(f->data + off, p + 2, len - 2);
        }
        break;
      case 2:
        if (len >= 2) {
          size_t n = (size_t)p[0] | (size_t)p[1] << 8;
          if (n < f->len) f->len = n;
        }
        break;
      case 3:
        f->gone = 1;
        break;
      case 4:
        if (len) {
          size_t old = f->len;
          wf_reserve(f, old + len);
          memcpy(f->data + old, p, len);
        }
        break;
    }
  }
  /* Fix-ups, the manifest's first: the others read its seed and store id. */
  wfile *man = &files[0];
  if ((flags & 8) && man->len >= 24) {
    pm_put_u32(man->data + 12, (uint32_t)man->len);
    pm_put_u64(man->data + man->len - 8, XXH3_64bits(man->data, man->len - 8));
  }
  for (int i = 1; i < ntmpl; i++) {
    int n = seg_number(tmpl[i].name, ".log");
    if (n >= 0 && !files[i].gone) fix_segment(&files[i], (uint32_t)n, man->data, man->len, flags);
  }
  if (flags & 4)
    for (int i = 1; i < ntmpl; i++) {
      int n = seg_number(tmpl[i].name, ".hint");
      if (n < 0 || files[i].gone) continue;
      char segname[32];
      snprintf(segname, sizeof segname, "%06d.log", n);
      const wfile *seg = NULL;
      for (int j = 1; j < ntmpl; j++) if (strcmp(tmpl[j].name, segname) == 0) seg = &files[j];
      fix_hint(&files[i], (uint32_t)n, seg, man->data, man->len);
    }

  rmtree(work);
  if (mkdir(work, 0755) < 0) die("mkdir");
  for (int i = 0; i < ntmpl; i++)
    if (write_file(tmpl[i].name, &files[i])) die("cannot write a store file");
  for (int i = 0; i < ntmpl; i++) free(files[i].data);
  const char *keep = getenv("PM_FUZZ_KEEP");    /* a copy of the store as the input made it */
  if (keep) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && cp -r '%s' '%s'", keep, work, keep);
    if (system(cmd) != 0) die("PM_FUZZ_KEEP: cannot copy the store");
  }

  if (flags & 64) {                       /* a reader first: it must not repair anything */
    pm_options o;
    options(&o);
    o.readonly = 1;
    pm_store *s;
    pm_err err;
    int r = pm_store_open(work, &o, &s, &err);
    SAY("readonly open: %d %s\n", r, r ? err.msg : "");
    if (r == PM_OK) {
      read_all(s, NULL);
      pm_txn *x;
      if (pm_txn_begin(s, &x, &err) == PM_OK) die("a read-only handle began a write transaction");
      pm_store_close(s, &err);
    }
  }
  rowset rows;
  int rc = session(flags, 0, &rows);
  if (rc == PM_CORRUPT) {
    pm_options o;
    options(&o);
    pm_err err;
    char *report = NULL;
    int r = pm_store_recover(work, &o, &report, &err);
    SAY("recover: %d %s\n", r, r ? err.msg : report);
    if (r == PM_OK) rc = session(flags, 1, &rows);
    pm_free(report);
  }
  if (rc == 0 && (flags & 32)) {
    /* Everything went well: the store must reopen with the same rows. */
    pm_options o;
    options(&o);
    pm_store *s;
    pm_err err;
    if (pm_store_open(work, &o, &s, &err)) {
      fprintf(stderr, "reopen: %s\n", err.msg);
      die("a store that was used and closed cleanly does not reopen");
    }
    rowset again;
    if (read_all(s, &again) == 0 && (again.n != rows.n || again.hash != rows.hash))
      die("the rows changed across a clean close and reopen");
    pm_store_close(s, &err);
  }
  return 0;
}
