/*
** index.c - the in-memory hash index of every key, with versions (the
** contract is in index.h).
**
** Three structures hold the index.
**
** The slab holds every version not yet compacted away, in sequence order,
** as fixed-size 40-byte entries (struct version). It is a list of blocks of
** BLOCK_VERSIONS entries: growing it never moves what is there, and its
** slack is at most one block. A *position* numbers the entries from 0; only
** compaction and the end of loading renumber them, and both bump the
** generation.
**
** The versions of one key form a chain: prev is the position of the
** version this one replaced, next the position of the one that replaced it.
** A tombstone (vtype TOMBSTONE) records a delete. A version is *dead* once
** it is superseded, and a tombstone is dead from birth; the write that made
** a version dead is counted in the `deaths` field of the version holding
** that write, and each block keeps the sum of deaths before it. Since deaths
** happen in sequence order, "how many versions could compaction drop for
** the oldest snapshot S" is a binary search plus a short sum, which keeps
** pm_index_compact() cheap when an old snapshot pins everything.
**
** The table maps each key to the position of its newest version
** (tombstones included). It is open addressing with linear probing over
** 8-byte slots {position, tag}; the tag is 32 bits of the key's XXH3 hash
** (seeded per store, mixed with the key type) and also chooses the home
** slot (tag * capacity / 2^32), so most probes never touch the slab and
** growing the table never rehashes a key. Keys are never removed from the
** table one by one: only compaction and loading rebuild it.
**
** The arena holds the bytes of keys longer than 8 bytes in large chunks;
** all versions of one key share one copy. Shorter keys live inside their
** version.
**
** Memory per key with one version: 40 bytes of slab, 10 to 20 bytes of
** table (at most 4/5 full; it doubles as it grows, and is fitted to 3/4
** full by the end of loading and by compactions that find it far too big),
** and the key bytes when the key is longer than 8 bytes.
**
** Loading (see the section at the end) settles operations into the table
** in batches, with their slots prefetched, keeps one version per key as it
** goes, and sorts by seq at the end only when the log came out of order.
** A store that knows how many records it will load should call
** pm_index_reserve() first: the table is then made at its final size once.
**
** Failures: every change that needs memory first obtains all of it (struct
** growth for puts, struct rebuild for compaction and loading) and only then
** touches the index, so PM_NOMEM always leaves the index as it was.
*/
#include "index.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <xxhash.h>

#define NO_POS PM_POS_END                /* no version: empty slot, no prev/next */
#define MAX_VERSIONS (UINT32_MAX - 1u)   /* positions stay below NO_POS */
#define BLOCK_SHIFT 8
#define BLOCK_VERSIONS (1u << BLOCK_SHIFT)
#define INLINE_KEY 8                     /* keys this long or shorter live in the version */
#define TOMBSTONE 0                      /* the vtype of a delete */
#define MAX_OFFSET ((uint64_t)1 << 41)   /* offsets must fit the 41-bit field */
#define TABLE_MIN 16                     /* slots in the smallest table */
#define TABLE_MAX ((uint64_t)1 << 32)    /* tags are 32 bits */
#define CHUNK_MIN 4096                   /* bytes in the first arena chunk */
#define CHUNK_MAX (1u << 20)             /* chunks double up to this size */
#define TYPE_MIX 0x9E3779B97F4A7C15ull   /* spreads the key type over the seed */
#define LOAD_BATCH 32                    /* loaded versions settled into the table at once */
#define RADIX_BITS 11                    /* most bits a radix sort pass looks at */
#define PREFETCH_AHEAD 8                 /* entries a scattered copy fetches ahead */
#define HUGE_TABLE ((size_t)4 << 20)     /* tables this big ask for huge pages */

/* One version of one key. Two fields are packed by hand, read and written
** only through the helpers below (the layout of bit-fields is up to the
** compiler, and compilers build them slowly):
**   record  bits 0-40 the record's offset in its segment,
**           41-57 the key length (0..PM_MAX_KEY),
**           58-60 the key type (PM_INTEGER..PM_BLOB),
**           61-63 the value type (PM_INTEGER..PM_NULL, or TOMBSTONE);
**   size    bits 0-29 the value length (up to PM_MAX_VALUE),
**           30-31 the deaths: versions this write made dead (0..2). */
typedef struct version {
  uint64_t seq;              /* sequence number of the write */
  uint64_t record;           /* offset, key length, key type, value type */
  uint32_t seg;              /* segment holding the record */
  uint32_t size;             /* value length, deaths */
  union {
    uint8_t bytes[8];        /* the key itself when klen <= INLINE_KEY */
    const uint8_t *ptr;      /* else its bytes in the arena */
  } key;
  uint32_t prev;             /* the version this one replaced, or NO_POS */
  uint32_t next;             /* the version that replaced it, or NO_POS */
} version;

_Static_assert(sizeof(version) == 40, "a version must stay 40 bytes");

#define KLEN_SHIFT 41
#define KTYPE_SHIFT 58
#define VTYPE_SHIFT 61
#define DEATHS_SHIFT 30
#define VLEN_MASK ((1u << DEATHS_SHIFT) - 1)

/* The parts of a version's packed fields. */
static uint64_t record_off(const version *v) { return v->record & (MAX_OFFSET - 1); }
static uint32_t key_len(const version *v) { return (uint32_t)(v->record >> KLEN_SHIFT) & 0x1FFFF; }
static uint8_t key_type(const version *v) { return (uint8_t)(v->record >> KTYPE_SHIFT) & 7; }
static uint8_t value_type(const version *v) { return (uint8_t)(v->record >> VTYPE_SHIFT); }
static uint32_t value_len(const version *v) { return v->size & VLEN_MASK; }
static uint32_t death_count(const version *v) { return v->size >> DEATHS_SHIFT; }

/* The record field for these parts (each within its range). */
static uint64_t pack_record(uint64_t off, uint32_t klen, uint8_t ktype, uint8_t vtype) {
  return off | (uint64_t)klen << KLEN_SHIFT | (uint64_t)ktype << KTYPE_SHIFT |
         (uint64_t)vtype << VTYPE_SHIFT;
}

/* Set v's death count (0..2), keeping its value length. */
static void set_death_count(version *v, uint32_t n) {
  v->size = value_len(v) | n << DEATHS_SHIFT;
}

/* One table slot; pos == NO_POS marks an empty slot. */
typedef struct slot {
  uint32_t pos;              /* position of the key's newest version */
  uint32_t tag;              /* 32 bits of the key's hash */
} slot;

/* One block of the slab. */
typedef struct block {
  version *versions;         /* BLOCK_VERSIONS entries */
  uint64_t deaths_before;    /* sum of `deaths` over every earlier block */
} block;

/* One arena chunk; chunks are never moved, so key pointers stay valid. */
typedef struct chunk {
  struct chunk *older;
  size_t size;               /* bytes in bytes[] */
  size_t used;
  uint8_t bytes[];
} chunk;

struct pm_index {
  uint64_t seed;
  /* The slab. */
  block *blocks;
  uint32_t nblocks;          /* blocks allocated */
  uint32_t blocks_cap;       /* room in blocks[] */
  uint32_t count;            /* versions in use */
  /* The table. */
  slot *table;
  uint64_t table_cap;
  uint64_t table_keys;       /* keys in the table, tombstoned ones included */
  /* The arena. */
  chunk *arena;              /* newest chunk first */
  size_t arena_held;         /* bytes allocated for chunks */
  size_t arena_used;         /* key bytes handed out */
  size_t next_chunk;         /* size of the next ordinary chunk */
  /* Figures. */
  uint64_t live_keys;
  uint64_t live_bytes;
  uint64_t max_seq;
  uint64_t dead;             /* sum of `deaths` over the slab */
  uint64_t generation;
  /* Loading (see pm_index_load_begin). */
  int loading;
  int load_sorted;           /* positions are still in seq order */
  uint64_t load_drops;       /* versions the end of loading will drop */
  uint32_t load_pending;     /* newest versions not yet in the table */
  uint32_t pending_tags[LOAD_BATCH];
  chunk *batch_chunk;        /* arena chunk when the batch began */
  size_t batch_chunk_used;   /* and how full it was */
};

