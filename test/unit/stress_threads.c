/*
** stress_threads.c - eight threads, each with its own SQLite connection, on
** one persistmap store, for a fixed number of operations; built with
** -fsanitize=thread by `make test-tsan` (persistmap compiled in with
** -DSQLITE_CORE and registered with sqlite3_auto_extension, Debian's
** libsqlite3 linked).
**
**   stress_threads DIR [OPS]
**
** Every thread does, in turn: a bank transfer between two of 100 accounts
** inside a transaction (reading the total inside it: it sees its own first
** write), an increment of a shared counter with UPDATE, and a read of the
** whole bank in one statement (the total never changes). Half the threads
** use in-memory databases (persistmap's writer lock orders them), half one
** WAL database file (SQLite's lock orders them). Besides, thread 5 reads
** the bank slowly, row by row; thread 6 compacts the store and thread 7
** syncs it and reads its figures. At the end the total, the counter and
** persistmap_check must be right; ThreadSanitizer reports any race.
*/
#include <sqlite3.h>

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "persistmap.h"

#define THREADS 8
#define ACCOUNTS 100
#define BALANCE 1000
#define TOTAL (ACCOUNTS * BALANCE)

static const char *dir;
static int ops = 300;

/* Figures of all threads (under mu). */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static long transfers, increments, checks, slow_rows, shrinks, syncs, busy_retries, failures;

static void failure(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  pthread_mutex_lock(&mu);
  failures++;
  fprintf(stderr, "stress_threads: ");
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  pthread_mutex_unlock(&mu);
  va_end(ap);
}

static void add(long *counter, long n) {
  pthread_mutex_lock(&mu);
  *counter += n;
  pthread_mutex_unlock(&mu);
}

static sqlite3 *open_conn(int file_db) {
  char path[1200];
  sqlite3 *db;
  if (file_db) snprintf(path, sizeof path, "%s/bank.db", dir);
  if (sqlite3_open(file_db ? path : ":memory:", &db) != SQLITE_OK) {
    failure("open: %s", sqlite3_errmsg(db));
    exit(2);
  }
  sqlite3_busy_timeout(db, 20000);
  char *sql = file_db
      ? sqlite3_mprintf("PRAGMA journal_mode=WAL; CREATE VIRTUAL TABLE IF NOT EXISTS kv USING "
                        "persistmap(path='bank.pmap', busy_timeout='20s', segment_size='64KB')")
      : sqlite3_mprintf("CREATE VIRTUAL TABLE temp.kv USING persistmap(path='%q/bank.pmap', "
                        "busy_timeout='20s', segment_size='64KB')", dir);
  char *err = NULL;
  if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
    failure("create: %s", err);
    exit(2);
  }
  sqlite3_free(sql);
  return db;
}

/* Run sql; SQLITE_OK, SQLITE_BUSY (after a rollback) or a failure. */
static int exec(sqlite3 *db, const char *sql) {
  char *err = NULL;
  int rc = sqlite3_exec(db, sql, NULL, NULL, &err);
  if (rc != SQLITE_OK) {
    int busy = (rc & 0xff) == SQLITE_BUSY;
    if (!busy) failure("%s: %s", sql, err);
    sqlite3_free(err);
    if (!sqlite3_get_autocommit(db)) sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return busy ? SQLITE_BUSY : rc;
  }
  return SQLITE_OK;
}

/* Two integers of a one-row query, or -1 and a failure. */
static void query2(sqlite3 *db, const char *sql, long *a, long *b) {
  sqlite3_stmt *st;
  *a = *b = -1;
  if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
    failure("%s: %s", sql, sqlite3_errmsg(db));
    return;
  }
  if (sqlite3_step(st) == SQLITE_ROW) {
    *a = sqlite3_column_int64(st, 0);
    *b = sqlite3_column_count(st) > 1 ? sqlite3_column_int64(st, 1) : 0;
  } else {
    failure("%s: %s", sql, sqlite3_errmsg(db));
  }
  sqlite3_finalize(st);
}

static const char *const bank_reads[] = {
  "SELECT count(*), sum(value) FROM kv WHERE key GLOB 'acct:*'",
  "SELECT count(*), sum(value) FROM (SELECT key, value FROM kv ORDER BY seq) WHERE key LIKE 'acct:%'",
  "SELECT count(*), sum(value) FROM (SELECT key, value FROM kv ORDER BY seq DESC) "
  "WHERE key >= 'acct:' AND key < 'acct;'",
};

static void check_bank(sqlite3 *db, int i, const char *where) {
  long n, total;
  query2(db, bank_reads[i % 3], &n, &total);
  if (n != ACCOUNTS || total != TOTAL) failure("%s: read %ld accounts holding %ld", where, n, total);
}

static unsigned next_rand(unsigned *s) {
  *s = *s * 1103515245u + 12345u;
  return *s >> 8;
}

/* One transfer in one transaction; SQLITE_BUSY means try again. */
static int transfer(sqlite3 *db, unsigned *rnd) {
  int a = (int)(next_rand(rnd) % ACCOUNTS), b = (int)(next_rand(rnd) % (ACCOUNTS - 1));
  if (b >= a) b++;
  int amount = 1 + (int)(next_rand(rnd) % 50);
  char sql[200];
  if (exec(db, "BEGIN")) return SQLITE_ERROR;
  snprintf(sql, sizeof sql, "UPDATE kv SET value = value - %d WHERE key = 'acct:%03d'", amount, a);
  int rc = exec(db, sql);
  if (rc) return rc;
  long n, total;
  query2(db, bank_reads[0], &n, &total);
  if (n != ACCOUNTS || total != TOTAL - amount)
    failure("inside a transaction, after taking %d: read %ld accounts holding %ld", amount, n, total);
  snprintf(sql, sizeof sql, "UPDATE kv SET value = value + %d WHERE key = 'acct:%03d'", amount, b);
  if ((rc = exec(db, sql)) != SQLITE_OK) return rc;
  return exec(db, "COMMIT");
}

