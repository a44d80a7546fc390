"""The writer that test_kill.py kills with SIGKILL.

Run as `python3 kill_child.py EXTENSION DATABASE SEED`. DATABASE holds the
persistmap table kv (its store and sync mode are in the table's
definition). The child reads how far the store got ('last'), prints
"ready LAST", then commits transactions LAST+1, LAST+2, ... for ever,
writing the id of each on standard output (unbuffered) as soon as its
COMMIT returned: those are the acknowledged commits the parent checks.

Transaction t has a content fixed by t alone (see expected()), so the
parent can compute the exact table after any prefix of transactions: it
inserts rows r:t:0.. (values of every type, 0 bytes to 20 KB), overwrites
hot:(t mod 7), inserts tmp:t and deletes tmp:(t-3), and sets last = t.
Between them the child also commits work that must leave no trace: a
savepoint rolled back inside a transaction, and whole transactions rolled
back. Now and then it compacts the store or syncs it, so that kills land in
those too.
"""
import os
import random
import sqlite3
import struct
import sys
import zlib

HOT = 7       # hot:0..6, overwritten
WINDOW = 3    # tmp:t lives for this many transactions


def _h(*parts):
    return zlib.crc32(repr(parts).encode())


def rows_of(t):
    """The rows that transaction t inserts: [(key, value)]."""
    out = []
    for i in range(1 + _h(t) % 5):
        h = _h(t, i)
        kind = h % 6
        if kind == 0:
            v = t * 1000 + i
        elif kind == 1:
            v = struct.unpack("<d", struct.pack("<Q", (h << 20) ^ t))[0]
            if v != v:          # a NaN would not compare equal: use a plain real
                v = t + 0.5
        elif kind == 2:
            v = None
        else:
            n = (h >> 8) % 3000 if h % 23 else 20000
            unit = f"<{t}.{i}>".encode()
            data = (unit * (n // len(unit) + 1))[:n]
            v = data.decode() if kind == 3 else data
        out.append((f"r:{t}:{i}", v))
    return out


def expected(last):
    """The whole table after transactions 1..last: {key: value}."""
    want = {}
    for t in range(1, last + 1):
        want.update(rows_of(t))
        want[f"hot:{t % HOT}"] = t
    for t in range(max(1, last - WINDOW + 1), last + 1):
        want[f"tmp:{t}"] = t
    if last:
        want["last"] = last
    return want


def transaction(con, t, rnd):
    con.execute("BEGIN")
    rows = rows_of(t)
    if rnd.random() < 0.5:
        con.executemany("INSERT INTO kv VALUES (?, ?)", rows)
    else:
        con.execute("INSERT INTO kv VALUES " + ", ".join(["(?, ?)"] * len(rows)),
                    [x for row in rows for x in row])
    if rnd.random() < 0.3:
        con.execute("SAVEPOINT junk")
        con.execute("INSERT INTO kv VALUES (?, ?)", (f"junk:{t}", os.urandom(100)))
        con.execute("DELETE FROM kv WHERE key = ?", (f"r:{t}:0",))
        con.execute("ROLLBACK TO junk")
        con.execute("RELEASE junk")
    con.execute("INSERT OR REPLACE INTO kv VALUES (?, ?)", (f"hot:{t % HOT}", t))
    con.execute("INSERT INTO kv VALUES (?, ?)", (f"tmp:{t}", t))
    con.execute("DELETE FROM kv WHERE key = ?", (f"tmp:{t - WINDOW}",))
    if t == 1:
        con.execute("INSERT INTO kv VALUES ('last', 1)")
    else:
        con.execute("UPDATE kv SET value = ? WHERE key = 'last'", (t,))
    con.execute("COMMIT")


def main():
    ext, database, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
    rnd = random.Random(seed)
    con = sqlite3.connect(database, isolation_level=None, timeout=30)
    con.enable_load_extension(True)
    con.load_extension(ext)
    con.enable_load_extension(False)
    row = con.execute("SELECT value FROM kv WHERE key = 'last'").fetchone()
    t = row[0] if row else 0
    os.write(1, f"ready {t}\n".encode())
    while True:
        r = rnd.random()
        if r < 0.05:
            con.execute("BEGIN")
            con.execute("INSERT INTO kv VALUES (?, ?)", (f"junk:{t}", b"x" * rnd.randrange(5000)))
            con.execute("UPDATE kv SET value = -1 WHERE key = 'last'")
            con.execute("ROLLBACK")
        elif r < 0.07:
            con.execute("SELECT persistmap_shrink('kv')").fetchone()
        elif r < 0.08:
            con.execute("SELECT persistmap_sync('kv')").fetchone()
        t += 1
        transaction(con, t, rnd)
        os.write(1, f"{t}\n".encode())


if __name__ == "__main__":
    main()
