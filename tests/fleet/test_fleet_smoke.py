"""The SSH test fleet itself: reachability, per-host sysctls and files, become, teardown."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fleet.harness import FLEET_RUN, REPO, Fleet, FleetError, HostSpec, cleanup_stale

RANGES = {"h01": "40000 40999", "h02": "50001 50500", "h03": "32768 60999"}


@pytest.fixture(scope="module")
def fleet():
    specs = [
        HostSpec("h01", sysctls={"net.ipv4.ip_local_port_range": RANGES["h01"]},
                 groups=("proxies",)),
        HostSpec("h02", sysctls={"net.ipv4.ip_local_port_range": RANGES["h02"],
                                 "net.ipv4.tcp_tw_reuse": "0"},
                 sysctl_d={"50-legacy.conf": "net.ipv4.tcp_tw_reuse = 0\n"},
                 groups=("app_servers",)),
        HostSpec("h03", become=True, groups=("app_servers",)),
    ]
    with Fleet.create(specs) as made:
        yield made


def _lines(output, tag):
    # Matches the debug line in both result formats (json and yaml).
    return dict(re.findall(r'msg"?: "?%s (\S+) ([^"\n]*)' % tag, output))


def test_ping_reaches_every_host(fleet):
    result = fleet.ansible("all", "-m", "ansible.builtin.ping")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == 3


def test_each_host_reports_its_own_sysctls_files_and_user(fleet):
    result = fleet.playbook("tests/fleet/playbooks/read_port_range.yml",
                            extra_vars={"write_marker": True})
    assert result.returncode == 0, result.stdout + result.stderr
    ranges = _lines(result.stdout, "RANGE")
    assert ranges == RANGES
    # h03 logs in as the unprivileged user and becomes root with sudo.
    assert _lines(result.stdout, "USER") == {"h01": "root", "h02": "root", "h03": "root"}
    assert fleet.run("h03", ["id", "-un", "ppadmin"]).stdout.strip() == "ppadmin"
    assert fleet.sysctl("h02", "net.ipv4.tcp_tw_reuse") == "0"

    for name, host in fleet.hosts.items():
        own = "90-fleet-smoke-%s.conf" % name
        assert (host.sysctl_d / own).is_file()
        listing = fleet.run(name, ["ls", "/etc/sysctl.d"]).stdout.split()
        assert own in listing
        others = [entry for entry in listing if entry.startswith("90-fleet-smoke-")]
        assert others == [own], "host %s sees another host's files: %s" % (name, others)
        assert not Path("/etc/sysctl.d", own).exists(), "written to the machine's /etc"
    assert fleet.run("h02", ["ls", "/etc/sysctl.d"]).stdout.split() == [
        "50-legacy.conf", "90-fleet-smoke-h02.conf"]
    assert fleet.run("h01", ["hostname"]).stdout.strip() == "h01"


def test_inventory_groups_and_host_key_checking(fleet):
    text = fleet.inventory.read_text()
    assert "StrictHostKeyChecking=yes" in text
    result = fleet.ansible("app_servers", "--list-hosts")
    assert sorted(result.stdout.split()[-2:]) == ["h02", "h03"]


def test_killed_sshd_makes_only_that_host_unreachable(make_fleet):
    small = make_fleet([HostSpec("a1"), HostSpec("a2")])
    small.kill_sshd("a2")
    result = small.ansible("all", "-m", "ansible.builtin.ping")
    assert result.returncode != 0
    assert "a1 | SUCCESS" in result.stdout
    assert "a2 | UNREACHABLE" in result.stdout


def test_refuses_machine_wide_sysctls():
    with pytest.raises(FleetError, match="only net"):
        Fleet.create([HostSpec("bad", sysctls={"kernel.pid_max": "4194304"})])


def _residue(slot_dir, netns_prefix, bridge):
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    procs = subprocess.run(["pgrep", "-f", str(slot_dir)], capture_output=True, text=True).stdout
    return {
        "dir": slot_dir.exists(),
        "netns": netns_prefix in names,
        "bridge": (" %s:" % bridge) in links,
        "processes": procs.strip(),
    }


def test_teardown_leaves_nothing(make_fleet):
    fleet = make_fleet([HostSpec("t1", listeners=(41000,)), HostSpec("t2")])
    assert fleet.ansible("all", "-m", "ansible.builtin.ping").returncode == 0
    slot_dir, prefix, bridge = fleet.dir, "ppf%d-" % fleet.slot, "ppfbr%d" % fleet.slot
    assert _residue(slot_dir, prefix, bridge)["netns"]
    fleet.down()
    assert _residue(slot_dir, prefix, bridge) == {
        "dir": False, "netns": False, "bridge": False, "processes": ""}


def test_stale_fleet_of_a_killed_run_is_cleaned_at_next_start():
    code = ("from tests.fleet.harness import Fleet, HostSpec;"
            "f = Fleet.create([HostSpec('s1')]);"
            "print(f.dir, f.slot, flush=True);"
            "import time; time.sleep(60)")
    child = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE,
                             text=True)
    try:
        slot_dir, slot = child.stdout.readline().split()
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
        slot_dir = Path(slot_dir)
        assert slot_dir.exists()
        removed = cleanup_stale()
        assert int(slot) in removed
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and slot_dir.exists():
            time.sleep(0.1)
        assert _residue(slot_dir, "ppf%s-" % slot, "ppfbr%s" % slot) == {
            "dir": False, "netns": False, "bridge": False, "processes": ""}
    finally:
        if child.poll() is None:
            child.kill()
        cleanup_stale()
    assert FLEET_RUN.exists()
