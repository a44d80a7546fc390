/*
** test_store.c - the engine through its public API (store.h): opening,
** reads and writes of every type, transactions, iterators and snapshots, a
** randomized model test with reopens, torn tails, corruption and salvage,
** injected fsync failures, group commit and lying length fields.
*/
#include "testutil.h"
#include "faultio.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>

#include "log.h"
#include "store.h"

/* ---- helpers ------------------------------------------------------------- */

static char *dir_path;       /* the store directory of the running test */
static char *tmp_root;

static int setup(void **state) {
  (void)state;
  tu_store_dirs(&tmp_root, &dir_path);
  fio_reset();
  return 0;
}

static int teardown(void **state) {
  (void)state;
  tu_store_dirs_free(&tmp_root, &dir_path);
  return 0;
}

static pm_store *open_store(int sync, const pm_io *io) {
  pm_options o;
  pm_options_init(&o);
  o.create = 1;
  o.sync = sync;
  o.io = io;
  o.segment_size = 64 << 10;
  pm_store *s = NULL;
  pm_err err;
  int rc = pm_store_open(dir_path, &o, &s, &err);
  if (rc) fail_msg("open: %s", err.msg);
  return s;
}

static void close_store(pm_store *s) { assert_int_equal(pm_store_close(s, NULL), PM_OK); }

static pm_key text_key(const char *s) {
  pm_key k = { PM_TEXT, (uint32_t)strlen(s), (const uint8_t *)s };
  return k;
}

static void put_text(pm_store *s, const char *k, const char *v) {
  pm_key key = text_key(k);
  pm_err err;
  int rc = pm_store_put(s, &key, PM_TEXT, v, (uint32_t)strlen(v), &err);
  if (rc) fail_msg("put %s: %s", k, err.msg);
}

/* The text value of k, or NULL (caller frees). */
static char *get_text(pm_store *s, const char *k) {
  pm_key key = text_key(k);
  pm_value *v = NULL;
  int rc = pm_store_get(s, NULL, &key, &v, NULL, NULL);
  if (rc == PM_NOTFOUND) return NULL;
  assert_int_equal(rc, PM_OK);
  char *out = strndup((const char *)v->data, v->len);
  pm_value_unref(v);
  return out;
}

static void assert_value(pm_store *s, const char *k, const char *want) {
  char *got = get_text(s, k);
  if (!want && got) fail_msg("key %s: expected no value, got '%s'", k, got);
  if (want && !got) fail_msg("key %s: expected '%s', got none", k, want);
  if (!want) return;
  assert_string_equal(got, want);
  free(got);
}

static char *seg_path(uint32_t n) {
  static char buf[600];
  snprintf(buf, sizeof buf, "%s/%06u.log", dir_path, n);
  return buf;
}

static uint64_t file_size(const char *p) {
  struct stat st;
  assert_int_equal(stat(p, &st), 0);
  return (uint64_t)st.st_size;
}

static void remove_shm(void) {
  char p[600];
  snprintf(p, sizeof p, "%s/shm", dir_path);
  unlink(p);
}

/* ---- opening ------------------------------------------------------------- */

static void test_open_refuses_foreign_dir(void **state) {
  (void)state;
  pm_options o;
  pm_options_init(&o);
  pm_store *s;
  pm_err err;
  assert_int_equal(pm_store_open(dir_path, &o, &s, &err), PM_CANTOPEN);
  assert_non_null(strstr(err.msg, "does not exist"));
  mkdir(dir_path, 0755);
  char p[600];
  snprintf(p, sizeof p, "%s/notes.txt", dir_path);
  FILE *f = fopen(p, "w");
  fputs("mine", f);
  fclose(f);
  o.create = 1;
  assert_int_equal(pm_store_open(dir_path, &o, &s, &err), PM_CANTOPEN);
  assert_non_null(strstr(err.msg, "is not a persistmap store"));
  assert_int_equal(file_size(p), 4);          /* untouched */
}

/* A store that lost its manifest is never taken for an empty directory. */
static void test_segments_without_manifest_are_kept(void **state) {
  (void)state;
  pm_store *s = open_store(PM_SYNC_NORMAL, NULL);
  put_text(s, "a", "precious");
  close_store(s);
  char p[600];
  snprintf(p, sizeof p, "%s/MANIFEST", dir_path);
  assert_int_equal(unlink(p), 0);
  uint64_t before = file_size(seg_path(1));
  pm_options o;
  pm_options_init(&o);
  o.create = 1;
  pm_err err;
  assert_int_equal(pm_store_open(dir_path, &o, &s, &err), PM_CORRUPT);
  assert_non_null(strstr(err.msg, "holds log segments but no MANIFEST"));
  assert_int_equal(file_size(seg_path(1)), before);
}

