/*
** test_multiproc.c - processes sharing one store, at the engine's API:
** opening a store never cuts off what another process's writer has in
** flight (only a writer, under the writer lock, repairs a torn tail); a
** writer killed with SIGKILL releases its lock, its prepared group counts
** as committed (the next writer adopts it) and a half-written group is cut
** off by the next writer; hint files are written under the writer lock
** only. Children are forked and must open the store themselves; every wait
** is bounded. The WRITER lock a writer keeps between its transactions is
** let go when idle and whenever another process waits for it.
*/
#include "testutil.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "log.h"
#include "store.h"

static char *dir_path;
static char *tmp_root;

static int setup(void **state) {
  (void)state;
  tu_store_dirs(&tmp_root, &dir_path);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  tu_store_dirs_free(&tmp_root, &dir_path);
  return 0;
}

static pm_store *open_store(uint64_t busy_ms) {
  pm_options o;
  pm_options_init(&o);
  o.create = 1;
  o.busy_timeout_ms = busy_ms;
  pm_store *s = NULL;
  pm_err err;
  if (pm_store_open(dir_path, &o, &s, &err)) fail_msg("open: %s", err.msg);
  return s;
}

static pm_key text_key(const char *s) {
  pm_key k = { PM_TEXT, (uint32_t)strlen(s), (const uint8_t *)s };
  return k;
}

static int has_key(pm_store *s, const char *k) {
  pm_key key = text_key(k);
  return pm_store_get(s, NULL, &key, NULL, NULL, NULL) == PM_OK;
}

static void put_text(pm_store *s, const char *k, const char *v) {
  pm_key key = text_key(k);
  pm_err err;
  if (pm_store_put(s, &key, PM_TEXT, v, (uint32_t)strlen(v), &err)) fail_msg("put %s: %s", k, err.msg);
}

/* The active segment's path and size. */
static uint64_t active_size(char *path, size_t cap) {
  pm_manifest m;
  pm_err err;
  if (pm_manifest_read(&pm_io_posix, dir_path, &m, &err)) fail_msg("manifest: %s", err.msg);
  snprintf(path, cap, "%s/%06u.log", dir_path, m.active);
  pm_manifest_clear(&m);
  struct stat st;
  assert_int_equal(stat(path, &st), 0);
  return (uint64_t)st.st_size;
}

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Wait for a child (killing it after 30 s); its exit status. */
static int wait_child(pid_t pid) {
  int status = 0;
  for (int i = 0; i < 3000; i++) {
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) return status;
    usleep(10000);
  }
  kill(pid, SIGKILL);
  waitpid(pid, &status, 0);
  fail_msg("child %d did not finish in 30 s", (int)pid);
  return status;
}

/* One byte through a pipe, bounded by the alarm the child set. */
static void send_byte(int fd, char c) { assert_int_equal(write(fd, &c, 1), 1); }
static char recv_byte(int fd) {
  char c = 0;
  return read(fd, &c, 1) == 1 ? c : 0;
}

