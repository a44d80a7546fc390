/*
** bench_kv.c - persistmap's engine (store.h) against LMDB and RocksDB,
** through their C APIs, in one process and one run.
**
**   bench_kv [-n KEYS] [-r REPS] [-o JSON] DIR
**
** The same N keys (16 bytes) and 100-byte values of random bytes in all
** three, loaded first (shuffled order; the load rates are reported for
** information). Then, each repeated REPS times (median kept, the systems
** interleaved within a repetition):
**
**   get      N uniform random gets of existing keys, every value in memory:
**            persistmap keeps all values in its cache (cache_size -1); LMDB's
**            map is in the page cache and touched once before; RocksDB has a
**            512 MB block cache filled by a full scan, after its memtable was
**            flushed and its levels compacted. Each get sees the newest
**            committed state, as pm_store_get does: LMDB renews a read-only
**            transaction per get (mdb_txn_renew/mdb_txn_reset, its cheap way),
**            RocksDB reads without a snapshot (rocksdb_get_pinned, no copy).
**            "lmdb_batch" (one read transaction for all the gets) is shown
**            for information.
**   put      N/4 single-key commits of random existing keys, without fsync:
**            persistmap pm_store_put under sync=off (sync=normal shown too),
**            RocksDB rocksdb_put with sync=false (WAL on, the default), LMDB a
**            write transaction per put in an environment opened MDB_NOSYNC.
**
** One JSON object per line goes to JSON (default DIR/kv.json).
*/
#include <errno.h>
#include <lmdb.h>
#include <rocksdb/c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store.h"

#define KEY_BYTES 16
#define VALUE_BYTES 100
#define VALUE_POOL 65536
#define MAX_REPS 15

static void die(const char *what, const char *why) {
  fprintf(stderr, "bench_kv: %s: %s\n", what, why ? why : "?");
  exit(1);
}

static double now(void) { return (double)pm_now_ns() / 1e9; }

