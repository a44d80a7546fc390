"""Keys and values: identity, types kept exactly, reopen, limits."""
import math
import os
import struct

import pytest

from conftest import connect, error_of, errname


def reopen(tmp, con):
    con.close()
    return connect(str(tmp / "test.db"))


VALUES = [
    None, 0, 1, -1, 2**63 - 1, -(2**63), 1.5, -0.0, 0.0, 1e308, 5e-324, float("inf"),
    float("-inf"), 3.0, "", "text", "é\u00e9\U0001F600", "a\x00b", b"", b"\x00", b"\xff" * 3,
]


def bits(v):
    """A value with its type, and a float's exact bits."""
    if isinstance(v, float):
        return ("real", struct.pack("<d", v))
    return (type(v).__name__, v)


def test_every_type_round_trips_exactly_and_after_reopen(kv, tmp):
    for i, v in enumerate(VALUES):
        kv.execute("INSERT INTO kv VALUES (?, ?)", (i, v))
    con = kv
    for _ in range(2):
        got = con.execute("SELECT value, typeof(value) FROM kv ORDER BY key").fetchall()
        assert [bits(v) for v, _ in got] == [bits(v) for v in VALUES]
        types = [t for _, t in got]
        assert types[VALUES.index("")] == "text" and types[VALUES.index(b"")] == "blob"
        assert types[0] == "null"
        con = reopen(tmp, con)
    con.close()


def test_negative_zero_keeps_its_sign(kv):
    kv.execute("INSERT INTO kv VALUES ('z', -0.0)")
    v = kv.execute("SELECT value FROM kv WHERE key = 'z'").fetchone()[0]
    assert math.copysign(1, v) == -1
    assert kv.execute("SELECT typeof(value) FROM kv").fetchone() == ("real",)


def test_large_blobs_and_text(kv, tmp):
    big = os.urandom(5 * 1024 * 1024)
    text = "x" * (3 * 1024 * 1024)
    kv.execute("INSERT INTO kv VALUES ('big', ?), ('text', ?)", (big, text))
    assert kv.execute("SELECT value FROM kv WHERE key = 'big'").fetchone()[0] == big
    con = reopen(tmp, kv)
    assert con.execute("SELECT value FROM kv WHERE key = 'big'").fetchone()[0] == big
    assert con.execute("SELECT value FROM kv WHERE key = 'text'").fetchone()[0] == text
    assert con.execute("SELECT length(value) FROM kv WHERE key = 'big'").fetchone()[0] == len(big)
    con.close()


def test_integer_and_real_with_the_same_value_are_one_key(kv):
    kv.execute("INSERT INTO kv VALUES (1, 'int')")
    e = error_of(kv, "INSERT INTO kv VALUES (1.0, 'real')")
    assert errname(e) == "SQLITE_CONSTRAINT"
    assert str(e) == "persistmap: key 1 already exists in 'kv'"
    kv.execute("INSERT INTO kv VALUES ('1', 'text')")
    kv.execute("INSERT INTO kv VALUES (x'31', 'blob')")
    kv.execute("INSERT INTO kv VALUES (-0.0, 'zero')")
    assert kv.execute("SELECT value FROM kv WHERE key = 0").fetchone() == ("zero",)
    assert kv.execute("SELECT value FROM kv WHERE key = 1.0").fetchone() == ("int",)
    assert kv.execute("SELECT value FROM kv WHERE key = '1'").fetchone() == ("text",)
    assert kv.execute("SELECT value FROM kv WHERE key = x'31'").fetchone() == ("blob",)
    assert kv.execute("SELECT count(*) FROM kv").fetchone() == (4,)
    # The key comes back as an integer whichever form wrote it.
    kv.execute("INSERT OR REPLACE INTO kv VALUES (2.0, 'two')")
    assert kv.execute("SELECT key, typeof(key) FROM kv WHERE key = 2").fetchone() == (2, "integer")


def test_real_keys_that_are_not_integers(kv):
    kv.execute("INSERT INTO kv VALUES (1.5, 'a'), (9223372036854775808.0, 'big'), (-1e300, 'tiny')")
    assert kv.execute("SELECT key FROM kv WHERE key = 1.5").fetchone() == (1.5,)
    assert kv.execute("SELECT typeof(key) FROM kv WHERE key = ?", (2.0**63,)).fetchone() == ("real",)
    assert kv.execute("SELECT value FROM kv WHERE key = -1e300").fetchone() == ("tiny",)