static void test_types_roundtrip(void **state) {
  (void)state;
  pm_store *s = open_store(PM_SYNC_NORMAL, NULL);
  uint8_t ib[8];
  pm_key ik = pm_key_int(-7, ib);
  double d = -0.0;
  uint8_t big[70000];
  memset(big, 'x', sizeof big);
  pm_key keys[4] = { ik, { PM_REAL, 8, (const uint8_t *)&d }, text_key("t"), { PM_BLOB, 1, (const uint8_t *)"t" } };
  uint8_t vtypes[5] = { PM_INTEGER, PM_REAL, PM_TEXT, PM_BLOB, PM_NULL };
  for (int i = 0; i < 4; i++)
    assert_int_equal(pm_store_put(s, &keys[i], vtypes[i], (i == 1 || i == 0) ? ib : (const uint8_t *)"", i < 2 ? 8 : 0, NULL), PM_OK);
  pm_key empty = { PM_BLOB, 0, NULL };
  assert_int_equal(pm_store_put(s, &empty, PM_NULL, NULL, 0, NULL), PM_OK);
  pm_key maxk = { PM_BLOB, PM_MAX_KEY, big };
  assert_int_equal(pm_store_put(s, &maxk, PM_BLOB, big, sizeof big, NULL), PM_OK);
  pm_key toolong = { PM_BLOB, PM_MAX_KEY + 1, big };
  pm_err err;
  assert_int_equal(pm_store_put(s, &toolong, PM_BLOB, big, 1, &err), PM_TOOBIG);
  assert_int_equal(pm_store_put(s, &ik, PM_BLOB, big, PM_MAX_VALUE + 1, &err), PM_TOOBIG);
  pm_stats st;
  assert_int_equal(pm_store_stats(s, &st, NULL), PM_OK);
  assert_int_equal(st.records, 12);              /* six puts, each with its commit record */
  close_store(s);
  s = open_store(PM_SYNC_NORMAL, NULL);
  assert_int_equal(pm_store_stats(s, &st, NULL), PM_OK);
  assert_int_equal(st.records, 12);
  assert_int_equal(st.keys, 6);
  for (int i = 0; i < 4; i++) {
    pm_value *v;
    assert_int_equal(pm_store_get(s, NULL, &keys[i], &v, NULL, NULL), PM_OK);
    assert_int_equal(v->type, vtypes[i]);
    assert_int_equal(v->len, i < 2 ? 8 : 0);
    pm_value_unref(v);
  }
  pm_value *v;
  assert_int_equal(pm_store_get(s, NULL, &empty, &v, NULL, NULL), PM_OK);
  assert_int_equal(v->type, PM_NULL);
  pm_value_unref(v);
  assert_int_equal(pm_store_get(s, NULL, &maxk, &v, NULL, NULL), PM_OK);
  assert_int_equal(v->len, sizeof big);
  assert_memory_equal(v->data, big, sizeof big);
  pm_value_unref(v);
  pm_key text7 = { PM_TEXT, 8, ib };      /* same bytes as the integer key, other type */
  assert_int_equal(pm_store_get(s, NULL, &text7, NULL, NULL, NULL), PM_NOTFOUND);
  close_store(s);
}

/* ---- transactions ---------------------------------------------------------- */

