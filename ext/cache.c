/*
** cache.c - the element cache: S3-FIFO over shards, bounded in bytes.
**
** The story of a value. A value offered with pm_cache_put() enters the
** *small* queue of its shard, a FIFO meant to hold about a tenth of the
** shard's share of the capacity. Every hit bumps a 2-bit frequency counter
** and moves nothing, so a hit only needs the shard's lock for a few loads
** and stores. When room is needed, the value at the head of the small queue
** either moves to the *main* queue (it was read again while it waited) or
** leaves the cache, and its id is remembered in the *ghost*. The main queue
** is a CLOCK: its hand takes the head, and a value with a non-zero counter
** goes back to the tail with its counter lowered by one, so a value that
** stops being read is evicted within four passes of the hand (aging). A
** value offered again while its id is in the ghost skips the small queue
** and goes straight to main: it was evicted too early once.
**
** A scan reads each value once: its values pass through the small queue and
** out, and nothing is evicted from the main queue, where the hot set lives.
**
** Sharding. The cache is split by a hash of the id into up to 64 shards,
** each with its own lock, tables, queues and counters. The byte budget is
** global: a shard may hold more than its fair share (capacity / shards)
** while others hold less. A put that takes the cache over budget evicts
** from its own shard while that shard is above its share, and otherwise
** from the fullest shard, so shards drift back to equal shares and the
** cache always holds as much as its capacity allows, whatever the number of
** shards. A small cache gets fewer shards (each shard should hold at least
** MIN_SHARD_BYTES) so the policy keeps enough values per queue to work; the
** number is chosen when the cache is made and kept when its capacity
** changes.
**
** Memory. Each value is charged its footprint plus ENTRY_OVERHEAD: its node
** and its share of the bucket array and of the ghost table. The ghost keeps
** only a 32-bit tag and a 32-bit stamp per id in a bucketed table sized at
** about twice the shard's number of values; an id is in the ghost while
** fewer than that many ids were added after it. Tags are hashes, so a rare
** false ghost hit only sends a value to main one pass early.
**
** Locks. Exactly one shard lock is held at a time, never two. Evicted
** values are unlinked under the lock and released after it is dropped.
*/
#include "cache.h"

#include <pthread.h>
#include <string.h>

/* ---- Tuning ------------------------------------------------------------- */

#define MAX_SHARDS 64                  /* a power of two, at most 64 */
#define MIN_SHARD_BYTES (512u * 1024)  /* fewer shards below 64 x this */
#define SMALL_PERCENT 10               /* small queue: share of the shard's bytes */
#define FREQ_MAX 3                     /* 2-bit frequency counter */
#define PROMOTE_FREQ 1                 /* reads while in small to move to main */
#define GHOST_PERCENT 100              /* ids remembered, per value held */
#define GHOST_WAYS 8                   /* slots per ghost bucket */
#define MIN_BUCKETS 16                 /* smallest bucket array */

/* ---- Types -------------------------------------------------------------- */

enum { Q_SMALL, Q_MAIN };

/* One cached value: in one bucket chain and one queue. */
typedef struct entry {
  uint64_t id;
  pm_value *value;             /* the cache's own reference */
  struct entry *prev, *next;   /* queue links (next also links the dead list) */
  struct entry *chain;         /* next entry in the same bucket */
  uint32_t charge;             /* bytes charged: footprint + ENTRY_OVERHEAD */
  uint8_t freq;                /* 0..FREQ_MAX */
  uint8_t queue;               /* Q_SMALL or Q_MAIN */
} entry;

/* A doubly linked FIFO: values enter at the tail and leave at the head. */
typedef struct fifo {
  entry *head, *tail;
  uint64_t bytes;
} fifo;

/* An id recently evicted from the small queue, or an empty slot (tag 0). */
typedef struct ghost_slot {
  uint32_t tag;     /* hash bits of the id, never 0 when used */
  uint32_t stamp;   /* ghost clock when it was added */
} ghost_slot;

