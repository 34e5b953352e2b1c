"""The audit rules (module_utils/portpool_audit_rules.py, run by portpool_audit.py).

Each rule is checked firing and not firing.

Fixture facts: tests/unit/fixtures/audit/facts_clean.json (a host with kernel
defaults: no rule fires), facts_messy.json (most rules fire) and probe_clean.json.
Each test changes one thing in a copy of the clean facts and checks the one rule.
"""

import copy
import json
from pathlib import Path

import pytest
from ansible.module_utils import portpool_audit as audit
from ansible.module_utils.portpool_sysctl import pool_size

FIXTURES = Path(__file__).parent / "fixtures" / "audit"


def load(name):
    return json.loads((FIXTURES / name).read_text())


@pytest.fixture
def facts():
    return load("facts_clean.json")


@pytest.fixture
def probe():
    return load("probe_clean.json")


def ctx_for(facts, probe=None, host="h1", groups=("web",), **policy):
    return audit.context(host, facts, probe, policy=policy, groups=list(groups))


def findings(facts, probe=None, **policy):
    return audit.evaluate_host(ctx_for(facts, probe, **policy))


def ids(found):
    return sorted({item["id"] for item in found})


def only(found, rule_id):
    return [item for item in found if item["id"] == rule_id]


def set_range(facts, low, high, reserved=()):
    facts["sysctl"]["ip_local_port_range"] = [low, high]
    facts["sysctl"]["ip_local_reserved_ports"] = [list(span) for span in reserved]
    facts["ephemeral"] = pool_size(low, high, [list(span) for span in reserved])


# ----------------------------------------------------------------- catalogue


def test_catalogue_ids_are_stable_and_complete():
    cat = audit.catalogue()
    assert [rule["id"] for rule in cat] == ["PP%03d" % n for n in range(1, 23)]
    for rule in cat:
        assert rule["severity"] in audit.SEVERITIES
        assert rule["title"] and "\n" not in rule["title"]
        assert len(rule["description"]) > 20


def test_docs_list_every_rule():
    docs = (Path(__file__).resolve().parents[2] / "docs" / "rules.md").read_text()
    for rule in audit.catalogue():
        assert "## %s" % rule["id"] in docs, rule["id"]
        assert rule["title"] in docs, rule["title"]


def test_clean_host_has_no_findings(facts, probe):
    assert findings(facts, probe) == []


def test_messy_host_fires_the_expected_rules(probe):
    found = findings(load("facts_messy.json"), probe, bind_zero_programs=["legacy-client"],
                     service_ports=[40200], desired={"tcp_tw_reuse": 2})
    assert ids(found) == ["PP001", "PP002", "PP003", "PP004", "PP005", "PP006", "PP007",
                          "PP008", "PP009", "PP010", "PP011", "PP012", "PP014", "PP016"]
    for item in found:
        assert set(item) == {"id", "severity", "title", "host", "message", "fixes", "fixes_refused",
                             "recommendation", "waived"}
        assert item["host"] == "h1" and item["waived"] is False


# ----------------------------------------------------------------- PP001


def test_pp001_fires_below_policy_minimum(facts):
    set_range(facts, 40000, 40999)
    (hit,) = only(findings(facts), "PP001")
    assert hit["severity"] == "high"
    assert "1000 ports" in hit["message"] and "40000-40999" in hit["message"]
    assert "/proc/sys/net/ipv4/ip_local_port_range" in hit["message"]
    assert "`net.ipv4.ip_local_port_range = 32768 60999`" in hit["recommendation"]
    low, high = (int(part) for part in
                 hit["fixes"][0]["settings"]["net.ipv4.ip_local_port_range"].split())
    assert high - low + 1 >= 16384 and low % 2 != high % 2


def test_pp001_counts_reserved_ports(facts):
    set_range(facts, 32768, 49999, reserved=[[32768, 33999]])  # 17232 - 1232 = 16000
    assert only(findings(facts), "PP001")
    set_range(facts, 32768, 49999)
    assert not only(findings(facts), "PP001")


