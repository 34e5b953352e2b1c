"""portpool_settings on the real kernel, run the way Ansible runs it.

Each test runs `ansible localhost -m portpool_settings` inside an anonymous network
namespace (its own net.* sysctls, gone when the shell exits) and a private mount
namespace with a tmpfs over /etc/sysctl.d: the machine's own sysctls and files are
never touched. The state directory is the test's temp dir.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.root

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = str(Path(sys.executable).parent)


def in_namespace(script, tmp_path, timeout=180):
    """Run a shell script in a fresh net + mount namespace; return (stdout, stderr)."""
    prologue = "\n".join([
        "set -e",
        "mount --make-rprivate /",
        "mount -t tmpfs -o mode=0755 tmpfs /etc/sysctl.d",
        "ip link set lo up",
    ])
    env = dict(os.environ, PATH=VENV_BIN + os.pathsep + os.environ["PATH"],
               ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_CALLBACK_RESULT_FORMAT="json",
               ANSIBLE_NOCOLOR="1", ANSIBLE_LOCAL_TEMP=str(tmp_path / "atmp"),
               ANSIBLE_REMOTE_TEMP=str(tmp_path / "rtmp"), LANG="C.UTF-8")
    result = subprocess.run(
        ["unshare", "--net", "--mount", "--", "sh", "-c", prologue + "\n" + script],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout, result.stderr


def module_call(args, check=False):
    return "ansible localhost -m portpool_settings -a %s%s" % (
        _quote(json.dumps(args)), " --check --diff" if check else "")


def _quote(text):
    return "'" + text.replace("'", "'\\''") + "'"


def results(stdout):
    """Each ansible run's localhost result, in order (`localhost | STATUS => {json}`)."""
    decoder = json.JSONDecoder()
    found, index = [], 0
    while True:
        start = stdout.find("localhost | ", index)
        if start < 0:
            return found
        start = stdout.index("{", start)
        document, index = decoder.raw_decode(stdout, start)
        found.append(document)


def test_apply_repeat_and_rollback_on_the_real_kernel(tmp_path):
    state = str(tmp_path / "state")
    settings = {"ip_local_port_range": "40000 49999", "tcp_tw_reuse": 1,
                "tcp_tw_reuse_delay": 200}
    listener = ("%s -c 'import socket,time; s=socket.socket(); s.bind((\"0.0.0.0\", 45001)); "
                "s.listen(); time.sleep(30)' >/dev/null 2>&1 &" % sys.executable)
    script = "\n".join([
        listener,
        "sleep 0.5",
        "echo 'net.ipv4.tcp_tw_reuse = 0' > /etc/sysctl.d/99-late.conf",
        module_call({"settings": settings, "state_dir": state}),
        "echo RANGE $(cat /proc/sys/net/ipv4/ip_local_port_range)",
        "echo RESERVED $(cat /proc/sys/net/ipv4/ip_local_reserved_ports)",
        "echo DELAY $(cat /proc/sys/net/ipv4/tcp_tw_reuse_delay)",
        module_call({"settings": settings, "state_dir": state}),
        module_call({"state": "absent", "state_dir": state}),
        "echo RANGE $(cat /proc/sys/net/ipv4/ip_local_port_range)",
        "echo RESERVED $(cat /proc/sys/net/ipv4/ip_local_reserved_ports)",
        "echo DELAY $(cat /proc/sys/net/ipv4/tcp_tw_reuse_delay)",
        "ls /etc/sysctl.d",
        module_call({"state": "absent", "state_dir": state}),
        "kill $! || true",
    ])
    stdout, stderr = in_namespace(script, tmp_path)
    first, second, rollback, again = results(stdout)
    assert first["changed"] is True, first
    assert first["reserved_added"] == [45001]
    assert first["overrides"] == [{"key": "net.ipv4.tcp_tw_reuse",
                                   "file": "/etc/sysctl.d/99-late.conf"}]
    assert "is also set in /etc/sysctl.d/99-late.conf" in stderr
    lines = [line for line in stdout.splitlines() if line.split(" ")[0] in
             ("RANGE", "RESERVED", "DELAY")]
    assert lines[:3] == ["RANGE 40000 49999", "RESERVED 45001", "DELAY 200"]
    assert second["changed"] is False, second
    assert rollback["changed"] is True
    assert lines[3:] == ["RANGE 32768 60999", "RESERVED", "DELAY 1000"]
    assert "60-portpool.conf" not in stdout.split("DELAY 1000", 1)[1].split("{")[0]
    assert again["changed"] is False


