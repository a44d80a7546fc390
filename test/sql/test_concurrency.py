"""Many threads and many processes on one store.

Within one process: connections on any threads share one engine, every
statement reads one committed state, writers serialize (SQLite's lock
within one database, persistmap's across databases, with busy_timeout),
a forked child never touches its parent's engine or locks. Across
processes (real ones: Python workers from concurrency_worker.py, children
forked by multiprocessing, the sqlite3 shell): a queue shared by a
producer and a consumer, bank transfers with compactions running, a shell
reading while Python writes, a writer killed with SIGKILL, and a read path
that makes no system call. Every wait is bounded; leftover processes are
killed.
"""
import json
import multiprocessing
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

import concurrency_worker as cw
from conftest import EXT, SHELL, connect, errname, shell_env, stats

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "concurrency_worker.py")
FORK = multiprocessing.get_context("fork")


# ---- helpers ---------------------------------------------------------------

@pytest.fixture
def spawn():
    """Start worker processes; any still running at the end is killed."""
    procs = []

    def start(role, *args):
        p = subprocess.Popen([sys.executable, WORKER, role, EXT, *map(str, args)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        procs.append(p)
        return p

    yield start
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait(timeout=10)


def result(p, timeout):
    """The JSON a worker printed last, once it exited (killed after timeout)."""
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate(timeout=10)
        pytest.fail(f"worker {p.args[2:5]} did not finish in {timeout}s:\n{out}\n{err}")
    lines = out.strip().splitlines()
    assert lines, f"worker {p.args[2:5]} printed nothing (exit {p.returncode}):\n{err}"
    return json.loads(lines[-1]), p.returncode, err


def results(procs, timeout):
    """result() of each worker, all within one timeout."""
    end = time.monotonic() + timeout
    return [result(p, max(1.0, end - time.monotonic())) for p in procs]


def join_threads(threads, timeout):
    end = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.1, end - time.monotonic()))
    assert not any(t.is_alive() for t in threads), "a thread did not finish in time"


def bank_con(store, **kw):
    return cw.connect(EXT, str(store), **kw)


def assert_bank(con, counters):
    """The invariant, the counters' values, and a clean persistmap_check."""
    assert cw.check_bank(con) == (True, (cw.ACCOUNTS, cw.TOTAL))
    for key, want in counters.items():
        assert con.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone() == (want,), key
    assert con.execute("SELECT persistmap_check('kv')").fetchone() == ("ok",)


def join_all(procs, timeout):
    """Join multiprocessing children within timeout; kill and fail otherwise."""
    deadline = time.monotonic() + timeout
    for p in procs:
        p.join(max(0.1, deadline - time.monotonic()))
    late = [p for p in procs if p.is_alive()]
    for p in late:
        p.kill()
        p.join(10)
    assert not late, f"{len(late)} forked children did not finish in {timeout}s"


def wait_until(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


# ---- within one process ------------------------------------------------------

def test_connections_on_threads_share_one_engine(tmp):
    """Tables on one store, in a file database and in in-memory ones, on
    several threads: one engine (its commit count covers them all, nothing
    was ever caught up from another process), and each sees the others'
    commits at its next statement."""
    store = tmp / "shared.pmap"
    main = connect(str(tmp / "app.db"))
    main.execute("CREATE VIRTUAL TABLE kv USING persistmap(path='shared.pmap')")
    main.execute("INSERT INTO kv VALUES ('main', 0)")
    before = stats(main)["commits"]
    per_thread, errors = 50, []

    def work(i):
        try:
            con = bank_con(store) if i % 2 else connect(str(tmp / "app.db"))
            for j in range(per_thread):
                con.execute("INSERT INTO kv VALUES (?, ?)", (f"t{i}:{j}", j))
                # Our own commit, and every commit before it, is visible now.
                assert con.execute("SELECT value FROM kv WHERE key = ?", (f"t{i}:{j}",)).fetchone() == (j,)
                assert con.execute("SELECT count(*) FROM kv WHERE key = 'main'").fetchone() == (1,)
            con.close()
        except Exception as e:          # reported by the main thread
            errors.append(repr(e))

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(4)]
    for t in threads:
        t.start()
    join_threads(threads, 40)
    assert errors == []
    st = stats(main)
    assert st["commits"] - before == 4 * per_thread
    assert st["catchups"] == 0
    assert main.execute("SELECT count(*) FROM kv").fetchone() == (4 * per_thread + 1,)
    main.close()


