/*
** bench_compact.c - compaction and reopen at scale, through the C API.
**
**   bench_compact DIR [N]
**
** 1. Reopen + first get of N keys with 1,000-byte values (about N KB of log),
**    with hint files and without them.
** 2. A shrink of the N-key store (after overwriting half of it) while a
**    writer thread commits single puts: the shrink's duration and the
**    longest single commit during it (the write stall).
** 3. Space after deleting 90% of the keys and shrinking: segments and the
**    whole directory against the bytes of the live records.
** Results go to stdout and, one JSON object per line, to DIR/compact.json.
*/
#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store.h"

static FILE *json;
static char store[600];
static uint64_t n_keys;

static void die(const char *what, const pm_err *err) {
  fprintf(stderr, "%s: %s\n", what, err ? err->msg : "");
  exit(1);
}

static pm_store *open_store(int64_t cache) {
  pm_options o;
  pm_options_init(&o);
  o.create = 1;
  o.cache_size = cache;
  o.auto_shrink = 0;
  o.sync = PM_SYNC_OFF;
  pm_store *s;
  pm_err err;
  if (pm_store_open(store, &o, &s, &err)) die("open", &err);
  return s;
}

static pm_key key_of(uint64_t i, char buf[32]) {
  snprintf(buf, 32, "key%013llu", (unsigned long long)i);
  return (pm_key){ PM_BLOB, 16, (const uint8_t *)buf };
}

/* Write keys [from, to) with vlen-byte values, 1,000 rows a transaction. */
static void load(pm_store *s, uint64_t from, uint64_t to, uint32_t vlen, char fill) {
  static char val[1000];
  memset(val, fill, sizeof val);
  pm_err err;
  for (uint64_t i = from; i < to;) {
    pm_txn *t;
    if (pm_txn_begin(s, &t, &err)) die("begin", &err);
    for (uint64_t end = i + 1000; i < to && i < end; i++) {
      char kb[32];
      pm_key k = key_of(i, kb);
      if (pm_txn_put(t, &k, PM_BLOB, val, vlen, PM_PUT_REPLACE, NULL, &err)) die("put", &err);
    }
    if (pm_txn_commit(t, &err)) die("commit", &err);
  }
}

static double reopen_ms(void) {
  uint64_t t0 = pm_now_ns();
  pm_store *s = open_store(0);
  char kb[32];
  pm_key k = key_of(n_keys / 2, kb);
  pm_err err;
  if (pm_store_get(s, NULL, &k, NULL, NULL, &err)) die("get", &err);
  double ms = (double)(pm_now_ns() - t0) / 1e6;
  pm_store_close(s, NULL);
  return ms;
}

static void remove_hints(void) {
  DIR *d = opendir(store);
  struct dirent *e;
  while ((e = readdir(d)))
    if (strstr(e->d_name, ".hint")) {
      char p[900];
      snprintf(p, sizeof p, "%s/%s", store, e->d_name);
      unlink(p);
    }
  closedir(d);
}

static void bench_reopen(void) {
  pm_store *s = open_store(0);
  load(s, 0, n_keys, 1000, 'a');
  pm_store_close(s, NULL);           /* writes the hint files of sealed segments */
  double with = reopen_ms(), with2 = reopen_ms();
  if (with2 < with) with = with2;
  remove_hints();
  double without = reopen_ms();
  printf("reopen + first get, %llu keys, 1000-byte values: %.1f ms with hints, %.1f ms without (%.1fx)\n",
         (unsigned long long)n_keys, with, without, without / with);
  fprintf(json, "{\"workload\":\"reopen with hints\",\"keys\":%llu,\"ms\":%.2f}\n", (unsigned long long)n_keys, with);
  fprintf(json, "{\"workload\":\"reopen without hints\",\"keys\":%llu,\"ms\":%.2f}\n", (unsigned long long)n_keys, without);
}

static pm_store *shared;
static volatile int stop;
static uint64_t max_commit_ns, commits;

