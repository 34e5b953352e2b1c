"""M6: a host-mode probe ends when whoever started it is gone.

Over SSH a killed controller takes the remote shell with it; here the module's
parent process is SIGKILLed while the probe churns (30 s asked for), and the
module, its session and the session's workers must all end within seconds.
"""

import os
import signal
import subprocess
import time

import pytest

from tests.integration.test_probe_lab import REPO, _alive, _descendants, _env, _parent, _script

pytestmark = pytest.mark.root


def _pgid(pid):
    with open("/proc/%d/stat" % pid, encoding="ascii", errors="replace") as handle:
        return int(handle.read().rsplit(")", 1)[1].split()[2])


def _cmdline(pid):
    with open("/proc/%d/cmdline" % pid, "rb") as handle:
        return handle.read().decode(errors="replace")


def _find_session(root, deadline):
    """The probe's session child: it leads its own process group, below the module."""
    while time.monotonic() < deadline:
        for pid in _descendants(root):
            try:
                if _pgid(pid) == pid and "AnsiballZ_portpool_probe" in _cmdline(_parent(pid)):
                    return pid
            except OSError:
                continue
        time.sleep(0.05)
    raise AssertionError("the probe's session never appeared")


def test_host_mode_probe_ends_when_its_parent_dies():
    script = _script({"net.ipv4.ip_local_port_range": "40000 40099"},
                     "mode=host scope=full churn_seconds=30", lo_up=True)
    proc = subprocess.Popen(["unshare", "--net", "sh", "-c", script], cwd=REPO, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        session = _find_session(proc.pid, time.monotonic() + 60)
        time.sleep(1.0)  # into the churn
        module = _parent(session)
        doomed = [module, session, *_descendants(session)]
        os.kill(_parent(module), signal.SIGKILL)
        end = time.monotonic() + 10
        while time.monotonic() < end and any(_alive(pid) for pid in doomed):
            time.sleep(0.05)
        assert not [pid for pid in doomed if _alive(pid)], "the probe outlived its parent"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_host_mode_time_limits_are_capped():
    script = _script({"net.ipv4.ip_local_port_range": "40000 40099"},
                     "mode=host timeout=3600 churn_seconds=300", lo_up=True)
    done = subprocess.run(["unshare", "--net", "sh", "-c", script], cwd=REPO, env=_env(),
                          capture_output=True, text=True, timeout=120, check=False)
    assert "timeout must lie in 1..300 seconds in mode=host" in done.stdout
    assert "churn_seconds must lie in 0..30 in mode=host" in done.stdout