def test_read_only_proc_sys_fails_clearly_and_changes_nothing(tmp_path):
    state = str(tmp_path / "state")
    script = "\n".join([
        "mount --bind /proc/sys /proc/sys",
        "mount -o remount,ro,bind /proc/sys",
        module_call({"settings": {"tcp_tw_reuse": 1}, "state_dir": state}) + " || true",
        "echo REUSE $(cat /proc/sys/net/ipv4/tcp_tw_reuse)",
        "echo FILES $(ls /etc/sysctl.d)",
    ])
    stdout, _ = in_namespace(script, tmp_path)
    (result,) = results(stdout)
    assert "localhost | FAILED!" in stdout
    assert "not writable" in result["msg"] and "nothing was changed" in result["msg"]
    assert "REUSE 2" in stdout
    assert "FILES \n" in stdout or stdout.rstrip().endswith("FILES")
    assert not (tmp_path / "state").exists()


def test_hostile_inputs_are_refused_on_the_real_kernel(tmp_path):
    """Issue 11: H3 (a reservation that empties the pool), H2 (a mask), H1 (a shared
    state directory). Each run fails with its reason and the namespace keeps its values."""
    state = str(tmp_path / "state")
    shared = str(tmp_path / "shared")
    script = "\n".join([
        module_call({"settings": {"ip_local_reserved_ports": "0-65535"},
                     "state_dir": state}) + " || true",
        "ln -s /dev/null /etc/sysctl.d/60-portpool.conf",
        module_call({"settings": {"tcp_tw_reuse": 1}, "state_dir": state}) + " || true",
        "rm /etc/sysctl.d/60-portpool.conf",
        "mkdir -m 1777 %s" % shared,
        "chmod 1777 %s" % shared,
        module_call({"settings": {"tcp_tw_reuse": 1}, "state_dir": shared}) + " || true",
        "echo RESERVED $(cat /proc/sys/net/ipv4/ip_local_reserved_ports)",
        "echo REUSE $(cat /proc/sys/net/ipv4/tcp_tw_reuse)",
        "echo FILES $(ls /etc/sysctl.d)",
    ])
    stdout, _ = in_namespace(script, tmp_path)
    reserved, masked, shared_dir = results(stdout)
    assert "leaves 0 usable ports" in reserved["msg"], reserved
    assert "masked (a symlink to /dev/null)" in masked["msg"], masked
    assert "writable by group or others" in shared_dir["msg"], shared_dir
    lines = stdout.splitlines()
    assert "RESERVED" in lines and "REUSE 2" in lines and "FILES" in lines
    assert not (tmp_path / "state").exists()
    assert os.listdir(shared) == []


def test_check_mode_is_the_preflight(tmp_path):
    """state=present in check mode: what would change, the host-side problems as lists
    (and a failure), nothing written; the deprecated mode= still works, and says so."""
    state = str(tmp_path / "state")
    script = "\n".join([
        module_call({"state": "present", "settings": {"tcp_tw_reuse": 1}, "state_dir": state},
                    check=True),
        "sysctl -qw net.ipv4.ip_unprivileged_port_start=20000",
        module_call({"state": "present", "settings": {"ip_local_port_range": "10000 60999"},
                     "state_dir": state}, check=True) + " || true",
        "sysctl -qw net.ipv4.ip_unprivileged_port_start=1024",
        module_call({"mode": "apply", "settings": {"tcp_tw_reuse": 1}, "state_dir": state}),
        "echo REUSE $(cat /proc/sys/net/ipv4/tcp_tw_reuse)",
        "echo FILES $(ls /etc/sysctl.d)",
        "mount --bind /proc/sys /proc/sys",
        "mount -o remount,ro,bind /proc/sys",
        module_call({"state": "present", "settings": {"tcp_tw_reuse": 0}, "state_dir": state},
                    check=True) + " || true",
    ])
    stdout, stderr = in_namespace(script, tmp_path)
    would, input_error, applied, host_error = results(stdout)
    assert would["changed"] is True and would["changed_keys"] == ["net.ipv4.tcp_tw_reuse"]
    assert would["input_errors"] == [] and would["host_errors"] == []
    assert would["state_saved"] is False and would["run_id"] is None
    assert input_error["input_errors"] and input_error["host_errors"] == []
    assert "ip_unprivileged_port_start 20000" in input_error["msg"]
    assert "nothing would be changed on this host" in input_error["msg"]
    assert applied["changed"] is True
    assert "mode=apply is now state=present" in stderr + stdout
    assert "REUSE 1" in stdout and "60-portpool.conf" in stdout.split("FILES", 1)[1]
    assert host_error["host_errors"] and host_error["input_errors"] == []
    assert "not writable" in host_error["msg"]
