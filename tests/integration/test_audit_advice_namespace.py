"""Every recommendation, followed literally, clears its finding and raises no other.

Each scenario seeds a problem in a network namespace with its own mount namespace
(empty sysctl.d directories and /etc/sysctl.conf, so only the scenario's files
count), gathers the facts there with `ansible localhost -m portpool_facts`, and
judges them with the audit. Then, finding by finding, the first offered fix is
carried out as a user would: each file line pasted into the named file (replacing
that key's line), each deleted line removed, each shell line run through `sh -c`,
and `sysctl -p` must accept the files. The next audit must not show the finding,
nor any rule that did not fire before.
"""

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from ansible.module_utils import portpool_audit as audit

pytestmark = pytest.mark.root

REPO = Path(__file__).resolve().parent.parent.parent
SYSCTL_DIRS = ("/etc/sysctl.d", "/run/sysctl.d", "/usr/local/lib/sysctl.d",
               "/usr/lib/sysctl.d", "/lib/sysctl.d")
# Hides the machine's sysctl files inside the namespace only (private propagation),
# and gives it its own netns folder: with its own PID namespace and /proc too, the
# host sees only its own processes and namespaces, as a machine does.
HOLDER = """
set -e
if [ -d /run/netns ]; then mount -t tmpfs -o mode=0755 tmpfs /run/netns; fi
for dir in %s; do
  if [ -d "$dir" ] && [ ! -L "$dir" ]; then mount -t tmpfs -o mode=0755 tmpfs "$dir"; fi
done
if [ -e /etc/sysctl.conf ]; then mount --bind /dev/null /etc/sysctl.conf; fi
echo ready
exec sleep 300
""" % " ".join(SYSCTL_DIRS)


@contextlib.contextmanager
def namespace():
    """A process holding fresh network, mount and PID namespaces; yield the pid of its
    init (as this machine sees it); always stop it."""
    proc = subprocess.Popen(
        ["unshare", "--net", "--mount", "--pid", "--fork", "--kill-child", "--mount-proc",
         "--propagation", "private", "--", "sh", "-c", HOLDER],
        stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.strip() == "ready", "namespace did not start: %r" % line
        with open("/proc/%d/task/%d/children" % (proc.pid, proc.pid), encoding="ascii") as f:
            yield int(f.read().split()[0])
    finally:
        proc.kill()
        proc.wait(timeout=10)


def inside(pid, argv, stdin=None):
    # nsenter -m starts in the namespace's root directory: name the project's config.
    env = dict(os.environ, LANG="C.UTF-8", LC_ALL="C.UTF-8",
               ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
               PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))
    return subprocess.run(["nsenter", "-t", str(pid), "-n", "-m", "-p", "--wd=%s" % REPO, "--",
                           *argv],
                          input=stdin, capture_output=True, text=True, env=env, cwd=REPO,
                          timeout=120, check=False)


def sh(pid, script):
    result = inside(pid, ["sh", "-c", script])
    assert result.returncode == 0, "%s: %s%s" % (script, result.stdout, result.stderr)
    return result.stdout


def read(pid, path):
    result = inside(pid, ["cat", path])
    return result.stdout if result.returncode == 0 else ""


def write(pid, path, text):
    result = inside(pid, ["sh", "-c", 'cat > "$0"', path], stdin=text)
    assert result.returncode == 0, result.stderr


def line_key(line):
    if "=" not in line or line.lstrip().startswith(("#", ";")):
        return None
    return line.split("=", 1)[0].strip().lstrip("-").strip()


def without_key(text, key):
    return "".join(line + "\n" for line in text.splitlines() if line_key(line) != key)


def carry_out(pid, fix):
    """Do what the fix says, literally, the way a user pastes it."""
    for item in fix["delete"]:
        write(pid, item["file"], without_key(read(pid, item["file"]), item["key"]))
    if fix["file"]:
        text = read(pid, fix["file"])
        for line in fix["file_lines"]:
            text = without_key(text, line_key(line))
        write(pid, fix["file"], text + "".join(line + "\n" for line in fix["file_lines"]))
    for path in {fix["file"], *(item["file"] for item in fix["delete"])} - {None}:
        # The pasted file must be one the kernel accepts (quotes would be EINVAL).
        sh(pid, "sysctl -q -p %s >/dev/null" % path)
    for line in fix["shell"]:
        sh(pid, line)


def judge(pid):
    result = inside(pid, ["ansible", "localhost", "-o", "-m", "portpool_facts"])
    assert result.returncode == 0, result.stdout + result.stderr
    line = next(line for line in result.stdout.splitlines()
                if line.startswith("localhost | SUCCESS => "))
    registered = json.loads(line.split(" => ", 1)[1])
    ctx = audit.context_from_result("ns", ["test"], registered, {})
    assert ctx.status == "ok", ctx.error
    return audit.evaluate([ctx])["ns"]


def seed(pid, runtime, files):
    for key, value in runtime.items():
        sh(pid, "sysctl -q -w '%s=%s'" % (key, value))
    for path, lines in files.items():
        write(pid, path, "".join(line + "\n" for line in lines))


