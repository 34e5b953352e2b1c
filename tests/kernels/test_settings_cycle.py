"""portpool_settings apply, verify and rollback on the running kernel.

Runs in a fresh network and mount namespace with a tmpfs over /etc/sysctl.d, so
neither the machine's sysctls nor its files are touched. `tcp_tw_reuse_delay` is
an optional key: where the kernel lacks it (before 6.14) the module must skip it
with a warning, write no line for it, and still apply, verify and roll back the
rest. Which case applies is read from /proc/sys, never from the release.
"""

import json
import os
import re
import subprocess

import pytest

from tests.kernels.module_run import REPO, module_argv, shell_quote

pytestmark = pytest.mark.root

HAS_REUSE_DELAY = os.path.exists("/proc/sys/net/ipv4/tcp_tw_reuse_delay")
SETTINGS = {"ip_local_port_range": "40000 49999", "tcp_tw_reuse": 1, "tcp_tw_reuse_delay": 200}
VALUES = "echo VALUES $(cat /proc/sys/net/ipv4/ip_local_port_range) " \
         "$(cat /proc/sys/net/ipv4/tcp_tw_reuse)"


def module_line(args):
    """A shell line printing `RESULT <json>` for one module call."""
    argv = " ".join(shell_quote(part) for part in module_argv("portpool_settings", args))
    # The module's JSON holds no raw newline: fold its output onto one line.
    return "printf 'RESULT '; %s | tr -d '\\n'; echo" % argv


def run_in_namespace(lines):
    prologue = ["set -e", "mount --make-rprivate /",
                "mount -t tmpfs -o mode=0755 tmpfs /etc/sysctl.d", "ip link set lo up"]
    done = subprocess.run(["unshare", "--net", "--mount", "--", "sh", "-c",
                           "\n".join(prologue + lines)], cwd=REPO, capture_output=True,
                          text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = [json.loads(line[len("RESULT "):]) for line in done.stdout.splitlines()
               if line.startswith("RESULT ")]
    values = [line.split()[1:] for line in done.stdout.splitlines()
              if line.startswith("VALUES")]
    files = [line[len("FILE "):] for line in done.stdout.splitlines() if line.startswith("FILE ")]
    return results, values, files


def test_apply_verify_rollback(tmp_path):
    state = str(tmp_path / "state")
    conf = "/etc/sysctl.d/60-portpool.conf"
    apply = {"settings": SETTINGS, "state_dir": state}
    results, values, files = run_in_namespace([
        VALUES,
        module_line(apply),
        VALUES,
        "echo FILE $(tr '\\n' ';' < %s)" % conf,
        "echo FILE $(cat /proc/sys/net/ipv4/tcp_tw_reuse_delay 2>/dev/null || echo absent)",
        module_line(apply),
        module_line({"mode": "rollback", "state_dir": state}),
        VALUES,
        "echo \"FILE $(ls /etc/sysctl.d)\"",
    ])
    first, second, rollback = results
    assert not first.get("failed"), first.get("msg")
    assert first["changed"] is True
    assert values[1] == ["40000", "49999", "1"]
    text, delay = files[0], files[1]
    assert re.search(r"net\.ipv4\.ip_local_port_range\s*=\s*40000\s+49999", text), text
    if HAS_REUSE_DELAY:
        assert delay == "200"
        assert "tcp_tw_reuse_delay" in text
    else:
        # Skipped with a warning, and no line a boot-time sysctl would refuse.
        assert delay == "absent"
        assert "tcp_tw_reuse_delay" not in text
        assert any("tcp_tw_reuse_delay" in warning for warning in first.get("warnings", []))
    assert second["changed"] is False, second
    assert not rollback.get("failed"), rollback.get("msg")
    assert rollback["changed"] is True
    assert values[2] == values[0]
    assert files[2] == ""


def test_verify_sees_the_applied_values(tmp_path):
    state = str(tmp_path / "state")
    apply = {"settings": SETTINGS, "state_dir": state}
    results, _values, _files = run_in_namespace([module_line(apply)])
    expected = results[0]["after"]
    results, _values, _files = run_in_namespace([
        module_line(apply),
        module_line({"mode": "verify", "expected": expected, "state_dir": state}),
        "echo 0 > /proc/sys/net/ipv4/tcp_tw_reuse",
        module_line({"mode": "verify", "expected": expected, "state_dir": state}),
    ])
    good, drifted = results[1], results[2]
    assert not good.get("failed"), good.get("msg")
    assert drifted.get("failed") is True, drifted
    assert "tcp_tw_reuse" in drifted["msg"]