def test_null_key_assigns_the_next_integer_never_reused(kv, tmp):
    kv.execute("INSERT INTO kv(value) VALUES ('a')")
    assert kv.execute("SELECT persistmap_last_key()").fetchone() == (1,)
    kv.execute("INSERT INTO kv VALUES (NULL, 'b'), (NULL, 'c')")
    assert kv.execute("SELECT persistmap_last_key()").fetchone() == (3,)
    kv.execute("INSERT INTO kv VALUES (10, 'explicit')")
    kv.execute("INSERT INTO kv(value) VALUES ('d')")
    assert kv.execute("SELECT persistmap_last_key()").fetchone() == (11,)
    kv.execute("DELETE FROM kv WHERE key >= 10")
    kv.execute("INSERT INTO kv(value) VALUES ('e')")
    assert kv.execute("SELECT persistmap_last_key()").fetchone() == (12,)
    kv.execute("DELETE FROM kv WHERE key = 12")
    con = reopen(tmp, kv)
    assert con.execute("SELECT persistmap_last_key()").fetchone() == (None,)
    con.execute("INSERT INTO kv(value) VALUES ('f')")
    assert con.execute("SELECT persistmap_last_key()").fetchone() == (13,)
    assert con.execute("SELECT key, value FROM kv ORDER BY key").fetchall() == [
        (1, "a"), (2, "b"), (3, "c"), (13, "f")]
    con.close()


def test_last_key_is_per_connection(kv, tmp):
    other = connect(str(tmp / "test.db"))
    kv.execute("INSERT INTO kv(value) VALUES ('a')")
    assert other.execute("SELECT persistmap_last_key()").fetchone() == (None,)
    other.execute("INSERT INTO kv(value) VALUES ('b')")
    assert other.execute("SELECT persistmap_last_key()").fetchone() == (2,)
    assert kv.execute("SELECT persistmap_last_key()").fetchone() == (1,)
    other.close()


def test_null_key_is_refused_elsewhere(kv):
    kv.execute("INSERT INTO kv VALUES ('a', 1)")
    e = error_of(kv, "UPDATE kv SET key = NULL WHERE key = 'a'")
    assert errname(e) == "SQLITE_CONSTRAINT"
    assert str(e) == "persistmap: key cannot be NULL in 'kv'"
    assert kv.execute("SELECT count(*) FROM kv WHERE key IS NULL").fetchone() == (0,)
    assert kv.execute("SELECT count(*) FROM kv WHERE key = NULL").fetchone() == (0,)


def test_seq_is_read_only_and_increases(kv):
    kv.execute("INSERT INTO kv VALUES ('a', 1), ('b', 2)")
    s1 = dict(kv.execute("SELECT key, seq FROM kv").fetchall())
    assert s1["a"] < s1["b"]
    kv.execute("UPDATE kv SET value = 3 WHERE key = 'a'")
    s2 = dict(kv.execute("SELECT key, seq FROM kv").fetchall())
    assert s2["a"] > s1["b"] and s2["b"] == s1["b"]
    for sql in ["INSERT INTO kv(key, value, seq) VALUES ('c', 1, 99)",
                "UPDATE kv SET seq = 1 WHERE key = 'a'",
                "UPDATE kv SET seq = seq + 1"]:
        e = error_of(kv, sql)
        assert str(e) == "persistmap: seq is read-only: it is set by every write to 'kv'"
    assert kv.execute("SELECT * FROM kv").fetchall() == [("b", 2), ("a", 3)]
    # seq is hidden: SELECT * shows key and value only.
    assert [d[0] for d in kv.execute("SELECT * FROM kv").description] == ["key", "value"]


def test_key_too_big(kv):
    e = error_of(kv, "INSERT INTO kv VALUES (zeroblob(70000), 1)")
    assert errname(e) == "SQLITE_TOOBIG"
    assert str(e).startswith("persistmap: ")
    kv.execute("INSERT INTO kv VALUES (zeroblob(65536), 1)")
    assert kv.execute("SELECT count(*) FROM kv").fetchone() == (1,)


def test_utf16_database(tmp):
    store = str(tmp / "shared.pmap")
    con = connect(str(tmp / "u16.db"))
    con.execute("PRAGMA encoding = 'UTF-16le'")
    con.execute("CREATE VIRTUAL TABLE kv USING persistmap(path=?)".replace("?", repr(store)))
    con.execute("INSERT INTO kv VALUES ('clé', 'valeur é')")
    con.execute("INSERT INTO kv VALUES (?, ?)", ("k2", "zwei"))
    con.execute("UPDATE kv SET value = 'deux' WHERE key = 'k2'")
    assert con.execute("SELECT key, value FROM kv WHERE key = 'clé'").fetchone() == ("clé", "valeur é")
    assert con.execute("SELECT key FROM kv WHERE key GLOB 'cl*'").fetchone() == ("clé",)
    assert con.execute("SELECT value FROM kv WHERE key >= 'k' AND key < 'l'").fetchall() == [("deux",)]
    con.close()
    # The store holds UTF-8 whatever the database's encoding: a UTF-8
    # database on the same store reads the same text, byte for byte.
    con = connect(str(tmp / "u8.db"))
    con.execute("CREATE VIRTUAL TABLE kv USING persistmap(path=?)".replace("?", repr(store)))
    assert con.execute("SELECT hex(key), hex(value) FROM kv ORDER BY key").fetchall() == [
        ("636CC3A9", "76616C65757220C3A9"), ("6B32", "64657578")]
    con.execute("DELETE FROM kv WHERE key = ?", ("clé",))
    assert con.execute("SELECT key FROM kv").fetchall() == [("k2",)]
    con.close()
