"""The portpool_audit action (module_utils/portpool_audit_run.py, documented in
library/portpool_audit.py): result files, run folders, the preflight gate list."""

import json
from pathlib import Path

import portpool_audit
import pytest
from ansible.module_utils import portpool_audit_run as audit_run

FIXTURES = Path(__file__).parent / "fixtures" / "audit"


def load(name):
    return json.loads((FIXTURES / name).read_text())


def entry(host, facts, probe=None, groups=("web",), **policy_vars):
    result = {"changed": False, "ansible_facts": {"portpool": facts}}
    if probe:
        result["probe"] = probe
    return {
        "host": host,
        "groups": list(groups),
        "facts_result": result,
        "policy_vars": policy_vars,
        "audited_at": "2026-11-23T19:00:00Z",
    }


def params(entries, run_dir, base_dir, names=None):
    """The action's parameters: one dict keyed by host (None: the host has no input)."""
    names = names or [item["host"] for item in entries]
    hosts = {}
    for name, item in zip(names, entries):
        hosts[name] = item and {"vars": item["policy_vars"], "groups": item["groups"],
                                "started": item["audited_at"],
                                "facts_result": item["facts_result"]}
    return {"hosts": hosts, "run_dir": run_dir, "base_dir": base_dir}


def test_run_writes_one_file_per_host_and_the_catalogue(tmp_path):
    entries = [
        entry("clean", load("facts_clean.json"), load("probe_clean.json")),
        entry("messy", load("facts_messy.json"), load("probe_clean.json")),
        {"host": "dead", "groups": ["web"], "policy_vars": {},
         "facts_result": {"unreachable": True, "msg": "ssh: connection refused"},
         "audited_at": "2026-11-23T19:00:01Z"},
        None,
    ]
    result = audit_run.run(params(entries, None, str(tmp_path),
                                       ["clean", "messy", "dead", "vanished"]))
    run_dir = Path(result["run_dir"])
    assert run_dir.parent == tmp_path / "reports"
    files = sorted(path.name for path in (run_dir / "results").iterdir())
    assert files == ["clean.json", "dead.json", "messy.json", "vanished.json"]
    rules = json.loads((run_dir / "rules.json").read_text())
    assert [rule["id"] for rule in rules][:3] == ["PP001", "PP002", "PP003"]
    assert set(rules[0]) == {"id", "severity", "title", "description"}

    clean = json.loads((run_dir / "results" / "clean.json").read_text())
    assert set(clean) == {"schema", "host", "status", "error", "probe_error", "audited_at",
                          "groups", "facts", "probe", "findings", "summary",
                          # Self-description for merging slices (tests/unit/test_merge.py).
                          "run", "policy", "policy_hash", "portpool_version"}
    assert clean["summary"]["pool"]["usable"] == 28232  # the block the report reads
    assert (clean["schema"], clean["status"], clean["error"], clean["findings"]) == \
        (1, "ok", None, [])
    assert clean["facts"]["ephemeral"]["usable"] == 28232 and clean["probe"]["scope"] == "quick"

    dead = json.loads((run_dir / "results" / "dead.json").read_text())
    assert (dead["status"], dead["facts"], dead["probe"]) == ("unreachable", None, None)
    assert dead["error"] == "ssh: connection refused"
    assert [item["id"] for item in dead["findings"]] == ["PP017"]
    vanished = json.loads((run_dir / "results" / "vanished.json").read_text())
    assert vanished["status"] == "failed"

    by_host = {line["host"]: line for line in result["hosts"]}
    assert by_host["clean"]["worst"] is None and by_host["messy"]["worst"] == "high"
    assert {item["host"] for item in result["blocking"]} == {"messy", "dead", "vanished"}
    assert all(item["severity"] in ("high", "critical") for item in result["blocking"])
    assert result["blocking_lines"][0].startswith("HIGH PP0")
    assert result["counts"]["high"] == len(result["blocking"])