/* A writer of this process has written a group (prepared, as SQLite's
** xSync does) and not committed it. Another process opens the store: it
** must leave the group in place (not cut it as a torn tail), not see it
** yet, and see it at its next read once it is committed. */
static void test_opening_leaves_a_prepared_group_alone(void **state) {
  (void)state;
  pm_store *s = open_store(5000);
  put_text(s, "before", "1");
  pm_txn *t;
  assert_int_equal(pm_txn_begin(s, &t, NULL), PM_OK);
  for (int i = 0; i < 50; i++) {
    char k[32];
    snprintf(k, sizeof k, "group%d", i);
    pm_key key = text_key(k);
    assert_int_equal(pm_txn_put(t, &key, PM_TEXT, "in flight", 9, PM_PUT_REPLACE, NULL, NULL), PM_OK);
  }
  assert_int_equal(pm_txn_prepare(t, NULL), PM_OK);
  char seg[600];
  uint64_t size = active_size(seg, sizeof seg);
  int to_child[2], to_parent[2];
  assert_int_equal(pipe(to_child), 0);
  assert_int_equal(pipe(to_parent), 0);
  pid_t pid = fork();
  if (pid == 0) {
    alarm(30);
    close(to_child[1]);
    close(to_parent[0]);
    pm_options o;
    pm_options_init(&o);
    o.busy_timeout_ms = 50;
    pm_store *c;
    int ok = pm_store_open(dir_path, &o, &c, NULL) == PM_OK;
    char p[600];
    ok = ok && active_size(p, sizeof p) == size;       /* nothing was cut */
    ok = ok && has_key(c, "before") && !has_key(c, "group0");
    pm_txn *ct;
    pm_err err;
    ok = ok && pm_txn_begin(c, &ct, &err) == PM_BUSY;
    send_byte(to_parent[1], ok ? 'y' : 'n');
    ok = ok && recv_byte(to_child[0]) == 'c';           /* the parent committed */
    ok = ok && has_key(c, "group0") && has_key(c, "group49");
    ok = ok && pm_store_close(c, NULL) == PM_OK;
    _exit(ok ? 0 : 1);
  }
  close(to_child[0]);
  close(to_parent[1]);
  assert_int_equal(recv_byte(to_parent[0]), 'y');
  assert_int_equal(pm_txn_commit(t, NULL), PM_OK);
  send_byte(to_child[1], 'c');
  int status = wait_child(pid);
  assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  close(to_child[1]);
  close(to_parent[0]);
  assert_true(has_key(s, "group49"));
  pm_store_close(s, NULL);
}

/* Bytes of a group still being written (a record cut short) lie past the
** commit point while the writer holds the lock: a process that opens the
** store leaves them, and the writer's commit goes in their place. */
static void test_opening_leaves_a_half_written_group_alone(void **state) {
  (void)state;
  pm_store *s = open_store(5000);
  put_text(s, "before", "1");
  pm_txn *t;
  assert_int_equal(pm_txn_begin(s, &t, NULL), PM_OK);
  char seg[600];
  uint64_t size = active_size(seg, sizeof seg);
  int fd = open(seg, O_WRONLY | O_APPEND);
  assert_true(fd >= 0);
  uint8_t junk[100];
  memset(junk, 0xA5, sizeof junk);
  assert_int_equal(write(fd, junk, sizeof junk), (ssize_t)sizeof junk);
  close(fd);
  pid_t pid = fork();
  if (pid == 0) {
    alarm(30);
    pm_options o;
    pm_options_init(&o);
    pm_store *c;
    int ok = pm_store_open(dir_path, &o, &c, NULL) == PM_OK;
    char p[600];
    ok = ok && active_size(p, sizeof p) == size + sizeof junk;
    ok = ok && has_key(c, "before");
    ok = ok && pm_store_close(c, NULL) == PM_OK;
    ok = ok && active_size(p, sizeof p) == size + sizeof junk;
    _exit(ok ? 0 : 1);
  }
  int status = wait_child(pid);
  assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  pm_key k = text_key("after");
  assert_int_equal(pm_txn_put(t, &k, PM_TEXT, "2", 1, PM_PUT_REPLACE, NULL, NULL), PM_OK);
  assert_int_equal(pm_txn_commit(t, NULL), PM_OK);
  char *report;
  assert_int_equal(pm_store_check(s, &report, NULL), PM_OK);
  assert_string_equal(report, "ok");
  pm_free(report);
  pm_store_close(s, NULL);
  s = open_store(5000);
  assert_true(has_key(s, "before") && has_key(s, "after"));
  pm_store_close(s, NULL);
}

/* A child opens the store, takes the writer lock, does `work`, then kills
** itself with SIGKILL. */
typedef enum { DIE_PREPARED, DIE_HALF_WRITTEN } death;