SCENARIOS = {
    # The newcomer's proxy1: a 1000-port range, at runtime and in a boot file.
    "tiny range": (
        {"net.ipv4.ip_local_port_range": "40000 40999"},
        {"/etc/sysctl.d/60-ports.conf": ["net.ipv4.ip_local_port_range = 40000 40999"]},
        {"PP001"}),
    # A quoted value in a boot file: the kernel rejects it, so it is drift too.
    "quoted value": (
        {},
        {"/etc/sysctl.d/60-ports.conf": ['net.ipv4.ip_local_port_range = "32768 60999"']},
        {"PP011", "PP018"}),
    # After a tune: portpool's file sets the wide range, an older file overrides it.
    "overridden tune": (
        {"net.ipv4.ip_local_port_range": "15000 64999"},
        {"/etc/sysctl.d/60-portpool.conf": ["net.ipv4.ip_local_port_range = 15000 64999"],
         "/etc/sysctl.d/60-ports.conf": ["net.ipv4.ip_local_port_range = 40000 40999"]},
        {"PP011", "PP012"}),
    # proxy3: reuse asked for, timestamps off by a hardening file.
    "reuse without timestamps": (
        {"net.ipv4.tcp_timestamps": "0", "net.ipv4.tcp_tw_reuse": "1"},
        {"/etc/sysctl.d/50-hardening.conf": ["net.ipv4.tcp_timestamps = 0"],
         "/etc/sysctl.d/70-proxy.conf": ["net.ipv4.tcp_tw_reuse = 1"]},
        {"PP005"}),
    # tcp_fin_timeout lowered in a file and at runtime.
    "fin timeout": (
        {"net.ipv4.tcp_fin_timeout": "15"},
        {"/etc/sysctl.d/80-fin.conf": ["net.ipv4.tcp_fin_timeout = 15"]},
        {"PP008"}),
}


LISTENER = """
import socket, sys, time
server = socket.socket()
server.bind(("127.0.0.1", int(sys.argv[1])))
server.listen(1)
print("listening", flush=True)
time.sleep(120)
"""


@contextlib.contextmanager
def listener(pid, port):
    """A service listening on `port` inside the namespace; always stopped."""
    proc = subprocess.Popen(["nsenter", "-t", str(pid), "-n", "--", sys.executable, "-c",
                             LISTENER, str(port)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "listening"
        yield
    finally:
        proc.kill()
        proc.wait(timeout=10)


@pytest.mark.parametrize("name", [*sorted(SCENARIOS), "listener in range"])
def test_each_recommendation_applied_literally_clears_its_finding(name):
    runtime, files, expected = SCENARIOS.get(name, ({}, {}, {"PP004"}))
    with namespace() as pid, contextlib.ExitStack() as stack:
        if name == "listener in range":  # the newcomer's proxy2: a service on 45000
            sh(pid, "ip link set lo up")
            stack.enter_context(listener(pid, 45000))
        seed(pid, runtime, files)
        found = judge(pid)
        assert expected <= {item["id"] for item in found}, found
        for item in found:
            for fix in item["fixes"]:
                for line in fix["file_lines"]:
                    assert '"' not in line and "'" not in line, line
        done = set()
        for _round in range(10):  # bounded: each round fixes one finding
            todo = [item for item in found if item["fixes"] and item["id"] not in done]
            if not todo:
                break
            item = todo[0]
            carry_out(pid, item["fixes"][0])
            after = judge(pid)
            assert (item["id"], item["message"]) not in {
                (other["id"], other["message"]) for other in after}, item
            new = {other["id"] for other in after} - {other["id"] for other in found}
            assert not new, "%s's fix raised %s: %s" % (item["id"], new, after)
            done.add(item["id"])
            found = after
        assert not expected & {item["id"] for item in found}, found


def test_advice_never_undoes_portpool_file():
    """The overridden-tune host: no fix deletes from portpool's file or restores 1000 ports."""
    runtime, files, _expected = SCENARIOS["overridden tune"]
    with namespace() as pid:
        seed(pid, runtime, files)
        found = judge(pid)
    for item in found:
        for fix in item["fixes"]:
            assert all(gone["file"] != "/etc/sysctl.d/60-portpool.conf"
                       for gone in fix["delete"]), item
            assert "40000 40999" not in json.dumps(fix["settings"]), item
    (drift,) = [item for item in found if item["id"] == "PP011"]
    assert "PP001" in drift["fixes_refused"][0]["reason"]
    assert "Not offered" in drift["recommendation"]


def test_a_host_without_root_is_judged_and_its_probe_is_a_finding():
    """As `nobody` on a kernel that refuses unprivileged user namespaces (forced with
    the probe's PORTPOOL_PROBE_REFUSE hook), the lab probe cannot make its namespace:
    the facts still come back (the task does not fail, so nothing dumps them) and the
    audit judges them."""
    home = tempfile.mkdtemp(prefix="portpool-advice-nobody-")
    try:
        os.chmod(home, 0o777)  # a scratch HOME the unprivileged run can write
        env = dict(os.environ, HOME=home, ANSIBLE_LOCAL_TEMP=home + "/local",
                   ANSIBLE_REMOTE_TEMP=home + "/remote", ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
                   LANG="C.UTF-8", LC_ALL="C.UTF-8", PORTPOOL_PROBE_REFUSE="userns")
        result = subprocess.run(
            ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
             sys.executable, str(Path(sys.executable).parent / "ansible"), "localhost", "-o",
             # The module needs only the standard library; the venv's interpreter
             # lives under /root, which nobody cannot run.
             "-e", "ansible_python_interpreter=/usr/bin/python3",
             "-m", "portpool_facts", "-a", '{"probe": {}, "probe_failure": "report"}'],
            capture_output=True, text=True, env=env, cwd=REPO, timeout=120, check=False)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    assert result.returncode == 0, result.stdout + result.stderr
    line = next(line for line in result.stdout.splitlines()
                if line.startswith("localhost | SUCCESS => "))
    registered = json.loads(line.split(" => ", 1)[1])
    assert "user namespace" in registered["probe_error"], registered["probe_error"]
    ctx = audit.context_from_result("nobody", [], registered, {})
    assert (ctx.status, ctx.error) == ("ok", None)
    ids = {item["id"] for item in audit.evaluate([ctx])["nobody"]}
    assert "PP019" in ids and "PP017" not in ids
