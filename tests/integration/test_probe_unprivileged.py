"""portpool_probe as a user without root (`nobody` via setpriv): the lab is a
user + network namespace of its own.

The module is the AnsiballZ payload Ansible ships (kept once, as root, then
exploded), run by the system Python as nobody inside a fresh network namespace
that plays the host. Runs as root in CI so that it can switch to nobody.
"""

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.integration.test_probe_lab import REPO, _descendants, _env

pytestmark = pytest.mark.root

PYTHON = "/usr/bin/python3"


@pytest.fixture(scope="module")
def payload():
    if not (shutil.which("setpriv") and os.path.exists(PYTHON)):
        pytest.fail("needs setpriv and %s" % PYTHON)
    # Not under pytest's own temporary directory: that one is private to root.
    work = Path(tempfile.mkdtemp(prefix="ppprobe-nobody-"))
    try:
        yield _kept_payload(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _kept_payload(work):
    env = _env()
    env.update({"ANSIBLE_KEEP_REMOTE_FILES": "1", "ANSIBLE_PIPELINING": "0",
                "ANSIBLE_REMOTE_TMP": str(work / "remote")})
    subprocess.run(["ansible", "localhost", "-m", "portpool_probe", "-a",
                    "sample_ports=10 churn_seconds=0"], cwd=REPO, env=env, check=True,
                   capture_output=True, timeout=120)
    found = sorted((work / "remote").rglob("AnsiballZ_portpool_probe.py"))
    assert found, "no AnsiballZ payload kept"
    subprocess.run([PYTHON, str(found[0]), "explode"], check=True, capture_output=True)
    for path in [work, *work.rglob("*")]:
        path.chmod(0o777 if path.is_dir() else 0o666)
    return found[0]


def _run(payload, args, port_range, refuse="", nofile=None):
    args_path = payload.parent / "debug_dir" / "args"
    args_path.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    limit = "ulimit -n %d; " % nofile if nofile else ""
    script = ("sysctl -qw net.ipv4.ip_local_port_range=%s; %sexec setpriv --reuid=nobody"
              " --regid=nogroup --clear-groups env PORTPOOL_PROBE_REFUSE=%s %s %s execute"
              % (shlex.quote(port_range), limit, shlex.quote(refuse), PYTHON,
                 shlex.quote(str(payload))))
    return ["unshare", "--net", "sh", "-c", script]


def _result(command):
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    text = done.stdout
    assert "{" in text, text + done.stderr
    return json.JSONDecoder().raw_decode(text[text.index("{"):])[0]


def test_full_hold_as_nobody_in_a_user_namespace(payload):
    result = _result(_run(payload, {"scope": "full", "churn_seconds": 0}, "40000 49999"))
    assert not result.get("failed"), result.get("msg")
    probe = result["probe"]
    assert probe["method"]["lab"] == "user namespace"
    assert probe["method"]["sockets"] == "repair"
    assert probe["hold"]["established"] == 10000
    assert probe["hold"]["missing_ports"] == []
    assert probe["matches_expected"] is True


def test_repair_refused_falls_back_to_real_connections_with_low_nofile(payload):
    result = _result(_run(payload, {"scope": "full", "churn_seconds": 0}, "40000 40999",
                          refuse="repair", nofile=300))
    assert not result.get("failed"), result.get("msg")
    probe = result["probe"]
    assert probe["method"]["sockets"] == "connect"
    assert "TCP_REPAIR refused" in probe["summary"]
    assert probe["hold"]["fd_limit_per_process"] == 300
    assert probe["hold"]["workers"] >= 5
    assert probe["hold"]["established"] == 1000
    assert probe["matches_expected"] is True


def test_user_namespaces_refused_says_so_in_one_line(payload):
    result = _result(_run(payload, {"churn_seconds": 0}, "40000 40999", refuse="userns"))
    assert result["failed"] is True
    assert "unprivileged user namespaces are refused here" in result["msg"]
    assert "become: true" in result["msg"]
    assert "\n" not in result["msg"]


def test_sigkill_during_the_hold_leaves_nothing_as_nobody(payload):
    # On 64,512 ports the churn never runs out, so it lasts its 20 s.
    proc = subprocess.Popen(_run(payload, {"scope": "full", "churn_seconds": 20},
                                 "1024 65535"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        # proc.pid is the module (unshare, sh and setpriv exec into it); below
        # it the session and a churn worker.
        while len(_descendants(proc.pid)) < 2:
            assert time.monotonic() < deadline, "the probe never got going"
            time.sleep(0.05)
        doomed = _descendants(proc.pid)
        namespaces = {os.readlink("/proc/%d/ns/user" % pid) for pid in doomed
                      if os.path.exists("/proc/%d" % pid)}
        os.kill(proc.pid, signal.SIGKILL)  # the module itself (setpriv exec'd into it)
        proc.wait(timeout=30)
        end = time.monotonic() + 10
        while time.monotonic() < end and any(os.path.exists("/proc/%d" % pid)
                                             for pid in doomed):
            time.sleep(0.05)
        assert not [pid for pid in doomed if os.path.exists("/proc/%d" % pid)]
        users = set()
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                with contextlib.suppress(OSError):
                    users.add(os.readlink("/proc/%s/ns/user" % entry))
        host_user = os.readlink("/proc/self/ns/user")
        assert not (namespaces - {host_user}) & users, "a lab user namespace survived"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
