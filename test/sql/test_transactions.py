"""Transactions: atomic groups, savepoints, isolation, and SQLite's commit protocol."""
import sqlite3
import subprocess
import sys

import pytest

from conftest import EXT, connect, error_of, errname


def keys(con, table="kv"):
    return sorted(r[0] for r in con.execute(f"SELECT key FROM {table}"))


def test_statements_see_their_transactions_writes_and_others_do_not(kv, tmp):
    other = connect(str(tmp / "test.db"))
    kv.execute("BEGIN")
    kv.execute("INSERT INTO kv VALUES ('a', 1)")
    kv.execute("UPDATE kv SET value = value + 1 WHERE key = 'a'")
    kv.execute("UPDATE kv SET value = value + 1 WHERE key = 'a'")
    assert kv.execute("SELECT value FROM kv WHERE key = 'a'").fetchone() == (3,)
    assert kv.execute("SELECT key FROM kv WHERE key GLOB 'a*'").fetchall() == [("a",)]
    assert other.execute("SELECT count(*) FROM kv").fetchone() == (0,)
    kv.execute("COMMIT")
    assert other.execute("SELECT value FROM kv WHERE key = 'a'").fetchone() == (3,)
    other.close()


def test_rollback_discards(kv):
    kv.execute("INSERT INTO kv VALUES ('keep', 1)")
    kv.execute("BEGIN")
    kv.execute("INSERT INTO kv VALUES ('gone', 1)")
    kv.execute("DELETE FROM kv WHERE key = 'keep'")
    kv.execute("ROLLBACK")
    assert keys(kv) == ["keep"]


SAVEPOINTS = [
    "SAVEPOINT s1",                     # outside BEGIN: starts the transaction
    "INSERT INTO {t} VALUES ('a', 1)",
    "SAVEPOINT s2",
    "INSERT INTO {t} VALUES ('b', 2)",
    "SAVEPOINT s3",
    "UPDATE {t} SET value = 20 WHERE key = 'b'",
    "ROLLBACK TO s3",
    "INSERT INTO {t} VALUES ('c', 3)",
    "RELEASE s3",
    "ROLLBACK TO s2",
    "INSERT INTO {t} VALUES ('d', 4)",
    "SAVEPOINT s4",
    "DELETE FROM {t} WHERE key = 'a'",
    "RELEASE s4",
    "RELEASE s1",
    "BEGIN",
    "SAVEPOINT x",
    "INSERT INTO {t} VALUES ('e', 5)",
    "ROLLBACK TO x",
    "INSERT INTO {t} VALUES ('f', 6)",
    "RELEASE x",
    "INSERT INTO {t} VALUES ('g', 7), ('d', 8)",   # fails: only its own rows undone
    "COMMIT",
]


def test_savepoints_behave_as_on_an_ordinary_table(kv):
    kv.execute("CREATE TABLE t(key PRIMARY KEY, value) WITHOUT ROWID")
    for table in ("kv", "t"):
        for sql in SAVEPOINTS:
            try:
                kv.execute(sql.format(t=table))
            except sqlite3.IntegrityError:
                pass
        assert not kv.in_transaction
    assert kv.execute("SELECT key, value FROM kv ORDER BY key").fetchall() == \
        kv.execute("SELECT key, value FROM t ORDER BY key").fetchall() == [("d", 4), ("f", 6)]


@pytest.mark.parametrize("script", [
    ["BEGIN", "INSERT INTO other VALUES (1)", "SAVEPOINT a", "SAVEPOINT b",
     "INSERT INTO {t} VALUES ('x', 1)", "ROLLBACK TO a", "INSERT INTO {t} VALUES ('y', 2)", "COMMIT"],
    ["SAVEPOINT a", "SAVEPOINT b", "SAVEPOINT c", "INSERT INTO {t} VALUES ('x', 1)",
     "RELEASE c", "ROLLBACK TO b", "INSERT INTO {t} VALUES ('y', 2)", "RELEASE a"],
    ["BEGIN", "SAVEPOINT a", "INSERT INTO {t} VALUES ('x', 1)", "RELEASE a", "SAVEPOINT b",
     "INSERT INTO {t} VALUES ('y', 2)", "ROLLBACK TO b", "ROLLBACK TO b", "COMMIT"],
    ["BEGIN", "SAVEPOINT a", "INSERT INTO {t} VALUES ('x', 1)", "ROLLBACK TO a",
     "ROLLBACK TO a", "INSERT INTO {t} VALUES ('z', 3)", "ROLLBACK"],
])
def test_savepoints_opened_before_the_first_write(kv, script):
    """The engine transaction begins at the table's first write; savepoints
    SQLite opened before that must still undo the right writes."""
    kv.execute("CREATE TABLE t(key PRIMARY KEY, value) WITHOUT ROWID")
    kv.execute("CREATE TABLE other(x)")
    for table in ("kv", "t"):
        for sql in script:
            kv.execute(sql.format(t=table))
        assert not kv.in_transaction
    assert kv.execute("SELECT key, value FROM kv ORDER BY key").fetchall() == \
        kv.execute("SELECT key, value FROM t ORDER BY key").fetchall()


