/*
** test_compact.c - online compaction (pm_store_shrink), auto-shrink and
** hint files: the state after a shrink, with writers running, with an I/O
** error at every file operation it makes, and after reopening with hint
** files present, deleted or corrupted.
*/
#include "testutil.h"
#include "faultio.h"

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "store.h"

#define NKEYS 2000

static char *root, *dir;

static int setup(void **state) {
  (void)state;
  tu_store_dirs(&root, &dir);
  fio_reset();
  return 0;
}

static int teardown(void **state) {
  (void)state;
  tu_store_dirs_free(&root, &dir);
  return 0;
}

static pm_store *open_with(const pm_io *io, double auto_shrink, uint64_t interval_ms) {
  pm_options o;
  pm_options_init(&o);
  o.create = 1;
  o.io = io;
  o.segment_size = 64 << 10;
  o.auto_shrink = auto_shrink;
  o.auto_shrink_min = 64 << 10;
  o.sync_interval_ms = interval_ms;
  pm_store *s;
  pm_err err;
  if (pm_store_open(dir, &o, &s, &err)) fail_msg("open: %s", err.msg);
  return s;
}

/* The model: the expected value version of each key (0 = absent). */
static int model[NKEYS];

static void put_key(pm_store *s, int k, int version) {
  char key[32], val[64];
  snprintf(key, sizeof key, "key-%05d", k);
  int n = snprintf(val, sizeof val, "value %d of key %d, padded....", version, k);
  pm_key pk = { PM_TEXT, (uint32_t)strlen(key), (const uint8_t *)key };
  pm_err err;
  if (pm_store_put(s, &pk, PM_TEXT, val, (uint32_t)n, &err)) fail_msg("put: %s", err.msg);
  model[k] = version;
}

static void delete_key(pm_store *s, int k) {
  char key[32];
  snprintf(key, sizeof key, "key-%05d", k);
  pm_key pk = { PM_TEXT, (uint32_t)strlen(key), (const uint8_t *)key };
  int rc = pm_store_delete(s, &pk, NULL);
  assert_true(rc == PM_OK || rc == PM_NOTFOUND);
  model[k] = 0;
}

static void check_model(pm_store *s) {
  uint64_t live = 0;
  for (int k = 0; k < NKEYS; k++) {
    char key[32], want[64];
    snprintf(key, sizeof key, "key-%05d", k);
    pm_key pk = { PM_TEXT, (uint32_t)strlen(key), (const uint8_t *)key };
    pm_value *v = NULL;
    int rc = pm_store_get(s, NULL, &pk, &v, NULL, NULL);
    if (!model[k]) {
      if (rc != PM_NOTFOUND) fail_msg("deleted key %d came back", k);
      continue;
    }
    if (rc != PM_OK) fail_msg("key %d missing (rc %d)", k, rc);
    int n = snprintf(want, sizeof want, "value %d of key %d, padded....", model[k], k);
    assert_int_equal(v->len, n);
    assert_memory_equal(v->data, want, n);
    pm_value_unref(v);
    live++;
  }
  pm_stats st;
  assert_int_equal(pm_store_stats(s, &st, NULL), PM_OK);
  assert_int_equal(st.keys, live);
}

/* Fill, overwrite and delete so that most of the log is dead. */
static void churn(pm_store *s) {
  memset(model, 0, sizeof model);
  for (int round = 1; round <= 3; round++)
    for (int k = 0; k < NKEYS; k++) put_key(s, k, round);
  for (int k = 0; k < NKEYS; k += 3) delete_key(s, k);
}

