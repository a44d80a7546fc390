#!/usr/bin/python3
"""The benchmark report: the table of ratios and goals from one run's results.

    report.py DIR [--chart PNG] [--readme MD]

Reads the JSON lines that the benchmark drivers wrote into DIR (sql.json
from bench_sql, kv.json from bench_kv, engine.json from bench_engine, and
the RESULT lines of cache_trace.txt), prints the table

    workload | persistmap | plain SQLite | ratio | goal | met?

writes DIR/results.json (the table's rows, the run's settings and every raw
record), and optionally draws the ratios as a PNG with gnuplot and writes the
README's benchmark section (markdown) to MD. Every ratio reads "persistmap
is this many times as fast"; a row whose baseline is not the plain SQLite
table names it ("vs ...") and shows the baseline's figure in that column.
"""
import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile


def load_records(d):
    recs = []
    for name in ("sql.json", "kv.json", "engine.json"):
        path = os.path.join(d, name)
        if not os.path.exists(path):
            continue
        with open(path) as f:
            for n, line in enumerate(f, 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    r = json.loads(line)
                except json.JSONDecodeError as e:
                    sys.exit(f"report: {path}:{n}: not JSON: {e}")
                r.setdefault("bench", name[:-5])
                recs.append(r)
    trace = os.path.join(d, "cache_trace.txt")
    if os.path.exists(trace):
        with open(trace) as f:
            for line in f:
                if line.startswith("RESULT "):
                    r = {"bench": "cache_trace"}
                    for kv in line.split()[1:]:
                        k, _, v = kv.partition("=")
                        try:
                            r[k] = float(v) if any(c in v for c in ".e") else int(v)
                        except ValueError:
                            r[k] = v
                    recs.append(r)
    return recs


class Results:
    def __init__(self, recs):
        self.recs = recs

    def get(self, bench, workload, system, field="median"):
        for r in self.recs:
            if r.get("bench") == bench and r.get("workload") == workload and r.get("system") == system:
                return r.get(field)
        return None

    def setup(self, bench):
        for r in self.recs:
            if r.get("bench") == bench and r.get("workload") == "setup":
                return r
        return {}


def fmt_rate(v, unit):
    if v is None:
        return "n/a"
    u = unit.split("/")[0]
    if v >= 1e6:
        return f"{v / 1e6:.2f}M {u}/s"
    if v >= 1e4:
        return f"{v / 1e3:.0f}k {u}/s"
    if v >= 1e3:
        return f"{v / 1e3:.1f}k {u}/s"
    return f"{v:.0f} {u}/s"


def fmt_ratio(r):
    if r is None:
        return "n/a"
    if r < 0.1:
        return f"{r:.2g}x"
    return f"{r:.2f}x" if r < 10 else f"{r:.1f}x" if r < 100 else f"{r:.0f}x"


def build_rows(res):
    """Every row of the table, in order."""
    rows = []

    def div(a, b):
        return a / b if a is not None and b not in (None, 0) else None

    def ratio_row(label, bench, workload, pm_sys, base_sys, unit, goal=None, base_label=None, invert=False):
        pm = res.get(bench, workload, pm_sys)
        base = res.get(bench, workload, base_sys)
        ratio = div(base, pm) if invert else div(pm, base)
        rows.append({
            "workload": label, "unit": unit,
            "persistmap": pm, "baseline": base, "baseline_name": base_label or "plain SQLite",
            "persistmap_text": fmt_rate(pm, unit), "baseline_text": fmt_rate(base, unit),
            "ratio": ratio, "goal_ratio": goal,
            "goal": f">= {goal:g}x" if goal is not None else "",
            "met": (ratio >= goal) if (goal is not None and ratio is not None) else None,
        })

    def floor_row(label, workload, unit):
        """The same workload on the do-nothing table: the most any virtual
        table can reach, so the plain table's ratio to it bounds every goal."""
        if res.get("sql", workload, "nullvtab") is None:
            return
        ratio_row(f"  {label} (vs do-nothing vtab)", "sql", workload, "persistmap", "nullvtab", unit,
                  None, "do-nothing vtab")
        ratio_row(f"  {label}: do-nothing vtab vs plain", "sql", workload, "nullvtab", "sqlite", unit)
        rows[-1]["persistmap_text"] += " (do-nothing vtab)"

    def value_row(label, pm, base, fmt, goal_text="", check=None, ratio=None):
        rows.append({
            "workload": label, "unit": "",
            "persistmap": pm, "baseline": base, "baseline_name": "plain SQLite",
            "persistmap_text": fmt(pm) if pm is not None else "n/a",
            "baseline_text": fmt(base) if base is not None else "n/a",
            "ratio": ratio, "goal_ratio": None, "goal": goal_text,
            "met": check(pm) if (check and pm is not None) else None,
        })

    ratio_row("bulk load, 1 transaction", "sql", "bulk_load", "persistmap", "sqlite", "rows/s", 5)
    floor_row("bulk load", "bulk_load", "rows/s")
    for dist, name in (("get_uniform", "uniform"), ("get_zipf", "Zipf 0.99")):
        ratio_row(f"point get, {name}", "sql", dist, "persistmap", "sqlite", "gets/s")
        ratio_row(f"point get, {name} (vs do-nothing vtab)", "sql", dist, "persistmap", "nullvtab", "gets/s",
                  0.8, "do-nothing vtab")
        ratio_row(f"point get, {name}, temp schema", "sql", dist, "persistmap_temp", "sqlite", "gets/s", 4)
        ratio_row(f"point get, {name}, temp (vs do-nothing vtab, temp)", "sql", dist, "persistmap_temp",
                  "nullvtab_temp", "gets/s", None, "do-nothing vtab, temp")
    ratio_row("upsert, sync=normal vs synchronous=NORMAL", "sql", "upsert_normal", "persistmap", "sqlite",
              "commits/s", 8)
    floor_row("upsert, sync=normal", "upsert_normal", "commits/s")
    ratio_row("upsert, sync=full vs synchronous=FULL", "sql", "upsert_full", "persistmap", "sqlite", "commits/s")
    f2 = lambda v: f"{v:.2f}"
    value_row("  fsyncs per commit, 1 writer", res.get("sql", "upsert_full", "persistmap", "fsyncs_per_commit"),
              res.get("sql", "upsert_full", "sqlite", "fsyncs_per_commit"), f2, "<= 1.0", lambda v: v <= 1.0)
    ratio_row("upsert, sync=full, 4 writer threads", "sql", "upsert_full_4w", "persistmap", "sqlite", "commits/s")
    value_row("  fsyncs per commit, 4 writers", res.get("sql", "upsert_full_4w", "persistmap", "fsyncs_per_commit"),
              res.get("sql", "upsert_full_4w", "sqlite", "fsyncs_per_commit"), f2, "<= 0.5", lambda v: v <= 0.5)
    pm4 = res.get("sql", "upsert_full_4w", "persistmap")
    pm1 = res.get("sql", "upsert_full", "persistmap")
    r41 = div(pm4, pm1)
    rows.append({
        "workload": "  4 writers vs 1 writer (commit rate)", "unit": "commits/s",
        "persistmap": pm4, "baseline": pm1, "baseline_name": "persistmap, 1 writer",
        "persistmap_text": fmt_rate(pm4, "commits/s"), "baseline_text": fmt_rate(pm1, "commits/s") + " (1 writer)",
        "ratio": r41, "goal_ratio": 2.0, "goal": ">= 2x", "met": (r41 >= 2.0) if r41 is not None else None,
    })
    pm_ms = res.get("sql", "reopen", "persistmap")
    sq_ms = res.get("sql", "reopen", "sqlite")
    value_row("reopen + first get", pm_ms, sq_ms, lambda v: f"{v:.1f} ms", "<= 100 ms", lambda v: v <= 100,
              div(sq_ms, pm_ms))
    rows[-1]["chart"] = False          # an absolute goal: its ratio would only squash the chart
    ratio_row("full scan, keys and values", "sql", "full_scan", "persistmap", "sqlite", "rows/s", 1.0)
    floor_row("full scan", "full_scan", "rows/s")
    ratio_row("delete 10% of keys, 1 transaction", "sql", "delete_10pct", "persistmap", "sqlite", "rows/s", 5)
    floor_row("delete 10%", "delete_10pct", "rows/s")
    ib = res.get("sql", "memory", "persistmap", "index_bytes_per_key")
    kb = res.get("sql", "memory", "persistmap", "key_bytes") or 16
    value_row(f"index bytes per key beyond the {kb} key bytes", None if ib is None else ib - kb, None,
              lambda v: f"{v:.1f} B", "<= 48 B", lambda v: v <= 48)
    rss = res.get("sql", "memory", "persistmap")
    dbb = res.get("sql", "memory", "sqlite", "db_file_bytes")
    n = res.setup("sql").get("keys")
    value_row("RSS per key after reopen (plain: db file bytes/key)", rss,
              (dbb / n) if (dbb and n) else None, lambda v: f"{v:.0f} B")
    ratio_row("engine get, C API (vs LMDB)", "kv", "get", "persistmap", "lmdb", "gets/s", 3, "LMDB")
    ratio_row("engine get, C API (vs RocksDB)", "kv", "get", "persistmap", "rocksdb", "gets/s", None, "RocksDB")
    ratio_row("engine put, no fsync (vs RocksDB)", "kv", "put", "persistmap", "rocksdb", "puts/s", 2, "RocksDB")
    ratio_row("engine put, no fsync (vs LMDB)", "kv", "put", "persistmap", "lmdb", "puts/s", None, "LMDB")
    return rows


def met_text(m):
    return "yes" if m is True else "NO" if m is False else "-"


def baseline_cell(r):
    t = r["baseline_text"]
    if r["baseline_name"] not in ("plain SQLite",) and "(" not in t:
        t += f" ({r['baseline_name']})"
    return t


def render_text(rows):
    head = ("workload", "persistmap", "plain SQLite", "ratio", "goal", "met?")
    body = [(r["workload"], r["persistmap_text"], baseline_cell(r), fmt_ratio(r["ratio"]),
             r["goal"] or "-", met_text(r["met"])) for r in rows]
    w = [max(len(x[i]) for x in [head] + body) for i in range(len(head))]
    line = lambda cells: " | ".join(c.ljust(w[i]) if i == 0 else c.rjust(w[i]) for i, c in enumerate(cells))
    out = [line(head), "-+-".join("-" * x for x in w)] + [line(b) for b in body]
    return "\n".join(out)


def render_markdown(rows):
    out = ["| workload | persistmap | plain SQLite | ratio | goal | met? |", "|---|---:|---:|---:|---|---|"]
    for r in rows:
        out.append(f"| {r['workload'].strip()} | {r['persistmap_text']} | {baseline_cell(r)} | "
                   f"{fmt_ratio(r['ratio'])} | {r['goal'] or '-'} | {met_text(r['met'])} |")
    return "\n".join(out)


def machine():
    m = {"cpus": os.cpu_count(), "kernel": platform.release(), "machine": platform.machine()}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    m["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return m


def draw_chart(rows, png, title):
    """Horizontal bars of the ratios on a log scale, with the goals marked."""
    gp = shutil.which("gnuplot")
    if not gp:
        sys.exit("report: gnuplot is missing (Debian package gnuplot-nox)")
    pts = [r for r in rows if r["ratio"] is not None and r["ratio"] > 0 and r.get("chart", True)]
    if not pts:
        return
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "ratios.dat")
        with open(data, "w") as f:
            for i, r in enumerate(reversed(pts)):
                colour = 0x2e8b57 if r["met"] is True else 0xc0392b if r["met"] is False else 0x95a5a6
                goal = r["goal_ratio"] if r["goal_ratio"] else "NaN"
                label = r["workload"].strip().replace('"', "'")
                f.write(f'{i} {r["ratio"]:.6g} {min(1.0, r["ratio"]):.6g} {max(1.0, r["ratio"]):.6g} '
                        f'{goal} {colour} "{label}"\n')
        lo = min(min(r["ratio"] for r in pts), 0.5) / 1.5
        hi = max(max(r["ratio"] for r in pts), max((r["goal_ratio"] or 1) for r in pts)) * 1.8
        script = f"""
set terminal pngcairo size 1100,{160 + 26 * len(pts)} font "DejaVu Sans,10"
set output "{png}"
set title "{title}"
set logscale x 10
set xrange [{lo:.4g}:{hi:.4g}]
set yrange [-0.7:{len(pts) - 0.3}]
set xlabel "persistmap / baseline (higher is faster; log scale)"
set grid xtics mxtics
set key below
set arrow from 1, graph 0 to 1, graph 1 nohead lc rgb "#444444" dt 2
set style fill solid 0.85 noborder
plot "{data}" using 2:1:3:4:($1-0.36):($1+0.36):6:ytic(7) with boxxyerror lc rgb variable notitle, \\
     "" using 5:1 with points pt 9 ps 1.6 lc rgb "#1f3a93" title "goal", \\
     "" using 4:1:(sprintf("%.2fx", $2)) with labels left offset 0.6,0 font ",8" notitle
"""
        sp = os.path.join(tmp, "chart.gp")
        with open(sp, "w") as f:
            f.write(script)
        subprocess.run([gp, sp], check=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dir")
    ap.add_argument("--chart", help="write the chart of the ratios to this PNG")
    ap.add_argument("--readme", help="write the README's benchmark section (markdown) here")
    ap.add_argument("--chart-link", default="doc/bench.png", help="the chart's path as the README links it")
    a = ap.parse_args()

    recs = load_records(a.dir)
    if not recs:
        sys.exit(f"report: no results in {a.dir}")
    res = Results(recs)
    rows = build_rows(res)
    setup = res.setup("sql")
    keys = setup.get("keys") or res.setup("kv").get("keys")
    reps = setup.get("reps") or res.setup("kv").get("reps")
    meta = {
        "generated": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "keys": keys, "reps": reps, "key_bytes": 16, "value_bytes": 100,
        "sqlite": setup.get("sqlite"), "lmdb": res.setup("kv").get("lmdb"),
        "machine": machine(),
        "goals_met": sum(1 for r in rows if r["met"] is True),
        "goals_missed": sum(1 for r in rows if r["met"] is False),
    }
    with open(os.path.join(a.dir, "results.json"), "w") as f:
        json.dump({"meta": meta, "rows": rows, "records": recs}, f, indent=1)
        f.write("\n")

    print()
    print(f"persistmap benchmark: {keys} keys (16-byte keys, 100-byte values), medians of {reps} runs, "
          f"SQLite {meta['sqlite']}, {meta['machine'].get('cpus')} CPUs")
    print(render_text(rows))
    print(f"goals met: {meta['goals_met']}, missed: {meta['goals_missed']}   "
          f"(ratios: persistmap / baseline; results: {os.path.join(a.dir, 'results.json')})")

    title = f"persistmap vs baselines, {keys:,} keys, medians of {reps} runs" if keys else "persistmap"
    if a.chart:
        os.makedirs(os.path.dirname(os.path.abspath(a.chart)), exist_ok=True)
        draw_chart(rows, a.chart, title)
        print(f"chart: {a.chart}")
    if a.readme:
        m = meta["machine"]
        text = f"""## Benchmarks

`make bench` runs every benchmark in one go and ends with this table
(`make bench QUICK=1`: 100,000 keys). It writes each driver's results as
JSON lines into `build/bench/` and all of them, with this table, into
`build/bench/results.json`. Latest run: {keys:,} keys of 16 bytes, 100-byte
values, medians of {reps} runs, on {m.get('cpus')} shared cores
({m.get('cpu', m.get('machine'))}, Linux {m.get('kernel')}), Debian's SQLite
{meta['sqlite']}, LMDB {meta['lmdb']} and RocksDB; generated {meta['generated']}.

![persistmap / baseline ratios]({a.chart_link})

{render_markdown(rows)}

How to read it:

- A ratio is persistmap's rate over the baseline's (higher is faster; for
  reopen, the baseline's time over persistmap's). The baseline is the plain
  table `CREATE TABLE kv(key TEXT PRIMARY KEY, value BLOB) WITHOUT ROWID`
  unless the row names another; that baseline's figure is then in the
  "plain SQLite" column.
- Both systems run in file databases in WAL mode, driven by the same C
  program (`test/bench/bench_sql.c`) through the same prepared statements.
  The persistmap table keeps every value in memory (`cache_size='-1'`) and
  does not compact during the run (`auto_shrink=0`); the plain table gets a
  512 MB page cache, enough to hold it.
- The do-nothing virtual table (`test/bench/nullvtab.c`) answers `key = ?`
  without looking anything up, returns made-up rows to a scan and accepts
  every write without doing anything: it is the floor SQLite's
  virtual-table interface sets for each workload. Its rows under a workload
  ("do-nothing vtab vs plain") show the most any virtual table could reach
  against the plain table: a goal above that ratio cannot be met by a
  virtual table at all, and "(vs do-nothing vtab)" shows how much of what
  is left persistmap itself takes. "temp schema" rows host the persistmap
  table in `temp`, which spares SQLite's per-statement locking of the
  database file.
- fsyncs are counted by wrappers of `fdatasync`/`fsync` in the driver that
  the dynamic linker binds for libsqlite3 and persistmap alike; persistmap's
  own `fsyncs` figure agrees. "4 writer threads": four connections, each
  with the table in its `temp` schema, all on one store, against four
  connections to the plain database.
- "reopen + first get" runs in a new process (open, load the extension,
  prepare, one get) after the log was compacted with `persistmap_shrink`,
  as `auto_shrink` would have; its goal is absolute. "4 writers vs 1
  writer": with at most 0.5 fsyncs per commit the commit rate should at
  least double, which is how this table reads "the commit rate to match".
- Engine rows compare the C API (`store.h`) with LMDB and RocksDB
  (`test/bench/bench_kv.c`): gets that see the newest commit, and
  single-key commits without fsync.
- Goals are ratios measured in one run, never timed tests; the machine is
  shared and noisy, so single figures move by tens of percent between runs.
- `make bench-report` redraws this table, the chart and this section from
  the last run's `build/bench/`.
"""
        with open(a.readme, "w") as f:
            f.write(text)
        print(f"README section: {a.readme}")


if __name__ == "__main__":
    main()