def test_pp001_fires_on_measured_pressure(facts):
    facts["destinations"]["top"][0].update(total=15000, time_wait=15000, utilisation=0.53)
    (hit,) = only(findings(facts), "PP001")
    assert "busiest destination's 15000 sockets" in hit["message"]
    assert not only(findings(facts, pool_headroom=1.5), "PP001")


def test_pp001_quiet_at_policy_minimum(facts):
    assert not only(findings(facts, min_usable_ports=28232), "PP001")
    assert only(findings(facts, min_usable_ports=28233), "PP001")


def test_suggest_range_gives_enough_ports_and_parity():
    low, high, usable = audit.suggest_range(40000, [[20000, 20999]], 1024)
    assert usable >= 40000 and low % 2 != high % 2 and high == 60999
    assert audit.suggest_range(10, (), 1024) == (32768, 60999, 28232)
    low, high, usable = audit.suggest_range(70000, (), 1024)
    assert low == 1024 and high == 60999 and usable < 70000
    # A widened range starts at a multiple of 1024, with 5% or more to spare.
    low, high, usable = audit.suggest_range(29192, (), 1024)
    assert (low, high) == (29696, 60999) and usable >= 29192 * 1.05


# ----------------------------------------------------------------- PP002


def test_pp002_same_parity(facts):
    set_range(facts, 32768, 60998)
    (hit,) = only(findings(facts), "PP002")
    assert hit["severity"] == "low" and "both ends are even" in hit["message"]
    assert "never hand out port 32768" in hit["message"]
    assert '`net.ipv4.ip_local_port_range = 32768 60999`' in hit["recommendation"]


def test_pp002_odd_ends_move_low(facts):
    set_range(facts, 32769, 60999)
    (hit,) = only(findings(facts), "PP002")
    assert '`net.ipv4.ip_local_port_range = 32768 60999`' in hit["recommendation"]


def test_pp002_quiet_for_different_parity(facts):
    assert not only(findings(facts), "PP002")


def test_fix_parity_at_the_top():
    assert audit.fix_parity(1024, 65534) == (1024, 65535)
    assert audit.fix_parity(2000, 65535) == (2000, 65535)  # already different
    assert audit.fix_parity(1025, 65535, floor=1025) == (1026, 65535)


# ----------------------------------------------------------------- PP003


def test_pp003_below_unprivileged_start(facts):
    set_range(facts, 1000, 60999)
    facts["sysctl"]["ip_unprivileged_port_start"] = 2000
    (hit,) = only(findings(facts), "PP003")
    assert hit["severity"] == "high" and "ip_unprivileged_port_start 2000" in hit["message"]
    assert '`net.ipv4.ip_local_port_range = 2000 60999`' in hit["recommendation"]


def test_pp003_boot_value_below_unprivileged_start(facts):
    facts["persisted"]["keys"]["ip_local_port_range"] = {
        "value": "1000 65535", "file": "/etc/sysctl.d/99-wide.conf", "also": []}
    (hit,) = only(findings(facts), "PP003")
    assert "boot" in hit["message"] and "/etc/sysctl.d/99-wide.conf" in hit["message"]


def test_pp003_well_known_ports(facts):
    set_range(facts, 512, 60999)
    facts["sysctl"]["ip_unprivileged_port_start"] = 0
    (hit,) = only(findings(facts), "PP003")
    assert hit["severity"] == "medium" and "0-1023" in hit["message"]


def test_pp003_policy_service_ports(facts):
    found = only(findings(facts, service_ports=[5432, 40000, 50000]), "PP003")
    (hit,) = found
    assert "40000, 50000" in hit["message"] and "5432" not in hit["message"]
    assert '`net.ipv4.ip_local_reserved_ports = 40000,50000`' in hit["recommendation"]
    facts["sysctl"]["ip_local_reserved_ports"] = [[40000, 40000], [50000, 50000]]
    assert not only(findings(facts, service_ports=[5432, 40000, 50000]), "PP003")


