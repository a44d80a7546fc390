/*
** test_cache.c - unit tests of the element cache (ext/cache.c).
**
** What is checked: hits and misses and their counters; the byte budget,
** after every operation of a random workload; the S3-FIFO order (new values
** leave first in, a value read again survives a scan, an id evicted once
** comes back into the main queue, a once-hot value ages out); capacity 0,
** unlimited and oversized values; remove; set_capacity; that sharding never
** shrinks what the cache holds; that values handed out stay valid after
** they are evicted; concurrent use from several threads; and allocation
** failures at every allocation of a workload, with no leak and no crash.
*/
#include "testutil.h"

#include <pthread.h>

#include "cache.h"

/* ---- Helpers ------------------------------------------------------------- */

/* A blob of len bytes, each byte a function of seed, so its content can be
** checked later. */
static pm_value *make_value(uint32_t len, uint64_t seed) {
  pm_value *v = pm_value_new(PM_BLOB, len);
  assert_non_null(v);
  for (uint32_t i = 0; i < len; i++) v->data[i] = (uint8_t)(seed * 31 + i);
  return v;
}

/* True if v still holds what make_value(len, seed) wrote. */
static int value_intact(const pm_value *v, uint32_t len, uint64_t seed) {
  if (v->len != len) return 0;
  for (uint32_t i = 0; i < len; i++)
    if (v->data[i] != (uint8_t)(seed * 31 + i)) return 0;
  return 1;
}

static pm_cache_stats stats_of(pm_cache *c) {
  pm_cache_stats st;
  pm_cache_get_stats(c, &st);
  return st;
}

/* The bytes the cache charges for a value of len bytes, as its stats show. */
static uint64_t charge_of(uint32_t len) {
  pm_cache *c = pm_cache_new(PM_CACHE_UNLIMITED);
  assert_non_null(c);
  pm_value *v = make_value(len, 0);
  pm_cache_put(c, 1, v);
  uint64_t bytes = stats_of(c).bytes;
  pm_cache_free(c);
  pm_value_unref(v);
  return bytes;
}

/* Values 0..n-1 of len bytes each (seeded by their number). */
static pm_value **make_values(uint32_t n, uint32_t len) {
  pm_value **vals = calloc(n, sizeof *vals);
  assert_non_null(vals);
  for (uint32_t i = 0; i < n; i++) vals[i] = make_value(len, i);
  return vals;
}

/* Check every value holds only the caller's reference, then drop it. */
static void free_values(pm_value **vals, uint32_t n) {
  for (uint32_t i = 0; i < n; i++) {
    assert_int_equal(vals[i]->refs, 1);
    pm_value_unref(vals[i]);
  }
  free(vals);
}

/* Read id as a store would: a hit must be the value offered for it; a
** miss offers it. Returns 1 on a hit. */
static int read_through(pm_cache *c, pm_value **vals, uint64_t id) {
  pm_value *v = pm_cache_get(c, id);
  if (v) {
    assert_ptr_equal(v, vals[id]);
    pm_value_unref(v);
    return 1;
  }
  pm_cache_put(c, id, vals[id]);
  return 0;
}

/* True if id is cached (this counts as a read of it). */
static int cached(pm_cache *c, uint64_t id) {
  pm_value *v = pm_cache_get(c, id);
  pm_value_unref(v);
  return v != NULL;
}

/* The invariants that hold after any operation: the budget is kept and
** every value inserted is held, evicted or was removed. */
static void check_invariants(pm_cache *c, uint64_t removed) {
  pm_cache_stats st = stats_of(c);
  if (st.capacity >= 0) assert_true(st.bytes <= (uint64_t)st.capacity);
  assert_int_equal(st.inserts, st.entries + st.evictions + removed);
  assert_true(st.entries == 0 ? st.bytes == 0 : st.bytes > 0);
}

/* ---- Basics ---------------------------------------------------------------- */