/* ---- Small helpers --------------------------------------------------------- */

/* The version at position pos (which must be allocated). */
static version *version_at(const pm_index *ix, uint32_t pos) {
  return &ix->blocks[pos >> BLOCK_SHIFT].versions[pos & (BLOCK_VERSIONS - 1)];
}

/* Blocks needed to hold n versions. */
static uint32_t blocks_for(uint64_t n) {
  return (uint32_t)((n + BLOCK_VERSIONS - 1) >> BLOCK_SHIFT);
}

/* True when v records a delete. */
static int is_tombstone(const version *v) {
  return value_type(v) == TOMBSTONE;
}

/* True when a key of len bytes lives in the arena rather than its version. */
static int is_long_key(uint32_t len) {
  return len > INLINE_KEY;
}

/* The bytes of v's key. */
static const uint8_t *key_bytes(const version *v) {
  return is_long_key(key_len(v)) ? v->key.ptr : v->key.bytes;
}

/* True when v is a version of key k. */
static int key_equals(const version *v, const pm_key *k) {
  return key_type(v) == k->type && key_len(v) == k->len &&
         (k->len == 0 || memcmp(key_bytes(v), k->data, k->len) == 0);
}

/* The 32-bit tag of k: its hash under this index's seed, with the type
** mixed in so that the same bytes under two types are two keys. */
static uint32_t key_tag(const pm_index *ix, const pm_key *k) {
  uint64_t h = XXH3_64bits_withSeed(k->data, k->len, ix->seed + k->type * TYPE_MIX);
  return (uint32_t)(h >> 32);
}

/* True when k is a key the index can hold. */
static int valid_key(const pm_key *k) {
  return k && k->type >= PM_INTEGER && k->type <= PM_BLOB &&
         k->len <= PM_MAX_KEY && (k->len == 0 || k->data);
}

/* True when a record at offset off with a value of vlen bytes and type
** vtype fits in a version. */
static int valid_record(uint64_t off, uint32_t vlen, uint8_t vtype) {
  return off < MAX_OFFSET && vlen <= PM_MAX_VALUE &&
         vtype >= PM_INTEGER && vtype <= PM_NULL;
}

/* Versions made dead by the write v: itself if it is a tombstone, plus the
** version it replaced unless that one was a tombstone (already dead). */
static uint32_t deaths_caused(const pm_index *ix, const version *v) {
  uint32_t n = is_tombstone(v);
  if (v->prev != NO_POS && !is_tombstone(version_at(ix, v->prev))) n++;
  return n;
}

/* True when v is the version a reader with snapshot snap sees. */
static int visible_at(const pm_index *ix, const version *v, uint64_t snap) {
  if (v->seq > snap || is_tombstone(v)) return 0;
  return v->next == NO_POS || version_at(ix, v->next)->seq > snap;
}

/* Fill the record fields of v (a put, or a tombstone when vtype is
** TOMBSTONE) and leave its key, links and deaths alone. */
static void set_record(version *v, uint64_t seq, uint32_t seg, uint64_t off,
                       uint32_t vlen, uint8_t vtype) {
  v->seq = seq;
  v->seg = seg;
  v->record = pack_record(off, key_len(v), key_type(v), vtype);
  v->size = vlen | death_count(v) << DEATHS_SHIFT;
}

/* Report version v at position pos through out. */
static void fill_entry(const version *v, uint32_t pos, pm_ientry *out) {
  out->seq = v->seq;
  out->seg = v->seg;
  out->off = record_off(v);
  out->vlen = value_len(v);
  out->vtype = value_type(v);
  out->key.type = key_type(v);
  out->key.len = key_len(v);
  out->key.data = key_bytes(v);
  out->pos = pos;
}

/* ---- The arena ------------------------------------------------------------- */

/* A new empty chunk of size bytes, or NULL on OOM. */
static chunk *chunk_new(size_t size) {
  if (size > SIZE_MAX - sizeof(chunk)) return NULL;
  chunk *c = pm_malloc(sizeof(chunk) + size);
  if (!c) return NULL;
  c->older = NULL;
  c->size = size;
  c->used = 0;
  return c;
}

/* Free a chunk and every older one. */
static void chunks_free(chunk *c) {
  while (c) {
    chunk *older = c->older;
    pm_free(c);
    c = older;
  }
}

/* Bytes that can still be taken from the arena without a new chunk. */
static size_t arena_room(const pm_index *ix) {
  return ix->arena ? ix->arena->size - ix->arena->used : 0;
}

/* Make c the chunk keys are taken from; what was left in the previous one
** stays unused. */
static void arena_push(pm_index *ix, chunk *c) {
  if (c->size == ix->next_chunk && ix->next_chunk < CHUNK_MAX) ix->next_chunk *= 2;
  c->older = ix->arena;
  ix->arena = c;
  ix->arena_held += sizeof(chunk) + c->size;
}

/* Copy n key bytes into the arena, which must have room (see reserve). */
static const uint8_t *arena_copy(pm_index *ix, const uint8_t *data, size_t n) {
  uint8_t *p = ix->arena->bytes + ix->arena->used;
  memcpy(p, data, n);
  ix->arena->used += n;
  ix->arena_used += n;
  return p;
}

/* Replace the whole arena by c (NULL: no chunk), which holds used bytes. */
static void arena_replace(pm_index *ix, chunk *c, size_t used) {
  chunks_free(ix->arena);
  ix->arena = c;
  ix->arena_held = c ? sizeof(chunk) + c->size : 0;
  ix->arena_used = used;
}

/* True when a quarter or more of the arena's bytes belong to no kept key,
** so that copying the kept keys to a fresh chunk is worth it. */
static int arena_worth_rebuilding(const pm_index *ix, size_t kept_bytes) {
  return ix->arena && (ix->arena_used - kept_bytes) * 4 >= ix->arena_used;
}

/* Make *v a new unlinked version of key k for the record (seq, seg, off,
** vlen, vtype): the key inside it when short, else copied to the arena
** (which must have room). Loading builds versions in place in the slab
** with this, field by field, which is quicker than copying one in. */
static void init_version(pm_index *ix, version *v, const pm_key *k, uint64_t seq,
                         uint32_t seg, uint64_t off, uint32_t vlen, uint8_t vtype) {
  v->seq = seq;
  v->record = pack_record(off, k->len, k->type, vtype);
  v->seg = seg;
  v->size = vlen;
  memset(v->key.bytes, 0, sizeof v->key.bytes);
  if (is_long_key(k->len)) {
    v->key.ptr = arena_copy(ix, k->data, k->len);
  } else if (k->len > 0) {
    memcpy(v->key.bytes, k->data, k->len);
  }
  v->prev = NO_POS;
  v->next = NO_POS;
}

/* ---- The table ------------------------------------------------------------- */

/* The slot where probing for tag starts in a table of cap slots. */
static uint64_t home_slot(uint32_t tag, uint64_t cap) {
  return ((uint64_t)tag * cap) >> 32;
}

/* True when keys fit in cap slots at the maximum load of 4/5. */
static int table_fits(uint64_t cap, uint64_t keys) {
  return keys * 5 <= cap * 4;
}