def test_pp003_quiet_by_default(facts):
    assert not only(findings(facts), "PP003")


# ----------------------------------------------------------------- PP004


def test_pp004_listener_in_range(facts):
    facts["listeners_in_range"] = [{"address": "0.0.0.0", "port": 40500, "reserved": False},
                                   {"address": "::", "port": 40500, "reserved": False}]
    facts["sysctl"]["ip_local_reserved_ports"] = [[9000, 9010]]
    (hit,) = only(findings(facts), "PP004")
    assert hit["severity"] == "high" and "40500" in hit["message"]
    assert '`net.ipv4.ip_local_reserved_ports = 9000-9010,40500`' in hit["recommendation"]


def test_pp004_quiet_when_reserved(facts):
    facts["listeners_in_range"] = [{"address": "0.0.0.0", "port": 40500, "reserved": True}]
    assert not only(findings(facts), "PP004")


# ----------------------------------------------------------------- PP005


def test_pp005_reuse_without_timestamps(facts, probe):
    facts["sysctl"].update(tcp_tw_reuse=1, tcp_timestamps=0)
    probe["churn"]["remote"]["reuse_effective"] = False
    (hit,) = only(findings(facts, probe), "PP005")
    assert hit["severity"] == "medium" and "did not reuse" in hit["message"]
    assert "net.ipv4.tcp_timestamps = 1" in hit["recommendation"]


def test_pp005_default_reuse_is_low(facts):
    facts["sysctl"]["tcp_timestamps"] = 0
    (hit,) = only(findings(facts), "PP005")
    assert hit["severity"] == "low"


def test_pp005_quiet(facts):
    facts["sysctl"].update(tcp_tw_reuse=1, tcp_timestamps=1)
    assert not only(findings(facts), "PP005")
    facts["sysctl"].update(tcp_tw_reuse=0, tcp_timestamps=0)
    assert not only(findings(facts), "PP005")


# ----------------------------------------------------------------- PP006


def test_pp006_recycle_on_old_kernel(facts):
    facts["sysctl"]["tcp_tw_recycle"] = 1
    (hit,) = only(findings(facts), "PP006")
    assert hit["severity"] == "high" and "NAT" in hit["message"]
    assert "net.ipv4.tcp_tw_recycle = 0" in hit["recommendation"]
    facts["sysctl"]["tcp_tw_recycle"] = 0
    (hit,) = only(findings(facts), "PP006")
    assert hit["severity"] == "low"


def test_pp006_recycle_in_a_file_on_new_kernel(facts):
    facts["persisted"]["keys"]["tcp_tw_recycle"] = {
        "value": "1", "file": "/etc/sysctl.d/10-tuning.conf", "also": []}
    (hit,) = only(findings(facts), "PP006")
    assert hit["severity"] == "medium"
    assert "Delete the net.ipv4.tcp_tw_recycle line from /etc/sysctl.d/10-tuning.conf" \
        in hit["recommendation"]


def test_pp006_quiet(facts):
    assert not only(findings(facts), "PP006")


# ----------------------------------------------------------------- PP007


def test_pp007_lowered_buckets(facts):
    facts["sysctl"]["tcp_max_tw_buckets"] = 1024
    (hit,) = only(findings(facts), "PP007")
    assert "1024" in hit["message"] and "usable pool" in hit["message"]
    assert "net.ipv4.tcp_max_tw_buckets = 131072" in hit["recommendation"]


def test_pp007_policy_minimum(facts):
    assert only(findings(facts, min_tw_buckets=200000), "PP007")
    facts["sysctl"]["tcp_max_tw_buckets"] = 20000
    assert not only(findings(facts, min_tw_buckets=10000), "PP007")


