"""portpool_settings apply, verify and rollback on the running kernel.

The module runs (via nsenter) in a network and mount namespace held open by a
sleeping process, with a tmpfs over /etc/sysctl.d: neither the machine's sysctls
nor its files are touched. `tcp_tw_reuse_delay` is an optional key: where the
kernel lacks it (before 6.14) the module must skip it with a warning, write no
line for it, and still apply, verify and roll back the rest. Which case applies
is read from /proc/sys, never from the release.
"""

import contextlib
import json
import os
import re
import subprocess

import pytest

from tests.kernels.module_run import REPO, ModuleServer

pytestmark = pytest.mark.root

HAS_REUSE_DELAY = os.path.exists("/proc/sys/net/ipv4/tcp_tw_reuse_delay")
SETTINGS = {"ip_local_port_range": "40000 49999", "tcp_tw_reuse": 1, "tcp_tw_reuse_delay": 200}
CONF = "/etc/sysctl.d/60-portpool.conf"
HOLD = ("set -e; mount --make-rprivate /; mount -t tmpfs -o mode=0755 tmpfs /etc/sysctl.d; "
        "ip link set lo up; echo ready; exec sleep 300")


@contextlib.contextmanager
def namespace():
    """A held net + mount namespace; yields a function running argv inside it."""
    holder = subprocess.Popen(["unshare", "--net", "--mount", "--", "sh", "-c", HOLD],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        prefix = ["nsenter", "--net=/proc/%d/ns/net" % holder.pid,
                  "--mount=/proc/%d/ns/mnt" % holder.pid, "--"]

        def inside(argv):
            return subprocess.run([*prefix, *argv], capture_output=True, text=True,
                                  cwd=REPO, timeout=60, check=True).stdout
        inside.prefix = prefix
        yield inside
    finally:
        holder.kill()
        holder.wait(timeout=10)


def values(inside):
    return [inside(["cat", "/proc/sys/net/ipv4/ip_local_port_range"]).split(),
            inside(["cat", "/proc/sys/net/ipv4/tcp_tw_reuse"]).strip()]


def test_apply_verify_rollback(tmp_path):
    state = str(tmp_path / "state")
    apply = {"settings": SETTINGS, "state_dir": state}
    with namespace() as inside, ModuleServer("portpool_settings", inside.prefix) as server:
        settings = server.call

        before = values(inside)
        first = settings(apply)
        assert not first.get("failed"), first.get("msg")
        assert first["changed"] is True
        assert values(inside) == [["40000", "49999"], "1"]
        text = inside(["cat", CONF])
        assert re.search(r"net\.ipv4\.ip_local_port_range\s*=\s*40000\s+49999", text), text
        if HAS_REUSE_DELAY:
            assert inside(["cat", "/proc/sys/net/ipv4/tcp_tw_reuse_delay"]).strip() == "200"
            assert "tcp_tw_reuse_delay" in text
        else:
            # Skipped with a warning, and no line a boot-time sysctl would refuse.
            assert "tcp_tw_reuse_delay" not in text
            assert first["skipped_keys"] == ["net.ipv4.tcp_tw_reuse_delay"]
            assert "tcp_tw_reuse_delay" in json.dumps(first.get("warnings"))
        again = settings(apply)
        assert again["changed"] is False, again
        verified = settings({"mode": "verify", "expected": first["after"], "state_dir": state})
        assert not verified.get("failed"), verified.get("msg")
        inside(["sh", "-c", "echo 0 > /proc/sys/net/ipv4/tcp_tw_reuse"])
        drifted = settings({"mode": "verify", "expected": first["after"], "state_dir": state})
        assert drifted.get("failed") is True, drifted
        assert "tcp_tw_reuse" in drifted["msg"]
        rollback = settings({"state": "absent", "state_dir": state})
        assert not rollback.get("failed"), rollback.get("msg")
        assert rollback["changed"] is True
        assert values(inside) == before
        assert inside(["ls", "/etc/sysctl.d"]) == ""