/* Capacity for keys at a load of 3/4: what a rebuilt table gets. */
static uint64_t table_capacity_for(uint64_t keys) {
  uint64_t cap = (keys * 4 + 2) / 3;
  if (cap > TABLE_MAX) return TABLE_MAX;
  return cap < TABLE_MIN ? TABLE_MIN : cap;
}

/* The capacity a table of cap slots grows to for keys: doubled, or fitted
** to the keys when that is more (a large reservation, such as one made
** before loading a store, gets a table the end of loading need not shrink).
** 0 when that exceeds TABLE_MAX. */
static uint64_t table_grown(uint64_t cap, uint64_t keys) {
  uint64_t fitted = table_capacity_for(keys);
  cap = fitted > cap * 2 ? fitted : cap * 2;
  return table_fits(cap, keys) && cap <= TABLE_MAX ? cap : 0;
}

/* Ask the kernel to back the whole 2 MiB pages inside [p, p + size) with
** huge pages: a big table is read at random, and huge pages spare most TLB
** misses and page faults. Only advice; nothing happens where unsupported. */
static void advise_huge_pages(void *p, size_t size) {
#ifdef MADV_HUGEPAGE
  const uintptr_t huge = (uintptr_t)2 << 20;
  uintptr_t start = ((uintptr_t)p + huge - 1) & ~(huge - 1);
  uintptr_t end = ((uintptr_t)p + size) & ~(huge - 1);
  if (end > start) madvise((void *)start, end - start, MADV_HUGEPAGE);
#else
  (void)p;
  (void)size;
#endif
}

/* A table of cap empty slots, or NULL on OOM. */
static slot *table_new(uint64_t cap) {
  if (cap > SIZE_MAX / sizeof(slot)) return NULL;
  size_t size = (size_t)cap * sizeof(slot);
  slot *t = pm_malloc(size);
  if (!t) return NULL;
  if (size >= HUGE_TABLE) advise_huge_pages(t, size);
  memset(t, 0xFF, size);   /* every pos is NO_POS */
  return t;
}

/* The index of the slot holding key k (whose tag is tag), or of the empty
** slot where k would go. */
static uint64_t table_probe(const pm_index *ix, uint32_t tag, const pm_key *k) {
  uint64_t i = home_slot(tag, ix->table_cap);
  for (;;) {
    const slot *s = &ix->table[i];
    if (s->pos == NO_POS) return i;
    if (s->tag == tag && key_equals(version_at(ix, s->pos), k)) return i;
    if (++i == ix->table_cap) i = 0;
  }
}

/* Position of the newest version of k, or NO_POS. */
static uint32_t table_lookup(const pm_index *ix, uint32_t tag, const pm_key *k) {
  return ix->table[table_probe(ix, tag, k)].pos;
}

/* Point k's slot at pos, adding the key if absent (the table has room). */
static void table_set(pm_index *ix, uint32_t tag, const pm_key *k, uint32_t pos) {
  slot *s = &ix->table[table_probe(ix, tag, k)];
  if (s->pos == NO_POS) {
    s->tag = tag;
    ix->table_keys++;
  }
  s->pos = pos;
}

/* A table being filled with keys known to be distinct, and a run of slots
** known to be full: [run_start, run_end). Keys mostly arrive in the order
** of their home slots, so a key whose home falls inside the run can skip
** straight to its end instead of probing through it. */
typedef struct table_filler {
  slot *t;
  uint64_t cap;
  uint64_t run_start, run_end;
} table_filler;

/* Put (tag, pos) in the first empty slot from its home. */
static void filler_place(table_filler *f, uint32_t tag, uint32_t pos) {
  uint64_t home = home_slot(tag, f->cap);
  uint64_t i = home >= f->run_start && home < f->run_end ? f->run_end : home;
  for (;;) {
    if (i == f->cap) i = 0;
    if (f->t[i].pos == NO_POS) break;
    i++;
  }
  f->t[i].pos = pos;
  f->t[i].tag = tag;
  if (i == home) f->run_start = i;
  if (i == home || i == f->run_end) f->run_end = i + 1;
}

/* Fill the empty table `to` with every key of `from`; with remap, a slot's
** position p becomes remap[p] and keys mapped to NO_POS are left out. */
static void table_refill(slot *to, uint64_t to_cap, const slot *from,
                         uint64_t from_cap, const uint32_t *remap) {
  table_filler f = { to, to_cap, 0, 0 };
  for (uint64_t i = 0; i < from_cap; i++) {
    uint32_t pos = from[i].pos;
    if (pos == NO_POS) continue;
    if (remap) {
      if (i + PREFETCH_AHEAD < from_cap && from[i + PREFETCH_AHEAD].pos != NO_POS)
        __builtin_prefetch(&remap[from[i + PREFETCH_AHEAD].pos]);
      pos = remap[pos];
    }
    if (pos != NO_POS) filler_place(&f, from[i].tag, pos);
  }
}

/* Rewrite every slot's position p as remap[p], in place (every key stays). */
static void table_remap(pm_index *ix, const uint32_t *remap) {
  slot *t = ix->table;
  for (uint64_t i = 0; i < ix->table_cap; i++) {
    if (i + PREFETCH_AHEAD < ix->table_cap && t[i + PREFETCH_AHEAD].pos != NO_POS)
      __builtin_prefetch(&remap[t[i + PREFETCH_AHEAD].pos]);
    if (t[i].pos != NO_POS) t[i].pos = remap[t[i].pos];
  }
}

/* Install t (filled) as the table, freeing the old one. */
static void table_install(pm_index *ix, slot *t, uint64_t cap, uint64_t keys) {
  pm_free(ix->table);
  ix->table = t;
  ix->table_cap = cap;
  ix->table_keys = keys;
}

/* ---- Growth: obtain all memory first, then install it -------------------- */

/* Memory obtained for a change, installed only once all of it was obtained. */
typedef struct growth {
  block *blocks;             /* a longer block list to install, or NULL */
  uint32_t blocks_cap;
  uint32_t new_blocks;       /* blocks allocated past ix->nblocks */
  slot *table;               /* a larger empty table, or NULL */
  uint64_t table_cap;
  chunk *chunk;              /* a new arena chunk, or NULL */
} growth;

/* The block list new blocks go into: the growth's new one, or the index's. */
static block *growth_block_list(const pm_index *ix, const growth *g) {
  return g->blocks ? g->blocks : ix->blocks;
}

/* Allocate the blocks for n more versions. New blocks go past the used end
** of the block list (a copy of it when it lacks room), which changes
** nothing the index shows. */
static int grow_slab(pm_index *ix, uint64_t n, growth *g) {
  if (n > MAX_VERSIONS - ix->count) return PM_NOMEM;
  uint32_t need = blocks_for(ix->count + n);
  if (need <= ix->nblocks) return PM_OK;
  if (need > ix->blocks_cap) {
    uint32_t cap = ix->blocks_cap < 8 ? 8 : ix->blocks_cap * 2;
    if (cap < need) cap = need;
    g->blocks = pm_malloc((size_t)cap * sizeof(block));
    if (!g->blocks) return PM_NOMEM;
    g->blocks_cap = cap;
    if (ix->nblocks) memcpy(g->blocks, ix->blocks, ix->nblocks * sizeof(block));
  }
  block *list = growth_block_list(ix, g);
  for (uint32_t b = ix->nblocks; b < need; b++) {
    list[b].versions = pm_malloc(BLOCK_VERSIONS * sizeof(version));
    if (!list[b].versions) return PM_NOMEM;
    list[b].deaths_before = 0;
    g->new_blocks++;
  }
  return PM_OK;
}