/* A put then a get returns the same value with a new reference; a second
** put of the same id changes nothing; counters follow. */
static void test_hit_and_miss(void **state) {
  (void)state;
  pm_cache *c = pm_cache_new(1 << 20);
  assert_non_null(c);
  pm_value *v = make_value(100, 7), *other = make_value(100, 8);
  assert_null(pm_cache_get(c, 42));
  pm_cache_put(c, 42, v);
  assert_int_equal(v->refs, 2);
  pm_value *g = pm_cache_get(c, 42);
  assert_ptr_equal(g, v);
  assert_int_equal(v->refs, 3);
  pm_value_unref(g);
  pm_cache_put(c, 42, other);           /* already cached: nothing changes */
  assert_int_equal(other->refs, 1);
  g = pm_cache_get(c, 42);
  assert_ptr_equal(g, v);
  pm_value_unref(g);
  pm_cache_stats st = stats_of(c);
  assert_int_equal(st.capacity, 1 << 20);
  assert_int_equal(st.hits, 2);
  assert_int_equal(st.misses, 1);
  assert_int_equal(st.inserts, 1);
  assert_int_equal(st.entries, 1);
  assert_int_equal(st.bytes, charge_of(100));
  pm_cache_free(c);
  assert_int_equal(v->refs, 1);         /* the cache dropped its reference */
  pm_value_unref(v);
  pm_value_unref(other);
}

/* A value is charged its footprint plus a fixed overhead per entry. */
static void test_charge(void **state) {
  (void)state;
  pm_value *small = make_value(10, 0), *big = make_value(5000, 0);
  uint64_t overhead = charge_of(10) - pm_value_footprint(small);
  assert_true(overhead >= 48);   /* at least a node and a table slot */
  assert_int_equal(charge_of(5000), pm_value_footprint(big) + overhead);
  pm_value_unref(small);
  pm_value_unref(big);
}

/* Calls with a NULL cache or value are harmless. */
static void test_null_arguments(void **state) {
  (void)state;
  pm_cache *c = pm_cache_new(1 << 20);
  pm_cache_put(c, 1, NULL);
  assert_int_equal(stats_of(c).entries, 0);
  pm_value *v = make_value(10, 0);
  pm_cache_put(NULL, 1, v);
  assert_null(pm_cache_get(NULL, 1));
  pm_cache_remove(NULL, 1);
  pm_cache_set_capacity(NULL, 5);
  pm_cache_stats st;
  pm_cache_get_stats(NULL, &st);
  assert_int_equal(st.entries, 0);
  pm_cache_free(NULL);
  assert_int_equal(v->refs, 1);
  pm_value_unref(v);
  pm_cache_free(c);
}

/* ---- The budget ----------------------------------------------------------------- */

/* A random mix of reads, puts, removes and capacity changes over values of
** random sizes; the invariants hold after every single operation. */
static void random_workload(int64_t capacity, uint32_t maxlen, int ops, uint64_t seed) {
  enum { NIDS = 3000 };
  pm_value *vals[NIDS];
  uint64_t rng = seed;
  for (uint32_t i = 0; i < NIDS; i++) vals[i] = make_value((uint32_t)(tu_rand(&rng) % maxlen), i);
  pm_cache *c = pm_cache_new(capacity);
  assert_non_null(c);
  uint64_t removed = 0;
  for (int op = 0; op < ops; op++) {
    uint64_t id = tu_rand(&rng) % NIDS, r = tu_rand(&rng) % 100;
    if (r < 50) {
      read_through(c, vals, id);
    } else if (r < 85) {
      pm_cache_put(c, id, vals[id]);
    } else if (r < 98) {
      uint64_t before = stats_of(c).entries;
      pm_cache_remove(c, id);
      removed += before - stats_of(c).entries;
    } else {
      static const int64_t scale[] = { 0, 1, 2, 4, 8 };
      uint64_t k = tu_rand(&rng) % 6;
      pm_cache_set_capacity(c, k == 5 ? PM_CACHE_UNLIMITED : capacity * scale[k] / 4);
    }
    check_invariants(c, removed);
  }
  pm_cache_free(c);
  for (uint32_t i = 0; i < NIDS; i++) {
    assert_true(value_intact(vals[i], vals[i]->len, i));
    assert_int_equal(vals[i]->refs, 1);
    pm_value_unref(vals[i]);
  }
}

