"""Safety of files: a database written by someone else cannot make persistmap
create, change or delete anything outside its own directory.

Each hostile database is written without persistmap (writable_schema), the
way an attacker would; the victim then opens it with persistmap loaded,
uses the table, calls the functions and drops it. Nothing outside the
database's directory may change.
"""
import os
import sqlite3

import pytest

from conftest import connect, error_of, errname, tree

REFUSED = "leads outside the database's directory (persistmap_allow_any_path(1) on this connection allows it)"


def hostile_db(path, store_path):
    """A database whose schema declares a persistmap table at store_path."""
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE ordinary(x)")
    con.execute("PRAGMA writable_schema = ON")
    sql = f"CREATE VIRTUAL TABLE kv USING persistmap(path='{store_path}')"
    con.execute("INSERT INTO sqlite_schema VALUES ('table', 'kv', 'kv', 0, ?)", (sql,))
    con.commit()
    con.close()


@pytest.fixture
def world(tmp):
    """tmp/outside holds a precious file and a persistmap store; tmp/app/db
    is where the hostile database lives."""
    outside = tmp / "outside"
    os.makedirs(outside)
    (outside / "precious.txt").write_text("do not touch")
    con = connect(":memory:")
    con.execute(f"CREATE VIRTUAL TABLE temp.s USING persistmap(path='{outside}/store.pmap')")
    con.execute("INSERT INTO s VALUES ('secret', 42)")
    con.close()
    os.makedirs(tmp / "app" / "db")
    os.symlink(outside, tmp / "app" / "db" / "link")
    os.symlink(outside / "store.pmap", tmp / "app" / "db" / "storelink")
    os.symlink(outside / "nothing-yet", tmp / "app" / "db" / "dangling")
    return tmp


def use_and_drop(con, message):
    """Every way of touching the table gives the clear error; DROP works."""
    for sql in ["SELECT * FROM kv", "SELECT count(*) FROM kv WHERE key = 'secret'",
                "INSERT INTO kv VALUES ('x', 1)", "DELETE FROM kv",
                "UPDATE kv SET value = 0", "SELECT persistmap_stats('kv')",
                "SELECT persistmap_check('kv')", "SELECT persistmap_sync('kv')",
                "SELECT persistmap_shrink('kv')", "SELECT persistmap_recover('kv')"]:
        e = error_of(con, sql)
        assert message in str(e), sql
        assert str(e).startswith("persistmap: ")
    con.execute("DROP TABLE kv")


@pytest.mark.parametrize("store_path", [
    "{outside}/store.pmap",          # an absolute path to an existing store
    "{outside}/new.pmap",            # an absolute path where nothing is yet
    "/etc/persistmap-test.pmap",
    "../../outside/store.pmap",
    "../../outside/new.pmap",
    "sub/../../../outside/store.pmap",
    "link/store.pmap",               # a symlink to a directory outside
    "link/new.pmap",
    "storelink",                     # a symlink to the store itself
    "dangling",                      # a dangling symlink: mkdir would follow it
    "dangling/new.pmap",
])
def test_a_hostile_path_is_refused_and_nothing_outside_changes(world, store_path):
    store_path = store_path.format(outside=world / "outside")
    db = str(world / "app" / "db" / "hostile.db")
    hostile_db(db, store_path)
    before_outside, before_root = tree(world / "outside"), sorted(os.listdir(world))
    con = connect(db)
    use_and_drop(con, REFUSED)
    con.close()
    assert tree(world / "outside") == before_outside
    assert sorted(os.listdir(world)) == before_root
    assert not os.path.exists("/etc/persistmap-test.pmap")


def test_a_deserialized_database_is_untrusted(world):
    db = str(world / "app" / "db" / "hostile.db")
    hostile_db(db, str(world / "outside" / "store.pmap"))
    data = open(db, "rb").read()
    before = tree(world)
    con = connect(":memory:")
    con.deserialize(data)
    use_and_drop(con, "table 'kv' is in a database loaded from memory, where store paths "
                      "are not trusted (persistmap_allow_any_path(1) on this connection allows them)")
    con.close()
    assert tree(world) == before


def test_a_deserialized_database_refuses_even_a_relative_path(world):
    db = str(world / "app" / "db" / "hostile.db")
    hostile_db(db, "kv.pmap")
    con = connect(":memory:")
    con.deserialize(open(db, "rb").read())
    assert "loaded from memory" in str(error_of(con, "SELECT * FROM kv"))
    con.close()


