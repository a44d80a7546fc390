/*
** test_index.c - unit tests of the in-memory hash index (ext/index.h):
** puts, finds and deletes, versions seen through snapshots, iteration,
** compaction, relocation, loading, reservation, a randomized comparison
** with a simple reference model, allocation failures, memory per key and
** keys of every shape.
*/
#include "testutil.h"

#include "index.h"

#define LATEST PM_SEQ_LATEST

/* ---- Helpers ------------------------------------------------------------------ */

/* A text key over a NUL-terminated string (which must outlive the key). */
static pm_key text_key(const char *s) {
  pm_key k = { PM_TEXT, (uint32_t)strlen(s), (const uint8_t *)s };
  return k;
}

/* Record locations derived from seq, so that a test can predict them. */
static uint32_t seg_of(uint64_t seq) { return (uint32_t)(seq % 7); }
static uint64_t off_of(uint64_t seq) { return seq * 16; }

/* Put k at seq with a value of vlen bytes; must succeed. */
static void put(pm_index *ix, const pm_key *k, uint64_t seq, uint32_t vlen) {
  assert_int_equal(pm_index_put(ix, k, seq, seg_of(seq), off_of(seq), vlen, PM_BLOB), PM_OK);
}

/* Delete k at seq; must succeed. */
static void del(pm_index *ix, const pm_key *k, uint64_t seq) {
  assert_int_equal(pm_index_delete(ix, k, seq), PM_OK);
}

