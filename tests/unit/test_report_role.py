"""The role's public variables and the module's documentation agree with their specs."""

from pathlib import Path

import portpool_report
import yaml
from ansible.module_utils import portpool_report_run as report_run

ROLE = Path(__file__).resolve().parents[2] / "roles" / "portpool_report"


def load(relative):
    return yaml.safe_load((ROLE / relative).read_text(encoding="utf-8"))


def test_defaults_and_argument_specs_declare_the_same_variables():
    defaults = load("defaults/main.yml")
    options = load("meta/argument_specs.yml")["argument_specs"]["main"]["options"]
    assert set(defaults) == set(options)
    for name, spec in options.items():
        assert name.startswith("portpool_report_"), name
        assert spec["default"] == defaults[name], name
        assert spec.get("description"), name


def test_every_default_is_commented():
    lines = (ROLE / "defaults" / "main.yml").read_text(encoding="utf-8").splitlines()
    for index, line in enumerate(lines):
        if line.startswith("portpool_report_"):
            assert lines[index - 1].startswith("#"), line


def test_format_choices_match_the_module():
    options = load("meta/argument_specs.yml")["argument_specs"]["main"]["options"]
    spec = report_run.report_argument_spec()
    assert options["portpool_report_formats"]["choices"] == spec["formats"]["choices"]
    assert options["portpool_report_junit_fail_on"]["choices"] == spec["fail_on"]["choices"]


def test_module_documentation_matches_its_argument_spec():
    documented = yaml.safe_load(portpool_report.DOCUMENTATION)["options"]
    spec = report_run.report_argument_spec()
    assert set(documented) == set(spec)
    for name, option in spec.items():
        assert documented[name]["type"] == option["type"], name
        assert documented[name].get("default") == option.get("default"), name
        assert documented[name].get("required", False) == option.get("required", False), name
    yaml.safe_load(portpool_report.EXAMPLES)
    yaml.safe_load(portpool_report.RETURN)


def test_module_rejects_negative_counts():
    params = {"top_destinations": -1, "host_destinations": 0, "chart_hosts": 0, "console_hosts": 0,
              "result_dirs": []}
    problems = report_run.validate(params)
    assert any("top_destinations" in problem for problem in problems)
    assert any("result_dirs" in problem for problem in problems)
