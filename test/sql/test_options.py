"""CREATE VIRTUAL TABLE ... USING persistmap(options): parsing and defaults."""
import os

import pytest

from conftest import connect, error_of, stats


def create(con, args, name="kv"):
    con.execute(f"CREATE VIRTUAL TABLE {name} USING persistmap({args})")


@pytest.mark.parametrize("args", [
    "",
    "path='kv.pmap'",
    "path=\"kv.pmap\"",
    "path=kv.pmap",
    "  path  =  'kv.pmap'  ",
    "PATH='kv.pmap'",
    "cache_size='64MB'", "cache_size=0", "cache_size=-1", "cache_size='512 KB'",
    "cache_size='1GB'", "cache_size='100B'", "cache_size=4096", "cache_size='2 mb'",
    "sync='off'", "sync=normal", "sync='FULL'",
    "sync_interval='1s'", "sync_interval='250ms'", "sync_interval=20",
    "segment_size='1MB'", "segment_size=4096",
    "auto_shrink=2.0", "auto_shrink=0", "auto_shrink=1", "auto_shrink='3.5'",
    "busy_timeout='5s'", "busy_timeout=0", "busy_timeout='100ms'",
    "mode='readwrite'",
    "path='kv.pmap', cache_size='1MB', sync='full', sync_interval='2s', segment_size='8MB', "
    "auto_shrink=4, busy_timeout='10s'",
])
def test_good_options(db, args):
    create(db, args)
    db.execute("INSERT INTO kv VALUES (1, 'one')")
    assert db.execute("SELECT value FROM kv WHERE key = 1").fetchone() == ("one",)


@pytest.mark.parametrize("args,message", [
    ("cache_sise='64MB'", "persistmap: unknown option 'cache_sise'"),
    ("cache_size='64XB'", "persistmap: bad value for cache_size: '64XB'"),
    ("cache_size='-2'", "persistmap: bad value for cache_size: '-2'"),
    ("cache_size='1.5MB'", "persistmap: bad value for cache_size: '1.5MB'"),
    ("cache_size=''", "persistmap: bad value for cache_size: ''"),
    ("cache_size='99999999999GB'", "persistmap: bad value for cache_size: '99999999999GB'"),
    ("sync='sometimes'", "persistmap: bad value for sync: 'sometimes'"),
    ("sync_interval='1h'", "persistmap: bad value for sync_interval: '1h'"),
    ("sync_interval=0", "persistmap: bad value for sync_interval: '0'"),
    ("sync_interval='-1s'", "persistmap: bad value for sync_interval: '-1s'"),
    ("segment_size='1KB'", "persistmap: bad value for segment_size: '1KB'"),
    ("segment_size=-1", "persistmap: bad value for segment_size: '-1'"),
    ("auto_shrink=0.5", "persistmap: bad value for auto_shrink: '0.5'"),
    ("auto_shrink='x'", "persistmap: bad value for auto_shrink: 'x'"),
    ("auto_shrink=-1", "persistmap: bad value for auto_shrink: '-1'"),
    ("busy_timeout='soon'", "persistmap: bad value for busy_timeout: 'soon'"),
    ("mode='writeonly'", "persistmap: bad value for mode: 'writeonly'"),
    ("path=''", "persistmap: bad value for path: ''"),
    ("sync='off', sync='full'", "persistmap: option 'sync' given twice"),
    ("path='a', PATH='b'", "persistmap: option 'path' given twice"),
    ("kv.pmap", "persistmap: expected option=value, got 'kv.pmap'"),
    ("='x'", "persistmap: expected option=value, got '='x''"),
])
def test_bad_options_are_errors_naming_option_and_value(db, tmp, args, message):
    e = error_of(db, f"CREATE VIRTUAL TABLE kv USING persistmap({args})")
    assert str(e) == message
    assert db.execute("SELECT count(*) FROM sqlite_schema WHERE name = 'kv'").fetchone() == (0,)
    assert not [p for p in os.listdir(tmp) if p.endswith(".pmap")]


def test_default_path_is_beside_the_database(db, tmp):
    create(db, "")
    create(db, "", name='"we/ird%"')
    db.execute('INSERT INTO "we/ird%" VALUES (1, 2)')
    assert os.path.isdir(tmp / "test.db-kv.pmap")
    assert os.path.isdir(tmp / "test.db-we%2Fird%25.pmap")
    assert stats(db)["path"] == str(tmp / "test.db-kv.pmap")


def test_relative_path_resolves_against_the_database_directory(tmp):
    os.mkdir(tmp / "sub")
    con = connect(str(tmp / "sub" / "app.db"))
    os.mkdir(tmp / "sub" / "data")
    cwd = os.getcwd()
    try:
        os.chdir(tmp)                 # the current directory plays no part
        create(con, "path='data/kv.pmap'")
    finally:
        os.chdir(cwd)
    assert os.path.isdir(tmp / "sub" / "data" / "kv.pmap")
    assert not os.path.exists(tmp / "data")


def test_options_reach_the_engine(db, tmp):
    create(db, "sync='full', cache_size='1MB'")
    s = stats(db)
    assert s["sync"] == "full"
    assert s["cache_capacity"] == 1 << 20


def test_a_table_in_a_database_without_a_file_needs_a_path():
    con = connect(":memory:")
    e = error_of(con, "CREATE VIRTUAL TABLE kv USING persistmap()")
    assert str(e) == "persistmap: table 'kv' needs a path option: its database has no file"
    e = error_of(con, "CREATE VIRTUAL TABLE temp.kv USING persistmap()")
    assert "needs a path option" in str(e)


def test_create_refuses_a_directory_that_is_not_a_store(db, tmp):
    os.mkdir(tmp / "other")
    (tmp / "other" / "file.txt").write_text("mine")
    e = error_of(db, "CREATE VIRTUAL TABLE kv USING persistmap(path='other')")
    assert str(e).startswith("persistmap: ") and "not a persistmap store" in str(e)
    assert os.listdir(tmp / "other") == ["file.txt"]


def test_bad_options_in_the_schema_are_reported_at_use_and_the_table_drops(tmp):
    """A database file whose schema carries a bad option (as if written by an
    older or foreign version): the table reports the problem when used and
    can still be dropped."""
    path = str(tmp / "bad.db")
    con = connect(path)
    create(con, "sync='off'")
    con.execute("PRAGMA writable_schema = ON")
    con.execute("UPDATE sqlite_schema SET sql = replace(sql, 'sync=''off''', 'sync=''never''') "
                "WHERE name = 'kv'")
    con.close()
    con = connect(path)
    e = error_of(con, "SELECT * FROM kv")
    assert str(e) == "persistmap: bad value for sync: 'never'"
    e = error_of(con, "INSERT INTO kv VALUES (1, 1)")
    assert str(e) == "persistmap: bad value for sync: 'never'"
    e = error_of(con, "SELECT persistmap_stats('kv')")
    assert str(e) == "persistmap: bad value for sync: 'never'"
    con.execute("DROP TABLE kv")
    # Dropping a table that could not be used detaches it: the store stays.
    assert os.path.isdir(tmp / "bad.db-kv.pmap")
    con.close()
