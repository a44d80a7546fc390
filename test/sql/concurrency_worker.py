"""Worker processes of test_concurrency.py.

Run as `python3 concurrency_worker.py ROLE EXTENSION STORE [ARGS...]`. Each
worker opens its own connection: an in-memory database holding a temp
table on the store, so that nothing but persistmap's own writer lock
orders the processes. A worker prints one JSON object on its last line of
output, and exits 1 if it met an error it did not expect.

Roles:
  bank ID OPS SHRINK_EVERY   OPS bank transfers between the accounts, each
                             in a transaction; the shared counter and the
                             worker's own counter incremented with UPDATE;
                             every read checks that the total did not change.
                             With SHRINK_EVERY > 0 it also compacts the store
                             (persistmap_shrink) and syncs it.
  victim LOG                 transfers for ever, a short sleep inside each
                             transaction (so that a kill lands in one); one
                             line appended to LOG after each COMMIT returned.
  producer N                 pushes 0..N-1 on the queue q.
  consumer N SECONDS [STOP]  pops until it got N items or SECONDS passed (or
                             the file STOP exists and the queue is empty).
  pairs SECONDS              inserts pairs of rows (+x, -x) for SECONDS: the
                             sum of the table is always 0.
"""
import json
import os
import random
import sqlite3
import sys
import time

ACCOUNTS = 100
BALANCE = 1000
TOTAL = ACCOUNTS * BALANCE

# Statements that read the whole bank in one go, through different plans:
# a key scan, the write order, the write order backwards. Each is one
# statement, so one snapshot: the total must be exact in every one.
CHECKS = [
    "SELECT count(*), sum(value) FROM kv WHERE key GLOB 'acct:*'",
    "SELECT count(*), sum(value) FROM (SELECT key, value FROM kv ORDER BY seq) WHERE key LIKE 'acct:%'",
    "SELECT count(*), sum(value) FROM (SELECT key, value FROM kv ORDER BY seq DESC) "
    "WHERE key >= 'acct:' AND key < 'acct;'",
]


def connect(ext, store, table="kv", busy="20s", options=""):
    con = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
    con.enable_load_extension(True)
    con.load_extension(ext)
    con.enable_load_extension(False)
    con.execute(f"CREATE VIRTUAL TABLE temp.{table} USING persistmap(path='{store}', "
                f"busy_timeout='{busy}'{options})")
    return con


def acct(i):
    return f"acct:{i:03d}"


def create_bank(con, counters=()):
    """The accounts with their opening balances, and counters at 0."""
    con.execute("BEGIN")
    con.executemany("INSERT INTO kv VALUES (?, ?)", [(acct(i), BALANCE) for i in range(ACCOUNTS)])
    con.executemany("INSERT INTO kv VALUES (?, 0)", [(c,) for c in counters])
    con.execute("COMMIT")


def check_bank(con, i=0):
    """(ok, what was read) for one consistent read of the whole bank."""
    row = con.execute(CHECKS[i % len(CHECKS)]).fetchone()
    return row == (ACCOUNTS, TOTAL), row


def is_busy(e):
    return "locked" in str(e) or getattr(e, "sqlite_errorname", "").startswith("SQLITE_BUSY")


def rollback(con):
    if con.in_transaction:
        con.execute("ROLLBACK")


def transfer(con, rnd, pause=0.0, extra=None):
    """Move a random amount between two accounts in one transaction. Inside
    it, a read sees the transaction's own first write. Returns None, or a
    description of a broken invariant."""
    a, b = rnd.sample(range(ACCOUNTS), 2)
    amount = rnd.randint(1, 50)
    con.execute("BEGIN")
    con.execute("UPDATE kv SET value = value - ? WHERE key = ?", (amount, acct(a)))
    mid = con.execute(CHECKS[0]).fetchone()
    if mid != (ACCOUNTS, TOTAL - amount):
        rollback(con)
        return f"inside a transaction, after taking {amount}: read {mid}"
    if pause:
        time.sleep(pause)
    con.execute("UPDATE kv SET value = value + ? WHERE key = ?", (amount, acct(b)))
    if extra:
        con.execute(extra)
    con.execute("COMMIT")
    return None


