/*
** traces.h - access traces and reference policies for measuring the element
** cache: the trace-driven benchmark (test/bench/cache_trace.c) and its quick
** variant in the unit tests (test/unit/test_cache_policy.c) both run the
** experiment defined here and differ only in its size and in what they do
** with the results.
**
** The experiment. Each trace is generated from a seed, so every run replays
** the same accesses. Over nkeys keys it replays:
**   zipf-0.9, zipf-0.99, zipf-1.2   Zipf popularity with that exponent;
**   zipf-0.99+scan                   the same, with a full scan of every key
**                                    after each scan_every Zipf accesses;
**   moving-hot-set                   Zipf 0.99 whose ranking turns by half the
**                                    key space halfway through, so the hot
**                                    keys turn cold and cold ones hot.
** Popularity ranks map to keys through a random permutation, so hot keys are
** spread over the key space (and over the cache's shards).
**
** Each trace is replayed, at cache sizes of 1%, 10% and 30% of the keys,
** against four policies holding the same number of values:
**   s3fifo   the real pm_cache through its public API, with equal-size values
**            and a byte capacity that holds exactly that many of them;
**   lru      a plain least-recently-used list;
**   lfu      perfect LFU: an exact count of every access to every key since
**            the start (evicted keys included, never aged, unbounded memory),
**            holding the keys with the highest counts. Not a policy a cache
**            can afford; on a Zipf trace it is what a frequency-based policy
**            can learn from the past at best;
**   opt      Belady's optimal policy (evict the value used farthest in the
**            future, or do not admit the new one if it is used later still),
**            a lower bound for every policy.
** The scan trace is also replayed with its scans removed (the same Zipf
** accesses, in the same order), to tell what the scans cost each policy
** from what it misses anyway.
** The goals (tr_check) are those of the project: s3fifo's miss ratio at most
** one percentage point above LRU's everywhere, OPT at or below every policy,
** and on the scan trace at least 20% fewer misses than LRU on the accesses
** that are not part of a scan. TR_SHORTFALLS lists the one S3-FIFO misses,
** and why.
*/
#ifndef PM_TRACES_H
#define PM_TRACES_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"

/* ---- Parameters ------------------------------------------------------------ */

typedef struct tr_config {
  uint32_t nkeys;       /* distinct keys */
  uint64_t accesses;    /* accesses per trace, scans included */
  uint32_t scan_every;  /* Zipf accesses between two scans */
  uint32_t value_bytes; /* size of each value offered to pm_cache */
  uint64_t seed;
} tr_config;

/* The experiment: a million keys, ten accesses per key. */
static const tr_config TR_FULL = { 1000000, 10000000, 100000, 100, 20240601 };
/* The same shape at a tenth of the keys. */
static const tr_config TR_QUICK = { 100000, 1000000, 10000, 100, 20240601 };

enum { TR_ZIPF, TR_ZIPF_SCAN, TR_MOVING };

typedef struct tr_spec {
  const char *name;
  int kind;         /* TR_ZIPF, TR_ZIPF_SCAN or TR_MOVING */
  double alpha;     /* Zipf exponent */
} tr_spec;

static const tr_spec TR_SPECS[] = {
  { "zipf-0.9", TR_ZIPF, 0.9 },
  { "zipf-0.99", TR_ZIPF, 0.99 },
  { "zipf-1.2", TR_ZIPF, 1.2 },
  { "zipf-0.99+scan", TR_ZIPF_SCAN, 0.99 },
  { "moving-hot-set", TR_MOVING, 0.99 },
};
#define TR_NSPECS (sizeof TR_SPECS / sizeof TR_SPECS[0])

static const double TR_SIZES[] = { 0.01, 0.10, 0.30 };   /* of nkeys */
#define TR_NSIZES (sizeof TR_SIZES / sizeof TR_SIZES[0])

#define TR_GOAL_PP 0.01     /* s3fifo may miss at most this much more than LRU */
#define TR_GOAL_SCAN 0.80   /* non-scan misses at most this fraction of LRU's */

