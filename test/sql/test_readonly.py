"""Read-only tables: mode='readonly', read-only databases, read-only file systems.

Reads work; every write fails with SQLITE_READONLY; nothing on disk is
created, changed or repaired.
"""
import os
import shutil
import subprocess
import sys

import pytest

from conftest import EXT, connect, error_of, errname, tree

WRITES = ["INSERT INTO kv VALUES ('new', 1)", "UPDATE kv SET value = 2 WHERE key = 'a'",
          "DELETE FROM kv WHERE key = 'a'", "DELETE FROM kv WHERE key GLOB '*'",
          "INSERT OR IGNORE INTO kv VALUES ('a', 1)", "REPLACE INTO kv VALUES ('a', 0)"]


@pytest.fixture
def store(tmp):
    """tmp/test.db with table kv holding a few rows, closed."""
    con = connect(str(tmp / "test.db"))
    con.execute("CREATE VIRTUAL TABLE kv USING persistmap(sync='full')")
    con.executemany("INSERT INTO kv VALUES (?, ?)", [("a", 1), ("b", 2), ("c", 3)])
    con.close()
    return tmp


def check_read_only(con):
    assert con.execute("SELECT key, value FROM kv ORDER BY key").fetchall() == \
        [("a", 1), ("b", 2), ("c", 3)]
    assert con.execute("SELECT value FROM kv WHERE key = 'b'").fetchone() == (2,)
    for sql in WRITES:
        e = error_of(con, sql)
        assert errname(e) == "SQLITE_READONLY", sql
    assert con.execute("SELECT count(*) FROM kv").fetchone() == (3,)


def test_mode_readonly(store):
    con = connect(str(store / "test.db"))
    con.execute("CREATE VIRTUAL TABLE ro USING persistmap(path='test.db-kv.pmap', mode='readonly')")
    before = tree(store / "test.db-kv.pmap")
    for sql in WRITES:
        e = error_of(con, sql.replace("kv", "ro"))
        assert errname(e) == "SQLITE_READONLY"
        assert str(e) == "persistmap: table 'ro' is read-only"
    assert con.execute("SELECT count(*) FROM ro").fetchone() == (3,)
    # A write that matches no row writes nothing, and is no error.
    con.execute("DELETE FROM ro WHERE key = 'nothing'")
    # Reads go on in a transaction where a write failed.
    con.execute("BEGIN")
    assert errname(error_of(con, "INSERT INTO ro VALUES ('x', 1)")) == "SQLITE_READONLY"
    assert con.execute("SELECT count(*) FROM ro").fetchone() == (3,)
    con.execute("COMMIT")
    s = con.execute("SELECT persistmap_stats('ro')").fetchone()[0]
    assert '"readonly":true' in s
    con.execute("DROP TABLE ro")                   # a read-only table only detaches
    con.close()
    assert tree(store / "test.db-kv.pmap") == before


def test_mode_readonly_creates_nothing(tmp):
    con = connect(str(tmp / "test.db"))
    e = error_of(con, "CREATE VIRTUAL TABLE kv USING persistmap(mode='readonly')")
    assert errname(e) == "SQLITE_CANTOPEN" and str(e).startswith("persistmap: ")
    assert os.listdir(tmp) == ["test.db"]
    con.close()


def test_readonly_after_reopen_changes_nothing_on_disk(store):
    """A table declared readonly, opened in a fresh process, neither writes
    nor creates lock files nor repairs."""
    con = connect(str(store / "test.db"))
    con.execute("CREATE VIRTUAL TABLE ro USING persistmap(path='test.db-kv.pmap', mode='readonly')")
    con.close()
    before = tree(store / "test.db-kv.pmap")
    script = ("import sqlite3, sys\n"
              "con = sqlite3.connect(sys.argv[2], isolation_level=None)\n"
              "con.enable_load_extension(True); con.load_extension(sys.argv[1])\n"
              "print(con.execute('SELECT count(*) FROM ro').fetchone()[0])\n"
              "print(con.execute(\"SELECT persistmap_check('ro')\").fetchone()[0])\n")
    out = subprocess.run([sys.executable, "-c", script, EXT, str(store / "test.db")],
                         capture_output=True, text=True, check=True).stdout.split()
    assert out == ["3", "ok"]
    assert tree(store / "test.db-kv.pmap") == before


def test_read_only_database(store):
    con = connect(f"file:{store}/test.db?mode=ro", uri=True)
    check_read_only(con)
    con.close()


def test_immutable_database(store):
    con = connect(f"file:{store}/test.db?immutable=1", uri=True)
    assert con.execute("SELECT count(*) FROM kv").fetchone() == (3,)
    con.close()


FS_SCRIPT = r"""
import os, sqlite3, sys
ext, root, phase = sys.argv[1], sys.argv[2], sys.argv[3]
con = sqlite3.connect(os.path.join(root, "test.db"), isolation_level=None)
con.enable_load_extension(True)
con.load_extension(ext)
if phase == "fill":
    con.execute("CREATE VIRTUAL TABLE kv USING persistmap(sync='full')")
    con.executemany("INSERT INTO kv VALUES (?, ?)", [("a", 1), ("b", 2), ("c", 3)])
else:
    print(con.execute("SELECT group_concat(key) FROM kv").fetchone()[0])
    try:
        con.execute("INSERT INTO kv VALUES ('d', 4)")
        print("written")
    except sqlite3.Error as e:
        print(e.sqlite_errorname)
"""


def test_read_only_file_system(tmp):
    """A tmpfs in a private mount namespace, remounted read-only."""
    if not shutil.which("unshare") or os.geteuid() != 0:
        pytest.skip("needs root and unshare to mount a file system")
    mnt = tmp / "mnt"
    os.mkdir(mnt)
    script = tmp / "fs.py"
    script.write_text(FS_SCRIPT)
    run = f"{sys.executable} {script} {EXT} {mnt}"
    cmd = (f"mount -t tmpfs none {mnt} && {run} fill && "
           f"mount -o remount,ro {mnt} && {run} read")
    proc = subprocess.run(["unshare", "-m", "sh", "-c", cmd], capture_output=True, text=True)
    if proc.returncode != 0 and "mount" in proc.stderr and "permission" in proc.stderr.lower():
        pytest.skip("mounting is not permitted here")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["a,b,c", "SQLITE_READONLY"]
