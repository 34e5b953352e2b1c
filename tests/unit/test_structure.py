"""module_utils' imports follow the flow of data, and docs/structure.md draws them."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import structure  # noqa: E402


def test_every_file_has_a_stage_and_no_import_runs_against_the_flow():
    stage_of = structure.stages((ROOT / "module_utils" / "README.md").read_text())
    files = {path.stem for path in (ROOT / "module_utils").glob("portpool_*.py")}
    assert set(stage_of) == files
    assert structure.broken_rules(stage_of, structure.imports(files)) == []


def test_the_drawing_is_current():
    assert structure.main(["--check"]) == 0, "run: python3 scripts/structure.py"


def test_the_rule_catches_a_later_stage_and_the_side_by_side_one():
    stage_of = {"a": "collect", "b": "judge", "c": "tune", "d": "base"}
    graph = {"a": ["b", "c", "d"], "b": ["a", "d"], "c": [], "d": []}
    problems = structure.broken_rules(stage_of, graph)
    assert problems == [
        "a (collect) imports b (judge): a stage may import only the stages before it",
        "a (collect) imports c (tune): a stage may import only the stages before it",
    ]