def test_fail_on_and_waivers_per_host(tmp_path):
    waive = [{"rule": "*", "hosts": ["messy"], "reason": "known"}]
    result = audit_run.run(params(
        [entry("messy", load("facts_messy.json"), portpool_audit_waivers=waive,
               portpool_preflight_fail_on="info"),
         entry("clean", load("facts_clean.json"), portpool_preflight_fail_on="info")],
        "out", str(tmp_path)))
    assert result["run_dir"] == str(tmp_path / "out")
    assert result["blocking"] == []
    doc = json.loads((tmp_path / "out" / "results" / "messy.json").read_text())
    assert doc["findings"] and all(item["waived"] for item in doc["findings"])


def test_explicit_run_dir_is_reused_and_playbooks_dir_maps_to_its_parent(tmp_path):
    (tmp_path / "playbooks").mkdir()
    for _ in range(2):
        result = audit_run.run(params([entry("a", load("facts_clean.json"))], "reports/x",
                                           str(tmp_path / "playbooks")))
        assert result["run_dir"] == str(tmp_path / "reports" / "x")


def test_default_run_dirs_never_collide(tmp_path):
    path, fresh = audit_run.resolve_run_dir(None, str(tmp_path), stamp="20260101T000000Z")
    assert fresh
    first = audit_run.make_unique(path)
    second = audit_run.make_unique(path)
    assert first != second and second.endswith("-2")


def test_result_file_names_never_collide_or_leave_the_folder(tmp_path):
    """One file per host, named as the report names hosts (portpool_report.safe_file_name)."""
    names = ["web-01.example.net", "a/b", "a_b", "..", "host with space"]
    dead = {"unreachable": True, "msg": "ssh: connection refused"}
    result = audit_run.run({"hosts": {name: {"facts_result": dead} for name in names},
                            "run_dir": "run", "base_dir": str(tmp_path)})
    results = Path(result["results_dir"])
    files = sorted(path.name for path in results.iterdir())
    assert len(files) == len(names)
    assert "web-01.example.net.json" in files
    for line in result["hosts"]:
        assert Path(line["file"]).parent == results
        assert json.loads(Path(line["file"]).read_text())["host"] == line["host"]


def test_policy_vars_are_typed_and_checked():
    from ansible.module_utils.portpool_audit import default_policy, policy_from_vars
    policy = policy_from_vars({"portpool_audit_min_usable_ports": "20000",
                               "portpool_audit_destination_warn": "0.6",
                               "portpool_preflight_fail_on": "medium",
                               "portpool_audit_min_tw_buckets": None}, "h1")
    assert policy == dict(default_policy(), min_usable_ports=20000, destination_warn=0.6,
                          fail_on="medium", min_tw_buckets=None)
    bad = [
        ({"portpool_audit_min_usable_ports": "lots"}, "portpool_audit_min_usable_ports of h1"),
        ({"portpool_audit_destination_warn": 0.9, "portpool_audit_destination_high": 0.8},
         "portpool_audit_destination_warn of h1"),
        ({"portpool_audit_waivers": [{"rule": "PP999"}]}, "portpool_audit_waivers of h1"),
        ({"portpool_audit_severity": {"PP001": "huge"}}, "portpool_audit_severity of h1"),
        ({"portpool_audit_service_ports": ["http"]}, "portpool_audit_service_ports of h1"),
        ({"portpool_preflight_fail_on": "fatal"}, "portpool_preflight_fail_on of h1"),
    ]
    for variables, message in bad:
        with pytest.raises(ValueError, match=message):
            policy_from_vars(variables, "h1")


def test_the_spec_is_the_policy():
    # Every option of the role's spec but the shared report folder is a policy key.
    from ansible.module_utils.portpool_audit_policy import policy_var_names, role_options
    names = policy_var_names()
    assert set(names.values()) == set(role_options()) - {"portpool_report_dir"}
    assert names["fail_on"] == "portpool_preflight_fail_on"
    assert names["min_usable_ports"] == "portpool_audit_min_usable_ports"


def test_documentation_parses():
    import yaml
    doc = yaml.safe_load(portpool_audit.DOCUMENTATION)
    assert set(doc["options"]) == set(audit_run.audit_argument_spec())
    yaml.safe_load(portpool_audit.EXAMPLES)
    assert "blocking" in yaml.safe_load(portpool_audit.RETURN)


