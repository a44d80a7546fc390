"""How persistmap is built and installed: make install / uninstall (PREFIX,
DESTDIR), the public header, the library's exports, persistmap_debug(), and
the README's bindings section against the programs the binding tests run.
(The static build and its example program run in `make test-static`.)"""
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys

import pytest

from conftest import REPO, SO, connect

HEADER = os.path.join(REPO, "ext", "persistmap.h")


def make(*args):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}
    return subprocess.run(["make", "-s", "-C", REPO, *args], capture_output=True, text=True,
                          env=env, timeout=300)


def header_define(name):
    m = re.search(rf'^#define {name}\s+(\S+)', open(HEADER).read(), re.M)
    assert m, name
    return m.group(1).strip('"')


def test_header_version_is_the_librarys(db):
    version = db.execute("SELECT persistmap_version()").fetchone()[0]
    assert header_define("PERSISTMAP_VERSION") == version
    major, minor, patch = (int(x) for x in version.split("."))
    assert int(header_define("PERSISTMAP_VERSION_NUMBER")) == major * 1000000 + minor * 1000 + patch


def test_header_compiles_alone_and_declares_the_entry_point(tmp):
    src = tmp / "use.c"
    src.write_text('#include "persistmap.h"\n'
                   "int (*entry)(sqlite3 *, char **, const sqlite3_api_routines *) = sqlite3_persistmap_init;\n"
                   "const char *version = PERSISTMAP_VERSION;\n")
    for compiler, std in (("cc", "-std=c99"), ("c++", "-std=c++11")):
        if not shutil.which(compiler):
            continue
        proc = subprocess.run([compiler, std, "-Wall", "-Wextra", "-Werror", "-I", os.path.dirname(HEADER),
                               "-x", "c" if compiler == "cc" else "c++", "-c", str(src),
                               "-o", str(tmp / "use.o")], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr


def test_the_library_exports_only_its_entry_point():
    out = subprocess.run(["nm", "-D", "--defined-only", SO], capture_output=True, text=True, check=True)
    assert [line.split()[-1] for line in out.stdout.splitlines()] == ["sqlite3_persistmap_init"]
    needed = subprocess.run(["readelf", "-d", SO], capture_output=True, text=True, check=True).stdout
    assert "libsqlite3" not in needed


def test_install_and_uninstall_honour_prefix_and_destdir(tmp):
    stage = tmp / "stage"
    proc = make("install", f"DESTDIR={stage}", "PREFIX=/opt/pm")
    assert proc.returncode == 0, proc.stderr
    lib, inc = stage / "opt/pm/lib/persistmap.so", stage / "opt/pm/include/persistmap.h"
    assert lib.is_file() and os.access(lib, os.X_OK)
    assert inc.read_text() == open(HEADER).read()
    assert open(lib, "rb").read() == open(os.path.join(REPO, "persistmap.so"), "rb").read()

    # The installed library loads by its path without the suffix.
    con = sqlite3.connect(":memory:")
    con.enable_load_extension(True)
    con.load_extension(str(lib)[:-3])
    assert con.execute("SELECT persistmap_version()").fetchone()[0] == header_define("PERSISTMAP_VERSION")
    con.close()

    proc = make("uninstall", f"DESTDIR={stage}", "PREFIX=/opt/pm")
    assert proc.returncode == 0, proc.stderr
    assert not lib.exists() and not inc.exists()
    assert not (stage / "opt/pm/lib/libpersistmap.a").exists()

    # The default PREFIX is /usr/local.
    proc = make("install", f"DESTDIR={stage}")
    assert proc.returncode == 0, proc.stderr
    assert (stage / "usr/local/lib/persistmap.so").is_file()
    assert (stage / "usr/local/include/persistmap.h").is_file()
    assert make("uninstall", f"DESTDIR={stage}").returncode == 0
    assert not (stage / "usr/local/lib/persistmap.so").exists()


def test_debug_reports_build_and_running_sqlite(db):
    debug = json.loads(db.execute("SELECT persistmap_debug()").fetchone()[0])
    assert debug["version"] == db.execute("SELECT persistmap_version()").fetchone()[0]
    assert debug["sqlite_running"] == sqlite3.sqlite_version
    running = [int(x) for x in sqlite3.sqlite_version.split(".")]
    assert debug["sqlite_running_number"] == running[0] * 1000000 + running[1] * 1000 + running[2]
    assert re.fullmatch(r"3\.\d+\.\d+", debug["sqlite_built"])
    assert debug["sqlite_built_number"] <= debug["sqlite_running_number"]
    assert debug["sqlite_running_source_id"] == db.execute("SELECT sqlite_source_id()").fetchone()[0]
    assert debug["linkage"] == "loadable"
    assert "SQLITE_CORE" not in debug["build_options"]
    assert any(o.startswith("xxhash-") for o in debug["build_options"])
    assert debug["compiler"]


def test_debug_is_usable_in_views_but_not_deterministic(tmp):
    con = connect(str(tmp / "t.db"))
    con.execute("CREATE VIEW v AS SELECT persistmap_debug() AS d")
    assert json.loads(con.execute("SELECT d FROM v").fetchone()[0])["linkage"] == "loadable"
    with pytest.raises(sqlite3.Error, match="non-deterministic"):
        con.execute("CREATE TABLE t(a, b AS (persistmap_debug()))")
    con.close()


def test_readme_bindings_section_matches_the_tests():
    """The load code in README.md's 'Use it from your language' section is
    the code test/bindings/ runs (nothing to check before it is merged)."""
    script = os.path.join(REPO, "test", "bindings", "readme.py")
    proc = subprocess.run([sys.executable, script, "--check", os.path.join(REPO, "README.md")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = subprocess.run([sys.executable, script, "-o", os.devnull], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