/* The budget holds in a one-shard cache and in a many-shard cache. */
static void test_budget_random(void **state) {
  (void)state;
  random_workload(256 * 1024, 3000, 30000, 1);      /* one shard */
  random_workload(8 << 20, 40000, 30000, 2);        /* sixteen shards */
  random_workload(8 << 20, 200, 30000, 3);          /* many shards, little pressure */
}

/* Sharding never shrinks the cache: filled with equal values it holds
** exactly as many as its capacity pays for, small or large. */
static void test_full_capacity_used(void **state) {
  (void)state;
  static const uint32_t counts[] = { 1, 8, 50, 1000, 40000 };
  uint64_t charge = charge_of(100);
  for (size_t k = 0; k < sizeof counts / sizeof counts[0]; k++) {
    uint32_t n = counts[k] * 3;
    pm_value **vals = make_values(n, 100);
    pm_cache *c = pm_cache_new((int64_t)(counts[k] * charge));
    for (uint32_t i = 0; i < n; i++) read_through(c, vals, i);
    pm_cache_stats st = stats_of(c);
    /* one value is kept only if it is at most an eighth of the capacity */
    assert_int_equal(st.entries, counts[k] >= 8 ? counts[k] : 0);
    assert_true(st.bytes <= (uint64_t)st.capacity);
    pm_cache_free(c);
    free_values(vals, n);
  }
}

/* Capacity 0 keeps nothing but still counts misses. */
static void test_capacity_zero(void **state) {
  (void)state;
  pm_cache *c = pm_cache_new(0);
  pm_value *v = make_value(10, 0);
  assert_null(pm_cache_get(c, 1));
  pm_cache_put(c, 1, v);
  assert_null(pm_cache_get(c, 1));
  pm_cache_stats st = stats_of(c);
  assert_int_equal(st.capacity, 0);
  assert_int_equal(st.entries, 0);
  assert_int_equal(st.bytes, 0);
  assert_int_equal(st.inserts, 0);
  assert_int_equal(st.misses, 2);
  assert_int_equal(v->refs, 1);
  pm_cache_free(c);
  pm_value_unref(v);
}

/* An unlimited cache keeps every value, however large, and never evicts. */
static void test_unlimited(void **state) {
  (void)state;
  enum { N = 5000 };
  pm_cache *c = pm_cache_new(PM_CACHE_UNLIMITED);
  pm_value **vals = make_values(N, 1000);
  pm_value *huge = make_value(16 << 20, 9);
  for (uint32_t i = 0; i < N; i++) pm_cache_put(c, i, vals[i]);
  pm_cache_put(c, N, huge);
  for (uint32_t i = 0; i < N; i++) assert_true(cached(c, i));
  assert_true(cached(c, N));
  pm_cache_stats st = stats_of(c);
  assert_int_equal(st.capacity, PM_CACHE_UNLIMITED);
  assert_int_equal(st.entries, N + 1);
  assert_int_equal(st.evictions, 0);
  assert_int_equal(st.bytes, N * charge_of(1000) + charge_of(16 << 20));
  pm_cache_free(c);
  free_values(vals, N);
  pm_value_unref(huge);
}

/* A value charged more than an eighth of the capacity is not kept; one
** charged exactly that much or less is. */
static void test_oversized(void **state) {
  (void)state;
  const int64_t cap = 1 << 20;
  const uint64_t limit = (uint64_t)cap / 8;
  uint32_t fits = (uint32_t)limit;   /* the longest value charged at most limit */
  while (charge_of(fits) > limit) fits -= 8;
  while (charge_of(fits + 1) <= limit) fits++;
  pm_value *ok = make_value(fits, 1), *big = make_value(fits + 1, 2);
  pm_cache *c = pm_cache_new(cap);
  pm_cache_put(c, 1, ok);
  pm_cache_put(c, 2, big);
  assert_true(cached(c, 1));
  assert_false(cached(c, 2));
  assert_int_equal(big->refs, 1);
  pm_cache_free(c);
  pm_value_unref(ok);
  pm_value_unref(big);
}

