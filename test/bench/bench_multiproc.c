/*
** bench_multiproc.c - what sharing a store between processes costs, through
** the C API: the same work with the store used by this process alone, and
** with a second process that has it open.
**
**   bench_multiproc DIR [N]
**
** On a store of 10,000 keys (16-byte keys, 100-byte values), sync=off so
** that no fsync hides the cost being measured:
**   1. commit rate: N transactions of one put each, by a single writer;
**   2. point-get latency: random gets of cached values;
** each alone, and with a second process holding the store open (idle: it
** only keeps the shared page, the locks and the catch-up path live); then
**   3. both at once, a writer committing N transactions while a reader
**      gets, as two threads of one process (one engine: nothing to catch
**      up) and as two processes (the reader catches up with every commit
**      it has not seen, reading what was appended).
** Besides, what the machinery costs a commit even alone: taking and
** releasing the OFD writer lock (two fcntl calls), timed by themselves.
** The two set-ups alternate, 7 runs each; a figure is the best run (other
** load on the machine only ever slows a run down), the median is printed
** beside it. Ratios are "two processes / one"; results go to stdout and,
** one JSON object per line, to DIR/multiproc.json.
*/
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "io.h"
#include "store.h"

#define KEYS 10000u
#define VLEN 100u
#define REPS 7
#define GETS 1000000u

static char store[600];
static uint64_t n_commits;
static FILE *json;

/* Shared with the peer process (an anonymous shared mapping). */
typedef struct shared {
  int stop;                   /* the parent asks the reader to stop */
  uint64_t gets, ns;          /* the reader's result */
} shared;
static shared *sh;
static int cmd_w = -1, ack_r = -1;

static void die(const char *what, const pm_err *err) {
  fprintf(stderr, "bench_multiproc: %s: %s\n", what, err ? err->msg : "");
  exit(1);
}

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static pm_store *open_store(void) {
  pm_options o;
  pm_options_init(&o);
  o.create = 1;
  o.sync = PM_SYNC_OFF;
  o.auto_shrink = 0;
  pm_store *s;
  pm_err err;
  if (pm_store_open(store, &o, &s, &err)) die("open", &err);
  return s;
}

static pm_key key_of(uint64_t i, char buf[32]) {
  snprintf(buf, 32, "key%013llu", (unsigned long long)(i % KEYS));
  return (pm_key){ PM_BLOB, 16, (const uint8_t *)buf };
}

static uint64_t next_rand(uint64_t *s) {
  *s ^= *s << 13; *s ^= *s >> 7; *s ^= *s << 17;
  return *s;
}

/* n one-put transactions; commits per second. */
static double commit_rate(pm_store *s, uint64_t n, uint64_t seed) {
  static char val[VLEN];
  memset(val, 'v', sizeof val);
  pm_err err;
  uint64_t t0 = now_ns();
  for (uint64_t i = 0; i < n; i++) {
    char kb[32];
    pm_key k = key_of(next_rand(&seed), kb);
    if (pm_store_put(s, &k, PM_BLOB, val, VLEN, &err)) die("put", &err);
  }
  return (double)n * 1e9 / (double)(now_ns() - t0);
}

/* Random gets until n are done or *stop is set; gets and nanoseconds. */
static void get_loop(pm_store *s, uint64_t n, const int *stop, uint64_t seed, uint64_t *gets, uint64_t *ns) {
  pm_err err;
  uint64_t t0 = now_ns(), i = 0;
  for (; i < n && !(stop && __atomic_load_n(stop, __ATOMIC_ACQUIRE)); i++) {
    char kb[32];
    pm_key k = key_of(next_rand(&seed), kb);
    pm_value *v;
    if (pm_store_get(s, NULL, &k, &v, NULL, &err)) die("get", &err);
    pm_value_unref(v);
  }
  *gets = i;
  *ns = now_ns() - t0;
}

/* ---- the peer process: open, close, or read on command ---------------- */

