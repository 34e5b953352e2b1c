"""Structured fixes (module_utils/portpool_audit_advice.py) and their re-check.

The newcomer's trial (issue 10): quoted file lines, advice that undid a tune, drift
advice that dropped a reservation PP004 asked for, blank empty values.
"""

import json
from pathlib import Path

import pytest
from ansible.module_utils import portpool_audit as audit
from ansible.module_utils import portpool_audit_advice as advice
from ansible.module_utils.portpool_sysctl import pool_size, short_name

FIXTURES = Path(__file__).parent / "fixtures" / "audit"
PORTPOOL = "/etc/sysctl.d/60-portpool.conf"
PORTS = "/etc/sysctl.d/60-ports.conf"
RANGE = "net.ipv4.ip_local_port_range"


@pytest.fixture
def facts():
    return json.loads((FIXTURES / "facts_clean.json").read_text())


def set_range(facts, low, high, reserved=()):
    facts["sysctl"]["ip_local_port_range"] = [low, high]
    facts["sysctl"]["ip_local_reserved_ports"] = [list(span) for span in reserved]
    facts["ephemeral"] = pool_size(low, high, [list(span) for span in reserved])


def persist(facts, key, *assignments):
    """Files setting `key` in reading order: (file, value) ...; the last one wins."""
    *others, (file, value) = assignments
    facts["persisted"]["keys"][short_name(key)] = {
        "value": value, "file": file, "line": 1, "ignore_errors": False, "glob": None,
        "also": [{"file": path, "line": 1, "value": text} for path, text in others]}
    for path, _ in assignments:
        if path not in facts["persisted"]["files"]:
            facts["persisted"]["files"].insert(0, path)


def judge(facts, host="h1", **policy):
    return audit.evaluate_host(audit.context(host, facts, policy=policy, groups=["web"]))


def only(found, rule_id):
    return [item for item in found if item["id"] == rule_id]


def every_line(found):
    for item in found:
        for fix in item["fixes"]:
            yield from fix["file_lines"]


def test_file_lines_are_never_quoted_and_only_the_shell_form_quotes(facts):
    set_range(facts, 40000, 40999)
    (hit,) = only(judge(facts), "PP001")
    (fix,) = hit["fixes"]
    assert fix["file_lines"] == ["net.ipv4.ip_local_port_range = 32768 60999"]
    assert fix["shell"] == ["sysctl -w 'net.ipv4.ip_local_port_range=32768 60999'"]
    assert '"' not in hit["recommendation"]
    messy = json.loads((FIXTURES / "facts_messy.json").read_text())
    lines = list(every_line(judge(messy)))
    assert lines and not [line for line in lines if '"' in line or "'" in line]


def test_quoted_value_in_a_file_is_its_own_finding(facts):
    persist(facts, RANGE, (PORTS, '"32768 60999"'))
    facts["persisted"]["drift"] = {"ip_local_port_range": {
        "runtime": "32768 60999", "persisted": '"32768 60999"', "file": PORTS}}
    (hit,) = only(judge(facts), "PP018")
    assert PORTS in hit["message"] and "EINVAL" in hit["message"]
    assert hit["fixes"] == [{"settings": {RANGE: "32768 60999"}, "file": PORTS,
                             "file_lines": [RANGE + " = 32768 60999"], "delete": [],
                             "shell": []}]
    assert not only(judge(json.loads((FIXTURES / "facts_clean.json").read_text())), "PP018")


def test_after_a_tune_the_advice_keeps_portpool_file(facts):
    # proxy1 after tune: portpool's file and runtime say 15000 64999, an older
    # 60-ports.conf read after it still says 40000 40999 and wins at boot.
    set_range(facts, 15000, 64999)
    persist(facts, RANGE, (PORTPOOL, "15000 64999"), (PORTS, "40000 40999"))
    facts["persisted"]["drift"] = {"ip_local_port_range": {
        "runtime": "15000 64999", "persisted": "40000 40999", "file": PORTS}}
    found = judge(facts)
    (dup,) = only(found, "PP012")
    assert dup["fixes"][0]["delete"] == [{"file": PORTS, "key": RANGE}]
    assert "Keep the key only in %s" % PORTPOOL in dup["recommendation"]
    (drift,) = only(found, "PP011")
    (keep,) = drift["fixes"]
    assert keep["file"] == PORTPOOL and keep["delete"] == [{"file": PORTS, "key": RANGE}]
    # Applying the stale boot value now would make the pool 1000 ports: refused.
    (refused,) = drift["fixes_refused"]
    assert refused["settings"] == {RANGE: "40000 40999"} and "PP001" in refused["reason"]
    assert "Not offered: %s = 40000 40999, because it would raise PP001" % RANGE \
        in drift["recommendation"]
    for item in found:
        for fix in item["fixes"]:
            assert all(gone["file"] != PORTPOOL for gone in fix["delete"])