/* One shard. Its lock and the counters every call touches come first;
** shards are aligned to cache lines so two shards never share one. */
typedef struct shard {
  _Alignas(64) pthread_mutex_t mu;
  uint64_t hits, misses, evictions, inserts;
  entry **buckets;          /* chained hash table, nbuckets a power of two */
  uint32_t nbuckets;
  uint64_t count;           /* values held */
  uint64_t bytes;           /* bytes charged; read without the lock by rebalancing */
  fifo small, main;
  ghost_slot *ghost;        /* gbuckets * GHOST_WAYS slots */
  uint32_t gbuckets;
  uint32_t gclock;          /* ids added to the ghost so far */
} shard;

struct pm_cache {
  int64_t capacity;         /* atomic; bytes, or PM_CACHE_UNLIMITED */
  uint64_t total;           /* atomic; bytes charged over all shards */
  uint32_t nshards;         /* a power of two */
  shard *shards;            /* in the same block, after this struct, aligned */
};

/* Bytes a block of n bytes costs in the allocator, rounded as common.c's
** pm_value_footprint does: an 8-byte header and a 16-byte granule. */
#define ALLOC_BYTES(n) ((((n) + 8) + 15) & ~(size_t)15)

/* What a value costs besides its footprint: its node, two bucket pointers
** and two ghost slots. After growing, the bucket array has one or two
** pointers per value and the ghost table two to four slots; they shrink
** only once the shard has lost three quarters (buckets) or half (ghost) of
** its values, so the charge is the steady-state cost, not a bound on every
** moment. */
#define ENTRY_OVERHEAD \
  (ALLOC_BYTES(sizeof(entry)) + 2 * sizeof(entry *) + 2 * sizeof(ghost_slot))

_Static_assert((uint64_t)PM_MAX_VALUE + 4096 < UINT32_MAX, "a charge fits in 32 bits");

/* ---- Hashing and shard choice --------------------------------------------- */

/* A well-mixed 64-bit hash of an id (the MurmurHash3 finalizer): ids are
** segment << 40 | offset, far from random in their low bits. */
static uint64_t id_hash(uint64_t id) {
  id ^= id >> 33;
  id *= 0xff51afd7ed558ccdULL;
  id ^= id >> 33;
  id *= 0xc4ceb9fe1a85ec53ULL;
  id ^= id >> 33;
  return id;
}

/* The shard that owns hash h: its top six bits. */
static shard *shard_of(pm_cache *c, uint64_t h) {
  return &c->shards[(h >> 58) & (c->nshards - 1)];
}

/* How many shards a cache of this capacity gets: as many as keep each
** shard at MIN_SHARD_BYTES or more, between 1 and MAX_SHARDS. */
static uint32_t shards_for(int64_t capacity) {
  if (capacity < 0) return MAX_SHARDS;
  uint32_t n = 1;
  while (n < MAX_SHARDS && (uint64_t)capacity / (2u * n) >= MIN_SHARD_BYTES) n *= 2;
  return n;
}

/* ---- Budget ---------------------------------------------------------------- */

/* The capacity now; any negative other than PM_CACHE_UNLIMITED means 0, so
** a bogus setting never means unbounded memory. */
static int64_t normalize_capacity(int64_t capacity) {
  if (capacity == PM_CACHE_UNLIMITED) return capacity;
  return capacity < 0 ? 0 : capacity;
}

/* The capacity in force, read without a lock. */
static int64_t capacity_now(pm_cache *c) {
  return __atomic_load_n(&c->capacity, __ATOMIC_RELAXED);
}

/* True when the cache holds more bytes than its capacity. */
static int over_budget(pm_cache *c) {
  int64_t cap = capacity_now(c);
  return cap >= 0 && __atomic_load_n(&c->total, __ATOMIC_RELAXED) > (uint64_t)cap;
}

/* Each shard's fair share of a bounded capacity. */
static uint64_t fair_share(pm_cache *c) {
  int64_t cap = capacity_now(c);
  return cap < 0 ? UINT64_MAX : (uint64_t)cap / c->nshards;
}