def test_bank_transfers_on_threads_keep_the_total(tmp):
    """Writers on four threads (two on one WAL database, where SQLite orders
    them, two on in-memory databases, where persistmap's lock does), readers
    checking the total in every statement, and a thread compacting and
    syncing: no statement ever sees part of a transaction, and no increment
    is lost."""
    store = tmp / "bank.pmap"
    setup = bank_con(store, options=", segment_size='64KB'")
    cw.create_bank(setup, ["ctr:all"])
    filedb = connect(str(tmp / "bank.db"), timeout=30)
    filedb.execute("PRAGMA journal_mode=WAL")
    filedb.execute("CREATE VIRTUAL TABLE kv USING persistmap(path='bank.pmap', busy_timeout='20s')")
    filedb.close()
    ops, stop, errors, done = 120, threading.Event(), [], {"checks": 0, "shrinks": 0}

    def writer(i):
        try:
            con = connect(str(tmp / "bank.db"), timeout=30) if i < 2 else bank_con(store)
            rnd = random.Random(i)
            for _ in range(ops):
                bad = cw.transfer(con, rnd)
                if bad:
                    errors.append(bad)
                con.execute("UPDATE kv SET value = value + 1 WHERE key = 'ctr:all'")
            con.close()
        except Exception as e:
            errors.append(f"writer {i}: {e!r}")

    def reader(i):
        try:
            con = bank_con(store) if i else connect(str(tmp / "bank.db"), timeout=30)
            n = 0
            while not stop.is_set():
                ok, row = cw.check_bank(con, n)
                n += 1
                if not ok:
                    errors.append(f"reader {i} read {row}")
            done["checks"] += n
            con.close()
        except Exception as e:
            errors.append(f"reader {i}: {e!r}")

    def compactor():
        try:
            con = bank_con(store)
            while not stop.is_set():
                s = json.loads(con.execute("SELECT persistmap_shrink('kv')").fetchone()[0])
                done["shrinks"] += s["segments_rewritten"] > 0
                con.execute("SELECT persistmap_sync('kv')").fetchone()
                time.sleep(0.05)
            con.close()
        except Exception as e:
            errors.append(f"compactor: {e!r}")

    writers = [threading.Thread(target=writer, args=(i,), daemon=True) for i in range(4)]
    others = [threading.Thread(target=reader, args=(i,), daemon=True) for i in range(2)]
    others.append(threading.Thread(target=compactor, daemon=True))
    for t in writers + others:
        t.start()
    join_threads(writers, 40)
    stop.set()
    join_threads(others, 10)
    assert errors == []
    assert done["checks"] > 0
    assert done["shrinks"] > 0
    assert_bank(setup, {"ctr:all": 4 * ops})
    setup.close()


def test_a_long_scan_does_not_stall_writers(tmp):
    """A scan left open between two rows: another connection updates every
    row, inserts and deletes meanwhile, at once; the scan goes on reading
    the state it started in, and the next statement sees the new one."""
    store = tmp / "scan.pmap"
    con = bank_con(store)
    con.execute("BEGIN")
    con.executemany("INSERT INTO kv VALUES (?, 0)", [(i,) for i in range(2000)])
    con.execute("COMMIT")
    writer = bank_con(store, busy="2s")      # a stall would show as SQLITE_BUSY
    scan = con.execute("SELECT key, value FROM kv")
    first = scan.fetchmany(10)
    t0 = time.monotonic()
    writer.execute("UPDATE kv SET value = 1")
    writer.executemany("INSERT INTO kv VALUES (?, 2)", [(i,) for i in range(2000, 2100)])
    writer.execute("DELETE FROM kv WHERE key < 100")
    assert time.monotonic() - t0 < 1.5
    rows = first + scan.fetchall()
    assert len(rows) == 2000 and {v for _, v in rows} == {0}
    assert con.execute("SELECT count(*), sum(value) FROM kv").fetchone() == (2000, 1900 + 200)
    con.close()
    writer.close()