static uint64_t rng_state = 0x2545F4914F6CDD1Dull;
static uint64_t rnd(void) {           /* splitmix64 */
  uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static uint64_t nkeys;
static char *keys;
static unsigned char *pool;
static const char *key_of(uint32_t i) { return keys + (size_t)i * KEY_BYTES; }
static const unsigned char *value_of(uint32_t i, uint32_t version) {
  return pool + (size_t)((i * 2654435761u + version * 40503u) & (VALUE_POOL - 1)) * VALUE_BYTES;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}
static double median(const double *v, int n) {
  double s[MAX_REPS];
  memcpy(s, v, (size_t)n * sizeof *v);
  qsort(s, (size_t)n, sizeof *s, cmp_double);
  return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

static FILE *json;
static void emit(const char *workload, const char *system, const char *unit, uint64_t ops,
                 const double *v, int n) {
  double med = median(v, n);
  printf("  %-10s %-20s %14.1f %-9s reps:", workload, system, med, unit);
  for (int i = 0; i < n; i++) printf(" %.4g", v[i]);
  printf("\n");
  fprintf(json, "{\"bench\":\"kv\",\"workload\":\"%s\",\"system\":\"%s\",\"unit\":\"%s\",\"keys\":%llu,"
                "\"ops\":%llu,\"median\":%.6g,\"reps\":[", workload, system, unit,
          (unsigned long long)nkeys, (unsigned long long)ops, med);
  for (int i = 0; i < n; i++) fprintf(json, "%s%.6g", i ? "," : "", v[i]);
  fprintf(json, "]}\n");
  fflush(stdout);
  fflush(json);
}

/* ==== persistmap ========================================================= */

static pm_store *pm_open(const char *path, int sync) {
  pm_options o;
  pm_options_init(&o);
  o.create = 1;
  o.sync = sync;
  o.cache_size = -1;
  o.auto_shrink = 0;
  pm_store *s;
  pm_err err;
  if (pm_store_open(path, &o, &s, &err)) die("pm_store_open", err.msg);
  return s;
}

static double pm_load(pm_store *s, const uint32_t *order) {
  pm_txn *t;
  pm_err err;
  double t0 = now();
  if (pm_txn_begin(s, &t, &err)) die("pm_txn_begin", err.msg);
  for (uint64_t i = 0; i < nkeys; i++) {
    pm_key k = { PM_BLOB, KEY_BYTES, (const uint8_t *)key_of(order[i]) };
    if (pm_txn_put(t, &k, PM_BLOB, value_of(order[i], 0), VALUE_BYTES, PM_PUT_REPLACE, NULL, &err))
      die("pm_txn_put", err.msg);
  }
  if (pm_txn_commit(t, &err)) die("pm_txn_commit", err.msg);
  return now() - t0;
}

static double pm_gets(pm_store *s, const uint32_t *seq, uint64_t count) {
  pm_err err;
  uint64_t bytes = 0;
  double t0 = now();
  for (uint64_t i = 0; i < count; i++) {
    pm_key k = { PM_BLOB, KEY_BYTES, (const uint8_t *)key_of(seq[i]) };
    pm_value *v;
    if (pm_store_get(s, NULL, &k, &v, NULL, &err)) die("pm_store_get", err.msg);
    bytes += v->len;
    pm_value_unref(v);
  }
  double t = now() - t0;
  if (bytes != count * VALUE_BYTES) die("pm_store_get", "wrong value size");
  return t;
}

static double pm_puts(pm_store *s, const uint32_t *seq, uint64_t count, uint32_t version) {
  pm_err err;
  double t0 = now();
  for (uint64_t i = 0; i < count; i++) {
    pm_key k = { PM_BLOB, KEY_BYTES, (const uint8_t *)key_of(seq[i]) };
    if (pm_store_put(s, &k, PM_BLOB, value_of(seq[i], version), VALUE_BYTES, &err)) die("pm_store_put", err.msg);
  }
  return now() - t0;
}

/* ==== LMDB =============================================================== */

static void lm_check(int rc, const char *what) {
  if (rc) die(what, mdb_strerror(rc));
}

static MDB_env *lm_open(const char *path, MDB_dbi *dbi) {
  MDB_env *env;
  lm_check(mdb_env_create(&env), "mdb_env_create");
  lm_check(mdb_env_set_mapsize(env, (size_t)(nkeys * 512 + (64u << 20))), "mdb_env_set_mapsize");
  if (mkdir(path, 0755) < 0 && errno != EEXIST) die(path, strerror(errno));
  lm_check(mdb_env_open(env, path, MDB_NOSYNC | MDB_NOMETASYNC, 0644), "mdb_env_open");
  MDB_txn *t;
  lm_check(mdb_txn_begin(env, NULL, 0, &t), "mdb_txn_begin");
  lm_check(mdb_dbi_open(t, NULL, 0, dbi), "mdb_dbi_open");
  lm_check(mdb_txn_commit(t), "mdb_txn_commit");
  return env;
}

static double lm_load(MDB_env *env, MDB_dbi dbi, const uint32_t *order) {
  MDB_txn *t;
  double t0 = now();
  lm_check(mdb_txn_begin(env, NULL, 0, &t), "mdb_txn_begin");
  for (uint64_t i = 0; i < nkeys; i++) {
    MDB_val k = { KEY_BYTES, (void *)key_of(order[i]) };
    MDB_val v = { VALUE_BYTES, (void *)value_of(order[i], 0) };
    lm_check(mdb_put(t, dbi, &k, &v, 0), "mdb_put");
  }
  lm_check(mdb_txn_commit(t), "mdb_txn_commit");
  return now() - t0;
}

/* Touch every page once (so gets run from memory). */
static void lm_warm(MDB_env *env, MDB_dbi dbi) {
  MDB_txn *t;
  MDB_cursor *c;
  MDB_val k, v;
  uint64_t n = 0;
  lm_check(mdb_txn_begin(env, NULL, MDB_RDONLY, &t), "mdb_txn_begin");
  lm_check(mdb_cursor_open(t, dbi, &c), "mdb_cursor_open");
  while (mdb_cursor_get(c, &k, &v, n ? MDB_NEXT : MDB_FIRST) == 0) n += ((const uint8_t *)v.mv_data)[0] | 1;
  mdb_cursor_close(c);
  mdb_txn_abort(t);
  if (n == 0) die("lmdb", "empty");
}

static double lm_gets(MDB_env *env, MDB_dbi dbi, const uint32_t *seq, uint64_t count, int batch) {
  MDB_txn *t;
  uint64_t bytes = 0;
  lm_check(mdb_txn_begin(env, NULL, MDB_RDONLY, &t), "mdb_txn_begin");
  if (!batch) mdb_txn_reset(t);
  double t0 = now();
  for (uint64_t i = 0; i < count; i++) {
    MDB_val k = { KEY_BYTES, (void *)key_of(seq[i]) }, v;
    if (!batch) lm_check(mdb_txn_renew(t), "mdb_txn_renew");
    lm_check(mdb_get(t, dbi, &k, &v), "mdb_get");
    bytes += v.mv_size;
    if (!batch) mdb_txn_reset(t);
  }
  double tm = now() - t0;
  mdb_txn_abort(t);
  if (bytes != count * VALUE_BYTES) die("mdb_get", "wrong value size");
  return tm;
}

static double lm_puts(MDB_env *env, MDB_dbi dbi, const uint32_t *seq, uint64_t count, uint32_t version) {
  double t0 = now();
  for (uint64_t i = 0; i < count; i++) {
    MDB_txn *t;
    MDB_val k = { KEY_BYTES, (void *)key_of(seq[i]) };
    MDB_val v = { VALUE_BYTES, (void *)value_of(seq[i], version) };
    lm_check(mdb_txn_begin(env, NULL, 0, &t), "mdb_txn_begin");
    lm_check(mdb_put(t, dbi, &k, &v, 0), "mdb_put");
    lm_check(mdb_txn_commit(t), "mdb_txn_commit");
  }
  return now() - t0;
}

/* ==== RocksDB ============================================================ */

typedef struct rdb {
  rocksdb_t *db;
  rocksdb_options_t *opts;
  rocksdb_block_based_table_options_t *table;
  rocksdb_cache_t *cache;
  rocksdb_writeoptions_t *wo;
  rocksdb_readoptions_t *ro;
} rdb;

static void rdb_check(char *err, const char *what) {
  if (err) die(what, err);
}

static void rdb_open(rdb *r, const char *path) {
  char *err = NULL;
  r->opts = rocksdb_options_create();
  rocksdb_options_set_create_if_missing(r->opts, 1);
  r->cache = rocksdb_cache_create_lru(512u << 20);
  r->table = rocksdb_block_based_options_create();
  rocksdb_block_based_options_set_block_cache(r->table, r->cache);
  rocksdb_options_set_block_based_table_factory(r->opts, r->table);
  rocksdb_destroy_db(r->opts, path, &err);
  free(err);
  err = NULL;
  r->db = rocksdb_open(r->opts, path, &err);
  rdb_check(err, "rocksdb_open");
  r->wo = rocksdb_writeoptions_create();
  rocksdb_writeoptions_set_sync(r->wo, 0);
  r->ro = rocksdb_readoptions_create();
}

static void rdb_close(rdb *r) {
  rocksdb_close(r->db);
  rocksdb_readoptions_destroy(r->ro);
  rocksdb_writeoptions_destroy(r->wo);
  rocksdb_options_destroy(r->opts);
  rocksdb_block_based_options_destroy(r->table);
  rocksdb_cache_destroy(r->cache);
}

static double rdb_load(rdb *r, const uint32_t *order) {
  char *err = NULL;
  rocksdb_writebatch_t *b = rocksdb_writebatch_create();
  double t0 = now();
  for (uint64_t i = 0; i < nkeys; i++) {
    rocksdb_writebatch_put(b, key_of(order[i]), KEY_BYTES, (const char *)value_of(order[i], 0), VALUE_BYTES);
    if (rocksdb_writebatch_count(b) == 1000 || i + 1 == nkeys) {
      rocksdb_write(r->db, r->wo, b, &err);
      rdb_check(err, "rocksdb_write");
      rocksdb_writebatch_clear(b);
    }
  }
  double t = now() - t0;
  rocksdb_writebatch_destroy(b);
  return t;
}

/* Flush the memtable, compact, and fill the block cache with a full scan. */
static void rdb_settle(rdb *r) {
  char *err = NULL;
  rocksdb_flushoptions_t *fo = rocksdb_flushoptions_create();
  rocksdb_flushoptions_set_wait(fo, 1);
  rocksdb_flush(r->db, fo, &err);
  rdb_check(err, "rocksdb_flush");
  rocksdb_flushoptions_destroy(fo);
  rocksdb_compact_range(r->db, NULL, 0, NULL, 0);
  rocksdb_iterator_t *it = rocksdb_create_iterator(r->db, r->ro);
  uint64_t n = 0;
  for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it); rocksdb_iter_next(it)) n++;
  rocksdb_iter_destroy(it);
  if (n != nkeys) die("rocksdb", "scan saw the wrong number of keys");
}

