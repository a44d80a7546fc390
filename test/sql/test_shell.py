"""The real sqlite3 shell: the example scripts of sql/, errors as a user sees
them, and two shell processes sharing one store."""
import glob
import os
import re
import shutil
import subprocess

import pytest

from conftest import REPO, SHELL, connect, run_shell, shell_env

SCRIPTS = sorted(glob.glob(os.path.join(REPO, "sql", "*.sql")))


def script_stores(text):
    return re.findall(r"path='(/tmp/persistmap-[^']+)'", text)


def run_script(path, bail, cwd):
    """Run a script as its header says (from a directory where ./persistmap
    is the build under test), with the shell's errors in their place among
    the results (line-buffered output)."""
    text = open(path).read()
    for store in script_stores(text):            # left over by an interrupted run
        shutil.rmtree(store, ignore_errors=True)
    cmd = [SHELL] + (["-bail"] if bail else []) + [":memory:"]
    if shutil.which("stdbuf"):
        cmd = ["stdbuf", "-oL"] + cmd
    proc = subprocess.run(cmd, input=text, text=True, cwd=cwd, timeout=120, env=shell_env(),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return proc, text


@pytest.mark.parametrize("path", SCRIPTS, ids=[os.path.basename(p) for p in SCRIPTS])
def test_example_script_output(path, shell_dir):
    bail = os.path.basename(path) == "quickstart.sql"          # as make demo runs it
    proc, text = run_script(path, bail, shell_dir)
    with open(path[:-4] + ".expected") as f:
        expected = f.read()
    assert proc.stdout == expected
    assert proc.returncode == 0 or not bail
    for store in script_stores(text):
        assert not os.path.exists(store), f"{store} left behind"


def test_every_use_case_has_a_script():
    names = {os.path.basename(p) for p in SCRIPTS}
    assert {"quickstart.sql", "typed_map.sql", "element_store.sql", "collections.sql",
            "queue.sql", "blobs.sql"} <= names


def test_errors_in_the_shell(tmp, shell_dir):
    proc = run_shell(".load ./persistmap\n"
                     "CREATE VIRTUAL TABLE kv USING persistmap(cache_sise='64MB');\n"
                     "CREATE VIRTUAL TABLE kv USING persistmap(cache_size='64XB');\n"
                     "CREATE VIRTUAL TABLE kv USING persistmap();\n"
                     "INSERT INTO kv VALUES (1, 1);\n"
                     "INSERT INTO kv VALUES (1, 2);\n"
                     "SELECT persistmap_stats('nope');\n",
                     db=str(tmp / "test.db"), cwd=shell_dir, check=False)
    err = proc.stderr
    assert "persistmap: unknown option 'cache_sise'" in err
    assert "persistmap: bad value for cache_size: '64XB'" in err
    assert "persistmap: key 1 already exists in 'kv' (19)" in err
    assert "persistmap: no such table: nope" in err


def test_shell_and_python_share_a_store(tmp, shell_dir):
    db = str(tmp / "test.db")
    run_shell(".load ./persistmap\nCREATE VIRTUAL TABLE kv USING persistmap();\n"
              "INSERT INTO kv VALUES ('from', 'shell');\n", db=db, cwd=shell_dir)
    con = connect(db)
    assert con.execute("SELECT value FROM kv WHERE key = 'from'").fetchone() == ("shell",)
    con.execute("INSERT INTO kv VALUES ('and', 'python')")
    out = run_shell(".load ./persistmap\nSELECT key || '=' || value FROM kv ORDER BY key;\n",
                    db=db, cwd=shell_dir).stdout.split()
    assert out == ["and=python", "from=shell"]
    con.close()


def test_producer_and_consumer_shells_share_a_queue(tmp, shell_dir):
    """Two sqlite3 processes on one store at once: every job pushed is popped
    exactly once, and the queue ends empty."""
    store = str(tmp / "q.pmap")
    setup = (".load ./persistmap\n"
             f"CREATE VIRTUAL TABLE temp.q USING persistmap(path='{store}', busy_timeout='30s');\n")
    run_shell(setup, cwd=shell_dir)
    n = 300
    producer = setup + "".join(f"INSERT INTO q(value) VALUES ('job {i}');\n" for i in range(n))
    consumer = setup + ("DELETE FROM q WHERE key = (SELECT key FROM q ORDER BY seq LIMIT 1);\n"
                        "SELECT changes();\n") * (n // 2 + 50)
    procs = [subprocess.Popen([SHELL, ":memory:"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd=shell_dir, env=shell_env())
             for _ in range(3)]
    outs = [p.communicate(s, timeout=120) for p, s in zip(procs, [producer, consumer, consumer])]
    assert all(p.returncode == 0 for p in procs), [o[1] for o in outs]
    popped = sum(int(x) for o in outs[1:] for x in o[0].split())
    rest = int(run_shell(setup + "SELECT count(*) FROM q;\n", cwd=shell_dir).stdout)
    assert popped + rest == n
    assert popped > 0