def test_managed_file_follows_portpool_tune_file_name(facts):
    set_range(facts, 40000, 40999)
    (hit,) = only(judge(facts, managed_file="90-pool.conf"), "PP001")
    assert hit["fixes"][0]["file"] == "/etc/sysctl.d/90-pool.conf"
    policy = audit.policy_from_vars({"portpool_tune_file_name": "90-pool.conf"})
    assert policy["managed_file"] == "90-pool.conf"
    with pytest.raises(ValueError, match="portpool_tune_file_name"):
        audit.policy_from_vars({"portpool_tune_file_name": "../etc/passwd"})


def test_drift_never_drops_a_reservation_pp004_asked_for(facts):
    # proxy2 reserves its listener 45000; its group reserves nothing.
    hosts = []
    for name in ("proxy1", "proxy2", "proxy3", "proxy4"):
        host = json.loads(json.dumps(facts))
        if name == "proxy2":
            host["sysctl"]["ip_local_reserved_ports"] = [[45000, 45000]]
            host["ephemeral"] = pool_size(32768, 60999, [[45000, 45000]])
            host["listeners_in_range"] = [{"address": "0.0.0.0", "port": 45000,
                                           "family": "ipv4", "reserved": True}]
        hosts.append(audit.context(name, host, groups=["proxies"],
                                   policy={"drift_keys": ["ip_local_reserved_ports"]}))
    (hit,) = audit.evaluate(hosts)["proxy2"]
    assert hit["id"] == "PP015" and hit["fixes"] == []
    assert "(empty)" in hit["message"] and "PP004" in hit["fixes_refused"][0]["reason"]
    assert "ip_local_reserved_ports" not in audit.default_policy()["drift_keys"]


def test_drift_does_not_undo_tw_reuse_another_rule_wants(facts):
    # A busy proxy runs tcp_tw_reuse = 1 (PP009 wants it); its group is at 2.
    hosts = []
    for name in ("p1", "p2", "p3"):
        host = json.loads(json.dumps(facts))
        if name == "p1":
            host["sysctl"]["tcp_tw_reuse"] = 1
            host["destinations"]["top"][0].update(total=20000, time_wait=20000,
                                                  utilisation=0.71)
        hosts.append(audit.context(name, host, groups=["proxies"],
                                   policy={"min_usable_ports": 1, "pool_headroom": 1}))
    found = audit.evaluate(hosts)["p1"]
    assert only(found, "PP009") and not only(found, "PP015")


def test_drift_keeps_the_reuse_pp005_makes_work(facts):
    # proxy3: reuse 1 with timestamps 0, its group at reuse 2 with timestamps 1.
    hosts = []
    for name in ("p1", "p2", "p3"):
        host = json.loads(json.dumps(facts))
        if name == "p3":
            host["sysctl"].update(tcp_tw_reuse=1, tcp_timestamps=0)
        hosts.append(audit.context(name, host, groups=["proxies"]))
    found = audit.evaluate(hosts)["p3"]
    assert only(found, "PP005")[0]["fixes"][0]["settings"] == {
        "net.ipv4.tcp_timestamps": "1"}
    (drift,) = only(found, "PP015")
    assert "tcp_timestamps" in drift["message"] and "tcp_tw_reuse" not in drift["message"]


def test_empty_and_absent_values_are_named():
    assert audit.show("") == "(empty)" and audit.show(None) == "(absent)"
    assert audit.show("32768 60999") == "32768 60999"
    assert advice.file_line("ip_local_reserved_ports", "") == "net.ipv4.ip_local_reserved_ports ="


def test_apply_fix_recomputes_the_winner_pool_and_drift(facts):
    set_range(facts, 15000, 64999)
    persist(facts, RANGE, (PORTPOOL, "15000 64999"), (PORTS, "40000 40999"))
    fix = advice.make_fix({}, None, [(PORTS, RANGE)], runtime=False)
    after = advice.apply_fix(facts, fix)
    entry = after["persisted"]["keys"]["ip_local_port_range"]
    assert (entry["file"], entry["value"], entry["also"]) == (PORTPOOL, "15000 64999", [])
    assert after["persisted"]["drift"] == {}
    shrink = advice.make_fix({RANGE: "40000 40999"}, None)
    after = advice.apply_fix(facts, shrink)
    assert after["ephemeral"]["usable"] == 1000 and after["persisted"]["drift"] == {}
    assert facts["ephemeral"]["usable"] == 50000  # the input is never changed
