"""module_utils/README.md says which files run on targets; the imports agree."""

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
UTILS = ROOT / "module_utils"
sys.path.insert(0, str(ROOT / "scripts"))
from collection_rewrite import OUR_IMPORT  # noqa: E402  (one parser for our imports)

THIRD_PARTY = re.compile(r"^\s*(?:from|import) (yaml|jinja2|markupsafe)\b", re.M)


def imports(path):
    return set(OUR_IMPORT.findall(path.read_text()))


def on_targets():
    """The files library/ modules import, directly or through each other."""
    found = set().union(*(imports(path) for path in (ROOT / "library").glob("*.py")))
    pending = list(found)
    while pending:
        for name in imports(UTILS / (pending.pop() + ".py")) - found:
            found.add(name)
            pending.append(name)
    return found


def listed(section):
    text = (UTILS / "README.md").read_text().split("## " + section, 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `(portpool_\w+)\.py` \|", text, re.M))


def test_readme_lists_every_file_once_in_the_right_place():
    targets, controller = listed("Targets"), listed("Controller only")
    assert targets == on_targets()
    assert targets | controller == {path.stem for path in UTILS.glob("portpool_*.py")}
    assert not targets & controller


def test_target_files_import_only_target_files_and_the_standard_library():
    targets = listed("Targets")
    for name in targets:
        text = (UTILS / (name + ".py")).read_text()
        assert imports(UTILS / (name + ".py")) <= targets, name
        assert not THIRD_PARTY.search(text), name


def test_no_shipped_source_changes_the_import_path():
    """The action plugins reach module_utils/ through the collection loader (the link
    below), so no plugin, module or helper appends to an import path."""
    from collection_rewrite import leftover_hacks

    for folder in ("action_plugins", "library", "module_utils"):
        for path in sorted((ROOT / folder).glob("*.py")):
            assert leftover_hacks(path.read_text()) == [], path
    link = ROOT / "collections" / "ansible_collections" / "portpool" / "project" / "plugins"
    assert (link / "module_utils").resolve() == UTILS
    assert (ROOT / "playbooks" / "collections").resolve() == ROOT / "collections"