static void test_txn_commit_abort_savepoints(void **state) {
  (void)state;
  pm_store *s = open_store(PM_SYNC_NORMAL, NULL);
  pm_txn *t;
  pm_key a = text_key("a"), b = text_key("b"), c = text_key("c");
  assert_int_equal(pm_txn_begin(s, &t, NULL), PM_OK);
  assert_int_equal(pm_txn_put(t, &a, PM_TEXT, "1", 1, PM_PUT_INSERT, NULL, NULL), PM_OK);
  pm_err err;
  assert_int_equal(pm_txn_put(t, &a, PM_TEXT, "2", 1, PM_PUT_INSERT, NULL, &err), PM_CONSTRAINT);
  assert_int_equal(pm_txn_savepoint(t, 0, NULL), PM_OK);
  assert_int_equal(pm_txn_put(t, &b, PM_TEXT, "b", 1, PM_PUT_REPLACE, NULL, NULL), PM_OK);
  assert_int_equal(pm_txn_delete(t, &a, NULL), PM_OK);
  assert_int_equal(pm_txn_get(t, &a, NULL, NULL, NULL), PM_NOTFOUND);
  assert_int_equal(pm_txn_rollback_to(t, 0, NULL), PM_OK);
  assert_int_equal(pm_txn_get(t, &a, NULL, NULL, NULL), PM_OK);
  assert_int_equal(pm_txn_get(t, &b, NULL, NULL, NULL), PM_NOTFOUND);
  assert_null(get_text(s, "a"));                 /* not visible before commit */
  assert_int_equal(pm_txn_commit(t, NULL), PM_OK);
  assert_value(s, "a", "1");

  /* Prepared then aborted (SQLite's xRollback after xSync): gone, also after reopen. */
  assert_int_equal(pm_txn_begin(s, &t, NULL), PM_OK);
  assert_int_equal(pm_txn_put(t, &c, PM_TEXT, "c", 1, PM_PUT_REPLACE, NULL, NULL), PM_OK);
  assert_int_equal(pm_txn_prepare(t, NULL), PM_OK);
  pm_txn_abort(t);
  assert_null(get_text(s, "c"));
  /* Prepared twice: the second group supersedes the first. */
  assert_int_equal(pm_txn_begin(s, &t, NULL), PM_OK);
  assert_int_equal(pm_txn_put(t, &c, PM_TEXT, "x", 1, PM_PUT_REPLACE, NULL, NULL), PM_OK);
  assert_int_equal(pm_txn_prepare(t, NULL), PM_OK);
  assert_int_equal(pm_txn_put(t, &b, PM_TEXT, "y", 1, PM_PUT_REPLACE, NULL, NULL), PM_OK);
  assert_int_equal(pm_txn_prepare(t, NULL), PM_OK);
  assert_int_equal(pm_txn_commit(t, NULL), PM_OK);
  close_store(s);
  s = open_store(PM_SYNC_NORMAL, NULL);
  assert_value(s, "a", "1");
  assert_value(s, "b", "y");
  assert_value(s, "c", "x");
  close_store(s);
}

static void test_prepared_group_counts_after_crash(void **state) {
  (void)state;
  pm_store *s = open_store(PM_SYNC_FULL, NULL);
  pm_txn *t;
  pm_key k = text_key("k");
  assert_int_equal(pm_txn_begin(s, &t, NULL), PM_OK);
  assert_int_equal(pm_txn_put(t, &k, PM_TEXT, "v", 1, PM_PUT_REPLACE, NULL, NULL), PM_OK);
  assert_int_equal(pm_txn_prepare(t, NULL), PM_OK);
  /* "Crash": copy the directory as it is now and open the copy. */
  char cmd[1400];
  snprintf(cmd, sizeof cmd, "cp -r %s %s.copy && rm -f %s.copy/shm", dir_path, dir_path, dir_path);
  assert_int_equal(system(cmd), 0);
  pm_txn_abort(t);
  close_store(s);
  strcat(dir_path, ".copy");
  s = open_store(PM_SYNC_FULL, NULL);
  assert_value(s, "k", "v");
  close_store(s);
  dir_path[strlen(dir_path) - 5] = 0;
}

static void test_next_int_key(void **state) {
  (void)state;
  pm_store *s = open_store(PM_SYNC_NORMAL, NULL);
  pm_txn *t;
  int64_t k;
  assert_int_equal(pm_txn_begin(s, &t, NULL), PM_OK);
  assert_int_equal(pm_txn_next_int_key(t, &k, NULL), PM_OK);
  assert_int_equal(k, 1);
  uint8_t b[8];
  pm_key key = pm_key_int(41, b);
  assert_int_equal(pm_txn_put(t, &key, PM_NULL, NULL, 0, PM_PUT_INSERT, NULL, NULL), PM_OK);
  assert_int_equal(pm_txn_next_int_key(t, &k, NULL), PM_OK);
  assert_int_equal(k, 42);
  assert_int_equal(pm_txn_commit(t, NULL), PM_OK);
  assert_int_equal(pm_store_delete(s, &key, NULL), PM_OK);
  close_store(s);
  s = open_store(PM_SYNC_NORMAL, NULL);
  assert_int_equal(pm_txn_begin(s, &t, NULL), PM_OK);
  assert_int_equal(pm_txn_next_int_key(t, &k, NULL), PM_OK);
  assert_int_equal(k, 42);                      /* 41 was deleted, never reused */
  pm_txn_abort(t);
  close_store(s);
}

