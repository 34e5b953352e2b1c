#!/usr/bin/env python3
"""Write (or check) a role README's variables table from its meta/argument_specs.yml.

The spec is each variable's one declaration (type, default, description); the
README's table between the two marker comments is generated from it.

    python3 scripts/role_variables.py roles/portpool_audit           # rewrite the table
    python3 scripts/role_variables.py --check roles/portpool_audit   # exit 1 when stale
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import yaml

BEGIN = "<!-- variables: generated from meta/argument_specs.yml by scripts/role_variables.py -->"
END = "<!-- end of variables -->"


def _cell(text):
    """One table cell: one line, pipes escaped, ansible-doc's C() and I() as Markdown."""
    text = " ".join(str(text).split()).replace("|", "\\|")
    text = re.sub(r"\bC\(([^)]*)\)", r"`\1`", text)
    return re.sub(r"\bI\(([^)]*)\)", r"*\1*", text)


def _default(spec):
    if "default" not in spec:
        return "(unset)"
    return "`%s`" % json.dumps(spec["default"], separators=(", ", ": ")).replace("\"", "")


def _description(spec):
    lines = spec.get("description") or []
    return " ".join(lines) if isinstance(lines, list) else str(lines)


def variables_table(spec_text, entry_point="main"):
    """The Markdown table of an entry point's options: variable, type, default, meaning."""
    options = yaml.safe_load(spec_text)["argument_specs"][entry_point]["options"]
    rows = ["| Variable | Type | Default | Meaning |", "|---|---|---|---|"]
    for name, spec in options.items():
        kind = spec.get("type", "str")
        if spec.get("elements"):
            kind = "%s of %s" % (kind, spec["elements"])
        if spec.get("choices"):
            kind = "one of %s" % ", ".join(map(str, spec["choices"]))
        rows.append("| `%s` | %s | %s | %s |" % (
            name, _cell(kind), _cell(_default(spec)), _cell(_description(spec))))
    return "\n".join(rows) + "\n"


def with_table(readme, table):
    """The README text with the table between the markers replaced."""
    if BEGIN not in readme or END not in readme:
        raise ValueError("the README has no %r ... %r markers" % (BEGIN, END))
    head, rest = readme.split(BEGIN, 1)
    _old, tail = rest.split(END, 1)
    return head + BEGIN + "\n" + table + END + tail


def main(argv):
    check = "--check" in argv
    roles = [Path(arg) for arg in argv if arg != "--check"]
    stale = []
    for role in roles:
        readme_path = role / "README.md"
        table = variables_table((role / "meta" / "argument_specs.yml").read_text())
        readme = readme_path.read_text()
        wanted = with_table(readme, table)
        if wanted != readme:
            stale.append(str(readme_path))
            if not check:
                readme_path.write_text(wanted)
    if check and stale:
        print("stale variables table: %s (run scripts/role_variables.py)" % ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