static double rdb_gets(rdb *r, const uint32_t *seq, uint64_t count) {
  char *err = NULL;
  uint64_t bytes = 0;
  double t0 = now();
  for (uint64_t i = 0; i < count; i++) {
    rocksdb_pinnableslice_t *p = rocksdb_get_pinned(r->db, r->ro, key_of(seq[i]), KEY_BYTES, &err);
    rdb_check(err, "rocksdb_get_pinned");
    size_t len = 0;
    if (!p || !rocksdb_pinnableslice_value(p, &len)) die("rocksdb_get_pinned", "key not found");
    bytes += len;
    rocksdb_pinnableslice_destroy(p);
  }
  double t = now() - t0;
  if (bytes != count * VALUE_BYTES) die("rocksdb_get_pinned", "wrong value size");
  return t;
}

static double rdb_puts(rdb *r, const uint32_t *seq, uint64_t count, uint32_t version) {
  char *err = NULL;
  double t0 = now();
  for (uint64_t i = 0; i < count; i++) {
    rocksdb_put(r->db, r->wo, key_of(seq[i]), KEY_BYTES, (const char *)value_of(seq[i], version), VALUE_BYTES, &err);
    rdb_check(err, "rocksdb_put");
  }
  return now() - t0;
}

/* ==== Main =============================================================== */