static void peer(int cmd_r, int ack_w) {
  pm_store *s = NULL;
  char c;
  while (read(cmd_r, &c, 1) == 1) {
    if (c == 'O') s = open_store();
    else if (c == 'C') { pm_store_close(s, NULL); s = NULL; }
    else if (c == 'R') get_loop(s, UINT64_MAX, &sh->stop, 99, &sh->gets, &sh->ns);
    if (write(ack_w, "k", 1) != 1) break;
  }
  if (s) pm_store_close(s, NULL);
  _exit(0);
}

static void command(char c) {
  char ack;
  if (write(cmd_w, &c, 1) != 1 || read(ack_r, &ack, 1) != 1) die("the peer process is gone", NULL);
}

/* The reader's command is answered when it stops: send it, don't wait. */
static void command_async(char c) {
  if (write(cmd_w, &c, 1) != 1) die("the peer process is gone", NULL);
}

static void wait_ack(void) {
  char ack;
  if (read(ack_r, &ack, 1) != 1) die("the peer process is gone", NULL);
}

/* ---- measurements ----------------------------------------------------------- */

/* Nanoseconds for taking and releasing an OFD lock (what each commit does). */
static double ofd_lock_pair_ns(const char *dir) {
  char path[700];
  snprintf(path, sizeof path, "%s/multiproc-lockfile", dir);
  int fd = open(path, O_RDWR | O_CREAT, 0644);
  if (fd < 0) die("cannot create the lock file", NULL);
  double best = 1e18;
  for (int r = 0; r < REPS; r++) {
    uint64_t t0 = now_ns();
    for (int i = 0; i < 100000; i++) {
      if (pm_io_posix.lock(fd, F_WRLCK, 8192, 1, 0) < 0) die("fcntl", NULL);
      pm_io_posix.lock(fd, F_UNLCK, 8192, 1, 0);
    }
    double ns = (double)(now_ns() - t0) / 100000.0;
    if (ns < best) best = ns;
  }
  close(fd);
  unlink(path);
  return best;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* Sort v; its median. */
static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  return v[n / 2];
}

typedef struct reader_arg { pm_store *s; uint64_t gets, ns; } reader_arg;

static void *reader_thread(void *p) {
  reader_arg *a = p;
  get_loop(a->s, UINT64_MAX, &sh->stop, 99, &a->gets, &a->ns);
  return NULL;
}

/* Writer and reader at once; *rate (commits/s) and *lat (ns/get). */
static void concurrent(pm_store *s, int processes, double *rate, double *lat) {
  __atomic_store_n(&sh->stop, 0, __ATOMIC_RELEASE);
  pthread_t th;
  reader_arg a = { s, 0, 0 };
  if (processes) command_async('R');
  else pthread_create(&th, NULL, reader_thread, &a);
  usleep(20000);                                  /* the reader is under way */
  *rate = commit_rate(s, n_commits, 12345);
  __atomic_store_n(&sh->stop, 1, __ATOMIC_RELEASE);
  if (processes) { wait_ack(); a.gets = sh->gets; a.ns = sh->ns; }
  else pthread_join(th, NULL);
  *lat = a.gets ? (double)a.ns / (double)a.gets : 0;
}