def test_a_second_writer_on_another_database_waits_then_gets_busy(tmp):
    """Two in-memory databases (so no SQLite lock between them): the second
    writer waits busy_timeout, then SQLITE_BUSY naming the cause; within its
    timeout, it goes on as soon as the first commits."""
    store = tmp / "lock.pmap"
    a = bank_con(store)
    b = bank_con(store, busy="300ms")
    b.execute(f"CREATE VIRTUAL TABLE temp.patient USING persistmap(path='{store}', busy_timeout='10s')")
    a.execute("BEGIN")
    a.execute("INSERT INTO kv VALUES ('a', 1)")
    t0 = time.monotonic()
    with pytest.raises(sqlite3.OperationalError) as info:
        b.execute("INSERT INTO kv VALUES ('b', 1)")
    waited = time.monotonic() - t0
    assert errname(info.value) == "SQLITE_BUSY"
    assert str(info.value) == "persistmap: the store is locked by another writer"
    assert 0.25 <= waited < 3
    timer = threading.Timer(0.3, lambda: a.execute("COMMIT"))
    timer.start()
    t0 = time.monotonic()
    b.execute("INSERT INTO patient VALUES ('b', 2)")
    assert 0.2 <= time.monotonic() - t0 < 5
    assert b.execute("SELECT key, value FROM kv ORDER BY key").fetchall() == [("a", 1), ("b", 2)]
    timer.join()                     # its execute may still be returning: never close under it
    a.close()
    b.close()


def test_within_one_database_the_connections_busy_timeout_governs(tmp):
    """Two connections to one database file: SQLite's own lock orders them,
    so the second fails after its connection's timeout (0.3 s), not after
    the table's busy_timeout (30 s)."""
    first = connect(str(tmp / "one.db"), timeout=0.3)
    first.execute("CREATE VIRTUAL TABLE kv USING persistmap(busy_timeout='30s')")
    second = connect(str(tmp / "one.db"), timeout=0.3)
    first.execute("BEGIN")
    first.execute("INSERT INTO kv VALUES ('x', 1)")
    t0 = time.monotonic()
    with pytest.raises(sqlite3.OperationalError) as info:
        second.execute("INSERT INTO kv VALUES ('y', 1)")
    assert errname(info.value) == "SQLITE_BUSY"
    assert "database is locked" in str(info.value)
    assert time.monotonic() - t0 < 5
    first.execute("COMMIT")
    second.execute("INSERT INTO kv VALUES ('y', 2)")
    assert first.execute("SELECT key FROM kv ORDER BY key").fetchall() == [("x",), ("y",)]
    first.close()
    second.close()


HOLDER = r"""
import sqlite3, sys, time
con = sqlite3.connect(":memory:", isolation_level=None)
con.enable_load_extension(True)
con.load_extension(sys.argv[1])
con.execute("CREATE VIRTUAL TABLE temp.kv USING persistmap(path=%r)" % sys.argv[2])
con.execute("BEGIN")
con.execute("INSERT INTO kv VALUES ('theirs', 1)")
open(sys.argv[3], "w").close()          # the writer lock is held now
time.sleep(float(sys.argv[4]))
con.execute("COMMIT")
"""


