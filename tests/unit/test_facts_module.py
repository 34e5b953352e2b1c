"""portpool_facts: typed settings, the whole gather on a fixture /proc tree, limits, docs."""

import json
import os
import socket
from pathlib import Path

import portpool_facts
import portpool_probe
import pytest
import yaml
from ansible.module_utils import basic, portpool_snapshot
from ansible.module_utils.common.text.converters import to_bytes
from ansible.module_utils.portpool_limits import (
    describe_pid,
    is_unit,
    main_pid_from_cgroup,
    parse_limits,
    parse_ppid,
    pids_by_comm,
    unit_cgroup_pids,
)
from ansible.module_utils.portpool_probe_run import Outcome
from ansible.module_utils.portpool_sysctl import SHORT_NAMES

FIXTURES = Path(__file__).parent / "fixtures"
PROC = FIXTURES / "proc_facts"
EXPECTED = json.loads((FIXTURES / "sockdiag" / "sockdiag_expected.json").read_text())


class FakeModule:
    """Just what gather() uses of AnsibleModule, for a fixture /proc tree."""

    def get_bin_path(self, _name):
        return None

    def run_command(self, *_args, **_kwargs):
        raise AssertionError("no command may run against a fixture tree")


def params(**overrides):
    values = {key: spec.get("default") for key, spec in portpool_facts.get_argument_spec().items()}
    values.update(overrides)
    return values


@pytest.fixture
def gathered(tmp_path):
    etc = tmp_path / "etc" / "sysctl.d"
    etc.mkdir(parents=True)
    (etc / "50-pool.conf").write_text(
        "net.ipv4.ip_local_port_range = 40000 49999\nnet.ipv4.tcp_tw_reuse = 1\n")
    (tmp_path / "etc" / "sysctl.conf").write_text("net.ipv4.tcp_tw_recycle = 0\n")
    return portpool_facts.gather(
        FakeModule(), params(proc_root=str(PROC), config_root=str(tmp_path),
                             processes=["nginx", "worker proc", "absent"]))


def test_exactly_the_issue_keys(gathered):
    facts, _warnings = gathered
    assert set(facts) == {"sysctl", "kernel", "ephemeral", "persisted", "sockets",
                          "destinations", "listeners_in_range", "limits", "namespaces"}
    assert set(facts["persisted"]) == {"root", "files", "masked", "keys", "drift"}
    assert set(facts["sockets"]) == {"source", "ipv4", "ipv6", "total", "time_wait",
                                     "TCPTimeWaitOverflow"}
    assert set(facts["destinations"]) == {"top", "count"}
    assert set(facts["limits"]) == {"nofile", "processes"}


def test_sysctl_typed_and_missing_key_null(gathered):
    facts, _warnings = gathered
    assert facts["sysctl"] == {
        "ip_local_port_range": [40000, 49999],
        "ip_local_reserved_ports": [[45000, 45000], [47000, 47010]],
        "ip_unprivileged_port_start": 1024,
        "tcp_tw_reuse": 2,
        "tcp_tw_reuse_delay": 1000,
        "tcp_timestamps": 1,
        "tcp_max_tw_buckets": 262144,
        "tcp_fin_timeout": 60,
        "tcp_tw_recycle": None,
        "somaxconn": 4096,
        "nr_open": 1048576,
        "file_max": 9223372036854775807,
    }
    assert facts["kernel"] == {"release": "6.18.0-test", "version": [6, 18, 0]}
    assert facts["ephemeral"] == {"low": 40000, "high": 49999, "size": 10000,
                                  "reserved_in_range": 12, "usable": 9988}


def test_persisted_and_drift(gathered):
    facts, _warnings = gathered
    persisted = facts["persisted"]
    assert persisted["files"] == ["/etc/sysctl.d/50-pool.conf", "/etc/sysctl.conf"]
    assert persisted["keys"]["ip_local_port_range"]["value"] == "40000 49999"
    # Runtime 40000<TAB>49999 equals the persisted value: no drift for the range.
    assert persisted["drift"] == {
        "tcp_tw_reuse": {"runtime": "2", "persisted": "1", "file": "/etc/sysctl.d/50-pool.conf"},
        "tcp_tw_recycle": {"runtime": None, "persisted": "0", "file": "/etc/sysctl.conf"},
    }
    # One naming style (docs/facts.md): short names, as under `sysctl`.
    assert set(persisted["keys"]) == set(facts["sysctl"]) == set(SHORT_NAMES)