/* A scan of the whole bank, stepped slowly: one snapshot throughout. */
static void slow_scan(sqlite3 *db) {
  sqlite3_stmt *st;
  const char *sql = "SELECT key, value FROM kv ORDER BY seq";
  if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
    failure("%s: %s", sql, sqlite3_errmsg(db));
    return;
  }
  long n = 0, total = 0, rows = 0;
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    const char *k = (const char *)sqlite3_column_text(st, 0);
    if (k && strncmp(k, "acct:", 5) == 0) { n++; total += sqlite3_column_int64(st, 1); }
    if (++rows % 16 == 0) usleep(200);
  }
  if (rc != SQLITE_DONE) failure("slow scan: %s", sqlite3_errmsg(db));
  else if (n != ACCOUNTS || total != TOTAL) failure("slow scan read %ld accounts holding %ld", n, total);
  sqlite3_finalize(st);
  add(&slow_rows, rows);
}

static void *worker(void *arg) {
  int id = (int)(long)arg;
  sqlite3 *db = open_conn(id >= THREADS / 2);
  unsigned rnd = 7919u * (unsigned)(id + 1);
  for (int i = 0; i < ops; i++) {
    int rc;
    while ((rc = transfer(db, &rnd)) == SQLITE_BUSY) add(&busy_retries, 1);
    if (rc == SQLITE_OK) add(&transfers, 1);
    while ((rc = exec(db, "UPDATE kv SET value = value + 1 WHERE key = 'ctr:all'")) == SQLITE_BUSY)
      add(&busy_retries, 1);
    if (rc == SQLITE_OK) add(&increments, 1);
    check_bank(db, i, "a read");
    add(&checks, 1);
    if (id == 5 && i % 20 == 0) slow_scan(db);
    if (id == 6 && i % 25 == 24) {
      long dummy;
      sqlite3_stmt *st;
      if (sqlite3_prepare_v2(db, "SELECT json_extract(persistmap_shrink('kv'), '$.segments_rewritten')",
                             -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) {
        dummy = sqlite3_column_int64(st, 0);
        add(&shrinks, dummy > 0);
      } else {
        failure("shrink: %s", sqlite3_errmsg(db));
      }
      sqlite3_finalize(st);
    }
    if (id == 7 && i % 10 == 9) {
      long synced, keys;
      query2(db, "SELECT persistmap_sync('kv'), json_extract(persistmap_stats('kv'), '$.keys')",
             &synced, &keys);
      if (synced != 1 || keys != ACCOUNTS + 1) failure("sync %ld, keys %ld", synced, keys);
      add(&syncs, 1);
    }
  }
  sqlite3_close(db);
  return NULL;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: stress_threads DIR [OPS]\n");
    return 2;
  }
  dir = argv[1];
  if (argc > 2) ops = atoi(argv[2]);
  sqlite3_auto_extension((void (*)(void))sqlite3_persistmap_init);
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);

  sqlite3 *db = open_conn(1);
  char sql[200];
  exec(db, "BEGIN");
  for (int i = 0; i < ACCOUNTS; i++) {
    snprintf(sql, sizeof sql, "INSERT INTO kv VALUES ('acct:%03d', %d)", i, BALANCE);
    exec(db, sql);
  }
  exec(db, "INSERT INTO kv VALUES ('ctr:all', 0)");
  exec(db, "COMMIT");

  pthread_t th[THREADS];
  for (long i = 0; i < THREADS; i++) pthread_create(&th[i], NULL, worker, (void *)i);
  for (int i = 0; i < THREADS; i++) pthread_join(th[i], NULL);

  check_bank(db, 0, "the end");
  long ctr, dummy;
  query2(db, "SELECT value, 0 FROM kv WHERE key = 'ctr:all'", &ctr, &dummy);
  if (ctr != increments) failure("the counter is %ld after %ld increments", ctr, increments);
  if (transfers != (long)THREADS * ops) failure("%ld transfers of %d", transfers, THREADS * ops);
  if (shrinks == 0) failure("no compaction rewrote anything");
  sqlite3_stmt *st;
  if (sqlite3_prepare_v2(db, "SELECT persistmap_check('kv')", -1, &st, NULL) != SQLITE_OK ||
      sqlite3_step(st) != SQLITE_ROW || strcmp((const char *)sqlite3_column_text(st, 0), "ok") != 0)
    failure("persistmap_check: %s", sqlite3_column_text(st, 0) ? (const char *)sqlite3_column_text(st, 0)
                                                                : sqlite3_errmsg(db));
  sqlite3_finalize(st);
  sqlite3_close(db);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
  printf("stress_threads: %d threads, %ld transfers, %ld increments, %ld checks, %ld slow-scan rows, "
         "%ld compactions, %ld syncs, %ld busy retries, %ld failures, %.1f s\n",
         THREADS, transfers, increments, checks, slow_rows, shrinks, syncs, busy_retries, failures, secs);
  return failures ? 1 : 0;
}
