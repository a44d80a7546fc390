"""Run the bindings scenario in every language binding of test/bindings/.

Each binding's program (test/bindings/<name>/) does the same thing for real:
load the extension, create a table, insert a value of every type, read them
back by key and by prefix, commit one transaction and roll back another,
close, reopen, read again, and catch one error as that language's exception.
It runs in a fresh directory where ./persistmap.so is the build under test
(PM_EXTENSION, default the repository's persistmap.so) and prints
'ok sqlite <version>'.

Each binding first gets its Debian packages through test/deps.sh (as root:
apt-get), and is built offline where it needs building (Go against Debian's
mattn/go-sqlite3 source, Rust with Debian's cargo against Debian's crate
directory; Node's better-sqlite3 comes from npm, compiled from source
against /usr/include/node). A binding whose toolchain cannot be had fails,
saying why. One line per binding, then 'N passed, M failed'; the logs are in
build/bindings/logs/.

Usage: /usr/bin/python3 test/bindings/run.py [NAME...]   (default: all)
"""
import os
import re
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
WORK = os.path.join(REPO, "build", "bindings")
LOGS = os.path.join(WORK, "logs")
SO = os.path.abspath(os.environ.get("PM_EXTENSION") or os.path.join(REPO, "persistmap.so"))
NODE_MIN = 20                      # better-sqlite3 12 needs Node 20 or later
DEBIAN_PY = "/usr/bin/python3"


class Failed(Exception):
    pass


def run(cmd, log, cwd=None, env=None, timeout=1200):
    """Run cmd, appending its output to log; raise Failed on an error."""
    with open(log, "a") as f:
        f.write(f"\n$ {' '.join(cmd)}\n")
        f.flush()
        try:
            proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=f, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise Failed(f"{cmd[0]} timed out after {timeout} s")
        except OSError as e:
            raise Failed(f"cannot run {cmd[0]}: {e}")
    if proc.returncode != 0:
        raise Failed(f"{' '.join(cmd[:3])} exited with {proc.returncode}")


def deps(pkgs, log):
    try:
        run(["sh", os.path.join(REPO, "test", "deps.sh"), *pkgs], log, timeout=1800)
    except Failed:
        raise Failed(f"cannot install Debian packages {' '.join(pkgs)}")


def need(path, why):
    if not os.path.exists(path):
        raise Failed(f"{path} is missing ({why})")
    return path


# ---- the bindings: each returns the command that runs its scenario --------

def prep_shell(log):
    deps(["sqlite3"], log)
    return ["sh", os.path.join(HERE, "shell", "scenario.sh")], None


def prep_python(log):
    deps(["python3"], log)
    return [DEBIAN_PY, os.path.join(HERE, "python", "scenario.py")], None


def prep_python_ctypes(log):
    # The first python3 on PATH: pyenv's on developer machines, whose sqlite3
    # module has no enable_load_extension. Debian's when there is no other.
    deps(["python3"], log)
    py = shutil.which("python3") or DEBIAN_PY
    return [py, os.path.join(HERE, "python", "no_load_extension.py")], None


def prep_apsw(log):
    deps(["python3-apsw"], log)
    return [DEBIAN_PY, os.path.join(HERE, "apsw", "scenario.py")], None


def prep_tcl(log):
    deps(["tcl", "libsqlite3-tcl"], log)
    return ["tclsh", os.path.join(HERE, "tcl", "scenario.tcl")], None


def prep_perl(log):
    deps(["perl", "libdbd-sqlite3-perl"], log)
    return ["perl", os.path.join(HERE, "perl", "scenario.pl")], None


def prep_ruby(log):
    deps(["ruby", "ruby-sqlite3"], log)
    return ["ruby", os.path.join(HERE, "ruby", "scenario.rb")], None


def prep_go(log):
    deps(["golang-go", "golang-github-mattn-go-sqlite3-dev", "libsqlite3-dev", "gcc"], log)
    need("/usr/share/gocode/src/github.com/mattn/go-sqlite3/go.mod", "the go.mod replace points there")
    out = os.path.join(WORK, "go")
    src = os.path.join(out, "src")             # go may write go.sum beside go.mod
    shutil.rmtree(src, ignore_errors=True)
    shutil.copytree(os.path.join(HERE, "go"), src)
    env = dict(os.environ, GOPROXY="off", GOFLAGS="-mod=mod", GO111MODULE="on", CGO_ENABLED="1",
               GOPATH=os.path.join(out, "gopath"), GOCACHE=os.path.join(out, "gocache"),
               GOTOOLCHAIN="local")
    exe = os.path.join(out, "scenario")
    run(["/usr/bin/go", "build", "-o", exe, "."], log, cwd=src, env=env)
    return [exe], None