def test_a_writer_in_another_process_makes_us_wait(tmp):
    store, flag = str(tmp / "p.pmap"), str(tmp / "holding")
    con = bank_con(store, busy="200ms")
    con.execute(f"CREATE VIRTUAL TABLE temp.patient USING persistmap(path='{store}', busy_timeout='20s')")
    p = subprocess.Popen([sys.executable, "-c", HOLDER, EXT, store, flag, "1.0"])
    try:
        wait_until(lambda: os.path.exists(flag), 20, "the other process to take the lock")
        with pytest.raises(sqlite3.OperationalError) as info:
            con.execute("INSERT INTO kv VALUES ('ours', 1)")
        assert str(info.value) == "persistmap: the store is locked by another writer"
        assert con.execute("SELECT count(*) FROM kv").fetchone() == (0,)    # reads never wait
        con.execute("INSERT INTO patient VALUES ('ours', 2)")                # waits for its commit
        assert p.wait(timeout=20) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(10)
    assert con.execute("SELECT key, value FROM kv ORDER BY seq").fetchall() == [("theirs", 1), ("ours", 2)]
    con.close()


# ---- fork ------------------------------------------------------------------

def forked_writer(store, idx, n, inherited, out):
    """In a forked child: the parent's connection refuses to work (it would
    use the parent's engine and locks); a connection of its own writes."""
    res = {"refused": None, "error": None}
    try:
        try:
            inherited.execute("SELECT count(*) FROM kv").fetchall()
        except sqlite3.Error as e:
            res["refused"] = str(e)
        con = bank_con(store)
        for j in range(n):
            con.execute("INSERT INTO kv VALUES (?, ?)", (f"child{idx}:{j}", j))
            con.execute("UPDATE kv SET value = value + 1 WHERE key = 'ctr'")
        con.close()
    except Exception as e:
        res["error"] = repr(e)
    with open(out, "w") as f:
        json.dump(res, f)


def test_forked_children_and_parent_write_to_one_store(tmp):
    store = str(tmp / "fork.pmap")
    con = bank_con(store)
    con.execute("INSERT INTO kv VALUES ('ctr', 0)")
    n, kids = 100, 3
    procs = [FORK.Process(target=forked_writer, args=(store, i, n, con, str(tmp / f"child{i}.json")))
             for i in range(kids)]
    for p in procs:
        p.start()
    for j in range(n):                            # the parent writes meanwhile
        con.execute("INSERT INTO kv VALUES (?, ?)", (f"parent:{j}", j))
        con.execute("UPDATE kv SET value = value + 1 WHERE key = 'ctr'")
    join_all(procs, 40)
    assert [p.exitcode for p in procs] == [0] * kids
    for i in range(kids):
        res = json.load(open(tmp / f"child{i}.json"))
        assert res["error"] is None
        assert "opened by the parent process" in res["refused"]
    assert con.execute("SELECT value FROM kv WHERE key = 'ctr'").fetchone() == ((kids + 1) * n,)
    assert con.execute("SELECT count(*) FROM kv").fetchone() == ((kids + 1) * n + 1,)
    assert con.execute("SELECT count(*) FROM kv WHERE key GLOB 'child2:*'").fetchone() == (n,)
    assert con.execute("SELECT persistmap_check('kv')").fetchone() == ("ok",)
    con.close()


def forked_meddler(con, action, out):
    """In a child forked while the parent's connection has a transaction
    open: commit it, or close the connection (which rolls it back)."""
    res = {}
    try:
        con.execute("COMMIT") if action == "commit" else con.close()
        res[action] = "succeeded"
    except sqlite3.Error as e:
        res[action] = str(e)
    with open(out, "w") as f:
        json.dump(res, f)