/* ---- iterators and snapshots ------------------------------------------------- */

static int starts_with_a(void *ctx, const pm_key *k) {
  (void)ctx;
  return k->type == PM_TEXT && k->len > 0 && k->data[0] == 'a';
}

/* Collect the keys an iterator yields, joined with ','. */
static void collect(pm_store *s, pm_txn *t, const pm_snap *snap, const pm_iter_spec *spec, char *out) {
  pm_iter *it;
  assert_int_equal(pm_iter_open(s, t, snap, spec, &it, NULL), PM_OK);
  out[0] = 0;
  uint64_t last = 0;
  int rc;
  while ((rc = pm_iter_next(it, NULL)) == PM_OK) {
    pm_meta m;
    pm_iter_meta(it, &m);
    if (last) assert_true(spec->desc ? m.seq < last : m.seq > last);
    last = m.seq;
    const pm_key *k = pm_iter_key(it);
    strncat(out, (const char *)k->data, k->len);
    strcat(out, ",");
  }
  assert_int_equal(rc, PM_NOTFOUND);
  pm_iter_close(it);
}

static void test_iterators(void **state) {
  (void)state;
  pm_store *s = open_store(PM_SYNC_NORMAL, NULL);
  const char *names[] = { "a1", "b1", "a2", "b2", "a3" };
  for (int i = 0; i < 5; i++) put_text(s, names[i], "v");
  put_text(s, "a1", "again");                  /* moves to the end in seq order */
  char got[256];
  pm_iter_spec all = { 0, 0, UINT64_MAX, NULL, NULL };
  collect(s, NULL, NULL, &all, got);
  assert_string_equal(got, "b1,a2,b2,a3,a1,");
  pm_iter_spec desc_a = { 1, 0, UINT64_MAX, starts_with_a, NULL };
  collect(s, NULL, NULL, &desc_a, got);
  assert_string_equal(got, "a1,a3,a2,");

  /* A snapshot keeps seeing its state while writers go on. */
  pm_snap snap;
  assert_int_equal(pm_store_snap_begin(s, &snap, NULL), PM_OK);
  pm_key b1 = text_key("b1");
  assert_int_equal(pm_store_delete(s, &b1, NULL), PM_OK);
  for (int i = 0; i < 200; i++) put_text(s, "b2", "churn");  /* compaction pressure */
  put_text(s, "c", "new");
  collect(s, NULL, &snap, &all, got);
  assert_string_equal(got, "b1,a2,b2,a3,a1,");
  pm_value *v;
  pm_key b2 = text_key("b2");
  assert_int_equal(pm_store_get(s, &snap, &b2, &v, NULL, NULL), PM_OK);
  assert_memory_equal(v->data, "v", 1);
  pm_value_unref(v);
  pm_store_snap_end(s, &snap);
  collect(s, NULL, NULL, &all, got);
  assert_string_equal(got, "a2,a3,a1,b2,c,");

  /* Inside a transaction: its own writes, in seq order, after the committed rows. */
  pm_txn *t;
  assert_int_equal(pm_txn_begin(s, &t, NULL), PM_OK);
  pm_key a2 = text_key("a2"), d = text_key("d");
  assert_int_equal(pm_txn_delete(t, &a2, NULL), PM_OK);
  assert_int_equal(pm_txn_put(t, &d, PM_TEXT, "d", 1, PM_PUT_REPLACE, NULL, NULL), PM_OK);
  collect(s, t, NULL, &all, got);
  assert_string_equal(got, "a3,a1,b2,c,d,");
  pm_iter_spec desc = { 1, 0, UINT64_MAX, NULL, NULL };
  collect(s, t, NULL, &desc, got);
  assert_string_equal(got, "d,c,b2,a1,a3,");
  pm_txn_abort(t);
  close_store(s);
}

/* ---- the randomized model test ------------------------------------------------ */

#define MODEL_KEYS 500

typedef struct model { char *val[MODEL_KEYS]; } model;