/* Allocate a larger table if n_keys more keys would overload it. */
static int grow_table(const pm_index *ix, uint64_t n_keys, growth *g) {
  uint64_t keys = ix->table_keys + n_keys;
  if (table_fits(ix->table_cap, keys)) return PM_OK;
  uint64_t cap = table_grown(ix->table_cap, keys);
  if (cap == 0) return PM_NOMEM;
  g->table = table_new(cap);
  if (!g->table) return PM_NOMEM;
  g->table_cap = cap;
  return PM_OK;
}

/* Allocate an arena chunk if key_bytes do not fit in the current one. */
static int grow_arena(const pm_index *ix, size_t key_bytes, growth *g) {
  if (key_bytes <= arena_room(ix)) return PM_OK;
  g->chunk = chunk_new(key_bytes > ix->next_chunk ? key_bytes : ix->next_chunk);
  return g->chunk ? PM_OK : PM_NOMEM;
}

/* Free whatever g obtained; the index is as it was. */
static void growth_abandon(pm_index *ix, growth *g) {
  block *list = growth_block_list(ix, g);
  for (uint32_t b = 0; b < g->new_blocks; b++) pm_free(list[ix->nblocks + b].versions);
  pm_free(g->blocks);
  pm_free(g->table);
  pm_free(g->chunk);
}

/* Install everything g obtained. Cannot fail. */
static void growth_install(pm_index *ix, growth *g) {
  if (g->blocks) {
    pm_free(ix->blocks);
    ix->blocks = g->blocks;
    ix->blocks_cap = g->blocks_cap;
  }
  ix->nblocks += g->new_blocks;
  if (g->table) {
    table_refill(g->table, g->table_cap, ix->table, ix->table_cap, NULL);
    table_install(ix, g->table, g->table_cap, ix->table_keys);
  }
  if (g->chunk) arena_push(ix, g->chunk);
}

/* Make room for n_versions more versions, n_keys more keys in the table and
** key_bytes more bytes in the arena. PM_OK or PM_NOMEM (nothing changed). */
static int make_room(pm_index *ix, uint64_t n_versions, uint64_t n_keys, size_t key_bytes) {
  growth g = { 0 };
  int rc = grow_slab(ix, n_versions, &g);
  if (rc == PM_OK) rc = grow_table(ix, n_keys, &g);
  if (rc == PM_OK) rc = grow_arena(ix, key_bytes, &g);
  if (rc != PM_OK) {
    growth_abandon(ix, &g);
    return rc;
  }
  growth_install(ix, &g);
  return PM_OK;
}

/* ---- Appending versions ------------------------------------------------------ */

/* Write v at position pos, counting the deaths it causes (v's prev, if any,
** must already be in place). Blocks start their death sums here. */
static void store_version(pm_index *ix, uint32_t pos, const version *v) {
  if ((pos & (BLOCK_VERSIONS - 1)) == 0) ix->blocks[pos >> BLOCK_SHIFT].deaths_before = ix->dead;
  version *to = version_at(ix, pos);
  *to = *v;
  set_death_count(to, deaths_caused(ix, to));
  ix->dead += death_count(to);
}

/* Append v (key, record and prev set) as the newest version of the slab,
** which must have room, and make it its prev's successor. Returns its
** position. */
static uint32_t append_version(pm_index *ix, version *v) {
  uint32_t pos = ix->count;
  v->next = NO_POS;
  store_version(ix, pos, v);
  if (v->prev != NO_POS) version_at(ix, v->prev)->next = pos;
  ix->count++;
  return pos;
}

/* Append a version of a key that has none in the slab: the record, a copy
** of k, no links. Room must have been made. */
static void append_first_version(pm_index *ix, const pm_key *k, uint32_t tag,
                                 uint64_t seq, uint32_t seg, uint64_t off,
                                 uint32_t vlen, uint8_t vtype) {
  version v;
  init_version(ix, &v, k, seq, seg, off, vlen, vtype);
  table_set(ix, tag, k, append_version(ix, &v));
}

/* Append a version replacing the one at position newest (sharing its key).
** Room must have been made. */
static void append_successor(pm_index *ix, const pm_key *k, uint32_t tag, uint32_t newest,
                             uint64_t seq, uint32_t seg, uint64_t off,
                             uint32_t vlen, uint8_t vtype) {
  version v = *version_at(ix, newest);
  set_record(&v, seq, seg, off, vlen, vtype);
  v.prev = newest;
  table_set(ix, tag, k, append_version(ix, &v));
}

/* ---- Creating, reserving, writing, finding ----------------------------------- */

/* A new empty index whose hash is seeded with seed. NULL on OOM. */
pm_index *pm_index_new(uint64_t seed) {
  pm_index *ix = pm_calloc(1, sizeof *ix);
  if (!ix) return NULL;
  ix->table = table_new(TABLE_MIN);
  if (!ix->table) {
    pm_free(ix);
    return NULL;
  }
  ix->seed = seed;
  ix->table_cap = TABLE_MIN;
  ix->next_chunk = CHUNK_MIN;
  return ix;
}

/* Free the index and everything it holds. NULL is fine. */
void pm_index_free(pm_index *ix) {
  if (!ix) return;
  for (uint32_t b = 0; b < ix->nblocks; b++) pm_free(ix->blocks[b].versions);
  pm_free(ix->blocks);
  pm_free(ix->table);
  chunks_free(ix->arena);
  pm_free(ix);
}

/* Make the next n_versions puts/deletes, with at most key_bytes of keys,
** unable to fail. A later compaction or load_end gives the room back.
** PM_OK or PM_NOMEM (nothing changed). */
int pm_index_reserve(pm_index *ix, size_t n_versions, size_t key_bytes) {
  return make_room(ix, n_versions, n_versions, key_bytes);
}

/* Append a put of k at seq (above pm_index_max_seq, else PM_MISUSE). PM_OK,
** PM_NOMEM (nothing changed) or PM_MISUSE (also for a bad key or record,
** or during loading). */
int pm_index_put(pm_index *ix, const pm_key *k, uint64_t seq, uint32_t seg,
                 uint64_t off, uint32_t vlen, uint8_t vtype) {
  if (ix->loading || !valid_key(k) || !valid_record(off, vlen, vtype) || seq <= ix->max_seq)
    return PM_MISUSE;
  uint32_t tag = key_tag(ix, k);
  uint32_t newest = table_lookup(ix, tag, k);
  int is_new = newest == NO_POS;
  int rc = make_room(ix, 1, is_new, is_new && is_long_key(k->len) ? k->len : 0);
  if (rc != PM_OK) return rc;
  if (is_new || is_tombstone(version_at(ix, newest))) {
    ix->live_keys++;
    ix->live_bytes += k->len;
  } else {
    ix->live_bytes -= value_len(version_at(ix, newest));
  }
  ix->live_bytes += vlen;
  if (is_new) append_first_version(ix, k, tag, seq, seg, off, vlen, vtype);
  else append_successor(ix, k, tag, newest, seq, seg, off, vlen, vtype);
  ix->max_seq = seq;
  return PM_OK;
}

