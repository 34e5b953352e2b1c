"""portpool_audit_policy (module_utils/portpool_audit_policy.py): every host's policy,
checked against the role's real argument spec and the rules' own bounds."""

from pathlib import Path

import portpool_audit_policy
import pytest
import yaml
from ansible.module_utils.portpool_audit_policy import (
    check_hosts,
    check_policies,
    policy_argument_spec,
    spec_options,
    validated_values,
)

ROLE = Path(__file__).resolve().parents[2] / "roles" / "portpool_audit"


@pytest.fixture(scope="module")
def options():
    return spec_options((ROLE / "meta" / "argument_specs.yml").read_text(), "main")


@pytest.fixture(scope="module")
def defaults(options):
    """Every default of the spec: what a host that sets nothing is audited with."""
    values, errors = validated_values({}, options)
    assert errors == []
    return values


def _host(problem):
    """The host a message names: `host: ...` (the spec) or `... of host ...` (the bounds)."""
    return next(host for host in ("a", "b", "c", "bad", "good")
                if problem.startswith(host + ": ") or " of %s " % host in problem)


def test_the_defaults_pass(options, defaults):
    assert check_policies({"h1": defaults, "h2": dict(defaults)}, options) == []


def test_a_host_that_sets_nothing_gets_the_specs_defaults(options):
    problems, validated = check_hosts(
        {"bare": {}, "typed": {"portpool_audit_min_usable_ports": "20000",
                               "portpool_audit_probe_scope": None},
         "bad": {"portpool_audit_drift_min_hosts": 1}}, options)
    assert list(problems) == ["bad"] and set(validated) == {"bare", "typed"}
    for name, spec in options.items():
        assert validated["bare"][name] == spec.get("default"), name
    assert validated["typed"]["portpool_audit_min_usable_ports"] == 20000
    # Validated values validate to themselves (the audit reads them again).
    assert validated_values(validated["bare"], options) == (validated["bare"], [])
    # null takes the default, as an unset variable does.
    assert validated["typed"]["portpool_audit_probe_scope"] == options[
        "portpool_audit_probe_scope"]["default"]


@pytest.mark.parametrize("name, value, words", [
    ("portpool_audit_min_usable_ports", "lots", "portpool_audit_min_usable_ports"),
    ("portpool_audit_waivers", [{"rule": "PP999"}], "PP999"),
    ("portpool_audit_severity", {"PP001": "huge"}, "huge"),
    ("portpool_audit_probe_mode", "remote", "portpool_audit_probe_mode"),
    ("portpool_audit_destination_warn", 0.9, "must be in (0, 1] and not above"),
    ("portpool_audit_destination_high", 1.5, "destination_high of bad must be <= 1"),
    ("portpool_audit_drift_min_hosts", 1, "drift_min_hosts of bad must be >= 2"),
    ("portpool_audit_probe_sample_ports", 1, "probe_sample_ports of bad must be >= 2"),
    ("portpool_audit_probe_churn_seconds", -1, "probe_churn_seconds of bad must be >= 0"),
    ("portpool_audit_destinations_top", 0, "destinations_top of bad must be >= 1"),
])
def test_each_bad_value_is_named_with_its_host(options, defaults, name, value, words):
    problems = check_policies({"good": defaults, "bad": dict(defaults, **{name: value})}, options)
    assert problems, (name, value)
    assert all(_host(problem) == "bad" for problem in problems), problems
    assert any(words in problem for problem in problems), problems


def test_every_problem_of_every_host_is_listed(options, defaults):
    policies = {
        "a": dict(defaults, portpool_audit_min_usable_ports=0, portpool_audit_drift_min_hosts=1),
        "b": dict(defaults, portpool_audit_destinations_top=0),
        "c": "not collected",
    }
    problems = check_policies(policies, options)
    assert [_host(problem) for problem in problems] == ["a", "a", "b", "c"]


def test_a_spec_without_the_entry_point_is_an_error():
    with pytest.raises(ValueError, match="'main'"):
        spec_options("argument_specs: {other: {options: {}}}", "main")
    with pytest.raises(ValueError):
        spec_options("argument_specs: [", "main")


def test_documentation_matches_the_spec():
    doc = yaml.safe_load(portpool_audit_policy.DOCUMENTATION)
    assert set(doc["options"]) == set(policy_argument_spec())
    yaml.safe_load(portpool_audit_policy.EXAMPLES)
    assert set(yaml.safe_load(portpool_audit_policy.RETURN)) == {"hosts", "problems", "validated"}


def test_the_same_problem_on_many_hosts_is_listed_once(options, defaults):
    from ansible.module_utils.portpool_audit_policy import grouped_problems, problems_by_host
    bad = dict(defaults, portpool_audit_drift_min_hosts=1)
    policies = {"p1": bad, "p2": dict(bad), "p3": dict(bad), "ok": defaults,
                "odd": dict(defaults, portpool_audit_destinations_top=0)}
    lines = grouped_problems(problems_by_host(policies, options))
    assert lines == ["hosts p1, p2, p3: portpool_audit_drift_min_hosts must be >= 2",
                     "host odd: portpool_audit_destinations_top must be >= 1"]