def test_the_probe_can_come_with_the_facts_in_one_result(tmp_path):
    """portpool_facts with its `probe` option: one registered result per host."""
    facts, probe = load("facts_clean.json"), load("probe_clean.json")
    together = entry("together", facts)
    together["facts_result"]["probe"] = probe
    broken = entry("broken", facts)
    broken["facts_result"].update(failed=True, msg="probe: mode=lab needs root")
    result = audit_run.run(params([together, broken], "run", str(tmp_path)))
    results = Path(result["run_dir"]) / "results"
    doc = json.loads((results / "together.json").read_text())
    assert (doc["status"], doc["probe"]["scope"]) == ("ok", "quick")
    doc = json.loads((results / "broken.json").read_text())
    # Only the probe failed: the host is judged on its facts, the probe is PP019.
    assert (doc["status"], doc["error"], doc["probe"]) == ("ok", None, None)
    assert doc["probe_error"] == "mode=lab needs root"
    assert [item["id"] for item in doc["findings"]] == ["PP019"]
    assert doc["facts"]["ephemeral"]["usable"] == 28232


def test_read_only_audit_reports_no_change_and_groups_errors(tmp_path):
    dead = {"unreachable": True, "msg": "ssh: connection refused"}
    facts = load("facts_clean.json")
    noroot = {"failed": True, "msg": "probe: mode=lab needs root",
              "ansible_facts": {"portpool": facts}}
    hosts = {"a": {"facts_result": dead}, "b": {"facts_result": dead},
             "c": {"facts_result": noroot}, "d": {"facts_result": noroot},
             "e": {"facts_result": {"ansible_facts": {"portpool": facts}}}}
    result = audit_run.run({"hosts": hosts, "run_dir": "run", "base_dir": str(tmp_path)})
    assert result["changed"] is False
    assert result["errors"] == [
        {"reason": "unreachable: ssh: connection refused", "hosts": ["a", "b"]},
        {"reason": "probe failed (facts judged): mode=lab needs root", "hosts": ["c", "d"]}]


def test_one_malformed_host_fails_alone(tmp_path):
    """M4: bad facts from one host make that host a failed entry; the rest are judged."""
    good = load("facts_clean.json")
    deep = load("facts_clean.json")
    nest = deep["limits"]
    for _ in range(20):
        nest["x"] = {}
        nest = nest["x"]
    huge = load("facts_clean.json")
    huge["destinations"]["top"][0]["utilisation"] = float("inf")
    wrong = load("facts_clean.json")
    wrong["sysctl"]["ip_local_port_range"] = "32768 60999"
    hosts = {name: {"facts_result": {"ansible_facts": {"portpool": facts}}}
             for name, facts in (("good", good), ("deep", deep), ("huge", huge),
                                 ("wrong", wrong), ("text", "not a dict"))}
    result = audit_run.run({"hosts": hosts, "run_dir": "run", "base_dir": str(tmp_path)})
    status = {line["host"]: line["status"] for line in result["hosts"]}
    assert status == {"good": "ok", "deep": "failed", "huge": "failed", "wrong": "failed",
                      "text": "failed"}
    results = Path(result["results_dir"])
    errors = {name: json.loads((results / (name + ".json")).read_text())["error"]
              for name in status}
    assert "nested deeper" in errors["deep"]
    assert "destinations.top[0].utilisation" in errors["huge"]
    assert "sysctl.ip_local_port_range: expected [low, high]" in errors["wrong"]
    assert errors["good"] is None


def test_facts_size_and_text_are_bounded():
    from ansible.module_utils import portpool_audit as audit
    wide = load("facts_clean.json")
    wide["destinations"]["top"] = [{"address": "198.18.0.1", "port": 80}] * 100001
    with pytest.raises(audit.FactsError, match="more than 200000 values"):
        audit.check_facts(wide)
    long_text = load("facts_clean.json")
    long_text["persisted"]["files"] = ["/etc/" + "x" * 5000]
    with pytest.raises(audit.FactsError, match="longer than 4096"):
        audit.check_facts(long_text)
