"""Query plans: each rule of xBestIndex checked against an ordinary table.

The same rows go into a persistmap table `kv` and into an ordinary table
`t(key PRIMARY KEY, value, seq) WITHOUT ROWID` (seq copied from kv), and the
same statements run on both: results must agree (as multisets, or in order
when the statement orders by seq). EXPLAIN QUERY PLAN shows which plan ran.
"""
import sqlite3

import pytest

from conftest import connect, plan, stats

KEYS = [
    -5, 0, 1, 2, 3, 7, 12, 19, 100, 123, 2**62, -(2**63),
    1.5, -0.5, 2.25, 1e20, 8.0,
    "", "a", "ab", "abc", "Ab", "B", "b", "b/1", "b/2", "1", "12", "1a",
    "artist/daft_punk", "artist/air", "album/discovery", "é", "éa", "a_b", "a%b", "[x]",
    b"", b"\x00", b"ab", b"b", b"\xff\x00",
]


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    """kv and t filled with the same rows (keys of every type)."""
    path = tmp_path_factory.mktemp("queries") / "q.db"
    con = connect(str(path))
    con.execute("CREATE VIRTUAL TABLE kv USING persistmap()")
    con.execute("CREATE TABLE t(key PRIMARY KEY, value, seq) WITHOUT ROWID")
    for i, k in enumerate(KEYS):
        con.execute("INSERT INTO kv VALUES (?, ?)", (k, f"v{i}" if i % 3 else i))
    # Rewrite a few rows so seq order differs from insertion order.
    con.execute("UPDATE kv SET value = 'again' WHERE key IN (1, 'a', x'00')")
    con.execute("INSERT INTO t SELECT key, value, seq FROM kv")
    yield con
    con.close()


def rows(con, sql, params=()):
    return con.execute(sql, params).fetchall()


def same(con, sql, params=(), ordered=False):
    """Run sql on kv and on t (the text says {t}); results must agree."""
    got = rows(con, sql.format(t="kv"), params)
    want = rows(con, sql.format(t="t"), params)
    if not ordered:
        got, want = sorted(map(repr, got)), sorted(map(repr, want))
    assert got == want, sql
    return got


# Every statement below runs on both tables; those marked ordered compare order.
STATEMENTS = [
    ("SELECT key, value FROM {t} WHERE key = ?", [("a",)]),
    ("SELECT key, value FROM {t} WHERE key = ?", [(1,)]),
    ("SELECT key, value FROM {t} WHERE key = ?", [(1.0,)]),
    ("SELECT key, value FROM {t} WHERE key = ?", [("1",)]),
    ("SELECT key, value FROM {t} WHERE key = ?", [(8,)]),      # inserted as 8.0
    ("SELECT key, value FROM {t} WHERE key = ?", [(1.5,)]),
    ("SELECT key, value FROM {t} WHERE key = ?", [(b"ab",)]),
    ("SELECT key, value FROM {t} WHERE key = ?", [(b"",)]),
    ("SELECT key, value FROM {t} WHERE key = ?", [("",)]),
    ("SELECT key, value FROM {t} WHERE key = ?", [(None,)]),
    ("SELECT key, value FROM {t} WHERE key = ?", [(-0.0,)]),
    ("SELECT key, value FROM {t} WHERE key = ?", [(2**62,)]),
    ("SELECT key FROM {t} WHERE key = 'missing'", [()]),
    ("SELECT key FROM {t} WHERE key IN ('a', 'b', 12, 1.5, x'6162', 'zz', NULL)", [()]),
    ("SELECT key FROM {t} WHERE key IN (1, 1.0, '1')", [()]),
    ("SELECT key FROM {t} WHERE key IN (SELECT key FROM t WHERE typeof(key) = 'text')", [()]),
    ("SELECT key FROM {t} WHERE key = 'a' COLLATE NOCASE", [()]),
    ("SELECT key FROM {t} WHERE key IN ('A', 'b') AND key = 'b'", [()]),
    ("SELECT key FROM {t} WHERE key GLOB ?", [("a*",), ("A*",), ("1*",), ("*",), ("b/*",),
                                              ("é*",), ("[ab]*",), ("a?",), ("",), (None,),
                                              ("artist/*",), ("1",), ("a_*",)]),
    ("SELECT key FROM {t} WHERE key LIKE ?", [("a%",), ("A%",), ("1%",), ("%",), ("a_",),
                                              ("É%",), ("b/%",), ("ARTIST/%",), ("",), (None,),
                                              ("a%b",), ("12",)]),
    ("SELECT key FROM {t} WHERE key > ?", [("a",), (2,), (2.5,), (b"a",), ("",), (None,)]),
    ("SELECT key FROM {t} WHERE key >= ? AND key < ?", [("a", "b"), (0, 10), (1.5, "a"), ("b", b"")]),
    ("SELECT key FROM {t} WHERE key BETWEEN 'a' AND 'b'", [()]),
    ("SELECT key FROM {t} WHERE key <= 3 AND key > -1", [()]),
    ("SELECT key FROM {t} WHERE key < x'00'", [()]),
    ("SELECT key FROM {t} WHERE key > 'a' COLLATE NOCASE", [()]),
    ("SELECT key FROM {t} WHERE key GLOB 'a*' AND key > 'ab'", [()]),
    ("SELECT key FROM {t} WHERE key LIKE 'b%' AND key < 'b/2'", [()]),
    ("SELECT key FROM {t} WHERE key GLOB 'a*' AND value = 'again'", [()]),
    ("SELECT count(*), sum(length(value)) FROM {t} WHERE key LIKE 'a%'", [()]),
    ("SELECT key, seq FROM {t} WHERE seq > ?", [(10,), (10.5,), ("x",), (None,), (-1,)]),
    ("SELECT key, seq FROM {t} WHERE seq >= ? AND seq <= ?", [(5, 9), (9, 5), (4.5, 8.5)]),
    ("SELECT key, seq FROM {t} WHERE seq < ?", [(3,), (3.5,), ("x",), (0,)]),
    ("SELECT key, seq FROM {t} WHERE seq = ?", [(5,), (5.5,), ("5",)]),
    ("SELECT key, seq FROM {t} WHERE seq IN (3, 7, 8)", [()]),
    ("SELECT key, value FROM {t} WHERE key = 'a' AND seq > 0", [()]),
]

