"""INSERT, UPDATE and DELETE with every conflict mode, against an ordinary table."""
import os
import sqlite3
import subprocess
import sys
import threading

import pytest

from conftest import EXT, connect, error_of, errname

# Statements run in order on both tables; each outcome (error class or None,
# changes()) and the contents after it must agree.
SCRIPT = [
    "INSERT INTO {t} VALUES ('a', 1), ('b', 2), ('c', 3), ('d', 4), ('e', 5)",
    "INSERT INTO {t} VALUES ('a', 10)",
    "INSERT INTO {t} VALUES ('a', 10), ('z', 26)",
    "INSERT INTO {t} VALUES ('y', 25), ('a', 10)",
    "INSERT OR ABORT INTO {t} VALUES ('y', 25), ('a', 10)",
    "INSERT OR FAIL INTO {t} VALUES ('x', 24), ('a', 10), ('w', 23)",
    "INSERT OR IGNORE INTO {t} VALUES ('v', 22), ('a', 10), ('u', 21)",
    "INSERT OR REPLACE INTO {t} VALUES ('a', 100), ('t', 20)",
    "REPLACE INTO {t} VALUES ('b', 200)",
    "INSERT INTO {t} SELECT key || '!', value FROM {t} WHERE key IN ('c', 'd')",
    "UPDATE {t} SET value = value + 1 WHERE key = 'a'",
    "UPDATE {t} SET value = value * 2 WHERE key IN ('c', 'd', 'nope')",
    "UPDATE {t} SET key = 'b' WHERE key = 'a'",
    "UPDATE OR IGNORE {t} SET key = 'b' WHERE key = 'a'",
    "UPDATE OR FAIL {t} SET key = 'c' WHERE key = 'e'",
    "UPDATE OR REPLACE {t} SET key = 'b' WHERE key = 'a'",
    "UPDATE {t} SET key = 'aa' WHERE key = 'b'",
    "UPDATE {t} SET key = key || '2', value = 0 WHERE key GLOB 'x*'",
    "UPDATE {t} SET key = 'q' WHERE key = 'missing'",
    "UPDATE {t} SET value = NULL WHERE key LIKE 'V%'",
    "DELETE FROM {t} WHERE value > 150",
    "DELETE FROM {t} WHERE key LIKE 'u%' OR key = 't'",
    "DELETE FROM {t} WHERE key = 'nope'",
    "DELETE FROM {t} WHERE value IS NULL",
    "INSERT INTO {t} VALUES (1, 'one'), (2.5, x'00'), (x'01', '')",
    "UPDATE {t} SET key = 1.0 WHERE key = 2.5",
    "UPDATE OR REPLACE {t} SET key = 1.0 WHERE key = 2.5",
    "UPDATE {t} SET key = 3 WHERE key = 1",
    "DELETE FROM {t} WHERE key > 2",
    "DELETE FROM {t}",
]


def outcome(con, sql):
    try:
        con.execute(sql)
        err = None
    except sqlite3.Error as e:
        err = errname(e)
    return err, con.execute("SELECT changes()").fetchone()[0]


def contents(con, table):
    """The rows, with REAL keys holding an integer shown as INTEGER (as
    persistmap stores them: 1.0 and 1 are one key)."""
    def norm(k):
        return int(k) if isinstance(k, float) and k.is_integer() else k
    rows = con.execute(f"SELECT key, value FROM {table}").fetchall()
    return sorted(repr((norm(k), v)) for k, v in rows)


def test_conflict_modes_behave_as_on_an_ordinary_table(kv):
    kv.execute("CREATE TABLE t(key PRIMARY KEY, value) WITHOUT ROWID")
    for sql in SCRIPT:
        got, want = outcome(kv, sql.format(t="kv")), outcome(kv, sql.format(t="t"))
        assert got == want, sql
        assert contents(kv, "kv") == contents(kv, "t"), sql