def test_sockets_from_proc_equal_ss(gathered):
    facts, warnings = gathered
    sockets = facts["sockets"]
    assert sockets["source"] == "proc"
    assert sockets["time_wait"] == sum(EXPECTED["states"]["time-wait"].values())
    assert sockets["ipv4"]["established"] == EXPECTED["states"]["established"]["ipv4"]
    assert sockets["TCPTimeWaitOverflow"] == 0
    assert not [w for w in warnings if "net/" in w]
    top = facts["destinations"]["top"]
    assert facts["destinations"]["count"] == len(EXPECTED["destinations"])
    assert top[0] == {"address": "198.18.0.3", "port": 8080, "time_wait": 7,
                      "established": 2, "total": 9, "utilisation": round(9 / 9988, 4)}
    assert facts["listeners_in_range"] == [
        {"address": "0.0.0.0", "port": 45000, "family": "ipv4", "reserved": True},
        {"address": "127.0.0.1", "port": 46000, "family": "ipv4", "reserved": False},
    ]


def test_limits_processes(gathered):
    facts, warnings = gathered
    assert facts["limits"]["processes"] == [
        {"name": "nginx", "kind": "process", "pid": 4242, "open_fds": 4,
         "max_open_files": {"soft": 1024, "hard": 524288}},
        {"name": "worker proc", "kind": "process", "pid": 4243, "open_fds": 1,
         "max_open_files": {"soft": "unlimited", "hard": "unlimited"}},
        {"name": "absent", "kind": "process", "pid": None, "open_fds": None,
         "max_open_files": None},
    ]
    assert "limits: no running process found for process 'absent'" in warnings
    nofile = facts["limits"]["nofile"]
    assert set(nofile) == {"soft", "hard"}


def test_empty_proc_gives_nulls_and_warnings(tmp_path):
    facts, warnings = portpool_facts.gather(
        FakeModule(), params(proc_root=str(tmp_path), config_root=str(tmp_path)))
    assert all(value is None for value in facts["sysctl"].values())
    assert facts["ephemeral"] is None
    assert facts["sockets"] is None
    assert facts["destinations"] is None
    assert facts["listeners_in_range"] is None
    assert any("ip_local_port_range unknown" in w for w in warnings)
    assert any("net/tcp" in w for w in warnings)


def test_unreadable_sysctl_is_null_with_warning(tmp_path, monkeypatch):
    def denied(name, root):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(portpool_snapshot, "read_sysctl", denied)
    runtime, warnings = portpool_facts.read_runtime(str(tmp_path))
    assert set(runtime.values()) == {None}
    assert len(warnings) == len(runtime)
    assert "Permission denied" in warnings[0]


def test_unparsable_sysctl_is_null_with_warning():
    typed, warnings = portpool_facts.type_sysctls(
        {"net.ipv4.ip_local_port_range": "60999 32768", "net.core.somaxconn": "x"})
    assert typed["ip_local_port_range"] is None
    assert typed["somaxconn"] is None
    assert len(warnings) == 2


def test_parse_limits():
    text = (PROC / "4242" / "limits").read_text()
    assert parse_limits(text) == {"soft": 1024, "hard": 524288}
    assert parse_limits("Limit Soft Hard Units\n") is None


def test_process_lookup_helpers(tmp_path):
    assert pids_by_comm("nginx", str(PROC)) == [4242]
    assert pids_by_comm("nginx-with-a-very-long-name", str(PROC)) == []
    assert parse_ppid("77 (a (weird) name) S 12 77 77") == 12
    assert parse_ppid("garbage") is None
    assert is_unit("nginx.service") and not is_unit("nginx")
    cgroup = tmp_path / "system.slice" / "web.service"
    cgroup.mkdir(parents=True)
    (cgroup / "cgroup.procs").write_text("4243\n4242\n")
    pids = unit_cgroup_pids("web.service", str(tmp_path))
    assert pids == [4242, 4243]
    assert main_pid_from_cgroup(pids, str(PROC)) == 4242
    assert unit_cgroup_pids("none.service", str(tmp_path)) is None


def test_describe_unreadable_pid_warns(tmp_path):
    entry, warnings = describe_pid("x", "process", 99999, str(tmp_path))
    assert entry["open_fds"] is None and entry["max_open_files"] is None
    assert len(warnings) == 2


