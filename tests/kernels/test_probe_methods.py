"""The probe's hold is exact with every method the running kernel supports,
as root and as `nobody`.

Small ranges of the shapes where a hold can go wrong (tiny, same parity,
reserved-heavy), each held with every combination of sockets (repair, real
connections) and partition (IP_LOCAL_PORT_RANGE per socket, the lab's own range),
forced with the PORTPOOL_PROBE_REFUSE hook, then compared with a naive connect()
loop in the same namespace. Which methods the kernel supports is asked of the
kernel (is the socket option accepted?), never read from its version: where it
refuses one, the probe must fall back and say so.

All cases run in one Python process (tests/kernels/module_batch.py) that forks
per case: under emulation that saves about 10 s of imports per case.
"""

import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import ansible
import pytest

from tests.integration.hold_agreement import assert_hold_agrees
from tests.kernels.module_run import REPO

pytestmark = pytest.mark.root

BATCH = Path(__file__).with_name("module_batch.py")
SYSTEM_PYTHON = "/usr/bin/python3"
NAIVE_PORT = 9
# connect()'s search is not deterministic on a same-parity range: at least one
# of these naive runs must get what the probe got (test_probe_exact.py).
NAIVE_RUNS = 8
TCP_REPAIR = 19
IP_LOCAL_PORT_RANGE = 51

# range, reserved, usable ports, ports the kernel may leave out, ports it always leaves out
CASES = {
    "tiny": ("50000 50002", "", [50000, 50001, 50002], {50000, 50002}, {50002}),
    "same-parity": ("50000 50004", "", list(range(50000, 50005)), {50000, 50004}, set()),
    "reserved-heavy": ("40001 40999", "40001-40100,40102-40997",
                       [40101, 40998, 40999], {40999}, set()),
}
# method: (what PORTPOOL_PROBE_REFUSE names, the sockets and partition asked for)
METHODS = {
    "repair-socket": ("", ("repair", "socket")),
    "connect-socket": ("repair", ("connect", "socket")),
    "repair-namespace": ("port_range_option", ("repair", "namespace")),
    "connect-namespace": ("repair,port_range_option", ("connect", "namespace")),
}


def _accepted(level, option, value):
    with socket.socket() as sock:
        try:
            sock.setsockopt(level, option, value)
        except OSError:
            return False
    return True


def kernel_supports():
    """What this kernel accepts (as root), asked of it."""
    return {"repair": _accepted(socket.SOL_TCP, TCP_REPAIR, 1),
            "port_range_option": _accepted(socket.IPPROTO_IP, IP_LOCAL_PORT_RANGE,
                                           ((1025 << 16) | 1024).to_bytes(4, sys.byteorder))}


def expected_method(asked, supports):
    sockets, partition = asked
    if sockets == "repair" and not supports["repair"]:
        sockets = "connect"
    if partition == "socket" and not supports["port_range_option"]:
        partition = "namespace"
    return {"sockets": sockets, "partition": partition}


def run_batch(cases, prefix=(), python=sys.executable, env=None):
    done = subprocess.run([*prefix, python, str(BATCH), "portpool_probe"],
                          input="".join(json.dumps(case) + "\n" for case in cases),
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
                          check=False)
    results = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(results) == len(cases), "exit %d\n%s%s" % (done.returncode, done.stdout,
                                                         done.stderr[-3000:])
    return results


@pytest.fixture(scope="module")
def root_results():
    cases = []
    for case in sorted(CASES):
        port_range, reserved = CASES[case][:2]
        for method in sorted(METHODS):
            cases.append({"args": {"scope": "full", "churn_seconds": 0}, "netns": True,
                          "env": {"PORTPOOL_PROBE_REFUSE": METHODS[method][0]},
                          "sysctls": {"net.ipv4.ip_local_port_range": port_range,
                                      "net.ipv4.ip_local_reserved_ports": reserved},
                          "naive_port": NAIVE_PORT, "naive_runs": NAIVE_RUNS})
    results = run_batch(cases)
    names = [(case, method) for case in sorted(CASES) for method in sorted(METHODS)]
    return dict(zip(names, results))


