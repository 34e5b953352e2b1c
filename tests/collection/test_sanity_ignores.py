"""scripts/sanity.py --refresh-ignores: which entries a sanity run's output keeps."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
from sanity import needed_ignores

CURRENT = [
    "plugins/modules/a.py validate-modules:invalid-documentation  # no GitHub handle",
    "plugins/module_utils/b.py pylint:disallowed-name",
]
OUTPUT = """\
Running sanity test "pylint"
ERROR: tests/sanity/ignore-2.19.txt:2:1: ansible-test: Ignoring 'disallowed-name' on \
'plugins/module_utils/b.py' is unnecessary
Running sanity test "pep8"
ERROR: plugins/module_utils/c.py:3:1: E303: too many blank lines (3)
Running sanity test "validate-modules"
ERROR: plugins/modules/a.py:0:0: invalid-documentation: DOCUMENTATION.author: Invalid author
Running sanity test "compile" on Python 3.11
ERROR: plugins/modules/d.py:1:1: SyntaxError: invalid syntax
"""


def test_refresh_drops_unneeded_adds_new_and_keeps_reasons():
    assert needed_ignores(OUTPUT, CURRENT) == [
        "plugins/module_utils/c.py pep8:E303",
        "plugins/modules/a.py validate-modules:invalid-documentation  # no GitHub handle",
        "plugins/modules/d.py compile-3.11",
    ]


def test_a_clean_run_keeps_every_entry():
    assert needed_ignores('Running sanity test "pylint"\n', CURRENT) == sorted(CURRENT)