/* Append a tombstone for k at seq. PM_OK, PM_NOTFOUND (k absent or already
** deleted: nothing changes, max_seq included), PM_NOMEM or PM_MISUSE. */
int pm_index_delete(pm_index *ix, const pm_key *k, uint64_t seq) {
  if (ix->loading || !valid_key(k) || seq <= ix->max_seq) return PM_MISUSE;
  uint32_t tag = key_tag(ix, k);
  uint32_t newest = table_lookup(ix, tag, k);
  if (newest == NO_POS || is_tombstone(version_at(ix, newest))) return PM_NOTFOUND;
  int rc = make_room(ix, 1, 0, 0);
  if (rc != PM_OK) return rc;
  const version *old = version_at(ix, newest);
  ix->live_keys--;
  ix->live_bytes -= (uint64_t)key_len(old) + value_len(old);
  append_successor(ix, k, tag, newest, seq, 0, 0, 0, TOMBSTONE);
  ix->max_seq = seq;
  return PM_OK;
}

/* The version of k visible at snap: walk back from the newest while it is
** too new. PM_OK with *out filled, PM_NOTFOUND, or PM_MISUSE for a NULL key
** or key data. */
int pm_index_find(const pm_index *ix, const pm_key *k, uint64_t snap, pm_ientry *out) {
  if (!k || (k->len > 0 && !k->data)) return PM_MISUSE;
  if (!valid_key(k)) return PM_NOTFOUND;
  uint32_t pos = table_lookup(ix, key_tag(ix, k), k);
  while (pos != NO_POS) {
    const version *v = version_at(ix, pos);
    if (v->seq <= snap) {
      if (is_tombstone(v)) return PM_NOTFOUND;
      fill_entry(v, pos, out);
      return PM_OK;
    }
    pos = v->prev;
  }
  return PM_NOTFOUND;
}

/* Point the put (k, seq) at (seg, off). PM_OK, PM_NOTFOUND (no such put:
** compacted away, or a tombstone) or PM_MISUSE (bad key or offset). */
int pm_index_relocate(pm_index *ix, const pm_key *k, uint64_t seq,
                      uint32_t seg, uint64_t off) {
  if (!valid_key(k) || off >= MAX_OFFSET) return PM_MISUSE;
  uint32_t pos = table_lookup(ix, key_tag(ix, k), k);
  while (pos != NO_POS) {
    version *v = version_at(ix, pos);
    if (v->seq == seq) {
      if (is_tombstone(v)) return PM_NOTFOUND;
      v->seg = seg;
      v->record = pack_record(off, key_len(v), key_type(v), value_type(v));
      return PM_OK;
    }
    if (v->seq < seq) break;
    pos = v->prev;
  }
  return PM_NOTFOUND;
}

/* ---- Iteration ----------------------------------------------------------------- */