/* What the small queue may hold before it is the one evicted from. */
static uint64_t small_target(pm_cache *c) {
  uint64_t share = fair_share(c);
  return share == UINT64_MAX ? share : share / 100 * SMALL_PERCENT;
}

/* Whether a value charged this much may be kept at all under capacity. */
static int admissible(int64_t capacity, uint64_t charge) {
  if (capacity == PM_CACHE_UNLIMITED) return 1;
  return capacity > 0 && charge <= (uint64_t)capacity / 8;
}

/* Add (sign +1) or take away (sign -1) a charge on shard s and the total. */
static void charge_bytes(pm_cache *c, shard *s, uint32_t charge, int sign) {
  uint64_t delta = sign > 0 ? charge : -(uint64_t)charge;
  __atomic_store_n(&s->bytes, s->bytes + delta, __ATOMIC_RELAXED);
  __atomic_add_fetch(&c->total, delta, __ATOMIC_RELAXED);
}

/* ---- Queues ------------------------------------------------------------- */

/* Append e at the tail of q. */
static void fifo_push(fifo *q, entry *e) {
  e->next = NULL;
  e->prev = q->tail;
  if (q->tail) q->tail->next = e; else q->head = e;
  q->tail = e;
  q->bytes += e->charge;
}

/* Unlink e from q, wherever it is. */
static void fifo_unlink(fifo *q, entry *e) {
  if (e->prev) e->prev->next = e->next; else q->head = e->next;
  if (e->next) e->next->prev = e->prev; else q->tail = e->prev;
  q->bytes -= e->charge;
}

/* The queue of s that e is in. */
static fifo *queue_of(shard *s, entry *e) {
  return e->queue == Q_SMALL ? &s->small : &s->main;
}

/* ---- Hash table of entries ---------------------------------------------------- */

/* The entry cached under id in s (h is its hash), or NULL. */
static entry *table_find(shard *s, uint64_t h, uint64_t id) {
  if (!s->buckets) return NULL;
  entry *e = s->buckets[h & (s->nbuckets - 1)];
  while (e && e->id != id) e = e->chain;
  return e;
}

/* Rebuild s's bucket array with n buckets. On allocation failure the old
** array stays: chains get longer, lookups stay correct. */
static void table_resize(shard *s, uint32_t n) {
  entry **nb = pm_calloc(n, sizeof *nb);
  if (!nb) return;
  for (uint32_t i = 0; i < s->nbuckets; i++) {
    entry *e = s->buckets[i];
    while (e) {
      entry *chain = e->chain;
      entry **slot = &nb[id_hash(e->id) & (n - 1)];
      e->chain = *slot;
      *slot = e;
      e = chain;
    }
  }
  pm_free(s->buckets);
  s->buckets = nb;
  s->nbuckets = n;
}

/* Link e (hash h) into s's table, growing it past one entry per bucket.
** Returns 0 only when there is no bucket array and none can be made. */
static int table_insert(shard *s, entry *e, uint64_t h) {
  if (!s->buckets) table_resize(s, MIN_BUCKETS);
  else if (s->count + 1 > s->nbuckets && s->nbuckets < (UINT32_MAX >> 1) + 1)
    table_resize(s, s->nbuckets * 2);
  if (!s->buckets) return 0;
  entry **slot = &s->buckets[h & (s->nbuckets - 1)];
  e->chain = *slot;
  *slot = e;
  return 1;
}

/* Unlink e from s's table (called after count went down), shrinking the
** array when it has fallen under a quarter full. */
static void table_delete(shard *s, entry *e) {
  entry **p = &s->buckets[id_hash(e->id) & (s->nbuckets - 1)];
  while (*p != e) p = &(*p)->chain;
  *p = e->chain;
  if (s->nbuckets > MIN_BUCKETS && s->count < s->nbuckets / 4) table_resize(s, s->nbuckets / 2);
}

/* ---- Ghost -------------------------------------------------------------- */

/* How many of the most recently added ids count as in the ghost. */
static uint32_t ghost_limit(shard *s) {
  uint64_t n = s->count * GHOST_PERCENT / 100;
  return n > UINT32_MAX / 2 ? UINT32_MAX / 2 : (uint32_t)n;
}