def _same_options(documented, spec, where=""):
    assert set(documented) == set(spec), where
    for name, option in documented.items():
        assert option["type"] == spec[name]["type"], where + name
        assert option.get("default") == spec[name].get("default"), where + name
        assert option.get("choices") == spec[name].get("choices"), where + name
        if "suboptions" in option or "options" in spec[name]:
            _same_options(option["suboptions"], spec[name]["options"], name + ".")


def test_documentation_matches_argument_spec():
    doc = yaml.safe_load(portpool_facts.DOCUMENTATION)
    _same_options(doc["options"], portpool_facts.get_argument_spec())
    returned = yaml.safe_load(portpool_facts.RETURN)
    keys = returned["ansible_facts"]["contains"]["portpool"]["contains"]
    assert set(keys) == {"sysctl", "kernel", "ephemeral", "persisted", "sockets",
                         "destinations", "listeners_in_range", "limits", "namespaces"}
    assert "probe" in returned
    yaml.safe_load(portpool_facts.EXAMPLES)


def test_probe_options_are_the_probe_modules():
    spec = portpool_facts.get_argument_spec()["probe"]["options"]
    assert spec == portpool_probe.get_argument_spec()


def test_probe_sample_larger_than_the_pool_is_lowered_to_it():
    facts = {"ephemeral": {"usable": 999}}
    assert portpool_facts.probe_options({"sample_ports": 1000}, facts)["sample_ports"] == 999
    assert portpool_facts.probe_options({"sample_ports": 500}, facts)["sample_ports"] == 500
    assert portpool_facts.probe_options({"sample_ports": None}, facts)["sample_ports"] is None
    # Unknown pool: the probe reads the range itself and reports what is wrong.
    assert portpool_facts.probe_options({"sample_ports": 1000}, {"ephemeral": None}) == {
        "sample_ports": 1000}


def test_fact_names_are_identifiers():
    assert all(name.isidentifier() for name in SHORT_NAMES)
    assert os.path.basename(portpool_facts.__file__) == "portpool_facts.py"


def test_empty_socket_table_is_zero_not_null(tmp_path):
    (tmp_path / "net").mkdir()
    header = (PROC / "net" / "tcp").read_text().splitlines()[0] + "\n"
    (tmp_path / "net" / "tcp").write_text(header)
    facts, warnings = portpool_facts.gather(
        FakeModule(), params(proc_root=str(tmp_path), config_root=str(tmp_path)))
    assert facts["sockets"]["source"] == "proc"
    assert facts["sockets"]["time_wait"] == 0
    assert set(facts["sockets"]["total"].values()) == {0}
    assert any("tcp6" in w for w in warnings)


def test_netlink_unavailable_falls_back_to_proc(monkeypatch):
    from ansible.module_utils.portpool_sockdiag import NetlinkUnavailable

    def refuse(*_args, **_kwargs):
        raise NetlinkUnavailable("netlink sock_diag socket: [Errno 93] Protocol not supported")

    monkeypatch.setattr(portpool_snapshot, "netlink_tally", refuse)
    tally, source, warnings = portpool_facts.collect_sockets(40000, 49999, "auto", str(PROC))
    assert source == "proc"
    assert tally.messages > 0
    assert warnings == ["netlink sock_diag unavailable (netlink sock_diag socket: [Errno 93] "
                        "Protocol not supported); reading /proc/net/tcp"]
    with pytest.raises(NetlinkUnavailable):
        portpool_facts.collect_sockets(40000, 49999, "netlink", str(PROC))


def _sockstat_root(tmp_path, inuse, tw, inuse6):
    (tmp_path / "net").mkdir()
    (tmp_path / "net" / "sockstat").write_text(
        "sockets: used 4\nTCP: inuse %d orphan 0 tw %d alloc 1 mem 0\n" % (inuse, tw))
    (tmp_path / "net" / "sockstat6").write_text("TCP6: inuse %d\n" % inuse6)
    return str(tmp_path)


