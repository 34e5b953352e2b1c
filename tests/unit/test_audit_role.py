"""roles/portpool_audit: defaults/main.yml and meta/argument_specs.yml agree."""

from pathlib import Path

import yaml

ROLE = Path(__file__).resolve().parents[2] / "roles" / "portpool_audit"
# Shared with other roles and playbooks: declared in the spec, defaulted in use.
SHARED = {"portpool_report_dir", "portpool_preflight_fail_on", "portpool_tune_file_name"}


def load(relative):
    return yaml.safe_load((ROLE / relative).read_text())


def test_defaults_and_argument_specs_agree():
    defaults = load("defaults/main.yml")
    specs = load("meta/argument_specs.yml")["argument_specs"]
    options = specs["main"]["options"]
    assert set(options) - SHARED == set(defaults)
    for name, value in defaults.items():
        assert name.startswith("portpool_audit_"), name
        assert options[name].get("default") == value, name
        assert options[name].get("description"), name


def test_validated_variables_are_every_option():
    # tasks/validate.yml checks __portpool_audit_policy_vars against the spec.
    options = load("meta/argument_specs.yml")["argument_specs"]["main"]["options"]
    collected = load("vars/main.yml")["__portpool_audit_policy_vars"]
    assert set(collected) == set(options) - {"portpool_report_dir"}
    for name, template in collected.items():
        assert template.startswith("{{ %s " % name) and template.endswith("}}"), name
    from ansible.module_utils.portpool_audit import POLICY_VARS
    assert set(POLICY_VARS) <= set(collected)


def test_every_default_is_commented():
    lines = (ROLE / "defaults" / "main.yml").read_text().splitlines()
    for index, line in enumerate(lines):
        if line and not line.startswith((" ", "#", "-")) and line != "---":
            assert lines[index - 1].startswith("#"), line


def test_severity_and_waiver_choices_cover_every_rule():
    from ansible.module_utils.portpool_audit import RULE_IDS, SEVERITIES
    options = load("meta/argument_specs.yml")["argument_specs"]["main"]["options"]
    assert tuple(options["portpool_audit_severity"]["options"]) == RULE_IDS
    for spec in options["portpool_audit_severity"]["options"].values():
        assert tuple(spec["choices"]) == SEVERITIES
    rule = options["portpool_audit_waivers"]["options"]["rule"]
    assert rule["choices"] == [*RULE_IDS, "*"]


def test_readme_names_every_variable():
    readme = (ROLE / "README.md").read_text()
    options = load("meta/argument_specs.yml")["argument_specs"]["main"]["options"]
    for name in options:
        assert name in readme, name