ORDERED = [
    "SELECT key, seq FROM {t} ORDER BY seq",
    "SELECT key, seq FROM {t} ORDER BY seq DESC",
    "SELECT key FROM {t} ORDER BY seq LIMIT 3",
    "SELECT key FROM {t} ORDER BY seq DESC LIMIT 3 OFFSET 2",
    "SELECT key FROM {t} ORDER BY seq LIMIT 2 OFFSET 100",
    "SELECT key FROM {t} ORDER BY seq LIMIT -1 OFFSET 40",
    "SELECT key FROM {t} ORDER BY seq LIMIT 0",
    "SELECT key FROM {t} WHERE seq > 20 ORDER BY seq LIMIT 2",
    "SELECT key FROM {t} WHERE seq >= 20 ORDER BY seq DESC LIMIT 2 OFFSET 1",
    "SELECT key FROM {t} WHERE key GLOB 'a*' ORDER BY seq",
    "SELECT key FROM {t} WHERE key LIKE 'A%' ORDER BY seq DESC LIMIT 2",
    "SELECT key FROM {t} WHERE key > 'a' ORDER BY seq LIMIT 3 OFFSET 1",
    "SELECT key, value FROM {t} ORDER BY seq, key",
    "SELECT key FROM {t} WHERE key = 'a' ORDER BY seq",
]


@pytest.mark.parametrize("sql,params", [(s, p) for s, ps in STATEMENTS for p in ps])
def test_same_rows_as_an_ordinary_table(both, sql, params):
    same(both, sql, params)


@pytest.mark.parametrize("sql", ORDERED)
def test_same_order_as_an_ordinary_table(both, sql):
    same(both, sql, ordered=True)


def test_limit_without_order_returns_that_many(both):
    assert len(rows(both, "SELECT key FROM kv LIMIT 5 OFFSET 3")) == 5
    assert len(rows(both, "SELECT key FROM kv WHERE key GLOB 'a*' LIMIT 2")) == 2


def test_join_uses_the_hash_lookup(both):
    both.execute("CREATE TEMP TABLE wanted(k)")
    both.executemany("INSERT INTO wanted VALUES (?)", [("a",), (12,), ("zz",), (1.5,)])
    sql = "SELECT w.k, {t}.value FROM wanted w JOIN {t} ON {t}.key = w.k"
    same(both, sql)
    p = plan(both, sql.format(t="kv"))
    assert "SCAN w" in p and "kv VIRTUAL TABLE INDEX" in p and ":lookup" in p
    # Written the other way round, the planner still puts kv inside.
    p = plan(both, "SELECT * FROM kv, wanted w WHERE kv.key = w.k")
    assert p.index("SCAN w") < p.index(":lookup")
    both.execute("DROP TABLE wanted")


