"""The whole SQL suite (test/sql) once more, on the newest SQLite at hand.

That SQLite is the one better-sqlite3 bundles (pinned in
test/sql/test_newer_sqlite.py, which also builds it: build/sqlite-newer/
libsqlite3.so.0). The extension is compiled again against that SQLite's own
headers (build/sqlite-newer/ext/persistmap.so), so code under compile-time
guards for newer APIs is built in, and run-time guards take their newer
branch. Debian's /usr/bin/python3 then runs every file of test/sql with
LD_LIBRARY_PATH pointing there; the version in use is checked first with
sqlite_version() and persistmap_debug(). Debian's sqlite3 shell accepts no
other libsqlite3 than its own, so the shell's tests in this run drive
Debian's shell (3.40) with the extension built against the newer headers.

Usage: /usr/bin/python3 test/bindings/newer_sqlite.py [pytest arguments]
"""
import glob
import json
import os
import shutil
import subprocess
import sys
import tarfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "test", "sql"))

from test_newer_sqlite import PACKAGE, WANT, build_newer_sqlite  # noqa: E402


def die(msg):
    print(f"newer SQLite: FAILED: {msg}", flush=True)
    sys.exit(1)


def headers(libdir):
    """build/sqlite-newer/include/ with the package's sqlite3.h and sqlite3ext.h."""
    inc = os.path.join(libdir, "include")
    if all(os.path.exists(os.path.join(inc, h)) for h in ("sqlite3.h", "sqlite3ext.h")):
        return inc
    tgz = glob.glob(os.path.join(libdir, "better-sqlite3-*.tgz"))
    if not tgz:
        pack = subprocess.run(["npm", "pack", PACKAGE, "--pack-destination", libdir],
                              capture_output=True, text=True, timeout=300)
        tgz = glob.glob(os.path.join(libdir, "better-sqlite3-*.tgz"))
        if pack.returncode != 0 or not tgz:
            die(f"npm pack {PACKAGE} failed: {pack.stderr.strip()[-500:]}")
    os.makedirs(inc, exist_ok=True)
    with tarfile.open(tgz[0]) as tar:
        for h in ("sqlite3.h", "sqlite3ext.h"):
            with open(os.path.join(inc, h), "wb") as f:
                f.write(tar.extractfile(f"package/deps/sqlite3/{h}").read())
    return inc


def main():
    try:
        libdir = build_newer_sqlite()
    except BaseException as e:          # pytest.skip raises an exception of its own
        if isinstance(e, KeyboardInterrupt):
            raise
        die(f"cannot build the newer SQLite: {e}")
    objdir = os.path.join(REPO, "build", "sqlite-newer", "ext")
    if not os.path.exists(os.path.join(libdir, "include", "sqlite3ext.h")):
        shutil.rmtree(objdir, ignore_errors=True)      # objects of other headers
    inc = headers(libdir)
    so = os.path.join(objdir, "persistmap.so")
    make = subprocess.run(["make", "-s", "-C", REPO, f"BUILD={objdir}", f"CFLAGS=-O2 -g -I{inc}", so],
                          capture_output=True, text=True)
    if make.returncode != 0:
        die(f"building persistmap against {inc} failed:\n{make.stdout}{make.stderr}")

    env = dict(os.environ, LD_LIBRARY_PATH=libdir, PM_SQLITE_LIB=libdir, PM_EXTENSION=so)
    probe = ("import sqlite3, sys\n"
             "con = sqlite3.connect(':memory:')\n"
             "con.enable_load_extension(True)\n"
             "con.load_extension(sys.argv[1])\n"
             "print(con.execute('SELECT persistmap_debug()').fetchone()[0])\n")
    out = subprocess.run([sys.executable, "-c", probe, so], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        die(f"loading {so} on the newer SQLite failed:\n{out.stderr}")
    debug = json.loads(out.stdout)
    running = tuple(int(x) for x in debug["sqlite_running"].split(".")[:2])
    if running < WANT or debug["sqlite_built"] != debug["sqlite_running"]:
        die(f"not the newer SQLite: {debug}")
    print(f"newer SQLite: the SQL suites on SQLite {debug['sqlite_running']}, persistmap built "
          f"against its headers ({debug['sqlite_built']}); shell tests on Debian's sqlite3",
          flush=True)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           os.path.join(REPO, "test", "sql"), *sys.argv[1:]], env=env, cwd=REPO)
    sys.exit(proc.returncode)


if __name__ == "__main__":
    main()
