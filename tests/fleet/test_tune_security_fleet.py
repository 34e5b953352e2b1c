"""tune.yml and rollback.yml against hostile state on the test fleet (issue 11).

Each test builds its own hosts with make_fleet (torn down by their own slot),
runs the real playbooks over SSH and compares every managed runtime value, every
file in /etc/sysctl.d (bytes, mode, symlink target) and /etc/sysctl.conf before
and after.
"""

import base64
import json
import os
import re
import threading

from tests.fleet.harness import HostSpec

KEYS = (
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_tw_reuse",
    "net.ipv4.tcp_max_tw_buckets",
)
FILE = "60-portpool.conf"
SETTINGS = {"ip_local_port_range": "30000 50999", "tcp_tw_reuse": 1}
NOBODY = 65534


def _tree(path):
    """Every entry under path: (kind, bytes or link target, mode), without following links."""
    found = {}
    for item in sorted(path.rglob("*")):
        info = item.lstat()
        if item.is_symlink():
            found[str(item.relative_to(path))] = ("link", os.readlink(item), info.st_mode)
        elif item.is_file():
            found[str(item.relative_to(path))] = ("file", item.read_bytes(), info.st_mode)
    return found


def host_state(fleet, name):
    host = fleet.hosts[name]
    return {
        "runtime": {key: fleet.sysctl(name, key) for key in KEYS},
        "sysctl_d": _tree(host.sysctl_d),
        "sysctl_conf": (host.sysctl_conf.read_bytes(), host.sysctl_conf.stat().st_mode),
    }


def run(fleet, playbook, *args, **extra):
    extra.setdefault("portpool_tune_settings", SETTINGS)
    extra.setdefault("portpool_tune_serial", ["100%"])
    result = fleet.playbook(playbook, *args, extra_vars=extra)
    return result, result.stdout + result.stderr


def test_masked_and_symlinked_files_are_refused_and_end_as_they_started(make_fleet):
    fleet = make_fleet([HostSpec("m1", sysctls={"net.ipv4.tcp_tw_reuse": "0"}),
                        HostSpec("l1", sysctl_conf="net.ipv4.tcp_tw_reuse = 0\n")])
    os.symlink("/dev/null", fleet.hosts["m1"].sysctl_d / FILE)
    os.symlink("../sysctl.conf", fleet.hosts["l1"].sysctl_d / "99-sysctl.conf")
    before = {name: host_state(fleet, name) for name in fleet.hosts}

    result, output = run(fleet, "playbooks/tune.yml", "--limit", "m1")
    assert result.returncode != 0
    assert "masked (a symlink to /dev/null)" in output, output[-3000:]
    result, output = run(fleet, "playbooks/tune.yml", "--limit", "l1",
                         portpool_tune_file_name="99-sysctl.conf")
    assert result.returncode != 0
    assert "99-sysctl.conf" in output and "distributions ship" in output, output[-3000:]
    for name in fleet.hosts:
        result, output = run(fleet, "playbooks/rollback.yml", "--limit", name)
        assert result.returncode == 0, output[-3000:]
        assert host_state(fleet, name) == before[name], name
        assert not (fleet.hosts[name].state / "tune-state.json").exists()


def test_a_mask_made_after_tuning_survives_rollback(make_fleet):
    fleet = make_fleet([HostSpec("m2", sysctls={"net.ipv4.tcp_tw_reuse": "0"})])
    host = fleet.hosts["m2"]
    result, output = run(fleet, "playbooks/tune.yml")
    assert result.returncode == 0, output[-3000:]
    assert host.state.stat().st_mode & 0o7777 == 0o700
    (host.sysctl_d / FILE).unlink()
    os.symlink("/dev/null", host.sysctl_d / FILE)
    result, output = run(fleet, "playbooks/rollback.yml")
    assert result.returncode != 0
    assert "masked" in output, output[-3000:]
    assert os.readlink(host.sysctl_d / FILE) == "/dev/null"
    assert (host.state / "tune-state.json").is_file()  # kept for a rollback by hand