def test_pp007_overflow_counter(facts):
    facts["sockets"]["TCPTimeWaitOverflow"] = 12
    (hit,) = only(findings(facts), "PP007")
    assert "TCPTimeWaitOverflow = 12" in hit["message"]


def test_pp007_quiet(facts):
    assert not only(findings(facts), "PP007")


# ----------------------------------------------------------------- PP008


def test_pp008_fin_timeout(facts):
    facts["sysctl"]["tcp_fin_timeout"] = 15
    (hit,) = only(findings(facts), "PP008")
    assert hit["severity"] == "info" and "FIN_WAIT_2" in hit["message"]
    assert "net.ipv4.tcp_fin_timeout = 60" in hit["recommendation"]


def test_pp008_quiet(facts):
    assert not only(findings(facts), "PP008")


# ----------------------------------------------------------------- PP009


def test_pp009_levels(facts):
    facts["destinations"]["top"] = [
        {"address": "198.18.0.9", "port": 80, "time_wait": 24000, "established": 0,
         "total": 24000, "utilisation": 0.85},
        {"address": "2001:db8::1", "port": 443, "time_wait": 15000, "established": 0,
         "total": 15000, "utilisation": 0.53},
        {"address": "198.18.0.10", "port": 80, "time_wait": 10, "established": 0,
         "total": 10, "utilisation": 0.0004},
    ]
    found = only(findings(facts, min_usable_ports=1, pool_headroom=1), "PP009")
    assert [item["severity"] for item in found] == ["high", "medium"]
    assert "198.18.0.9:80" in found[0]["message"] and "85%" in found[0]["message"]
    assert "[2001:db8::1]:443" in found[1]["message"]
    assert "tcp_tw_reuse = 1" in found[0]["recommendation"]


def test_pp009_computes_utilisation_when_missing(facts):
    facts["destinations"]["top"] = [{"address": "198.18.0.9", "port": 80, "total": 20000}]
    assert only(findings(facts, min_usable_ports=1, pool_headroom=1), "PP009")


def test_pp009_thresholds_from_policy(facts):
    facts["destinations"]["top"][0].update(total=20000, utilisation=0.71)
    policy = {"min_usable_ports": 1, "pool_headroom": 1}
    assert only(findings(facts, **policy), "PP009")[0]["severity"] == "medium"
    assert only(findings(facts, destination_high=0.7, **policy), "PP009")[0]["severity"] == "high"
    assert not only(findings(facts, destination_warn=0.75, **policy), "PP009")


def test_pp009_quiet(facts):
    assert not only(findings(facts), "PP009")


# ----------------------------------------------------------------- PP010


def test_pp010_service_limit(facts):
    facts["limits"]["processes"] = [
        {"name": "haproxy", "kind": "process", "pid": 42, "open_fds": 7,
         "max_open_files": {"soft": 4096, "hard": 4096}},
        {"name": "haproxy", "kind": "process", "pid": 44, "open_fds": 9,
         "max_open_files": {"soft": 4096, "hard": 4096}},
        {"name": "nginx", "kind": "unit", "pid": 43, "open_fds": 7,
         "max_open_files": {"soft": 65536, "hard": 65536}},
        {"name": "java", "kind": "process", "pid": 45, "open_fds": 7,
         "max_open_files": {"soft": "unlimited", "hard": "unlimited"}},
        {"name": "gone", "kind": "process", "pid": None, "open_fds": None,
         "max_open_files": None},
    ]
    (hit,) = only(findings(facts), "PP010")
    assert "haproxy" in hit["message"] and "4096" in hit["message"]
    assert "pids 42, 44" in hit["message"]
    assert "LimitNOFILE=29256" in hit["recommendation"]


def test_pp010_refuses_other_layouts(facts):
    # One documented layout (docs/facts.md): a bare number is not {soft, hard}.
    facts["limits"]["processes"] = [{"name": "haproxy", "pid": 42, "max_open_files": 1024}]
    with pytest.raises(audit.FactsError, match=r"limits.processes\[0\].max_open_files"):
        audit.check_facts(facts)


