"""portpool_probe run as Ansible runs it, on the real kernel.

Each test makes an anonymous network namespace (`unshare --net`), sets the
net.* sysctls it wants there, and runs `ansible localhost -m portpool_probe`
inside it: that namespace is "the host" whose settings the probe copies into its
own lab. Counts and flags are asserted exactly.
"""

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(os.environ.get("PORTPOOL_VENV_BIN", REPO / ".venv" / "bin"))
if not (VENV_BIN / "ansible").exists():  # a worktree without its own venv
    VENV_BIN = Path(sys.executable).parent

pytestmark = pytest.mark.root

# Without tcp_tw_reuse_delay (before 6.14, and Debian's 6.1 and 6.12) a TIME_WAIT
# entry is reusable once the seconds clock ticks past its stamp, which can be
# at once: with reuse on, a churn may then reuse a port before the pool first
# runs out. What the tests expect follows the sysctl, never the release.
HAS_REUSE_DELAY = os.path.exists("/proc/sys/net/ipv4/tcp_tw_reuse_delay")


def _first_failure_with_reuse(run, pool):
    """With reuse on: exactly the pool with the ms delay, at least it without."""
    if HAS_REUSE_DELAY:
        return run["before_first_failure"] == pool
    return run["before_first_failure"] >= pool


def _env():
    env = dict(os.environ)
    env.update({
        "PATH": "%s:%s" % (VENV_BIN, env.get("PATH", "/usr/bin:/bin")),
        "LANG": "C",
        "ANSIBLE_STDOUT_CALLBACK": "default",
        "ANSIBLE_CALLBACK_RESULT_FORMAT": "json",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_DEPRECATION_WARNINGS": "0",
        "ANSIBLE_LOCALHOST_WARNING": "0",
    })
    return env


# Per-namespace socket counts: the listing, and sockstat's inuse/tw fields (its
# `alloc` and `orphan`, and so `ss -s` totals, are machine-wide).
_SOCKETS = "{ ss -tuan; grep -o 'inuse [0-9]*\\|tw [0-9]*' /proc/net/sockstat; } > %s"


def _script(sysctls, args, nofile=None, lo_up=False, tmp=None):
    lines = ["set -e"]
    if lo_up:
        lines.append("ip link set lo up")
    for key, value in (sysctls or {}).items():
        assert key.startswith("net."), key
        lines.append("sysctl -qw %s" % shlex.quote("%s=%s" % (key, value)))
    if tmp is not None:
        lines.append(_SOCKETS % shlex.quote(str(tmp / "ss_before")))
    if nofile is not None:
        lines.append("ulimit -n %d" % nofile)
    command = ["ansible", "localhost", "-m", "portpool_probe", "-a", args]
    lines.append(" ".join(shlex.quote(part) for part in command) + " || true")
    if tmp is not None:
        lines.append(_SOCKETS % shlex.quote(str(tmp / "ss_after")))
    return "\n".join(lines)


def _task_result(stdout):
    """The result of `localhost | STATUS => {...}` (default callback, json format)."""
    start = stdout.index("localhost | ")
    arrow = stdout.index("=>", start)
    result = json.JSONDecoder().raw_decode(stdout[arrow + 2:].strip())[0]
    # The default callback drops `failed` from what it prints: the status says it.
    result["failed"] = "FAILED" in stdout[start:arrow]
    return result


