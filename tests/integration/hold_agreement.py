"""The probe's hold against naive connect() loops: the checks both the host's
suite (test_probe_exact.py) and the kernel matrix (test_probe_methods.py) make.

connect()'s own search may leave out one end of a range whose ends share parity,
and which one depends on where the searches start. So a case names the ports the
kernel may leave out (`may_skip`) and the ones it never hands out (`always`).
"""


def port_set(texts):
    """Compact ranges ("40000-40002", "40010") as a set of ports."""
    ports = set()
    for text in texts:
        low, _, high = text.partition("-")
        ports.update(range(int(low), int(high or low) + 1))
    return ports


def within_kernel(missing, may_skip, always):
    return always <= missing and missing - always <= may_skip and len(missing) <= 1


def assert_hold_agrees(hold, naive_runs, usable, may_skip, always):
    """The probe got every port but the ones the kernel never hands out and named
    the ones it did not get; each naive run stays within what the kernel allows,
    and at least one got the probe's count (every one, where nothing is left to
    chance)."""
    assert hold["expected"] == len(usable)
    assert hold["stopped_by"] == "EADDRNOTAVAIL", hold
    assert hold["lost"] == 0
    missing = port_set(hold["missing_ports"])
    assert hold["established"] == len(usable) - len(missing), hold
    assert missing == always, hold
    assert set(hold["ends_held_directly"]) <= may_skip - always, hold
    for run in naive_runs:
        assert run["reason"] == "EADDRNOTAVAIL", run
        assert set(run["ports"]) <= set(usable), run
        assert within_kernel(set(usable) - set(run["ports"]), may_skip, always), run
    counts = [len(run["ports"]) for run in naive_runs]
    assert hold["established"] in counts, (hold, counts)
    if not may_skip:
        assert set(counts) == {hold["established"]}
