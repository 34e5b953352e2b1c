"""portpool_probe's module surface (and portpool_probe_run): documentation, option checks,
readers."""

import json
import sys
from pathlib import Path

import portpool_probe
import pytest
import yaml
from ansible.module_utils import basic
from ansible.module_utils import portpool_probe_engine as probe_engine
from ansible.module_utils import portpool_probe_run as probe_run
from ansible.module_utils.common.text.converters import to_bytes
from ansible.module_utils.portpool_probe_engine import count_port_sockets, netstat_counter

FIXTURES = Path(__file__).parent / "fixtures" / "probe"

HOST = {
    "net.ipv4.ip_local_port_range": "40000 40999",
    "net.ipv4.ip_local_reserved_ports": "",
    "net.ipv4.ip_unprivileged_port_start": "1024",
    "net.ipv4.tcp_tw_reuse": "2",
    "net.ipv4.tcp_tw_reuse_delay": "1000",
    "net.ipv4.tcp_timestamps": "1",
    "net.ipv4.tcp_max_tw_buckets": "131072",
}


def test_argument_spec_matches_documentation():
    doc = yaml.safe_load(portpool_probe.DOCUMENTATION)
    spec = portpool_probe.get_argument_spec()
    assert set(doc["options"]) == set(spec)
    for name, option in spec.items():
        assert doc["options"][name]["type"] == option["type"], name
        assert doc["options"][name].get("default") == option.get("default"), name
        assert doc["options"][name].get("choices") == option.get("choices"), name


def test_return_documents_the_interface_names():
    probe = yaml.safe_load(portpool_probe.RETURN)["probe"]["contains"]
    for key in ("mode", "scope", "range", "reserved_in_range", "expected", "hold",
                "per_destination", "bind_zero_blocked", "bind_address_no_port_ok", "churn",
                "matches_expected"):
        assert key in probe, key
    assert set(probe["hold"]["contains"]) >= {
        "established", "expected", "stopped_by", "seconds", "workers",
        "fd_limit_per_process", "measured_range"}
    assert set(probe["churn"]["contains"]["remote"]["contains"]) >= {
        "before_first_failure", "rate_per_s", "reuse_effective"}
    assert "model_rate_per_s" in probe["churn"]["contains"]
    yaml.safe_load(portpool_probe.EXAMPLES)


def _params(**overrides):
    params = {name: option.get("default")
              for name, option in portpool_probe.get_argument_spec().items()}
    params.update(overrides)
    return params


def test_prepare_plans_a_lab_without_root_too(monkeypatch):
    # Without root the lab is a user namespace; whether the kernel allows it is
    # found out when the session tries (tests/integration/test_probe_unprivileged.py).
    monkeypatch.delenv("PORTPOOL_PROBE_REFUSE", raising=False)
    plan, error = probe_run.prepare(_params(), HOST, is_root=False)
    assert error is None
    assert plan["mode"] == "lab" and plan["refusals"] == []
    monkeypatch.setenv("PORTPOOL_PROBE_REFUSE", "repair,nonsense")
    plan, error = probe_run.prepare(_params(), HOST, is_root=False)
    assert plan is None and "nonsense" in error
    monkeypatch.delenv("PORTPOOL_PROBE_REFUSE")
    plan, error = probe_run.prepare(_params(mode="host"), HOST, is_root=False)
    assert error is None
    assert plan["listener_candidates"][0] == 41000


def test_prepare_reports_host_settings_it_cannot_read():
    values = dict(HOST, **{"net.ipv4.ip_local_port_range": "40000"})
    _, error = probe_run.prepare(_params(), values, is_root=True)
    assert error.startswith("cannot read the host's settings")


def test_read_host_values_from_a_fixture_tree(tmp_path):
    ipv4 = tmp_path / "net" / "ipv4"
    ipv4.mkdir(parents=True)
    (ipv4 / "ip_local_port_range").write_text("40000\t40999\n")
    (ipv4 / "tcp_tw_reuse").write_text("1\n")
    values = probe_run.read_host_values(str(tmp_path))
    assert values["net.ipv4.ip_local_port_range"] == "40000 40999"
    assert values["net.ipv4.tcp_tw_reuse"] == "1"
    assert values["net.ipv4.tcp_tw_reuse_delay"] is None


def _run_main(monkeypatch, args, values=HOST, euid=0):
    """Run main() with arguments; return (exit JSON, whether run_probe was called)."""
    called = []

    def fake_run_probe(plan):
        called.append(plan)
        raise AssertionError("run_probe must not be reached")

    monkeypatch.setattr(basic, "_ANSIBLE_ARGS", to_bytes(json.dumps({"ANSIBLE_MODULE_ARGS": args})))
    monkeypatch.setattr(basic, "_ANSIBLE_PROFILE", "legacy", raising=False)
    monkeypatch.setattr(probe_run, "read_host_values", lambda root="/proc/sys": values)
    monkeypatch.setattr(probe_engine, "run_probe", fake_run_probe)
    monkeypatch.setattr(probe_run.os, "geteuid", lambda: euid)
    monkeypatch.setattr(sys, "argv", ["portpool_probe"])
    with pytest.raises(SystemExit):
        portpool_probe.main()
    return called


@pytest.mark.parametrize(("args", "fragment"), [
    ({"timeout": -1}, "timeout must lie in 1..3600"),
    ({"sample_ports": 2000}, "sample_ports=2000 is larger than the range"),
    ({"churn_seconds": -0.5}, "churn_seconds must lie"),
    ({"destination": "127.0.0.9"}, "destination applies to mode=host only"),
    ({"mode": "remote"}, "value of mode must be one of"),
])
def test_bad_options_fail_before_anything_is_created(monkeypatch, capsys, args, fragment):
    called = _run_main(monkeypatch, args)
    assert called == []
    result = json.loads(capsys.readouterr().out)
    assert result["failed"] is True
    assert fragment in result["msg"]


def test_host_mode_in_check_mode_measures_nothing(monkeypatch, capsys):
    called = _run_main(monkeypatch, {"mode": "host", "_ansible_check_mode": True})
    assert called == []
    result = json.loads(capsys.readouterr().out)
    assert result["skipped"] is True
    assert result["changed"] is False


def test_netstat_counter_reads_tcpext():
    path = str(FIXTURES / "netstat")
    assert netstat_counter("TCPTimeWaitOverflow", path) == 17
    assert netstat_counter("NoSuchCounter", path) is None
    assert netstat_counter("TW", str(FIXTURES / "missing")) is None


def test_count_port_sockets_skips_time_wait():
    paths = (str(FIXTURES / "tcp"), str(FIXTURES / "missing"))
    assert count_port_sockets(9, paths) == 2
    assert count_port_sockets(22, paths) == 1
    assert count_port_sockets(40000, paths) == 1
