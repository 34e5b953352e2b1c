"""Sliced audits merged (module_utils/portpool_merge.py, documented in
library/portpool_merge.py): self-describing result files, the policy check, the
fleet rules judged again, the gate over the merged findings."""

import copy
import json
from pathlib import Path

import portpool_merge
import pytest
from ansible.module_utils import portpool_audit_identity as identity
from ansible.module_utils import portpool_audit_run as audit_run
from ansible.module_utils import portpool_merge as merge

FIXTURES = Path(__file__).parent / "fixtures" / "audit"
CLEAN = json.loads((FIXTURES / "facts_clean.json").read_text())


def facts(low=32768, high=60999):
    data = copy.deepcopy(CLEAN)
    data["sysctl"]["ip_local_port_range"] = [low, high]
    size = high - low + 1
    data["ephemeral"].update(low=low, high=high, size=size, usable=size)
    return data


# Group web: four hosts agree, "odd" differs (PP015); group db: three agree.
FLEET = {
    "w1": ("web", facts()), "w2": ("web", facts()), "w3": ("web", facts()),
    "odd": ("web", facts(40000, 60999)), "w4": ("web", facts()),
    "d1": ("db", facts()), "d2": ("db", facts()), "d3": ("db", facts()),
}


def host_input(name, **policy_vars):
    group, data = FLEET[name]
    return {"vars": policy_vars, "groups": [group], "started": "2026-11-23T19:00:00Z",
            "facts_result": {"changed": False, "ansible_facts": {"portpool": data}}}


def audit(tmp_path, folder, names, slice_name=None, **policy_vars):
    return audit_run.run({
        "hosts": {name: host_input(name, **policy_vars) for name in names},
        "run_dir": str(tmp_path / folder), "base_dir": str(tmp_path),
        "slice": slice_name, "awx": {},
    })


def findings(results_dir):
    out = {}
    for path in Path(results_dir).glob("*.json"):
        doc = json.loads(path.read_text())
        out[doc["host"]] = [(item["id"], item["severity"], item["message"], item["waived"],
                             item["recommendation"]) for item in doc["findings"]]
    return out


SLICES = (["w1", "odd", "d1"], ["w2", "w3", "d2"], ["w4", "d3"])


def test_result_files_describe_their_run_slice_policy_and_version(tmp_path):
    result = audit(tmp_path, "s1", SLICES[0], slice_name="shard-a")
    doc = json.loads((Path(result["results_dir"]) / "w1.json").read_text())
    assert doc["run"]["slice"] == "shard-a" and len(doc["run"]["id"]) == 12
    assert doc["run"] == result["run"] and doc["portpool_version"] == "0.2.0"
    assert doc["policy"]["drift_min_hosts"] == 3
    assert doc["policy_hash"] == identity.policy_hash(doc["policy"])


def test_identity_from_awx_and_a_stable_policy_hash():
    run = identity.run_identity(awx={"awx_job_id": "4711", "awx_job_slice_number": "2",
                                     "awx_job_slice_count": "3"})
    assert (run["id"], run["slice"], run["slice_count"]) == ("awx-4711", "2/3", 3)
    assert identity.run_identity(awx={"awx_job_id": None})["slice"] is None
    assert identity.run_identity("r1", "mine", {"awx_job_slice_number": 1,
                                                "awx_job_slice_count": 3})["slice"] == "mine"
    one = identity.policy_hash({"a": 1, "b": [1, 2], "fail_on": "high"})
    assert one == identity.policy_hash({"b": [1, 2], "fail_on": "low", "a": 1})
    assert one != identity.policy_hash({"a": 2, "b": [1, 2]})


def test_three_slices_merged_equal_one_unsliced_run(tmp_path):
    whole = audit(tmp_path, "whole", list(FLEET))
    expected = findings(whole["results_dir"])
    assert "PP015" in {item[0] for item in expected["odd"]}
    folders = []
    for number, names in enumerate(SLICES, 1):
        folders.append(audit(tmp_path, "s%d" % number, names, "%d/3" % number)["run_dir"])
    # Each slice alone sees too little of group web to judge drift.
    assert not any(item[0] == "PP015" for doc in map(findings, [
        Path(folder) / "results" for folder in folders]) for items in doc.values()
        for item in items)
    result = merge.merge({"result_dirs": folders, "dest": str(tmp_path / "merged")})
    assert findings(result["results_dir"]) == expected
    assert result["hosts"] == len(FLEET) and len(result["runs"]) == 3
    odd = json.loads((Path(result["results_dir"]) / "odd.json").read_text())
    assert odd["merged_from"]["slice"] == "1/3"
    assert odd["merged_from"]["file"].endswith("s1/results/odd.json")
    assert (tmp_path / "merged" / "rules.json").is_file()


