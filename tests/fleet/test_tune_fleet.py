"""playbooks/tune.yml and rollback.yml end to end over SSH on the test fleet."""

import hashlib
import re
import subprocess
import threading
import time

import pytest

from tests.fleet.harness import Fleet, HostSpec

KEYS = (
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_tw_reuse",
    "net.ipv4.tcp_tw_reuse_delay",
    "net.ipv4.tcp_timestamps",
    "net.ipv4.tcp_max_tw_buckets",
)
DESIRED = {"ip_local_port_range": "30000 50999", "tcp_tw_reuse": 1, "tcp_max_tw_buckets": 262144}
LATE = "net.ipv4.tcp_tw_reuse = 0\n"
SAME = "net.ipv4.tcp_tw_reuse = 1\n"
FILE = "60-portpool.conf"


@pytest.fixture(scope="module")
def fleet():
    specs = [
        # h01's later file sets the value portpool sets: harmless, not an override.
        HostSpec("h01", sysctls={"net.ipv4.ip_local_port_range": "40000 40999"},
                 sysctl_d={"70-same.conf": SAME}, groups=("proxies",),
                 hostvars={"portpool_tune_host_settings": {"tcp_max_tw_buckets": 300000}}),
        HostSpec("h02", listeners=(45000,), sysctl_d={"99-late.conf": LATE},
                 groups=("proxies",)),
        HostSpec("h03", become=True, sysctls={"net.ipv4.tcp_tw_reuse": "0"},
                 groups=("proxies",)),
    ]
    with Fleet.create(specs) as made:
        yield made


def _files(path):
    found = {}
    for item in sorted(path.rglob("*")):
        if item.is_file():
            found[str(item.relative_to(path))] = (item.read_bytes(), item.stat().st_mode)
    return found


def host_state(fleet, name):
    """Runtime values of every managed key, /etc/sysctl.d and the state directory."""
    host = fleet.hosts[name]
    return {
        "runtime": {key: fleet.sysctl(name, key) for key in KEYS},
        "sysctl_d": _files(host.sysctl_d),
        "state": _files(host.state),
    }


def fleet_hash(fleet):
    digest = hashlib.sha256()
    for name in sorted(fleet.hosts):
        digest.update(repr(host_state(fleet, name)).encode())
    return digest.hexdigest()