def test_failed_multi_row_insert_undoes_only_its_rows(kv):
    kv.execute("BEGIN")
    kv.execute("INSERT INTO kv VALUES ('a', 1)")
    e = error_of(kv, "INSERT INTO kv VALUES ('b', 2), ('c', 3), ('a', 4)")
    assert errname(e) == "SQLITE_CONSTRAINT"
    kv.execute("INSERT INTO kv VALUES ('d', 5)")
    kv.execute("COMMIT")
    assert keys(kv) == ["a", "d"]


def test_python_implicit_transactions(tmp):
    con = connect(str(tmp / "test.db"), autocommit=False)
    con.execute("CREATE VIRTUAL TABLE kv USING persistmap()")
    con.execute("INSERT INTO kv VALUES ('a', 1)")
    con.rollback()
    con.execute("INSERT INTO kv VALUES ('b', 1)")
    con.commit()
    with con:
        con.execute("INSERT INTO kv VALUES ('c', 1)")
    with pytest.raises(sqlite3.IntegrityError):
        with con:
            con.execute("INSERT INTO kv VALUES ('d', 1)")
            con.execute("INSERT INTO kv VALUES ('b', 1)")
    assert keys(con) == ["b", "c"]
    con.close()


def test_two_stores_in_one_transaction(kv):
    kv.execute("CREATE VIRTUAL TABLE kv2 USING persistmap()")
    kv.execute("BEGIN")
    kv.execute("INSERT INTO kv VALUES ('a', 1)")
    kv.execute("INSERT INTO kv2 VALUES ('b', 2)")
    kv.execute("COMMIT")
    kv.execute("BEGIN")
    kv.execute("INSERT INTO kv VALUES ('c', 1)")
    kv.execute("INSERT INTO kv2 VALUES ('d', 2)")
    kv.execute("ROLLBACK")
    assert keys(kv) == ["a"] and keys(kv, "kv2") == ["b"]


def test_a_commit_is_visible_to_the_next_statement_of_every_connection(kv, tmp):
    others = [connect(str(tmp / "test.db")) for _ in range(3)]
    for i, o in enumerate(others):
        o.execute("SELECT count(*) FROM kv").fetchone()
        kv.execute("INSERT INTO kv VALUES (?, ?)", (i, i))
        assert [c.execute("SELECT count(*) FROM kv").fetchone()[0] for c in others] == [i + 1] * 3
    for o in others:
        o.close()


def test_a_scan_sees_one_state_while_others_write(kv, tmp):
    kv.execute("PRAGMA journal_mode = WAL")      # so the reader does not block the writer
    kv.executemany("INSERT INTO kv VALUES (?, ?)", [(i, i) for i in range(100)])
    cur = kv.execute("SELECT key FROM kv")
    first = cur.fetchmany(10)
    writer = connect(str(tmp / "test.db"))
    writer.execute("DELETE FROM kv WHERE key >= 50")
    writer.execute("INSERT INTO kv VALUES (1000, 0)")
    seen = first + cur.fetchall()
    assert sorted(k for (k,) in seen) == list(range(100))
    assert kv.execute("SELECT count(*) FROM kv").fetchone() == (51,)
    writer.close()


def test_drop_inside_a_transaction_is_refused(kv, tmp):
    kv.execute("INSERT INTO kv VALUES ('a', 1)")
    kv.execute("BEGIN")
    kv.execute("INSERT INTO kv VALUES ('b', 2)")
    e = error_of(kv, "DROP TABLE kv")
    # SQLite reports only the code of an xDestroy error (the log has the rest).
    assert errname(e) == "SQLITE_LOCKED" and str(e) == "database table is locked"
    assert kv.in_transaction
    assert keys(kv) == ["a", "b"]
    kv.execute("ROLLBACK")
    kv.execute("SAVEPOINT s")
    assert errname(error_of(kv, "DROP TABLE kv")) == "SQLITE_LOCKED"
    kv.execute("RELEASE s")
    assert keys(kv) == ["a"]
    kv.execute("DROP TABLE kv")
    assert not (tmp / "test.db-kv.pmap").exists()


def test_a_query_reading_a_finished_transaction_stops_with_an_error(kv):
    kv.executemany("INSERT INTO kv VALUES (?, ?)", [(i, i) for i in range(50)])
    kv.execute("BEGIN")
    kv.execute("INSERT INTO kv VALUES (1000, 0)")
    cur = kv.execute("SELECT key FROM kv")
    cur.fetchone()
    kv.execute("COMMIT")
    with pytest.raises(sqlite3.Error, match="the transaction this query read from has ended"):
        cur.fetchall()
    assert kv.execute("SELECT count(*) FROM kv").fetchone() == (51,)