static void test_shrink_keeps_live_data(void **state) {
  (void)state;
  pm_store *s = open_with(NULL, 0, 1000);
  churn(s);
  uint8_t b[8];
  pm_key big = pm_key_int(1000000, b);
  assert_int_equal(pm_store_put(s, &big, PM_NULL, NULL, 0, NULL), PM_OK);
  assert_int_equal(pm_store_delete(s, &big, NULL), PM_OK);
  pm_stats before, after;
  pm_store_stats(s, &before, NULL);
  char *summary = NULL;
  pm_err err;
  if (pm_store_shrink(s, &summary, &err)) fail_msg("shrink: %s", err.msg);
  assert_non_null(strstr(summary, "\"segments_rewritten\":"));
  pm_free(summary);
  pm_store_stats(s, &after, NULL);
  assert_true(after.log_bytes < before.log_bytes / 2);
  assert_int_equal(after.shrinks, 1);
  assert_true(after.shrink_reclaimed_bytes > 0);
  check_model(s);
  assert_int_equal(pm_store_close(s, NULL), PM_OK);
  s = open_with(NULL, 0, 1000);
  check_model(s);
  /* High-water marks survive: the deleted integer key and its seq are gone from the log. */
  pm_txn *t;
  int64_t next;
  assert_int_equal(pm_txn_begin(s, &t, NULL), PM_OK);
  assert_int_equal(pm_txn_next_int_key(t, &next, NULL), PM_OK);
  assert_int_equal(next, 1000001);
  uint64_t seq;
  pm_key k = pm_key_int(5, b);
  assert_int_equal(pm_txn_put(t, &k, PM_NULL, NULL, 0, PM_PUT_REPLACE, &seq, NULL), PM_OK);
  assert_true(seq > before.last_seq);
  assert_int_equal(pm_txn_commit(t, NULL), PM_OK);
  char *report;
  assert_int_equal(pm_store_check(s, &report, NULL), PM_OK);
  assert_string_equal(report, "ok");
  pm_free(report);
  pm_store_close(s, NULL);
}

static pm_store *racing;
static int stop_writer;          /* atomic: read by the writer thread */

static void *writer_thread(void *arg) {
  (void)arg;
  for (int i = 0; !__atomic_load_n(&stop_writer, __ATOMIC_ACQUIRE) || i < 500; i++)
    put_key(racing, i % NKEYS, 100 + i / NKEYS);
  return NULL;
}

static void test_shrink_with_concurrent_writer(void **state) {
  (void)state;
  racing = open_with(NULL, 0, 1000);
  churn(racing);
  __atomic_store_n(&stop_writer, 0, __ATOMIC_RELEASE);
  pthread_t th;
  pthread_create(&th, NULL, writer_thread, NULL);
  for (int i = 0; i < 3; i++) {
    char *summary = NULL;
    pm_err err;
    if (pm_store_shrink(racing, &summary, &err)) fail_msg("shrink: %s", err.msg);
    pm_free(summary);
  }
  __atomic_store_n(&stop_writer, 1, __ATOMIC_RELEASE);
  pthread_join(th, NULL);
  check_model(racing);
  pm_store_close(racing, NULL);
  racing = open_with(NULL, 0, 1000);
  check_model(racing);
  pm_store_close(racing, NULL);
}

static void test_shrink_io_errors_everywhere(void **state) {
  (void)state;
  const int kinds[] = { FIO_OPEN, FIO_WRITE, FIO_FSYNC, FIO_DIRSYNC, FIO_RENAME, FIO_UNLINK };
  const int errs[] = { EIO, ENOSPC, 0 };
  int cases = 0;
  for (size_t ki = 0; ki < sizeof kinds / sizeof kinds[0]; ki++) {
    for (size_t ei = 0; ei < 3; ei++) {
      if (errs[ei] == 0 && kinds[ki] != FIO_WRITE) continue;   /* short writes are writes */
      for (long nth = 1;; nth++) {
        fio_reset();
        tu_rmtree(dir);
        pm_store *s = open_with(fio_io(), 0, 1000);
        churn(s);
        fio_arm(kinds[ki], nth, (int)(nth & 1), errs[ei]);
        char *summary = NULL;
        pm_err err;
        int rc = pm_store_shrink(s, &summary, &err);
        long hits = fio_failures;
        pm_free(summary);
        fio_reset();
        if (rc == PM_OK && hits == 0) { pm_store_close(s, NULL); break; }  /* ran out of calls */
        pm_store_close(s, NULL);
        s = open_with(NULL, 0, 1000);              /* no faults: all live data, nothing back */
        check_model(s);
        if (pm_store_shrink(s, &summary, &err)) fail_msg("shrink after a failed one: %s", err.msg);
        pm_free(summary);
        check_model(s);
        pm_store_close(s, NULL);
        cases++;
      }
    }
  }
  print_message("shrink fault cases: %d\n", cases);
  assert_true(cases > 20);
}