def recap(output):
    """{host: {ok, changed, failed, ...}} from the PLAY RECAP."""
    found = {}
    for name, counts in re.findall(r"^(\w+)\s+:\s+(ok=.*)$", output, re.M):
        found[name] = {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", counts)}
    return found


def summary_section(output, key):
    """The lines of one key of the tune summary (up to the next key at the same indent)."""
    summary = output[output.index("Summarise the rollout"):]
    match = re.search(r"^(\s+)%s:.*?(?=^\1\w+:|^TASK|^PLAY)" % key, summary, re.M | re.S)
    assert match, summary[:3000]
    return match.group(0)


def rollback_summary(output):
    """{host: what the rollback says it did} from its summary."""
    section = output[output.index("Summarise the rollback"):].split("PLAY RECAP")[0]
    body = section.split("msg:", 1)[1]
    found = {}
    for name, text in re.findall(r"^\s{8}(\w+): (.*?)(?=^\s{8}\w+: |\Z)", body, re.M | re.S):
        found[name] = " ".join(text.strip().strip("'").split())
    return found


def run(fleet, playbook, *args, **settings):
    extra = {"portpool_tune_settings": settings.pop("settings", DESIRED),
             "portpool_tune_serial": ["100%"]}
    extra.update(settings)
    result = fleet.playbook(playbook, *args, extra_vars=extra)
    return result, result.stdout + result.stderr


BAD = [
    ({"ip_local_port_range": "50000 40000"}, "portpool_tune_settings.ip_local_port_range"),
    ({"ip_local_port_range": "4000O 50000"}, "portpool_tune_settings.ip_local_port_range low"),
    ({"ip_local_port_range": "500 50000"}, "ip_unprivileged_port_start 1024"),
    ({"ip_local_port_range": "30000 70000"}, "portpool_tune_settings.ip_local_port_range high"),
    ({"tcp_tw_reuse": 3}, "portpool_tune_settings.tcp_tw_reuse must be between 0 and 2"),
    ({"tcp_tw_recycle": 1}, "portpool_tune_settings.tcp_tw_recycle is refused"),
    ({"ip_local_port_range": "30000 50999; rm -rf /"},
     "portpool_tune_settings.ip_local_port_range"),
    ({"tcp_tw_reuse": "; rm -rf /"}, "portpool_tune_settings.tcp_tw_reuse must be an integer"),
    ({"ip_local_port_range": ""}, "portpool_tune_settings.ip_local_port_range is empty"),
]


def test_bad_inputs_fail_before_any_host_changes(fleet):
    before = fleet_hash(fleet)
    for settings, message in BAD:
        result, output = run(fleet, "playbooks/tune.yml", settings=settings)
        assert result.returncode != 0, settings
        assert message in output, (settings, output[-3000:])
        assert "changed=0" in output and "changed=1" not in output, settings
        assert fleet_hash(fleet) == before, settings


def test_a_misspelt_variable_is_warned_about_and_no_host_reads_as_unchanged(fleet):
    before = fleet_hash(fleet)
    # The group layer is misspelt; h01's host layer is cleared, so no host has settings.
    result, output = run(fleet, "playbooks/tune.yml", settings={},
                         portpool_tune_setting=DESIRED, portpool_tune_host_settings={})
    assert result.returncode == 0, output[-3000:]
    assert ("portpool_tune_setting (set for h01, h02, h03) is not a portpool variable: "
            "did you mean portpool_tune_settings?") in output, output[-3000:]
    assert "h01, h02, h03: the merged portpool_tune settings are empty" in output
    assert re.search(r"no_settings:\s*\n\s*- h01\s*\n\s*- h02\s*\n\s*- h03", output)
    assert "unchanged: []" in output
    assert fleet_hash(fleet) == before


def test_check_apply_repeat_and_rollback(fleet):
    original = {name: host_state(fleet, name) for name in fleet.hosts}

    # --check --diff: reports what would change, changes nothing anywhere.
    result, output = run(fleet, "playbooks/tune.yml", "--check", "--diff")
    assert result.returncode == 0, output[-4000:]
    assert {name: host_state(fleet, name) for name in fleet.hosts} == original
    assert "+net.ipv4.tcp_tw_reuse = 1" in output
    assert "-net.ipv4.tcp_tw_reuse = 0" in output  # h03's runtime value, before
    assert "would_change" in output

    # Apply: canary, then the rest; every host, the sudo one too, gets the values.
    # -v shows each read-back result, so the probe inside it can be checked.
    result, output = run(fleet, "playbooks/tune.yml", "-v")
    assert result.returncode == 0, output[-4000:]
    counts = recap(output)
    assert all(counts[name]["changed"] >= 1 and counts[name]["failed"] == 0
               for name in fleet.hosts), counts
    # The override at boot is named where it changes the value (h02), not where the
    # later file sets the same value (h01); the summary lists it with the reason.
    assert "99-late.conf" in output
    warnings = output.split("[WARNING]")[1:]
    assert any("99-late.conf (line 1)" in warning for warning in warnings), output[-4000:]
    assert not any("70-same.conf" in warning.split("\n\n")[0] for warning in warnings)
    overridden = summary_section(output, "overridden_at_boot")
    assert "h02:" in overridden and "h01" not in overridden and "h03" not in overridden
    assert ("net.ipv4.tcp_tw_reuse is also set in /etc/sysctl.d/99-late.conf (line 1)"
            in overridden)
    assert "the kernel gets 0, not 1" in overridden
    # Each changed host was read back and measured by the quick probe inside the apply
    # call itself (one round trip): no separate read-back or verify task reaches it.
    assert "Read the pool back" not in output and "TASK [portpool_tune : Verify" not in output
    readback = "".join(section.split("TASK [", 1)[0] for section in output.split(
        "Apply the pool settings and verify them on the host")[1:])
    for name in fleet.hosts:
        assert "changed: [%s]" % name in readback, readback[-3000:]
    assert readback.count("mismatches: []") == len(fleet.hosts), readback[-3000:]
    assert readback.count("matches_expected: true") == len(fleet.hosts), readback[-3000:]
    for name in fleet.hosts:
        assert fleet.sysctl(name, "net.ipv4.ip_local_port_range") == "30000 50999"
        assert fleet.sysctl(name, "net.ipv4.tcp_tw_reuse") == "1"
        # The host layer wins over the group layer, key by key.
        buckets = "300000" if name == "h01" else "262144"
        assert fleet.sysctl(name, "net.ipv4.tcp_max_tw_buckets") == buckets
        assert "net.ipv4.tcp_max_tw_buckets = %s\n" % buckets in (
            fleet.hosts[name].sysctl_d / FILE).read_text()
        content = (fleet.hosts[name].sysctl_d / FILE).read_text()
        assert content.startswith("# Written by portpool")
        assert "net.ipv4.ip_local_port_range = 30000 50999\n" in content
        assert "net.ipv4.tcp_tw_reuse = 1\n" in content
        assert '"' not in content
        assert (fleet.hosts[name].sysctl_d / FILE).stat().st_mode & 0o777 == 0o644
        assert (fleet.hosts[name].state / "tune-state.json").is_file()
    # The listener inside the new range is reserved, at runtime and in the file.
    assert fleet.sysctl("h02", "net.ipv4.ip_local_reserved_ports") == "45000"
    assert "ip_local_reserved_ports = 45000" in (fleet.hosts["h02"].sysctl_d / FILE).read_text()
    assert fleet.sysctl("h01", "net.ipv4.ip_local_reserved_ports") == ""

    # A second run changes nothing.
    result, output = run(fleet, "playbooks/tune.yml")
    assert result.returncode == 0, output[-4000:]
    assert all(counts["changed"] == 0 for counts in recap(output).values()), output[-2000:]

    # The option fails the overridden host only, and still changes nothing.
    result, output = run(fleet, "playbooks/tune.yml", portpool_tune_fail_on_boot_override=True)
    assert result.returncode != 0, output[-4000:]
    counts = recap(output)
    assert counts["h02"]["failed"] == 1 and counts["h01"]["failed"] == 0, counts
    assert counts["h03"]["failed"] == 0, counts
    assert "h02: its values would not survive a reboot" in output
    assert all(item["changed"] == 0 for item in counts.values()), counts

    # Rollback restores values and files byte for byte; a second rollback does nothing.
    result, output = run(fleet, "playbooks/rollback.yml", "--diff")
    assert result.returncode == 0, output[-4000:]
    # It says per host what it put back.
    said = rollback_summary(output)
    assert set(said) == set(fleet.hosts), said
    assert "net.ipv4.tcp_tw_reuse = 0 (was 1)" in said["h03"], said
    assert "net.ipv4.ip_local_port_range = 40000 40999 (was 30000 50999)" in said["h01"], said
    assert "ip_local_reserved_ports = (empty) (was 45000)" in said["h02"], said
    for name in fleet.hosts:
        assert said[name].startswith("restored "), said
        assert "removed /etc/sysctl.d/%s" % FILE in said[name], said
        assert "saved state from 20" in said[name] and said[name].endswith("retired"), said
    for name in fleet.hosts:
        now = host_state(fleet, name)
        assert now["runtime"] == original[name]["runtime"], name
        assert now["sysctl_d"] == original[name]["sysctl_d"], name
        assert list(now["state"]) == ["tune-state.rolled-back.json"]
    result, output = run(fleet, "playbooks/rollback.yml")
    assert result.returncode == 0, output[-4000:]
    assert all(counts["changed"] == 0 for counts in recap(output).values()), output[-2000:]
    said = rollback_summary(output)
    assert set(said) == set(fleet.hosts), said
    assert all(text.startswith("nothing to restore: no saved state in /var/lib/portpool")
               for text in said.values()), said


def _tamper_once(path, stop, deadline=120):
    """Append a line to `path` as soon as it appears (after the module wrote it)."""
    end = time.monotonic() + deadline
    while not stop.is_set() and time.monotonic() < end:
        if path.exists():
            with open(path, "a") as handle:
                handle.write("# changed behind portpool's back\n")
            return
        time.sleep(0.01)


def test_a_host_failing_verification_is_rolled_back_and_the_rollout_stops(fleet):
    before = {name: host_state(fleet, name) for name in fleet.hosts}
    stop = threading.Event()
    # The canary's file changes after portpool wrote it: verification must catch it.
    tamper = threading.Thread(target=_tamper_once, args=(fleet.hosts["h01"].sysctl_d / FILE, stop))
    tamper.start()
    try:
        result, output = run(fleet, "playbooks/tune.yml", portpool_tune_serial=[1, "100%"])
    finally:
        stop.set()
        tamper.join(timeout=10)
    assert result.returncode != 0
    assert "verification failed" in output, output[-3000:]
    summary = output[output.index("Summarise the rollout"):]
    assert re.search(r"rolled_back:\s*\n\s*- h01", summary), summary[:1500]
    # The stop says why: which host of the batch failed, and its reason.
    assert "Stopping the rollout: 1 of 1 host(s) of the batch h01 failed" in output
    stopped = summary_section(output, "stopped")
    assert "h01 (rolled_back:" in stopped and "verification failed" in stopped, stopped
    assert re.search(r"not_reached:\s*\n\s*- h02\s*\n\s*- h03", summary), summary[:1500]
    for name in fleet.hosts:
        now = host_state(fleet, name)
        assert now["runtime"] == before[name]["runtime"], name
        assert now["sysctl_d"] == before[name]["sysctl_d"], name
    assert recap(output)["h01"]["failed"] == 1


def _runtime_in_netns(host):
    """Managed values read straight from the host's namespace (works with sshd dead)."""
    inside = ["ip", "netns", "exec", host.netns, "cat"]
    return {key: " ".join(subprocess.run(
        [*inside, "/proc/sys/" + key.replace(".", "/")], capture_output=True, text=True,
        check=True, timeout=30).stdout.split()) for key in KEYS}


def test_hosts_unreachable_or_failing_at_validation_take_no_batch_slot(make_fleet):
    fleet = make_fleet([HostSpec("r%d" % index, sysctls={"net.ipv4.tcp_tw_reuse": "0"})
                        for index in range(1, 6)])
    # r1, first in the inventory, cannot be reached; r2's /proc/sys is read-only, as in
    # a container. Both fail alone, take no batch slot, and the canary is r3.
    fleet.run("r2", ["mount", "--bind", "/proc/sys", "/proc/sys"])
    fleet.run("r2", ["mount", "-o", "remount,ro,bind", "/proc/sys"])
    before = {name: host_state(fleet, name) for name in fleet.hosts}
    fleet.kill_sshd("r1")
    result, output = run(fleet, "playbooks/tune.yml", portpool_tune_serial=[1, 1, "100%"])
    assert result.returncode != 0
    assert "r2 cannot be tuned, nothing was changed on it" in output
    assert "/proc/sys is not writable here" in output
    assert recap(output)["r2"]["failed"] == 1
    # The first batch (the canary) is r3 alone, then r4, then r5.
    apply_task = "TASK [portpool_tune : Apply the pool settings and verify them on the host]"
    batches = [re.findall(r"^(?:changed|ok|fatal): \[(r\d)\]", section.split("TASK [", 1)[0], re.M)
               for section in output.split(apply_task)[1:]]
    assert batches == [["r3"], ["r4"], ["r5"]], batches
    for name in ("r3", "r4", "r5"):
        assert fleet.sysctl(name, "net.ipv4.tcp_tw_reuse") == "1", name
        assert fleet.sysctl(name, "net.ipv4.ip_local_port_range") == "30000 50999", name
        assert (fleet.hosts[name].sysctl_d / FILE).is_file()
    assert host_state(fleet, "r2") == before["r2"]
    r1 = fleet.hosts["r1"]
    assert _runtime_in_netns(r1) == before["r1"]["runtime"]
    assert _files(r1.sysctl_d) == before["r1"]["sysctl_d"]
    assert _files(r1.state) == before["r1"]["state"]
    summary = output[output.index("Summarise the rollout"):]
    assert re.search(r"changed:\s*\n\s*- r3\s*\n\s*- r4\s*\n\s*- r5\s*\n", summary), summary[:1500]
    assert re.search(r"failed:\s*\n\s*- r2\s*\n", summary), summary[:1500]
    assert re.search(r"unreachable:\s*\n\s*- r1\s*\n", summary), summary[:1500]
    assert "not_reached: []" in summary, summary[:1500]
    assert "could not be reached at validation" in output
    assert "no: every batch was within" in summary_section(output, "stopped")

    # Rollback says, per host, what it restored, that there was nothing, or that it failed.
    result, output = run(fleet, "playbooks/rollback.yml")
    assert result.returncode != 0
    said = rollback_summary(output)
    assert said["r1"] == "not rolled back: failed or unreachable (see above)", said
    assert said["r2"].startswith("nothing to restore: no saved state"), said
    for name in ("r3", "r4", "r5"):
        assert said[name].startswith("restored net.ipv4.ip_local_port_range = "), said
        assert "net.ipv4.tcp_tw_reuse = 0 (was 1); removed /etc/sysctl.d/" in said[name], said
        assert host_state(fleet, name) == before[name] | {"state": host_state(fleet, name)["state"]}
