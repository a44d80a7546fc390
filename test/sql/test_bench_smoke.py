"""Smoke test of the benchmark suite (`make bench`): its drivers build, run on
a tiny data set and write well-formed results, and the report turns those
into the table. No figure is checked against a goal or a time here: the
benchmark's goals are ratios read from one `make bench` run, never tests.
"""
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from conftest import REPO, SO

PY = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
BUILD = os.path.join(REPO, "build")
KEYS = 2000


def make(target):
    subprocess.run(["make", "-s", "-C", REPO, target], check=True, capture_output=True, timeout=300)


@pytest.fixture(scope="module")
def bench_sql():
    make("build/bench_sql")
    return os.path.join(BUILD, "bench_sql")


def records(path):
    out = []
    with open(path) as f:
        for line in f:
            assert line.endswith("\n")
            out.append(json.loads(line))
    return out


SQL_SYSTEMS = {
    "bulk_load": {"persistmap", "sqlite", "nullvtab"},
    "full_scan": {"persistmap", "sqlite", "nullvtab"},
    "get_uniform": {"persistmap", "sqlite", "nullvtab", "persistmap_temp", "nullvtab_temp"},
    "get_zipf": {"persistmap", "sqlite", "nullvtab", "persistmap_temp", "nullvtab_temp"},
    "upsert_normal": {"persistmap", "sqlite", "nullvtab"},
    "upsert_full": {"persistmap", "sqlite"},
    "upsert_full_4w": {"persistmap", "sqlite"},
    "delete_10pct": {"persistmap", "sqlite", "nullvtab"},
    "reopen": {"persistmap", "sqlite"},
    "memory": {"persistmap", "sqlite"},
}


def run_sql(bench_sql, tmp, reps=1, prefix=()):
    out = tmp / "sql.json"
    proc = subprocess.run([*prefix, bench_sql, "-n", str(KEYS), "-r", str(reps), "-x", SO, "-o", str(out),
                           str(tmp / "sql")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc, records(out)


def test_sql_bench_writes_every_workload(bench_sql, tmp):
    proc, recs = run_sql(bench_sql, tmp, reps=2)
    setup = [r for r in recs if r["workload"] == "setup"]
    assert setup and setup[0]["keys"] == KEYS and setup[0]["reps"] == 2
    seen = {}
    for r in recs:
        if r["workload"] in ("setup", "fsync_totals"):
            continue
        seen.setdefault(r["workload"], set()).add(r["system"])
        assert len(r["reps"]) == 2 and all(v >= 0 for v in r["reps"])
        assert min(r["reps"]) <= r["median"] <= max(r["reps"])
        assert r["unit"]
    assert seen == SQL_SYSTEMS
    by = {(r["workload"], r.get("system")): r for r in recs}
    # Every commit under full sync reached the disk: the counters saw it.
    assert by[("upsert_full", "persistmap")]["fsyncs_per_commit"] > 0
    assert by[("upsert_full", "persistmap")]["engine_fsyncs_per_commit"] > 0
    assert by[("upsert_full", "sqlite")]["fsyncs_per_commit"] > 0
    assert by[("upsert_full_4w", "sqlite")]["fsyncs_per_commit"] > 0
    mem = by[("memory", "persistmap")]
    assert mem["index_bytes_per_key"] > mem["key_bytes"]
    assert by[("get_uniform", "persistmap")]["cache_hit_ratio"] > 0
    for wl in SQL_SYSTEMS:
        assert re.search(rf"^  {wl} +persistmap ", proc.stdout, re.M)


def test_fsync_counter_agrees_with_strace(bench_sql, tmp):
    strace = shutil.which("strace")
    if not strace:
        pytest.skip("strace is not installed")
    probe = subprocess.run([strace, "-f", "--seccomp-bpf", "-c", "-o", os.devnull, "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("strace cannot trace here: " + probe.stderr.decode(errors="replace").strip())
    summary = tmp / "strace.txt"
    proc, recs = run_sql(bench_sql, tmp, prefix=(strace, "-f", "--seccomp-bpf", "-c", "-e",
                                                 "trace=fdatasync,fsync", "-o", str(summary)))
    counted = [r for r in recs if r["workload"] == "fsync_totals"][0]
    traced = {}
    for line in summary.read_text().splitlines():
        parts = line.split()
        if parts and parts[-1] in ("fdatasync", "fsync"):
            traced[parts[-1]] = int(parts[3] if len(parts) >= 6 else parts[-2])
    assert counted["fdatasync"] > 0
    assert traced.get("fdatasync", 0) == counted["fdatasync"]
    assert traced.get("fsync", 0) == counted["fsync"]


def test_report_makes_the_table_and_results(bench_sql, tmp):
    run_sql(bench_sql, tmp)
    args = [PY, os.path.join(REPO, "test/bench/report.py"), str(tmp), "--readme", str(tmp / "readme.md")]
    if shutil.which("gnuplot"):
        args += ["--chart", str(tmp / "bench.png")]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    head = [l for l in proc.stdout.splitlines() if l.startswith("workload ")]
    assert head and [c.strip() for c in head[0].split("|")] == \
        ["workload", "persistmap", "plain SQLite", "ratio", "goal", "met?"]
    res = json.loads((tmp / "results.json").read_text())
    assert res["meta"]["keys"] == KEYS
    names = [r["workload"] for r in res["rows"]]
    assert "bulk load, 1 transaction" in names and "reopen + first get" in names
    for r in res["rows"]:
        assert r["met"] in (True, False, None)
        if r["workload"].startswith(("bulk load", "point get", "full scan", "delete")):
            assert r["ratio"] is not None and r["ratio"] > 0
    md = (tmp / "readme.md").read_text()
    assert "| workload | persistmap | plain SQLite | ratio | goal | met? |" in md
    if shutil.which("gnuplot"):
        assert (tmp / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def installed(pkg):
    r = subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg], capture_output=True, text=True)
    return r.returncode == 0 and "install ok installed" in r.stdout


def test_engine_bench_against_lmdb_and_rocksdb(tmp):
    # Building bench_kv installs the bench's packages when missing: only
    # run where `make bench` already did (a test installs nothing).
    missing = [p for p in ("liblmdb-dev", "librocksdb-dev", "gnuplot-nox") if not installed(p)]
    if missing:
        pytest.skip("not installed (make bench installs them): " + " ".join(missing))
    make("build/bench_kv")
    out = tmp / "kv.json"
    proc = subprocess.run([os.path.join(BUILD, "bench_kv"), "-n", "1000", "-r", "1", "-o", str(out),
                           str(tmp / "kv")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    got = {(r["workload"], r.get("system")) for r in records(out)}
    for wl in ("get", "put"):
        for system in ("persistmap", "lmdb", "rocksdb"):
            assert (wl, system) in got
