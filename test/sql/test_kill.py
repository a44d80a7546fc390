"""kill -9: a process crash loses no acknowledged commit, in every sync mode.

A child process (kill_child.py) writes transactions through SQL and
reports each acknowledged COMMIT on a pipe; the parent kills it with
SIGKILL at a random moment (most often while it commits, sometimes while
it opens and recovers the store, or compacts it), then opens the store
afresh and checks that the table is exactly the state after some
transaction L, where L is the last acknowledged one or the one in flight:
every acknowledged transaction is there whole (its inserts, overwrites and
deletes), none is there in part, nothing of a rolled-back transaction or
savepoint is there, and persistmap_check finds nothing wrong. The next
child goes on from L, so each store sees many kills in a row.

The quick run kills 200 times in all (the three sync modes share them);
PM_KILLS=n changes the total, and PM_SOAK=1 makes it 100,000. PM_SEED
fixes the random moments. Each test prints its figures.
"""
import os
import random
import select
import shutil
import signal
import subprocess
import sys
import time

import pytest

from conftest import SO, connect
from kill_child import expected

CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kill_child.py")
PY = "/usr/bin/python3"
MODES = ["full", "normal", "off"]
TOTAL = int(os.environ.get("PM_KILLS") or (100000 if os.environ.get("PM_SOAK") else 200))
KILLS_PER_STORE = 100    # a fresh store after this many kills
SEED = int(os.environ.get("PM_SEED") or random.randrange(1 << 30))


def kills_for(mode):
    i = MODES.index(mode)
    return TOTAL // len(MODES) + (1 if i < TOTAL % len(MODES) else 0)


def make_store(tmp, mode, n):
    """A database holding the table kv on a store of its own; returns the
    database's path and the store's."""
    db = str(tmp / f"host-{mode}-{n}.db")
    con = connect(db)
    con.execute(f"CREATE VIRTUAL TABLE kv USING persistmap(path='kv-{mode}-{n}.pmap', "
                f"sync='{mode}', segment_size='64KB', auto_shrink=0, cache_size='256KB')")
    con.close()
    return db, str(tmp / f"kv-{mode}-{n}.pmap")


def read_lines(pipe, buf, until_ready, deadline):
    """Read what the child wrote; returns (buf, done)."""
    while True:
        timeout = max(0.0, deadline - time.monotonic()) if until_ready else 0
        r, _, _ = select.select([pipe], [], [], timeout)
        if not r:
            return buf, False
        chunk = os.read(pipe.fileno(), 65536)
        if not chunk:
            return buf, True
        buf += chunk
        if until_ready and b"\n" in buf:
            return buf, False


def kill_once(ext, db, rnd, seed):
    """Start a child, kill it at a random moment; returns (start, acked,
    moment) where start is the 'last' the child found and acked the
    transactions it acknowledged."""
    child = subprocess.Popen([PY, CHILD, ext, db, str(seed)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, cwd=os.path.dirname(db))
    buf = b""
    if rnd.random() < 0.1:
        moment = "opening"             # while it starts, opens and recovers the store
        time.sleep(rnd.uniform(0, 0.12))
    else:
        moment = "writing"
        deadline = time.monotonic() + 30
        buf, done = read_lines(child.stdout, buf, True, deadline)
        if done or b"\n" not in buf:
            child.kill()
            child.wait()
            raise AssertionError(f"the child did not start: {child.stderr.read().decode()}")
        time.sleep(rnd.choice([rnd.uniform(0, 0.003), rnd.uniform(0, 0.03)]))
    alive = child.poll() is None
    child.send_signal(signal.SIGKILL)
    child.wait()
    buf += child.stdout.read()
    err = child.stderr.read().decode()
    child.stdout.close()
    child.stderr.close()
    if not alive or child.returncode != -signal.SIGKILL:
        raise AssertionError(f"the child died by itself ({child.returncode}): {err}")
    lines = buf.decode().split("\n")
    assert lines[-1] == "", f"a partial line on the pipe: {lines[-1]!r}"
    lines = lines[:-1]
    start = None
    if lines:
        assert lines[0].startswith("ready "), lines[0]
        start = int(lines[0].split()[1])
    acked = [int(x) for x in lines[1:]]
    return start, acked, moment


def table(db):
    """The table as a fresh connection of this process sees it, and the
    store's check report."""
    con = connect(db)
    try:
        rows = con.execute("SELECT key, typeof(value), value FROM kv").fetchall()
        report = con.execute("SELECT persistmap_check('kv')").fetchone()[0]
    finally:
        con.close()
    return {k: (t, v) for k, t, v in rows}, report


def typed(want):
    names = {int: "integer", float: "real", str: "text", bytes: "blob", type(None): "null"}
    return {k: (names[type(v)], v) for k, v in want.items()}


def describe(got, want):
    diff = []
    for k in sorted(set(got) | set(want)):
        if got.get(k) != want.get(k):
            g, w = got.get(k), want.get(k)
            diff.append(f"{k}: got {str(g)[:60]} want {str(w)[:60]}")
    return "; ".join(diff[:8]) + (f" (+{len(diff) - 8} more)" if len(diff) > 8 else "")


@pytest.mark.parametrize("mode", MODES)
def test_kill_9_loses_no_acknowledged_commit(tmp, mode, capsys):
    rnd = random.Random(f"{SEED}-{mode}")
    kills = kills_for(mode)
    last = 0                  # the state the store must be in at least
    store_no = 0
    db = store = None
    figures = {"kills": 0, "acked": 0, "in_flight_kept": 0, "opening": 0, "stores": 0}
    # The children load a copy of the build under test: a long run must not
    # see a rebuild of it half-written.
    ext = str(tmp / "persistmap.so")
    shutil.copyfile(SO, ext)
    t0 = time.monotonic()
    for k in range(kills):
        if k % KILLS_PER_STORE == 0:
            if db:
                shutil.rmtree(store)
                os.unlink(db)
            store_no += 1
            db, store = make_store(tmp, mode, store_no)
            last = 0
            figures["stores"] += 1
        seed = rnd.randrange(1 << 30)
        start, acked, moment = kill_once(ext, db, rnd, seed)
        figures["kills"] += 1
        figures["opening"] += moment == "opening"
        where = f"mode {mode}, seed {SEED}, kill {k} (child seed {seed}, {moment})"
        if start is not None:
            assert start == last, f"{where}: the child found last={start}, expected {last}"
        assert acked == list(range(last + 1, last + 1 + len(acked))), \
            f"{where}: acknowledgements out of order: {acked[:5]}..."
        figures["acked"] += len(acked)
        acked_last = acked[-1] if acked else last
        got, report = table(db)
        found = got.get("last", (None, 0))[1]
        assert found in (acked_last, acked_last + 1), \
            f"{where}: the store holds transaction {found}, acknowledged {acked_last}"
        want = typed(expected(found))
        assert got == want, f"{where}: not the state after transaction {found}: " + describe(got, want)
        assert report == "ok", f"{where}: persistmap_check: {report}"
        figures["in_flight_kept"] += found == acked_last + 1
        last = found
    secs = time.monotonic() - t0
    with capsys.disabled():           # the figures, even under pytest -q
        print(f"\nkill -9 sync={mode} seed={SEED}: {figures['kills']} kills ({figures['opening']} while "
              f"opening), {figures['acked']} acknowledged commits all present, {figures['in_flight_kept']} "
              f"in-flight commits kept, {figures['stores']} stores, 0 violations, {secs:.1f} s")
    assert figures["kills"] == kills