static void model_set(model *m, int k, const char *v) {
  free(m->val[k]);
  m->val[k] = v ? strdup(v) : NULL;
}

static void model_copy(model *dst, const model *src) {
  for (int i = 0; i < MODEL_KEYS; i++) model_set(dst, i, src->val[i]);
}

static void model_free(model *m) { for (int i = 0; i < MODEL_KEYS; i++) model_set(m, i, NULL); }

static void model_check(pm_store *s, const model *m) {
  uint64_t n = 0;
  for (int i = 0; i < MODEL_KEYS; i++) {
    char k[32];
    snprintf(k, sizeof k, "k%d", i);
    assert_value(s, k, m->val[i]);
    n += m->val[i] != NULL;
  }
  pm_stats st;
  assert_int_equal(pm_store_stats(s, &st, NULL), PM_OK);
  assert_int_equal(st.keys, n);
}

static void test_model_random(void **state) {
  (void)state;
  uint64_t rng = 12345;
  model committed = { { 0 } }, pending = { { 0 } };
  pm_store *s = open_store(PM_SYNC_OFF, NULL);
  pm_txn *t = NULL;
  for (int step = 0; step < 100000; step++) {
    int op = (int)(tu_rand(&rng) % 100);
    int k = (int)(tu_rand(&rng) % MODEL_KEYS);
    char key[32], val[64];
    snprintf(key, sizeof key, "k%d", k);
    pm_key pk = text_key(key);
    if (!t && op < 95) { assert_int_equal(pm_txn_begin(s, &t, NULL), PM_OK); model_copy(&pending, &committed); }
    if (op < 60) {
      int len = snprintf(val, sizeof val, "v%d-%llu", step, (unsigned long long)(tu_rand(&rng) % 100000));
      assert_int_equal(pm_txn_put(t, &pk, PM_TEXT, val, (uint32_t)len, PM_PUT_REPLACE, NULL, NULL), PM_OK);
      model_set(&pending, k, val);
    } else if (op < 80) {
      int rc = pm_txn_delete(t, &pk, NULL);
      assert_int_equal(rc, pending.val[k] ? PM_OK : PM_NOTFOUND);
      model_set(&pending, k, NULL);
    } else if (op < 88) {
      assert_int_equal(pm_txn_commit(t, NULL), PM_OK);
      t = NULL;
      model_copy(&committed, &pending);
      assert_value(s, key, committed.val[k]);
    } else if (op < 94) {
      pm_txn_abort(t);
      t = NULL;
      assert_value(s, key, committed.val[k]);
    } else if (op < 95) {
      assert_int_equal(pm_store_sync(s, -1, NULL), PM_OK);
    } else {
      if (t) { pm_txn_abort(t); t = NULL; }
      close_store(s);
      s = open_store(PM_SYNC_OFF, NULL);
      model_check(s, &committed);
    }
    if (t) {
      pm_value *v = NULL;
      int rc = pm_txn_get(t, &pk, &v, NULL, NULL);
      assert_int_equal(rc, pending.val[k] ? PM_OK : PM_NOTFOUND);
      if (v) { assert_memory_equal(v->data, pending.val[k], v->len); pm_value_unref(v); }
    }
    if (step % 5000 == 0 && !t) model_check(s, &committed);
  }
  if (t) pm_txn_abort(t);
  close_store(s);
  s = open_store(PM_SYNC_OFF, NULL);
  model_check(s, &committed);
  close_store(s);
  model_free(&committed);
  model_free(&pending);
}

/* ---- torn tails, corruption, salvage -------------------------------------------- */

/* Write five transactions of two keys each under FULL; return the segment
** size after each (sizes[0] = before the first). */
static void write_five(uint64_t sizes[6]) {
  pm_store *s = open_store(PM_SYNC_FULL, NULL);
  sizes[0] = file_size(seg_path(1));
  for (int i = 1; i <= 5; i++) {
    pm_txn *t;
    assert_int_equal(pm_txn_begin(s, &t, NULL), PM_OK);
    for (int j = 0; j < 2; j++) {
      char k[32], v[48];
      snprintf(k, sizeof k, "t%d-%d", i, j);
      snprintf(v, sizeof v, "value of %d/%d", i, j);
      pm_key key = text_key(k);
      assert_int_equal(pm_txn_put(t, &key, PM_TEXT, v, (uint32_t)strlen(v), 0, NULL, NULL), PM_OK);
    }
    assert_int_equal(pm_txn_commit(t, NULL), PM_OK);
    sizes[i] = file_size(seg_path(1));
  }
  close_store(s);
}