def test_or_rollback_ends_the_transaction(kv):
    kv.execute("CREATE TABLE t(key PRIMARY KEY, value) WITHOUT ROWID")
    for table in ("kv", "t"):
        kv.execute(f"INSERT INTO {table} VALUES ('a', 1)")
        kv.execute("BEGIN")
        kv.execute(f"INSERT INTO {table} VALUES ('b', 2)")
        e = error_of(kv, f"INSERT OR ROLLBACK INTO {table} VALUES ('c', 3), ('a', 2)")
        assert errname(e) == "SQLITE_CONSTRAINT"
        assert not kv.in_transaction
        assert contents(kv, table) == ["('a', 1)"]
    e = error_of(kv, "INSERT INTO kv VALUES ('a', 2)")
    assert str(e) == "persistmap: key 'a' already exists in 'kv'"


def test_constraint_message_names_the_key(kv):
    kv.execute("INSERT INTO kv VALUES (1, 0), (1.5, 0), ('it''s', 0), (x'00ff', 0), (?, 0)",
               ("k" * 100,))
    for key, shown in [("1", "1"), ("1.5", "1.5"), ("'it''s'", "'it''s'"), ("x'00ff'", "x'00ff'"),
                       ("'" + "k" * 100 + "'", "'" + "k" * 60 + "...'")]:
        e = error_of(kv, f"INSERT INTO kv VALUES ({key}, 1)")
        assert str(e) == f"persistmap: key {shown} already exists in 'kv'"
        assert errname(e) == "SQLITE_CONSTRAINT"


def test_update_moves_the_row_with_its_value(kv):
    kv.execute("INSERT INTO kv VALUES ('old', x'0102')")
    kv.execute("UPDATE kv SET key = 'new' WHERE key = 'old'")
    assert kv.execute("SELECT key, value FROM kv").fetchall() == [("new", b"\x01\x02")]


def test_read_modify_write_is_atomic_across_connections(kv, tmp):
    kv.execute("INSERT INTO kv VALUES ('hits', 0)")
    per_thread, threads = 200, 4

    def work():
        con = connect(str(tmp / "test.db"), timeout=30)
        for _ in range(per_thread):
            con.execute("UPDATE kv SET value = value + 1 WHERE key = 'hits'")
        con.close()

    ts = [threading.Thread(target=work) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert kv.execute("SELECT value FROM kv WHERE key = 'hits'").fetchone() == (per_thread * threads,)


INCREMENTER = r"""
import sqlite3, sys
con = sqlite3.connect(":memory:", isolation_level=None)
con.enable_load_extension(True)
con.load_extension(sys.argv[1])
con.execute("CREATE VIRTUAL TABLE temp.kv USING persistmap(path=%r, busy_timeout='30s')" % sys.argv[2])
for _ in range(int(sys.argv[3])):
    con.execute("UPDATE kv SET value = value + 1 WHERE key = 'hits'")
"""


def test_read_modify_write_is_atomic_across_processes(tmp):
    """Two processes, each with its own in-memory database (so no SQLite
    lock orders them): only persistmap's writer lock keeps the count exact."""
    store = str(tmp / "shared.pmap")
    con = connect(":memory:")
    con.execute(f"CREATE VIRTUAL TABLE temp.kv USING persistmap(path='{store}')")
    con.execute("INSERT INTO kv VALUES ('hits', 0)")
    n = 300
    procs = [subprocess.Popen([sys.executable, "-c", INCREMENTER, EXT, store, str(n)])
             for _ in range(3)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    assert con.execute("SELECT value FROM kv WHERE key = 'hits'").fetchone() == (3 * n,)
    con.close()


def test_a_write_error_leaves_the_row_unchanged(kv):
    kv.execute("INSERT INTO kv VALUES ('a', 1), ('b', 2)")
    e = error_of(kv, "UPDATE kv SET key = zeroblob(70000) WHERE key = 'a'")
    assert errname(e) == "SQLITE_TOOBIG"
    assert contents(kv, "kv") == ["('a', 1)", "('b', 2)"]


def test_update_without_where_and_delete_all(kv):
    kv.executemany("INSERT INTO kv VALUES (?, ?)", [(i, i) for i in range(100)])
    kv.execute("UPDATE kv SET value = value * 10")
    assert kv.execute("SELECT sum(value) FROM kv").fetchone() == (49500,)
    kv.execute("DELETE FROM kv")
    assert kv.execute("SELECT changes()").fetchone() == (100,)
    assert kv.execute("SELECT count(*) FROM kv").fetchone() == (0,)
    assert os.path.isdir(str(kv.execute("PRAGMA database_list").fetchone()[2]) + "-kv.pmap")
