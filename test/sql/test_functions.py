"""The SQL functions: persistmap_version, _hash, _sync, _stats, _check,
_recover, _shrink, _last_key, _allow_any_path; naming tables."""
import json
import re
import sqlite3

import pytest

from conftest import connect, error_of, errname, stats

# XXH3-128 of these inputs, canonical (big-endian) form, from libxxhash.
XXH3_128 = {
    "": "99AA06D3014798D86001C324468D497F",
    "abc": "06B05AB6733A618578AF5F94892F3950",
    "hello world": "DF8D09E93F874900A99B8775CC15B6C7",
}

# Every field of pm_stats (store.h), as persistmap_stats names them.
STATS_FIELDS = [
    "path", "store_id", "sync", "readonly", "keys", "live_bytes", "log_bytes", "segments",
    "records", "unsynced_bytes", "last_seq", "commits", "fsyncs", "dropped_bytes",
    "index_bytes", "index_versions", "cache_capacity", "cache_bytes", "cache_entries",
    "cache_hits", "cache_misses", "cache_evictions", "catchups", "shrinks",
    "shrink_reclaimed_bytes", "shrink_last_ms", "shrink_last_duration_us", "next_int_key",
    "shrink_running", "last_error_code", "last_error",
]


def one(con, sql, params=()):
    return con.execute(sql, params).fetchone()[0]


def test_version(db):
    assert re.fullmatch(r"\d+\.\d+\.\d+", one(db, "SELECT persistmap_version()"))


@pytest.mark.parametrize("text,digest", XXH3_128.items())
def test_hash_is_xxh3_128(db, text, digest):
    assert one(db, "SELECT hex(persistmap_hash(?))", (text,)) == digest
    assert one(db, "SELECT hex(persistmap_hash(CAST(? AS BLOB)))", (text,)) == digest


def test_hash_of_other_types(db):
    assert one(db, "SELECT hex(persistmap_hash(x'00ff'))") == "84750893E8184AA2A99B043A346C8BF3"
    assert one(db, "SELECT persistmap_hash(1) = persistmap_hash('1')") == 1
    assert one(db, "SELECT persistmap_hash(NULL)") is None
    assert one(db, "SELECT typeof(persistmap_hash('a')) || length(persistmap_hash('a'))") == "blob16"
    big = bytes(range(256)) * 4096
    assert one(db, "SELECT persistmap_hash(?) = persistmap_hash(?)", (big, big)) == 1


def test_version_and_hash_are_deterministic_and_innocuous(db):
    # DETERMINISTIC: usable in an index on an expression.
    db.execute("CREATE TABLE files(content BLOB)")
    db.execute("CREATE INDEX by_hash ON files(persistmap_hash(content))")
    db.execute("INSERT INTO files VALUES (x'0102')")
    assert one(db, "SELECT count(*) FROM files WHERE persistmap_hash(content) = persistmap_hash(x'0102')") == 1
    # INNOCUOUS: usable from the schema even with trusted_schema off.
    db.execute("PRAGMA trusted_schema = OFF")
    db.execute("CREATE VIEW v AS SELECT persistmap_version() AS v, persistmap_hash('a') AS h")
    assert one(db, "SELECT count(*) FROM v") == 1


def test_sync(kv):
    kv.execute("INSERT INTO kv VALUES (1, 1)")
    assert one(kv, "SELECT persistmap_sync('kv')") == 1
    assert one(kv, "SELECT persistmap_sync('kv', NULL)") == 1
    assert one(kv, "SELECT persistmap_sync('kv', 5000)") == 1
    assert one(kv, "SELECT persistmap_sync('kv', 0)") in (0, 1)
    assert stats(kv)["unsynced_bytes"] == 0 or one(kv, "SELECT persistmap_sync('kv')") == 1


def test_stats_has_every_field(kv, tmp):
    kv.execute("INSERT INTO kv VALUES ('a', 'x'), ('b', 'y')")
    s = stats(kv)
    assert list(s) == STATS_FIELDS
    assert s["keys"] == 2 and s["path"] == str(tmp / "test.db-kv.pmap")
    assert s["sync"] == "normal" and s["readonly"] is False
    assert re.fullmatch(r"[0-9a-f]{32}", s["store_id"])
    assert s["last_error_code"] == "ok" and s["last_error"] == ""
    assert s["next_int_key"] >= 1 and s["last_seq"] >= 2
    assert all(isinstance(s[f], int) and s[f] >= 0 for f in STATS_FIELDS[4:-4] if f != "next_int_key")
    assert one(kv, "SELECT json_extract(persistmap_stats('kv'), '$.keys')") == 2


