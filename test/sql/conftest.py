"""Shared fixtures of the SQL tests.

The tests load the repository's persistmap.so into Debian's Python sqlite3
module (/usr/bin/python3: its sqlite3 allows load_extension) and drive the
real sqlite3 shell through subprocess. Each test works in its own temporary
directory.

PM_SQLITE_LIB (set by test_newer_sqlite.py) makes a run use another build of
libsqlite3; nothing here depends on it. PM_EXTENSION names another build of
the extension to load (for instance one built with sanitizers).
"""
import json
import os
import shutil
import sqlite3
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# PM_EXTENSION names another build to test (a sanitizer build, say).
EXT = os.environ.get("PM_EXTENSION") or os.path.join(REPO, "persistmap")
SO = EXT if EXT.endswith(".so") else EXT + ".so"
SHELL = shutil.which("sqlite3") or "/usr/bin/sqlite3"


def pytest_sessionstart(session):
    if not os.path.exists(SO):
        raise pytest.UsageError(f"{SO} is missing: run make first")


def connect(path, uri=False, autocommit=True, load=True, timeout=5.0):
    """A connection with persistmap loaded, in autocommit mode by default."""
    con = sqlite3.connect(path, uri=uri, timeout=timeout,
                          isolation_level=None if autocommit else "DEFERRED",
                          check_same_thread=False)
    if load:
        con.enable_load_extension(True)
        con.load_extension(EXT)
        con.enable_load_extension(False)
    return con


@pytest.fixture
def tmp(tmp_path):
    """A fresh directory; the tests' databases and stores live in it."""
    return tmp_path


@pytest.fixture
def db(tmp):
    """A connection to tmp/test.db with persistmap loaded."""
    con = connect(str(tmp / "test.db"))
    yield con
    con.close()


@pytest.fixture
def kv(db):
    """db with a persistmap table kv at the default path."""
    db.execute("CREATE VIRTUAL TABLE kv USING persistmap()")
    return db


def error_of(con, sql, params=()):
    """The sqlite3.Error raised by sql (the test fails if none is)."""
    with pytest.raises(sqlite3.Error) as info:
        con.execute(sql, params).fetchall()
    return info.value


def errname(exc):
    """SQLite's primary result code name of an exception: SQLITE_BUSY..."""
    return "_".join(getattr(exc, "sqlite_errorname", "").split("_")[:2])


def stats(con, table="kv"):
    return json.loads(con.execute("SELECT persistmap_stats(?)", (table,)).fetchone()[0])


def plan(con, sql, params=()):
    """The lines of EXPLAIN QUERY PLAN, joined by ' | '."""
    rows = con.execute("EXPLAIN QUERY PLAN " + sql, params).fetchall()
    return " | ".join(r[3] for r in rows)


@pytest.fixture(scope="session")
def shell_dir(tmp_path_factory):
    """A directory where './persistmap' loads the build under test: the
    shell runs there, so scripts keep their '.load ./persistmap'."""
    d = tmp_path_factory.mktemp("shell")
    os.symlink(SO, d / "persistmap.so")
    return str(d)


def shell_env():
    """The environment for the sqlite3 shell. Debian's shell refuses any
    libsqlite3 but its own ("SQLite header and source version mismatch"), so
    a run on another SQLite (PM_SQLITE_LIB) leaves the shell on Debian's."""
    env = os.environ.copy()
    if os.environ.get("PM_SQLITE_LIB"):
        env.pop("LD_LIBRARY_PATH", None)
    return env


def run_shell(script, db=":memory:", cwd=None, args=(), check=True, timeout=60):
    """Run the sqlite3 shell on db with script on standard input."""
    proc = subprocess.run([SHELL, *args, db], input=script, text=True, capture_output=True,
                          cwd=cwd, timeout=timeout, env=shell_env())
    if check and proc.returncode != 0:
        raise AssertionError(f"sqlite3 failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def tree(path):
    """Every file and directory under path with its size and mtime, for
    checking that nothing was created, changed or removed."""
    out = {}
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            p = os.path.join(root, name)
            st = os.lstat(p)
            out[os.path.relpath(p, path)] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return out
