"""README's getting-started and test-fleet instructions: venv tools, no fixed slot, and they run.

The fleet block is run as written (as root, without the `sudo`), next to a live
fleet of this test's own that must survive its `down`.
"""

import re
import subprocess

from tests.fleet.harness import FLEET_RUN, REPO, HostSpec, resolve_slot

README = (REPO / "README.md").read_text()


def section(title):
    start = README.index("\n%s\n" % title)
    end = README.find("\n#", start + len(title) + 2)
    return README[start:end if end != -1 else len(README)]


def sh_blocks(text):
    return re.findall(r"```sh\n(.*?)```", text, re.S)


def commands(block):
    """Each command line's program, past `VAR=$(`, `sudo` and the comment."""
    found = []
    for raw in block.splitlines():
        text = raw.split("#", 1)[0].strip()
        if not text:
            continue
        text = re.sub(r"^sudo\s+", "", re.sub(r"^\w+=\$\(", "", text))
        found.append(text.split()[0])
    return found


def test_getting_started_says_to_use_the_venv():
    intro = README[:README.index("\n## Why")]
    assert ". .venv/bin/activate" in intro
    assert ".venv/bin/ansible-playbook" in intro
    assert "sudo" in intro and "PATH" in intro


def test_fleet_section_uses_venv_tools_and_no_fixed_slot():
    text = section("### The SSH test fleet")
    assert not re.search(r"slot-\d", text), "a fixed slot in the README fleet section"
    blocks = sh_blocks(text)
    assert blocks
    for block in blocks:
        for program in commands(block):
            assert program.startswith(".venv/bin/"), "%s is not the venv's tool" % program


def test_fleet_block_runs_as_written_and_downs_only_its_fleet(make_fleet):
    other = make_fleet([HostSpec("bystander")])
    block = sh_blocks(section("### The SSH test fleet"))[0]
    lines = re.sub(r"(^|\$\()sudo ", r"\1", block, flags=re.M).splitlines()
    # Say which fleet `up` made at once, so the test can remove it if a later line fails.
    at = next(index for index, line in enumerate(lines) if "INV=$(" in line)
    lines.insert(at + 1, 'echo "INVENTORY=$INV"')
    script = "set -eu\n" + "\n".join(lines) + "\n"
    result = subprocess.run(["bash", "-c", script], cwd=REPO, capture_output=True, text=True,
                            timeout=240)
    output = result.stdout + result.stderr
    made = re.search(r"^INVENTORY=(.*)$", result.stdout, re.M)
    try:
        assert result.returncode == 0, output
        assert "SUCCESS" in result.stdout and "UNREACHABLE" not in result.stdout
        assert "slot %d:" % other.slot in result.stdout   # status lists every fleet
        assert "removed 1 fleet(s)" in result.stdout
        inventory = made.group(1)
        assert not (FLEET_RUN / ("slot-%d" % resolve_slot(inventory))).exists()
        assert other.dir.exists()
        assert other.ansible("all", "-m", "ansible.builtin.ping").returncode == 0
    finally:
        if made and (FLEET_RUN / ("slot-%d" % resolve_slot(made.group(1)))).exists():
            subprocess.run([".venv/bin/python", "-m", "tests.fleet", "down", made.group(1)],
                           cwd=REPO, capture_output=True, timeout=120)