static void child_dies(death how) {
  alarm(30);
  pm_options o;
  pm_options_init(&o);
  pm_store *c;
  if (pm_store_open(dir_path, &o, &c, NULL)) _exit(2);
  pm_txn *t;
  if (pm_txn_begin(c, &t, NULL)) _exit(3);
  if (how == DIE_PREPARED) {
    for (int i = 0; i < 20; i++) {
      char k[32];
      snprintf(k, sizeof k, "dead%d", i);
      pm_key key = text_key(k);
      if (pm_txn_put(t, &key, PM_TEXT, "v", 1, PM_PUT_REPLACE, NULL, NULL)) _exit(4);
    }
    if (pm_txn_prepare(t, NULL)) _exit(5);
  } else {
    char seg[600];
    active_size(seg, sizeof seg);
    int fd = open(seg, O_WRONLY | O_APPEND);
    uint8_t junk[72];
    memset(junk, 0x5A, sizeof junk);
    if (fd < 0 || write(fd, junk, sizeof junk) != (ssize_t)sizeof junk) _exit(6);
  }
  raise(SIGKILL);
  _exit(7);
}

/* Killed after writing its group (xSync) and before making it visible
** (xCommit): the group counts as committed, as it would after a crash. Our
** next transaction adopts it, without waiting for the dead writer's lock. */
static void test_killed_writer_prepared_group_is_adopted(void **state) {
  (void)state;
  pm_store *s = open_store(10000);
  put_text(s, "mine", "1");
  pid_t pid = fork();
  if (pid == 0) child_dies(DIE_PREPARED);
  int status = wait_child(pid);
  assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  uint64_t t0 = now_ms();
  pm_txn *t;
  assert_int_equal(pm_txn_begin(s, &t, NULL), PM_OK);
  assert_true(now_ms() - t0 < 2000);                 /* the lock died with it */
  pm_key k = text_key("dead7");
  assert_int_equal(pm_txn_get(t, &k, NULL, NULL, NULL), PM_OK);
  pm_key after = text_key("after");
  assert_int_equal(pm_txn_put(t, &after, PM_TEXT, "2", 1, PM_PUT_REPLACE, NULL, NULL), PM_OK);
  assert_int_equal(pm_txn_commit(t, NULL), PM_OK);
  assert_true(has_key(s, "dead0") && has_key(s, "dead19") && has_key(s, "after") && has_key(s, "mine"));
  pm_store_close(s, NULL);
  s = open_store(5000);
  assert_true(has_key(s, "dead0") && has_key(s, "dead19") && has_key(s, "after"));
  pm_stats st;
  assert_int_equal(pm_store_stats(s, &st, NULL), PM_OK);
  assert_int_equal(st.keys, 22);
  pm_store_close(s, NULL);
}

/* Killed in the middle of writing a group: the bytes it left are cut off
** by the next writer, under the writer lock, and never by a mere reader. */
static void test_killed_writer_half_group_is_cut_by_the_next_writer(void **state) {
  (void)state;
  pm_store *s = open_store(10000);
  put_text(s, "mine", "1");
  char seg[600];
  uint64_t size = active_size(seg, sizeof seg);
  pid_t pid = fork();
  if (pid == 0) child_dies(DIE_HALF_WRITTEN);
  int status = wait_child(pid);
  assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  assert_int_equal(active_size(seg, sizeof seg), size + 72);
  assert_true(has_key(s, "mine"));                   /* reading cuts nothing */
  assert_int_equal(active_size(seg, sizeof seg), size + 72);
  uint64_t t0 = now_ms();
  put_text(s, "next", "2");
  assert_true(now_ms() - t0 < 2000);
  char *report;
  assert_int_equal(pm_store_check(s, &report, NULL), PM_OK);
  assert_string_equal(report, "ok");
  pm_free(report);
  pm_store_close(s, NULL);
  s = open_store(5000);
  assert_true(has_key(s, "mine") && has_key(s, "next"));
  pm_stats st;
  assert_int_equal(pm_store_stats(s, &st, NULL), PM_OK);
  assert_int_equal(st.keys, 2);
  assert_int_equal(st.dropped_bytes, 0);             /* the junk was cut, not skipped */
  pm_store_close(s, NULL);
}

