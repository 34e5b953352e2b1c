"""`python -m tests.fleet down` removes exactly the fleet it is given, or only dead-owner ones.

Every fleet these tests make is their own; the `down` runs name those fleets by
slot or inventory, and `down` without a fleet is only ever run with --dry-run,
so other fleets on the machine are never touched.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.fleet.harness import (
    FLEET_RUN,
    REPO,
    HostSpec,
    _names_path,
    fleet_records,
    owner_alive,
    remove_slots,
    resolve_slot,
    select_for_down,
    slot_subnet,
)


def cli(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "tests.fleet", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


def test_path_matching_is_by_whole_path_component():
    slot1 = "/run/portpool-fleet/slot-1"
    assert _names_path(b"ssh\x00-o\x00ControlPath=/run/portpool-fleet/slot-1/cp/%C", slot1)
    assert _names_path(b"ssh: /run/portpool-fleet/slot-1/cp/ab12 [mux]", slot1)
    assert _names_path(b"sshd\x00-f\x00/run/portpool-fleet/slot-1", slot1)
    assert not _names_path(b"ssh\x00-o\x00ControlPath=/run/portpool-fleet/slot-10/cp/x", slot1)
    assert not _names_path(b"ssh: /run/portpool-fleet/slot-12/cp/ab12 [mux]", slot1)
    assert not _names_path(b"cat\x00/run/portpool-fleet/slot-1x", slot1)


def test_slot_is_resolved_exactly():
    assert resolve_slot("3") == 3
    assert resolve_slot(FLEET_RUN / "slot-12") == 12
    assert resolve_slot(FLEET_RUN / "slot-12" / "inventory.yml") == 12
    for bad in ("/tmp/slot-1/inventory.yml", "slot-1x", "inventories/example"):
        with pytest.raises(Exception, match="names no fleet"):
            resolve_slot(bad)


def _dead_pid():
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_down_selection_keeps_live_fleets():
    me = os.getpid()
    start = Path("/proc/%d/stat" % me).read_text().rsplit(")", 1)[1].split()[19]
    records = {
        0: {"slot": 0, "persistent": False, "owner_pid": me, "owner_start": start},
        1: {"slot": 1, "persistent": True, "owner_pid": me, "owner_start": start},
        2: {"slot": 2, "persistent": True, "owner_pid": _dead_pid(), "owner_start": None},
        3: {"slot": 3, "persistent": False, "owner_pid": me, "owner_start": "1"},  # pid reused
        10: None,  # unreadable: nobody owns it
    }
    assert select_for_down(records) == ([2, 3, 10], [])
    assert select_for_down(records, "1") == ([1], [])          # made by hand: by name
    assert select_for_down(records, "2") == ([2], [])
    slots, refused = select_for_down(records, "0")            # a running test's fleet
    assert slots == [] and "running test" in refused[0]
    assert select_for_down(records, "7") == ([], ["no fleet in slot 7"])


def _up(owner, tmp_path, name):
    spec = tmp_path / ("%s.yml" % name)
    spec.write_text("- {name: %s1}\n- {name: %s2, listeners: [5432]}\n" % (name, name))
    result = cli("up", "--spec", str(spec), "--owner-pid", str(owner))
    assert result.returncode == 0, result.stderr
    inventory = Path(result.stdout.strip())
    slot = resolve_slot(inventory)
    assert "slot %d," % slot in result.stderr and "down %d" % slot in result.stderr
    return slot, inventory


def _exists(slot):
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    return {
        "dir": (FLEET_RUN / ("slot-%d" % slot)).exists(),
        "netns": bool(re.search(r"^ppf%d-" % slot, names, re.M)),
        "bridge": (" ppfbr%d:" % slot) in links,
    }


def _ssh_master(inventory, host_address, control_dir):
    """An ssh ControlPersist master to a fleet host, kept outside the slot directory."""
    slot_dir = inventory.parent
    argv = ["ssh", "-i", str(slot_dir / "id_ed25519"),
            "-o", "UserKnownHostsFile=%s" % (slot_dir / "known_hosts"),
            "-o", "StrictHostKeyChecking=yes", "-o", "IdentitiesOnly=yes",
            "-o", "ControlMaster=auto", "-o", "ControlPersist=120",
            "-o", "ControlPath=%s/%%C" % control_dir, "root@%s" % host_address, "true"]
    assert subprocess.run(argv, capture_output=True, timeout=30).returncode == 0
    found = subprocess.run(["ss", "-Htnp", "dst", host_address, "dport", "=", ":22"],
                           capture_output=True, text=True).stdout
    pids = [int(pid) for pid in re.findall(r"pid=(\d+)", found)]
    assert pids, "no ssh master is connected to %s" % host_address
    return pids


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path("/proc/%d/stat" % pid).read_text()
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_down_removes_the_named_fleet_only(make_fleet, tmp_path):
    live = make_fleet([HostSpec("keep1")])   # a running test's fleet
    owner_a = subprocess.Popen(["sleep", "300"])
    owner_b = subprocess.Popen(["sleep", "300"])
    mine = []
    made_dirs = []
    decoy = None
    try:
        slot_a, inv_a = _up(owner_a.pid, tmp_path, "da")
        mine.append(slot_a)
        slot_b, _ = _up(owner_b.pid, tmp_path, "db")
        mine.append(slot_b)
        # A process whose command line names slot-<A>0 (another fleet's path) must live.
        decoy = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)",
                                  str(FLEET_RUN / ("slot-%d0" % slot_a) / "cp" / "x")])
        # ssh control sockets need a short path (a Unix socket name).
        control = Path(tempfile.mkdtemp(prefix="ppcp", dir="/tmp"))
        made_dirs.append(control)
        address = str(slot_subnet(slot_a)[10])
        masters = _ssh_master(inv_a, address, control)

        result = cli("down", str(inv_a))
        assert result.returncode == 0, result.stderr
        assert "removed 1 fleet(s): slot %d" % slot_a in result.stdout
        assert _exists(slot_a) == {"dir": False, "netns": False, "bridge": False}
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(_alive(pid) for pid in masters):
            time.sleep(0.1)
        assert not any(_alive(pid) for pid in masters), "ssh master to the fleet survived"
        assert decoy.poll() is None, "down killed a process of slot-%d0" % slot_a
        assert _exists(slot_b) == {"dir": True, "netns": True, "bridge": True}
        assert live.ansible("all", "-m", "ansible.builtin.ping").returncode == 0

        # A running test's fleet is refused by name.
        result = cli("down", str(live.slot))
        assert result.returncode == 1 and "running test" in result.stderr
        assert live.dir.exists()

        # Once B's owner is gone, a bare `down` would take B, never the live fleets.
        owner_b.kill()
        owner_b.wait()
        result = cli("down", "--dry-run")
        assert result.returncode == 0, result.stderr
        listed = {int(n) for n in re.findall(r"slot (\d+)", result.stdout)}
        assert slot_b in listed and live.slot not in listed
        records = fleet_records()
        assert not any(owner_alive(records.get(slot)) for slot in listed), listed
        assert _exists(slot_b)["dir"], "--dry-run removed something"
        result = cli("down", str(slot_b))
        assert result.returncode == 0 and "slot %d" % slot_b in result.stdout
        assert _exists(slot_b) == {"dir": False, "netns": False, "bridge": False}
        assert live.ansible("all", "-m", "ansible.builtin.ping").returncode == 0
    finally:
        for process in (owner_a, owner_b, decoy):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()
        remove_slots([slot for slot in mine if (FLEET_RUN / ("slot-%d" % slot)).exists()])
        for path in made_dirs:
            shutil.rmtree(path, ignore_errors=True)


def test_status_names_slot_owner_and_inventory(make_fleet):
    fleet = make_fleet([HostSpec("st1")])
    result = cli("status")
    assert result.returncode == 0, result.stderr
    line = [row for row in result.stdout.splitlines()
            if row.startswith("slot %d:" % fleet.slot)]
    assert line, result.stdout
    assert str(fleet.inventory) in line[0] and "owner pid %d (running)" % os.getpid() in line[0]
