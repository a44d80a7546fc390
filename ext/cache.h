/*
** cache.h - the element cache: values kept in memory, bounded in bytes.
**
** Values are cached under a 64-bit id that names one record in the log
** (the store uses segment << 40 | offset), so a cached value can never be
** stale: a new write of a key lives at a new location. Segment numbers are
** never reused.
**
** The cache holds references to immutable pm_values: a hit hands the caller
** its own reference (release with pm_value_unref), so nothing a caller does
** can corrupt the cache, and no copy is made.
**
** Policy: S3-FIFO (Yang et al., SOSP 2023): a small FIFO (10% of capacity)
** that new values enter, a main FIFO with a 2-bit frequency counter per
** value (aged by one on every pass of the eviction hand) and a ghost FIFO of
** ids recently evicted from the small queue. A value read once (a scan) leaves
** through the small queue without touching the main queue, so a scan cannot
** flush the hot set, and counters age so a value hot yesterday is not pinned
** forever. The byte budget counts each value's footprint plus the cache's
** own per-entry overhead.
**
** Thread safety: all functions may be called from any thread. The cache is
** split into shards by id, each with its own lock, so concurrent hits do not
** serialize on one global lock.
*/
#ifndef PM_CACHE_H
#define PM_CACHE_H

#include "common.h"

typedef struct pm_cache pm_cache;

#define PM_CACHE_UNLIMITED (-1)   /* capacity: keep every value */

typedef struct pm_cache_stats {
  int64_t capacity;      /* bytes; 0 = disabled, -1 = unlimited */
  uint64_t bytes;        /* bytes charged now (values + overhead) */
  uint64_t entries;      /* values held */
  uint64_t hits;
  uint64_t misses;
  uint64_t evictions;
  uint64_t inserts;
} pm_cache_stats;

/* A cache of capacity bytes (0 = keep nothing, PM_CACHE_UNLIMITED = keep
** everything). NULL on OOM. */
pm_cache *pm_cache_new(int64_t capacity);
void pm_cache_free(pm_cache *c);            /* drops every reference it holds */

/* The value cached under id with a new reference for the caller, or NULL
** (counted as a miss). Never blocks on I/O. */
pm_value *pm_cache_get(pm_cache *c, uint64_t id);

/* Offer v under id. The cache takes its own reference if it keeps v (the
** caller keeps its own either way). A value bigger than an eighth of the
** capacity is not kept. If id is already cached nothing changes. Failure to
** allocate just means the value is not cached. */
void pm_cache_put(pm_cache *c, uint64_t id, pm_value *v);

/* Forget id if cached. */
void pm_cache_remove(pm_cache *c, uint64_t id);

/* Change the capacity; shrinking evicts at once. */
void pm_cache_set_capacity(pm_cache *c, int64_t capacity);

void pm_cache_get_stats(pm_cache *c, pm_cache_stats *out);

#endif /* PM_CACHE_H */