def test_a_planted_state_file_is_refused(make_fleet):
    fleet = make_fleet([HostSpec("p1", sysctls={"net.ipv4.tcp_tw_reuse": "0"})])
    host = fleet.hosts["p1"]
    evil = b"kernel.core_pattern = |/tmp/pwn %p\nfs.protected_symlinks = 0\n"
    planted = {"version": 1, "saved_at": "2026-01-01T00:00:00Z",
               "file": "/etc/sysctl.d/" + FILE, "file_existed": True,
               "file_content_b64": base64.b64encode(evil).decode(), "file_mode": 0o4777,
               "runtime": {"net.ipv4.ip_local_port_range": "1024 1025"}}
    before = host_state(fleet, "p1")

    # Planted by an unprivileged user in a state directory it can write.
    os.chown(host.state, NOBODY, NOBODY)
    os.chmod(host.state, 0o777)
    state_file = host.state / "tune-state.json"
    state_file.write_text(json.dumps(planted))
    os.chown(state_file, NOBODY, NOBODY)
    result, output = run(fleet, "playbooks/rollback.yml")
    assert result.returncode != 0
    assert "refusing the state directory" in output, output[-3000:]
    assert host_state(fleet, "p1") == before
    result, output = run(fleet, "playbooks/tune.yml")
    assert result.returncode != 0 and "refusing the state directory" in output
    assert host_state(fleet, "p1") == before

    # The same content in a root-owned 0700 directory: the content itself is refused.
    os.chown(host.state, 0, 0)
    os.chmod(host.state, 0o700)
    os.chown(state_file, 0, 0)
    os.chmod(state_file, 0o600)
    result, output = run(fleet, "playbooks/rollback.yml")
    assert result.returncode != 0
    assert "refusing the saved state" in output, output[-3000:]
    assert "kernel.core_pattern" in output
    assert host_state(fleet, "p1") == before
    assert not list(host.sysctl_d.iterdir())


def _summary_outcome(output, name):
    summary = output[output.index("Summarise the rollout"):]
    for outcome in ("changed", "unchanged", "failed", "rolled_back"):
        if re.search(r"%s:\s*\n\s*- %s\s*\n" % (outcome, name), summary):
            return outcome
    return None


def test_two_concurrent_tunes_end_consistent_and_report_the_truth(make_fleet):
    fleet = make_fleet([HostSpec("c1", sysctls={"net.ipv4.tcp_tw_reuse": "0"})])
    host = fleet.hosts["c1"]
    before = host_state(fleet, "c1")
    buckets = {"a": 262144, "b": 300000}
    outputs = {}

    def tune(label):
        settings = dict(SETTINGS, tcp_max_tw_buckets=buckets[label])
        result, output = run(fleet, "playbooks/tune.yml", portpool_tune_settings=settings)
        outputs[label] = (result.returncode, output)

    threads = [threading.Thread(target=tune, args=(label,)) for label in buckets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=900)
    assert set(outputs) == set(buckets)

    live = fleet.sysctl("c1", "net.ipv4.tcp_max_tw_buckets")
    content = (host.sysctl_d / FILE).read_text()
    # Runtime and boot agree, and hold one run's values, never a mix.
    assert "net.ipv4.tcp_max_tw_buckets = %s\n" % live in content
    assert live in {str(value) for value in buckets.values()}
    winner = next(label for label, value in buckets.items() if str(value) == live)
    rc, output = outputs[winner]
    assert rc == 0 and _summary_outcome(output, "c1") == "changed", output[-3000:]
    loser = next(label for label in buckets if label != winner)
    rc, output = outputs[loser]
    if rc != 0:
        # It lost the race: it says so, and did not undo the winner.
        assert _summary_outcome(output, "c1") == "failed", output[-3000:]
        assert ("another portpool run changed this host" in output
                or "another portpool run holds the lock" in output), output[-3000:]
    else:
        assert _summary_outcome(output, "c1") in ("changed", "unchanged"), output[-3000:]

    # One rollback still restores exactly what the first run found.
    result, output = run(fleet, "playbooks/rollback.yml")
    assert result.returncode == 0, output[-3000:]
    assert host_state(fleet, "c1") == before
