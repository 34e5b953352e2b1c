"""Lab measurements on record (module_utils/portpool_probe_record.py), the key they
are filed under (portpool_probe_model.configuration_key), and the audit's use of
them (portpool_audit_run: probes that skipped their hold are filled in)."""

import json
from pathlib import Path

import pytest
from ansible.module_utils import portpool_audit_run as audit_run
from ansible.module_utils import portpool_probe_record as record
from ansible.module_utils.portpool_files import parse_time
from ansible.module_utils.portpool_probe_model import (
    configuration_key,
    host_settings,
    make_plan,
)

from tests.unit.test_probe_model import HOST, PARAMS

FIXTURES = Path(__file__).parent / "fixtures" / "audit"
MACHINE = {"kernel": ["6.12.118", "#1 SMP Debian", "x86_64"], "root": True,
           "fd_limits": [1024, 524288]}
NOW = parse_time("2026-12-05T12:00:00Z")


def key_of(params=None, values=None, machine=None, version="0.2.0"):
    plan, error = make_plan(dict(PARAMS, **(params or {})),
                            host_settings(dict(HOST, **(values or {}))), is_root=True)
    assert error is None
    return configuration_key(plan, dict(MACHINE, **(machine or {})), version)


def test_the_key_is_stable_and_follows_everything_the_lab_depends_on():
    key = key_of()
    assert key == key_of() and len(key) == 32
    changed = [
        key_of(values={"net.ipv4.ip_local_port_range": "32768\t60998"}),
        key_of(values={"net.ipv4.ip_local_reserved_ports": "40000"}),
        key_of(values={"net.ipv4.tcp_tw_reuse": "1"}),
        key_of(params={"scope": "full"}),
        key_of(params={"sample_ports": 500}),
        key_of(params={"churn_seconds": 3}),
        key_of(machine={"kernel": ["6.1.0-57", "#1 SMP Debian", "x86_64"]}),
        key_of(machine={"root": False}),
        key_of(machine={"fd_limits": [1024, 4096]}),
        key_of(version="0.3.0"),
    ]
    assert len({key, *changed}) == len(changed) + 1


def test_the_same_settings_written_differently_share_a_key():
    assert key_of(values={"net.ipv4.ip_local_port_range": "32768 60999"}) == \
        key_of(values={"net.ipv4.ip_local_port_range": "32768\t60999"})


def test_mode_host_has_no_key():
    plan, _ = make_plan(dict(PARAMS, mode="host"), host_settings(HOST), is_root=True)
    assert configuration_key(plan, MACHINE, "0.2.0") is None


def probe(key="k1", stopped_by="EADDRNOTAVAIL"):
    measured = json.loads((FIXTURES / "probe_clean.json").read_text())
    measured["hold"]["stopped_by"] = stopped_by
    return dict(measured, key=key, settings_from="host")


def test_only_complete_fresh_measurements_are_put_on_record():
    kept = {"old": {"probe": probe("old"), "host": "a", "measured_at": "2026-12-01T00:00:00Z",
                    "run": "r0"}}
    filled, _ = record.filled_in({"key": "old", "on_record": True}, kept)
    entries = record.updated_record(kept, [
        ("web1", probe("k1"), "2026-12-05T11:00:00Z"),
        ("web2", probe("k2", stopped_by="timeout"), "2026-12-05T11:00:00Z"),
        ("web3", dict(probe("k3"), key=None), "2026-12-05T11:00:00Z"),
        ("web4", filled, "2026-12-05T11:00:00Z"),
    ], "r1")
    assert sorted(entries) == ["k1", "old"]
    assert entries["k1"]["host"] == "web1" and entries["k1"]["run"] == "r1"
    assert entries["old"] == kept["old"]  # a host that reused it does not re-file it


