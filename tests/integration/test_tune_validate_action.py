"""portpool_tune_validate: the fleet's tune settings checked on the controller, run the way
the tune role runs it (an action: no host is contacted, not even localhost)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "library"))
import portpool_tune_validate  # noqa: E402  (documentation only)

# Port 1 on loopback refuses at once: a module that tried to reach the host would fail.
INVENTORY = "all:\n  hosts:\n    ghost: {ansible_host: 127.0.0.1, ansible_port: 1}\n"


def run_action(tmp_path, args):
    (tmp_path / "hosts.yml").write_text(INVENTORY)
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"),
               PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))
    done = subprocess.run(
        ["ansible", "ghost", "-o", "-i", str(tmp_path / "hosts.yml"),
         "-m", "portpool_tune_validate", "-a", json.dumps(args)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False)
    line = next((line for line in done.stdout.splitlines() if line.startswith("ghost | ")),
                None)
    assert line and " => " in line, done.stdout + done.stderr
    status, _, text = line.partition(" => ")
    result = json.loads(text)
    result["failed"] = "FAILED" in status
    return result


def test_valid_settings_pass_with_canonical_values(tmp_path):
    result = run_action(tmp_path, {"hosts": {
        "web-01": {"settings": {"ip_local_port_range": "15000  64999", "tcp_tw_reuse": 1}}}})
    assert not result["failed"], result
    assert result["values"]["web-01"] == {"net.ipv4.ip_local_port_range": "15000 64999",
                                          "net.ipv4.tcp_tw_reuse": "1"}
    assert result["changed"] is False and result["errors"] == []


def test_every_problem_of_every_host_is_named(tmp_path):
    result = run_action(tmp_path, {"hosts": {
        "h1": {"settings": {"tcp_tw_recycle": 1},
               "layers": [["portpool_tune_settings", {"tcp_tw_recycle": 1}]]},
        "h2": {"settings": {"ip_local_port_range": "40000 40100"}}}, "min_pool_size": 1024})
    assert result["failed"]
    assert "nothing was changed on any host" in result["msg"]
    assert "h1: portpool_tune_settings.tcp_tw_recycle is refused" in result["msg"]
    assert any(error.startswith("h2: ") for error in result["errors"]), result["errors"]


def test_documentation_matches_the_action():
    doc = yaml.safe_load(portpool_tune_validate.DOCUMENTATION)
    assert set(doc["options"]) == {"hosts", "min_pool_size"}
    assert doc["options"]["min_pool_size"]["default"] == 1024
    yaml.safe_load(portpool_tune_validate.EXAMPLES)
    assert set(yaml.safe_load(portpool_tune_validate.RETURN)) == {"values", "errors"}