/* Hint files of sealed segments, counted. */
static int count_hints(void) {
  char cmd[700];
  snprintf(cmd, sizeof cmd, "ls %s | grep -c '\\.hint$'", dir_path);
  FILE *p = popen(cmd, "r");
  int n = -1;
  if (p && fscanf(p, "%d", &n) != 1) n = -1;
  if (p) pclose(p);
  return n;
}

/* Hint files are written only under the writer lock: a process that opens
** the store, reads and closes it (its background upkeep running every 20 ms
** meanwhile) writes none while another process holds the lock; the holder
** writes them once it is free. */
static void test_hints_only_under_the_writer_lock(void **state) {
  (void)state;
  pm_options o;
  pm_options_init(&o);
  o.create = 1;
  o.segment_size = 64 << 10;
  pm_store *s;
  assert_int_equal(pm_store_open(dir_path, &o, &s, NULL), PM_OK);
  char big[2000];
  memset(big, 'h', sizeof big - 1);
  big[sizeof big - 1] = 0;
  for (int i = 0; i < 150; i++) {
    char k[32];
    snprintf(k, sizeof k, "k%d", i);
    put_text(s, k, big);
  }
  pm_store_close(s, NULL);
  char cmd[700];
  snprintf(cmd, sizeof cmd, "rm -f %s/*.hint", dir_path);
  assert_int_equal(system(cmd), 0);
  assert_int_equal(count_hints(), 0);
  s = open_store(5000);
  pm_txn *t;
  assert_int_equal(pm_txn_begin(s, &t, NULL), PM_OK);
  pid_t pid = fork();
  if (pid == 0) {
    alarm(30);
    pm_options co;
    pm_options_init(&co);
    co.sync_interval_ms = 20;
    pm_store *c;
    int ok = pm_store_open(dir_path, &co, &c, NULL) == PM_OK;
    ok = ok && has_key(c, "k0") && has_key(c, "k149");
    usleep(300000);                                   /* upkeep runs, finds the lock taken */
    ok = ok && pm_store_close(c, NULL) == PM_OK;      /* so does the close */
    _exit(ok ? 0 : 1);
  }
  int status = wait_child(pid);
  assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  assert_int_equal(count_hints(), 0);
  pm_txn_abort(t);
  pm_store_close(s, NULL);
  assert_true(count_hints() >= 2);
}

/* Whether this process's engine holds the WRITER lock of the store, seen
** from a descriptor of its own (an OFD lock test). */
static int writer_lock_held(void) {
  char path[4096];
  snprintf(path, sizeof path, "%s/shm", dir_path);
  int fd = open(path, O_RDWR);
  assert_true(fd >= 0);
  struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 8192, .l_len = 1 };
  assert_int_equal(fcntl(fd, F_OFD_GETLK, &fl), 0);
  close(fd);
  return fl.l_type != F_UNLCK;
}

/* The WRITER lock is kept between transactions (no lock calls per commit)
** and let go by the background thread soon after the writer goes idle, so
** another process can write without waiting for this one to close. */
static void test_kept_writer_lock_is_let_go_when_idle(void **state) {
  (void)state;
  pm_store *s = open_store(10000);
  int seen_kept = 0;
  for (int i = 0; i < 20 && !seen_kept; i++) {
    put_text(s, "k", "v");
    seen_kept = writer_lock_held();
  }
  assert_true(seen_kept);
  uint64_t t0 = now_ms();
  while (writer_lock_held() && now_ms() - t0 < 5000) usleep(1000);
  assert_false(writer_lock_held());
  pid_t pid = fork();
  if (pid == 0) {
    alarm(20);
    pm_store *c = open_store(10000);
    uint64_t c0 = now_ms();
    put_text(c, "child", "1");
    pm_store_close(c, NULL);
    _exit(now_ms() - c0 < 1000 ? 0 : 3);       /* nobody held the lock */
  }
  int status = wait_child(pid);
  assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  assert_true(has_key(s, "child"));
  pm_store_close(s, NULL);
}