/* The tag of hash h: 32 bits that neither shard nor bucket choice uses. */
static uint32_t ghost_tag(uint64_t h) {
  uint32_t tag = (uint32_t)(h >> 26);
  return tag ? tag : 1;
}

/* The GHOST_WAYS slots where hash h may be remembered (s->ghost not NULL). */
static ghost_slot *ghost_bucket(shard *s, uint64_t h) {
  return &s->ghost[(h & (s->gbuckets - 1)) * GHOST_WAYS];
}

/* Keep the ghost table at two to eight slots per value held. A resize
** forgets the ids it held (it happens only while the shard grows or
** shrinks); on allocation failure the old table stays. */
static void ghost_fit(shard *s) {
  uint64_t want = 1;
  while (want * GHOST_WAYS < 2 * (uint64_t)ghost_limit(s) && want < (1u << 28)) want *= 2;
  if (s->ghost && s->gbuckets >= want && s->gbuckets <= 2 * want) return;
  ghost_slot *g = pm_calloc((size_t)want * GHOST_WAYS, sizeof *g);
  if (!g) return;
  pm_free(s->ghost);
  s->ghost = g;
  s->gbuckets = (uint32_t)want;
}

/* Remember hash h as evicted from the small queue: it takes an empty slot,
** or one whose id has aged out, or else the oldest slot of its bucket. */
static void ghost_add(shard *s, uint64_t h) {
  ghost_fit(s);
  if (!s->ghost) return;
  ghost_slot *b = ghost_bucket(s, h), *victim = b;
  uint32_t limit = ghost_limit(s);
  for (int i = 0; i < GHOST_WAYS; i++) {
    uint32_t age = s->gclock - b[i].stamp;
    if (!b[i].tag || age >= limit) { victim = &b[i]; break; }
    if (age > s->gclock - victim->stamp) victim = &b[i];
  }
  victim->tag = ghost_tag(h);
  victim->stamp = s->gclock++;
}

/* True (and the id is forgotten) when hash h is in the ghost. */
static int ghost_take(shard *s, uint64_t h) {
  if (!s->ghost) return 0;
  ghost_slot *b = ghost_bucket(s, h);
  uint32_t tag = ghost_tag(h), limit = ghost_limit(s);
  for (int i = 0; i < GHOST_WAYS; i++) {
    if (b[i].tag == tag && s->gclock - b[i].stamp < limit) {
      b[i].tag = 0;
      return 1;
    }
  }
  return 0;
}

/* ---- Entries ------------------------------------------------------------ */

/* A new entry holding its own reference to v, or NULL on OOM. */
static entry *entry_new(uint64_t id, pm_value *v, uint32_t charge) {
  entry *e = pm_malloc(sizeof *e);
  if (!e) return NULL;
  memset(e, 0, sizeof *e);
  e->id = id;
  e->value = pm_value_ref(v);
  e->charge = charge;
  return e;
}

/* Release entries unlinked from their shard (linked through next), after
** the shard's lock is dropped: the values' references, then the nodes. */
static void entries_release(entry *dead) {
  while (dead) {
    entry *next = dead->next;
    pm_value_unref(dead->value);
    pm_free(dead);
    dead = next;
  }
}

/* Take e out of s: its queue, its table and its charge; push it on *dead. */
static void entry_drop(pm_cache *c, shard *s, entry *e, entry **dead) {
  fifo_unlink(queue_of(s, e), e);
  s->count--;
  table_delete(s, e);
  charge_bytes(c, s, e->charge, -1);
  e->next = *dead;
  *dead = e;
}

/* ---- Eviction ------------------------------------------------------------ */

/* Look at the head of the small queue: a value read while it waited moves
** to main, its counter cleared (those reads paid for the move, and main's
** hand ages it from zero); any other leaves, its id going to the ghost.
** True if one left. */
static int evict_small(pm_cache *c, shard *s, entry **dead) {
  entry *e = s->small.head;
  if (e->freq >= PROMOTE_FREQ) {
    fifo_unlink(&s->small, e);
    e->queue = Q_MAIN;
    e->freq = 0;
    fifo_push(&s->main, e);
    return 0;
  }
  ghost_add(s, id_hash(e->id));
  entry_drop(c, s, e, dead);
  s->evictions++;
  return 1;
}