def test_the_application_can_opt_in(world):
    db = str(world / "app" / "db" / "mine.db")
    con = connect(db)
    e = error_of(con, f"CREATE VIRTUAL TABLE kv USING persistmap(path='{world}/outside/store.pmap')")
    assert REFUSED in str(e)
    assert con.execute("SELECT persistmap_allow_any_path(1)").fetchone() == (1,)
    con.execute(f"CREATE VIRTUAL TABLE kv USING persistmap(path='{world}/outside/store.pmap')")
    assert con.execute("SELECT value FROM kv WHERE key = 'secret'").fetchone() == (42,)
    con.execute("CREATE VIRTUAL TABLE kv2 USING persistmap(path='../../outside/b.pmap')")
    assert (world / "outside" / "b.pmap").is_dir()
    con.close()
    # The opt-in belongs to the connection: a new one refuses again.
    con = connect(db)
    assert REFUSED in str(error_of(con, "SELECT * FROM kv"))
    con.execute("SELECT persistmap_allow_any_path(1)")
    assert con.execute("SELECT value FROM kv WHERE key = 'secret'").fetchone() == (42,)
    con.close()


def test_paths_inside_the_directory_are_fine(world):
    app = world / "app" / "db"
    os.makedirs(app / "sub")
    os.symlink(app / "sub", app / "inner")
    con = connect(str(app / "mine.db"))
    for i, p in enumerate(["a.pmap", "sub/b.pmap", "inner/c.pmap", f"{app}/d.pmap", "./e.pmap"]):
        con.execute(f"CREATE VIRTUAL TABLE t{i} USING persistmap(path='{p}')")
        con.execute(f"INSERT INTO t{i} VALUES (1, 1)")
    assert (app / "sub" / "c.pmap").is_dir()
    con.close()


def test_temp_and_memory_databases_may_use_any_path(world):
    con = connect(":memory:")
    con.execute(f"CREATE VIRTUAL TABLE temp.t USING persistmap(path='{world}/outside/store.pmap')")
    con.execute(f"CREATE VIRTUAL TABLE main.m USING persistmap(path='{world}/outside/m.pmap')")
    con.execute("INSERT INTO m VALUES (1, 1)")
    assert con.execute("SELECT value FROM t WHERE key = 'secret'").fetchone() == (42,)
    con.close()
    # A file database's temp schema too.
    con = connect(str(world / "app" / "db" / "x.db"))
    con.execute(f"CREATE VIRTUAL TABLE temp.t USING persistmap(path='{world}/outside/store.pmap')")
    assert con.execute("SELECT count(*) FROM t").fetchone() == (1,)
    con.close()


def test_relative_paths_in_temp_resolve_against_the_current_directory(world):
    cwd = os.getcwd()
    os.chdir(world / "outside")
    try:
        con = connect(":memory:")
        con.execute("CREATE VIRTUAL TABLE temp.t USING persistmap(path='rel.pmap')")
        con.execute("INSERT INTO t VALUES (1, 1)")
        con.close()
    finally:
        os.chdir(cwd)
    assert (world / "outside" / "rel.pmap").is_dir()


def test_the_opt_in_and_side_effects_cannot_run_from_a_database_file(world):
    """Views and triggers stored in a database file cannot call the
    DIRECTONLY functions; the module itself stays usable from them."""
    db = str(world / "app" / "db" / "views.db")
    con = connect(db)
    con.execute("CREATE VIRTUAL TABLE kv USING persistmap()")
    con.execute("CREATE TABLE log(x)")
    con.execute("CREATE VIEW v_allow AS SELECT persistmap_allow_any_path(1)")
    con.execute("CREATE VIEW v_sync AS SELECT persistmap_sync('kv')")
    con.execute("CREATE VIEW v_hash AS SELECT hex(persistmap_hash('a')) AS h, persistmap_version() AS v")
    con.execute("CREATE VIEW v_kv AS SELECT key, value FROM kv")
    con.execute("CREATE TRIGGER tr AFTER INSERT ON log BEGIN SELECT persistmap_shrink('kv'); END")
    con.close()
    con = connect(db)
    for sql in ["SELECT * FROM v_allow", "SELECT * FROM v_sync", "INSERT INTO log VALUES (1)"]:
        e = error_of(con, sql)
        assert "unsafe use of persistmap_" in str(e)
    assert con.execute("SELECT count(*) FROM v_hash").fetchone() == (1,)
    con.execute("INSERT INTO kv VALUES ('a', 1)")
    assert con.execute("SELECT * FROM v_kv").fetchall() == [("a", 1)]
    con.close()