@pytest.mark.parametrize("action", ["commit", "close"])
def test_a_child_never_releases_or_writes_its_parents_transaction(tmp, action):
    """The child shares the parent's open file descriptions, so its OFD
    writer lock: a child that ends the inherited transaction must neither
    write it to the log nor release that lock."""
    store = str(tmp / "held.pmap")
    con = bank_con(store)
    con.execute("INSERT INTO kv VALUES ('before', 0)")
    con.execute("BEGIN")
    con.execute("INSERT INTO kv VALUES ('parent', 1)")
    p = FORK.Process(target=forked_meddler, args=(con, action, str(tmp / "child.json")))
    p.start()
    join_all([p], 30)
    res = json.load(open(tmp / "child.json"))
    if action == "commit":
        assert "opened by the parent process" in res["commit"]
    reader = bank_con(store)          # the parent's transaction is still uncommitted
    assert reader.execute("SELECT key FROM kv").fetchall() == [("before",)]
    reader.close()
    # The parent still holds the writer lock: another process must wait.
    other = subprocess.run([sys.executable, "-c", r"""
import sqlite3, sys
con = sqlite3.connect(":memory:", isolation_level=None)
con.enable_load_extension(True)
con.load_extension(sys.argv[1])
con.execute("CREATE VIRTUAL TABLE temp.kv USING persistmap(path=%r, busy_timeout='300ms')" % sys.argv[2])
try:
    con.execute("INSERT INTO kv VALUES ('intruder', 1)")
    print("wrote")
except sqlite3.Error as e:
    print(e)
""", EXT, store], capture_output=True, text=True, timeout=30)
    assert other.stdout.strip() == "persistmap: the store is locked by another writer"
    con.execute("COMMIT")
    assert con.execute("SELECT key FROM kv ORDER BY seq").fetchall() == [("before",), ("parent",)]
    assert con.execute("SELECT persistmap_check('kv')").fetchone() == ("ok",)
    con.close()
    again = bank_con(store)
    assert again.execute("SELECT key FROM kv ORDER BY seq").fetchall() == [("before",), ("parent",)]
    again.close()


# ---- across processes -----------------------------------------------------------

def test_queue_producer_and_consumer_processes(tmp, spawn):
    """durostore's use: every item pushed is popped exactly once, in order."""
    store = tmp / "queue.pmap"
    con = cw.connect(EXT, str(store), table="q")
    n = 400
    consumer = spawn("consumer", store, n, 40)
    producer = spawn("producer", store, n)
    (pushed, rc, err), (popped, rc2, err2) = results([producer, consumer], 40)
    assert rc == 0 and pushed == {"pushed": n}, err
    assert rc2 == 0, err2
    assert popped["popped"] == list(range(n))
    assert con.execute("SELECT count(*) FROM q").fetchone() == (0,)
    con.close()


def test_queue_two_consumers_pop_each_item_once(tmp, spawn):
    """Two consumers race for each item: DELETE's changes() tells the winner,
    so each item is popped by exactly one of them, each in push order."""
    store, stop = tmp / "queue2.pmap", tmp / "stop"
    con = cw.connect(EXT, str(store), table="q")
    n = 300
    consumers = [spawn("consumer", store, n, 40, stop) for _ in range(2)]
    producer = spawn("producer", store, n)
    assert result(producer, 40)[1] == 0
    stop.touch()
    popped = [out["popped"] for out, rc, err in results(consumers, 30)]
    assert sorted(popped[0] + popped[1]) == list(range(n))
    for got in popped:
        assert got == sorted(got)
    assert con.execute("SELECT count(*) FROM q").fetchone() == (0,)
    con.close()


def test_bank_transfers_in_four_processes_with_shrinks(tmp, spawn):
    """Four processes transfer money while one of them compacts the store
    every few transactions: each process moves to the new segments, the
    total is exact in every snapshot, and no increment is lost."""
    store = tmp / "bank.pmap"
    con = bank_con(store, options=", segment_size='64KB'")
    cw.create_bank(con, ["ctr:all"] + [f"ctr:{i}" for i in range(4)])
    ops = 250
    procs = [spawn("bank", store, i, ops, 20 if i == 0 else 0) for i in range(4)]
    outs = results(procs, 40)
    for out, rc, err in outs:
        assert out["error"] is None and out["bad"] == [] and rc == 0, (out, err)
        assert out["transfers"] == ops
    assert outs[0][0]["shrinks"] > 0
    assert_bank(con, {"ctr:all": 4 * ops, **{f"ctr:{i}": ops for i in range(4)}})
    assert stats(con)["catchups"] > 0
    con.close()