/* In a cache of many shards a large value (an eighth of the capacity, far
** more than one shard's share) is kept while there is room, and the budget
** holds when small values crowd in after it. */
static void test_large_value_many_shards(void **state) {
  (void)state;
  const int64_t cap = 64 << 20;
  pm_value *large = make_value((uint32_t)(cap / 8 - 4096), 3);
  pm_value **vals = make_values(20000, 4000);
  pm_cache *c = pm_cache_new(cap);
  pm_cache_put(c, 0, large);
  assert_true(cached(c, 0));
  for (uint32_t i = 1; i < 20000; i++) {
    read_through(c, vals, i);
    assert_true(stats_of(c).bytes <= (uint64_t)cap);
  }
  pm_cache_free(c);
  free_values(vals, 20000);
  pm_value_unref(large);
}

/* ---- Policy ------------------------------------------------------------------- */

/* A cache that holds exactly n values of 100 bytes (one shard). */
static pm_cache *cache_for(uint32_t n) {
  pm_cache *c = pm_cache_new((int64_t)(n * charge_of(100)));
  assert_non_null(c);
  return c;
}

/* Values read only once leave in the order they came. */
static void test_fifo_order(void **state) {
  (void)state;
  pm_value **vals = make_values(110, 100);
  pm_cache *c = cache_for(100);
  for (uint32_t i = 0; i < 110; i++) pm_cache_put(c, i, vals[i]);
  assert_int_equal(stats_of(c).evictions, 10);
  for (uint32_t i = 0; i < 10; i++) assert_false(cached(c, i));
  for (uint32_t i = 10; i < 110; i++) assert_true(cached(c, i));
  pm_cache_free(c);
  free_values(vals, 110);
}

/* Values read several times survive a scan of ten times the cache's size
** in new values; values read once before the scan do not. */
static void test_scan_resistance(void **state) {
  (void)state;
  enum { HOT = 20, COLD = 20, SCAN = 1000 };
  pm_value **vals = make_values(HOT + COLD + SCAN, 100);
  pm_cache *c = cache_for(100);
  for (uint32_t i = 0; i < HOT + COLD; i++) pm_cache_put(c, i, vals[i]);
  for (int round = 0; round < 3; round++)
    for (uint32_t i = 0; i < HOT; i++) assert_true(cached(c, i));
  for (uint32_t i = HOT + COLD; i < HOT + COLD + SCAN; i++)
    assert_int_equal(read_through(c, vals, i), 0);   /* every scanned value misses */
  for (uint32_t i = HOT; i < HOT + COLD; i++) assert_false(cached(c, i));
  for (uint32_t i = 0; i < HOT; i++) assert_true(cached(c, i));
  check_invariants(c, 0);
  pm_cache_free(c);
  free_values(vals, HOT + COLD + SCAN);
}

/* An id evicted from the small queue and offered again soon after (a ghost
** hit) enters the main queue: it survives a scan without any further read. */
static void test_ghost_readmits_to_main(void **state) {
  (void)state;
  enum { SCAN = 1000 };
  pm_value **vals = make_values(101 + SCAN, 100);
  pm_cache *c = cache_for(100);
  for (uint32_t i = 0; i <= 100; i++) pm_cache_put(c, i, vals[i]);   /* 0 is evicted */
  assert_int_equal(read_through(c, vals, 0), 0);                     /* back, into main */
  for (uint32_t i = 101; i < 101 + SCAN; i++) read_through(c, vals, i);
  assert_true(cached(c, 0));
  assert_false(cached(c, 1));   /* its neighbour, never re-read, is gone */
  pm_cache_free(c);
  free_values(vals, 101 + SCAN);
}