def probe(args, sysctls=None, nofile=None, lo_up=False, tmp=None, *, timeout=120, refuse=""):
    """Run the module in a fresh network namespace; return its result dict.

    `refuse` is PORTPOOL_PROBE_REFUSE: the fallbacks the module must take."""
    script = _script(sysctls, args, nofile, lo_up, tmp)
    env = _env()
    env["PORTPOOL_PROBE_REFUSE"] = refuse
    done = subprocess.run(["unshare", "--net", "sh", "-c", script], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    result = _task_result(done.stdout)
    if sysctls and "probe" in result:
        for key, value in sysctls.items():
            if key in result["probe"]["settings"]:
                assert result["probe"]["settings"][key] == " ".join(value.split()), key
    return result


def _ok(result):
    assert not result.get("failed"), result.get("msg")
    assert result["changed"] is False
    return result["probe"]


def _exhausted(probe_result, established):
    """The hold took exactly `established` ports, or one fewer where the kernel
    may skip the range's low end (both ends of the same parity)."""
    hold = probe_result["hold"]
    assert hold["expected"] == established
    allowed = {established, established - 1} if hold["low_end_may_be_skipped"] else {established}
    assert hold["established"] in allowed, hold
    assert hold["stopped_by"] == "EADDRNOTAVAIL"
    assert probe_result["matches_expected"] is True
    assert probe_result["per_destination"] is True
    assert probe_result["bind_zero_blocked"] is True
    assert probe_result["bind_address_no_port_ok"] is True


def test_odd_even_bounds_reserved_inside_and_outside_tw_reuse_1(tmp_path):
    sysctls = {
        "net.ipv4.ip_local_port_range": "40001 40998",
        "net.ipv4.ip_local_reserved_ports": "39000,40100-40109,40500,50000-50010",
        "net.ipv4.tcp_tw_reuse": "1",
    }
    # A small sample keeps the churn far faster than reuse could refill the pool
    # (ports / delay) even on a busy machine, so the first failure is exact.
    result = _ok(probe("sample_ports=100 churn_seconds=1.5", sysctls, tmp=tmp_path))
    assert result["range"] == [40001, 40998]
    assert result["reserved_in_range"] == 11
    assert result["expected"] == 987
    # 40001-40099 gives 99 ports, 40100-40109 are reserved, 40110 is the 100th.
    assert result["measured_range"] == [40001, 40110]
    assert result["hold"]["measured_range"] == [40001, 40110]
    _exhausted(result, 100)
    assert result["hold"]["workers"] == 1
    assert result["hold"]["lost"] == 0
    remote, loopback = result["churn"]["remote"], result["churn"]["loopback"]
    for run in (remote, loopback):
        assert _first_failure_with_reuse(run, 100), run
        assert run["reuse_expected"] is True
        assert run["reuse_effective"] is True
        assert run["connections"] > 100
    assert result["churn"]["model_rate_per_s"] == 987.0
    # The lab never touched the namespace the module ran in.
    before = (tmp_path / "ss_before").read_text()
    after = (tmp_path / "ss_after").read_text()
    assert before == after


def test_few_ports_even_odd_bounds_tw_reuse_0_full_scope():
    sysctls = {
        "net.ipv4.ip_local_port_range": "40000 40009",
        "net.ipv4.ip_local_reserved_ports": "40003",
        "net.ipv4.tcp_tw_reuse": "0",
    }
    result = _ok(probe("scope=full churn_seconds=1.5", sysctls))
    assert result["scope"] == "full"
    assert result["expected"] == 9
    assert result["reserved_in_range"] == 1
    _exhausted(result, 9)
    for key in ("remote", "loopback"):
        run = result["churn"][key]
        assert run["before_first_failure"] == 9
        assert run["connections"] == 9
        assert run["reuse_expected"] is False
        assert run["reuse_effective"] is False
    assert result["churn"]["model_rate_per_s"] == 0.1  # 9 ports / 60 s


def test_a_configuration_on_record_is_not_measured_again():
    """Each call is a fresh namespace: a second host with the same kernel and settings."""
    sysctls = {"net.ipv4.ip_local_port_range": "40000 40999", "net.ipv4.tcp_tw_reuse": "0"}
    first = _ok(probe("scope=full churn_seconds=0", sysctls))
    key = first["key"]
    assert len(key) == 32 and first["hold"]["established"] == 1000
    again = _ok(probe("scope=full churn_seconds=0 on_record=other,%s" % key, sysctls))
    assert {name: again[name] for name in ("key", "on_record", "mode", "scope")} == {
        "key": key, "on_record": True, "mode": "lab", "scope": "full"}
    assert "hold" not in again
    changed = dict(sysctls, **{"net.ipv4.ip_local_reserved_ports": "40005"})
    measured = _ok(probe("scope=full churn_seconds=0 on_record=%s" % key, changed))
    assert measured["key"] != key and "on_record" not in measured
    _exhausted(measured, 999)


def test_default_range_quick_sample_tw_reuse_2_is_loopback_only():
    sysctls = {
        "net.ipv4.ip_local_port_range": "32768 60999",
        "net.ipv4.tcp_tw_reuse": "2",
    }
    result = _ok(probe("sample_ports=100 churn_seconds=1.5", sysctls))
    assert result["expected"] == 28232
    assert result["measured_range"] == [32768, 32867]
    assert "measured 32768-32867 (100 usable ports)" in result["summary"]
    _exhausted(result, 100)
    remote, loopback = result["churn"]["remote"], result["churn"]["loopback"]
    assert remote["before_first_failure"] == 100
    assert remote["connections"] == 100
    assert remote["reuse_expected"] is False
    assert remote["reuse_effective"] is False
    assert _first_failure_with_reuse(loopback, 100), loopback
    assert loopback["connections"] > 100
    assert loopback["reuse_expected"] is True
    assert loopback["reuse_effective"] is True
    assert result["churn"]["model_rate_per_s"] == 470.5


def test_timestamps_off_disable_reuse_even_bounds():
    sysctls = {
        "net.ipv4.ip_local_port_range": "40000 40500",
        "net.ipv4.ip_local_reserved_ports": "40300",
        "net.ipv4.tcp_tw_reuse": "1",
        "net.ipv4.tcp_timestamps": "0",
    }
    result = _ok(probe("sample_ports=100 churn_seconds=1.5", sysctls))
    assert result["expected"] == 500
    assert result["reserved_in_range"] == 1
    assert result["measured_range"] == [40000, 40099]
    _exhausted(result, 100)
    for key in ("remote", "loopback"):
        run = result["churn"][key]
        assert run["before_first_failure"] == 100
        assert run["connections"] == 100
        assert run["reuse_expected"] is False
        assert run["reuse_effective"] is False


def test_descriptor_limit_below_the_pool_spreads_the_hold_odd_odd_bounds():
    sysctls = {"net.ipv4.ip_local_port_range": "40001 40999"}
    result = _ok(probe("scope=full churn_seconds=0", sysctls, nofile=300))
    hold = result["hold"]
    assert hold["fd_limit_per_process"] == 300
    assert hold["fd_limit_below_pool"] is True
    assert hold["workers"] == 5
    assert hold["low_end_may_be_skipped"] is True
    _exhausted(result, 999)
    assert result["churn"] is None


def test_host_mode_on_loopback_restores_the_socket_count():
    sysctls = {"net.ipv4.ip_local_port_range": "40000 40199", "net.ipv4.tcp_tw_reuse": "2"}
    result = _ok(probe("mode=host scope=full churn_seconds=1.5", sysctls, lo_up=True))
    assert result["mode"] == "host"
    _exhausted(result, 200)
    assert result["listener_port"] == 9
    assert result["host_sockets"] == {"before": 0, "after": 0, "restored": True}
    assert result["churn"]["remote"] is None
    loopback = result["churn"]["loopback"]
    assert _first_failure_with_reuse(loopback, 200), loopback
    assert loopback["reuse_effective"] is True


def test_timeout_stops_the_hold():
    # The slowest way: real connections, the lab's range narrowed chunk by
    # chunk, one worker at a time, and a descriptor limit that splits 64,512
    # ports among about 126 of them. Kernels got faster (6.18 holds the range in
    # 0.9 s with four workers), so the limit is what makes it slow: 2.7 s on an
    # idle 6.18 machine, where one second cannot be enough.
    sysctls = {"net.ipv4.ip_local_port_range": "1024 65535"}
    result = _ok(probe("scope=full churn_seconds=0 timeout=1", sysctls, nofile=1024,
                       refuse="repair,port_range_option"))
    hold = result["hold"]
    assert hold["stopped_by"] == "timeout"
    assert 0 < hold["established"] < 64512
    assert hold["missing_ports"] is None
    assert hold["seconds"] < 5
    assert result["matches_expected"] is False
    assert result["per_destination"] is None


def test_bad_options_fail_with_a_clear_message():
    sysctls = {"net.ipv4.ip_local_port_range": "40000 40999"}
    result = probe("sample_ports=5000 timeout=-1", sysctls)
    assert result["failed"] is True
    assert "timeout must lie in 1..3600" in result["msg"]
    assert "probe" not in result


# -- reliability -------------------------------------------------------------

def _children():
    tree = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry, encoding="ascii", errors="replace") as handle:
                stat = handle.read()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        tree.setdefault(int(fields[1]), []).append(int(entry))
    return tree


