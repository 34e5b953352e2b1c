"""roles/portpool_audit: meta/argument_specs.yml is each variable's one declaration."""

import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
ROLE = ROOT / "roles" / "portpool_audit"
sys.path.insert(0, str(ROOT / "scripts"))

import role_variables  # noqa: E402


def load(relative):
    return yaml.safe_load((ROLE / relative).read_text())


def options():
    return load("meta/argument_specs.yml")["argument_specs"]["main"]["options"]


def test_no_second_declaration():
    # Defaults come from the spec (tasks/validate.yml hands back validated values).
    assert not (ROLE / "defaults").exists()
    for name, spec in options().items():
        assert spec.get("description"), name
    from ansible.module_utils.portpool_audit_policy import default_policy, policy_var_names
    names = policy_var_names()
    assert {names[key] for key in default_policy()} == set(options()) - {"portpool_report_dir"}
    for key, value in default_policy().items():
        assert value == options()[names[key]].get("default"), key


def test_tasks_read_options_only_through_the_validated_values():
    # A task that read portpool_audit_x directly would see it undefined (no defaults).
    prefix = "__portpool_audit_options."
    for path in [*sorted((ROLE / "tasks").glob("*.yml")), ROLE / "vars" / "main.yml"]:
        text = path.read_text()
        for found in re.finditer(r"(?<!\w)portpool_audit_\w+", text):
            if found.group() in options():
                assert text[found.start() - len(prefix):found.start()] == prefix, \
                    (path.name, found.group())


def test_severity_and_waiver_choices_cover_every_rule():
    from ansible.module_utils.portpool_audit import RULE_IDS, SEVERITIES
    specs = options()
    assert tuple(specs["portpool_audit_severity"]["options"]) == RULE_IDS
    for spec in specs["portpool_audit_severity"]["options"].values():
        assert tuple(spec["choices"]) == SEVERITIES
    rule = specs["portpool_audit_waivers"]["options"]["rule"]
    assert rule["choices"] == [*RULE_IDS, "*"]


def test_readme_table_is_generated_from_the_spec():
    readme = (ROLE / "README.md").read_text()
    table = role_variables.variables_table((ROLE / "meta" / "argument_specs.yml").read_text())
    assert role_variables.with_table(readme, table) == readme, \
        "run: python3 scripts/role_variables.py roles/portpool_audit"
    for name in options():
        assert "| `%s` |" % name in table