/* A value read many times while in the main queue, then never again, is
** evicted once newer values that are read more than once need the room:
** its counter ages. */
static void test_aging(void **state) {
  (void)state;
  enum { N = 3000 };
  pm_value **vals = make_values(N, 100);
  pm_cache *c = cache_for(100);
  read_through(c, vals, 0);
  read_through(c, vals, 0);
  for (uint32_t i = 1; i <= 100; i++) read_through(c, vals, i);   /* 0 moves to main */
  for (int i = 0; i < 10; i++) assert_true(cached(c, 0));           /* and is hot there */
  for (uint32_t i = 101; i < N; i++) {   /* each newcomer is read twice */
    read_through(c, vals, i);
    read_through(c, vals, i);
  }
  assert_false(cached(c, 0));
  check_invariants(c, 0);
  pm_cache_free(c);
  free_values(vals, N);
}

/* ---- Remove and capacity changes ---------------------------------------------- */

/* remove forgets one id and drops its reference; unknown ids are fine. */
static void test_remove(void **state) {
  (void)state;
  pm_value **vals = make_values(3, 100);
  pm_cache *c = cache_for(100);
  for (uint32_t i = 0; i < 3; i++) pm_cache_put(c, i, vals[i]);
  pm_cache_remove(c, 1);
  assert_int_equal(vals[1]->refs, 1);
  pm_cache_remove(c, 1);
  pm_cache_remove(c, 99);
  assert_false(cached(c, 1));
  assert_true(cached(c, 0));
  assert_true(cached(c, 2));
  pm_cache_stats st = stats_of(c);
  assert_int_equal(st.entries, 2);
  assert_int_equal(st.bytes, 2 * charge_of(100));
  assert_int_equal(st.evictions, 0);
  pm_cache_put(c, 1, vals[1]);   /* can come back */
  assert_true(cached(c, 1));
  pm_cache_free(c);
  free_values(vals, 3);
}

/* Shrinking evicts at once; 0 empties; unlimited keeps all; a negative
** capacity other than PM_CACHE_UNLIMITED means 0. */
static void test_set_capacity(void **state) {
  (void)state;
  enum { N = 1000 };
  uint64_t charge = charge_of(100);
  pm_value **vals = make_values(N, 100);
  pm_cache *c = pm_cache_new((int64_t)(N * charge));
  for (uint32_t i = 0; i < N; i++) pm_cache_put(c, i, vals[i]);
  assert_int_equal(stats_of(c).entries, N);
  pm_cache_set_capacity(c, (int64_t)(N / 4 * charge));
  pm_cache_stats st = stats_of(c);
  assert_int_equal(st.entries, N / 4);
  assert_int_equal(st.evictions, N - N / 4);
  pm_cache_set_capacity(c, 0);
  assert_int_equal(stats_of(c).entries, 0);
  assert_int_equal(stats_of(c).bytes, 0);
  for (uint32_t i = 0; i < N; i++) assert_int_equal(vals[i]->refs, 1);
  pm_cache_set_capacity(c, PM_CACHE_UNLIMITED);
  for (uint32_t i = 0; i < N; i++) pm_cache_put(c, i, vals[i]);
  assert_int_equal(stats_of(c).entries, N);
  pm_cache_set_capacity(c, -5);
  st = stats_of(c);
  assert_int_equal(st.capacity, 0);
  assert_int_equal(st.entries, 0);
  pm_cache_set_capacity(c, (int64_t)(10 * charge));
  for (uint32_t i = 0; i < N; i++) read_through(c, vals, i);
  assert_int_equal(stats_of(c).entries, 10);
  check_invariants(c, 0);
  pm_cache_free(c);
  free_values(vals, N);
}

/* ---- References ------------------------------------------------------------------ */