enum { TR_S3FIFO, TR_LRU, TR_LFU, TR_OPT, TR_NPOLICIES };
static const char *const TR_POLICY_NAMES[TR_NPOLICIES] = { "s3fifo", "lru", "lfu", "opt" };

#define TR_NONE UINT32_MAX   /* "no key" and "never used again" */

/* ---- Random numbers ---------------------------------------------------------- */

/* splitmix64: deterministic, seedable, good enough for traces. */
static inline uint64_t tr_rand(uint64_t *state) {
  uint64_t z = (*state += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

/* A uniform double in [0, 1). */
static inline double tr_uniform(uint64_t *state) {
  return (double)(tr_rand(state) >> 11) * (1.0 / 9007199254740992.0);
}

/* Allocate or exit: the benchmarks have nothing sensible to do without memory. */
static inline void *tr_alloc(size_t n) {
  void *p = calloc(n ? n : 1, 1);
  if (!p) {
    fprintf(stderr, "traces: out of memory (%zu bytes)\n", n);
    exit(2);
  }
  return p;
}

/* A random permutation of 0..n-1 (Fisher-Yates); the caller frees it. */
static inline uint32_t *tr_permutation(uint32_t n, uint64_t *state) {
  uint32_t *p = tr_alloc((size_t)n * sizeof *p);
  for (uint32_t i = 0; i < n; i++) p[i] = i;
  for (uint32_t i = n - 1; i > 0; i--) {
    uint32_t j = (uint32_t)(tr_rand(state) % (i + 1));
    uint32_t t = p[i]; p[i] = p[j]; p[j] = t;
  }
  return p;
}

/* ---- Zipf sampling ------------------------------------------------------------ */

/* Cumulative Zipf(alpha) probabilities over ranks 0..n-1; the caller frees. */
static inline double *tr_zipf_cdf(uint32_t n, double alpha) {
  double *cdf = tr_alloc((size_t)n * sizeof *cdf);
  double sum = 0;
  for (uint32_t i = 0; i < n; i++) cdf[i] = sum += pow((double)i + 1, -alpha);
  for (uint32_t i = 0; i < n; i++) cdf[i] /= sum;
  cdf[n - 1] = 1.0;
  return cdf;
}

/* A rank drawn from cdf (n ranks): the first whose cumulative probability
** exceeds a uniform draw. */
static inline uint32_t tr_zipf_rank(const double *cdf, uint32_t n, uint64_t *state) {
  double u = tr_uniform(state);
  uint32_t lo = 0, hi = n - 1;
  while (lo < hi) {
    uint32_t mid = lo + (hi - lo) / 2;
    if (cdf[mid] > u) hi = mid; else lo = mid + 1;
  }
  return lo;
}

/* ---- Traces ----------------------------------------------------------------- */

typedef struct tr_trace {
  const tr_spec *spec;
  uint32_t nkeys;
  uint64_t n;          /* accesses */
  uint32_t *keys;      /* n keys, each < nkeys */
  uint8_t *scan;       /* n flags: 1 when the access is part of a scan */
  uint32_t *next_use;  /* for OPT: index of the next access to the same key, or TR_NONE */
} tr_trace;

/* Fill keys[from..to) with Zipf accesses; rank r names key perm[(r + turn) % nkeys]. */
static inline void tr_fill_zipf(tr_trace *t, uint64_t from, uint64_t to, const double *cdf,
                                const uint32_t *perm, uint32_t turn, uint64_t *state) {
  for (uint64_t i = from; i < to; i++) {
    uint32_t r = tr_zipf_rank(cdf, t->nkeys, state);
    t->keys[i] = perm[(uint32_t)(((uint64_t)r + turn) % t->nkeys)];
  }
}

/* Fill the trace as alternating runs: scan_every Zipf accesses, then every
** key in order, flagged as a scan, until the trace is full. */
static inline void tr_fill_scans(tr_trace *t, const tr_config *cfg, const double *cdf,
                                 const uint32_t *perm, uint64_t *state) {
  uint64_t i = 0;
  while (i < t->n) {
    uint64_t end = i + cfg->scan_every < t->n ? i + cfg->scan_every : t->n;
    tr_fill_zipf(t, i, end, cdf, perm, 0, state);
    for (i = end; i < t->n && i - end < t->nkeys; i++) {
      t->keys[i] = (uint32_t)(i - end);
      t->scan[i] = 1;
    }
  }
}

/* For every access, the index of the next access to the same key, computed
** backwards; what OPT needs to know the future. */
static inline void tr_compute_next_use(tr_trace *t) {
  uint32_t *last = tr_alloc((size_t)t->nkeys * sizeof *last);
  memset(last, 0xff, (size_t)t->nkeys * sizeof *last);
  t->next_use = tr_alloc((size_t)t->n * sizeof *t->next_use);
  for (uint64_t i = t->n; i-- > 0;) {
    t->next_use[i] = last[t->keys[i]];
    last[t->keys[i]] = (uint32_t)i;
  }
  free(last);
}

/* Generate the trace of spec under cfg, deterministically from cfg->seed. */
static inline tr_trace tr_generate(const tr_spec *spec, const tr_config *cfg) {
  tr_trace t = { spec, cfg->nkeys, cfg->accesses, NULL, NULL, NULL };
  uint64_t state = cfg->seed ^ (uint64_t)(spec - TR_SPECS) * 0x9E3779B97F4A7C15ULL;
  double *cdf = tr_zipf_cdf(cfg->nkeys, spec->alpha);
  uint32_t *perm = tr_permutation(cfg->nkeys, &state);
  t.keys = tr_alloc((size_t)t.n * sizeof *t.keys);
  t.scan = tr_alloc((size_t)t.n);
  if (spec->kind == TR_ZIPF_SCAN) {
    tr_fill_scans(&t, cfg, cdf, perm, &state);
  } else if (spec->kind == TR_MOVING) {
    tr_fill_zipf(&t, 0, t.n / 2, cdf, perm, 0, &state);
    tr_fill_zipf(&t, t.n / 2, t.n, cdf, perm, cfg->nkeys / 2, &state);
  } else {
    tr_fill_zipf(&t, 0, t.n, cdf, perm, 0, &state);
  }
  free(cdf);
  free(perm);
  tr_compute_next_use(&t);
  return t;
}

static inline void tr_trace_free(tr_trace *t) {
  free(t->keys);
  free(t->scan);
  free(t->next_use);
  memset(t, 0, sizeof *t);
}

/* The accesses of t that are not part of a scan, in their order, as a
** trace of their own (with no scans); the caller frees it. */
static inline tr_trace tr_without_scans(const tr_trace *t) {
  tr_trace f = { t->spec, t->nkeys, 0, tr_alloc((size_t)t->n * sizeof *t->keys),
                 tr_alloc((size_t)t->n), NULL };
  for (uint64_t i = 0; i < t->n; i++)
    if (!t->scan[i]) f.keys[f.n++] = t->keys[i];
  tr_compute_next_use(&f);
  return f;
}

/* ---- Results ----------------------------------------------------------------- */

typedef struct tr_result {
  uint64_t accesses, misses;
  uint64_t nonscan_accesses, nonscan_misses;   /* accesses not part of a scan */
  uint64_t late_nonscan_misses;                /* the same, in the trace's second half */
} tr_result;

/* Count access i of t as a hit or a miss. */
static inline void tr_count(tr_result *r, const tr_trace *t, uint64_t i, int miss) {
  r->accesses++;
  r->misses += (uint64_t)miss;
  if (!t->scan[i]) {
    r->nonscan_accesses++;
    r->nonscan_misses += (uint64_t)miss;
    if (i >= t->n / 2) r->late_nonscan_misses += (uint64_t)miss;
  }
}

static inline double tr_miss_ratio(const tr_result *r) {
  return r->accesses ? (double)r->misses / (double)r->accesses : 0;
}

/* ---- LRU ------------------------------------------------------------------------ */

/* Replay t against an LRU list of capacity keys: a doubly linked list over
** key numbers, most recent at the head. */
static inline tr_result tr_replay_lru(const tr_trace *t, uint32_t capacity) {
  tr_result r = { 0, 0, 0, 0, 0 };
  uint32_t *prev = tr_alloc((size_t)t->nkeys * sizeof *prev);
  uint32_t *next = tr_alloc((size_t)t->nkeys * sizeof *next);
  uint8_t *in = tr_alloc(t->nkeys);
  uint32_t head = TR_NONE, tail = TR_NONE, count = 0;
  for (uint64_t i = 0; i < t->n; i++) {
    uint32_t k = t->keys[i];
    tr_count(&r, t, i, !in[k]);
    if (in[k]) {            /* unlink k, to move it to the head */
      if (prev[k] != TR_NONE) next[prev[k]] = next[k]; else head = next[k];
      if (next[k] != TR_NONE) prev[next[k]] = prev[k]; else tail = prev[k];
    } else if (count == capacity) {   /* evict the tail */
      uint32_t v = tail;
      tail = prev[v];
      if (tail != TR_NONE) next[tail] = TR_NONE; else head = TR_NONE;
      in[v] = 0;
    } else {
      count++;
    }
    prev[k] = TR_NONE;
    next[k] = head;
    if (head != TR_NONE) prev[head] = k; else tail = k;
    head = k;
    in[k] = 1;
  }
  free(prev);
  free(next);
  free(in);
  return r;
}

/* ---- OPT and perfect LFU ----------------------------------------------------- */

/* A binary max-heap of resident keys ordered by their rank (the key with
** the greatest rank is evicted first), with each key's position so a hit
** can update it in place. */
typedef struct tr_heap {
  uint32_t *key, *when;   /* heap slots */
  uint32_t *pos;          /* per key: its slot, or TR_NONE */
  uint32_t n;
} tr_heap;

static inline void tr_heap_set(tr_heap *h, uint32_t slot, uint32_t key, uint32_t when) {
  h->key[slot] = key;
  h->when[slot] = when;
  h->pos[key] = slot;
}

/* Restore heap order around slot after its time changed either way. */
static inline void tr_heap_fix(tr_heap *h, uint32_t slot) {
  uint32_t key = h->key[slot], when = h->when[slot];
  while (slot > 0 && h->when[(slot - 1) / 2] < when) {
    uint32_t up = (slot - 1) / 2;
    tr_heap_set(h, slot, h->key[up], h->when[up]);
    slot = up;
  }
  for (;;) {
    uint32_t child = 2 * slot + 1;
    if (child >= h->n) break;
    if (child + 1 < h->n && h->when[child + 1] > h->when[child]) child++;
    if (h->when[child] <= when) break;
    tr_heap_set(h, slot, h->key[child], h->when[child]);
    slot = child;
  }
  tr_heap_set(h, slot, key, when);
}

/* The rank of the key of access i under a ranked policy; counts has one
** zeroed slot per key for the policy's own use. */
typedef uint32_t (*tr_rank_fn)(const tr_trace *t, uint64_t i, uint32_t *counts);

/* OPT's rank: the index of the key's next use (TR_NONE if never). */
static inline uint32_t tr_rank_next_use(const tr_trace *t, uint64_t i, uint32_t *counts) {
  (void)counts;
  return t->next_use[i];
}

/* Perfect LFU's rank: fewer accesses so far, greater rank. */
static inline uint32_t tr_rank_count(const tr_trace *t, uint64_t i, uint32_t *counts) {
  return UINT32_MAX - ++counts[t->keys[i]];
}

/* Replay t with room for capacity keys, the key of greatest rank leaving
** first. On a miss with a full cache the new key is admitted only if its
** rank is smaller than the greatest held (a tie keeps the held key). */
static inline tr_result tr_replay_ranked(const tr_trace *t, uint32_t capacity, tr_rank_fn rank) {
  tr_result r = { 0, 0, 0, 0, 0 };
  tr_heap h = { tr_alloc((size_t)capacity * 4 + 4), tr_alloc((size_t)capacity * 4 + 4),
                tr_alloc((size_t)t->nkeys * 4), 0 };
  uint32_t *counts = tr_alloc((size_t)t->nkeys * 4);
  memset(h.pos, 0xff, (size_t)t->nkeys * 4);
  for (uint64_t i = 0; i < t->n; i++) {
    uint32_t k = t->keys[i], when = rank(t, i, counts);
    tr_count(&r, t, i, h.pos[k] == TR_NONE);
    if (h.pos[k] != TR_NONE) {
      h.when[h.pos[k]] = when;
      tr_heap_fix(&h, h.pos[k]);
    } else if (h.n < capacity) {
      tr_heap_set(&h, h.n++, k, when);
      tr_heap_fix(&h, h.n - 1);
    } else if (capacity > 0 && h.when[0] > when) {
      h.pos[h.key[0]] = TR_NONE;
      tr_heap_set(&h, 0, k, when);
      tr_heap_fix(&h, 0);
    }
  }
  free(h.key);
  free(h.when);
  free(h.pos);
  free(counts);
  return r;
}

/* Replay t against Belady's OPT with room for capacity keys: the key used
** farthest in the future leaves, which may be the new key itself. */
static inline tr_result tr_replay_opt(const tr_trace *t, uint32_t capacity) {
  return tr_replay_ranked(t, capacity, tr_rank_next_use);
}

/* Replay t against perfect LFU with room for capacity keys: every access
** to every key is counted, for good; the key with the fewest leaves. */
static inline tr_result tr_replay_lfu(const tr_trace *t, uint32_t capacity) {
  return tr_replay_ranked(t, capacity, tr_rank_count);
}

/* ---- pm_cache ------------------------------------------------------------------ */

/* Bytes pm_cache charges for one value of value_bytes, read from its stats. */
static inline uint64_t tr_cache_charge(uint32_t value_bytes) {
  pm_cache *c = pm_cache_new(PM_CACHE_UNLIMITED);
  pm_value *v = pm_value_new(PM_BLOB, value_bytes);
  if (!c || !v) { fprintf(stderr, "traces: out of memory\n"); exit(2); }
  memset(v->data, 'v', value_bytes);
  pm_cache_put(c, 0, v);
  pm_cache_stats st;
  pm_cache_get_stats(c, &st);
  pm_cache_free(c);
  pm_value_unref(v);
  return st.bytes;
}

/* Replay t against a pm_cache whose byte capacity holds exactly capacity
** values of value_bytes: a miss offers the value, as the store does after
** reading it from the log. One value object serves every key (the cache
** only counts references). *held gets the number of values held at the end. */
static inline tr_result tr_replay_cache(const tr_trace *t, uint32_t capacity,
                                        uint32_t value_bytes, uint64_t *held) {
  tr_result r = { 0, 0, 0, 0, 0 };
  pm_cache *c = pm_cache_new((int64_t)(capacity * tr_cache_charge(value_bytes)));
  pm_value *value = pm_value_new(PM_BLOB, value_bytes);
  if (!c || !value) { fprintf(stderr, "traces: out of memory\n"); exit(2); }
  memset(value->data, 'v', value_bytes);
  for (uint64_t i = 0; i < t->n; i++) {
    pm_value *v = pm_cache_get(c, t->keys[i]);
    tr_count(&r, t, i, v == NULL);
    if (v) pm_value_unref(v); else pm_cache_put(c, t->keys[i], value);
  }
  pm_cache_stats st;
  pm_cache_get_stats(c, &st);
  *held = st.entries;
  pm_cache_free(c);
  pm_value_unref(value);
  return r;
}

/* ---- The experiment ------------------------------------------------------------ */

/* One trace at one size under every policy. */
typedef struct tr_cell {
  const tr_spec *spec;
  double size;            /* fraction of nkeys */
  uint32_t entries;       /* values each policy may hold */
  uint64_t held;          /* values pm_cache held at the end */
  tr_result res[TR_NPOLICIES];
  double seconds[TR_NPOLICIES];
  int has_scanless;       /* the scan trace: scanless is filled in */
  tr_result scanless[TR_NPOLICIES];   /* on the same trace with its scans removed */
} tr_cell;

/* Seconds on the monotonic clock, for reporting only. */
static inline double tr_seconds(void) {
  return (double)pm_now_ns() / 1e9;
}

/* Replay t against policy p with room for entries values (of value_bytes,
** for pm_cache); *held gets the values held at the end. */
static inline tr_result tr_replay(const tr_trace *t, int p, uint32_t entries,
                                  uint32_t value_bytes, uint64_t *held) {
  *held = entries;
  switch (p) {
  case TR_S3FIFO: return tr_replay_cache(t, entries, value_bytes, held);
  case TR_LRU: return tr_replay_lru(t, entries);
  case TR_LFU: return tr_replay_lfu(t, entries);
  default: return tr_replay_opt(t, entries);
  }
}

/* Run every policy on t at size (a fraction of the keys) under cfg, and on
** scanless (t without its scans) unless it is NULL. */
static inline tr_cell tr_run_cell(const tr_trace *t, const tr_trace *scanless, double size,
                                  const tr_config *cfg) {
  tr_cell cell;
  memset(&cell, 0, sizeof cell);
  cell.spec = t->spec;
  cell.size = size;
  cell.entries = (uint32_t)(size * t->nkeys + 0.5);
  cell.has_scanless = scanless != NULL;
  for (int p = 0; p < TR_NPOLICIES; p++) {
    uint64_t held;
    double t0 = tr_seconds();
    cell.res[p] = tr_replay(t, p, cell.entries, cfg->value_bytes, &held);
    cell.seconds[p] = tr_seconds() - t0;
    if (p == TR_S3FIFO) cell.held = held;
    if (scanless) cell.scanless[p] = tr_replay(scanless, p, cell.entries, cfg->value_bytes, &held);
  }
  return cell;
}

/* A goal S3-FIFO is known to miss, measured and explained in the README.
** The benchmark still reports the miss; the unit test holds the cell to
** the measured level, with a small margin, so it cannot get worse unseen,
** and checks that the explanation still holds: the scans cost S3-FIFO
** almost nothing there, so the shortfall is its miss ratio on plain Zipf. */
typedef struct tr_shortfall {
  const char *trace;
  double size;
  double scan_ratio;   /* non-scan misses s3fifo / lru accepted instead of TR_GOAL_SCAN */
  double scan_cost;    /* at most this many times s3fifo's misses with the scans removed */
} tr_shortfall;

static const tr_shortfall TR_SHORTFALLS[] = {
  /* At 1% the goal is beyond what any policy can learn from the past. The
  ** scans barely hurt LRU there (its misses outside the scans are 2.8%
  ** more than on the same accesses with the scans removed), so the goal
  ** asks for 18% fewer misses than LRU gets on plain Zipf 0.99 at 1%, over
  ** 1,000,000 accesses from a cold start. Perfect LFU (every access to
  ** every key counted, never aged, unbounded memory) gets 0.798 x LRU, and
  ** S3-FIFO steered by those exact counts 0.804: the goal is within 0.3%
  ** of the ideal. S3-FIFO gets 0.821 (0.817 in the quick run), and the
  ** scans cost it under 0.3% of its misses: its shortfall is what it
  ** misses on plain Zipf, not scan resistance. Only Belady's OPT, which
  ** knows the future, does much better. */
  { "zipf-0.99+scan", 0.01, 0.83, 1.01 },
};

enum { TR_GOALS, TR_KNOWN };   /* what tr_check holds a cell to */

/* The known shortfall cell is held to under TR_KNOWN, or NULL (then it is
** held to the goals). */
static inline const tr_shortfall *tr_shortfall_of(const tr_cell *cell, int against) {
  size_t n = sizeof TR_SHORTFALLS / sizeof TR_SHORTFALLS[0];
  for (size_t i = 0; against == TR_KNOWN && i < n; i++) {
    const tr_shortfall *f = &TR_SHORTFALLS[i];
    if (strcmp(f->trace, cell->spec->name) == 0 && f->size == cell->size) return f;
  }
  return NULL;
}

/* Check one cell against the goals (TR_GOALS) or against the goals less
** the known shortfalls (TR_KNOWN). Returns how many failed and writes one
** line per failure into why (size bytes). */
static inline int tr_check(const tr_cell *cell, int against, char *why, size_t size) {
  const tr_result *s3 = &cell->res[TR_S3FIFO], *lru = &cell->res[TR_LRU], *opt = &cell->res[TR_OPT];
  const tr_shortfall *known = tr_shortfall_of(cell, against);
  double scan_goal = known ? known->scan_ratio : TR_GOAL_SCAN;
  const char *name = cell->spec->name;
  double pct = cell->size * 100;
  int failed = 0;
  size_t used = 0;
  why[0] = 0;
#define TR_FAIL(...) do { failed++; \
    if (used < size) used += (size_t)snprintf(why + used, size - used, __VA_ARGS__); } while (0)
  if (tr_miss_ratio(s3) > tr_miss_ratio(lru) + TR_GOAL_PP)
    TR_FAIL("%s at %.0f%%: s3fifo misses %.4f, more than lru's %.4f + %.2f\n", name, pct,
            tr_miss_ratio(s3), tr_miss_ratio(lru), TR_GOAL_PP);
  for (int p = 0; p < TR_NPOLICIES; p++)
    if (opt->misses > cell->res[p].misses)
      TR_FAIL("%s at %.0f%%: opt misses %llu, more than %s's %llu\n", name, pct,
              (unsigned long long)opt->misses, TR_POLICY_NAMES[p],
              (unsigned long long)cell->res[p].misses);
  if (cell->spec->kind == TR_ZIPF_SCAN &&
      (double)s3->nonscan_misses > scan_goal * (double)lru->nonscan_misses)
    TR_FAIL("%s at %.0f%%: s3fifo has %llu non-scan misses, more than %.2f x lru's %llu\n",
            name, pct, (unsigned long long)s3->nonscan_misses, scan_goal,
            (unsigned long long)lru->nonscan_misses);
  if (known && cell->has_scanless &&
      (double)s3->nonscan_misses > known->scan_cost * (double)cell->scanless[TR_S3FIFO].misses)
    TR_FAIL("%s at %.0f%%: the scans cost s3fifo more than the known shortfall allows: %llu "
            "non-scan misses, against %llu with the scans removed (at most x %.2f)\n",
            name, pct, (unsigned long long)s3->nonscan_misses,
            (unsigned long long)cell->scanless[TR_S3FIFO].misses, known->scan_cost);
#undef TR_FAIL
  return failed;
}

/* Run the whole experiment under cfg, calling report(cell, arg) for each
** trace and size in order; the scan trace is also replayed without its
** scans. */
static inline void tr_run_all(const tr_config *cfg, void (*report)(const tr_cell *, void *),
                              void *arg) {
  for (size_t s = 0; s < TR_NSPECS; s++) {
    tr_trace t = tr_generate(&TR_SPECS[s], cfg), scanless = { 0 };
    int scans = TR_SPECS[s].kind == TR_ZIPF_SCAN;
    if (scans) scanless = tr_without_scans(&t);
    for (size_t z = 0; z < TR_NSIZES; z++) {
      tr_cell cell = tr_run_cell(&t, scans ? &scanless : NULL, TR_SIZES[z], cfg);
      report(&cell, arg);
    }
    if (scans) tr_trace_free(&scanless);
    tr_trace_free(&t);
  }
}

#endif /* PM_TRACES_H */