static void test_auto_shrink(void **state) {
  (void)state;
  pm_store *s = open_with(NULL, 1.5, 20);
  churn(s);
  /* A shrink may already have run while churn() was writing: wait for the
  ** background thread to bring the log within its ratio by itself. */
  pm_stats st;
  int within = 0;
  for (int i = 0; i < 3000 && !within; i++) {          /* up to 30 s on a loaded machine */
    pm_store_stats(s, &st, NULL);
    within = st.shrinks > 0 && !st.shrink_running &&
             (double)st.log_bytes <= 1.5 * (double)st.live_bytes + (128 << 10);
    if (!within) usleep(10000);
  }
  if (!within)
    fail_msg("auto-shrink did not bring the log within its ratio: %llu shrinks, log %llu, live %llu",
             (unsigned long long)st.shrinks, (unsigned long long)st.log_bytes, (unsigned long long)st.live_bytes);
  check_model(s);
  pm_store_close(s, NULL);
}

/* Bytes of the files in dir whose names end with suffix ("" for all). */
static uint64_t dir_bytes(const char *suffix) {
  DIR *d = opendir(dir);
  uint64_t n = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    size_t l = strlen(e->d_name), sl = strlen(suffix);
    if (e->d_name[0] == '.' || l < sl || strcmp(e->d_name + l - sl, suffix)) continue;
    char p[700];
    snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
    struct stat st;
    if (stat(p, &st) == 0) n += (uint64_t)st.st_size;
  }
  closedir(d);
  return n;
}

static void test_space_after_deleting_90_percent(void **state) {
  (void)state;
  pm_store *s = open_with(NULL, 0, 1000);
  memset(model, 0, sizeof model);
  for (int k = 0; k < NKEYS; k++) put_key(s, k, 1);
  for (int k = 0; k < NKEYS; k++) if (k % 10) delete_key(s, k);
  char *summary;
  assert_int_equal(pm_store_shrink(s, &summary, NULL), PM_OK);
  pm_free(summary);
  pm_stats st;
  pm_store_stats(s, &st, NULL);
  uint64_t logs = dir_bytes(".log"), all = dir_bytes("") - 8192;   /* the shm page and its lock bytes */
  print_message("live %llu, segments %llu, directory %llu\n", (unsigned long long)st.live_bytes,
                (unsigned long long)logs, (unsigned long long)all);
  /* The fixed cost of a segment (64-byte header, commit record) is counted as live here. */
  assert_true((double)logs <= 1.2 * (double)st.live_bytes + 2 * 128);
  assert_true((double)all <= 1.5 * (double)st.live_bytes + 2 * 128);
  pm_store_close(s, NULL);
}

static void corrupt_hints(int remove) {
  DIR *d = opendir(dir);
  struct dirent *e;
  int n = 0;
  while ((e = readdir(d))) {
    if (!strstr(e->d_name, ".hint")) continue;
    char p[700];
    snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
    if (remove) { unlink(p); n++; continue; }
    int fd = open(p, O_RDWR);
    uint8_t b;
    assert_int_equal(pread(fd, &b, 1, 100), 1);
    b ^= 0x40;
    assert_int_equal(pwrite(fd, &b, 1, 100), 1);
    close(fd);
    n++;
  }
  closedir(d);
  assert_true(n > 0);
}