/* One step of the main queue's hand: a value with credit goes round again
** with one less, a value without leaves. True if one left. */
static int evict_main(pm_cache *c, shard *s, entry **dead) {
  entry *e = s->main.head;
  if (e->freq > 0) {
    e->freq--;
    fifo_unlink(&s->main, e);
    fifo_push(&s->main, e);
    return 0;
  }
  entry_drop(c, s, e, dead);
  s->evictions++;
  return 1;
}

/* Evict one value from s by S3-FIFO (the small queue while it is over its
** target or main is empty, else main). False if s holds nothing. */
static int shard_evict(pm_cache *c, shard *s, entry **dead) {
  uint64_t target = small_target(c);
  for (;;) {
    if (s->small.head && (s->small.bytes >= target || !s->main.head)) {
      if (evict_small(c, s, dead)) return 1;
    } else if (s->main.head) {
      if (evict_main(c, s, dead)) return 1;
    } else {
      return 0;
    }
  }
}

/* While the cache is over budget and s (locked) holds more than its fair
** share, evict from s. */
static void shard_trim(pm_cache *c, shard *s, entry **dead) {
  uint64_t share = fair_share(c);
  while (over_budget(c) && s->bytes > share && shard_evict(c, s, dead)) {}
}

/* The shard holding the most bytes, read without locks (a hint), or NULL
** when every shard looks empty. */
static shard *fullest_shard(pm_cache *c) {
  shard *best = NULL;
  uint64_t most = 0;
  for (uint32_t i = 0; i < c->nshards; i++) {
    uint64_t b = __atomic_load_n(&c->shards[i].bytes, __ATOMIC_RELAXED);
    if (b > most) { most = b; best = &c->shards[i]; }
  }
  return best;
}

/* Bring the cache back within budget by evicting from the fullest shards,
** one lock at a time. Called with no lock held. */
static void cache_rebalance(pm_cache *c) {
  while (over_budget(c)) {
    shard *s = fullest_shard(c);
    if (!s) return;
    entry *dead = NULL;
    pthread_mutex_lock(&s->mu);
    shard_evict(c, s, &dead);
    pthread_mutex_unlock(&s->mu);
    entries_release(dead);
  }
}

/* ---- Shards --------------------------------------------------------------- */

/* Put the new entry e (hash h) in s (locked): into main if its id is in the
** ghost, else into small. False if the table could not take it. */
static int shard_admit(pm_cache *c, shard *s, entry *e, uint64_t h) {
  if (!table_insert(s, e, h)) return 0;
  e->queue = ghost_take(s, h) ? Q_MAIN : Q_SMALL;
  fifo_push(queue_of(s, e), e);
  s->count++;
  s->inserts++;
  charge_bytes(c, s, e->charge, +1);
  return 1;
}

/* Free everything s holds; its references are dropped. */
static void shard_destroy(shard *s) {
  entries_release(s->small.head);   /* queues are linked through next too */
  entries_release(s->main.head);
  pm_free(s->buckets);
  pm_free(s->ghost);
  pthread_mutex_destroy(&s->mu);
}

/* ---- API ----------------------------------------------------------------- */

/* The contracts of the API are in cache.h; here is how each keeps it. */

/* One block holds the cache and its cache-line-aligned shards. */
pm_cache *pm_cache_new(int64_t capacity) {
  capacity = normalize_capacity(capacity);
  uint32_t n = shards_for(capacity);
  size_t align = _Alignof(shard);
  pm_cache *c = pm_calloc(1, sizeof *c + align - 1 + n * sizeof(shard));
  if (!c) return NULL;
  c->capacity = capacity;
  c->nshards = n;
  c->shards = (shard *)(((uintptr_t)(c + 1) + align - 1) & ~(uintptr_t)(align - 1));
  for (uint32_t i = 0; i < n; i++) {
    if (pthread_mutex_init(&c->shards[i].mu, NULL) != 0) {
      while (i--) pthread_mutex_destroy(&c->shards[i].mu);
      pm_free(c);
      return NULL;
    }
  }
  return c;
}