@pytest.mark.parametrize("method", sorted(METHODS))
@pytest.mark.parametrize("case", sorted(CASES))
def test_hold_is_exact_with_each_method(root_results, case, method):
    _, _, usable, may_skip, always = CASES[case]
    outcome = root_results[(case, method)]
    result = outcome["result"]
    assert result, outcome["output"]
    assert not result.get("failed"), result.get("msg")
    probe = result["probe"]
    want = expected_method(METHODS[method][1], kernel_supports())
    assert {key: probe["method"][key] for key in want} == want, probe["method"]
    assert probe["matches_expected"] is True
    assert_hold_agrees(probe["hold"], outcome["naive"], usable, may_skip, always)


# The unprivileged path: `nobody` runs the module with the system Python (as an
# AnsiballZ payload would, ansible's module_utils on its path) in a network
# namespace that plays the host; the probe's lab is a user namespace of its own.
NOBODY_RANGE = "40000 40999"
NOBODY_CASES = {
    "repair-socket": {"args": {"scope": "full", "churn_seconds": 0}},
    "repair-namespace": {"args": {"scope": "full", "churn_seconds": 0},
                         "env": {"PORTPOOL_PROBE_REFUSE": "port_range_option"}},
    "connect-low-nofile": {"args": {"scope": "full", "churn_seconds": 0},
                           "env": {"PORTPOOL_PROBE_REFUSE": "repair"}, "nofile": 300},
    "userns-refused": {"args": {"churn_seconds": 0},
                       "env": {"PORTPOOL_PROBE_REFUSE": "userns"}},
}


@pytest.fixture(scope="module")
def nobody_results():
    if not (shutil.which("setpriv") and os.path.exists(SYSTEM_PYTHON)):
        pytest.fail("needs setpriv and %s" % SYSTEM_PYTHON)
    # Only ansible's own package on the path, readable by nobody (the venv's
    # interpreter may live under a private home).
    path = Path(tempfile.mkdtemp(prefix="ppbatch-path-"))
    try:
        path.chmod(0o755)
        (path / "ansible").symlink_to(Path(ansible.__file__).parent)
        script = ("ip link set lo up; sysctl -qw net.ipv4.ip_local_port_range=%s; exec setpriv"
                  " --reuid=nobody --regid=nogroup --clear-groups env PYTHONPATH=%s"
                  " PYTHONDONTWRITEBYTECODE=1 \"$@\""
                  % (shlex.quote(NOBODY_RANGE), shlex.quote(str(path))))
        names = sorted(NOBODY_CASES)
        results = run_batch([NOBODY_CASES[name] for name in names],
                            prefix=["unshare", "--net", "sh", "-c", script, "sh"],
                            python=SYSTEM_PYTHON, env={"PATH": os.environ["PATH"]})
    finally:
        shutil.rmtree(path, ignore_errors=True)
    return dict(zip(names, results))


def _nobody_probe(nobody_results, name):
    outcome = nobody_results[name]
    result = outcome["result"]
    assert result, outcome["output"]
    assert not result.get("failed"), result.get("msg")
    probe = result["probe"]
    assert probe["method"]["lab"] == "user namespace"
    assert probe["hold"]["stopped_by"] == "EADDRNOTAVAIL"
    assert probe["hold"]["established"] == 1000
    assert probe["hold"]["missing_ports"] == []
    assert probe["matches_expected"] is True
    return probe


@pytest.mark.parametrize("name", ["repair-socket", "repair-namespace"])
def test_full_hold_as_nobody_in_a_user_namespace(nobody_results, name):
    probe = _nobody_probe(nobody_results, name)
    want = expected_method(METHODS[name][1], kernel_supports())
    assert {key: probe["method"][key] for key in want} == want, probe["method"]


def test_real_connections_as_nobody_spread_over_workers(nobody_results):
    probe = _nobody_probe(nobody_results, "connect-low-nofile")
    assert probe["method"]["sockets"] == "connect"
    assert "TCP_REPAIR refused" in probe["summary"]
    assert probe["hold"]["fd_limit_per_process"] == 300
    assert probe["hold"]["workers"] >= 4


def test_user_namespaces_refused_says_so_in_one_line(nobody_results):
    result = nobody_results["userns-refused"]["result"]
    assert result["failed"] is True
    assert "unprivileged user namespaces are refused here" in result["msg"]
    assert "\n" not in result["msg"]
