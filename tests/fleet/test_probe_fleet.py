"""portpool_probe over SSH: every fleet host reports its own pool."""

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
