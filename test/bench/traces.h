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
** against three policies holding the same number of values:
**   s3fifo   the real pm_cache through its public API, with equal-size values
**            and a byte capacity that holds exactly that many of them;
**   lru      a plain least-recently-used list;
**   opt      Belady's optimal policy (evict the value used farthest in the
**            future, or do not admit the new one if it is used later still),
**            a lower bound for every policy.
** The goals (tr_check) are those of the project: s3fifo's miss ratio at most
** one percentage point above LRU's everywhere, OPT at or below both, and on
** the scan trace at least 20% fewer misses than LRU on the accesses that are
** not part of a scan. TR_SHORTFALLS lists the one S3-FIFO misses, and why.
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

enum { TR_S3FIFO, TR_LRU, TR_OPT, TR_NPOLICIES };
static const char *const TR_POLICY_NAMES[TR_NPOLICIES] = { "s3fifo", "lru", "opt" };

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

/* ---- OPT ---------------------------------------------------------------------- */

/* A binary max-heap of resident keys ordered by their next use, with each
** key's position so a hit can update it in place. */
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

/* Replay t against Belady's OPT with room for capacity keys. On a miss with
** a full cache the key used farthest in the future leaves, which may be the
** new key itself (it is then not admitted). */
static inline tr_result tr_replay_opt(const tr_trace *t, uint32_t capacity) {
  tr_result r = { 0, 0, 0, 0, 0 };
  tr_heap h = { tr_alloc((size_t)capacity * 4 + 4), tr_alloc((size_t)capacity * 4 + 4),
                tr_alloc((size_t)t->nkeys * 4), 0 };
  memset(h.pos, 0xff, (size_t)t->nkeys * 4);
  for (uint64_t i = 0; i < t->n; i++) {
    uint32_t k = t->keys[i], when = t->next_use[i];
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
  return r;
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
} tr_cell;

/* Seconds on the monotonic clock, for reporting only. */
static inline double tr_seconds(void) {
  return (double)pm_now_ns() / 1e9;
}

/* Run every policy on t at size (a fraction of the keys) under cfg. */
static inline tr_cell tr_run_cell(const tr_trace *t, double size, const tr_config *cfg) {
  tr_cell cell;
  memset(&cell, 0, sizeof cell);
  cell.spec = t->spec;
  cell.size = size;
  cell.entries = (uint32_t)(size * t->nkeys + 0.5);
  double t0 = tr_seconds();
  cell.res[TR_S3FIFO] = tr_replay_cache(t, cell.entries, cfg->value_bytes, &cell.held);
  double t1 = tr_seconds();
  cell.res[TR_LRU] = tr_replay_lru(t, cell.entries);
  double t2 = tr_seconds();
  cell.res[TR_OPT] = tr_replay_opt(t, cell.entries);
  double t3 = tr_seconds();
  cell.seconds[TR_S3FIFO] = t1 - t0;
  cell.seconds[TR_LRU] = t2 - t1;
  cell.seconds[TR_OPT] = t3 - t2;
  return cell;
}

/* A goal S3-FIFO is known to miss, measured and explained in the README.
** The benchmark still reports the miss; the unit test holds the cell to
** the measured level, with a small margin, so it cannot get worse unseen. */
typedef struct tr_shortfall {
  const char *trace;
  double size;
  double scan_ratio;   /* non-scan misses s3fifo / lru accepted instead of TR_GOAL_SCAN */
} tr_shortfall;

static const tr_shortfall TR_SHORTFALLS[] = {
  /* At 1% the scans barely hurt LRU (its non-scan miss ratio is 44.6%
  ** against 43.4% with no scans), so the goal asks S3-FIFO to beat LRU by
  ** 20% on plain Zipf at 1%. It does once warm (0.79 x LRU after about 30x
  ** its size in Zipf accesses) but not from a cold start: 0.82 over the
  ** whole trace, full and quick alike. */
  { "zipf-0.99+scan", 0.01, 0.84 },
};

enum { TR_GOALS, TR_KNOWN };   /* what tr_check holds a cell to */

/* The non-scan miss ratio (s3fifo / lru) cell must reach: the goal, or
** under TR_KNOWN the measured level of a known shortfall. */
static inline double tr_scan_goal(const tr_cell *cell, int against) {
  size_t n = sizeof TR_SHORTFALLS / sizeof TR_SHORTFALLS[0];
  for (size_t i = 0; against == TR_KNOWN && i < n; i++) {
    const tr_shortfall *f = &TR_SHORTFALLS[i];
    if (strcmp(f->trace, cell->spec->name) == 0 && f->size == cell->size) return f->scan_ratio;
  }
  return TR_GOAL_SCAN;
}

/* Check one cell against the goals (TR_GOALS) or against the goals less
** the known shortfalls (TR_KNOWN). Returns how many failed and writes one
** line per failure into why (size bytes). */
static inline int tr_check(const tr_cell *cell, int against, char *why, size_t size) {
  const tr_result *s3 = &cell->res[TR_S3FIFO], *lru = &cell->res[TR_LRU], *opt = &cell->res[TR_OPT];
  double scan_goal = tr_scan_goal(cell, against);
  int failed = 0;
  size_t used = 0;
  why[0] = 0;
#define TR_FAIL(...) do { failed++; \
    if (used < size) used += (size_t)snprintf(why + used, size - used, __VA_ARGS__); } while (0)
  if (tr_miss_ratio(s3) > tr_miss_ratio(lru) + TR_GOAL_PP)
    TR_FAIL("%s at %.0f%%: s3fifo misses %.4f, more than lru's %.4f + %.2f\n", cell->spec->name,
            cell->size * 100, tr_miss_ratio(s3), tr_miss_ratio(lru), TR_GOAL_PP);
  if (opt->misses > s3->misses || opt->misses > lru->misses)
    TR_FAIL("%s at %.0f%%: opt misses %llu, more than s3fifo %llu or lru %llu\n", cell->spec->name,
            cell->size * 100, (unsigned long long)opt->misses, (unsigned long long)s3->misses,
            (unsigned long long)lru->misses);
  if (cell->spec->kind == TR_ZIPF_SCAN &&
      (double)s3->nonscan_misses > scan_goal * (double)lru->nonscan_misses)
    TR_FAIL("%s at %.0f%%: s3fifo has %llu non-scan misses, more than %.2f x lru's %llu\n",
            cell->spec->name, cell->size * 100, (unsigned long long)s3->nonscan_misses,
            scan_goal, (unsigned long long)lru->nonscan_misses);
#undef TR_FAIL
  return failed;
}

/* Run the whole experiment under cfg, calling report(cell, arg) for each
** trace and size in order. */
static inline void tr_run_all(const tr_config *cfg, void (*report)(const tr_cell *, void *),
                              void *arg) {
  for (size_t s = 0; s < TR_NSPECS; s++) {
    tr_trace t = tr_generate(&TR_SPECS[s], cfg);
    for (size_t z = 0; z < TR_NSIZES; z++) {
      tr_cell cell = tr_run_cell(&t, TR_SIZES[z], cfg);
      report(&cell, arg);
    }
    tr_trace_free(&t);
  }
}

#endif /* PM_TRACES_H */