@pytest.mark.parametrize("sql,expect,absent", [
    ("SELECT value FROM kv WHERE key = 'a'", "lookup", ["USE TEMP"]),
    ("SELECT key FROM kv WHERE key = 'a'", "lookup keys-only", []),
    ("SELECT * FROM kv WHERE key IN ('a', 'b')", "lookup-in", []),
    ("SELECT key FROM kv WHERE key GLOB 'artist/*'", "scan glob keys-only", ["key>"]),
    ("SELECT key FROM kv WHERE key LIKE 'artist/%'", "scan like keys-only", []),
    ("SELECT key FROM kv WHERE key >= 'a' AND key < 'b'", "scan key>= key< keys-only", []),
    ("SELECT * FROM kv ORDER BY seq", "scan", ["USE TEMP B-TREE"]),
    ("SELECT * FROM kv ORDER BY seq DESC", "scan desc", ["USE TEMP B-TREE"]),
    ("SELECT key, value FROM kv ORDER BY seq LIMIT 1", "scan limit", ["USE TEMP B-TREE"]),
    ("SELECT * FROM kv ORDER BY seq LIMIT 5 OFFSET 10", "scan limit offset", []),
    ("SELECT * FROM kv WHERE seq > 5 ORDER BY seq LIMIT 5", "scan seq> limit", []),
    ("SELECT * FROM kv WHERE seq >= 5 AND seq < 9", "scan seq>= seq<", []),
    ("SELECT * FROM kv ORDER BY key", "scan", []),
    ("SELECT * FROM kv WHERE key = 'a' COLLATE NOCASE", "scan", ["lookup"]),
])
def test_explain_query_plan(both, sql, expect, absent):
    p = plan(both, sql)
    assert ":" + expect in p, p
    for word in absent:
        assert word not in p, p


@pytest.mark.parametrize("sql", [
    "SELECT * FROM kv WHERE key GLOB 'a*' LIMIT 2",          # GLOB is re-checked by SQLite
    "SELECT * FROM kv WHERE key > 'a' LIMIT 2 OFFSET 1",     # so are key ranges
    "SELECT * FROM kv WHERE value = 1 LIMIT 2",              # a constraint left to SQLite
    "SELECT * FROM kv ORDER BY key LIMIT 2",                 # a sort comes first
])
def test_limit_is_not_consumed_when_sqlite_still_filters_or_sorts(both, sql):
    p = plan(both, sql)
    assert "limit" not in p.split("INDEX")[1] and "offset" not in p.split("INDEX")[1], p


def test_in_is_one_call_with_every_value(both):
    if sqlite3.sqlite_version_info < (3, 38, 0):
        pytest.skip("sqlite3_vtab_in needs SQLite 3.38")
    assert ":lookup-in" in plan(both, "SELECT * FROM kv WHERE key IN (1, 2, 3)")


def bytes_read():
    """Bytes this process has read from files so far (read and pread),
    counting about 100 of its own reading /proc/self/io."""
    with open("/proc/self/io") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("rchar:"))


def test_scans_read_no_value_unless_asked(tmp):
    # No cache, and the table in the temp schema of an in-memory database:
    # every byte this process reads from a file is a value persistmap read.
    con = connect(":memory:")
    con.execute(f"CREATE VIRTUAL TABLE temp.kv USING persistmap(path='{tmp / 'v.pmap'}', cache_size=0)")
    con.executemany("INSERT INTO kv VALUES (?, ?)", [(f"k{i}", "x" * 100) for i in range(50)])

    def reads():
        s = stats(con)
        return s["cache_hits"] + s["cache_misses"]

    before, read0 = reads(), bytes_read()
    con.execute("SELECT key, seq FROM kv").fetchall()
    con.execute("SELECT key FROM kv WHERE key GLOB 'k1*'").fetchall()
    con.execute("SELECT count(*) FROM kv WHERE key = 'k3'").fetchall()
    con.execute("DELETE FROM kv WHERE key LIKE 'k4%'")
    con.execute("UPDATE kv SET value = 'y' WHERE key GLOB 'k3*'")
    assert reads() == before
    assert bytes_read() - read0 < 300        # /proc/self/io alone: no value read
    assert con.execute("SELECT value FROM kv WHERE key GLOB 'k1*'").fetchall() == [("x" * 100,)] * 11
    assert bytes_read() >= read0 + 11 * 100
    # Moving a row to a new key carries its value (read for each row).
    read1 = bytes_read()
    con.execute("UPDATE kv SET key = key || '!' WHERE key GLOB 'k2*'")
    assert bytes_read() >= read1 + 11 * 100
    assert con.execute("SELECT count(*) FROM kv WHERE key GLOB 'k2*!' AND value = ?",
                       ("x" * 100,)).fetchone()[0] == 11
    con.close()