def test_pp010_quiet(facts):
    assert not only(findings(facts), "PP010")


# ----------------------------------------------------------------- PP011 / PP012


def test_pp011_runtime_differs_from_boot(facts):
    facts["sysctl"]["tcp_tw_reuse"] = 1
    facts["persisted"]["keys"]["tcp_tw_reuse"] = {
        "value": "0", "file": "/etc/sysctl.d/50-legacy.conf", "also": []}
    facts["persisted"]["drift"] = {"tcp_tw_reuse": {
        "runtime": "1", "persisted": "0", "file": "/etc/sysctl.d/50-legacy.conf"}}
    (hit,) = only(findings(facts), "PP011")
    assert "/etc/sysctl.d/50-legacy.conf" in hit["message"]
    assert "is 1 at runtime" in hit["message"] and "but 0 wins at boot" in hit["message"]
    assert "In /etc/sysctl.d/50-legacy.conf write `net.ipv4.tcp_tw_reuse = 1`" \
        in hit["recommendation"]
    assert "`sysctl -w 'net.ipv4.tcp_tw_reuse=0'`" in hit["recommendation"]


def test_pp011_quiet(facts):
    facts["persisted"]["keys"]["tcp_tw_reuse"] = {
        "value": "2", "file": "/etc/sysctl.d/50-legacy.conf", "also": []}
    assert not only(findings(facts), "PP011")


def test_pp012_several_files(facts):
    facts["persisted"]["keys"]["ip_local_port_range"] = {
        "value": "32768\t60999", "file": "/etc/sysctl.d/10-a.conf",
        "also": [{"file": "/etc/sysctl.conf", "line": 7, "value": "1024 65000"}]}
    (hit,) = only(findings(facts), "PP012")
    assert "set in 2 files" in hit["message"] and "disagree" in hit["message"]
    assert "Keep the key only in /etc/sysctl.d/10-a.conf" in hit["recommendation"]
    assert hit["fixes"][0]["delete"] == [
        {"file": "/etc/sysctl.conf", "key": "net.ipv4.ip_local_port_range"}]


def test_pp012_quiet_for_one_file(facts):
    facts["persisted"]["keys"]["ip_local_port_range"] = {
        "value": "32768 60999", "file": "/etc/sysctl.d/10-a.conf", "also": []}
    assert not only(findings(facts), "PP012")


# ----------------------------------------------------------------- PP013 / PP014


def test_pp013_probe_mismatch(facts, probe):
    probe["matches_expected"] = False
    probe["hold"].update(established=990, stopped_by="EADDRNOTAVAIL")
    (hit,) = only(findings(facts, probe), "PP013")
    assert "990" in hit["message"] and "1000" in hit["message"]


def test_pp013_quiet(facts, probe):
    assert not only(findings(facts, probe), "PP013")
    assert not only(findings(facts, None), "PP013")


def test_pp014_named_bind_programs(facts, probe):
    (hit,) = only(findings(facts, probe, bind_zero_programs=["memcache-client"]), "PP014")
    assert "memcache-client" in hit["message"] and "EADDRINUSE" in hit["message"]
    assert "IP_BIND_ADDRESS_NO_PORT = 1" in hit["recommendation"]


def test_pp014_quiet(facts, probe):
    assert not only(findings(facts, probe), "PP014")  # no programs named
    probe["bind_zero_blocked"] = False
    assert not only(findings(facts, probe, bind_zero_programs=["x"]), "PP014")


# ----------------------------------------------------------------- PP016 / PP017


def test_pp016_desired_values(facts):
    (hit,) = only(findings(facts, desired={"net.ipv4.tcp_tw_reuse": 1,
                                           "ip_local_port_range": "32768\t60999"}), "PP016")
    assert "net.ipv4.tcp_tw_reuse" in hit["message"]
    assert "`net.ipv4.tcp_tw_reuse = 1`" in hit["recommendation"]


