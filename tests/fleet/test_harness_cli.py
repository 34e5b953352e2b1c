"""`python -m tests.fleet up --help` documents every HostSpec field, from the dataclass."""

import dataclasses
import subprocess
import sys

from tests.fleet.harness import REPO, HostSpec


def cli(*args):
    return subprocess.run([sys.executable, "-m", "tests.fleet", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=60)


def test_up_help_lists_every_hostspec_field_with_its_help():
    result = cli("up", "--help")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for item in dataclasses.fields(HostSpec):
        assert item.metadata.get("help"), "HostSpec.%s has no help text" % item.name
        row = [line for line in lines if line.split()[:1] == [item.name]]
        assert row, "up --help does not list %s:\n%s" % (item.name, result.stdout)
        assert item.metadata["help"] in row[0]


def test_field_help_follows_the_dataclass():
    @dataclasses.dataclass
    class Extended(HostSpec):
        mtu: int = dataclasses.field(default=1500, metadata={"help": "link MTU"})

    text = Extended.field_help()
    assert "mtu" in text and "link MTU (default 1500)" in text
    assert "name" in text and "(required)" in text


def test_unknown_spec_field_points_to_help(tmp_path):
    spec = tmp_path / "bad.yml"
    spec.write_text("- {name: h1, sysctl: {net.ipv4.tcp_tw_reuse: 1}}\n")
    result = cli("up", "--spec", str(spec))
    assert result.returncode == 1
    assert "sysctl" in result.stderr and "up --help" in result.stderr
