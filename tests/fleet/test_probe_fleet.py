"""portpool_probe over SSH: every fleet host reports its own pool."""

import json
import re
import textwrap

import yaml

from tests.fleet.harness import HostSpec

HOSTS = {
    # name: (sysctls, become, expected full pool, measured hold)
    "pr1": ({"net.ipv4.ip_local_port_range": "40000 40999",
             "net.ipv4.ip_local_reserved_ports": "40100-40109,50000"}, False, 990, 990),
    "pr2": ({"net.ipv4.ip_local_port_range": "50001 50500",
             "net.ipv4.tcp_tw_reuse": "0"}, False, 500, 500),
    "pr3": ({"net.ipv4.ip_local_port_range": "32768 60999"}, True, 28232, 1000),
}


def _results(stdout):
    """Per-host results from the default callback's YAML output."""
    results = {}
    blocks = re.split(r"^(\S+) \| (\w+!?) =>\s*$", stdout, flags=re.M)
    for index in range(1, len(blocks) - 2, 3):
        name, status, body = blocks[index], blocks[index + 1], blocks[index + 2]
        result = yaml.safe_load(textwrap.dedent(body)) or {}
        result["status"] = status
        results[name] = result
    return results


def test_probe_reports_each_hosts_own_pool(make_fleet):
    fleet = make_fleet([HostSpec(name, sysctls=sysctls, become=become)
                        for name, (sysctls, become, _, _) in HOSTS.items()])
    done = fleet.ansible("all", "-m", "portpool_probe", "-a", "churn_seconds=0")
    assert done.returncode == 0, done.stdout + done.stderr
    results = _results(done.stdout)
    assert set(results) == set(HOSTS), done.stdout
    for name, (sysctls, _, expected, measured) in HOSTS.items():
        result = results[name]
        assert result["status"] == "SUCCESS", (name, result)
        probe = result["probe"]
        assert probe["mode"] == "lab"
        assert probe["settings"]["net.ipv4.ip_local_port_range"] == (
            " ".join(sysctls["net.ipv4.ip_local_port_range"].split()))
        assert probe["expected"] == expected, name
        assert probe["hold"]["established"] == measured, name
        assert probe["hold"]["stopped_by"] == "EADDRNOTAVAIL", name
        assert probe["matches_expected"] is True, name
        assert probe["per_destination"] is True
        assert probe["bind_zero_blocked"] is True
        assert probe["bind_address_no_port_ok"] is True
    assert results["pr1"]["probe"]["reserved_in_range"] == 10
    assert results["pr3"]["probe"]["measured_range"] == [32768, 33767]
    # The probe's lab never changed a host's own settings.
    assert fleet.sysctl("pr1", "net.ipv4.ip_local_port_range") == "40000 40999"
    assert fleet.sysctl("pr2", "net.ipv4.tcp_tw_reuse") == "0"


def _probes(run_dir):
    return {path.stem: json.loads(path.read_text())["probe"]
            for path in (run_dir / "results").glob("*.json")}


def test_audits_hold_each_configuration_once_until_it_changes(make_fleet, tmp_path):
    """Two hosts share a configuration, a third differs: the second audit holds no
    range, a host whose settings change measures again, and 0 days measures all."""
    same = {"net.ipv4.ip_local_port_range": "40000 40999"}
    fleet = make_fleet([HostSpec("rec1", sysctls=same), HostSpec("rec2", sysctls=same),
                        HostSpec("rec3", sysctls={"net.ipv4.ip_local_port_range":
                                                  "50000 50499"})])

    def audit(name, **extra):
        done = fleet.playbook("playbooks/audit.yml", extra_vars=dict(
            portpool_report_dir=str(tmp_path / name), portpool_audit_probe_scope="full",
            **extra))
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        return _probes(tmp_path / name)

    first = audit("run1")
    assert not any("record" in probe for probe in first.values())
    assert first["rec1"]["key"] == first["rec2"]["key"] != first["rec3"]["key"]
    record = tmp_path / "probes.json"
    assert record.stat().st_mode & 0o777 == 0o600

    second = audit("run2")
    for name, probe in second.items():
        assert probe["record"]["run"] != "" and probe["key"] == first[name]["key"], name
        assert probe["hold"] == first[probe["record"]["host"]]["hold"], name
        assert "on record: measured on" in probe["summary"]
    assert second["rec3"]["hold"]["established"] == 500

    fleet.run("rec3", ["sysctl", "-qw", "net.ipv4.ip_local_port_range=50000 50299"])
    third = audit("run3")
    assert "record" not in third["rec3"] and third["rec3"]["hold"]["established"] == 300
    assert "record" in third["rec1"] and "record" in third["rec2"]

    fourth = audit("run4", portpool_audit_probe_reuse_days=0)
    assert not any("record" in probe for probe in fourth.values())