static void *writer(void *arg) {
  (void)arg;
  char val[100];
  memset(val, 'w', sizeof val);
  for (uint64_t i = 0; !stop; i++) {
    char kb[32];
    pm_key k = key_of(i % n_keys, kb);
    uint64_t t0 = pm_now_ns();
    pm_err err;
    if (pm_store_put(shared, &k, PM_BLOB, val, sizeof val, &err)) die("writer put", &err);
    uint64_t d = pm_now_ns() - t0;
    if (d > max_commit_ns) max_commit_ns = d;
    commits++;
    usleep(100);
  }
  return NULL;
}

static void bench_shrink_stall(void) {
  shared = open_store(64 << 20);
  load(shared, 0, n_keys / 2, 1000, 'b');          /* half of it dead */
  pthread_t th;
  stop = 0;
  pthread_create(&th, NULL, writer, NULL);
  usleep(200000);
  uint64_t before = max_commit_ns;
  max_commit_ns = 0;
  char *summary;
  pm_err err;
  uint64_t t0 = pm_now_ns();
  if (pm_store_shrink(shared, &summary, &err)) die("shrink", &err);
  double ms = (double)(pm_now_ns() - t0) / 1e6;
  uint64_t during = max_commit_ns;
  stop = 1;
  pthread_join(th, NULL);
  printf("shrink of %llu keys: %.0f ms; longest commit during it %.2f ms (before it: %.2f ms)\n  %s\n",
         (unsigned long long)n_keys, ms, (double)during / 1e6, (double)before / 1e6, summary);
  fprintf(json, "{\"workload\":\"shrink\",\"keys\":%llu,\"ms\":%.1f,\"max_write_stall_ms\":%.3f,\"summary\":%s}\n",
          (unsigned long long)n_keys, ms, (double)during / 1e6, summary);
  pm_free(summary);
  pm_store_close(shared, NULL);
}

static uint64_t dir_bytes(const char *suffix) {
  DIR *d = opendir(store);
  struct dirent *e;
  uint64_t n = 0;
  while ((e = readdir(d))) {
    size_t l = strlen(e->d_name), sl = strlen(suffix);
    if (e->d_name[0] == '.' || strcmp(e->d_name, "shm") == 0) continue;
    if (l < sl || strcmp(e->d_name + l - sl, suffix) != 0) continue;
    char p[900];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s", store, e->d_name);
    if (stat(p, &st) == 0) n += (uint64_t)st.st_size;
  }
  closedir(d);
  return n;
}

static void bench_space(void) {
  pm_store *s = open_store(0);
  pm_err err;
  for (uint64_t i = 0; i < n_keys;) {
    pm_txn *t;
    if (pm_txn_begin(s, &t, &err)) die("begin", &err);
    for (uint64_t end = i + 1000; i < n_keys && i < end; i++) {
      if (i % 10 == 0) continue;
      char kb[32];
      pm_key k = key_of(i, kb);
      if (pm_txn_delete(t, &k, &err) && err.code != PM_NOTFOUND) die("delete", &err);
    }
    if (pm_txn_commit(t, &err)) die("commit", &err);
  }
  char *summary;
  if (pm_store_shrink(s, &summary, &err)) die("shrink", &err);
  pm_free(summary);
  pm_stats st;
  pm_store_stats(s, &st, NULL);
  pm_store_close(s, NULL);
  uint64_t segs = dir_bytes(".log"), all = dir_bytes("");
  printf("after deleting 90%% and shrinking: live %llu bytes, segments %.3fx, directory %.3fx\n",
         (unsigned long long)st.live_bytes, (double)segs / (double)st.live_bytes, (double)all / (double)st.live_bytes);
  fprintf(json, "{\"workload\":\"space after 90%% deleted\",\"segments_ratio\":%.4f,\"directory_ratio\":%.4f}\n",
          (double)segs / (double)st.live_bytes, (double)all / (double)st.live_bytes);
}

int main(int argc, char **argv) {
  if (argc < 2) { fprintf(stderr, "usage: bench_compact DIR [N]\n"); return 2; }
  n_keys = argc > 2 ? strtoull(argv[2], NULL, 10) : 1000000;
  snprintf(store, sizeof store, "%s/compact-store", argv[1]);
  char path[700];
  snprintf(path, sizeof path, "%s/compact.json", argv[1]);
  json = fopen(path, "w");
  if (!json) { perror(path); return 1; }
  bench_reopen();
  bench_shrink_stall();
  bench_space();
  fclose(json);
  return 0;
}