/* A process that keeps writing keeps the lock only while nobody else waits:
** a second process that wants to write gets its turn while the first one
** is still writing, long before its busy timeout. */
static void test_kept_writer_lock_yields_to_a_waiting_process(void **state) {
  (void)state;
  pm_store *s = open_store(10000);
  put_text(s, "start", "1");
  pid_t pid = fork();
  if (pid == 0) {
    alarm(20);
    pm_store *c = open_store(8000);
    put_text(c, "child", "1");
    pm_store_close(c, NULL);
    _exit(0);
  }
  uint64_t t0 = now_ms();
  char v[32];
  for (int i = 0; !has_key(s, "child") && now_ms() - t0 < 6000; i++) {
    snprintf(v, sizeof v, "%d", i);
    put_text(s, "busy", v);                 /* a commit, then the next one soon: */
    struct timespec a, b;                   /* never idle long enough to let go */
    clock_gettime(CLOCK_MONOTONIC, &a);
    do clock_gettime(CLOCK_MONOTONIC, &b);
    while ((b.tv_sec - a.tv_sec) * 1000000000L + (b.tv_nsec - a.tv_nsec) < 100000);
  }
  assert_true(has_key(s, "child"));
  assert_true(now_ms() - t0 < 6000);
  int status = wait_child(pid);
  assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  pm_store_close(s, NULL);
}

/* A writer killed at random moments, hundreds of times, some of them in
** the middle of publishing a commit to the shared page: every open and read
** after it returns at once (none waits for a publish that will never end)
** and sees every commit the writer reported before it died. */
static void test_writer_killed_while_publishing(void **state) {
  (void)state;
  pm_store *s = open_store(10000);
  put_text(s, "seed", "0");
  unsigned seed = 12345;
  for (int round = 0; round < 100; round++) {
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    if (pid == 0) {
      close(fds[0]);
      pm_store *c = open_store(10000);
      char k[32];
      snprintf(k, sizeof k, "r%d", round);
      put_text(c, k, "done");
      send_byte(fds[1], 'k');                  /* one commit reported */
      for (int i = 0;; i++) put_text(c, "spin", k);
    }
    close(fds[1]);
    assert_int_equal(recv_byte(fds[0]), 'k');
    close(fds[0]);
    usleep((useconds_t)(rand_r(&seed) % 2000));
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    alarm(20);                                  /* a hang fails the test */
    char k[32];
    snprintf(k, sizeof k, "r%d", round);
    assert_true(has_key(s, k));
    pm_store *again = open_store(10000);        /* a fresh open reads the page too */
    assert_true(has_key(again, k) && has_key(again, "seed"));
    pm_store_close(again, NULL);
    alarm(0);
  }
  pm_store_close(s, NULL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(test_opening_leaves_a_prepared_group_alone, setup, teardown),
    cmocka_unit_test_setup_teardown(test_opening_leaves_a_half_written_group_alone, setup, teardown),
    cmocka_unit_test_setup_teardown(test_killed_writer_prepared_group_is_adopted, setup, teardown),
    cmocka_unit_test_setup_teardown(test_killed_writer_half_group_is_cut_by_the_next_writer, setup, teardown),
    cmocka_unit_test_setup_teardown(test_hints_only_under_the_writer_lock, setup, teardown),
    cmocka_unit_test_setup_teardown(test_kept_writer_lock_is_let_go_when_idle, setup, teardown),
    cmocka_unit_test_setup_teardown(test_kept_writer_lock_yields_to_a_waiting_process, setup, teardown),
    cmocka_unit_test_setup_teardown(test_writer_killed_while_publishing, setup, teardown),
  };
  return cmocka_run_group_tests_name("multiproc", tests, NULL, NULL);
}