def test_the_record_round_trips_and_old_entries_are_not_handed_on(tmp_path):
    path = str(tmp_path / record.RECORD_FILE)
    assert record.read_record(path, 7, NOW) == ({}, None)  # no record yet
    record.write_record(path, {
        "new": {"probe": probe("new"), "host": "a", "measured_at": "2026-12-04T11:59:59Z",
                "run": "r1"},
        "old": {"probe": probe("old"), "host": "b", "measured_at": "2026-11-28T12:00:00Z",
                "run": "r0"},
    })
    fresh, warning = record.read_record(path, 7, NOW)
    assert (sorted(fresh), warning) == (["new"], None)
    assert record.read_record(path, 1, NOW)[0] == {}  # a day and a second old
    assert record.read_record(path, 0, NOW) == ({}, None)  # 0: measure every host


@pytest.mark.parametrize("text", [
    "{", '{"schema": 2, "measurements": {}}',
    '{"schema": 1, "measurements": {"k": {"probe": {}}}}',
    # Every field filled_in reads, or the whole record is ignored: never a KeyError later.
    '{"schema": 1, "measurements": {"k": {"probe": {}, "measured_at": "2026-12-05T11:00:00Z",'
    ' "run": "r"}}}',
    '{"schema": 1, "measurements": {"k": {"probe": [], "host": "a", "run": "r",'
    ' "measured_at": "2026-12-05T11:00:00Z"}}}',
    '{"schema": 1, "measurements": {"k": {"probe": {}, "host": "a", "run": "r",'
    ' "measured_at": "yesterday"}}}'])
def test_an_unreadable_record_is_ignored_with_a_warning(tmp_path, text):
    path = tmp_path / record.RECORD_FILE
    path.write_text(text)
    fresh, warning = record.read_record(str(path), 7, NOW)
    assert fresh == {}
    assert warning.startswith("probe measurements on record ignored (every host measures")


def test_the_record_lies_beside_the_run_folders():
    assert record.record_path("/srv/reports/20261205T020000Z") == "/srv/reports/probes.json"
    assert record.record_path("/srv/reports/slice-1/") == "/srv/reports/probes.json"


def facts_entry(host, probe_result):
    facts = json.loads((FIXTURES / "facts_clean.json").read_text())
    return {"vars": {}, "groups": ["web"], "started": "2026-12-05T11:00:00Z",
            "facts_result": {"changed": False, "ansible_facts": {"portpool": facts},
                             "probe": probe_result}}


def test_the_audit_fills_skipped_probes_in_and_writes_the_record_back(tmp_path):
    path = str(tmp_path / "probes.json")
    entries = {"k1": {"probe": probe("k1"), "host": "web1",
                      "measured_at": "2026-12-04T10:00:00Z", "run": "r0"}}
    skipped = {"key": "k1", "on_record": True, "mode": "lab", "scope": "quick",
               "settings_from": "host", "summary": "on record"}
    gone = dict(skipped, key="k9")
    result = audit_run.run({
        "hosts": {"web2": facts_entry("web2", skipped), "web3": facts_entry("web3", gone),
                  "web4": facts_entry("web4", probe("k4"))},
        "run_dir": "run", "base_dir": str(tmp_path),
        "probe_record": {"path": path, "measurements": entries}})
    results = Path(result["run_dir"]) / "results"
    doc = json.loads((results / "web2.json").read_text())
    assert doc["probe"]["hold"] == entries["k1"]["probe"]["hold"]
    assert doc["probe"]["record"] == {"host": "web1", "measured_at": "2026-12-04T10:00:00Z",
                                      "run": "r0"}
    assert "on record: measured on web1 at 2026-12-04T10:00:00Z" in doc["probe"]["summary"]
    assert doc["summary"]["probe"]["held"] == entries["k1"]["probe"]["hold"]["established"]
    doc = json.loads((results / "web3.json").read_text())
    assert doc["status"] == "ok" and doc["probe"] is None
    assert "does not hold (key k9)" in doc["probe_error"]
    assert [item["id"] for item in doc["findings"]] == ["PP019"]
    written = json.loads(Path(path).read_text())["measurements"]
    assert sorted(written) == ["k1", "k4"] and written["k4"]["host"] == "web4"
    assert written["k4"]["run"] == result["run"]["id"]


def test_without_a_record_the_audit_writes_none(tmp_path):
    audit_run.run({"hosts": {"web4": facts_entry("web4", probe("k4"))},
                   "run_dir": "run", "base_dir": str(tmp_path)})
    assert not (tmp_path / "probes.json").exists()