@pytest.mark.parametrize("sockstat, dumped", [
    ((0, 0, 0), []),
    ((1, 0, 0), [socket.AF_INET]),
    ((0, 0, 1), [socket.AF_INET6]),
    ((0, 3, 0), [socket.AF_INET, socket.AF_INET6]),
])
def test_only_families_with_tcp_sockets_are_dumped(monkeypatch, tmp_path, sockstat, dumped):
    """An idle namespace costs a file read, not walks of the established hash table."""
    calls = []
    monkeypatch.setattr(portpool_snapshot, "netlink_tally",
                        lambda tally, states, families: calls.append(("listen", families))
                        or tally)
    monkeypatch.setattr(portpool_snapshot, "netlink_connections_into",
                        lambda tally, families: calls.append(("connections", families))
                        or tally)
    tally, source, warnings = portpool_facts.collect_sockets(
        40000, 49999, "auto", _sockstat_root(tmp_path, *sockstat))
    assert (source, warnings, tally.messages) == ("netlink", [], 0)
    assert calls == [("listen", tuple(dumped)), ("connections", tuple(dumped))]


def _run_main(monkeypatch, capsys, args, outcome):
    """main() with gather() and the probe replaced; returns (result, probe options seen)."""
    seen = []

    def fake_measure(options, check_mode):
        seen.append(options)
        return outcome

    monkeypatch.setattr(basic, "_ANSIBLE_ARGS", to_bytes(json.dumps({"ANSIBLE_MODULE_ARGS": args})))
    monkeypatch.setattr(basic, "_ANSIBLE_PROFILE", "legacy", raising=False)
    monkeypatch.setattr(portpool_facts, "gather",
                        lambda module, params: ({"ephemeral": {"usable": 999}}, []))
    monkeypatch.setattr(portpool_facts, "measure", fake_measure)
    with pytest.raises(SystemExit):
        portpool_facts.main()
    return json.loads(capsys.readouterr().out), seen


def test_main_without_probe_runs_none(monkeypatch, capsys):
    result, seen = _run_main(monkeypatch, capsys, {}, Outcome(error="must not run"))
    assert seen == [] and "probe" not in result
    assert result["ansible_facts"]["portpool"]["ephemeral"]["usable"] == 999


def test_main_returns_the_probe_next_to_the_facts(monkeypatch, capsys):
    result, seen = _run_main(monkeypatch, capsys, {"probe": {"sample_ports": 1000}},
                             Outcome(probe={"matches_expected": True}))
    assert seen[0]["sample_ports"] == 999 and seen[0]["mode"] == "lab"
    assert result["probe"] == {"matches_expected": True}
    assert not result.get("failed")
    assert result["ansible_facts"]["portpool"]["ephemeral"]["usable"] == 999


def test_main_fails_on_a_probe_error_and_keeps_the_facts(monkeypatch, capsys):
    result, _ = _run_main(monkeypatch, capsys, {"probe": {}},
                          Outcome(error="mode=lab needs root"))
    assert result["failed"] is True
    assert result["msg"] == "probe: mode=lab needs root"
    assert result["ansible_facts"]["portpool"]["ephemeral"]["usable"] == 999


def test_main_reports_a_probe_error_when_asked(monkeypatch, capsys):
    # probe_failure=report (the audit): the facts come back, the task does not fail.
    result, _ = _run_main(monkeypatch, capsys, {"probe": {}, "probe_failure": "report"},
                          Outcome(error="mode=lab needs root"))
    assert not result.get("failed") and result["probe_error"] == "mode=lab needs root"
    assert result["ansible_facts"]["portpool"]["ephemeral"]["usable"] == 999


def test_main_warns_when_the_probe_is_skipped(monkeypatch, capsys):
    result, _ = _run_main(monkeypatch, capsys, {"probe": {"mode": "host"}},
                          Outcome(skipped="nothing measured in check mode"))
    assert result["probe"] is None
    assert any("probe skipped" in str(warning) for warning in result["warnings"])


def test_main_rejects_a_bad_probe_option(monkeypatch, capsys):
    result, seen = _run_main(monkeypatch, capsys, {"probe": {"mode": "remote"}}, Outcome())
    assert seen == [] and result["failed"] is True
    assert "probe" in result["msg"] and "mode" in result["msg"]


def test_unit_names_reach_systemctl_after_a_double_dash(monkeypatch):
    """Issue 11 (Low): `-Hroot@host.service` must not become systemctl's -H option."""
    calls = []

    class Recorder:
        def get_bin_path(self, name):
            return "/usr/bin/" + name

        def run_command(self, argv, environ_update=None):
            calls.append(argv)
            return 0, "0\n", ""

    monkeypatch.setattr(portpool_facts.os.path, "isdir", lambda path: True)
    name = "-Hroot@attacker.example:2222.service"
    portpool_facts.find_process_pids(Recorder(), name, "/proc")
    assert calls and calls[0][-2:] == ["--", name]