SHRINKER = r"""
import json, sqlite3, sys
con = sqlite3.connect(":memory:", isolation_level=None)
con.enable_load_extension(True)
con.load_extension(sys.argv[1])
con.execute("CREATE VIRTUAL TABLE temp.kv USING persistmap(path=%r)" % sys.argv[2])
summary = json.loads(con.execute("SELECT persistmap_shrink('kv')").fetchone()[0])
con.execute("UPDATE kv SET value = 'new' || key")
print(json.dumps(summary))
"""


def test_a_scan_survives_a_compaction_in_another_process(tmp):
    """A query stopped between two rows while another process compacts the
    store (and deletes the old segments) and rewrites every row: it reads
    on from the state it began in; the next statement, and the next write,
    of this process use the new segments."""
    store = tmp / "moved.pmap"
    con = bank_con(store, options=", segment_size='64KB'")
    for rnd in range(3):                # dead versions to compact away
        con.execute("BEGIN")
        con.executemany("INSERT OR REPLACE INTO kv VALUES (?, ?)",
                        [(i, f"old{i}" + "." * 100) for i in range(1000)])
        con.execute("COMMIT")
    before = sorted(os.listdir(store))
    scan = con.execute("SELECT key, value FROM kv ORDER BY seq")
    rows = scan.fetchmany(10)
    shrink = subprocess.run([sys.executable, "-c", SHRINKER, EXT, str(store)], capture_output=True,
                            text=True, timeout=40)
    assert shrink.returncode == 0, shrink.stderr
    assert json.loads(shrink.stdout)["segments_rewritten"] > 1
    gone = [f for f in before if f.endswith(".log") and f not in os.listdir(store)]
    assert gone, "the compaction removed no segment"
    rows += scan.fetchall()
    assert rows == [(i, f"old{i}" + "." * 100) for i in range(1000)]
    assert con.execute("SELECT count(*) FROM kv WHERE value = 'new' || key").fetchone() == (1000,)
    con.execute("UPDATE kv SET value = 'mine' WHERE key < 10")
    assert con.execute("SELECT persistmap_check('kv')").fetchone() == ("ok",)
    con.close()
    again = bank_con(store)
    assert again.execute("SELECT count(*) FROM kv WHERE value = 'mine'").fetchone() == (10,)
    again.close()


def test_the_shell_reads_while_python_writes(tmp, spawn, shell_dir):
    """The sqlite3 shell runs queries while a Python process inserts rows in
    pairs that sum to 0: each query sees whole pairs only, and later
    queries see more of them, without reopening anything."""
    store = tmp / "pairs.pmap"
    con = bank_con(store)
    writer = spawn("pairs", store, 3)
    wait_until(lambda: con.execute("SELECT count(*) FROM kv").fetchone()[0] > 0, 20, "the first pair")
    script = (".load ./persistmap\n"
              f"CREATE VIRTUAL TABLE temp.kv USING persistmap(path='{store}');\n"
              + "SELECT count(*), total(value) FROM kv;\n.system sleep 0.005\n" * 150)
    shell = subprocess.run([SHELL, "-bail", ":memory:"], input=script, text=True, capture_output=True,
                           cwd=shell_dir, env=shell_env(), timeout=40)
    assert shell.returncode == 0, shell.stderr
    counts = []
    for line in shell.stdout.split():
        count, total = line.split("|")
        assert float(total) == 0.0 and int(count) % 2 == 0, line
        counts.append(int(count))
    assert len(counts) == 150
    assert counts == sorted(counts)
    assert len(set(counts)) > 3, "the shell did not see the writer's commits"
    out, rc, err = result(writer, 30)
    assert rc == 0, err
    final = subprocess.run([SHELL, ":memory:"], input=script.split("SELECT")[0]
                           + "SELECT count(*), total(value) FROM kv;\n",
                           text=True, capture_output=True, cwd=shell_dir, env=shell_env(), timeout=30)
    assert final.stdout.strip() == f"{out['rows']}|0.0"
    con.close()


