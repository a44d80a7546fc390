"""Check an strace file trace: nothing outside the allowed directories was
created, written, renamed or removed.

    check_file_trace.py TRACE --cwd DIR --allow DIR [--allow DIR...] [--scripts GLOB]

TRACE comes from `strace -f -y -qq -o TRACE -e trace=<the calls below>`
started in DIR. Every successful call that creates, opens for writing,
truncates, renames, links or removes a path is resolved to an absolute
path (strace -y shows the directory of the *at calls; the others follow
each process's working directory through fork, chdir and fchdir) and must
lie under an --allow directory, or in a store directory that an example
script (--scripts) names with path='...', or be /dev/null, /dev/tty, a
terminal, or under /proc or /sys (a thread naming itself writes
/proc/self/task/N/comm). Prints a summary; exits 1 and lists the paths if
any lies elsewhere.
"""
import argparse
import glob
import os
import re
import sys

WRITE_FLAGS = ("O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC", "O_TMPFILE")
# call -> indexes of the path arguments it modifies (None: open flags decide)
MODIFIES = {
    "open": None, "openat": None, "openat2": None, "creat": [0],
    "mkdir": [0], "mkdirat": [1], "rmdir": [0], "unlink": [0], "unlinkat": [1],
    "rename": [0, 1], "renameat": [1, 3], "renameat2": [1, 3],
    "link": [1], "linkat": [3], "symlink": [1], "symlinkat": [2],
    "truncate": [0], "mknod": [0], "mknodat": [1],
}
AT_CALLS = {"openat", "openat2", "mkdirat", "unlinkat", "renameat", "renameat2", "linkat",
            "symlinkat", "mknodat"}
LINE = re.compile(r"^(\d+)\s+(?:<\.\.\. (\w+) resumed>|(\w+)\()(.*)$")
RESULT = re.compile(r"\)\s+=\s+(-?\d+|\?)")


def split_args(s):
    """Top-level comma-separated arguments of a call's argument text."""
    args, depth, cur, quote, esc = [], 0, "", False, False
    for ch in s:
        if quote:
            cur += ch
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                quote = False
            continue
        if ch == '"':
            quote = True
            cur += ch
        elif ch in "([{<":
            depth += 1
            cur += ch
        elif ch in ")]}>":
            if depth == 0:
                break
            depth -= 1
            cur += ch
        elif ch == "," and depth == 0:
            args.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        args.append(cur.strip())
    return args


def unquote(arg):
    m = re.match(r'^"((?:[^"\\]|\\.)*)"', arg)
    if not m:
        return None
    return bytes(m.group(1), "utf-8").decode("unicode_escape").encode("latin-1").decode("utf-8", "replace")


def fd_path(arg):
    """The path strace -y shows for a descriptor argument: 3</a/b>, or
    AT_FDCWD</a> (the working directory)."""
    m = re.match(r"^(?:-?\d+|AT_FDCWD)<(.*)>$", arg)
    return m.group(1) if m else None


def resolve(base, path):
    return os.path.normpath(path if os.path.isabs(path) else os.path.join(base, path))


def parse(trace, start_cwd):
    """Yield (pid, call, [modified absolute paths]) for successful calls."""
    cwd = {}
    pending = {}
    first = True
    with open(trace, errors="replace") as f:
        for raw in f:
            line = raw.rstrip("\n")
            m = LINE.match(line)
            if not m:
                continue
            pid = int(m.group(1))
            if first:
                cwd[pid] = start_cwd
                first = False
            if m.group(2):                       # "<... call resumed> rest"
                call = m.group(2)
                text = pending.pop(pid, "") + m.group(4)
            else:
                call = m.group(3)
                text = m.group(4)
                if text.endswith("<unfinished ...>"):
                    pending[pid] = text[: -len("<unfinished ...>")]
                    continue
            here = cwd.get(pid, start_cwd)
            r = RESULT.search(text)
            ret = r.group(1) if r else "?"
            ok = ret not in ("?",) and not ret.startswith("-")
            if call in ("clone", "clone3", "fork", "vfork") and ok:
                cwd.setdefault(int(ret), here)     # the child may have run (and chdir'ed) first
                continue
            if not ok:
                continue
            args = split_args(text)
            if call == "chdir":
                p = unquote(args[0]) if args else None
                if p is not None:
                    cwd[pid] = resolve(here, p)
                continue
            if call == "fchdir":
                p = fd_path(args[0]) if args else None
                if p:
                    cwd[pid] = p
                continue
            if call not in MODIFIES:
                continue
            idx = MODIFIES[call]
            if idx is None:
                at = 1 if call in ("openat", "openat2") else 0
                flags = args[at + 1] if len(args) > at + 1 else ""
                if not any(f in flags for f in WRITE_FLAGS):
                    continue
                idx = [at]
            paths = []
            for i in idx:
                if i >= len(args):
                    continue
                p = unquote(args[i])
                if p is None:
                    continue
                base = here
                # the *at calls: the directory descriptor comes just before the path
                if call in AT_CALLS and i > 0:
                    dp = fd_path(args[i - 1])
                    if dp:
                        base = dp
                paths.append(resolve(base, p))
            yield pid, call, paths


def script_stores(pattern):
    stores = set()
    for path in glob.glob(pattern):
        stores.update(re.findall(r"path='(/[^']+)'", open(path).read()))
    return stores


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("trace")
    ap.add_argument("--cwd", required=True)
    ap.add_argument("--allow", action="append", default=[])
    ap.add_argument("--scripts", default=None)
    a = ap.parse_args()
    allow = [os.path.normpath(os.path.abspath(p)) for p in a.allow]
    stores = script_stores(a.scripts) if a.scripts else set()
    allow += sorted(stores)
    fixed = {"/dev/null", "/dev/tty"}
    calls = 0
    bad = {}
    for pid, call, paths in parse(a.trace, os.path.abspath(a.cwd)):
        for p in paths:
            calls += 1
            if p in fixed or p.startswith(("/dev/pts/", "/proc/", "/sys/")):
                continue
            if any(p == d or p.startswith(d + "/") for d in allow):
                continue
            bad.setdefault(p, set()).add(call)
    where = ", ".join(allow[:len(allow) - len(stores)])
    if stores:
        where += f" and the {len(stores)} stores the example scripts name"
    print(f"file trace: {calls} paths created, written, renamed or removed; {len(bad)} outside {where}")
    for p in sorted(bad)[:50]:
        print(f"  outside: {p} ({', '.join(sorted(bad[p]))})")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