/* A value handed out stays valid after the cache evicts, removes or frees
** it, even when the caller's reference is the last one. */
static void test_reference_outlives_eviction(void **state) {
  (void)state;
  pm_value **vals = make_values(200, 100);
  pm_cache *c = cache_for(100);
  pm_value *mine = make_value(100, 77);
  pm_cache_put(c, 1000, mine);
  pm_value_unref(mine);                       /* the cache holds the only reference */
  pm_value *got = pm_cache_get(c, 1000);
  assert_non_null(got);
  for (uint32_t i = 0; i < 200; i++) {   /* newcomers read twice evict 1000 */
    read_through(c, vals, i);
    read_through(c, vals, i);
  }
  assert_false(cached(c, 1000));
  assert_int_equal(got->refs, 1);
  assert_true(value_intact(got, 100, 77));
  pm_cache_put(c, 2000, got);
  pm_value *again = pm_cache_get(c, 2000);
  pm_cache_remove(c, 2000);
  pm_cache_free(c);
  assert_true(value_intact(again, 100, 77));
  pm_value_unref(again);
  assert_int_equal(got->refs, 1);
  pm_value_unref(got);                        /* freed here; ASan checks */
  free_values(vals, 200);
}

/* ---- Threads ------------------------------------------------------------------------- */

enum { T_THREADS = 4, T_IDS = 4000, T_OPS = 40000 };

typedef struct worker {
  pm_cache *cache;
  pm_value **vals;
  int index;
  uint64_t gets, hits;
} worker;

/* One thread's share of the stress: reads through the cache, plain puts,
** removes, and (thread 0) capacity changes, over ids all threads share. */
static void *worker_main(void *arg) {
  worker *w = arg;
  uint64_t rng = 0x1234567ULL + (uint64_t)w->index;
  for (int op = 0; op < T_OPS; op++) {
    uint64_t id = tu_rand(&rng) % T_IDS, r = tu_rand(&rng) % 100;
    if (r < 80) {
      pm_value *v = pm_cache_get(w->cache, id);
      w->gets++;
      if (v) {
        w->hits++;
        if (v != w->vals[id] || !value_intact(v, v->len, id)) return "wrong value";
        pm_value_unref(v);
      } else {
        pm_cache_put(w->cache, id, w->vals[id]);
      }
    } else if (r < 90) {
      pm_cache_put(w->cache, id, w->vals[id]);
    } else if (r < 99 || w->index != 0) {
      pm_cache_remove(w->cache, id);
    } else {
      pm_cache_set_capacity(w->cache, (op & 1) ? 4 << 20 : 2 << 20);
    }
  }
  return NULL;
}

/* Threads share one many-shard cache under eviction pressure: every hit is
** the right value, the counters add up, the budget holds once they are
** done, and no reference is lost or leaked. */
static void test_threads(void **state) {
  (void)state;
  pm_value **vals = calloc(T_IDS, sizeof *vals);
  for (uint32_t i = 0; i < T_IDS; i++) vals[i] = make_value(2000 + i % 2000, i);
  pm_cache *c = pm_cache_new(4 << 20);
  pthread_t tid[T_THREADS];
  worker w[T_THREADS];
  for (int i = 0; i < T_THREADS; i++) {
    w[i] = (worker){ c, vals, i, 0, 0 };
    assert_int_equal(pthread_create(&tid[i], NULL, worker_main, &w[i]), 0);
  }
  uint64_t gets = 0, hits = 0;
  for (int i = 0; i < T_THREADS; i++) {
    void *err;
    pthread_join(tid[i], &err);
    assert_null(err);
    gets += w[i].gets;
    hits += w[i].hits;
  }
  pm_cache_stats st = stats_of(c);
  assert_int_equal(st.hits, hits);
  assert_int_equal(st.hits + st.misses, gets);
  assert_true(st.bytes <= (uint64_t)st.capacity);
  assert_true(st.evictions > 0 && st.hits > 0);
  assert_true(st.inserts >= st.entries + st.evictions);
  pm_cache_free(c);
  free_values(vals, T_IDS);
}

/* ---- Allocation failures ------------------------------------------------------------ */

static long alloc_count;     /* allocations so far */
static long alloc_fail_at;   /* the allocation that fails, or -1 */
static long alloc_live;      /* blocks allocated and not freed */

static void *failing_malloc(size_t n) {
  if (alloc_count++ == alloc_fail_at) return NULL;
  void *p = malloc(n);
  if (p) alloc_live++;
  return p;
}

static void *failing_realloc(void *p, size_t n) {
  if (alloc_count++ == alloc_fail_at) return NULL;
  return realloc(p, n);
}