def test_check(kv):
    kv.executemany("INSERT INTO kv VALUES (?, ?)", [(i, "v" * i) for i in range(100)])
    assert one(kv, "SELECT persistmap_check('kv')") == "ok"


def test_recover_a_healthy_store(kv):
    kv.executemany("INSERT INTO kv VALUES (?, ?)", [(i, i) for i in range(10)])
    report = json.loads(one(kv, "SELECT persistmap_recover('kv')"))
    assert isinstance(report, dict)
    assert one(kv, "SELECT count(*) FROM kv") == 10
    kv.execute("INSERT INTO kv VALUES (10, 10)")
    assert one(kv, "SELECT count(*) FROM kv") == 11


def test_shrink(kv):
    kv.executemany("INSERT OR REPLACE INTO kv VALUES (?, ?)", [(i % 10, i) for i in range(200)])
    before = json.loads(one(kv, "SELECT persistmap_stats('kv')"))
    summary = json.loads(one(kv, "SELECT persistmap_shrink('kv')"))
    assert set(summary) >= {"segments_rewritten", "segments_written", "records_copied",
                            "bytes_before", "bytes_after", "duration_ms"}
    assert summary["records_copied"] == 10
    after = json.loads(one(kv, "SELECT persistmap_stats('kv')"))
    assert after["shrinks"] == before["shrinks"] + 1
    assert after["log_bytes"] < before["log_bytes"]
    assert sorted(kv.execute("SELECT key, value FROM kv")) == [(i, 190 + i) for i in range(10)]


def test_maintenance_is_refused_inside_the_tables_write_transaction(kv):
    kv.execute("BEGIN")
    kv.execute("INSERT INTO kv VALUES (1, 1)")
    assert str(error_of(kv, "SELECT persistmap_recover('kv')")) == \
        "persistmap: cannot recover 'kv' inside a transaction that writes it"
    assert str(error_of(kv, "SELECT persistmap_shrink('kv')")) == \
        "persistmap: cannot shrink 'kv' inside a transaction that writes it"
    kv.execute("COMMIT")


def test_naming_tables(kv, tmp):
    kv.execute("INSERT INTO kv VALUES (1, 1)")
    kv.execute("CREATE TABLE plain(x)")
    kv.execute('CREATE VIRTUAL TABLE "odd name" USING persistmap()')
    kv.execute(f"CREATE VIRTUAL TABLE temp.kv USING persistmap(path='{tmp}/temp.pmap')")
    kv.execute(f"ATTACH '{tmp}/other.db' AS aux")
    kv.execute("CREATE VIRTUAL TABLE aux.kv USING persistmap()")
    kv.execute("INSERT INTO aux.kv VALUES (1, 1), (2, 2)")
    keys = lambda name: json.loads(one(kv, "SELECT persistmap_stats(?)", (name,)))["keys"]
    assert keys("main.kv") == 1
    assert keys("kv") == 0                      # temp comes first, as in SQL
    assert keys("temp.kv") == 0
    assert keys("aux.kv") == 2
    assert keys("odd name") == 0 and keys("MAIN.KV") == 1
    for name, message in [("nope", "persistmap: no such table: nope"),
                          ("aux.nope", "persistmap: no such table: aux.nope"),
                          ("plain", "persistmap: 'plain' is not a persistmap table")]:
        assert str(error_of(kv, "SELECT persistmap_stats(?)", (name,))) == message
    assert str(error_of(kv, "SELECT persistmap_sync(NULL)")) == "persistmap: a table name is needed"


def test_functions_work_on_a_table_not_used_yet(kv, tmp):
    kv.execute("INSERT INTO kv VALUES (1, 1)")
    fresh = connect(str(tmp / "test.db"))
    assert json.loads(one(fresh, "SELECT persistmap_stats('kv')"))["keys"] == 1
    fresh.close()
    fresh = connect(str(tmp / "test.db"))
    assert one(fresh, "SELECT persistmap_check('kv')") == "ok"
    fresh.close()
    fresh = connect(str(tmp / "test.db"))
    assert one(fresh, "SELECT persistmap_sync('kv', 1000)") == 1
    fresh.close()


def test_last_key_without_inserts(db):
    assert one(db, "SELECT persistmap_last_key()") is None


def test_wrong_argument_counts(db):
    for sql in ["SELECT persistmap_version(1)", "SELECT persistmap_hash()",
                "SELECT persistmap_sync()", "SELECT persistmap_sync('a', 1, 2)",
                "SELECT persistmap_stats()", "SELECT persistmap_allow_any_path()"]:
        assert "wrong number of arguments" in str(error_of(db, sql))