def test_pp016_quiet(facts):
    assert not only(findings(facts, desired={"tcp_tw_reuse": 2}), "PP016")


@pytest.mark.parametrize("status", ["unreachable", "failed"])
def test_pp017_not_audited(status):
    ctx = audit.context("h9", status=status, error="boom")
    (hit,) = audit.evaluate_host(ctx)
    assert hit["id"] == "PP017" and "boom" in hit["message"]


def test_pp017_quiet(facts):
    assert not only(findings(facts), "PP017")


# ----------------------------------------------------------------- PP015 drift


def fleet(facts, values, groups=("web",), **policy):
    contexts = []
    for index, reuse in enumerate(values):
        host_facts = copy.deepcopy(facts)
        host_facts["sysctl"]["tcp_tw_reuse"] = reuse
        contexts.append(ctx_for(host_facts, host="h%d" % index, groups=groups, **policy))
    return audit.evaluate(contexts)


def test_pp015_drift_from_majority(facts):
    result = fleet(facts, [2, 2, 0, 2])
    (hit,) = only(result["h2"], "PP015")
    assert "net.ipv4.tcp_tw_reuse = 0 here" in hit["message"]
    assert "2 on 3 of 4 hosts in group web" in hit["message"]
    assert "`net.ipv4.tcp_tw_reuse = 2`" in hit["recommendation"]
    assert not only(result["h0"], "PP015")


def test_pp015_quiet_without_majority_or_group(facts):
    assert not any(only(found, "PP015") for found in fleet(facts, [2, 2, 1, 1]).values())
    assert not any(only(found, "PP015") for found in fleet(facts, [2, 1]).values())
    ungrouped = fleet(facts, [2, 2, 1], groups=("ungrouped",))
    assert not any(only(found, "PP015") for found in ungrouped.values())
    assert not any(only(found, "PP015")
                   for found in fleet(facts, [2, 2, 1], drift_keys=["tcp_timestamps"]).values())


def test_pp015_a_host_ahead_of_its_group_is_not_drift(facts):
    """Reuse on every destination, a wider range, more buckets: what a busy host is
    told to set. Telling it to match the group would undo the fix."""
    assert not only(fleet(facts, [2, 2, 1, 2])["h2"], "PP015")
    contexts = [ctx_for(copy.deepcopy(facts), host="h%d" % n) for n in range(3)]
    contexts[2].facts["sysctl"]["ip_local_port_range"] = [20000, 60999]
    contexts[2].facts["ephemeral"] = pool_size(20000, 60999)
    assert not only(audit.evaluate(contexts)["h2"], "PP015")
    contexts[2].facts["sysctl"]["ip_local_port_range"] = [40000, 60999]
    contexts[2].facts["ephemeral"] = pool_size(40000, 60999)
    assert only(audit.evaluate(contexts)["h2"], "PP015")


def test_pp015_skips_unaudited_hosts(facts):
    contexts = [ctx_for(copy.deepcopy(facts), host="h%d" % n) for n in range(3)]
    contexts[2].facts["sysctl"]["tcp_tw_reuse"] = 0
    contexts.append(audit.context("h3", status="unreachable", groups=["web"]))
    result = audit.evaluate(contexts)
    assert only(result["h2"], "PP015")
    assert ids(result["h3"]) == ["PP017"]


# ----------------------------------------------------------------- policy engine


def test_waivers_by_host_group_and_star(facts):
    facts["sysctl"]["tcp_fin_timeout"] = 30
    assert only(findings(facts, waivers=[{"rule": "PP008", "hosts": ["h*"],
                                          "reason": "x"}]), "PP008")[0]["waived"]
    assert only(findings(facts, waivers=[{"rule": "PP008", "groups": ["web"],
                                          "reason": "x"}]), "PP008")[0]["waived"]
    assert only(findings(facts, waivers=[{"rule": "*", "reason": "x"}]), "PP008")[0]["waived"]
    assert not only(findings(facts, waivers=[{"rule": "PP008", "hosts": ["db*"],
                                              "groups": ["db"], "reason": "x"}]),
                    "PP008")[0]["waived"]
    assert not only(findings(facts, waivers=[{"rule": "PP001", "reason": "x"}]),
                    "PP008")[0]["waived"]