static void assert_txns(pm_store *s, int upto, int skip) {
  for (int i = 1; i <= 5; i++) {
    char k[32], v[48];
    snprintf(k, sizeof k, "t%d-0", i);
    snprintf(v, sizeof v, "value of %d/0", i);
    assert_value(s, k, i <= upto && i != skip ? v : NULL);
  }
}

static uint8_t *read_file(const char *p, uint64_t *n) {
  *n = file_size(p);
  uint8_t *b = malloc(*n);
  FILE *f = fopen(p, "rb");
  assert_int_equal(fread(b, 1, *n, f), *n);
  fclose(f);
  return b;
}

static void write_file(const char *p, const uint8_t *b, uint64_t n) {
  FILE *f = fopen(p, "wb");
  assert_int_equal(fwrite(b, 1, n, f), n);
  fclose(f);
}

static void test_torn_tail_every_offset(void **state) {
  (void)state;
  uint64_t sizes[6];
  write_five(sizes);
  uint64_t n;
  uint8_t *orig = read_file(seg_path(1), &n);
  assert_int_equal(n, sizes[5]);
  for (int pass = 0; pass < 2; pass++) {
    for (uint64_t cut = sizes[4]; cut < sizes[5]; cut++) {
      uint8_t *copy = malloc(n);
      memcpy(copy, orig, n);
      if (pass) memset(copy + cut, 0, n - cut);
      int intact = pass && memcmp(copy, orig, n) == 0;   /* the zeros were already there */
      write_file(seg_path(1), copy, pass ? n : cut);
      free(copy);
      remove_shm();                        /* the power loss took the shared page */
      pm_store *s = open_store(PM_SYNC_FULL, NULL);
      assert_txns(s, intact ? 5 : 4, 0);
      if (intact) { close_store(s); continue; }
      put_text(s, "after", "kept");
      close_store(s);
      s = open_store(PM_SYNC_FULL, NULL);
      assert_txns(s, 4, 0);
      assert_value(s, "after", "kept");
      pm_key after = text_key("after");
      assert_int_equal(pm_store_delete(s, &after, NULL), PM_OK);
      close_store(s);
    }
  }
  free(orig);
}

static void test_flipped_byte_then_recover(void **state) {
  (void)state;
  uint64_t sizes[6];
  write_five(sizes);
  uint64_t n;
  uint8_t *b = read_file(seg_path(1), &n);
  b[sizes[2] + 40] ^= 0x10;               /* inside transaction 3, long since fsynced */
  write_file(seg_path(1), b, n);
  free(b);
  remove_shm();
  pm_options o;
  pm_options_init(&o);
  pm_store *s;
  pm_err err;
  assert_int_equal(pm_store_open(dir_path, &o, &s, &err), PM_CORRUPT);
  char want[64];
  snprintf(want, sizeof want, "000001.log corrupt at offset %llu", (unsigned long long)sizes[2]);
  if (!strstr(err.msg, want)) fail_msg("message '%s' lacks '%s'", err.msg, want);
  char *report = NULL;
  assert_int_equal(pm_store_recover(dir_path, &o, &report, &err), PM_OK);
  assert_non_null(strstr(report, "\"dropped_transactions\":1"));
  pm_free(report);
  s = open_store(PM_SYNC_FULL, NULL);
  assert_txns(s, 5, 3);
  assert_int_equal(pm_store_check(s, &report, NULL), PM_OK);
  assert_string_equal(report, "ok");
  pm_free(report);
  close_store(s);
}

/* An allocator that remembers the largest request. */
static size_t biggest_alloc;
static void *track_malloc(size_t n) { if (n > biggest_alloc) biggest_alloc = n; return malloc(n); }
static void *track_realloc(void *p, size_t n) { if (n > biggest_alloc) biggest_alloc = n; return realloc(p, n); }
static const pm_allocator tracking = { track_malloc, track_realloc, free };

