/*
** bench_engine.c - engine-level throughput through the C API (store.h).
**
**   bench_engine DIR [N]
**
** Workloads on N keys (default 1,000,000) of 16 bytes with 100-byte values:
** bulk load in one transaction, uniform random gets (values cached and not),
** single-put commits under each sync mode, close + reopen + first get, and
** index memory per key. Prints a table, and one JSON object per line to
** stdout's companion file DIR/engine.json.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "store.h"

static uint64_t rng = 88172645463325252ull;
static uint64_t next_rand(void) {
  rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
  return rng;
}

/* A 16-byte key: "key" and 13 digits. */
static void make_key(uint64_t i, char out[17]) {
  char tmp[32];
  snprintf(tmp, sizeof tmp, "key%013llu", (unsigned long long)(i % 10000000000000ull));
  memcpy(out, tmp, 17);
}

static double secs(uint64_t t0) { return (double)(pm_now_ns() - t0) / 1e9; }

static FILE *json;

static void report(const char *name, double ops, double seconds, const char *unit) {
  double rate = ops / seconds;
  printf("%-36s %12.0f %s/s   (%.3f s)\n", name, rate, unit, seconds);
  fprintf(json, "{\"workload\":\"%s\",\"ops\":%.0f,\"seconds\":%.6f,\"rate\":%.1f}\n", name, ops, seconds, rate);
}

static pm_store *open_at(const char *dir, int sync, int64_t cache) {
  pm_options o;
  pm_options_init(&o);
  o.create = 1;
  o.sync = sync;
  o.cache_size = cache;
  pm_store *s;
  pm_err err;
  if (pm_store_open(dir, &o, &s, &err)) { fprintf(stderr, "open: %s\n", err.msg); exit(1); }
  return s;
}

static void check(int rc, const pm_err *err) {
  if (rc) { fprintf(stderr, "error: %s\n", err->msg); exit(1); }
}

static void bulk_load(pm_store *s, uint64_t n) {
  char key[17], val[100];
  memset(val, 'v', sizeof val);
  pm_txn *t;
  pm_err err;
  uint64_t t0 = pm_now_ns();
  check(pm_txn_begin(s, &t, &err), &err);
  for (uint64_t i = 0; i < n; i++) {
    make_key(i, key);
    pm_key k = { PM_BLOB, 16, (const uint8_t *)key };
    check(pm_txn_put(t, &k, PM_BLOB, val, sizeof val, PM_PUT_REPLACE, NULL, &err), &err);
  }
  check(pm_txn_commit(t, &err), &err);
  report("bulk load, one transaction", (double)n, secs(t0), "rows");
}

static void random_gets(pm_store *s, uint64_t n, const char *name) {
  char key[17];
  pm_err err;
  uint64_t t0 = pm_now_ns();
  for (uint64_t i = 0; i < n; i++) {
    make_key(next_rand() % n, key);
    pm_key k = { PM_BLOB, 16, (const uint8_t *)key };
    pm_value *v;
    check(pm_store_get(s, NULL, &k, &v, NULL, &err), &err);
    pm_value_unref(v);
  }
  report(name, (double)n, secs(t0), "gets");
}

static void single_puts(pm_store *s, uint64_t n, uint64_t keys, const char *name) {
  char key[17], val[100];
  memset(val, 'w', sizeof val);
  pm_err err;
  pm_stats before, after;
  pm_store_stats(s, &before, NULL);
  uint64_t t0 = pm_now_ns();
  for (uint64_t i = 0; i < n; i++) {
    make_key(next_rand() % keys, key);
    pm_key k = { PM_BLOB, 16, (const uint8_t *)key };
    check(pm_store_put(s, &k, PM_BLOB, val, sizeof val, &err), &err);
  }
  double sec = secs(t0);
  pm_store_stats(s, &after, NULL);
  report(name, (double)n, sec, "commits");
  printf("%-36s %12.2f fsyncs/commit\n", "", (double)(after.fsyncs - before.fsyncs) / (double)n);
}

int main(int argc, char **argv) {
  if (argc < 2) { fprintf(stderr, "usage: bench_engine DIR [N]\n"); return 2; }
  const char *dir = argv[1];
  uint64_t n = argc > 2 ? strtoull(argv[2], NULL, 10) : 1000000;
  char path[600];
  snprintf(path, sizeof path, "%s/store", dir);
  snprintf(path + 300, 300, "%s/engine.json", dir);
  json = fopen(path + 300, "w");
  if (!json) { perror("engine.json"); return 1; }
  printf("persistmap engine bench: %llu keys, 16-byte keys, 100-byte values\n", (unsigned long long)n);

  pm_store *s = open_at(path, PM_SYNC_NORMAL, -1);
  bulk_load(s, n);
  random_gets(s, n, "uniform get, values cached");
  pm_stats st;
  pm_store_stats(s, &st, NULL);
  printf("%-36s %12.1f bytes/key (+16 key bytes)\n", "index memory", (double)st.index_bytes / (double)st.keys - 16);
  fprintf(json, "{\"workload\":\"index bytes per key\",\"value\":%.2f}\n", (double)st.index_bytes / (double)st.keys);
  pm_store_close(s, NULL);

  uint64_t t0 = pm_now_ns();
  s = open_at(path, PM_SYNC_NORMAL, 0);
  char key[17];
  make_key(n / 2, key);
  pm_key k = { PM_BLOB, 16, (const uint8_t *)key };
  pm_value *v;
  pm_err err;
  check(pm_store_get(s, NULL, &k, &v, NULL, &err), &err);
  pm_value_unref(v);
  double reopen = secs(t0);
  printf("%-36s %12.1f ms\n", "reopen + first get", reopen * 1e3);
  fprintf(json, "{\"workload\":\"reopen + first get\",\"seconds\":%.6f}\n", reopen);
  random_gets(s, n / 4, "uniform get, no cache (page cache)");
  pm_store_close(s, NULL);

  const char *names[3] = { "single-put commit, sync=off", "single-put commit, sync=normal", "single-put commit, sync=full" };
  int modes[3] = { PM_SYNC_OFF, PM_SYNC_NORMAL, PM_SYNC_FULL };
  for (int m = 0; m < 3; m++) {
    s = open_at(path, modes[m], 64 << 20);
    single_puts(s, modes[m] == PM_SYNC_FULL ? n / 500 : n / 10, n, names[m]);
    pm_store_close(s, NULL);
  }
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  printf("%-36s %12ld MB\n", "peak RSS", ru.ru_maxrss / 1024);
  fclose(json);
  return 0;
}
