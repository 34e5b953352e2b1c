"""portpool_audit_plan (module_utils/portpool_audit_plan.py): each host's facts call,
decided from its validated policy (the role's real spec), its user and the record."""

from ansible.module_utils.portpool_audit_plan import facts_call, plan_calls
from ansible.module_utils.portpool_audit_policy import validated_values

KEYS = ["0f3c9a1d2b7e4c5a8f6e0d1c2b3a4958"]


def values(**variables):
    found, errors = validated_values({"portpool_audit_" + name: value
                                      for name, value in variables.items()})
    assert errors == []
    return found


def test_defaults_ask_for_the_full_lab_probe_with_the_keys_on_record():
    call = facts_call(values(), None, KEYS)
    assert call == {
        "become": False,
        "lean_events": False,
        "facts": {
            "processes": [],
            "destinations_top": 20,
            "namespaces": {"enabled": True, "match": [], "max_count": 64},
            "probe": {"mode": "lab", "scope": "full", "sample_ports": 1000,
                      "churn_seconds": 0.0, "on_record": KEYS},
        },
    }


def test_policy_values_reach_the_call():
    call = facts_call(values(processes=["haproxy"], destinations_top=5, namespaces=False,
                             namespace_match=["pod-*"], namespace_max=3, probe_mode="host",
                             probe_scope="full", probe_sample_ports=200,
                             probe_churn_seconds=0, lean_events=True), None, KEYS)
    assert call["lean_events"] is True
    assert call["facts"] == {
        "processes": ["haproxy"],
        "destinations_top": 5,
        "namespaces": {"enabled": False, "match": ["pod-*"], "max_count": 3},
        "probe": {"mode": "host", "scope": "full", "sample_ports": 200,
                  "churn_seconds": 0.0, "on_record": KEYS},
    }


def test_no_probe_is_null_and_reuse_days_zero_hands_on_no_key():
    assert facts_call(values(probe=False), None, KEYS)["facts"]["probe"] is None
    assert facts_call(values(probe_reuse_days=0), None, KEYS)["facts"]["probe"]["on_record"] == []


def test_become_follows_the_option_then_the_connection_user():
    assert facts_call(values(), "deploy", [])["become"] is True
    assert facts_call(values(), "root", [])["become"] is False
    assert facts_call(values(), None, [])["become"] is False
    assert facts_call(values(become=False), "deploy", [])["become"] is False
    assert facts_call(values(become=True), "root", [])["become"] is True


def test_every_validated_host_gets_its_own_call():
    calls = plan_calls({"a": values(), "b": values(destinations_top=3)}, {"a": "deploy"}, KEYS)
    assert set(calls) == {"a", "b"}
    assert (calls["a"]["become"], calls["b"]["become"]) == (True, False)
    assert calls["b"]["facts"]["destinations_top"] == 3
    # Each host's lists are its own: changing one call leaves the others alone.
    calls["a"]["facts"]["probe"]["on_record"].append("x")
    assert calls["b"]["facts"]["probe"]["on_record"] == KEYS