static void test_lying_length(void **state) {
  (void)state;
  uint64_t sizes[6];
  write_five(sizes);
  uint64_t n;
  uint8_t *b = read_file(seg_path(1), &n);
  /* At the tail: a header claiming a 4 GiB key. */
  uint8_t tail[32] = { 0 };
  tail[8] = 1; tail[9] = PM_TEXT; tail[10] = PM_TEXT;
  pm_put_u32(tail + 12, 0xFFFFFFFFu);
  uint8_t *longer = malloc(n + 32);
  memcpy(longer, b, n);
  memcpy(longer + n, tail, 32);
  write_file(seg_path(1), longer, n + 32);
  free(longer);
  remove_shm();
  biggest_alloc = 0;
  pm_set_allocator(&tracking);
  pm_store *s = open_store(PM_SYNC_FULL, NULL);
  assert_txns(s, 5, 0);
  close_store(s);
  assert_true(biggest_alloc < (64u << 20));
  /* Inside synced data: transaction 2's value length. */
  pm_put_u32(b + sizes[1] + 16, 0xFFFFFFFFu);
  write_file(seg_path(1), b, n);
  remove_shm();
  biggest_alloc = 0;
  pm_options o;
  pm_options_init(&o);
  pm_err err;
  assert_int_equal(pm_store_open(dir_path, &o, &s, &err), PM_CORRUPT);
  pm_set_allocator(NULL);
  assert_true(biggest_alloc < (64u << 20));
  free(b);
}

/* ---- failures and group commit ---------------------------------------------------- */

static void test_fsync_failure_stops_writes(void **state) {
  (void)state;
  pm_store *s = open_store(PM_SYNC_FULL, fio_io());
  fio_arm(FIO_FSYNC, 3, 0, EIO);
  int acked = 0;
  for (int i = 1; i <= 5; i++) {
    char k[32];
    snprintf(k, sizeof k, "k%d", i);
    pm_key key = text_key(k);
    pm_err err;
    int rc = pm_store_put(s, &key, PM_TEXT, "v", 1, &err);
    if (i < 3) assert_int_equal(rc, PM_OK);
    else { assert_int_equal(rc, PM_IOERR); assert_non_null(strstr(err.msg, "fsync")); }
    if (rc == PM_OK) acked = i;
  }
  assert_int_equal(acked, 2);
  assert_value(s, "k1", "v");                  /* reads go on */
  pm_stats st;
  assert_int_equal(pm_store_stats(s, &st, NULL), PM_OK);
  assert_int_equal(st.last_error_code, PM_IOERR);
  assert_int_equal(pm_store_close(s, NULL), PM_IOERR);
  fio_reset();
  s = open_store(PM_SYNC_FULL, NULL);
  assert_value(s, "k1", "v");
  assert_value(s, "k2", "v");
  assert_value(s, "k4", NULL);
  assert_value(s, "k5", NULL);
  put_text(s, "k6", "v");                      /* writable again after reopen */
  close_store(s);
}

static pm_store *shared_store;

static void *committer(void *arg) {
  int id = (int)(intptr_t)arg;
  for (int i = 0; i < 1000; i++) {
    char k[32];
    snprintf(k, sizeof k, "w%d-%d", id, i);
    pm_key key = text_key(k);
    pm_err err;
    if (pm_store_put(shared_store, &key, PM_TEXT, "v", 1, &err)) fail_msg("put: %s", err.msg);
  }
  return NULL;
}

static void test_group_commit(void **state) {
  (void)state;
  pm_options o;
  pm_options_init(&o);
  o.create = 1;
  o.sync = PM_SYNC_FULL;
  pm_err err;
  assert_int_equal(pm_store_open(dir_path, &o, &shared_store, &err), PM_OK);
  pm_stats before, after;
  pm_store_stats(shared_store, &before, NULL);
  pthread_t th[4];
  for (int i = 0; i < 4; i++) pthread_create(&th[i], NULL, committer, (void *)(intptr_t)i);
  for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
  pm_store_stats(shared_store, &after, NULL);
  uint64_t commits = after.commits - before.commits, fsyncs = after.fsyncs - before.fsyncs;
  print_message("group commit: %llu commits, %llu fsyncs\n", (unsigned long long)commits, (unsigned long long)fsyncs);
  assert_int_equal(commits, 4000);
  assert_true(fsyncs < commits);
  assert_int_equal(after.keys, 4000);
  close_store(shared_store);
}

/* ---- two processes on one store ------------------------------------------------ */

#include <sys/wait.h>