/* One row: the best run of each set-up (highest rate, lowest latency) and the medians. */
static void report(const char *what, const char *unit, int higher_is_better, double *one, double *two) {
  double m1 = median(one, REPS), m2 = median(two, REPS);
  double b1 = higher_is_better ? one[REPS - 1] : one[0], b2 = higher_is_better ? two[REPS - 1] : two[0];
  printf("%-40s %12.0f %12.0f %7.3f   %12.0f %12.0f %7.3f\n", what, b1, b2, b2 / b1, m1, m2, m2 / m1);
  fprintf(json, "{\"bench\":\"multiproc\",\"measure\":\"%s\",\"unit\":\"%s\",\"one_process\":%.1f,"
          "\"two_processes\":%.1f,\"ratio\":%.4f,\"one_process_median\":%.1f,"
          "\"two_processes_median\":%.1f,\"ratio_median\":%.4f}\n",
          what, unit, b1, b2, b2 / b1, m1, m2, m2 / m1);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: bench_multiproc DIR [N]\n");
    return 2;
  }
  n_commits = argc > 2 ? strtoull(argv[2], NULL, 10) : 100000;
  if (n_commits < 1000) n_commits = 1000;
  snprintf(store, sizeof store, "%s/multiproc-store", argv[1]);
  char path[700];
  snprintf(path, sizeof path, "%s/multiproc.json", argv[1]);
  json = fopen(path, "w");
  if (!json) die("cannot write the results", NULL);
  sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (sh == MAP_FAILED) die("mmap", NULL);

  /* The peer is forked before this process opens anything. */
  int cmd[2], ack[2];
  if (pipe(cmd) || pipe(ack)) die("pipe", NULL);
  pid_t pid = fork();
  if (pid == 0) { close(cmd[1]); close(ack[0]); peer(cmd[0], ack[1]); }
  close(cmd[0]);
  close(ack[1]);
  cmd_w = cmd[1];
  ack_r = ack[0];

  pm_store *s = open_store();
  static char val[VLEN];
  memset(val, 'v', sizeof val);
  pm_err err;
  pm_txn *t;
  if (pm_txn_begin(s, &t, &err)) die("begin", &err);
  for (uint64_t i = 0; i < KEYS; i++) {
    char kb[32];
    pm_key k = key_of(i, kb);
    if (pm_txn_put(t, &k, PM_BLOB, val, VLEN, PM_PUT_REPLACE, NULL, &err)) die("put", &err);
  }
  if (pm_txn_commit(t, &err)) die("commit", &err);
  uint64_t g, ns;
  get_loop(s, KEYS * 4, NULL, 7, &g, &ns);          /* warm the cache */

  double rate[2][REPS], lat[2][REPS], crate[2][REPS], clat[2][REPS];
  for (int r = 0; r < REPS; r++) {
    for (int two = 0; two < 2; two++) {           /* alternate, so drift hits both */
      if (two) command('O');
      rate[two][r] = commit_rate(s, n_commits, 1000 + (uint64_t)r);
      get_loop(s, GETS, NULL, 2000 + (uint64_t)r, &g, &ns);
      lat[two][r] = (double)ns / (double)g;
      concurrent(s, two, &crate[two][r], &clat[two][r]);
      if (two) command('C');
    }
  }
  printf("bench_multiproc: %u keys, %llu one-put commits per run, sync=off, %d runs each\n",
         KEYS, (unsigned long long)n_commits, REPS);
  printf("%-40s %12s %12s %7s   %12s %12s %7s\n", "", "best: one", "two", "ratio", "median: one", "two",
         "ratio");
  report("commits/s, single writer", "commits/s", 1, rate[0], rate[1]);
  report("point get, ns", "ns", 0, lat[0], lat[1]);
  report("commits/s, while a reader gets", "commits/s", 1, crate[0], crate[1]);
  report("point get while a writer commits, ns", "ns", 0, clat[0], clat[1]);
  printf("(one process: the store is open in this process only, and for the last two rows the reader\n"
         " is a second thread; two processes: a second process has it open, and reads in the last two)\n");
  double lock_ns = ofd_lock_pair_ns(argv[1]), commit_ns = 1e9 / rate[0][REPS - 1];
  printf("writer lock, taken and released (2 fcntl calls per commit): %.0f ns, %.1f%% of a commit "
         "(%.0f ns)\n", lock_ns, 100.0 * lock_ns / commit_ns, commit_ns);
  fprintf(json, "{\"bench\":\"multiproc\",\"measure\":\"writer lock pair\",\"unit\":\"ns\","
          "\"ns\":%.1f,\"commit_ns\":%.1f,\"share\":%.4f}\n", lock_ns, commit_ns, lock_ns / commit_ns);
  fclose(json);
  close(cmd_w);
  int status;
  waitpid(pid, &status, 0);
  pm_store_close(s, NULL);
  return 0;
}