/* True when two keys are the same key. */
static int same_key(const pm_key *a, const pm_key *b) {
  return a->type == b->type && a->len == b->len &&
         (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}

/* k must be visible at snap as the version written at seq. */
static void expect_found(const pm_index *ix, const pm_key *k, uint64_t snap, uint64_t seq) {
  pm_ientry e;
  assert_int_equal(pm_index_find(ix, k, snap, &e), PM_OK);
  assert_int_equal(e.seq, seq);
  assert_int_equal(e.seg, seg_of(seq));
  assert_int_equal(e.off, off_of(seq));
  assert_true(same_key(&e.key, k));
}

/* k must be absent at snap. */
static void expect_absent(const pm_index *ix, const pm_key *k, uint64_t snap) {
  pm_ientry e;
  assert_int_equal(pm_index_find(ix, k, snap, &e), PM_NOTFOUND);
}

/* The seqs of the versions visible at snap, from the first position with a
** seq >= from, forwards. Returns how many (at most max). */
static size_t scan_forward(const pm_index *ix, uint64_t snap, uint64_t from, uint64_t *seqs, size_t max) {
  size_t n = 0;
  uint32_t pos = pm_index_seek(ix, from);
  pm_ientry e;
  while (n < max && pm_index_next(ix, &pos, snap, &e) == PM_OK) {
    assert_int_equal(pos, e.pos + 1);
    seqs[n++] = e.seq;
  }
  return n;
}

/* The seqs of the versions visible at snap, backwards from the end. */
static size_t scan_backward(const pm_index *ix, uint64_t snap, uint64_t *seqs, size_t max) {
  size_t n = 0;
  uint32_t pos = pm_index_end(ix);
  pm_ientry e;
  while (n < max && pm_index_prev(ix, &pos, snap, &e) == PM_OK) {
    assert_int_equal(pos, e.pos);
    seqs[n++] = e.seq;
  }
  return n;
}

/* The forward scan at snap must give exactly the seqs want[0..n), and the
** backward scan the same in reverse. */
static void expect_scan(const pm_index *ix, uint64_t snap, const uint64_t *want, size_t n) {
  uint64_t got[64];
  assert_true(n <= 64);
  assert_int_equal(scan_forward(ix, snap, 0, got, 64), n);
  for (size_t i = 0; i < n; i++) assert_int_equal(got[i], want[i]);
  assert_int_equal(scan_backward(ix, snap, got, 64), n);
  for (size_t i = 0; i < n; i++) assert_int_equal(got[i], want[n - 1 - i]);
}

/* Keys "key000".."keyNNN" in caller-owned buffers of 8 bytes each. */
static void name_keys(pm_key *keys, char (*names)[8], int n) {
  for (int i = 0; i < n; i++) {
    snprintf(names[i], sizeof names[i], "key%03u", (unsigned)i % 1000u);
    keys[i] = text_key(names[i]);
  }
}

/* ---- Basic operations ------------------------------------------------------------ */

static void test_empty_index(void **state) {
  (void)state;
  pm_index *ix = pm_index_new(1);
  assert_non_null(ix);
  pm_key k = text_key("nothing");
  pm_ientry e;
  uint32_t pos = 0;
  expect_absent(ix, &k, LATEST);
  assert_int_equal(pm_index_seek(ix, 0), 0);
  assert_int_equal(pm_index_end(ix), 0);
  assert_int_equal(pm_index_next(ix, &pos, LATEST, &e), PM_NOTFOUND);
  pos = PM_POS_END;
  assert_int_equal(pm_index_prev(ix, &pos, LATEST, &e), PM_NOTFOUND);
  assert_int_equal(pm_index_compact(ix, LATEST), PM_OK);
  assert_int_equal(pm_index_delete(ix, &k, 1), PM_NOTFOUND);
  assert_int_equal(pm_index_count(ix), 0);
  assert_int_equal(pm_index_live_bytes(ix), 0);
  assert_int_equal(pm_index_max_seq(ix), 0);
  assert_int_equal(pm_index_versions(ix), 0);
  assert_true(pm_index_mem_bytes(ix) > 0);
  pm_index_free(ix);
  pm_index_free(NULL);
}

static void test_put_find_delete(void **state) {
  (void)state;
  pm_index *ix = pm_index_new(42);
  pm_key a = text_key("alpha"), b = text_key("beta");
  put(ix, &a, 1, 100);
  put(ix, &b, 2, 10);
  expect_found(ix, &a, LATEST, 1);
  expect_found(ix, &b, LATEST, 2);
  assert_int_equal(pm_index_count(ix), 2);
  assert_int_equal(pm_index_live_bytes(ix), 5 + 100 + 4 + 10);

  pm_ientry e;
  assert_int_equal(pm_index_put(ix, &a, 3, 4, 4096, 7, PM_TEXT), PM_OK);
  assert_int_equal(pm_index_find(ix, &a, LATEST, &e), PM_OK);
  assert_int_equal(e.seq, 3);
  assert_int_equal(e.seg, 4);
  assert_int_equal(e.off, 4096);
  assert_int_equal(e.vlen, 7);
  assert_int_equal(e.vtype, PM_TEXT);
  assert_int_equal(pm_index_count(ix), 2);
  assert_int_equal(pm_index_live_bytes(ix), 5 + 7 + 4 + 10);

  del(ix, &b, 4);
  expect_absent(ix, &b, LATEST);
  assert_int_equal(pm_index_delete(ix, &b, 5), PM_NOTFOUND);
  assert_int_equal(pm_index_max_seq(ix), 4);   /* a refused delete changes nothing */
  assert_int_equal(pm_index_count(ix), 1);
  assert_int_equal(pm_index_live_bytes(ix), 5 + 7);

  put(ix, &b, 5, 1);   /* back after a delete */
  expect_found(ix, &b, LATEST, 5);
  assert_int_equal(pm_index_count(ix), 2);
  assert_int_equal(pm_index_live_bytes(ix), 5 + 7 + 4 + 1);
  assert_int_equal(pm_index_max_seq(ix), 5);
  assert_int_equal(pm_index_versions(ix), 5);
  pm_index_free(ix);
}

static void test_misuse(void **state) {
  (void)state;
  pm_index *ix = pm_index_new(7);
  pm_key k = text_key("k");
  put(ix, &k, 10, 1);
  assert_int_equal(pm_index_put(ix, &k, 10, 0, 0, 1, PM_BLOB), PM_MISUSE);
  assert_int_equal(pm_index_put(ix, &k, 9, 0, 0, 1, PM_BLOB), PM_MISUSE);
  assert_int_equal(pm_index_delete(ix, &k, 10), PM_MISUSE);
  assert_int_equal(pm_index_put(ix, &k, 11, 0, 0, 1, 0), PM_MISUSE);
  assert_int_equal(pm_index_put(ix, &k, 11, 0, 0, 1, PM_NULL + 1), PM_MISUSE);
  assert_int_equal(pm_index_put(ix, &k, 11, 0, 0, PM_MAX_VALUE + 1, PM_BLOB), PM_MISUSE);
  assert_int_equal(pm_index_put(ix, &k, 11, 0, (uint64_t)1 << 41, 1, PM_BLOB), PM_MISUSE);
  assert_int_equal(pm_index_put(ix, &k, 11, UINT32_MAX, ((uint64_t)1 << 41) - 1, PM_MAX_VALUE, PM_NULL), PM_OK);

  pm_key bad = k;
  bad.type = PM_NULL;
  assert_int_equal(pm_index_put(ix, &bad, 12, 0, 0, 1, PM_BLOB), PM_MISUSE);
  bad.type = 0;
  assert_int_equal(pm_index_put(ix, &bad, 12, 0, 0, 1, PM_BLOB), PM_MISUSE);
  bad.type = PM_BLOB;
  bad.data = NULL;
  assert_int_equal(pm_index_put(ix, &bad, 12, 0, 0, 1, PM_BLOB), PM_MISUSE);
  assert_int_equal(pm_index_put(ix, NULL, 12, 0, 0, 1, PM_BLOB), PM_MISUSE);
  pm_ientry e;
  assert_int_equal(pm_index_find(ix, NULL, LATEST, &e), PM_MISUSE);
  assert_int_equal(pm_index_find(ix, &bad, LATEST, &e), PM_MISUSE);   /* NULL data */
  bad.type = PM_NULL;
  bad.data = k.data;
  assert_int_equal(pm_index_find(ix, &bad, LATEST, &e), PM_NOTFOUND); /* never a key */
  uint8_t *huge = calloc(PM_MAX_KEY + 1, 1);
  pm_key too_long = { PM_BLOB, PM_MAX_KEY + 1, huge };
  assert_int_equal(pm_index_put(ix, &too_long, 12, 0, 0, 1, PM_BLOB), PM_MISUSE);
  expect_absent(ix, &too_long, LATEST);
  free(huge);

  /* Loading calls outside loading, normal writes during loading. */
  assert_int_equal(pm_index_load_put(ix, &k, 50, 0, 0, 1, PM_BLOB), PM_MISUSE);
  assert_int_equal(pm_index_load_delete(ix, &k, 50), PM_MISUSE);
  assert_int_equal(pm_index_load_end(ix), PM_MISUSE);
  pm_index_load_begin(ix);
  assert_int_equal(pm_index_put(ix, &k, 50, 0, 0, 1, PM_BLOB), PM_MISUSE);
  assert_int_equal(pm_index_delete(ix, &k, 50), PM_MISUSE);
  assert_int_equal(pm_index_compact(ix, LATEST), PM_MISUSE);
  assert_int_equal(pm_index_load_end(ix), PM_OK);
  assert_int_equal(pm_index_versions(ix), 1);
  assert_int_equal(pm_index_max_seq(ix), 11);
  pm_index_free(ix);
}

/* ---- Versions and snapshots --------------------------------------------------------- */

static void test_snapshots(void **state) {
  (void)state;
  pm_index *ix = pm_index_new(3);
  pm_key a = text_key("a"), b = text_key("b"), c = text_key("c");
  put(ix, &a, 1, 1);   /* a1 */
  put(ix, &b, 2, 1);   /* b2 */
  put(ix, &a, 3, 1);   /* a3 replaces a1 */
  del(ix, &b, 4);      /* b deleted */
  put(ix, &c, 5, 1);
  put(ix, &b, 6, 1);   /* b back */
  put(ix, &a, 7, 1);
  del(ix, &a, 8);

  expect_absent(ix, &a, 0);
  expect_found(ix, &a, 1, 1);
  expect_found(ix, &a, 2, 1);
  expect_found(ix, &a, 3, 3);
  expect_found(ix, &a, 6, 3);
  expect_found(ix, &a, 7, 7);
  expect_absent(ix, &a, 8);
  expect_absent(ix, &a, LATEST);

  expect_absent(ix, &b, 1);
  expect_found(ix, &b, 2, 2);
  expect_found(ix, &b, 3, 2);
  expect_absent(ix, &b, 4);
  expect_absent(ix, &b, 5);
  expect_found(ix, &b, 6, 6);
  expect_found(ix, &b, LATEST, 6);

  expect_absent(ix, &c, 4);
  expect_found(ix, &c, 5, 5);
  expect_found(ix, &c, LATEST, 5);
  assert_int_equal(pm_index_count(ix), 2);
  assert_int_equal(pm_index_versions(ix), 8);
  pm_index_free(ix);
}

/* ---- Iteration ------------------------------------------------------------------------- */

static void test_iteration(void **state) {
  (void)state;
  pm_index *ix = pm_index_new(5);
  pm_key k[6];
  char names[6][8];
  name_keys(k, names, 6);
  for (int i = 0; i < 5; i++) put(ix, &k[i], (uint64_t)i + 1, 1);   /* k0..k4 at 1..5 */
  put(ix, &k[1], 6, 1);
  del(ix, &k[3], 7);
  put(ix, &k[5], 8, 1);

  const uint64_t latest[] = { 1, 3, 5, 6, 8 };
  const uint64_t at5[] = { 1, 2, 3, 4, 5 };
  const uint64_t at6[] = { 1, 3, 4, 5, 6 };
  const uint64_t at7[] = { 1, 3, 5, 6 };
  expect_scan(ix, LATEST, latest, 5);
  expect_scan(ix, 5, at5, 5);
  expect_scan(ix, 6, at6, 5);
  expect_scan(ix, 7, at7, 4);
  expect_scan(ix, 0, NULL, 0);

  uint64_t got[16];
  assert_int_equal(scan_forward(ix, LATEST, 4, got, 16), 3);   /* seek(4): 5, 6, 8 */
  assert_int_equal(got[0], 5);
  assert_int_equal(got[2], 8);
  assert_int_equal(scan_forward(ix, 6, 3, got, 16), 4);        /* 3, 4, 5, 6 */
  assert_int_equal(got[0], 3);
  assert_int_equal(scan_forward(ix, LATEST, 9, got, 16), 0);
  assert_int_equal(pm_index_seek(ix, 9), pm_index_end(ix));
  assert_int_equal(pm_index_seek(ix, 0), 0);
  assert_int_equal(pm_index_seek(ix, 8), 7);

  /* prev from a seek position, at a snapshot older than most versions. */
  pm_ientry e;
  uint32_t pos = pm_index_seek(ix, 3);
  assert_int_equal(pm_index_prev(ix, &pos, LATEST, &e), PM_OK);
  assert_int_equal(e.seq, 1);
  assert_int_equal(pos, 0);
  assert_int_equal(pm_index_prev(ix, &pos, LATEST, &e), PM_NOTFOUND);
  assert_int_equal(pos, 0);
  pos = PM_POS_END;
  assert_int_equal(pm_index_prev(ix, &pos, 2, &e), PM_OK);
  assert_int_equal(e.seq, 2);

  /* next leaves *pos alone at the end. */
  pos = pm_index_seek(ix, 8);
  assert_int_equal(pm_index_next(ix, &pos, LATEST, &e), PM_OK);
  assert_true(same_key(&e.key, &k[5]));
  assert_int_equal(pos, pm_index_end(ix));
  assert_int_equal(pm_index_next(ix, &pos, LATEST, &e), PM_NOTFOUND);
  assert_int_equal(pos, pm_index_end(ix));
  pm_index_free(ix);
}

/* ---- Compaction -------------------------------------------------------------------------- */

/* A picture of what readers see at snap: every visible version, in order. */
typedef struct view {
  size_t n;
  uint64_t seq[512];
  uint32_t seg[512];
  uint64_t off[512];
} view;

static void take_view(const pm_index *ix, uint64_t snap, view *v) {
  uint32_t pos = 0;
  pm_ientry e;
  v->n = 0;
  while (pm_index_next(ix, &pos, snap, &e) == PM_OK) {
    assert_true(v->n < 512);
    v->seq[v->n] = e.seq;
    v->seg[v->n] = e.seg;
    v->off[v->n] = e.off;
    v->n++;
  }
}

static void expect_same_view(const pm_index *ix, uint64_t snap, const view *before) {
  view now;
  take_view(ix, snap, &now);
  assert_int_equal(now.n, before->n);
  for (size_t i = 0; i < now.n; i++) {
    assert_int_equal(now.seq[i], before->seq[i]);
    assert_int_equal(now.seg[i], before->seg[i]);
    assert_int_equal(now.off[i], before->off[i]);
  }
}

static void test_compact_without_snapshot(void **state) {
  (void)state;
  pm_index *ix = pm_index_new(9);
  pm_key k[100];
  char names[100][8];
  name_keys(k, names, 100);
  uint64_t seq = 0;
  for (int i = 0; i < 100; i++) put(ix, &k[i], ++seq, 10);
  for (int i = 0; i < 20; i++) put(ix, &k[i], ++seq, 20);   /* 20 dead of 120 */
  uint64_t gen = pm_index_generation(ix);
  assert_int_equal(pm_index_compact(ix, LATEST), PM_OK);
  assert_int_equal(pm_index_versions(ix), 120);            /* under a quarter: nothing */
  assert_int_equal(pm_index_generation(ix), gen);

  for (int i = 20; i < 40; i++) put(ix, &k[i], ++seq, 20);  /* 40 dead of 140 */
  view before;
  take_view(ix, LATEST, &before);
  size_t mem_before = pm_index_mem_bytes(ix);
  assert_int_equal(pm_index_compact(ix, LATEST), PM_OK);
  assert_int_equal(pm_index_versions(ix), 100);
  assert_int_equal(pm_index_generation(ix), gen + 1);
  assert_true(pm_index_mem_bytes(ix) <= mem_before);
  expect_same_view(ix, LATEST, &before);
  assert_int_equal(pm_index_count(ix), 100);
  assert_int_equal(pm_index_live_bytes(ix), 100 * 6 + 40 * 20 + 60 * 10);
  for (int i = 0; i < 100; i++) expect_found(ix, &k[i], LATEST, i < 40 ? 101 + (uint64_t)i : (uint64_t)i + 1);

  /* Still a working index: writes go on after compaction. */
  put(ix, &k[0], ++seq, 1);
  del(ix, &k[1], ++seq);
  expect_found(ix, &k[0], LATEST, seq - 1);
  expect_absent(ix, &k[1], LATEST);
  expect_found(ix, &k[1], seq - 1, 102);
  pm_index_free(ix);
}

static void test_compact_with_pinned_snapshot(void **state) {
  (void)state;
  pm_index *ix = pm_index_new(11);
  pm_key k[100];
  char names[100][8];
  name_keys(k, names, 100);
  uint64_t seq = 0;
  for (int i = 0; i < 100; i++) put(ix, &k[i], ++seq, 1);
  uint64_t s1 = seq;
  for (int i = 0; i < 100; i++) put(ix, &k[i], ++seq, 2);
  uint64_t s2 = seq;
  for (int i = 0; i < 100; i++) put(ix, &k[i], ++seq, 3);

  view v1, v2, v3;
  take_view(ix, s1, &v1);
  take_view(ix, s2, &v2);
  take_view(ix, LATEST, &v3);
  uint64_t gen = pm_index_generation(ix);

  /* s1 pins everything: no version is superseded at or before it. */
  assert_int_equal(pm_index_compact(ix, s1), PM_OK);
  assert_int_equal(pm_index_versions(ix), 300);
  assert_int_equal(pm_index_generation(ix), gen);
  /* s1 + 50: 50 droppable of 300 is under a quarter. */
  assert_int_equal(pm_index_compact(ix, s1 + 50), PM_OK);
  assert_int_equal(pm_index_versions(ix), 300);
  expect_same_view(ix, s1, &v1);

  /* s2 pins the second round: the first is dropped. */
  assert_int_equal(pm_index_compact(ix, s2), PM_OK);
  assert_int_equal(pm_index_versions(ix), 200);
  assert_int_equal(pm_index_generation(ix), gen + 1);
  expect_same_view(ix, s2, &v2);
  expect_same_view(ix, LATEST, &v3);
  for (int i = 0; i < 100; i++) {
    expect_found(ix, &k[i], s2, s1 + 1 + (uint64_t)i);
    expect_found(ix, &k[i], s2 + 50, i < 50 ? s2 + 1 + (uint64_t)i : s1 + 1 + (uint64_t)i);
  }

  /* Unpinned: only the newest versions stay. */
  assert_int_equal(pm_index_compact(ix, LATEST), PM_OK);
  assert_int_equal(pm_index_versions(ix), 100);
  assert_int_equal(pm_index_generation(ix), gen + 2);
  expect_same_view(ix, LATEST, &v3);
  pm_index_free(ix);
}

static void test_compact_tombstones(void **state) {
  (void)state;
  pm_index *ix = pm_index_new(13);
  pm_key k[10];
  char names[10][8];
  name_keys(k, names, 10);
  for (int i = 0; i < 10; i++) put(ix, &k[i], (uint64_t)i + 1, 5);
  uint64_t before_deletes = 10;
  for (int i = 0; i < 5; i++) del(ix, &k[i], 11 + (uint64_t)i);   /* seqs 11..15 */
  assert_int_equal(pm_index_versions(ix), 15);

  /* Pinned before the deletes: tombstones and what they deleted stay. */
  assert_int_equal(pm_index_compact(ix, before_deletes), PM_OK);
  assert_int_equal(pm_index_versions(ix), 15);
  /* Pinned between deletes: the first three deletes are gone for good, the
  ** other two still shadow their versions for snapshot 13. */
  assert_int_equal(pm_index_compact(ix, 13), PM_OK);
  assert_int_equal(pm_index_versions(ix), 9);
  for (int i = 0; i < 3; i++) expect_absent(ix, &k[i], 13);
  expect_found(ix, &k[3], 13, 4);
  expect_found(ix, &k[4], 13, 5);
  expect_absent(ix, &k[3], 14);
  expect_found(ix, &k[4], 14, 5);
  expect_absent(ix, &k[4], LATEST);
  const uint64_t at13[] = { 4, 5, 6, 7, 8, 9, 10 };
  expect_scan(ix, 13, at13, 7);

  /* A key deleted and put back: the tombstone goes, the new version stays. */
  put(ix, &k[0], 16, 5);
  put(ix, &k[3], 17, 5);
  assert_int_equal(pm_index_compact(ix, LATEST), PM_OK);
  assert_int_equal(pm_index_versions(ix), 7);
  expect_found(ix, &k[0], LATEST, 16);
  expect_found(ix, &k[3], LATEST, 17);
  expect_absent(ix, &k[1], LATEST);
  expect_absent(ix, &k[4], LATEST);
  const uint64_t last[] = { 6, 7, 8, 9, 10, 16, 17 };
  expect_scan(ix, LATEST, last, 7);
  assert_int_equal(pm_index_count(ix), 7);
  assert_int_equal(pm_index_live_bytes(ix), 7 * (6 + 5));
  assert_int_equal(pm_index_max_seq(ix), 17);

  /* Deleting every key leaves an empty slab. */
  uint64_t seq = 17;
  const uint64_t live[] = { 0, 3, 5, 6, 7, 8, 9 };
  for (int i = 0; i < 7; i++) del(ix, &k[live[i]], ++seq);
  assert_int_equal(pm_index_compact(ix, LATEST), PM_OK);
  assert_int_equal(pm_index_versions(ix), 0);
  assert_int_equal(pm_index_count(ix), 0);
  put(ix, &k[9], ++seq, 1);
  expect_found(ix, &k[9], LATEST, seq);
  pm_index_free(ix);
}

/* Iterating while the index is compacted: re-seek by seq when the
** generation changes and the rows continue as if nothing happened. */
static void test_iterate_across_compaction(void **state) {
  (void)state;
  pm_index *ix = pm_index_new(17);
  pm_key k[200];
  char names[200][8];
  name_keys(k, names, 200);
  uint64_t seq = 0;
  for (int i = 0; i < 200; i++) put(ix, &k[i], ++seq, 1);
  for (int i = 0; i < 200; i += 2) put(ix, &k[i], ++seq, 1);   /* dead before the snapshot */
  uint64_t snap = seq;
  view whole;
  take_view(ix, snap, &whole);

  uint32_t pos = pm_index_seek(ix, 0);
  uint64_t gen = pm_index_generation(ix);
  assert_int_equal(gen, 0);
  size_t n = 0;
  pm_ientry e;
  for (;;) {
    if (pm_index_generation(ix) != gen) {
      gen = pm_index_generation(ix);
      pos = pm_index_seek(ix, whole.seq[n - 1] + 1);
    }
    if (pm_index_next(ix, &pos, snap, &e) != PM_OK) break;
    assert_int_equal(e.seq, whole.seq[n]);
    n++;
    if (n % 50 == 0) {
      /* Compact with the reader's snapshot as the oldest (the first time
      ** drops the versions replaced before it), then writers replace keys
      ** ahead of and behind the reader. */
      assert_int_equal(pm_index_compact(ix, snap), PM_OK);
      for (int i = 1; i < 200; i += 2) put(ix, &k[i], ++seq, 2);
    }
  }
  assert_int_equal(n, 200);
  assert_int_equal(pm_index_generation(ix), 1);   /* exactly one compaction happened */
  pm_index_free(ix);
}

/* ---- Relocation -------------------------------------------------------------------------- */

static void test_relocate(void **state) {
  (void)state;
  pm_index *ix = pm_index_new(19);
  pm_key k = text_key("moving"), other = text_key("other");
  pm_ientry e;
  put(ix, &k, 1, 1);
  put(ix, &k, 2, 1);
  put(ix, &other, 3, 1);
  assert_int_equal(pm_index_relocate(ix, &k, 1, 90, 9000), PM_OK);
  assert_int_equal(pm_index_find(ix, &k, 1, &e), PM_OK);
  assert_int_equal(e.seg, 90);
  assert_int_equal(e.off, 9000);
  expect_found(ix, &k, LATEST, 2);   /* only that version moved */
  assert_int_equal(pm_index_relocate(ix, &k, 2, 91, 9100), PM_OK);
  assert_int_equal(pm_index_find(ix, &k, LATEST, &e), PM_OK);
  assert_int_equal(e.seg, 91);
  assert_int_equal(e.off, 9100);
  expect_found(ix, &other, LATEST, 3);

  assert_int_equal(pm_index_relocate(ix, &k, 3, 1, 1), PM_NOTFOUND);    /* another key's seq */
  assert_int_equal(pm_index_relocate(ix, &k, 99, 1, 1), PM_NOTFOUND);
  pm_key absent = text_key("absent");
  assert_int_equal(pm_index_relocate(ix, &absent, 1, 1, 1), PM_NOTFOUND);
  assert_int_equal(pm_index_relocate(ix, &k, 2, 1, (uint64_t)1 << 41), PM_MISUSE);
  del(ix, &k, 4);
  assert_int_equal(pm_index_relocate(ix, &k, 4, 1, 1), PM_NOTFOUND);     /* a tombstone */
  assert_int_equal(pm_index_compact(ix, LATEST), PM_OK);
  assert_int_equal(pm_index_relocate(ix, &k, 1, 1, 1), PM_NOTFOUND);     /* compacted away */
  assert_int_equal(pm_index_versions(ix), 1);
  pm_index_free(ix);
}

/* ---- Loading ------------------------------------------------------------------------------ */

static void test_load_rules(void **state) {
  (void)state;
  pm_index *ix = pm_index_new(23);
  char long_i[101], long_j[101];
  memset(long_i, 'i', 100);
  memset(long_j, 'j', 100);
  long_i[100] = long_j[100] = 0;
  pm_key A = text_key("A"), B = text_key("B"), C = text_key("C"), D = text_key("D"),
         E = text_key("E"), F = text_key("F"), G = text_key("G"), H = text_key("H"),
         I = text_key(long_i), J = text_key(long_j);
  pm_index_load_begin(ix);
  assert_int_equal(pm_index_load_put(ix, &A, 10, 0, 10, 1, PM_BLOB), PM_OK);
  assert_int_equal(pm_index_load_put(ix, &A, 5, 0, 5, 1, PM_BLOB), PM_OK);    /* older: ignored */
  assert_int_equal(pm_index_load_put(ix, &B, 3, 0, 3, 1, PM_BLOB), PM_OK);
  assert_int_equal(pm_index_load_delete(ix, &B, 7), PM_OK);                  /* delete beats put */
  assert_int_equal(pm_index_load_delete(ix, &C, 8), PM_OK);                  /* delete seen first */
  assert_int_equal(pm_index_load_put(ix, &C, 4, 0, 4, 1, PM_BLOB), PM_OK);    /* older put: ignored */
  assert_int_equal(pm_index_load_delete(ix, &D, 2), PM_OK);
  assert_int_equal(pm_index_load_put(ix, &D, 9, 0, 9, 1, PM_BLOB), PM_OK);    /* newer put wins */
  assert_int_equal(pm_index_load_put(ix, &E, 6, 0, 6, 1, PM_BLOB), PM_OK);
  assert_int_equal(pm_index_load_delete(ix, &E, 6), PM_OK);                  /* tie: delete wins */
  assert_int_equal(pm_index_load_delete(ix, &F, 11), PM_OK);
  assert_int_equal(pm_index_load_put(ix, &F, 11, 0, 11, 1, PM_BLOB), PM_OK);  /* tie: delete wins */
  assert_int_equal(pm_index_load_put(ix, &G, 12, 1, 12, 1, PM_BLOB), PM_OK);
  assert_int_equal(pm_index_load_put(ix, &G, 12, 2, 12, 1, PM_BLOB), PM_OK);  /* tie of puts: later call */
  assert_int_equal(pm_index_load_put(ix, &H, 1, 0, 1, 7, PM_INTEGER), PM_OK);
  assert_int_equal(pm_index_load_put(ix, &I, 13, 0, 13, 1, PM_BLOB), PM_OK);
  assert_int_equal(pm_index_load_delete(ix, &I, 14), PM_OK);
  assert_int_equal(pm_index_load_put(ix, &J, 15, 0, 15, 1, PM_BLOB), PM_OK);
  assert_int_equal(pm_index_max_seq(ix), 15);
  uint64_t gen = pm_index_generation(ix);
  assert_int_equal(pm_index_load_end(ix), PM_OK);
  assert_true(pm_index_generation(ix) != gen);

  assert_int_equal(pm_index_count(ix), 5);
  assert_int_equal(pm_index_versions(ix), 5);
  assert_int_equal(pm_index_max_seq(ix), 15);
  assert_int_equal(pm_index_live_bytes(ix), 3 * (1 + 1) + (1 + 7) + (100 + 1));
  pm_ientry e;
  uint32_t pos = 0;
  const uint64_t order[] = { 1, 9, 10, 12, 15 };
  const pm_key *order_keys[] = { &H, &D, &A, &G, &J };
  for (int i = 0; i < 5; i++) {
    assert_int_equal(pm_index_next(ix, &pos, LATEST, &e), PM_OK);
    assert_int_equal(e.seq, order[i]);
    assert_int_equal(e.off, order[i]);
    assert_true(same_key(&e.key, order_keys[i]));
  }
  assert_int_equal(pm_index_next(ix, &pos, LATEST, &e), PM_NOTFOUND);
  assert_int_equal(pm_index_find(ix, &G, LATEST, &e), PM_OK);
  assert_int_equal(e.seg, 2);
  assert_int_equal(pm_index_find(ix, &H, LATEST, &e), PM_OK);
  assert_int_equal(e.vtype, PM_INTEGER);
  assert_int_equal(e.vlen, 7);
  const pm_key *gone[] = { &B, &C, &E, &F, &I };
  for (int i = 0; i < 5; i++) assert_int_equal(pm_index_find(ix, gone[i], LATEST, &e), PM_NOTFOUND);

  /* A normal index afterwards: seqs go on above everything loaded. */
  assert_int_equal(pm_index_put(ix, &B, 15, 0, 0, 1, PM_BLOB), PM_MISUSE);
  assert_int_equal(pm_index_put(ix, &B, 16, 0, 0, 1, PM_BLOB), PM_OK);
  del(ix, &A, 17);
  expect_absent(ix, &A, LATEST);
  assert_int_equal(pm_index_find(ix, &A, 16, &e), PM_OK);
  assert_int_equal(e.seq, 10);
  pm_index_free(ix);
}

/* Many keys, several operations each, fed in a random order: the result
** is the highest-seq operation of each key, in seq order. */
static void test_load_random_order(void **state) {
  (void)state;
  enum { KEYS = 5000, OPS = 4 };
  typedef struct op { int key; uint64_t seq; int is_delete; } op;
  uint64_t rng = 99;
  op *ops = malloc(sizeof(op) * KEYS * OPS);
  int *winner = malloc(sizeof(int) * KEYS);
  pm_key *keys = malloc(sizeof(pm_key) * KEYS);
  char (*names)[24] = malloc(24 * KEYS);
  uint64_t *seqs = malloc(sizeof(uint64_t) * KEYS * OPS);
  for (int i = 0; i < KEYS * OPS; i++) seqs[i] = (uint64_t)i * 3 + 1;
  for (int i = KEYS * OPS - 1; i > 0; i--) {   /* shuffle the seqs */
    int j = (int)(tu_rand(&rng) % (uint64_t)(i + 1));
    uint64_t t = seqs[i]; seqs[i] = seqs[j]; seqs[j] = t;
  }
  for (int i = 0; i < KEYS; i++) {
    snprintf(names[i], sizeof names[i], i % 2 ? "k%u" : "a-longer-key-%u", (unsigned)i % 100000u);
    keys[i] = text_key(names[i]);
    winner[i] = -1;
  }
  for (int i = 0; i < KEYS * OPS; i++) {
    ops[i].key = i % KEYS;
    ops[i].seq = seqs[i];
    ops[i].is_delete = tu_rand(&rng) % 3 == 0;
    int *w = &winner[ops[i].key];
    if (*w < 0 || ops[*w].seq < ops[i].seq) *w = i;
  }
  pm_index *ix = pm_index_new(29);
  pm_index_load_begin(ix);
  for (int i = 0; i < KEYS * OPS; i++) {
    const op *o = &ops[i];
    int rc = o->is_delete ? pm_index_load_delete(ix, &keys[o->key], o->seq)
                          : pm_index_load_put(ix, &keys[o->key], o->seq, 1, o->seq, 8, PM_INTEGER);
    assert_int_equal(rc, PM_OK);
  }
  assert_int_equal(pm_index_load_end(ix), PM_OK);

  uint64_t live = 0, last = 0;
  for (int i = 0; i < KEYS; i++) {
    const op *w = &ops[winner[i]];
    pm_ientry e;
    int rc = pm_index_find(ix, &keys[i], LATEST, &e);
    if (w->is_delete) {
      assert_int_equal(rc, PM_NOTFOUND);
    } else {
      assert_int_equal(rc, PM_OK);
      assert_int_equal(e.seq, w->seq);
      assert_int_equal(e.off, w->seq);
      live++;
    }
  }
  assert_int_equal(pm_index_count(ix), live);
  assert_int_equal(pm_index_versions(ix), live);
  assert_int_equal(pm_index_max_seq(ix), (uint64_t)(KEYS * OPS - 1) * 3 + 1);
  uint32_t pos = 0;
  pm_ientry e;
  uint64_t n = 0;
  while (pm_index_next(ix, &pos, LATEST, &e) == PM_OK) {
    assert_true(e.seq > last);
    last = e.seq;
    n++;
  }
  assert_int_equal(n, live);
  pm_index_free(ix);
  free(ops); free(winner); free(keys); free(names); free(seqs);
}

/* Loading into an index that already has versions keeps one per key. */
static void test_load_over_existing(void **state) {
  (void)state;
  pm_index *ix = pm_index_new(31);
  pm_key a = text_key("a"), b = text_key("b"), c = text_key("c");
  put(ix, &a, 1, 1);
  put(ix, &a, 2, 1);
  put(ix, &b, 3, 1);
  del(ix, &b, 4);
  put(ix, &c, 5, 1);
  pm_index_load_begin(ix);
  assert_int_equal(pm_index_load_put(ix, &c, 3, 0, 3, 1, PM_BLOB), PM_OK);   /* older than c5 */
  assert_int_equal(pm_index_load_put(ix, &b, 6, 0, 6, 1, PM_BLOB), PM_OK);
  assert_int_equal(pm_index_load_end(ix), PM_OK);
  assert_int_equal(pm_index_versions(ix), 3);
  assert_int_equal(pm_index_count(ix), 3);
  pm_ientry e;
  assert_int_equal(pm_index_find(ix, &a, LATEST, &e), PM_OK);
  assert_int_equal(e.seq, 2);
  assert_int_equal(pm_index_find(ix, &b, LATEST, &e), PM_OK);
  assert_int_equal(e.seq, 6);
  assert_int_equal(pm_index_find(ix, &c, LATEST, &e), PM_OK);
  assert_int_equal(e.seq, 5);
  assert_int_equal(pm_index_find(ix, &a, 1, &e), PM_NOTFOUND);   /* history is gone */
  const uint64_t order[] = { 2, 5, 6 };
  expect_scan(ix, LATEST, order, 3);
  pm_index_free(ix);
}

/* Loading a log that writes the same few long keys over and over keeps
** one version per key in memory throughout, key bytes included. */
static void test_load_duplicates_stay_small(void **state) {
  (void)state;
  enum { KEYS = 100, ROUNDS = 1000, LEN = 1000 };
  static char names[KEYS][LEN + 1];
  pm_key keys[KEYS];
  for (int i = 0; i < KEYS; i++) {
    memset(names[i], 'a' + i % 26, LEN);
    snprintf(names[i], 8, "%06u", (unsigned)i);
    names[i][6] = '-';
    keys[i] = text_key(names[i]);
  }
  pm_index *ix = pm_index_new(47);
  pm_index_load_begin(ix);
  uint64_t seq = 0;
  size_t most = 0;
  for (int r = 0; r < ROUNDS; r++) {
    for (int i = 0; i < KEYS; i++) {
      seq++;
      int rc = r % 7 == 6 && i % 2 ? pm_index_load_delete(ix, &keys[i], seq)
                                   : pm_index_load_put(ix, &keys[i], seq, seg_of(seq), off_of(seq), 1, PM_BLOB);
      assert_int_equal(rc, PM_OK);
    }
    if (pm_index_mem_bytes(ix) > most) most = pm_index_mem_bytes(ix);
  }
  assert_int_equal(pm_index_load_end(ix), PM_OK);
  /* 100 KB of distinct key bytes; 100 MB went through. */
  assert_true(most < 400 * 1024);
  assert_int_equal(pm_index_count(ix), KEYS);
  assert_int_equal(pm_index_versions(ix), KEYS);
  for (int i = 0; i < KEYS; i++) expect_found(ix, &keys[i], LATEST, (uint64_t)(ROUNDS - 1) * KEYS + (uint64_t)i + 1);
  pm_index_free(ix);
}

/* Seqs spread over more than 2^32 (a store with billions of writes behind
** it) still load in seq order. */
static void test_load_wide_seqs(void **state) {
  (void)state;
  enum { N = 20000 };
  uint64_t rng = 53;
  uint64_t *seqs = malloc(sizeof(uint64_t) * N);
  static char names[N][12];
  pm_key *keys = malloc(sizeof(pm_key) * N);
  for (int i = 0; i < N; i++) {
    /* clusters of nearby seqs far apart, so that many share their top bits */
    seqs[i] = ((tu_rand(&rng) % 64) << 40) + (tu_rand(&rng) % 100000) * 2 + 1;
    for (int j = 0; j < i; j++) {
      if (seqs[j] == seqs[i]) { seqs[i] += 2; j = -1; }
    }
    snprintf(names[i], sizeof names[i], "w%u", (unsigned)i);
    keys[i] = text_key(names[i]);
  }
  pm_index *ix = pm_index_new(59);
  pm_index_load_begin(ix);
  for (int i = 0; i < N; i++) assert_int_equal(pm_index_load_put(ix, &keys[i], seqs[i], 2, 0, 1, PM_BLOB), PM_OK);
  assert_int_equal(pm_index_load_end(ix), PM_OK);
  uint32_t pos = 0;
  pm_ientry e;
  uint64_t last = 0;
  int n = 0;
  while (pm_index_next(ix, &pos, LATEST, &e) == PM_OK) {
    assert_true(e.seq > last);
    last = e.seq;
    n++;
  }
  assert_int_equal(n, N);
  for (int i = 0; i < N; i += 97) {
    assert_int_equal(pm_index_find(ix, &keys[i], LATEST, &e), PM_OK);
    assert_int_equal(e.seq, seqs[i]);
    assert_int_equal(pm_index_seek(ix, seqs[i]), e.pos);
  }
  pm_index_free(ix);
  free(seqs);
  free(keys);
}

/* ---- A counting allocator that can fail ------------------------------------------------------ */

static long alloc_calls;      /* allocations attempted since the last reset */
static long fail_at;          /* the allocation with this number fails; 0: none */
static int fail_every;        /* every allocation fails */
static long live_blocks;      /* blocks allocated and not yet freed */

#define ABSURD_SIZE ((size_t)1 << 36)   /* refused like a system out of memory */

static void *counting_malloc(size_t n) {
  if (++alloc_calls == fail_at || fail_every || n > ABSURD_SIZE) return NULL;
  void *p = malloc(n);
  if (p) live_blocks++;
  return p;
}

static void *counting_realloc(void *p, size_t n) {
  if (++alloc_calls == fail_at || fail_every || n > ABSURD_SIZE) return NULL;
  return realloc(p, n);
}

static void counting_free(void *p) {
  live_blocks--;
  free(p);
}

static const pm_allocator counting = { counting_malloc, counting_realloc, counting_free };

static void use_counting_allocator(void) {
  alloc_calls = fail_at = live_blocks = 0;
  fail_every = 0;
  pm_set_allocator(&counting);
}

/* ---- Reservation -------------------------------------------------------------------------- */

static void test_reserve(void **state) {
  (void)state;
  use_counting_allocator();
  pm_index *ix = pm_index_new(37);
  enum { N = 3000 };
  static char names[N][24];
  pm_key keys[N];
  for (int i = 0; i < N; i++) {
    snprintf(names[i], sizeof names[i], "reserved-key-%06u", (unsigned)i % 1000000u);   /* 19 bytes: in the arena */
    keys[i] = text_key(names[i]);
  }
  assert_int_equal(pm_index_reserve(ix, N, N * 19), PM_OK);
  long live = live_blocks;
  fail_every = 1;
  for (int i = 0; i < N; i++) put(ix, &keys[i], (uint64_t)i + 1, 1);
  fail_every = 0;
  assert_int_equal(live_blocks, live);
  assert_int_equal(pm_index_count(ix), N);

  /* Overwrites and deletes need room in the slab only. */
  assert_int_equal(pm_index_reserve(ix, 1000, 0), PM_OK);
  live = live_blocks;
  fail_every = 1;
  for (int i = 0; i < 500; i++) put(ix, &keys[i], (uint64_t)N + 1 + (uint64_t)i, 2);
  for (int i = 0; i < 500; i++) del(ix, &keys[N - 1 - i], (uint64_t)N + 501 + (uint64_t)i);
  pm_key beyond = text_key("a key beyond the reserved bytes");
  assert_int_equal(pm_index_put(ix, &beyond, 99999, 0, 0, 1, PM_BLOB), PM_NOMEM);
  fail_every = 0;
  assert_int_equal(pm_index_count(ix), N - 500);

  /* A reservation that cannot be met changes nothing. */
  size_t mem = pm_index_mem_bytes(ix);
  assert_int_equal(pm_index_reserve(ix, (size_t)UINT32_MAX, 0), PM_NOMEM);
  assert_int_equal(pm_index_reserve(ix, 10, SIZE_MAX / 2), PM_NOMEM);
  assert_int_equal(pm_index_mem_bytes(ix), mem);
  assert_int_equal(live_blocks, live);
  pm_index_free(ix);
  assert_int_equal(live_blocks, 0);
  pm_set_allocator(NULL);
}

/* ---- Keys of every shape ------------------------------------------------------------------ */

static void test_key_shapes(void **state) {
  (void)state;
  static const uint32_t lens[] = { 0, 1, 8, 9, 65536 };
  enum { NLEN = 5, NTYPE = 4 };
  uint8_t *bytes = malloc(PM_MAX_KEY);
  for (uint32_t i = 0; i < PM_MAX_KEY; i++) bytes[i] = (uint8_t)(i * 31 + 7);
  pm_key keys[NLEN * NTYPE];
  for (int l = 0; l < NLEN; l++) {
    for (int t = 0; t < NTYPE; t++) {
      pm_key k = { (uint8_t)(PM_INTEGER + t), lens[l], lens[l] ? bytes : NULL };
      keys[l * NTYPE + t] = k;
    }
  }
  pm_index *ix = pm_index_new(41);
  uint64_t seq = 0;
  for (int i = 0; i < NLEN * NTYPE; i++) put(ix, &keys[i], ++seq, (uint32_t)i);
  assert_int_equal(pm_index_count(ix), NLEN * NTYPE);   /* all distinct */
  for (int i = 0; i < NLEN * NTYPE; i++) {
    pm_ientry e;
    assert_int_equal(pm_index_find(ix, &keys[i], LATEST, &e), PM_OK);
    assert_int_equal(e.seq, (uint64_t)i + 1);
    assert_int_equal(e.vlen, i);
    assert_true(same_key(&e.key, &keys[i]));
  }
  /* The same bytes one shorter or longer are other keys. */
  pm_key shorter = { PM_BLOB, 7, bytes }, longer = { PM_BLOB, 10, bytes };
  expect_absent(ix, &shorter, LATEST);
  expect_absent(ix, &longer, LATEST);

  /* Overwrite every other key, delete a few, compact, and check the keys
  ** come back byte for byte (long ones were moved to a fresh arena). */
  for (int i = 0; i < NLEN * NTYPE; i += 2) put(ix, &keys[i], ++seq, 1);
  for (int i = 1; i < NLEN * NTYPE; i += 4) del(ix, &keys[i], ++seq);
  assert_int_equal(pm_index_compact(ix, LATEST), PM_OK);
  assert_int_equal(pm_index_versions(ix), pm_index_count(ix));
  uint32_t pos = 0;
  pm_ientry e;
  int seen = 0;
  while (pm_index_next(ix, &pos, LATEST, &e) == PM_OK) {
    int found = 0;
    for (int i = 0; i < NLEN * NTYPE; i++) found += same_key(&e.key, &keys[i]);
    assert_int_equal(found, 1);
    seen++;
  }
  assert_int_equal(seen, NLEN * NTYPE - 5);
  for (int i = 0; i < NLEN * NTYPE; i++) {
    if (i % 4 == 1) expect_absent(ix, &keys[i], LATEST);
    else assert_int_equal(pm_index_find(ix, &keys[i], LATEST, &e), PM_OK);
  }
  pm_index_free(ix);
  free(bytes);
}

/* Deleting most long keys and compacting gives their arena bytes back. */
static void test_arena_reclaimed(void **state) {
  (void)state;
  pm_index *ix = pm_index_new(43);
  enum { N = 2000 };
  static char names[N][80];
  pm_key keys[N];
  uint64_t seq = 0;
  for (int i = 0; i < N; i++) {
    snprintf(names[i], sizeof names[i], "%070u", (unsigned)i % 100000u);
    keys[i] = text_key(names[i]);
    put(ix, &keys[i], ++seq, 1);
  }
  size_t full = pm_index_mem_bytes(ix);
  for (int i = 0; i < N; i++) {
    if (i % 10) del(ix, &keys[i], ++seq);
  }
  assert_int_equal(pm_index_compact(ix, LATEST), PM_OK);
  assert_int_equal(pm_index_versions(ix), N / 10);
  size_t after = pm_index_mem_bytes(ix);
  assert_true(after < full / 4);
  for (int i = 0; i < N; i++) {
    if (i % 10) expect_absent(ix, &keys[i], LATEST);
    else expect_found(ix, &keys[i], LATEST, (uint64_t)i + 1);
  }
  pm_index_free(ix);
}

/* ---- Randomized comparison with a reference model --------------------------------------------- */

/* The model keeps every version ever written, in seq order. */
typedef struct mversion {
  int key;
  uint64_t seq;
  int tombstone;
  uint32_t vlen, seg;
  uint64_t off;
  uint8_t vtype;
  int prev, next;    /* the key's previous and next versions, or -1 */
  int dropped;       /* compacted away in the index */
} mversion;

typedef struct model {
  pm_key *keys;
  int nkeys;
  int *newest;       /* per key: newest version, or -1 */
  mversion *v;
  int n, cap;
  int *kept;         /* versions not dropped (what the index holds), in seq order */
  int nkept, kept_cap;
  uint64_t seq;
  uint64_t snaps[8]; /* snapshots held by pretend readers */
  int nsnaps;
} model;

/* A pool of distinct keys of every type and many lengths; keys of one
** group share their bytes and differ by type. */
static void make_key_pool(model *m, int n, uint64_t seed) {
  static const uint32_t lens[] = { 0, 1, 3, 7, 8, 9, 12, 16, 33, 200 };
  m->keys = calloc((size_t)n, sizeof(pm_key));
  m->nkeys = 0;
  for (int g = 0; m->nkeys < n; g++) {
    uint32_t len = lens[g % 10];
    uint8_t *data = malloc(len ? len : 1);
    uint64_t r = seed ^ (uint64_t)g * 0x9E3779B97F4A7C15ull;
    for (uint32_t i = 0; i < len; i++) data[i] = (uint8_t)tu_rand(&r);
    int used = 0;
    for (int t = PM_INTEGER; t <= PM_BLOB && m->nkeys < n; t++) {
      pm_key k = { (uint8_t)t, len, data };
      int dup = 0;
      for (int i = 0; i < m->nkeys && !dup; i++) dup = same_key(&m->keys[i], &k);
      if (!dup) {
        m->keys[m->nkeys++] = k;
        used = 1;
      }
    }
    if (!used) free(data);
  }
}

static void model_init(model *m, int nkeys, uint64_t seed) {
  memset(m, 0, sizeof *m);
  make_key_pool(m, nkeys, seed);
  m->newest = malloc(sizeof(int) * (size_t)nkeys);
  for (int i = 0; i < nkeys; i++) m->newest[i] = -1;
}

static void model_free(model *m) {
  for (int i = 0; i < m->nkeys; i++) {
    if (i % 4 == 0 || m->keys[i].data != m->keys[i - 1].data) free((void *)m->keys[i].data);
  }
  free(m->keys);
  free(m->newest);
  free(m->v);
  free(m->kept);
}

/* Record a write of key at the next seq in the model; returns the version. */
static mversion *model_write(model *m, int key, int tombstone) {
  if (m->n == m->cap) {
    m->cap = m->cap ? m->cap * 2 : 1024;
    m->v = realloc(m->v, sizeof(mversion) * (size_t)m->cap);
  }
  mversion *v = &m->v[m->n];
  memset(v, 0, sizeof *v);
  v->key = key;
  v->seq = ++m->seq;
  v->tombstone = tombstone;
  v->prev = m->newest[key];
  v->next = -1;
  if (v->prev >= 0) m->v[v->prev].next = m->n;
  if (m->nkept == m->kept_cap) {
    m->kept_cap = m->kept_cap ? m->kept_cap * 2 : 1024;
    m->kept = realloc(m->kept, sizeof(int) * (size_t)m->kept_cap);
  }
  m->kept[m->nkept++] = m->n;
  m->newest[key] = m->n++;
  return v;
}

/* True when key is live at the newest state of the model. */
static int model_live(const model *m, int key) {
  return m->newest[key] >= 0 && !m->v[m->newest[key]].tombstone;
}

/* The versions visible at snap, in seq order, as indexes into m->v. Only
** snapshots no older than every compaction's oldest are asked for, and
** those never see a dropped version. */
static int model_visible(const model *m, uint64_t snap, int *out) {
  int n = 0;
  for (int i = 0; i < m->nkept; i++) {
    const mversion *v = &m->v[m->kept[i]];
    if (v->seq > snap) break;
    int superseded = v->next >= 0 && m->v[v->next].seq <= snap;
    if (!superseded && !v->tombstone) out[n++] = m->kept[i];
  }
  return n;
}

/* An index entry must describe model version v. */
static void expect_entry(const model *m, const pm_ientry *e, const mversion *v) {
  assert_int_equal(e->seq, v->seq);
  assert_int_equal(e->seg, v->seg);
  assert_int_equal(e->off, v->off);
  assert_int_equal(e->vlen, v->vlen);
  assert_int_equal(e->vtype, v->vtype);
  assert_true(same_key(&e->key, &m->keys[v->key]));
}

/* The whole view at snap must match the model: forwards, backwards, and
** from a random seek position. */
static void check_view(const pm_index *ix, const model *m, uint64_t snap, uint64_t *rng) {
  int *want = malloc(sizeof(int) * (size_t)m->nkeys);
  int n = model_visible(m, snap, want);
  uint32_t pos = 0;
  pm_ientry e;
  for (int i = 0; i < n; i++) {
    assert_int_equal(pm_index_next(ix, &pos, snap, &e), PM_OK);
    expect_entry(m, &e, &m->v[want[i]]);
  }
  assert_int_equal(pm_index_next(ix, &pos, snap, &e), PM_NOTFOUND);
  pos = pm_index_end(ix);
  for (int i = n - 1; i >= 0; i--) {
    assert_int_equal(pm_index_prev(ix, &pos, snap, &e), PM_OK);
    expect_entry(m, &e, &m->v[want[i]]);
  }
  assert_int_equal(pm_index_prev(ix, &pos, snap, &e), PM_NOTFOUND);
  uint64_t from = tu_rand(rng) % (m->seq + 2);
  int i = 0;
  while (i < n && m->v[want[i]].seq < from) i++;
  pos = pm_index_seek(ix, from);
  for (; i < n; i++) {
    assert_int_equal(pm_index_next(ix, &pos, snap, &e), PM_OK);
    expect_entry(m, &e, &m->v[want[i]]);
  }
  assert_int_equal(pm_index_next(ix, &pos, snap, &e), PM_NOTFOUND);
  free(want);
}

/* Figures at the newest state must match the model. */
static void check_figures(const pm_index *ix, const model *m) {
  uint64_t live = 0, bytes = 0;
  for (int k = 0; k < m->nkeys; k++) {
    if (!model_live(m, k)) continue;
    live++;
    bytes += m->keys[k].len + m->v[m->newest[k]].vlen;
  }
  assert_int_equal(pm_index_count(ix), live);
  assert_int_equal(pm_index_live_bytes(ix), bytes);
  assert_int_equal(pm_index_max_seq(ix), m->seq);
  assert_int_equal(pm_index_versions(ix), (uint64_t)m->nkept);
}

/* Find one key at snap and compare with the model. */
static void check_find(const pm_index *ix, const model *m, int key, uint64_t snap) {
  int found = m->newest[key];
  while (found >= 0 && m->v[found].seq > snap) found = m->v[found].prev;
  pm_ientry e;
  int rc = pm_index_find(ix, &m->keys[key], snap, &e);
  if (found < 0 || m->v[found].tombstone) {
    assert_int_equal(rc, PM_NOTFOUND);
  } else {
    assert_int_equal(rc, PM_OK);
    expect_entry(m, &e, &m->v[found]);
  }
}

/* The oldest snapshot a pretend reader holds, or LATEST. */
static uint64_t model_oldest_snap(const model *m) {
  uint64_t oldest = LATEST;
  for (int i = 0; i < m->nsnaps; i++) {
    if (m->snaps[i] < oldest) oldest = m->snaps[i];
  }
  return oldest;
}

/* The rule of index.h: no snapshot >= oldest can see v. */
static int model_droppable(const model *m, const mversion *v, uint64_t oldest) {
  return (v->next >= 0 && m->v[v->next].seq <= oldest) || (v->tombstone && v->seq <= oldest);
}

/* Compact both: the model drops what the rule says, if a quarter or more. */
static void compact_both(pm_index *ix, model *m) {
  uint64_t oldest = model_oldest_snap(m);
  int droppable = 0;
  for (int i = 0; i < m->nkept; i++) droppable += model_droppable(m, &m->v[m->kept[i]], oldest);
  uint64_t gen = pm_index_generation(ix);
  assert_int_equal(pm_index_compact(ix, oldest), PM_OK);
  if (droppable == 0 || droppable * 4 < m->nkept) {
    assert_int_equal(pm_index_generation(ix), gen);
    assert_int_equal(pm_index_versions(ix), (uint64_t)m->nkept);
    return;
  }
  int n = 0;
  for (int i = 0; i < m->nkept; i++) {
    mversion *v = &m->v[m->kept[i]];
    if (model_droppable(m, v, oldest)) v->dropped = 1;
    else m->kept[n++] = m->kept[i];
  }
  m->nkept = n;
  assert_int_equal(pm_index_generation(ix), gen + 1);
  assert_int_equal(pm_index_versions(ix), (uint64_t)m->nkept);
}

/* One random operation on both the index and the model. */
static void random_step(pm_index *ix, model *m, uint64_t *rng) {
  int key = (int)(tu_rand(rng) % (uint64_t)m->nkeys);
  int dice = (int)(tu_rand(rng) % 100);
  if (dice < 45) {
    mversion *v = model_write(m, key, 0);
    v->vlen = (uint32_t)(tu_rand(rng) % 5000);
    v->vtype = (uint8_t)(PM_INTEGER + tu_rand(rng) % 5);
    v->seg = (uint32_t)tu_rand(rng);
    v->off = tu_rand(rng) % ((uint64_t)1 << 41);
    assert_int_equal(pm_index_put(ix, &m->keys[key], v->seq, v->seg, v->off, v->vlen, v->vtype), PM_OK);
  } else if (dice < 65) {
    if (!model_live(m, key)) {
      assert_int_equal(pm_index_delete(ix, &m->keys[key], m->seq + 1), PM_NOTFOUND);
    } else {
      mversion *v = model_write(m, key, 1);
      assert_int_equal(pm_index_delete(ix, &m->keys[key], v->seq), PM_OK);
    }
  } else if (dice < 70) {
    if (m->nsnaps < 8) m->snaps[m->nsnaps++] = m->seq;
  } else if (dice < 75) {
    if (m->nsnaps > 0) {
      uint64_t gone = tu_rand(rng) % (uint64_t)m->nsnaps;
      m->nsnaps--;
      m->snaps[gone] = m->snaps[m->nsnaps];
    }
  } else if (dice < 80) {
    compact_both(ix, m);
  } else if (dice < 85 && m->n > 0) {
    /* Half the time a version the index holds, else any ever written. */
    int i = dice % 2 && m->nkept > 0 ? m->kept[tu_rand(rng) % (uint64_t)m->nkept]
                     : (int)(tu_rand(rng) % (uint64_t)m->n);
    mversion *v = &m->v[i];
    uint32_t seg = (uint32_t)tu_rand(rng);
    uint64_t off = tu_rand(rng) % 100000;
    int rc = pm_index_relocate(ix, &m->keys[v->key], v->seq, seg, off);
    if (v->dropped || v->tombstone) {
      assert_int_equal(rc, PM_NOTFOUND);
    } else {
      assert_int_equal(rc, PM_OK);
      v->seg = seg;
      v->off = off;
    }
  } else {
    uint64_t snap = m->nsnaps && dice % 2 ? m->snaps[tu_rand(rng) % (uint64_t)m->nsnaps] : LATEST;
    check_find(ix, m, key, snap);
  }
}

static void test_random_against_model(void **state) {
  (void)state;
  enum { OPS = 120000, KEYS = 400, CHECK_EVERY = 3000 };
  uint64_t rng = 2024;
  model m;
  model_init(&m, KEYS, 77);
  pm_index *ix = pm_index_new(0x5eed);
  for (int op = 1; op <= OPS; op++) {
    random_step(ix, &m, &rng);
    if (op % CHECK_EVERY == 0) {
      check_figures(ix, &m);
      check_view(ix, &m, LATEST, &rng);
      for (int s = 0; s < m.nsnaps; s++) check_view(ix, &m, m.snaps[s], &rng);
      for (int k = 0; k < m.nkeys; k++) check_find(ix, &m, k, LATEST);
    }
  }
  m.nsnaps = 0;
  compact_both(ix, &m);
  check_figures(ix, &m);
  check_view(ix, &m, LATEST, &rng);
  pm_index_free(ix);
  model_free(&m);
}

/* ---- Allocation failures ------------------------------------------------------------------------
** Each operation runs with its 1st, 2nd, ... allocation failing until it
** succeeds; every failure must leave the index exactly as it was (all it
** shows, memory figure included) and hold no more memory blocks. */

/* A growing text describing everything the index shows. */
typedef struct text {
  char *s;
  size_t n, cap;
} text;

static void text_add(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void text_add(text *t, const char *fmt, ...) {
  char line[256];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  if (t->n + (size_t)n + 1 > t->cap) {
    t->cap = (t->n + (size_t)n + 1) * 2;
    t->s = realloc(t->s, t->cap);
  }
  memcpy(t->s + t->n, line, (size_t)n + 1);
  t->n += (size_t)n;
}

static void describe_entry(text *t, const pm_ientry *e) {
  text_add(t, "%u:%llu/%u/%llu/%u/%u/%u/%u ", e->pos, (unsigned long long)e->seq, e->seg,
           (unsigned long long)e->off, e->vlen, e->vtype, e->key.type, e->key.len);
}

/* Describe the figures, every key of the model at each snapshot, and the
** scans at those snapshots. While loading only max_seq and the memory held
** are fixed: loaded operations are settled into the table in batches. */
static char *describe(const pm_index *ix, const model *m, int loading) {
  text t = { 0 };
  if (loading) {
    text_add(&t, "max %llu mem %zu", (unsigned long long)pm_index_max_seq(ix), pm_index_mem_bytes(ix));
    return t.s;
  }
  text_add(&t, "count %llu bytes %llu max %llu versions %llu gen %llu mem %zu\n",
           (unsigned long long)pm_index_count(ix), (unsigned long long)pm_index_live_bytes(ix),
           (unsigned long long)pm_index_max_seq(ix), (unsigned long long)pm_index_versions(ix),
           (unsigned long long)pm_index_generation(ix), pm_index_mem_bytes(ix));
  uint64_t snaps[10] = { LATEST };
  int nsnaps = 1;
  for (int i = 0; i < m->nsnaps; i++) snaps[nsnaps++] = m->snaps[i];
  for (int s = 0; s < nsnaps; s++) {
    pm_ientry e;
    for (int k = 0; k < m->nkeys; k++) {
      if (pm_index_find(ix, &m->keys[k], snaps[s], &e) == PM_OK) describe_entry(&t, &e);
      else text_add(&t, "- ");
    }
    uint32_t pos = 0;
    while (pm_index_next(ix, &pos, snaps[s], &e) == PM_OK) describe_entry(&t, &e);
    text_add(&t, "\n");
  }
  return t.s;
}

typedef int (*index_op)(pm_index *ix, model *m, int key);

/* Run op with each allocation failing in turn; returns its final result. */
static int run_with_failures(pm_index *ix, model *m, int key, int loading, index_op op) {
  char *before = describe(ix, m, loading);
  long blocks = live_blocks;
  for (long n = 1;; n++) {
    fail_at = alloc_calls + n;
    int rc = op(ix, m, key);
    fail_at = 0;
    if (rc != PM_NOMEM) {
      free(before);
      return rc;
    }
    char *now = describe(ix, m, loading);
    assert_string_equal(now, before);
    assert_int_equal(live_blocks, blocks);
    free(now);
  }
}

static int op_put(pm_index *ix, model *m, int key) {
  return pm_index_put(ix, &m->keys[key], m->seq + 1, 3, m->seq * 10, (uint32_t)key, PM_TEXT);
}

static int op_delete(pm_index *ix, model *m, int key) {
  return pm_index_delete(ix, &m->keys[key], m->seq + 1);
}

static int op_compact(pm_index *ix, model *m, int key) {
  (void)key;
  return pm_index_compact(ix, model_oldest_snap(m));
}

static int op_reserve(pm_index *ix, model *m, int key) {
  (void)m;
  return pm_index_reserve(ix, (size_t)key * 40, (size_t)key * 1000);
}

/* One loaded operation: key, seq, and whether it is a delete. */
typedef struct load_step {
  int key;
  uint64_t seq;
  int is_delete;
} load_step;

static const load_step *current_step;   /* what op_load runs */

static int op_load(pm_index *ix, model *m, int key) {
  (void)key;
  const load_step *st = current_step;
  const pm_key *k = &m->keys[st->key];
  return st->is_delete ? pm_index_load_delete(ix, k, st->seq)
                       : pm_index_load_put(ix, k, st->seq, 1, st->seq, 9, PM_BLOB);
}

static int op_load_end(pm_index *ix, model *m, int key) {
  (void)m;
  (void)key;
  return pm_index_load_end(ix);
}

/* Load steps into ix (which may hold versions already) with every
** allocation failing in turn, then check the result: per key, the
** operation with the highest seq, or what the key had before (before[k]:
** its seq then, 0 if absent). */
static void load_with_failures(pm_index *ix, model *m, const load_step *steps, int n,
                               const uint64_t *before) {
  pm_index_load_begin(ix);
  for (int i = 0; i < n; i++) {
    current_step = &steps[i];
    assert_int_equal(run_with_failures(ix, m, 0, 1, op_load), PM_OK);
  }
  assert_int_equal(run_with_failures(ix, m, 0, 1, op_load_end), PM_OK);
  uint64_t live = 0;
  for (int k = 0; k < m->nkeys; k++) {
    const load_step *win = NULL;
    for (int i = 0; i < n; i++) {
      if (steps[i].key == k && (!win || steps[i].seq > win->seq)) win = &steps[i];
    }
    uint64_t want = win ? (win->is_delete ? 0 : win->seq) : before[k];
    pm_ientry e;
    if (want == 0) {
      assert_int_equal(pm_index_find(ix, &m->keys[k], LATEST, &e), PM_NOTFOUND);
      continue;
    }
    assert_int_equal(pm_index_find(ix, &m->keys[k], LATEST, &e), PM_OK);
    assert_int_equal(e.seq, want);
    live++;
  }
  assert_int_equal(pm_index_count(ix), live);
  assert_int_equal(pm_index_versions(ix), live);
  uint32_t pos = 0;
  uint64_t last = 0, seen = 0;
  pm_ientry e;
  while (pm_index_next(ix, &pos, LATEST, &e) == PM_OK) {
    assert_true(e.seq > last);
    last = e.seq;
    seen++;
  }
  assert_int_equal(seen, live);
}

static void test_allocation_failures(void **state) {
  (void)state;
  use_counting_allocator();
  /* Creating the index itself. */
  pm_index *ix = NULL;
  for (long n = 1; !ix; n++) {
    fail_at = alloc_calls + n;
    ix = pm_index_new(1);
    fail_at = 0;
    if (!ix) assert_int_equal(live_blocks, 0);
  }

  model m;
  model_init(&m, 120, 5);
  uint64_t rng = 31;
  for (int step = 0; step < 900; step++) {
    int key = (int)(tu_rand(&rng) % (uint64_t)m.nkeys);
    int dice = (int)(tu_rand(&rng) % 100);
    if (dice < 55) {
      assert_int_equal(run_with_failures(ix, &m, key, 0, op_put), PM_OK);
      model_write(&m, key, 0);   /* the model gives describe its keys and the next seq */
    } else if (dice < 80) {
      int rc = run_with_failures(ix, &m, key, 0, op_delete);
      assert_int_equal(rc, model_live(&m, key) ? PM_OK : PM_NOTFOUND);
      if (rc == PM_OK) model_write(&m, key, 1);
    } else if (dice < 85) {
      if (m.nsnaps < 3) m.snaps[m.nsnaps++] = m.seq;
      else m.nsnaps = 0;
    } else if (dice < 95) {
      assert_int_equal(run_with_failures(ix, &m, key, 0, op_compact), PM_OK);
    } else {
      assert_int_equal(run_with_failures(ix, &m, key, 0, op_reserve), PM_OK);
    }
  }
  m.nsnaps = 0;
  assert_int_equal(run_with_failures(ix, &m, 0, 0, op_compact), PM_OK);

  /* Loading on top of what is there, out of order, two operations for
  ** most keys (in different batches), with deletes of long keys: the end
  ** of loading drops, sorts and moves keys. */
  enum { MAX_STEPS = 400 };
  load_step steps[MAX_STEPS];
  uint64_t *before = calloc((size_t)m.nkeys, sizeof(uint64_t));
  for (int k = 0; k < m.nkeys; k++) {
    pm_ientry e;
    if (pm_index_find(ix, &m.keys[k], LATEST, &e) == PM_OK) before[k] = e.seq;
  }
  int n = 0;
  uint64_t top = m.seq + 1000;
  for (int round = 0; round < 2; round++) {
    for (int k = 0; k < m.nkeys; k++) {
      if (k % 4 == 3) continue;   /* left as it was */
      load_step st = { k, top - (uint64_t)(2 * k + round), (int)(tu_rand(&rng) % 3 == 0) };
      steps[n++] = st;
    }
  }
  load_with_failures(ix, &m, steps, n, before);

  /* A fresh index loaded in order (the end of loading only shrinks the
  ** table, and may skip that), and one loaded in reverse order without
  ** deletes (the end of loading only sorts). */
  memset(before, 0, sizeof(uint64_t) * (size_t)m.nkeys);
  pm_index *fresh = pm_index_new(2);
  for (int k = 0; k < m.nkeys; k++) steps[k] = (load_step){ k, (uint64_t)k + 1, 0 };
  load_with_failures(fresh, &m, steps, m.nkeys, before);
  pm_index_free(fresh);
  fresh = pm_index_new(3);
  for (int k = 0; k < m.nkeys; k++) steps[k] = (load_step){ k, (uint64_t)(m.nkeys - k), 0 };
  load_with_failures(fresh, &m, steps, m.nkeys, before);
  free(before);

  pm_index_free(fresh);
  pm_index_free(ix);
  assert_int_equal(live_blocks, 0);
  pm_set_allocator(NULL);
  model_free(&m);
}

/* ---- Memory and speed at a million keys ---------------------------------------------------- */

enum { MILLION = 1000000 };

/* 16-byte keys "key:000000000000" .. in one buffer. */
static char *million_key_bytes(void) {
  char *buf = malloc((size_t)MILLION * 17);
  for (int i = 0; i < MILLION; i++) snprintf(buf + (size_t)i * 17, 17, "key:%012u", (unsigned)i % 1000000000u);
  return buf;
}

static pm_key million_key(const char *buf, int i) {
  pm_key k = { PM_TEXT, 16, (const uint8_t *)buf + (size_t)i * 17 };
  return k;
}

static double per_key(const pm_index *ix) {
  return (double)pm_index_mem_bytes(ix) / (double)pm_index_count(ix);
}

static double ms_since(uint64_t start_ns) {
  return (double)(pm_now_ns() - start_ns) / 1e6;
}

/* Load the million keys in buffer order with seqs[i] as key i's seq
** (reserving room first if asked, as a store that counted its records
** can). Returns the milliseconds taken; *bytes gets the memory per key. */
static double load_million(const char *buf, const uint64_t *seqs, int reserve, double *bytes) {
  pm_index *ix = pm_index_new(123);
  uint64_t t0 = pm_now_ns();
  if (reserve) assert_int_equal(pm_index_reserve(ix, MILLION, (size_t)MILLION * 16), PM_OK);
  pm_index_load_begin(ix);
  for (int i = 0; i < MILLION; i++) {
    pm_key k = million_key(buf, i);
    assert_int_equal(pm_index_load_put(ix, &k, seqs[i], 1, (uint64_t)i * 64, 100, PM_BLOB), PM_OK);
  }
  assert_int_equal(pm_index_load_end(ix), PM_OK);
  double ms = ms_since(t0);
  *bytes = per_key(ix);
  assert_int_equal(pm_index_count(ix), MILLION);
  uint32_t pos = 0;
  pm_ientry e;
  for (uint64_t i = 1; i <= 1000; i++) {
    assert_int_equal(pm_index_next(ix, &pos, LATEST, &e), PM_OK);
    assert_int_equal(e.seq, i);
  }
  pm_index_free(ix);
  return ms;
}

static void test_million_keys(void **state) {
  (void)state;
  char *buf = million_key_bytes();

  /* Written one put at a time. */
  pm_index *ix = pm_index_new(123);
  uint64_t t0 = pm_now_ns();
  for (int i = 0; i < MILLION; i++) {
    pm_key k = million_key(buf, i);
    assert_int_equal(pm_index_put(ix, &k, (uint64_t)i + 1, 1, (uint64_t)i * 64, 100, PM_BLOB), PM_OK);
  }
  double put_ms = ms_since(t0);
  double put_bytes = per_key(ix);
  pm_index_free(ix);

  /* Loaded in seq order (a log never compacted), then with the seqs
  ** shuffled (after a log compaction, at worst). */
  uint64_t *seqs = malloc(sizeof(uint64_t) * MILLION);
  for (int i = 0; i < MILLION; i++) seqs[i] = (uint64_t)i + 1;
  double in_order_bytes, reserved_bytes, shuffled_bytes;
  double in_order_ms = load_million(buf, seqs, 0, &in_order_bytes);
  double reserved_ms = load_million(buf, seqs, 1, &reserved_bytes);
  uint64_t rng = 5;
  for (int i = MILLION - 1; i > 0; i--) {
    int j = (int)(tu_rand(&rng) % (uint64_t)(i + 1));
    uint64_t t = seqs[i]; seqs[i] = seqs[j]; seqs[j] = t;
  }
  double shuffled_ms = load_million(buf, seqs, 1, &shuffled_bytes);

  print_message("index, 1M 16-byte keys: puts %.0f ms, %.1f bytes/key; load in order %.0f ms "
                "(%.0f ms after a reserve), %.1f bytes/key; shuffled load %.0f ms, %.1f bytes/key\n",
                put_ms, put_bytes, in_order_ms, reserved_ms, in_order_bytes, shuffled_ms, shuffled_bytes);
  /* 40 bytes of slab, the table (at most 4/5 full: 10 bytes at best, 20
  ** right after it doubled), 16 key bytes in the arena. */
  assert_true(in_order_bytes < 48 + 16 + 8);
  assert_true(reserved_bytes < 48 + 16 + 8);
  assert_true(shuffled_bytes < 48 + 16 + 8);
  assert_true(put_bytes < 48 + 16 + 16);
  free(seqs);
  free(buf);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_empty_index),
    cmocka_unit_test(test_put_find_delete),
    cmocka_unit_test(test_misuse),
    cmocka_unit_test(test_snapshots),
    cmocka_unit_test(test_iteration),
    cmocka_unit_test(test_compact_without_snapshot),
    cmocka_unit_test(test_compact_with_pinned_snapshot),
    cmocka_unit_test(test_compact_tombstones),
    cmocka_unit_test(test_iterate_across_compaction),
    cmocka_unit_test(test_relocate),
    cmocka_unit_test(test_load_rules),
    cmocka_unit_test(test_load_random_order),
    cmocka_unit_test(test_load_over_existing),
    cmocka_unit_test(test_load_duplicates_stay_small),
    cmocka_unit_test(test_load_wide_seqs),
    cmocka_unit_test(test_reserve),
    cmocka_unit_test(test_key_shapes),
    cmocka_unit_test(test_arena_reclaimed),
    cmocka_unit_test(test_random_against_model),
    cmocka_unit_test(test_allocation_failures),
    cmocka_unit_test(test_million_keys),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