def _descendants(pid):
    tree = _children()
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        for child in tree.get(current, []):
            found.append(child)
            todo.append(child)
    return found


def _netns(pid):
    try:
        return os.readlink("/proc/%d/ns/net" % pid)
    except OSError:
        return None


def _alive(pid):
    try:
        with open("/proc/%d/stat" % pid, encoding="ascii", errors="replace") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _processes_in(netns):
    return [int(entry) for entry in os.listdir("/proc")
            if entry.isdigit() and _netns(int(entry)) == netns]


def _find_session(root_pid, host_netns, deadline):
    """The probe's session child: the descendant living in another namespace."""
    while time.monotonic() < deadline:
        for pid in _descendants(root_pid):
            netns = _netns(pid)
            if netns and netns != host_netns:
                return pid, netns
        time.sleep(0.02)
    raise AssertionError("the probe's lab session never appeared")


def _parent(pid):
    with open("/proc/%d/stat" % pid, encoding="ascii", errors="replace") as handle:
        return int(handle.read().rsplit(")", 1)[1].split()[1])


@pytest.mark.parametrize(("signum", "when", "args", "port_range"), [
    (signal.SIGKILL, "hold", "scope=full churn_seconds=0", "32768 42767"),
    # A churn stops once reuse is decided, which takes the first failure: on
    # 64,512 ports the churn runs its whole 5 s without one.
    (signal.SIGKILL, "churn", "scope=full churn_seconds=5", "1024 65535"),
    (signal.SIGTERM, "hold", "scope=full churn_seconds=0", "32768 42767"),
])
def test_signal_leaves_no_residue(signum, when, args, port_range):
    script = _script({"net.ipv4.ip_local_port_range": port_range}, args)
    script = script.replace(" || true", "")
    proc = subprocess.Popen(["unshare", "--net", "sh", "-c", script], cwd=REPO, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while _netns(proc.pid) is None or _netns(proc.pid) == _netns(os.getpid()):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        host_netns = _netns(proc.pid)
        session, lab_netns = _find_session(proc.pid, host_netns, deadline)
        while len(_descendants(session)) < 1:  # a worker: hold (or churn) under way
            assert time.monotonic() < deadline, "no worker appeared"
            time.sleep(0.01)
        if when == "churn":
            time.sleep(1.5)
        module = _parent(session)
        doomed = [session, *_descendants(session)]
        assert _processes_in(lab_netns)
        os.kill(module, signum)
        stdout, stderr = proc.communicate(timeout=60)
        end = time.monotonic() + 10
        while time.monotonic() < end and (any(_alive(pid) for pid in doomed)
                                         or _processes_in(lab_netns)):
            time.sleep(0.05)
        assert not [pid for pid in doomed if _alive(pid)], "probe processes survived"
        assert not _processes_in(lab_netns), "a process is left in the lab namespace"
        result = _task_result(stdout)
        assert result.get("failed") is True, stdout + stderr
        if signum == signal.SIGTERM:
            assert "terminated by signal 15" in result["msg"]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
