"""The SQL suites again, on a newer SQLite than Debian's.

SQLite's amalgamation comes from the better-sqlite3 package of the npm
registry (pinned below); it is compiled once into build/sqlite-newer/
libsqlite3.so.0, and the suites run in a child pytest with LD_LIBRARY_PATH
pointing there, so Python's sqlite3 module uses it. (Debian's sqlite3 shell
refuses a library of another version, so the shell tests stay on Debian's.)
Without npm or a compiler the test is skipped, saying why.
"""
import glob
import os
import shutil
import subprocess
import sys
import tarfile

import pytest

from conftest import REPO

PACKAGE = "better-sqlite3@12.11.1"        # ships SQLite 3.53.2
WANT = (3, 53)
HERE = os.path.dirname(os.path.abspath(__file__))
SUITES = ["test_queries.py", "test_writes.py", "test_values.py", "test_transactions.py",
          "test_options.py", "test_functions.py", "test_views_triggers.py", "test_lifecycle.py",
          "test_safety.py", "test_readonly.py"]


def build_newer_sqlite():
    """build/sqlite-newer/libsqlite3.so.0, made if missing. Returns its
    directory, or raises pytest.skip with the reason."""
    out = os.path.join(REPO, "build", "sqlite-newer")
    lib = os.path.join(out, "libsqlite3.so.0")
    if os.path.exists(lib):
        return out
    if not shutil.which("npm") or not shutil.which("cc"):
        pytest.skip("needs npm and cc to build a newer SQLite")
    os.makedirs(out, exist_ok=True)
    # npm's cache and logs go under build/ too: the suite writes nothing
    # outside the repository (the file-trace check holds it to that).
    npm_env = dict(os.environ, npm_config_cache=os.path.join(out, "npm-cache"),
                   npm_config_update_notifier="false", npm_config_fund="false",
                   npm_config_audit="false")
    pack = subprocess.run(["npm", "pack", PACKAGE, "--pack-destination", out],
                          capture_output=True, text=True, timeout=300, env=npm_env)
    tgz = glob.glob(os.path.join(out, "better-sqlite3-*.tgz"))
    if pack.returncode != 0 or not tgz:
        pytest.skip(f"npm pack {PACKAGE} failed: {pack.stderr.strip()[-300:]}")
    with tarfile.open(tgz[0]) as tar:
        member = tar.getmember("package/deps/sqlite3/sqlite3.c")
        with open(os.path.join(out, "sqlite3.c"), "wb") as f:
            f.write(tar.extractfile(member).read())
    flags = ["-DSQLITE_THREADSAFE=1", "-DSQLITE_ENABLE_COLUMN_METADATA",
             "-DSQLITE_ENABLE_SESSION", "-DSQLITE_ENABLE_PREUPDATE_HOOK",
             "-DSQLITE_ENABLE_DBSTAT_VTAB", "-DSQLITE_ENABLE_FTS5", "-DSQLITE_ENABLE_RTREE"]
    cc = subprocess.run(["cc", "-O1", "-shared", "-fPIC", *flags, "-Wl,-soname,libsqlite3.so.0",
                         "-o", lib + ".tmp", os.path.join(out, "sqlite3.c"),
                         "-lpthread", "-lm", "-ldl"], capture_output=True, text=True, timeout=600)
    if cc.returncode != 0:
        pytest.fail(f"compiling SQLite failed:\n{cc.stderr[-2000:]}")
    os.rename(lib + ".tmp", lib)
    return out


@pytest.mark.skipif(bool(os.environ.get("PM_SQLITE_LIB")), reason="already on the newer SQLite")
def test_suites_on_a_newer_sqlite():
    libdir = build_newer_sqlite()
    env = dict(os.environ, LD_LIBRARY_PATH=libdir, PM_SQLITE_LIB=libdir)
    version = subprocess.run([sys.executable, "-c", "import sqlite3; print(sqlite3.sqlite_version)"],
                             env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert tuple(int(x) for x in version.split(".")[:2]) >= WANT, version
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           *[os.path.join(HERE, s) for s in SUITES]],
                          env=env, cwd=REPO, capture_output=True, text=True, timeout=1200)
    print(f"SQLite {version}:\n{proc.stdout[-3000:]}")
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
