"""The generated Galaxy collection: built from the playbook project, installed from
its tarball into an empty collections path, and used by FQCN from a playbook
outside the repository, it audits localhost the way audit.yml does."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT / "scripts"))

import build_collection  # noqa: E402
from collection_rewrite import RewriteError, leftover_hacks  # noqa: E402

# Both runs use the interpreter running the tests, as inventories/local does.
INVENTORY = """\
---
all:
  hosts:
    localhost:
      ansible_connection: local
      ansible_python_interpreter: "{{ ansible_playbook_python }}"
"""
FQCN_PLAYBOOK = """\
---
- name: Audit with the installed collection, by FQCN only
  ansible.builtin.import_playbook: portpool.portpool.audit
"""


def tree_digest(root):
    return {str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(root.rglob("*")) if path.is_file()}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    base = tmp_path_factory.mktemp("collection")
    dest = base / "src" / "ansible_collections" / "portpool" / "portpool"
    build_collection.generate(dest)
    tarball = build_collection.build_tarball(dest, base / "dist")
    return dest, tarball


@pytest.fixture(scope="module")
def installed(built, tmp_path_factory):
    """The tarball installed into an empty collections path."""
    path = tmp_path_factory.mktemp("collections")
    subprocess.run([str(BIN / "ansible-galaxy"), "collection", "install", "-p", str(path),
                    str(built[1])], check=True, capture_output=True, text=True)
    return path


def run_playbook(playbook, cwd, report_dir, collections):
    """Run one playbook; the inventory and reports go next to report_dir, never into cwd.

    Returns the fleet.json document and the console output."""
    # No ansible.cfg of the repository may help: cwd is outside it, ANSIBLE_CONFIG unset.
    env = {key: value for key, value in os.environ.items() if not key.startswith("ANSIBLE_")}
    env.update(ANSIBLE_COLLECTIONS_PATH=str(collections), ANSIBLE_NOCOLOR="1",
               PATH="%s:%s" % (BIN, env.get("PATH", "")))
    report_dir.parent.mkdir(parents=True, exist_ok=True)
    inventory = report_dir.parent / "hosts.yml"
    inventory.write_text(INVENTORY)
    # Other network namespaces on this machine (other tests' hosts) come and go
    # between the two runs: leave them out of a comparison of two audits.
    done = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(inventory), str(playbook),
                           "-e", "portpool_report_dir=%s" % report_dir,
                           "-e", "portpool_audit_namespaces=false"],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads((report_dir / "fleet.json").read_text()), done.stdout + done.stderr


def comparable(fleet):
    """What must match between two audits of one host: no times, run ids or paths."""
    return {
        "totals": fleet["totals"],
        "hosts": sorted(
            (host["host"], host["status"], host.get("worst_severity"),
             sorted((f.get("id"), f.get("severity")) for f in host.get("findings", [])))
            for host in fleet["hosts"]),
    }


def test_the_generated_tree_and_tarball_are_the_same_every_time(built, tmp_path):
    again = tmp_path / "ansible_collections" / "portpool" / "portpool"
    build_collection.generate(again)
    assert tree_digest(again) == tree_digest(built[0])
    tarball = build_collection.build_tarball(again, tmp_path / "dist")
    assert tarball.read_bytes() == built[1].read_bytes()


def test_no_module_utils_path_hack_remains(built):
    sources = sorted((built[0] / "plugins").rglob("*.py"))
    assert sources
    for source in sources:
        text = source.read_text()
        assert leftover_hacks(text) == [], source
        assert "from ansible.module_utils.portpool" not in text, source


def test_the_manifest_carries_the_project_version(built):
    import yaml
    from ansible.module_utils.portpool_version import VERSION

    galaxy = yaml.safe_load((built[0] / "galaxy.yml").read_text())
    runtime = yaml.safe_load((built[0] / "meta" / "runtime.yml").read_text())
    assert galaxy["version"] == VERSION
    assert built[1].name == "portpool-portpool-%s.tar.gz" % VERSION
    assert runtime["requires_ansible"].startswith(">=")


def test_fqcn_playbook_outside_the_repo_audits_like_audit_yml(installed, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    playbook = outside / "site.yml"
    playbook.write_text(FQCN_PLAYBOOK)
    from_collection, console = run_playbook(playbook, outside, outside / "reports" / "run",
                                            installed)
    # Both -e variables are the roles' own: the collection finds its roles' specs.
    assert "is not a portpool variable" not in console, console[-3000:]

    project = tmp_path / "project"
    project.mkdir()
    empty = tmp_path / "no-collections"
    empty.mkdir()
    from_project, _console = run_playbook(ROOT / "audit.yml", ROOT, project / "run", empty)

    assert comparable(from_collection) == comparable(from_project)
    assert [host["host"] for host in from_collection["hosts"]] == ["localhost"]
    assert from_collection["hosts"][0]["status"] == "ok", from_collection["hosts"][0]


def test_a_source_that_changes_the_import_path_is_refused():
    from collection_rewrite import rewrite_python

    source = ("import sys\n\n\ndef setup():\n    sys.path.insert(0, 'x')\n\n\n"
              "import ansible.module_utils\nansible.module_utils.__path__.append('y')\n")
    with pytest.raises(RewriteError, match=r"line 5 changes the import path.*line 9"):
        rewrite_python(source, {"portpool_sysctl"}, "example.py")


def test_each_way_of_naming_our_module_utils_gets_the_collection_package():
    from collection_rewrite import rewrite_python

    utils = {"portpool_sysctl": "P.module_utils", "portpool_report": "P.plugin_utils"}
    source = (
        "from ansible.module_utils.basic import AnsibleModule\n"
        "from ansible.module_utils.portpool_sysctl import read_sysctl\n"
        "from ansible_collections.portpool.project.plugins.module_utils.portpool_report "
        "import build\n"
        "from .portpool_sysctl import (\n    parse_port_range,\n)\n")
    assert rewrite_python(source, utils, "example.py") == (
        "from ansible.module_utils.basic import AnsibleModule\n"
        "from P.module_utils.portpool_sysctl import read_sysctl\n"
        "from P.plugin_utils.portpool_report import build\n"
        "from P.module_utils.portpool_sysctl import (\n    parse_port_range,\n)\n")


def test_a_relative_import_of_something_not_ours_is_refused():
    from collection_rewrite import rewrite_python

    with pytest.raises(RewriteError, match="relatively"):
        rewrite_python("from .helpers import x\n", {"portpool_sysctl"}, "example.py")


def test_yaml_rewrite_refuses_a_shape_it_cannot_check():
    from collection_rewrite import rewrite_yaml

    flow = "- {name: Gather, portpool_facts: {processes: true}}\n"
    with pytest.raises(RewriteError, match="FQCN rewrite"):
        rewrite_yaml(flow, {"portpool_facts"}, set(), set(), "tasks.yml")


def test_module_docs_name_our_modules_by_fqcn():
    from collection_rewrite import rewrite_module_docs

    source = ('DOCUMENTATION = r"""\nseealso:\n  - module: portpool_probe\n'
              '  - module: ansible.posix.sysctl\ndescription: M(portpool_probe) and '
              'RV(portpool_probe#module:probe), not M(portpool_probes)\n"""\n'
              'EXAMPLES = r"""\n- name: Gather\n  portpool_probe:\n    scope: lab\n"""\n'
              'portpool_probe = 1\n')
    out = rewrite_module_docs(source, {"portpool_probe"})
    assert "  - module: portpool.portpool.portpool_probe\n" in out
    assert "  - module: ansible.posix.sysctl\n" in out
    assert "M(portpool.portpool.portpool_probe) and" in out
    assert "RV(portpool.portpool.portpool_probe#module:probe)" in out
    assert "M(portpool_probes)" in out
    assert "  portpool.portpool.portpool_probe:\n    scope: lab" in out
    assert out.endswith("portpool_probe = 1\n")  # code outside the docs is left alone


def test_modules_ship_only_target_code(built):
    """What a module imports stays in plugins/module_utils (it travels to the hosts);
    controller-only helpers (PyYAML, Jinja2) live in plugins/plugin_utils."""
    plugins = built[0] / "plugins"
    for module in (plugins / "modules").glob("*.py"):
        assert ".plugins.plugin_utils." not in module.read_text(), module
    for util in (plugins / "module_utils").glob("*.py"):
        text = util.read_text()
        assert ".plugins.plugin_utils." not in text, util
        assert "import yaml" not in text and "import jinja2" not in text, util
    assert list((plugins / "plugin_utils").glob("*.py"))
