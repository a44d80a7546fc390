"""Store files whose checksums hold but whose contents lie: the cases the
fuzzers of test/fuzz/ found, written out as plain tests. Each store gets
its damage, then is opened, read, checked and recovered through SQL.

Checksums are recomputed with Debian's libxxhash (XXH3-64), as the
README's on-disk format describes them.
"""
import ctypes
import os
import struct
import subprocess
import sys

import pytest

from conftest import EXT, connect, error_of, stats

XXH = ctypes.CDLL("libxxhash.so.0")
XXH.XXH3_64bits.restype = ctypes.c_uint64
XXH.XXH3_64bits.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
XXH.XXH3_64bits_withSeed.restype = ctypes.c_uint64
XXH.XXH3_64bits_withSeed.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint64]

SEG_HEADER = 64


def xxh3(data, seed=None):
    if seed is None:
        return XXH.XXH3_64bits(data, len(data))
    return XXH.XXH3_64bits_withSeed(data, len(data), seed)


def rows(con):
    """Every row, by a scan and by one lookup per key (which read values
    by different paths), and the two must agree."""
    scanned = con.execute("SELECT key, value FROM kv ORDER BY key").fetchall()
    looked_up = [(k, con.execute("SELECT value FROM kv WHERE key = ?", (k,)).fetchone()[0])
                 for k, _ in scanned]
    assert looked_up == scanned
    return scanned


@pytest.fixture
def store(tmp):
    """tmp/test.db with kv on kv.pmap: three segments (two sealed, with
    hint files), then closed. Returns (db path, store dir, rows)."""
    db = str(tmp / "test.db")
    con = connect(db)
    con.execute("CREATE VIRTUAL TABLE kv USING persistmap(path='kv.pmap', segment_size='64KB', auto_shrink=0)")
    for i in range(90):
        con.execute("INSERT OR REPLACE INTO kv VALUES (?, ?)", (f"k{i % 60:02d}", bytes([i]) * (1000 + 37 * i)))
    want = rows(con)
    con.close()
    d = tmp / "kv.pmap"
    assert (d / "000001.hint").exists() and (d / "000002.hint").exists() and active_segment(d) >= 3
    return db, d, want


def active_segment(d):
    """The number of the segment the manifest says is appended to."""
    return struct.unpack_from("<I", (d / "MANIFEST").read_bytes(), 96)[0]


def fix_hint(path, seg_len):
    data = bytearray(path.read_bytes())
    struct.pack_into("<Q", data, 40, seg_len)
    struct.pack_into("<Q", data, len(data) - 8, xxh3(bytes(data[:-8])))
    path.write_bytes(bytes(data))


def test_a_short_hint_file_is_read_around(store):
    db, d, want = store
    (d / "000001.hint").write_bytes((d / "000001.hint").read_bytes()[:66])
    con = connect(db)
    assert rows(con) == want
    assert "hint 000001.hint is corrupt or stale" in con.execute("SELECT persistmap_check('kv')").fetchone()[0]
    con.close()


def test_a_hint_whose_value_length_runs_past_its_segment_is_not_trusted(store):
    db, d, want = store
    hint = d / "000001.hint"
    data = bytearray(hint.read_bytes())
    at, found = SEG_HEADER, False
    while at < len(data) - 8:                  # the entry of k35, a live row
        klen = struct.unpack_from("<I", data, at + 4)[0]
        if data[at + 32:at + 32 + klen] == b"k35":
            struct.pack_into("<I", data, at + 8, 0x3FFFFFF0)      # its value length
            found = True
            break
        at += 32 + (klen + 7) // 8 * 8
    assert found
    hint.write_bytes(bytes(data))
    fix_hint(hint, (d / "000001.log").stat().st_size)
    con = connect(db)
    assert rows(con) == want                 # the segment was read instead
    con.close()


def test_a_manifest_too_short_for_its_fields_is_refused(store):
    db, d, _ = store
    head = b"PMAPMAN1" + struct.pack("<II", 1, 24)
    (d / "MANIFEST").write_bytes(head + struct.pack("<Q", xxh3(head)))
    # In a child: a crash must not take the test runner with it.
    code = ("import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.enable_load_extension(True); "
            "c.load_extension(sys.argv[2])\n"
            "try:\n    c.execute('SELECT count(*) FROM kv').fetchall()\nexcept sqlite3.Error as e:\n    print(e)")
    proc = subprocess.run(["/usr/bin/python3", "-c", code, db, EXT], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "persistmap:" in proc.stdout


def record(seed, rtype, key, vtype, value, seq):
    head = struct.pack("<BBBBIIIQ", rtype, 3 if key else 0, vtype, 0, len(key), len(value), 0, seq)
    body = head + key + value
    rec = struct.pack("<Q", xxh3(body, seed)) + body
    return rec + b"\0" * (-len(rec) % 8)


def test_a_group_that_does_not_match_its_commit_is_dropped_by_recover(store):
    db, d, want = store
    man = (d / "MANIFEST").read_bytes()
    num = active_segment(d)
    seed = struct.unpack_from("<Q", man, 32)[0] ^ ((num * 0x9E3779B97F4A7C15) & (2 ** 64 - 1))
    active = d / f"{num:06d}.log"
    # A put, then a commit whose count and first-record position lie.
    tail = record(seed, 1, b"ghost", 3, b"boo", 10 ** 6) + record(seed, 3, b"", 4, b"\xff" * 32, 10 ** 6)
    with open(active, "ab") as f:
        f.write(tail)
    con = connect(db)
    err = error_of(con, "SELECT * FROM kv")
    assert "corrupt" in str(err) and active.name in str(err)
    report = con.execute("SELECT persistmap_recover('kv')").fetchone()[0]
    assert '"damaged":true' in report and '"dropped_transactions":1' in report
    assert rows(con) == want
    assert con.execute("SELECT persistmap_check('kv')").fetchone()[0] == "ok"
    con.close()
    con = connect(db)
    assert rows(con) == want
    con.close()


def test_stats_when_no_integer_key_is_left(kv):
    kv.execute("INSERT INTO kv VALUES (9223372036854775807, 'last')")
    assert stats(kv)["next_int_key"] is None
    err = error_of(kv, "INSERT INTO kv VALUES (NULL, 'x')")
    assert "no integer key is left" in str(err)
    kv.execute("DELETE FROM kv")
    assert stats(kv)["next_int_key"] is None          # never reused


def test_an_active_segment_marked_as_a_compactions_output_keeps_its_rows(store):
    """The manifest says which segment is appended to; a header byte saying
    otherwise must not make the first writer cut that segment's groups off."""
    db, d, want = store
    active = d / f"{active_segment(d):06d}.log"
    data = bytearray(active.read_bytes())
    data[36] = 1                                   # kind: a compaction's output
    struct.pack_into("<Q", data, 56, xxh3(bytes(data[:56])))
    active.write_bytes(bytes(data))
    con = connect(db)
    con.execute("INSERT INTO kv VALUES ('new', 1)")
    assert rows(con) == sorted(want + [("new", 1)])
    con.close()
    con = connect(db)
    assert rows(con) == sorted(want + [("new", 1)])
    assert con.execute("SELECT persistmap_check('kv')").fetchone()[0] == "ok"
    con.close()
