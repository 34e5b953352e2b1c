"""The probe's hold and churn verdicts, for tw_reuse 0/1/2 with timestamps on and off.

Each case is a small range of a different shape (tiny, same parity, reserved-heavy)
so the matrix covers the exactness cases without a long hold. The module runs
inside `unshare --net`: that namespace is the host whose settings the lab copies.

Reuse timing differs by kernel: with `tcp_tw_reuse_delay` (6.14 on) a TIME_WAIT
entry is reusable after the delay in milliseconds; without it, once the seconds
clock has ticked past the entry's stamp, so anywhere from at once to 1 s later.
What the test expects follows the sysctl, never the release string.
"""

import os

import pytest

from tests.kernels.module_run import ModuleServer, module_argv

pytestmark = pytest.mark.root

HAS_REUSE_DELAY = os.path.exists("/proc/sys/net/ipv4/tcp_tw_reuse_delay")

# tw_reuse, timestamps, range, reserved, probe args, usable ports, ports the hold measures
CASES = [
    (0, 1, "40000 40009", "40003", {"scope": "full"}, 9, 9),
    (1, 1, "40001 40999", "", {"sample_ports": 24}, 999, 24),
    (2, 1, "40000 40200", "40010-40089,40150", {"sample_ports": 16}, 120, 16),
    (0, 0, "40001 40011", "", {"scope": "full"}, 11, 11),
    (1, 0, "40000 40300", "40100-40199", {"sample_ports": 24}, 201, 24),
    (2, 0, "40000 40020", "40001,40005", {"scope": "full"}, 19, 19),
]
IDS = ["tw%d-ts%d-%s" % (case[0], case[1], case[2].replace(" ", "-")) for case in CASES]


@pytest.fixture(scope="module")
def server():
    with ModuleServer("portpool_probe") as running:
        yield running


def probe_in_namespace(server, case):
    tw_reuse, timestamps, port_range, reserved, args = case[:5]
    sysctls = {"net.ipv4.ip_local_port_range": port_range,
               "net.ipv4.ip_local_reserved_ports": reserved,
               "net.ipv4.tcp_tw_reuse": str(tw_reuse),
               "net.ipv4.tcp_timestamps": str(timestamps)}
    # Small pools, and up to 4 s of churn (it stops once reuse is decided):
    # under emulation on a busy machine the pool must still run out early
    # enough to judge reuse (1 s of failures after the first one).
    result = server.call(dict(args, churn_seconds=4), netns=True, sysctls=sysctls)
    assert not result.get("failed"), result.get("msg")
    return result["probe"]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_hold_is_exact_and_churn_verdicts_match_the_settings(server, case):
    tw_reuse, timestamps, _, _, _, usable, measured = case
    probe = probe_in_namespace(server, case)
    assert probe["expected"] == usable
    hold = probe["hold"]
    assert hold["expected"] == measured
    exact = {measured, measured - 1} if hold["low_end_may_be_skipped"] else {measured}
    assert hold["established"] in exact, hold
    assert hold["stopped_by"] == "EADDRNOTAVAIL"
    assert probe["matches_expected"] is True
    assert probe["per_destination"] is True
    churn = probe["churn"]
    assert churn["tw_reuse"] == tw_reuse and churn["timestamps"] == timestamps
    assert churn["tw_reuse_delay_ms"] == 1000
    for name, reuse in (("remote", tw_reuse == 1 and timestamps == 1),
                        ("loopback", tw_reuse in (1, 2) and timestamps == 1)):
        run = churn[name]
        assert run["reuse_expected"] is reuse, (name, run)
        assert run["reuse_effective"] is reuse, (name, run)
        assert run["failures"] > 0, (name, run)
        # Each run may miss the end port on its own when both ends share a parity.
        if not reuse:
            assert run["before_first_failure"] in exact, (name, run)
            assert run["connections"] == run["before_first_failure"], (name, run)
        elif HAS_REUSE_DELAY:
            # Millisecond delay: nothing is reused before the pool has run out.
            assert run["before_first_failure"] in exact, (name, run)
            assert run["connections"] > run["before_first_failure"], (name, run)
        else:
            # Second granularity: reuse may start before the first failure.
            assert run["before_first_failure"] >= min(exact), (name, run)
            assert run["connections"] > run["before_first_failure"], (name, run)


def test_module_argv_names_the_module_file():
    argv = module_argv("portpool_probe", {"scope": "full"})
    assert argv[2].endswith("library/portpool_probe.py', run_name='__main__')")
    assert '"scope": "full"' in argv[3]