/* The first position whose seq is >= seq, or the slab end. */
uint32_t pm_index_seek(const pm_index *ix, uint64_t seq) {
  uint32_t lo = 0, hi = ix->count;
  while (lo < hi) {
    uint32_t mid = lo + (hi - lo) / 2;
    if (version_at(ix, mid)->seq < seq) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/* The slab end: one past the newest version. */
uint32_t pm_index_end(const pm_index *ix) {
  return ix->count;
}

/* How many positions hold a seq <= snap (they come first). */
static uint32_t positions_up_to(const pm_index *ix, uint64_t snap) {
  return snap == UINT64_MAX ? ix->count : pm_index_seek(ix, snap + 1);
}

/* The first version visible at snap at or after *pos; *pos moves just past
** it. Stops early at the first version newer than snap, since all later
** ones are newer too. PM_OK, or PM_NOTFOUND with *pos left alone. */
int pm_index_next(const pm_index *ix, uint32_t *pos, uint64_t snap, pm_ientry *out) {
  for (uint32_t p = *pos; p < ix->count; p++) {
    const version *v = version_at(ix, p);
    if (v->seq > snap) break;
    if (visible_at(ix, v, snap)) {
      fill_entry(v, p, out);
      *pos = p + 1;
      return PM_OK;
    }
  }
  return PM_NOTFOUND;
}

/* The last version visible at snap strictly before *pos (any *pos past the
** end counts as the end); *pos moves to it. Versions newer than snap are
** skipped with one binary search. PM_OK, or PM_NOTFOUND with *pos left
** alone. */
int pm_index_prev(const pm_index *ix, uint32_t *pos, uint64_t snap, pm_ientry *out) {
  uint32_t p = *pos < ix->count ? *pos : ix->count;
  if (p > 0 && version_at(ix, p - 1)->seq > snap) p = positions_up_to(ix, snap);
  while (p > 0) {
    p--;
    const version *v = version_at(ix, p);
    if (visible_at(ix, v, snap)) {
      fill_entry(v, p, out);
      *pos = p;
      return PM_OK;
    }
  }
  return PM_NOTFOUND;
}

/* Bumped whenever positions are renumbered (compaction, end of loading). */
uint64_t pm_index_generation(const pm_index *ix) {
  return ix->generation;
}

/* ---- Rebuilding: compaction and the end of loading ------------------------------
** Both keep some versions and drop the rest, in the same steps:
**   plan     decide what to keep and number the kept versions (remap);
**   obtain   allocate the new table, a fresh arena chunk when worth it, and
**            sort buffers when the kept versions are out of seq order;
**   move     slide kept versions down in place, relinking them;
**   sort     (loading only) gather them into new blocks in seq order;
**   finish   refill the table, free emptied blocks and the old arena.
** Nothing is changed before everything is obtained. */

/* Decides whether a version survives a rebuild. */
typedef int (*keep_rule)(const pm_index *ix, const version *v, uint64_t oldest);

typedef struct rebuild {
  keep_rule keep;
  uint64_t oldest;           /* the oldest snapshot, for compaction */
  int fit_table;             /* size the table for the kept keys exactly */
  int drops_nothing;         /* known to keep every version: no plan, no move */
  uint32_t *remap;           /* old position -> new position, or NO_POS */
  uint32_t kept;             /* versions kept */
  uint64_t kept_keys;        /* keys with a kept version */
  size_t kept_key_bytes;     /* arena bytes of kept long keys, once per key */
  int sorted;                /* the kept versions are in seq order */
  slot *table;               /* the new table, empty until finish */
  uint64_t table_cap;
  int move_keys;             /* copy kept long keys to a fresh arena */
  chunk *keys;               /* that arena's chunk (NULL if no bytes) */
  int table_in_place;        /* keep the table, rewriting its positions */
  uint64_t *words, *spare;   /* sort buffers, kept entries each (see order_by_seq) */
  version **sorted_blocks;   /* blocks the sorted versions are gathered into */
  uint32_t nsorted_blocks;   /* how many of them are allocated */
} rebuild;

/* Compaction keeps what some snapshot >= oldest can see: not a version
** superseded at or before oldest, not a tombstone at or before oldest. A
** tombstone at or before oldest has nothing older left to shadow: the
** version it deleted was superseded by it, at or before oldest. */
static int kept_by_compaction(const pm_index *ix, const version *v, uint64_t oldest) {
  if (is_tombstone(v) && v->seq <= oldest) return 0;
  return v->next == NO_POS || version_at(ix, v->next)->seq > oldest;
}

/* The end of loading keeps the newest version of each key if it is a put. */
static int kept_by_loading(const pm_index *ix, const version *v, uint64_t oldest) {
  (void)ix;
  (void)oldest;
  return !is_tombstone(v) && v->next == NO_POS;
}

/* True when v is the oldest kept version of its key. Kept versions of a key
** are always its newest ones, so it is enough to look at v's prev. */
static int starts_kept_chain(const pm_index *ix, const rebuild *r, const version *v) {
  return v->prev == NO_POS || !r->keep(ix, version_at(ix, v->prev), r->oldest);
}

/* Decide what to keep: fill r->remap, the counts, and whether the kept
** versions are in seq order. Reads only. */
static void plan_rebuild(const pm_index *ix, rebuild *r) {
  uint64_t last_seq = 0;
  r->kept = 0;
  r->kept_keys = 0;
  r->kept_key_bytes = 0;
  r->sorted = 1;
  for (uint32_t p = 0; p < ix->count; p++) {
    const version *v = version_at(ix, p);
    int keep = r->keep(ix, v, r->oldest);
    r->remap[p] = keep ? r->kept : NO_POS;
    if (!keep) continue;
    if (r->kept > 0 && v->seq < last_seq) r->sorted = 0;
    last_seq = v->seq;
    r->kept++;
    if (v->next == NO_POS) r->kept_keys++;
    if (is_long_key(key_len(v)) && starts_kept_chain(ix, r, v)) r->kept_key_bytes += key_len(v);
  }
}

/* The plan when every version is kept and only the order is wrong (a load
** without deletes or duplicates): sort_kept fills the remap. */
static void plan_keeping_all(const pm_index *ix, rebuild *r) {
  r->kept = ix->count;
  r->kept_keys = ix->table_keys;
  r->kept_key_bytes = ix->arena_used;
  r->sorted = 0;
}

/* The table size after a rebuild keeping keys: the current one while it
** fits them and is not too big (a quarter over the fitted size when the
** rebuild fits the table, four times over for compaction, which is likely
** to see the keys come back), else the fitted one. */
static uint64_t rebuilt_table_cap(const pm_index *ix, uint64_t keys, int fit) {
  uint64_t fitted = table_capacity_for(keys);
  uint64_t most = fit ? fitted + fitted / 4 : fitted * 4;
  return table_fits(ix->table_cap, keys) && ix->table_cap <= most ? ix->table_cap : fitted;
}

/* Free what the rebuild allocated and did not install. */
static void rebuild_release(rebuild *r) {
  pm_free(r->remap);
  pm_free(r->table);
  pm_free(r->keys);
  pm_free(r->words);
  pm_free(r->spare);
  if (r->sorted_blocks) {
    for (uint32_t b = 0; b < r->nsorted_blocks; b++) pm_free(r->sorted_blocks[b]);
    pm_free(r->sorted_blocks);
  }
}

/* Allocate the buffers and blocks sort_kept needs. PM_OK or PM_NOMEM. */
static int obtain_sort_buffers(rebuild *r) {
  uint32_t nblocks = blocks_for(r->kept);
  r->words = pm_malloc((size_t)r->kept * sizeof(uint64_t));
  r->spare = pm_malloc((size_t)r->kept * sizeof(uint64_t));
  r->sorted_blocks = pm_malloc((size_t)nblocks * sizeof(version *));
  if (!r->words || !r->spare || !r->sorted_blocks) return PM_NOMEM;
  for (; r->nsorted_blocks < nblocks; r->nsorted_blocks++) {
    r->sorted_blocks[r->nsorted_blocks] = pm_malloc(BLOCK_VERSIONS * sizeof(version));
    if (!r->sorted_blocks[r->nsorted_blocks]) return PM_NOMEM;
  }
  return PM_OK;
}

/* Allocate the new table (unless every key stays and the table keeps its
** size: then it is rewritten in place), the fresh key chunk if worth it
** and the sort buffers if needed. PM_OK or PM_NOMEM. */
static int rebuild_obtain(const pm_index *ix, rebuild *r) {
  r->table_cap = rebuilt_table_cap(ix, r->kept_keys, r->fit_table);
  r->table_in_place = r->table_cap == ix->table_cap && r->kept_keys == ix->table_keys;
  if (!r->table_in_place) {
    r->table = table_new(r->table_cap);
    if (!r->table) return PM_NOMEM;
  }
  r->move_keys = arena_worth_rebuilding(ix, r->kept_key_bytes);
  if (r->move_keys && r->kept_key_bytes > 0) {
    r->keys = chunk_new(r->kept_key_bytes);
    if (!r->keys) return PM_NOMEM;
  }
  return r->sorted ? PM_OK : obtain_sort_buffers(r);
}

/* A link after the rebuild: the new position, or NO_POS when dropped. */
static uint32_t relink(const rebuild *r, uint32_t pos) {
  return pos == NO_POS ? NO_POS : r->remap[pos];
}

/* The key pointer of kept long-key version v (links already new): shared
** with its kept prev, or copied to the fresh chunk for the oldest kept. */
static const uint8_t *moved_key(const pm_index *ix, rebuild *r, const version *v) {
  if (v->prev != NO_POS) return version_at(ix, v->prev)->key.ptr;
  uint8_t *p = r->keys->bytes + r->keys->used;
  memcpy(p, v->key.ptr, key_len(v));
  r->keys->used += key_len(v);
  return p;
}

/* Slide every kept version down to its new position, in position order,
** with new links, key pointers and death counts. New positions never
** exceed old ones, so nothing is overwritten before it is read. */
static void move_kept(pm_index *ix, rebuild *r) {
  ix->dead = 0;
  for (uint32_t p = 0; p < ix->count; p++) {
    if (r->remap[p] == NO_POS) continue;
    version v = *version_at(ix, p);
    v.prev = relink(r, v.prev);
    v.next = relink(r, v.next);
    if (r->move_keys && is_long_key(key_len(&v))) v.key.ptr = moved_key(ix, r, &v);
    store_version(ix, r->remap[p], &v);
  }
}

/* One stable pass of the radix sort: move a into to by the digit of the
** high halves at bit shift (of the whole word), of mask + 1 values. */
static void radix_pass(const uint64_t *a, uint64_t *to, uint32_t n, int shift, uint32_t mask) {
  uint32_t start[1u << RADIX_BITS];
  memset(start, 0, (mask + 1) * sizeof start[0]);
  for (uint32_t i = 0; i < n; i++) start[(a[i] >> shift) & mask]++;
  uint32_t sum = 0;
  for (uint32_t d = 0; d <= mask; d++) {
    uint32_t c = start[d];
    start[d] = sum;
    sum += c;
  }
  for (uint32_t i = 0; i < n; i++) to[start[(a[i] >> shift) & mask]++] = a[i];
}

/* Sort n words by their high halves, which are below 2^bits: a stable
** least-significant-digit radix sort in as few passes of at most
** RADIX_BITS bits as that needs (two for a million consecutive seqs). a
** and spare hold n words each; returns the one holding the result. */
static uint64_t *radix_sort(uint64_t *a, uint64_t *spare, uint32_t n, int bits) {
  int passes = (bits + RADIX_BITS - 1) / RADIX_BITS;
  int width = passes ? (bits + passes - 1) / passes : 0;
  for (int p = 0; p < passes; p++) {
    radix_pass(a, spare, n, 32 + p * width, (1u << width) - 1);
    uint64_t *t = a;
    a = spare;
    spare = t;
  }
  return a;
}

/* Compare two words by the full seq of the versions at their positions
** (qsort_r callback; ctx is the index). */
static int compare_full_seqs(const void *a, const void *b, void *ctx) {
  uint64_t sa = version_at(ctx, (uint32_t)*(const uint64_t *)a)->seq;
  uint64_t sb = version_at(ctx, (uint32_t)*(const uint64_t *)b)->seq;
  return (sa > sb) - (sa < sb);
}

/* After sorting by the top 32 bits of seqs that span more than 2^32, put
** each run of words equal in those bits in full seq order. */
static void order_runs_by_full_seq(const pm_index *ix, uint64_t *w, uint32_t n) {
  for (uint32_t i = 0, j; i < n; i = j) {
    for (j = i + 1; j < n && (w[j] >> 32) == (w[i] >> 32); j++) continue;
    if (j - i > 1) qsort_r(w + i, j - i, sizeof w[0], compare_full_seqs, (void *)ix);
  }
}

/* The positions of the first r->kept versions in seq order, as words
** whose low halves are the positions (in r->words or r->spare). Each word
** is (seq - lowest seq) << 32 | position; when the seqs span more than
** 2^32, the seq part keeps only its top 32 bits and ties are then sorted
** by full seq. */
static uint64_t *order_by_seq(const pm_index *ix, rebuild *r) {
  uint32_t n = r->kept;
  if (n == 0) return r->words;
  uint64_t lo = UINT64_MAX, hi = 0;
  for (uint32_t i = 0; i < n; i++) {
    uint64_t seq = version_at(ix, i)->seq;
    if (seq < lo) lo = seq;
    if (seq > hi) hi = seq;
  }
  int bits = 64 - __builtin_clzll((hi - lo) | 1);
  int shift = bits > 32 ? bits - 32 : 0;
  for (uint32_t i = 0; i < n; i++) r->words[i] = (version_at(ix, i)->seq - lo) >> shift << 32 | i;
  uint64_t *order = radix_sort(r->words, r->spare, n, bits - shift);
  if (shift > 0) order_runs_by_full_seq(ix, order, n);
  return order;
}

/* Copy the kept versions into the new blocks in the order given (positions
** in the low halves), fetching a few entries ahead (the sources are
** scattered). */
static void gather_versions(const pm_index *ix, rebuild *r, const uint64_t *order) {
  for (uint32_t i = 0; i < r->kept; i++) {
    if (i + PREFETCH_AHEAD < r->kept) __builtin_prefetch(version_at(ix, (uint32_t)order[i + PREFETCH_AHEAD]));
    r->sorted_blocks[i >> BLOCK_SHIFT][i & (BLOCK_VERSIONS - 1)] = *version_at(ix, (uint32_t)order[i]);
  }
}

/* Put the kept versions (loaded, so unlinked) in seq order in the new
** blocks, and make r->remap give their final positions. */
static void sort_kept(pm_index *ix, rebuild *r) {
  uint64_t *order = order_by_seq(ix, r);
  if (r->drops_nothing) {
    for (uint32_t i = 0; i < r->kept; i++) r->remap[(uint32_t)order[i]] = i;
  } else {
    uint32_t *final = (uint32_t *)(order == r->words ? r->spare : r->words);
    for (uint32_t i = 0; i < r->kept; i++) final[(uint32_t)order[i]] = i;
    for (uint32_t p = 0; p < ix->count; p++) {
      if (r->remap[p] != NO_POS) r->remap[p] = final[r->remap[p]];
    }
  }
  gather_versions(ix, r, order);
}

/* Replace every block by the blocks the sorted versions were gathered into. */
static void install_sorted_blocks(pm_index *ix, rebuild *r) {
  for (uint32_t b = 0; b < ix->nblocks; b++) pm_free(ix->blocks[b].versions);
  for (uint32_t b = 0; b < r->nsorted_blocks; b++) {
    ix->blocks[b].versions = r->sorted_blocks[b];
    ix->blocks[b].deaths_before = 0;
  }
  ix->nblocks = r->nsorted_blocks;
  pm_free(r->sorted_blocks);
  r->sorted_blocks = NULL;
}

/* Free the blocks beyond those holding the first n versions. */
static void trim_blocks(pm_index *ix, uint32_t n) {
  uint32_t keep = blocks_for(n);
  while (ix->nblocks > keep) pm_free(ix->blocks[--ix->nblocks].versions);
}

/* Install the refilled table, the new blocks and the fresh arena, free
** emptied blocks and temporary buffers, and bump the generation. */
static void rebuild_finish(pm_index *ix, rebuild *r) {
  if (r->table_in_place) {
    table_remap(ix, r->remap);
  } else {
    table_refill(r->table, r->table_cap, ix->table, ix->table_cap, r->remap);
    table_install(ix, r->table, r->table_cap, r->kept_keys);
    r->table = NULL;
  }
  if (r->move_keys) {
    arena_replace(ix, r->keys, r->kept_key_bytes);
    r->keys = NULL;
  }
  if (r->sorted_blocks) install_sorted_blocks(ix, r);
  ix->count = r->kept;
  trim_blocks(ix, r->kept);
  ix->generation++;
  rebuild_release(r);
}

/* Run a whole rebuild with r's rule. PM_OK or PM_NOMEM (nothing changed). */
static int rebuild_index(pm_index *ix, rebuild *r) {
  r->remap = pm_malloc((size_t)ix->count * sizeof(uint32_t));
  if (!r->remap) return PM_NOMEM;
  if (r->drops_nothing) plan_keeping_all(ix, r);
  else plan_rebuild(ix, r);
  int rc = rebuild_obtain(ix, r);
  if (rc != PM_OK) {
    rebuild_release(r);
    return rc;
  }
  if (r->kept < ix->count) move_kept(ix, r);
  if (!r->sorted) sort_kept(ix, r);
  rebuild_finish(ix, r);
  return PM_OK;
}

/* How many versions compaction for oldest would drop: the deaths caused by
** writes at or before oldest (a binary search, then a sum over part of one
** block). */
static uint64_t droppable_versions(const pm_index *ix, uint64_t oldest) {
  uint32_t end = positions_up_to(ix, oldest);
  if (end == ix->count) return ix->dead;
  uint64_t n = ix->blocks[end >> BLOCK_SHIFT].deaths_before;
  for (uint32_t p = end & ~(BLOCK_VERSIONS - 1); p < end; p++) n += death_count(version_at(ix, p));
  return n;
}

/* Drop the versions no snapshot >= oldest_snap can see, if they are a
** quarter of the slab or more. PM_OK, PM_NOMEM (unchanged), or PM_MISUSE
** during loading. */
int pm_index_compact(pm_index *ix, uint64_t oldest_snap) {
  if (ix->loading) return PM_MISUSE;
  uint64_t droppable = droppable_versions(ix, oldest_snap);
  if (droppable == 0 || droppable * 4 < ix->count) return PM_OK;
  rebuild r = { .keep = kept_by_compaction, .oldest = oldest_snap };
  return rebuild_index(ix, &r);
}

/* ---- Loading ---------------------------------------------------------------------
** Each loaded operation is appended to the slab at once, and its key's home
** slot is prefetched; every LOAD_BATCH operations the batch is settled into
** the table. A key already there takes the operation if it wins (its one
** version is updated in place) and the appended copy goes; so the slab
** holds one version per key throughout, plus at most one batch. The figures
** (count, live bytes), whether positions are still in seq order, and how
** many versions the end of loading must drop are kept up to date, so that
** loading a log in order needs no pass over the slab at the end. */

/* Start loading: load_put/load_delete may now come in any seq order. Until
** load_end only they and the figures may be used, and the count and live
** bytes leave out the operations of the batch not yet settled. */
void pm_index_load_begin(pm_index *ix) {
  if (ix->loading) return;
  ix->loading = 1;
  ix->load_sorted = 1;
  ix->load_drops = ix->dead;   /* every version but the newest put of each key */
  ix->load_pending = 0;
}

/* Does a put at seq replace kept, the operation kept so far for its key?
** A higher seq wins; at an equal seq a delete wins, and between two puts
** the later call (the same write read again, say from a log compaction's
** copy). */
static int put_wins(const version *kept, uint64_t seq) {
  return seq > kept->seq || (seq == kept->seq && !is_tombstone(kept));
}

/* Does a delete at seq replace kept? Yes unless kept is newer. */
static int delete_wins(const version *kept, uint64_t seq) {
  return seq >= kept->seq;
}

/* Count the loaded version v in (sign +1) or out of (-1) the figures: a
** put is a live key, a tombstone a version load_end drops. */
static void count_loaded(pm_index *ix, const version *v, int sign) {
  if (is_tombstone(v)) {
    ix->load_drops += sign;
  } else {
    ix->live_keys += sign;
    ix->live_bytes += sign * ((int64_t)key_len(v) + value_len(v));
  }
}

/* The key of version v, as a pm_key. */
static pm_key key_of(const version *v) {
  pm_key k = { key_type(v), key_len(v), key_bytes(v) };
  return k;
}

/* Apply the pending operation v to kept, the version its key has, if it
** wins. The version then holds a new seq, so positions may be out of
** order. */
static void merge_loaded(pm_index *ix, version *kept, const version *v) {
  int wins = is_tombstone(v) ? delete_wins(kept, v->seq) : put_wins(kept, v->seq);
  if (!wins) return;
  count_loaded(ix, kept, -1);
  set_record(kept, v->seq, v->seg, record_off(v), value_len(v), value_type(v));
  count_loaded(ix, kept, +1);
  ix->load_sorted = 0;
}

/* Give back the arena bytes of pending long keys that were merged away:
** when the batch's keys all went to the current chunk (the usual case),
** slide the keys of the pending versions kept (positions first..count)
** down over them. */
static void reclaim_batch_keys(pm_index *ix, uint32_t first) {
  chunk *c = ix->arena;
  if (!c || c != ix->batch_chunk) return;
  size_t to = ix->batch_chunk_used;
  for (uint32_t p = first; p < ix->count; p++) {
    version *v = version_at(ix, p);
    if (!is_long_key(key_len(v))) continue;
    memmove(c->bytes + to, v->key.ptr, key_len(v));
    v->key.ptr = c->bytes + to;
    to += key_len(v);
  }
  ix->arena_used -= c->used - to;
  c->used = to;
}

/* Put the pending versions in the table. A key seen before takes the
** operation if it wins and the pending version goes; new keys keep theirs,
** slid down over the ones that went. */
static void settle_loaded(pm_index *ix) {
  uint32_t first = ix->count - ix->load_pending;
  uint32_t to = first;
  for (uint32_t i = 0; i < ix->load_pending; i++) {
    version *v = version_at(ix, first + i);
    pm_key k = key_of(v);
    slot *s = &ix->table[table_probe(ix, ix->pending_tags[i], &k)];
    if (s->pos != NO_POS) {
      merge_loaded(ix, version_at(ix, s->pos), v);
      continue;
    }
    if (to > 0 && version_at(ix, to - 1)->seq > v->seq) ix->load_sorted = 0;
    if (to != first + i) *version_at(ix, to) = *v;
    s->pos = to++;
    s->tag = ix->pending_tags[i];
    ix->table_keys++;
    count_loaded(ix, version_at(ix, s->pos), +1);
  }
  int merged = to != ix->count;
  ix->count = to;
  ix->load_pending = 0;
  if (merged) reclaim_batch_keys(ix, first);
}

/* Append the loaded operation (a put, or a tombstone with vtype TOMBSTONE)
** on k at seq to the pending batch, settling the batch when full. */
static int load_op(pm_index *ix, const pm_key *k, uint64_t seq, uint32_t seg,
                   uint64_t off, uint32_t vlen, uint8_t vtype) {
  int rc = make_room(ix, 1, ix->load_pending + 1u, is_long_key(k->len) ? k->len : 0);
  if (rc != PM_OK) return rc;
  if (ix->load_pending == 0) {
    ix->batch_chunk = ix->arena;
    ix->batch_chunk_used = ix->arena ? ix->arena->used : 0;
  }
  uint32_t tag = key_tag(ix, k);
  __builtin_prefetch(&ix->table[home_slot(tag, ix->table_cap)]);
  ix->pending_tags[ix->load_pending++] = tag;
  init_version(ix, version_at(ix, ix->count++), k, seq, seg, off, vlen, vtype);
  if (seq > ix->max_seq) ix->max_seq = seq;
  if (ix->load_pending == LOAD_BATCH) settle_loaded(ix);
  return PM_OK;
}

/* A put read while loading. PM_OK, PM_NOMEM (nothing changed) or
** PM_MISUSE (not loading, bad key or record). max_seq counts every seq
** seen, kept or not. */
int pm_index_load_put(pm_index *ix, const pm_key *k, uint64_t seq, uint32_t seg,
                      uint64_t off, uint32_t vlen, uint8_t vtype) {
  if (!ix->loading || !valid_key(k) || !valid_record(off, vlen, vtype)) return PM_MISUSE;
  return load_op(ix, k, seq, seg, off, vlen, vtype);
}

/* A delete read while loading; remembered even for a key not seen yet, so
** that an older put read later is ignored. PM_OK, PM_NOMEM or PM_MISUSE. */
int pm_index_load_delete(pm_index *ix, const pm_key *k, uint64_t seq) {
  if (!ix->loading || !valid_key(k)) return PM_MISUSE;
  return load_op(ix, k, seq, 0, 0, 0, TOMBSTONE);
}

/* Shrink the table to its fitted size if it is too big (see
** rebuilt_table_cap); skipped on OOM, since the table works either way. */
static void fit_table(pm_index *ix) {
  uint64_t cap = rebuilt_table_cap(ix, ix->table_keys, 1);
  if (cap == ix->table_cap) return;
  slot *t = table_new(cap);
  if (!t) return;
  table_refill(t, cap, ix->table, ix->table_cap, NULL);
  table_install(ix, t, cap, ix->table_keys);
}

/* Finish loading: drop deleted keys and superseded versions, sort by seq,
** leave one version per key. PM_OK, PM_NOMEM (still loading, with every
** operation kept) or PM_MISUSE (not loading). */
int pm_index_load_end(pm_index *ix) {
  if (!ix->loading) return PM_MISUSE;
  if (ix->load_pending) settle_loaded(ix);
  if (ix->load_drops == 0 && ix->load_sorted) {
    fit_table(ix);
    trim_blocks(ix, ix->count);
    ix->generation++;
  } else {
    rebuild r = { .keep = kept_by_loading, .fit_table = 1, .drops_nothing = ix->load_drops == 0 };
    int rc = rebuild_index(ix, &r);
    if (rc != PM_OK) return rc;
  }
  /* Every version is now an unlinked put: nothing is dead. */
  ix->dead = 0;
  for (uint32_t b = 0; b < ix->nblocks; b++) ix->blocks[b].deaths_before = 0;
  ix->loading = 0;
  return PM_OK;
}

/* ---- Figures -----------------------------------------------------------------------
** Each is kept up to date as the index changes, so reading it is O(1). */

/* Live keys at the newest state. */
uint64_t pm_index_count(const pm_index *ix) {
  return ix->live_keys;
}

/* Key plus value bytes of the live keys. */
uint64_t pm_index_live_bytes(const pm_index *ix) {
  return ix->live_bytes;
}

/* The highest seq of any put or delete taken in (loaded ones included,
** kept or not), 0 if none: the next write needs a higher one. */
uint64_t pm_index_max_seq(const pm_index *ix) {
  return ix->max_seq;
}

/* Versions in the slab, live and dead. */
uint64_t pm_index_versions(const pm_index *ix) {
  return ix->count;
}

/* Bytes held: the index itself, the block list and blocks, the table and
** the arena chunks (allocator overhead not counted). */
size_t pm_index_mem_bytes(const pm_index *ix) {
  return sizeof *ix + (size_t)ix->blocks_cap * sizeof(block) +
         (size_t)ix->nblocks * BLOCK_VERSIONS * sizeof(version) +
         (size_t)ix->table_cap * sizeof(slot) + ix->arena_held;
}