def prep_rust(log):
    deps(["cargo", "rustc", "librust-rusqlite-dev", "libsqlite3-dev", "pkg-config"], log)
    out = os.path.join(WORK, "rust")
    src = os.path.join(out, "src")            # cargo writes Cargo.lock beside Cargo.toml
    home = os.path.join(out, "cargo-home")
    shutil.rmtree(src, ignore_errors=True)
    shutil.copytree(os.path.join(HERE, "rust"), src,
                    ignore=shutil.ignore_patterns("target", "Cargo.lock"))
    os.makedirs(home, exist_ok=True)
    shutil.copy(os.path.join(HERE, "rust", "cargo-config.toml"), os.path.join(home, "config.toml"))
    # Debian's cargo and rustc, not a rustup toolchain that may come first on PATH.
    env = dict(os.environ, CARGO_HOME=home, CARGO_TARGET_DIR=os.path.join(out, "target"),
               RUSTC="/usr/bin/rustc", RUSTDOC="/usr/bin/rustdoc",
               PATH="/usr/bin:" + os.environ.get("PATH", ""))
    run(["/usr/bin/cargo", "build", "--offline", "--quiet"], log, cwd=src, env=env)
    return [os.path.join(out, "target", "debug", "persistmap-scenario")], None


def prep_node(log):
    # better-sqlite3 compiles with node-gyp: g++, make and python3. Debian's
    # own nodejs (18) is too old, so it is not installed here: the machine
    # must have Node 20 or later (NodeSource's nodejs, say) with its headers.
    deps(["g++", "make", "python3"], log)
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        raise Failed(f"needs Node {NODE_MIN}+ and npm on PATH (Debian 12's nodejs is 18, too old)")
    version = subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip()
    major = int(re.match(r"v(\d+)", version).group(1)) if re.match(r"v\d+", version) else 0
    if major < NODE_MIN:
        raise Failed(f"needs Node {NODE_MIN}+ for better-sqlite3 12, found {version or 'none'}")
    nodedir = os.environ.get("npm_config_nodedir", "/usr")
    need(os.path.join(nodedir, "include", "node", "node.h"), "Node's headers, to compile better-sqlite3")
    out = os.path.join(WORK, "node")
    os.makedirs(out, exist_ok=True)
    files = ("package.json", "package-lock.json", "scenario.js")
    for f in files:
        shutil.copy(os.path.join(HERE, "node", f), out)
    addon = os.path.join(out, "node_modules", "better-sqlite3", "build", "Release", "better_sqlite3.node")
    stamp = os.path.join(out, ".installed")
    want = "".join(open(os.path.join(HERE, "node", f)).read() for f in files[:2]) + version
    if not (os.path.exists(addon) and os.path.exists(stamp) and open(stamp).read() == want):
        # The versions of package-lock.json, compiled from source: no prebuilt
        # binary is downloaded (nor could be).
        env = dict(os.environ, npm_config_nodedir=nodedir, npm_config_build_from_source="true",
                   npm_config_jobs="2")
        run([npm, "ci", "--no-audit", "--no-fund", "--build-from-source"],
            log, cwd=out, env=env, timeout=1800)
        need(addon, "npm install did not build better-sqlite3")
        with open(stamp, "w") as f:
            f.write(want)
    return [node, os.path.join(out, "scenario.js")], f"Node {version}"


BINDINGS = [
    ("sqlite3-shell", prep_shell),
    ("python-sqlite3", prep_python),
    ("python-ctypes", prep_python_ctypes),
    ("apsw", prep_apsw),
    ("tcl", prep_tcl),
    ("perl-dbd-sqlite", prep_perl),
    ("ruby-sqlite3", prep_ruby),
    ("go-mattn-sqlite3", prep_go),
    ("rust-rusqlite", prep_rust),
    ("node-better-sqlite3", prep_node),
]


def one(name, prep):
    """Prepare and run one binding: (passed, line)."""
    log = os.path.join(LOGS, f"{name}.log")
    open(log, "w").close()
    t0 = time.monotonic()
    try:
        cmd, note = prep(log)
        t1 = time.monotonic()
        cwd = os.path.join(WORK, "run", name)
        shutil.rmtree(cwd, ignore_errors=True)
        os.makedirs(cwd)
        os.symlink(SO, os.path.join(cwd, "persistmap.so"))
        before = os.path.getsize(log)
        run(cmd, log, cwd=cwd, timeout=300)
        with open(log) as f:
            f.seek(before)
            m = re.search(r"^ok sqlite (\S+)(.*)$", f.read(), re.M)
        if not m:
            raise Failed("the scenario did not print 'ok sqlite <version>'")
        t2 = time.monotonic()
        extra = ", ".join(x for x in (note, m.group(2).strip(" ()"), cmd[0] if "python" in name else "")
                          if x)
        return True, (f"PASS  {name:20} SQLite {m.group(1):8} prepare {t1 - t0:5.1f} s, "
                      f"run {t2 - t1:4.1f} s{'  (' + extra + ')' if extra else ''}")
    except Failed as e:
        with open(log) as f:
            tail = f.read().strip().splitlines()[-15:]
        detail = "".join(f"\n      | {line}" for line in tail)
        return False, f"FAIL  {name:20} {e} (log: {os.path.relpath(log, REPO)}){detail}"


def main():
    names = sys.argv[1:]
    unknown = [n for n in names if n not in dict(BINDINGS)]
    if unknown:
        sys.exit(f"unknown binding(s): {' '.join(unknown)}; known: {' '.join(n for n, _ in BINDINGS)}")
    if not os.path.exists(SO):
        sys.exit(f"{SO} is missing: run make first")
    os.makedirs(LOGS, exist_ok=True)
    passed = failed = 0
    for name, prep in BINDINGS:
        if names and name not in names:
            continue
        ok, line = one(name, prep)
        print(line, flush=True)
        passed += ok
        failed += not ok
    print(f"{passed} passed, {failed} failed", flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