static void test_hints_missing_or_corrupt(void **state) {
  (void)state;
  pm_store *s = open_with(NULL, 0, 10);
  churn(s);
  char *summary;
  assert_int_equal(pm_store_shrink(s, &summary, NULL), PM_OK);
  pm_free(summary);
  for (int k = 0; k < NKEYS; k += 7) put_key(s, k, 9);    /* more sealed segments */
  usleep(100000);                                          /* the background writes their hints */
  pm_store_close(s, NULL);
  for (int pass = 0; pass < 3; pass++) {     /* hints intact, corrupted, deleted */
    if (pass) corrupt_hints(pass == 2);
    s = open_with(NULL, 0, 100000);
    check_model(s);
    char *report;
    assert_int_equal(pm_store_check(s, &report, NULL), PM_OK);
    if (pass == 1) assert_non_null(strstr(report, "is corrupt or stale"));
    else assert_string_equal(report, "ok");
    pm_free(report);
    pm_store_close(s, NULL);
  }
}

/* Another process compacts while this one holds a snapshot and then goes on
** reading and writing: it moves to the new segments. */
static void test_compaction_by_another_process(void **state) {
  (void)state;
  pm_store *s = open_with(NULL, 0, 100000);
  churn(s);
  pm_snap snap;
  assert_int_equal(pm_store_snap_begin(s, &snap, NULL), PM_OK);
  int before[NKEYS];
  memcpy(before, model, sizeof model);
  pid_t pid = fork();
  if (pid == 0) {
    pm_options o;
    pm_options_init(&o);
    pm_store *c;
    char *summary = NULL;
    int ok = pm_store_open(dir, &o, &c, NULL) == PM_OK && pm_store_shrink(c, &summary, NULL) == PM_OK;
    pm_free(summary);
    ok = ok && pm_store_close(c, NULL) == PM_OK;
    _exit(ok ? 0 : 1);
  }
  int status;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  for (int k = 1; k < NKEYS; k += 3) put_key(s, k, 50);       /* catches up, then writes */
  check_model(s);
  /* The snapshot taken before the compaction still reads its own state. */
  pm_iter_spec all = { 0, 0, UINT64_MAX, NULL, NULL };
  pm_iter *it;
  assert_int_equal(pm_iter_open(s, NULL, &snap, &all, &it, NULL), PM_OK);
  int seen = 0;
  while (pm_iter_next(it, NULL) == PM_OK) {
    pm_value *v;
    assert_int_equal(pm_iter_value(it, &v, NULL), PM_OK);
    int version, key;
    assert_int_equal(sscanf((const char *)v->data, "value %d of key %d", &version, &key), 2);
    assert_int_equal(version, before[key]);
    pm_value_unref(v);
    seen++;
  }
  pm_iter_close(it);
  pm_store_snap_end(s, &snap);
  int live = 0;
  for (int k = 0; k < NKEYS; k++) live += before[k] != 0;
  assert_int_equal(seen, live);
  pm_stats st;
  pm_store_stats(s, &st, NULL);
  assert_true(st.catchups > 0);
  pm_store_close(s, NULL);
  s = open_with(NULL, 0, 100000);
  check_model(s);
  pm_store_close(s, NULL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(test_shrink_keeps_live_data, setup, teardown),
    cmocka_unit_test_setup_teardown(test_shrink_with_concurrent_writer, setup, teardown),
    cmocka_unit_test_setup_teardown(test_shrink_io_errors_everywhere, setup, teardown),
    cmocka_unit_test_setup_teardown(test_auto_shrink, setup, teardown),
    cmocka_unit_test_setup_teardown(test_space_after_deleting_90_percent, setup, teardown),
    cmocka_unit_test_setup_teardown(test_hints_missing_or_corrupt, setup, teardown),
    cmocka_unit_test_setup_teardown(test_compaction_by_another_process, setup, teardown),
  };
  tu_filter_from_env();
  return cmocka_run_group_tests_name("compact", tests, NULL, NULL);
}