static void test_two_processes(void **state) {
  (void)state;
  pm_store *s = open_store(PM_SYNC_NORMAL, NULL);
  put_text(s, "parent", "1");
  pm_txn *t;
  assert_int_equal(pm_txn_begin(s, &t, NULL), PM_OK);      /* hold the writer lock */
  int ready[2], go[2];
  assert_int_equal(pipe(ready), 0);
  assert_int_equal(pipe(go), 0);
  pid_t pid = fork();
  if (pid == 0) {
    close(ready[0]);
    close(go[1]);
    /* The child opens its own engine: the parent's is never reused. */
    pm_options o;
    pm_options_init(&o);
    o.busy_timeout_ms = 50;
    pm_store *c;
    pm_err err;
    int ok = pm_store_open(dir_path, &o, &c, &err) == PM_OK;
    pm_txn *ct = NULL;
    ok = ok && pm_txn_begin(c, &ct, &err) == PM_BUSY && strstr(err.msg, "another writer");
    char *v = ok ? get_text(c, "parent") : NULL;
    ok = ok && v && strcmp(v, "1") == 0;
    free(v);
    char byte = ok ? 'y' : 'n';
    if (write(ready[1], &byte, 1) != 1) _exit(3);
    if (read(go[0], &byte, 1) != 1) _exit(3);
    o.busy_timeout_ms = 5000;
    pm_store_close(c, NULL);
    ok = ok && pm_store_open(dir_path, &o, &c, &err) == PM_OK;
    for (int i = 0; ok && i < 100; i++) {
      char k[32];
      snprintf(k, sizeof k, "child%d", i);
      pm_key key = text_key(k);
      ok = pm_store_put(c, &key, PM_TEXT, "c", 1, &err) == PM_OK;
    }
    ok = ok && pm_store_close(c, NULL) == PM_OK;
    _exit(ok ? 0 : 1);
  }
  close(ready[1]);                             /* a dead child then reads as EOF */
  close(go[0]);
  char byte;
  assert_int_equal(read(ready[0], &byte, 1), 1);
  assert_int_equal(byte, 'y');
  pm_key mine = text_key("mine");
  assert_int_equal(pm_txn_put(t, &mine, PM_TEXT, "p", 1, 0, NULL, NULL), PM_OK);
  assert_int_equal(pm_txn_commit(t, NULL), PM_OK);
  assert_int_equal(write(go[1], &byte, 1), 1);
  int status;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  close(ready[0]);
  close(go[1]);
  /* The child's commits are seen at the next read, without reopening. */
  assert_value(s, "child99", "c");
  assert_value(s, "child0", "c");
  pm_stats st;
  assert_int_equal(pm_store_stats(s, &st, NULL), PM_OK);
  assert_int_equal(st.keys, 102);
  put_text(s, "parent", "2");                  /* and the parent writes after them */
  close_store(s);
  s = open_store(PM_SYNC_NORMAL, NULL);
  assert_value(s, "parent", "2");
  assert_value(s, "mine", "p");
  assert_value(s, "child50", "c");
  close_store(s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(test_open_refuses_foreign_dir, setup, teardown),
    cmocka_unit_test_setup_teardown(test_segments_without_manifest_are_kept, setup, teardown),
    cmocka_unit_test_setup_teardown(test_types_roundtrip, setup, teardown),
    cmocka_unit_test_setup_teardown(test_txn_commit_abort_savepoints, setup, teardown),
    cmocka_unit_test_setup_teardown(test_prepared_group_counts_after_crash, setup, teardown),
    cmocka_unit_test_setup_teardown(test_next_int_key, setup, teardown),
    cmocka_unit_test_setup_teardown(test_iterators, setup, teardown),
    cmocka_unit_test_setup_teardown(test_model_random, setup, teardown),
    cmocka_unit_test_setup_teardown(test_torn_tail_every_offset, setup, teardown),
    cmocka_unit_test_setup_teardown(test_flipped_byte_then_recover, setup, teardown),
    cmocka_unit_test_setup_teardown(test_lying_length, setup, teardown),
    cmocka_unit_test_setup_teardown(test_fsync_failure_stops_writes, setup, teardown),
    cmocka_unit_test_setup_teardown(test_group_commit, setup, teardown),
    cmocka_unit_test_setup_teardown(test_two_processes, setup, teardown),
  };
  tu_filter_from_env();
  return cmocka_run_group_tests_name("store", tests, NULL, NULL);
}
