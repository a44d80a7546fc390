/*
** index.h - the in-memory hash index of every key, with versions.
**
** The index maps each key to where its newest record lies in the log. It is
** multi-versioned so that a statement can read one consistent snapshot while
** writers go on:
**
**   - Every put or delete appends a *version* to a slab of fixed-size
**     entries. Versions are appended in strictly increasing sequence number
**     order, so slab position order is sequence order: iterating the slab is
**     iterating the store "ORDER BY seq", and a seq can be found by binary
**     search.
**   - The version a put or delete replaces stays in the slab, linked to its
**     successor, so a reader holding snapshot S (a sequence number) still
**     finds the version that was current at S. A delete appends a tombstone
**     version.
**   - Version v of a key is visible at snapshot S when v.seq <= S, v is not
**     a tombstone, and v has no successor with seq <= S.
**   - pm_index_compact() drops versions no snapshot can see any more and
**     renumbers the slab; it bumps the generation so iterators re-seek by
**     sequence number.
**
** A hash table (open addressing, xxHash XXH3 seeded per store so crafted keys
** cannot degrade it) maps each key to its newest version. Keys of up to 8
** bytes are kept inside the entry; longer ones in an arena. The memory goal
** is under 48 bytes per key plus the key bytes (pm_index_mem_bytes()).
**
** Thread safety: none. The store guards the index with a read-write lock:
** pm_index_find/seek/next/prev and the counters under a read lock, the rest
** under the write lock. Key pointers returned in pm_ientry stay valid only
** until the lock is released.
*/
#ifndef PM_INDEX_H
#define PM_INDEX_H

#include "common.h"

typedef struct pm_index pm_index;

#define PM_SEQ_LATEST UINT64_MAX   /* snapshot that sees every version */
#define PM_POS_END    UINT32_MAX   /* "no position" for iteration */

/* One version, as reported by a lookup or an iteration step. */
typedef struct pm_ientry {
  uint64_t seq;          /* sequence number of this version's write */
  uint32_t seg;          /* segment number holding the record */
  uint64_t off;          /* byte offset of the record in that segment */
  uint32_t vlen;         /* value length in bytes */
  uint8_t vtype;         /* PM_INTEGER .. PM_NULL */
  pm_key key;            /* key; data valid only under the store's lock */
  uint32_t pos;          /* slab position of this version */
} pm_ientry;

/* A new empty index whose hash is seeded with seed. NULL on OOM. */
pm_index *pm_index_new(uint64_t seed);
void pm_index_free(pm_index *ix);

/* Make the next n_versions puts/deletes with at most key_bytes of keys in
** total unable to fail for lack of memory, so that the store can apply a
** whole committed transaction or nothing. PM_OK or PM_NOMEM (nothing
** changed). */
int pm_index_reserve(pm_index *ix, size_t n_versions, size_t key_bytes);

/* Append a version of key k written at seq (seq must be greater than every
** seq in the index, else PM_MISUSE) whose record is at (seg, off) with a
** value of vlen bytes and type vtype. The previous version, if any, gets
** this one as successor. PM_OK, PM_NOMEM (nothing changed) or PM_MISUSE. */
int pm_index_put(pm_index *ix, const pm_key *k, uint64_t seq, uint32_t seg,
                 uint64_t off, uint32_t vlen, uint8_t vtype);

/* Record that key k was deleted at seq (same ordering rule as put). A key
** that is absent (or already deleted) is left alone and PM_NOTFOUND is
** returned. PM_OK, PM_NOTFOUND, PM_NOMEM or PM_MISUSE. */
int pm_index_delete(pm_index *ix, const pm_key *k, uint64_t seq);

/* Find the version of k visible at snapshot snap (PM_SEQ_LATEST for the
** newest). PM_OK with *out filled, or PM_NOTFOUND. */
int pm_index_find(const pm_index *ix, const pm_key *k, uint64_t snap,
                  pm_ientry *out);

/* Iteration in sequence order over versions visible at snap.
** pm_index_seek returns the first slab position whose seq is >= seq (or
** the slab end). pm_index_next reports the first visible version at or after
** *pos and sets *pos just past it; pm_index_prev reports the last visible
** version strictly before *pos and sets *pos to it (start with *pos =
** pm_index_end()). Both return PM_OK or PM_NOTFOUND at the end. Positions are
** valid while pm_index_generation() is unchanged; otherwise re-seek by seq.
** Each step is O(1) amortized: compaction keeps dead versions from piling up
** when no old snapshot pins them. */
uint32_t pm_index_seek(const pm_index *ix, uint64_t seq);
uint32_t pm_index_end(const pm_index *ix);
int pm_index_next(const pm_index *ix, uint32_t *pos, uint64_t snap, pm_ientry *out);
int pm_index_prev(const pm_index *ix, uint32_t *pos, uint64_t snap, pm_ientry *out);
uint64_t pm_index_generation(const pm_index *ix);

/* Compaction of the log moved the record of the version (k, seq) to
** (seg, off). Only that exact version changes; PM_NOTFOUND if it is gone. */
int pm_index_relocate(pm_index *ix, const pm_key *k, uint64_t seq,
                      uint32_t seg, uint64_t off);

/* Drop every version that no snapshot >= oldest_snap can see (superseded at
** or before oldest_snap, and tombstones at or before it), and renumber the
** slab. Pass PM_SEQ_LATEST when no snapshot is pinned. PM_OK or PM_NOMEM
** (the index is unchanged). Cheap to call: it does nothing unless dead
** versions make up a quarter or more of the slab. */
int pm_index_compact(pm_index *ix, uint64_t oldest_snap);

/* ---- Loading (recovery) --------------------------------------------------
** While a store opens, records arrive segment by segment and, after a log
** compaction, not in sequence order. Between pm_index_load_begin and
** pm_index_load_end, pm_index_load_put and pm_index_load_delete accept any
** order and keep, per key, the operation with the highest seq (a delete
** with a higher seq beats a put). load_end drops the deleted keys, sorts the
** slab by seq and leaves a normal index with one version per key. No
** snapshot or iteration is allowed during loading. */
void pm_index_load_begin(pm_index *ix);
int pm_index_load_put(pm_index *ix, const pm_key *k, uint64_t seq, uint32_t seg,
                      uint64_t off, uint32_t vlen, uint8_t vtype);
int pm_index_load_delete(pm_index *ix, const pm_key *k, uint64_t seq);
int pm_index_load_end(pm_index *ix);

/* ---- Figures (at the newest version) ------------------------------------- */
uint64_t pm_index_count(const pm_index *ix);       /* live keys */
uint64_t pm_index_live_bytes(const pm_index *ix);  /* sum of key + value bytes of live keys */
uint64_t pm_index_max_seq(const pm_index *ix);     /* highest seq ever put in, 0 if none */
uint64_t pm_index_versions(const pm_index *ix);    /* slab entries, live and dead */
size_t pm_index_mem_bytes(const pm_index *ix);     /* memory held: slab, table, arena */

#endif /* PM_INDEX_H */
