"""A table's life: create, adopt, reopen, rename, drop, damage and recovery."""
import json
import os
import sqlite3

import pytest

from conftest import connect, error_of, errname, stats


def count(con, table="kv"):
    return con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def test_reopen_after_close(tmp):
    con = connect(str(tmp / "test.db"))
    con.execute("CREATE VIRTUAL TABLE kv USING persistmap(sync='full')")
    con.executemany("INSERT INTO kv VALUES (?, ?)", [(i, str(i)) for i in range(1000)])
    con.execute("DELETE FROM kv WHERE key % 3 = 0")
    con.close()
    for _ in range(2):
        con = connect(str(tmp / "test.db"))
        assert count(con) == 666
        assert con.execute("SELECT value FROM kv WHERE key = 998").fetchone() == ("998",)
        con.execute("INSERT INTO kv VALUES ('more', 1)")
        con.execute("DELETE FROM kv WHERE key = 'more'")
        con.close()


def test_drop_deletes_the_store_this_table_created(kv, tmp):
    kv.execute("INSERT INTO kv VALUES (1, 1)")
    assert (tmp / "test.db-kv.pmap").is_dir()
    kv.execute("DROP TABLE kv")
    assert not (tmp / "test.db-kv.pmap").exists()
    assert sorted(os.listdir(tmp)) == ["test.db"]


def test_create_adopts_an_existing_store_and_drop_then_detaches(kv, tmp):
    kv.execute("INSERT INTO kv VALUES ('a', 1)")
    kv.execute("CREATE VIRTUAL TABLE other USING persistmap(path='test.db-kv.pmap')")
    assert kv.execute("SELECT value FROM other WHERE key = 'a'").fetchone() == (1,)
    kv.execute("DROP TABLE other")                      # not its creator: detaches
    assert kv.execute("SELECT value FROM kv WHERE key = 'a'").fetchone() == (1,)
    kv.execute("DROP TABLE kv")                         # the creator: deletes
    assert not (tmp / "test.db-kv.pmap").exists()


def test_drop_detaches_while_another_database_uses_the_store(kv, tmp):
    kv.execute("INSERT INTO kv VALUES ('a', 1)")
    other = connect(":memory:")
    other.execute(f"CREATE VIRTUAL TABLE temp.t USING persistmap(path='{tmp}/test.db-kv.pmap')")
    assert other.execute("SELECT value FROM t").fetchone() == (1,)
    kv.execute("DROP TABLE kv")
    assert (tmp / "test.db-kv.pmap").is_dir()
    other.execute("INSERT INTO t VALUES ('b', 2)")
    assert count(other, "t") == 2
    other.close()


def test_rename_keeps_the_data_at_the_default_path(kv, tmp):
    kv.execute("INSERT INTO kv VALUES ('a', 1)")
    kv.execute("ALTER TABLE kv RENAME TO renamed")
    assert kv.execute("SELECT value FROM renamed WHERE key = 'a'").fetchone() == (1,)
    kv.execute("INSERT INTO renamed VALUES ('b', 2)")
    kv.close()
    con = connect(str(tmp / "test.db"))
    assert count(con, "renamed") == 2
    con.execute("ALTER TABLE renamed RENAME TO again")
    con.close()
    con = connect(str(tmp / "test.db"))
    assert count(con, "again") == 2
    assert os.path.islink(tmp / "test.db-again.pmap")
    assert not os.path.lexists(tmp / "test.db-renamed.pmap")
    con.execute("ALTER TABLE again RENAME TO kv")       # back to the directory's own name
    assert not os.path.lexists(tmp / "test.db-again.pmap")
    assert count(con, "kv") == 2
    con.execute("ALTER TABLE kv RENAME TO last")
    con.execute("DROP TABLE last")                      # deletes directory and link
    assert sorted(os.listdir(tmp)) == ["test.db"]
    con.close()


def test_rename_with_an_explicit_path_then_drop(db, tmp):
    db.execute("CREATE VIRTUAL TABLE kv USING persistmap(path='data.pmap')")
    db.execute("INSERT INTO kv VALUES ('a', 1)")
    db.execute("ALTER TABLE kv RENAME TO kv2")
    db.close()
    con = connect(str(tmp / "test.db"))
    assert count(con, "kv2") == 1
    con.execute("DROP TABLE kv2")                       # the manifest knows the new name
    assert not (tmp / "data.pmap").exists()
    con.close()