def test_severity_override_and_blocking(facts):
    facts["sysctl"]["tcp_fin_timeout"] = 30
    found = findings(facts, severity={"PP008": "critical"})
    assert found[0]["severity"] == "critical"
    assert audit.blocking(found, "high") == found
    assert audit.blocking(findings(facts), "high") == []
    assert audit.blocking(findings(facts), "info")[0]["id"] == "PP008"
    waived = findings(facts, severity={"PP008": "critical"},
                      waivers=[{"rule": "PP008", "reason": "x"}])
    assert audit.blocking(waived, "info") == []
    assert audit.worst_severity(waived) is None
    assert audit.worst_severity(waived, include_waived=True) == "critical"


def test_findings_sorted_worst_first(probe):
    found = findings(load("facts_messy.json"), probe)
    ranks = [audit.SEVERITY_RANK[item["severity"]] for item in found]
    assert ranks == sorted(ranks, reverse=True)


# ----------------------------------------------------------------- inputs


def test_context_from_result_statuses(facts, probe):
    ok = audit.context_from_result("a", ["web"], {"ansible_facts": {"portpool": facts},
                                                  "probe": probe}, {})
    assert (ok.status, ok.error, ok.probe["scope"]) == ("ok", None, "quick")
    down = audit.context_from_result("b", [], {"unreachable": True, "msg": "refused"}, {})
    assert (down.status, down.error, down.facts) == ("unreachable", "refused", {})
    empty = audit.context_from_result("d", [], {"changed": False}, {})
    assert empty.status == "failed" and "no facts" in empty.error


def test_probe_failure_alone_is_its_own_finding(facts):
    # The facts module failing only in its probe (no root) still carries the facts:
    # the host is judged on them and PP019 reports the probe.
    facts["sysctl"]["tcp_fin_timeout"] = 30
    result = {"failed": True, "msg": "probe: mode=lab needs root: use become: true",
              "ansible_facts": {"portpool": facts}}
    ctx = audit.context_from_result("c", [], result, {})
    assert (ctx.status, ctx.error) == ("ok", None)
    assert ids(audit.evaluate_host(ctx)) == ["PP008", "PP019"]
    reported = audit.context_from_result(
        "c", [], {"probe_error": "mode=lab needs root", "ansible_facts": {"portpool": facts}}, {})
    assert "needs root" in only(audit.evaluate_host(reported), "PP019")[0]["message"]


def test_other_layouts_are_refused(facts):
    facts["sysctl"]["net.ipv4.tcp_fin_timeout"] = 20
    ctx = audit.context_from_result("a", [], {"ansible_facts": {"portpool": facts}}, {})
    assert ctx.status == "failed" and "sysctl.net.ipv4.tcp_fin_timeout" in ctx.error
    assert ids(audit.evaluate_host(ctx)) == ["PP017"]


def test_captured_module_output():
    # Real portpool_facts (processes=sshd) and portpool_probe output from this kernel:
    # default settings, sshd limited to 20000 descriptors, below the 28232-port pool.
    found = findings(load("facts_captured_6.18.json"), load("probe_captured_6.18.json"),
                     processes=["sshd"])
    assert ids(found) == ["PP010"]
    assert "sshd" in found[0]["message"] and "20000" in found[0]["message"]
    ctx = ctx_for(load("facts_captured_6.18.json"))
    assert ctx.usable() == 28232 and ctx.port_range() == (32768, 60999)
    assert ctx.persisted_entry("tcp_tw_reuse") is None and ctx.tw_overflow() == 0