/* Drops every reference held; values handed out stay valid. */
void pm_cache_free(pm_cache *c) {
  if (!c) return;
  for (uint32_t i = 0; i < c->nshards; i++) shard_destroy(&c->shards[i]);
  pm_free(c);
}

/* The hit path: one shard lock, no allocation, nothing moved. */
pm_value *pm_cache_get(pm_cache *c, uint64_t id) {
  if (!c) return NULL;
  uint64_t h = id_hash(id);
  shard *s = shard_of(c, h);
  pm_value *v = NULL;
  pthread_mutex_lock(&s->mu);
  entry *e = table_find(s, h, id);
  if (e) {
    if (e->freq < FREQ_MAX) e->freq++;
    v = pm_value_ref(e->value);
    s->hits++;
  } else {
    s->misses++;
  }
  pthread_mutex_unlock(&s->mu);
  return v;
}

/* The node is allocated before the lock is taken; whatever is not kept
** (a duplicate, a value with no table to go in, evicted values) is
** released after it is dropped. */
void pm_cache_put(pm_cache *c, uint64_t id, pm_value *v) {
  if (!c || !v) return;
  uint64_t charge = pm_value_footprint(v) + ENTRY_OVERHEAD;
  if (!admissible(capacity_now(c), charge)) return;
  entry *e = entry_new(id, v, (uint32_t)charge);   /* allocated outside the lock */
  if (!e) return;
  uint64_t h = id_hash(id);
  shard *s = shard_of(c, h);
  entry *dead = NULL;
  pthread_mutex_lock(&s->mu);
  if (table_find(s, h, id) || !shard_admit(c, s, e, h)) {
    e->next = dead;   /* already cached, or no table: e is not kept */
    dead = e;
  } else {
    shard_trim(c, s, &dead);
  }
  pthread_mutex_unlock(&s->mu);
  entries_release(dead);
  cache_rebalance(c);
}

/* Not an eviction: the counters do not count it. */
void pm_cache_remove(pm_cache *c, uint64_t id) {
  if (!c) return;
  uint64_t h = id_hash(id);
  shard *s = shard_of(c, h);
  entry *dead = NULL;
  pthread_mutex_lock(&s->mu);
  entry *e = table_find(s, h, id);
  if (e) entry_drop(c, s, e, &dead);
  pthread_mutex_unlock(&s->mu);
  entries_release(dead);
}

/* Shrinking trims every shard to its new share, then the fullest ones
** until the total fits. The number of shards does not change. */
void pm_cache_set_capacity(pm_cache *c, int64_t capacity) {
  if (!c) return;
  __atomic_store_n(&c->capacity, normalize_capacity(capacity), __ATOMIC_RELAXED);
  for (uint32_t i = 0; i < c->nshards && over_budget(c); i++) {
    shard *s = &c->shards[i];
    entry *dead = NULL;
    pthread_mutex_lock(&s->mu);
    shard_trim(c, s, &dead);
    pthread_mutex_unlock(&s->mu);
    entries_release(dead);
  }
  cache_rebalance(c);
}

/* Sums the shards' counters, one shard lock at a time (exact when no
** other thread is using the cache). */
void pm_cache_get_stats(pm_cache *c, pm_cache_stats *out) {
  memset(out, 0, sizeof *out);
  if (!c) return;
  out->capacity = capacity_now(c);
  for (uint32_t i = 0; i < c->nshards; i++) {
    shard *s = &c->shards[i];
    pthread_mutex_lock(&s->mu);
    out->bytes += s->bytes;
    out->entries += s->count;
    out->hits += s->hits;
    out->misses += s->misses;
    out->evictions += s->evictions;
    out->inserts += s->inserts;
    pthread_mutex_unlock(&s->mu);
  }
}