def test_rename_is_refused_with_uncommitted_writes(kv):
    kv.execute("BEGIN")
    kv.execute("INSERT INTO kv VALUES ('a', 1)")
    e = error_of(kv, "ALTER TABLE kv RENAME TO kv2")
    assert str(e) == "persistmap: cannot rename table 'kv' with uncommitted writes; commit first"
    kv.execute("COMMIT")
    kv.execute("ALTER TABLE kv RENAME TO kv2")
    assert count(kv, "kv2") == 1


def test_rename_is_refused_when_the_new_default_path_exists(kv, tmp):
    os.mkdir(tmp / "test.db-taken.pmap")
    e = error_of(kv, "ALTER TABLE kv RENAME TO taken")
    assert "cannot rename table 'kv' to 'taken'" in str(e) and "already exists" in str(e)
    kv.execute("INSERT INTO kv VALUES (1, 1)")


def damage(path, offset_from_end=40):
    """Flip a byte inside the first segment's synced data."""
    seg = sorted(p for p in os.listdir(path) if p.endswith(".log"))[0]
    with open(os.path.join(path, seg), "r+b") as f:
        size = f.seek(0, 2)
        f.seek(size // 2)
        b = f.read(1)
        f.seek(size // 2)
        f.write(bytes([b[0] ^ 0xFF]))
    return seg


def test_a_damaged_store_can_be_checked_recovered_and_dropped(tmp):
    path = str(tmp / "test.db")
    con = connect(path)
    con.execute("CREATE VIRTUAL TABLE kv USING persistmap(sync='full')")
    for i in range(50):
        con.execute("INSERT INTO kv VALUES (?, ?)", (i, "v" * 50))
    con.close()
    seg = damage(str(tmp / "test.db-kv.pmap"))
    con = connect(path)
    e = error_of(con, "SELECT count(*) FROM kv")
    assert errname(e) == "SQLITE_CORRUPT"
    assert str(e).startswith("persistmap: ") and seg in str(e) and "offset" in str(e)
    report = con.execute("SELECT persistmap_check('kv')").fetchone()[0]
    assert report != "ok" and seg in report
    recovered = json.loads(con.execute("SELECT persistmap_recover('kv')").fetchone()[0])
    assert isinstance(recovered, dict)
    n = count(con)
    assert 0 < n < 50
    assert con.execute("SELECT persistmap_check('kv')").fetchone() == ("ok",)
    con.execute("DROP TABLE kv")
    assert not (tmp / "test.db-kv.pmap").exists()
    con.close()


def test_a_missing_store_is_reported_and_the_table_drops(kv, tmp):
    kv.execute("INSERT INTO kv VALUES (1, 1)")
    kv.close()
    for p in os.listdir(tmp / "test.db-kv.pmap"):
        os.remove(tmp / "test.db-kv.pmap" / p)
    os.rmdir(tmp / "test.db-kv.pmap")
    con = connect(str(tmp / "test.db"))
    e = error_of(con, "SELECT * FROM kv")
    assert errname(e) == "SQLITE_CANTOPEN" and str(e).startswith("persistmap: ")
    assert not (tmp / "test.db-kv.pmap").exists()          # connecting created nothing
    con.execute("DROP TABLE kv")
    con.close()


def test_the_extension_stays_loaded(tmp):
    first = connect(str(tmp / "a.db"))
    first.execute("CREATE VIRTUAL TABLE kv USING persistmap()")
    second = connect(str(tmp / "a.db"))
    first.close()
    second.execute("INSERT INTO kv VALUES (1, 1)")
    second.close()
    with open("/proc/self/maps") as f:
        assert "persistmap.so" in f.read()


def test_stats_of_a_fresh_store(kv):
    s = stats(kv)
    assert s["keys"] == 0 and s["readonly"] is False and s["last_error_code"] == "ok"
    kv.execute("INSERT INTO kv VALUES (1, 'x')")
    assert stats(kv)["keys"] == 1
