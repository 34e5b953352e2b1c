"""roles/portpool_tune: every public variable is commented in defaults and declared in the spec."""

import re
from pathlib import Path

import yaml

ROLE = Path(__file__).resolve().parents[2] / "roles" / "portpool_tune"


def _defaults():
    return yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())


def _specs():
    return yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text())["argument_specs"]


def test_defaults_and_argument_specs_agree():
    defaults = _defaults()
    for entry, spec in _specs().items():
        options = spec["options"]
        assert set(options) == set(defaults), entry
        for name, option in options.items():
            assert option.get("default") == defaults[name], (entry, name)
            assert option.get("description"), (entry, name)


def test_every_entry_point_the_playbooks_use_exists():
    used = set()
    for path in (ROLE / ".." / ".." / "playbooks").glob("*.yml"):
        used.update(re.findall(r"name: portpool_tune\s+tasks_from: (\w+)", path.read_text()))
    assert used == {"validate", "apply", "summary", "rollback"}
    assert used <= set(_specs())
    for entry in _specs():
        assert (ROLE / "tasks" / ("%s.yml" % entry)).is_file()


def test_public_variables_are_prefixed_and_commented():
    text = (ROLE / "defaults" / "main.yml").read_text().splitlines()
    for index, line in enumerate(text):
        match = re.match(r"^([a-z_]+):", line)
        if match:
            assert match.group(1).startswith("portpool_tune_")
            assert text[index - 1].startswith("#"), "%s has no comment" % match.group(1)


def test_readme_documents_every_variable_and_fact():
    readme = (ROLE / "README.md").read_text()
    for name in _defaults():
        assert name in readme
    tasks = "".join(path.read_text() for path in (ROLE / "tasks").glob("*.yml"))
    modules = {path.stem for path in (ROLE.parents[1] / "library").glob("*.py")}
    exported = (set(re.findall(r"^\s+(portpool_tune_[a-z_]+):", tasks, re.M))
                - set(_defaults()) - modules)
    assert exported
    for fact in exported:
        assert fact in readme, fact


def test_batches_follow_inventory_order_whatever_order_validation_finished_in(tmp_path):
    # group_by adds hosts in the order their results arrive (forks race), so the rollout
    # play must not take its order from the group.
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader

    plays = yaml.safe_load((ROLE / ".." / ".." / "playbooks" / "tune.yml").read_text())
    rollout = next(play for play in plays if "serial" in play)
    names = ["r%d" % index for index in range(1, 7)]
    source = tmp_path / "hosts"
    source.write_text("\n".join(names) + "\n")
    inventory = InventoryManager(loader=DataLoader(), sources=[str(source)])
    inventory.add_group("portpool_tune_ready")
    for name in ["r5", "r2", "r6", "r4"]:  # r1 and r3 failed validation
        inventory.add_host(name, group="portpool_tune_ready")
    hosts = inventory.get_hosts(rollout["hosts"], order=rollout.get("order", "inventory"))
    assert [host.name for host in hosts] == ["r2", "r4", "r5", "r6"]
