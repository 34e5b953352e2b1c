"""portpool_variables: misspelt portpool_* variables and empty settings are warned about."""

from pathlib import Path

import yaml
from ansible.module_utils.portpool_variables import empty_settings, known_names, unknown_variables

REPO = Path(__file__).resolve().parents[2]


def test_a_misspelt_name_is_warned_once_with_its_hosts_and_the_closest_name():
    known = known_names()
    warnings = unknown_variables({
        "proxy1": ["portpool_tune_setting", "ansible_host", "portpool_tune_settings"],
        "proxy2": ["portpool_tune_setting", "portpool_audit_min_usable_port"],
    }, known)
    assert warnings == [
        "portpool_audit_min_usable_port (set for proxy2) is not a portpool variable: "
        "did you mean portpool_audit_min_usable_ports?",
        "portpool_tune_setting (set for proxy1, proxy2) is not a portpool variable: "
        "did you mean portpool_tune_settings?",
    ]


def test_a_name_close_to_nothing_says_it_is_ignored():
    warnings = unknown_variables({"h": ["portpool_xyzzy"]}, known_names())
    assert warnings == ["portpool_xyzzy (set for h) is not a portpool variable: it is ignored"]


def test_long_host_lists_are_shortened():
    hosts = {"h%02d" % index: ["portpool_tune_setting"] for index in range(25)}
    (warning,) = unknown_variables(hosts, known_names())
    assert "h09, ... (25 hosts)" in warning and "h10" not in warning


def test_every_role_option_and_every_fact_the_project_sets_is_known():
    known = known_names()
    for path in (REPO / "roles").glob("*/defaults/main.yml"):
        names = set(yaml.safe_load(path.read_text()) or {})
        assert names <= known, (path, names - known)
    facts = set()
    for path in [*(REPO / "roles").glob("*/tasks/*.yml"), *(REPO / "playbooks").glob("*.yml")]:
        facts.update(_set_facts(yaml.safe_load(path.read_text())))
    public = {name for name in facts if name.startswith("portpool_")}
    assert public and public <= known, public - known
    assert "portpool_tune_serial" in known and "portpool_preflight_fail_on" in known


def test_empty_merged_settings_are_warned_about_in_one_line():
    assert empty_settings({"a": {"tcp_tw_reuse": 1}}) == []
    (warning,) = empty_settings({"a": {}, "b": {"tcp_tw_reuse": 1}, "c": {}})
    assert warning.startswith("a, c: the merged portpool_tune settings are empty")
    assert "misspelt" in warning


def _set_facts(node):
    """Names set by ansible.builtin.set_fact anywhere in a parsed task or play list."""
    if isinstance(node, list):
        for item in node:
            yield from _set_facts(item)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key in ("ansible.builtin.set_fact", "set_fact") and isinstance(value, dict):
                yield from value
            else:
                yield from _set_facts(value)
