"""test/check_file_trace.py, the file-trace check of make test: it must
notice a path created, written, renamed or removed outside the allowed
directories, however the call names it, and let everything inside pass."""
import os
import shutil
import subprocess
import sys

import pytest

from conftest import REPO

CHECK = os.path.join(REPO, "test", "check_file_trace.py")
PY = "/usr/bin/python3"

# strace -f -y -qq -e status=successful output, as strace 6 writes it.
TRACE = """\
100   mkdir("/w/a", 0777)          = 0
100   openat(AT_FDCWD</w>, "/w/a/x", O_WRONLY|O_CREAT|O_TRUNC|O_CLOEXEC, 0666) = 3</w/a/x>
100   openat(AT_FDCWD</w>, "/etc/passwd", O_RDONLY|O_CLOEXEC) = 3</etc/passwd>
100   chdir("a")                = 0
100   openat(AT_FDCWD</w/a>, "y", O_WRONLY|O_CREAT|O_TRUNC|O_CLOEXEC, 0666) = 3</w/a/y>
100   rename("y", "z")                  = 0
100   vfork( <unfinished ...>
101   chdir("/w/a/sub")                = 0
100   <... vfork resumed>)              = 101
101   unlink("f")                       = 0
101   openat(AT_FDCWD</w/a/sub>, "/proc/self/task/101/comm", O_RDWR) = 3</proc/101/task/101/comm>
101   openat(AT_FDCWD</w/a/sub>, "/dev/null", O_WRONLY|O_CREAT|O_TRUNC, 0666) = 3</dev/null>
100   mkdirat(3</w/a>, "q", 0777)       = 0
100   symlinkat("/elsewhere", 4</w/a>, "link") = 0
"""


def check(tmp, trace, *allow, scripts=None):
    path = tmp / "trace"
    path.write_text(trace)
    args = [PY, CHECK, str(path), "--cwd", "/w"] + [x for a in allow for x in ("--allow", a)]
    if scripts:
        args += ["--scripts", scripts]
    return subprocess.run(args, capture_output=True, text=True)


def test_everything_inside_passes(tmp):
    proc = check(tmp, TRACE, "/w/a")
    assert proc.returncode == 0, proc.stdout
    assert "10 paths created, written, renamed or removed; 0 outside /w/a" in proc.stdout


@pytest.mark.parametrize("line, path", [
    ('100   openat(AT_FDCWD</w>, "../etc/x", O_WRONLY|O_CREAT, 0644) = 3</etc/x>', "/etc/x"),
    ('100   openat(AT_FDCWD</w/a>, "/tmp/out", O_RDWR) = 3</tmp/out>', "/tmp/out"),
    ('100   creat("/var/tmp/c", 0644) = 3', "/var/tmp/c"),
    ('100   unlink("../gone") = 0', "/w/gone"),
    ('100   unlinkat(5</home>, "f", 0) = 0', "/home/f"),
    ('100   rename("/w/a/in", "/w/out") = 0', "/w/out"),
    ('100   renameat2(AT_FDCWD</w/a>, "x", AT_FDCWD</w/a>, "../../x", RENAME_NOREPLACE) = 0', "/x"),
    ('100   linkat(AT_FDCWD</w/a>, "x", 6</srv>, "y", 0) = 0', "/srv/y"),
    ('100   truncate("/w/t", 0) = 0', "/w/t"),
    ('100   mkdir("/w/a/../../d", 0777) = 0', "/d"),
    ('100   openat(AT_FDCWD</w/a>, "/dev/shm/s", O_RDWR|O_CREAT, 0600) = 3</dev/shm/s>', "/dev/shm/s"),
    ('100   clone3({flags=CLONE_VM, ...}, 88) = 102\n102   chdir("/opt") = 0\n'
     '102   mkdir("new", 0777) = 0', "/opt/new"),
])
def test_a_path_outside_is_reported(tmp, line, path):
    proc = check(tmp, TRACE + line + "\n", "/w/a")
    assert proc.returncode == 1, proc.stdout
    assert f"outside: {path} " in proc.stdout
    assert "; 1 outside" in proc.stdout


def test_failed_calls_and_reads_do_not_count(tmp):
    trace = ('100   openat(AT_FDCWD</w>, "/etc/x", O_WRONLY|O_CREAT, 0644) = -1 EACCES (Permission denied)\n'
             '100   openat(AT_FDCWD</w>, "/etc/hosts", O_RDONLY) = 3</etc/hosts>\n')
    assert check(tmp, trace, "/w/a").returncode == 0


def test_stores_named_by_the_example_scripts_are_allowed(tmp):
    (tmp / "ex.sql").write_text("CREATE VIRTUAL TABLE temp.kv USING persistmap(path='/tmp/pm-ex.pmap');\n")
    trace = ('100   mkdir("/tmp/pm-ex.pmap", 0755) = 0\n'
             '100   openat(AT_FDCWD</w>, "/tmp/pm-ex.pmap/MANIFEST.tmp", O_WRONLY|O_CREAT, 0644) = 3\n'
             '100   mkdir("/tmp/pm-ex.pmap2", 0755) = 0\n')
    proc = check(tmp, trace, "/w/a", scripts=str(tmp / "*.sql"))
    assert proc.returncode == 1
    assert "outside: /tmp/pm-ex.pmap2 " in proc.stdout and "; 1 outside" in proc.stdout


def test_a_real_trace(tmp):
    """strace itself, on a process that writes inside and outside."""
    if os.environ.get("PM_FILE_TRACE") or not shutil.which("strace"):
        pytest.skip("needs strace, and no strace around this test")
    inside, outside = tmp / "in", tmp / "out"
    inside.mkdir()
    code = (f"import os; open({str(inside / 'f')!r}, 'w').write('x'); os.chdir({str(inside)!r}); "
            f"os.rename('f', 'g'); os.mkdir({str(outside)!r}); os.rmdir({str(outside)!r})")
    trace = tmp / "trace"
    proc = subprocess.run(["strace", "-f", "-y", "-qq", "--seccomp-bpf", "-e", "status=successful",
                           "-e", "trace=openat,mkdir,rmdir,rename,chdir,clone,clone3,vfork",
                           "-o", str(trace), PY, "-c", code], capture_output=True, text=True)
    if proc.returncode != 0 and "ptrace" in proc.stderr:
        pytest.skip("ptrace is not allowed here: " + proc.stderr.strip())
    assert proc.returncode == 0, proc.stderr
    res = subprocess.run([PY, CHECK, str(trace), "--cwd", str(tmp), "--allow", str(inside)],
                         capture_output=True, text=True)
    assert res.returncode == 1
    assert f"outside: {outside} (mkdir, rmdir)" in res.stdout
    assert str(inside) not in res.stdout.split("outside:", 1)[1]