def test_a_writer_killed_with_sigkill(tmp, spawn):
    """A process killed in the middle of its transactions (three times):
    its lock goes with it, the others carry on, the total stays exact, and
    every transaction whose COMMIT had returned is there."""
    store = tmp / "kill.pmap"
    con = bank_con(store, busy="3s")
    cw.create_bank(con, ["ctr:victim", "ctr:all", "ctr:0", "ctr:1"])
    ops = 200
    workers = [spawn("bank", store, i, ops, 0) for i in range(2)]
    logged, rounds, rnd = 0, 3, random.Random(5)
    for r in range(rounds):
        log = tmp / f"victim{r}.log"
        victim = spawn("victim", store, log)
        wait_until(lambda: log.exists() and log.read_text().count("\n") >= 5, 15, "the victim's commits")
        time.sleep(rnd.uniform(0.02, 0.2))
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        assert victim.returncode == -signal.SIGKILL
        logged += log.read_text().count("\n")
        # The lock died with it: we write at once (busy_timeout 3s).
        con.execute("UPDATE kv SET value = value + 0 WHERE key = 'ctr:all'")
    outs = results(workers, 40)
    for out, rc, err in outs:
        assert out["error"] is None and out["bad"] == [] and rc == 0, (out, err)
    victim_commits = con.execute("SELECT value FROM kv WHERE key = 'ctr:victim'").fetchone()[0]
    # Each victim may have committed one transaction more than it logged.
    assert logged <= victim_commits <= logged + rounds
    assert_bank(con, {"ctr:all": 2 * ops, "ctr:0": ops, "ctr:1": ops})
    con.close()
    reopened = bank_con(store)
    assert reopened.execute("SELECT value FROM kv WHERE key = 'ctr:victim'").fetchone() == (victim_commits,)
    reopened.close()


READER = r"""
import os, sqlite3, sys
con = sqlite3.connect(":memory:", isolation_level=None)
con.enable_load_extension(True)
con.load_extension(sys.argv[1])
con.execute("CREATE VIRTUAL TABLE temp.kv USING persistmap(path=%r)" % sys.argv[2])
q = "SELECT value FROM kv WHERE key = ?"
for i in range(100):
    assert con.execute(q, (i,)).fetchone() == ("v%d" % i,)
os.write(1, b"BEGIN-READS\n")
for j in range(3000):
    con.execute(q, (j % 100,)).fetchone()
os.write(1, b"END-READS\n")
"""


def test_strace_reads_make_no_system_call_when_nothing_changed(tmp):
    """With another process holding the store open (so the shared commit
    counter is live), 3000 point reads make no system call at all: checking
    for other processes' commits is one load from shared memory."""
    strace = shutil.which("strace")
    if not strace:
        pytest.skip("strace is not installed")
    probe = subprocess.run([strace, "-f", "-o", os.devnull, "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("strace cannot trace here: " + probe.stderr.decode(errors="replace").strip())
    store = str(tmp / "rp.pmap")
    con = bank_con(store)
    con.executemany("INSERT INTO kv VALUES (?, ?)", [(i, f"v{i}") for i in range(100)])
    trace = tmp / "trace.txt"
    subprocess.run([strace, "-f", "-o", str(trace), sys.executable, "-c", READER, EXT, store],
                   check=True, timeout=40, capture_output=True)
    lines = trace.read_text().splitlines()
    begin = next(i for i, l in enumerate(lines) if "BEGIN-READS" in l)
    end = next(i for i, l in enumerate(lines) if "END-READS" in l)
    tid = lines[begin].split()[0]
    calls = [l for l in lines[begin + 1:end]
             if l.split()[0] == tid and "<... write resumed>" not in l]   # the marker's own
    assert calls == []
    con.close()