static uint32_t *permutation(uint64_t n) {
  uint32_t *p = malloc(n * sizeof *p);
  if (!p) die("malloc", "out of memory");
  for (uint64_t i = 0; i < n; i++) p[i] = (uint32_t)i;
  for (uint64_t i = n - 1; i > 0; i--) {
    uint64_t j = rnd() % (i + 1);
    uint32_t t = p[i]; p[i] = p[j]; p[j] = t;
  }
  return p;
}

static uint32_t *uniform_seq(uint64_t count) {
  uint32_t *s = malloc(count * sizeof *s);
  if (!s) die("malloc", "out of memory");
  for (uint64_t i = 0; i < count; i++) s[i] = (uint32_t)(rnd() % nkeys);
  return s;
}

int main(int argc, char **argv) {
  uint64_t n = 1000000;
  int reps = 5, opt;
  const char *json_path = NULL;
  while ((opt = getopt(argc, argv, "n:r:o:")) != -1) {
    if (opt == 'n') n = strtoull(optarg, NULL, 10);
    else if (opt == 'r') reps = atoi(optarg);
    else if (opt == 'o') json_path = optarg;
    else { fprintf(stderr, "usage: bench_kv [-n KEYS] [-r REPS] [-o JSON] DIR\n"); return 2; }
  }
  if (optind != argc - 1 || n < 100 || n > UINT32_MAX || reps < 1 || reps > MAX_REPS) {
    fprintf(stderr, "usage: bench_kv [-n KEYS] [-r REPS] [-o JSON] DIR\n");
    return 2;
  }
  const char *dir = argv[optind];
  if (mkdir(dir, 0755) < 0 && errno != EEXIST) die(dir, strerror(errno));
  char p_pm[4096], p_lm[4096], p_rdb[4096], p_json[4096];
  snprintf(p_pm, sizeof p_pm, "%s/kv-persistmap", dir);
  snprintf(p_lm, sizeof p_lm, "%s/kv-lmdb", dir);
  snprintf(p_rdb, sizeof p_rdb, "%s/kv-rocksdb", dir);
  snprintf(p_json, sizeof p_json, "%s/kv.json", dir);
  if (!json_path) json_path = p_json;
  json = fopen(json_path, "w");
  if (!json) die(json_path, strerror(errno));
  nkeys = n;
  keys = malloc(n * KEY_BYTES + 1);
  pool = malloc((size_t)VALUE_POOL * VALUE_BYTES);
  if (!keys || !pool) die("malloc", "out of memory");
  for (uint64_t i = 0; i < n; i++) {
    char tmp[32];
    snprintf(tmp, sizeof tmp, "key%013llu", (unsigned long long)i);
    memcpy(keys + i * KEY_BYTES, tmp, KEY_BYTES);
  }
  for (size_t i = 0; i < (size_t)VALUE_POOL * VALUE_BYTES; i += 8) {
    uint64_t r = rnd();
    memcpy(pool + i, &r, 8);
  }
  uint64_t n_puts = n / 4;
  uint32_t *order = permutation(n);
  uint32_t *gets = uniform_seq(n);
  uint32_t *puts = uniform_seq(n_puts);
  int major, minor, patch;
  mdb_version(&major, &minor, &patch);
  printf("engine vs LMDB %d.%d.%d and RocksDB: %llu keys, %d-byte keys, %d-byte values, medians of %d runs\n",
         major, minor, patch, (unsigned long long)n, KEY_BYTES, VALUE_BYTES, reps);
  fprintf(json, "{\"bench\":\"kv\",\"workload\":\"setup\",\"keys\":%llu,\"reps\":%d,\"lmdb\":\"%d.%d.%d\",\"puts\":%llu}\n",
          (unsigned long long)n, reps, major, minor, patch, (unsigned long long)n_puts);

  /* Load (once each, reported for information). */
  double v[4][MAX_REPS];
  pm_err err;
  pm_store *s = pm_open(p_pm, PM_SYNC_OFF);
  pm_store *s_normal = pm_open(p_pm, PM_SYNC_NORMAL);   /* the same engine, another handle */
  MDB_dbi dbi;
  MDB_env *env = lm_open(p_lm, &dbi);
  rdb r;
  rdb_open(&r, p_rdb);
  v[0][0] = (double)n / pm_load(s, order);
  v[1][0] = (double)n / lm_load(env, dbi, order);
  v[2][0] = (double)n / rdb_load(&r, order);
  emit("load", "persistmap", "rows/s", n, v[0], 1);
  emit("load", "lmdb", "rows/s", n, v[1], 1);
  emit("load", "rocksdb", "rows/s", n, v[2], 1);
  lm_warm(env, dbi);
  rdb_settle(&r);

  /* Gets. */
  uint64_t warm = n < 100000 ? n : 100000;
  pm_gets(s, gets, warm);
  lm_gets(env, dbi, gets, warm, 0);
  rdb_gets(&r, gets, warm);
  for (int i = 0; i < reps; i++) {
    v[0][i] = (double)n / pm_gets(s, gets, n);
    v[1][i] = (double)n / lm_gets(env, dbi, gets, n, 0);
    v[2][i] = (double)n / rdb_gets(&r, gets, n);
    v[3][i] = (double)n / lm_gets(env, dbi, gets, n, 1);
  }
  emit("get", "persistmap", "gets/s", n, v[0], reps);
  emit("get", "lmdb", "gets/s", n, v[1], reps);
  emit("get", "rocksdb", "gets/s", n, v[2], reps);
  emit("get", "lmdb_batch", "gets/s", n, v[3], reps);

  /* Puts without fsync, one commit each. */
  uint32_t version = 1;
  for (int i = 0; i < reps; i++) {
    version++;
    v[0][i] = (double)n_puts / pm_puts(s, puts, n_puts, version);
    v[1][i] = (double)n_puts / lm_puts(env, dbi, puts, n_puts, version);
    v[2][i] = (double)n_puts / rdb_puts(&r, puts, n_puts, version);
    v[3][i] = (double)n_puts / pm_puts(s_normal, puts, n_puts, version);
  }
  emit("put", "persistmap", "puts/s", n_puts, v[0], reps);
  emit("put", "lmdb", "puts/s", n_puts, v[1], reps);
  emit("put", "rocksdb", "puts/s", n_puts, v[2], reps);
  emit("put", "persistmap_normal", "puts/s", n_puts, v[3], reps);

  pm_store_close(s_normal, &err);
  pm_store_close(s, &err);
  mdb_env_close(env);
  rdb_close(&r);
  fclose(json);
  free(keys); free(pool); free(order); free(gets); free(puts);
  return 0;
}