def test_mixed_policies_are_refused_unless_allowed(tmp_path):
    first = audit(tmp_path, "s1", SLICES[0])["run_dir"]
    second = audit(tmp_path, "s2", SLICES[1], portpool_audit_min_usable_ports=30000)["run_dir"]
    with pytest.raises(merge.MixedPolicies, match="group web"):
        merge.merge({"result_dirs": [first, second], "dest": str(tmp_path / "m")})
    assert not (tmp_path / "m").exists()  # nothing written
    result = merge.merge({"result_dirs": [first, second], "dest": str(tmp_path / "m"),
                          "allow_mixed_policies": True})
    assert any("mixed policies" in item for item in result["warnings"])


def test_one_host_with_its_own_policy_is_not_a_mix(tmp_path):
    first = audit(tmp_path, "s1", ["w1", "w2"])["run_dir"]
    second = audit(tmp_path, "s2", ["w3", "w4"])["run_dir"]
    third = audit_run.run({
        "hosts": {"odd": host_input("odd", portpool_audit_min_usable_ports=1000)},
        "run_dir": str(tmp_path / "s3"), "base_dir": str(tmp_path)})["run_dir"]
    merge.merge({"result_dirs": [first, second, third], "dest": str(tmp_path / "m")})


def test_gate_uses_the_given_threshold_or_each_hosts_own(tmp_path):
    folder = audit(tmp_path, "s1", list(FLEET))["run_dir"]
    strict = merge.merge({"result_dirs": [folder], "dest": str(tmp_path / "a"),
                          "fail_on": "low"})
    assert ("odd", "PP015") in {(item["host"], item["id"]) for item in strict["blocking"]}
    assert any(line.startswith("LOW PP015 odd") for line in strict["blocking_lines"])
    default = merge.merge({"result_dirs": [folder], "dest": str(tmp_path / "b")})
    assert ("odd", "PP015") not in {(item["host"], item["id"]) for item in default["blocking"]}


def test_newest_result_wins_and_bad_input_is_reported(tmp_path):
    old = audit(tmp_path, "old", ["w1"])["run_dir"]
    new = audit(tmp_path, "new", ["w1"])["run_dir"]
    doc_path = Path(new) / "results" / "w1.json"
    doc = json.loads(doc_path.read_text())
    doc["audited_at"] = "2026-11-24T00:00:00Z"
    doc_path.write_text(json.dumps(doc))
    (Path(old) / "results" / "broken.json").write_text("{not json")
    result = merge.merge({"result_dirs": [new, old, str(tmp_path / "missing")],
                          "dest": str(tmp_path / "m")})
    merged = json.loads((Path(result["results_dir"]) / "w1.json").read_text())
    assert merged["merged_from"]["file"] == str(doc_path)
    text = " ".join(result["warnings"])
    assert "duplicate" in text and "broken.json" in text and "missing" in text
    with pytest.raises(ValueError, match="no result file"):
        merge.merge({"result_dirs": [str(tmp_path / "missing")], "dest": str(tmp_path / "x")})
    with pytest.raises(ValueError, match="one of the result folders"):
        merge.merge({"result_dirs": [new], "dest": new})


def test_documentation_matches_the_argument_spec():
    import yaml
    doc = yaml.safe_load(portpool_merge.DOCUMENTATION)
    assert set(doc["options"]) == set(merge.merge_argument_spec())


def test_report_says_which_run_and_slice_each_host_came_from(tmp_path):
    from ansible.module_utils.portpool_report_render import build_report
    templates = Path(__file__).resolve().parents[2] / "roles" / "portpool_report" / "templates"
    folders = [audit(tmp_path, "s%d" % number, names, "%d/3" % number)
               for number, names in enumerate(SLICES, 1)]
    merged = merge.merge({"result_dirs": [item["run_dir"] for item in folders],
                          "dest": str(tmp_path / "merged")})
    dest = tmp_path / "merged"
    build_report([merged["results_dir"]], str(dest), str(templates),
                 formats=["json", "html"], latest_link=False)
    hosts = {item["host"]: item for item in json.loads((dest / "fleet.json").read_text())["hosts"]}
    assert hosts["w2"]["origin"] == {"run": folders[1]["run"]["id"], "slice": "2/3"}
    assert {"PP015"} <= {item["id"] for item in hosts["odd"]["findings"]}
    html = (dest / "report.html").read_text()
    assert "Run / slice" in html and "%s / 3/3" % folders[2]["run"]["id"] in html
    # An unmerged run folder names its own run; a report of old files has no column.
    build_report([folders[0]["results_dir"]], str(tmp_path / "one"), str(templates),
                 formats=["json"], latest_link=False)
    one = json.loads((tmp_path / "one" / "fleet.json").read_text())["hosts"]
    assert {item["origin"]["slice"] for item in one} == {"1/3"}