static void failing_free(void *p) {
  alloc_live--;
  free(p);
}

static const pm_allocator failing_allocator = { failing_malloc, failing_realloc, failing_free };

/* A workload touching every allocation the cache makes: creation, nodes,
** table growth and shrinking, the ghost, capacity changes. */
static void alloc_workload(pm_value **vals, uint32_t n, uint64_t charge) {
  pm_cache *c = pm_cache_new((int64_t)(60 * charge));
  if (!c) return;
  uint64_t removed = 0;
  for (int pass = 0; pass < 3; pass++) {
    for (uint32_t i = 0; i < n; i++) {
      read_through(c, vals, (i * 7 + (uint32_t)pass) % n);
      check_invariants(c, removed);
    }
  }
  for (uint32_t i = 0; i < n; i += 3) {
    uint64_t before = stats_of(c).entries;
    pm_cache_remove(c, i);
    removed += before - stats_of(c).entries;
  }
  pm_cache_set_capacity(c, PM_CACHE_UNLIMITED);
  for (uint32_t i = 0; i < n; i++) pm_cache_put(c, i, vals[i]);
  pm_cache_set_capacity(c, (int64_t)(10 * charge));
  check_invariants(c, removed);
  pm_cache_free(c);
}

/* Fail each allocation of the workload in turn: no crash, the invariants
** hold, and nothing leaks. */
static void test_allocation_failures(void **state) {
  (void)state;
  enum { N = 300 };
  uint64_t charge = charge_of(100);   /* measured before the allocator is swapped */
  pm_set_allocator(&failing_allocator);
  alloc_live = 0;
  alloc_fail_at = -1;
  pm_value **vals = make_values(N, 100);
  long base = alloc_live;
  int failures = 0;
  for (long at = 0;; at++) {
    alloc_count = 0;
    alloc_fail_at = at;
    alloc_workload(vals, N, charge);
    alloc_fail_at = -1;
    assert_int_equal(alloc_live, base);
    for (uint32_t i = 0; i < N; i++) assert_int_equal(vals[i]->refs, 1);
    if (alloc_count <= at) break;   /* the workload ran without a failure */
    failures++;
  }
  assert_true(failures > 100);
  free_values(vals, N);
  assert_int_equal(alloc_live, 0);
  pm_set_allocator(NULL);
}

/* When the node cannot be allocated, a put just does not cache. */
static void test_put_without_memory(void **state) {
  (void)state;
  pm_cache *c = pm_cache_new(1 << 20);
  pm_value *v = make_value(100, 0);
  pm_set_allocator(&failing_allocator);
  alloc_count = 0;
  alloc_fail_at = 0;
  pm_cache_put(c, 1, v);
  pm_set_allocator(NULL);
  assert_int_equal(v->refs, 1);
  assert_null(pm_cache_get(c, 1));
  assert_int_equal(stats_of(c).entries, 0);
  pm_cache_put(c, 1, v);
  assert_true(cached(c, 1));
  pm_cache_free(c);
  pm_value_unref(v);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_hit_and_miss),
    cmocka_unit_test(test_charge),
    cmocka_unit_test(test_null_arguments),
    cmocka_unit_test(test_budget_random),
    cmocka_unit_test(test_full_capacity_used),
    cmocka_unit_test(test_capacity_zero),
    cmocka_unit_test(test_unlimited),
    cmocka_unit_test(test_oversized),
    cmocka_unit_test(test_large_value_many_shards),
    cmocka_unit_test(test_fifo_order),
    cmocka_unit_test(test_scan_resistance),
    cmocka_unit_test(test_ghost_readmits_to_main),
    cmocka_unit_test(test_aging),
    cmocka_unit_test(test_remove),
    cmocka_unit_test(test_set_capacity),
    cmocka_unit_test(test_reference_outlives_eviction),
    cmocka_unit_test(test_threads),
    cmocka_unit_test(test_allocation_failures),
    cmocka_unit_test(test_put_without_memory),
  };
  tu_filter_from_env();
  return cmocka_run_group_tests(tests, NULL, NULL);
}