def retrying(con, fn, stats):
    """Run fn, retrying it when the store stays locked past busy_timeout."""
    while True:
        try:
            return fn()
        except sqlite3.OperationalError as e:
            rollback(con)
            if not is_busy(e):
                raise
            stats["busy"] += 1
            if stats["busy"] > 50:
                raise


def bank(ext, store, wid, ops, shrink_every):
    wid, ops, shrink_every = int(wid), int(ops), int(shrink_every)
    con = connect(ext, store)
    rnd = random.Random(wid * 7919 + os.getpid())
    out = {"transfers": 0, "increments": 0, "checks": 0, "shrinks": 0, "syncs": 0,
           "busy": 0, "bad": [], "error": None}
    mine = f"ctr:{wid}"
    try:
        for i in range(ops):
            bad = retrying(con, lambda: transfer(con, rnd), out)
            if bad:
                out["bad"].append(bad)
            out["transfers"] += 1
            retrying(con, lambda: con.execute("UPDATE kv SET value = value + 1 WHERE key IN ('ctr:all', ?)",
                                              (mine,)), out)
            out["increments"] += 1
            ok, row = check_bank(con, i)
            out["checks"] += 1
            if not ok:
                out["bad"].append(f"read {row}")
            if shrink_every and i % shrink_every == shrink_every - 1:
                summary = json.loads(retrying(con, lambda: con.execute(
                    "SELECT persistmap_shrink('kv')").fetchone()[0], out))
                out["shrinks"] += summary["segments_rewritten"] > 0
                con.execute("SELECT persistmap_sync('kv')").fetchone()
                out["syncs"] += 1
            if len(out["bad"]) > 5:
                break
    except sqlite3.Error as e:
        out["error"] = f"{type(e).__name__}: {e}"
    print(json.dumps(out), flush=True)
    return 0 if not out["error"] and not out["bad"] else 1


def victim(ext, store, log):
    con = connect(ext, store)
    rnd = random.Random(os.getpid())
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    while True:
        try:
            transfer(con, rnd, pause=0.002,
                     extra="UPDATE kv SET value = value + 1 WHERE key = 'ctr:victim'")
        except sqlite3.OperationalError as e:
            rollback(con)
            if not is_busy(e):
                raise
            continue
        os.write(fd, b"1\n")      # the COMMIT returned: this transaction is committed


def producer(ext, store, n):
    con = connect(ext, store, table="q")
    rnd = random.Random(os.getpid())
    i, n = 0, int(n)
    while i < n:
        batch = min(n - i, rnd.choice((1, 1, 1, 2, 5)))
        if batch > 1:
            con.execute("BEGIN")
        for j in range(i, i + batch):
            con.execute("INSERT INTO q(value) VALUES (?)", (j,))
        if batch > 1:
            con.execute("COMMIT")
        i += batch
    print(json.dumps({"pushed": n}), flush=True)
    return 0


def consumer(ext, store, n, seconds, stop_file=None):
    con = connect(ext, store, table="q")
    n, deadline = int(n), time.monotonic() + float(seconds)
    popped, empty = [], 0
    while len(popped) < n and time.monotonic() < deadline:
        stopping = stop_file and os.path.exists(stop_file)    # checked before the read
        row = con.execute("SELECT key, value FROM q ORDER BY seq LIMIT 1").fetchone()
        if row is None:
            if stopping:
                break
            empty += 1
            time.sleep(0.0005)
            continue
        if con.execute("DELETE FROM q WHERE key = ?", (row[0],)).rowcount == 1:
            popped.append(row[1])
    print(json.dumps({"popped": popped, "empty_polls": empty}), flush=True)
    return 0


def pairs(ext, store, seconds):
    con = connect(ext, store)
    deadline = time.monotonic() + float(seconds)
    k = 0
    while time.monotonic() < deadline:
        con.execute("BEGIN")
        con.execute("INSERT INTO kv VALUES (?, ?)", (k, k + 1))
        con.execute("INSERT INTO kv VALUES (?, ?)", (k + 1, -(k + 1)))
        con.execute("COMMIT")
        k += 2
        time.sleep(0.0005)
    print(json.dumps({"rows": k}), flush=True)
    return 0


ROLES = {"bank": bank, "victim": victim, "producer": producer, "consumer": consumer,
         "pairs": pairs}

if __name__ == "__main__":
    sys.exit(ROLES[sys.argv[1]](*sys.argv[2:]))