CHECK = r"""
import sqlite3, sys
con = sqlite3.connect(sys.argv[2], isolation_level=None)
con.enable_load_extension(True)
con.load_extension(sys.argv[1])
print(con.execute("SELECT group_concat(key || '=' || value, ',') FROM (SELECT * FROM kv ORDER BY key)").fetchone()[0])
"""


def in_new_process(tmp):
    out = subprocess.run([sys.executable, "-c", CHECK, EXT, str(tmp / "test.db")],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_commit_fails_busy_after_sync_then_retry(tmp):
    """The main database (rollback journal) cannot commit while another
    connection reads it: COMMIT fails with SQLITE_BUSY after persistmap's
    xSync wrote its group. The transaction stays open; the retry writes the
    group again, and the store ends up with the rows once."""
    path = str(tmp / "test.db")
    writer = connect(path, timeout=0)
    writer.execute("CREATE VIRTUAL TABLE kv USING persistmap()")
    writer.execute("CREATE TABLE t(x)")
    writer.execute("INSERT INTO t VALUES (0)")
    reader = connect(path, timeout=0)
    reader.execute("BEGIN")
    reader.execute("SELECT * FROM t").fetchall()          # holds a shared lock
    writer.execute("BEGIN")
    writer.execute("INSERT INTO kv VALUES ('a', 1), ('b', 2)")
    writer.execute("INSERT INTO t VALUES (1)")
    e = error_of(writer, "COMMIT")
    assert errname(e) == "SQLITE_BUSY"
    assert writer.in_transaction
    assert writer.execute("SELECT count(*) FROM kv").fetchone() == (2,)
    assert reader.execute("SELECT count(*) FROM kv").fetchone() == (0,)
    reader.execute("COMMIT")
    writer.execute("COMMIT")
    assert keys(writer) == ["a", "b"]
    assert reader.execute("SELECT count(*) FROM kv").fetchone() == (2,)
    writer.close()
    reader.close()
    assert in_new_process(tmp) == "a=1,b=2"


def test_autocommit_statement_fails_busy_after_sync_and_is_undone(tmp):
    """An autocommit statement (a trigger writes the persistmap table) whose
    commit fails with BUSY is rolled back: xRollback after xSync writes an
    abort record, and the rows never appear, not even after reopening."""
    path = str(tmp / "test.db")
    writer = connect(path, timeout=0)
    writer.execute("CREATE VIRTUAL TABLE kv USING persistmap()")
    writer.execute("CREATE TABLE t(x)")
    writer.execute("CREATE TRIGGER t_to_kv AFTER INSERT ON t BEGIN "
                   "INSERT INTO kv VALUES (new.x, 'job ' || new.x); END")
    writer.execute("INSERT INTO t VALUES (1)")
    reader = connect(path, timeout=0)
    reader.execute("BEGIN")
    reader.execute("SELECT * FROM t").fetchall()
    e = error_of(writer, "INSERT INTO t VALUES (2)")
    assert errname(e) == "SQLITE_BUSY"
    assert not writer.in_transaction
    assert keys(writer) == [1]
    reader.execute("COMMIT")
    writer.execute("INSERT INTO t VALUES (3)")
    assert keys(writer) == [1, 3]
    writer.close()
    reader.close()
    assert in_new_process(tmp) == "1=job 1,3=job 3"


def test_a_writer_waits_for_the_stores_lock_then_fails_busy(tmp):
    """Two databases share a store, so no SQLite lock orders their writers:
    the store's writer lock does, for busy_timeout, then SQLITE_BUSY."""
    store = str(tmp / "shared.pmap")
    a, b = connect(":memory:"), connect(":memory:")
    a.execute(f"CREATE VIRTUAL TABLE temp.kv USING persistmap(path='{store}')")
    b.execute(f"CREATE VIRTUAL TABLE temp.kv USING persistmap(path='{store}', busy_timeout='100ms')")
    a.execute("BEGIN")
    a.execute("INSERT INTO kv VALUES ('a', 1)")
    e = error_of(b, "INSERT INTO kv VALUES ('b', 2)")
    assert errname(e) == "SQLITE_BUSY" and str(e).startswith("persistmap: ")
    assert b.execute("SELECT count(*) FROM kv").fetchone() == (0,)    # readers never wait
    a.execute("COMMIT")
    b.execute("INSERT INTO kv VALUES ('b', 2)")
    assert a.execute("SELECT count(*) FROM kv").fetchone() == (2,)
    a.close()
    b.close()
