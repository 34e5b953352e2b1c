"""Pure decisions of portpool_probe: expected counts, windows, workers, rate model."""

import pytest
from ansible.module_utils.portpool_probe_model import (
    LAB_SOMAXCONN,
    build_result,
    check_options,
    combine_stop_reasons,
    expected_count,
    host_destinations,
    host_settings,
    lab_sysctl_writes,
    listener_port_candidates,
    low_end_may_be_skipped,
    make_plan,
    measured_window,
    model_rate,
    plan_workers,
    resolve_sample,
    reuse_expected,
    reuse_verdict,
    reuse_wait_seconds,
    sysctl_equal,
    worker_quotas,
)

HOST = {
    "net.ipv4.ip_local_port_range": "32768\t60999",
    "net.ipv4.ip_local_reserved_ports": "",
    "net.ipv4.ip_unprivileged_port_start": "1024",
    "net.ipv4.tcp_tw_reuse": "2",
    "net.ipv4.tcp_tw_reuse_delay": "1000",
    "net.ipv4.tcp_timestamps": "1",
    "net.ipv4.tcp_max_tw_buckets": "131072",
}

PARAMS = {"mode": "lab", "scope": "quick", "sample_ports": None, "churn_seconds": 1.5,
          "timeout": 120, "max_connections": None, "destination": None}


def settings(**overrides):
    values = dict(HOST)
    values.update(overrides)
    return host_settings(values)


def params(**overrides):
    value = dict(PARAMS)
    value.update(overrides)
    return value


# -- options ---------------------------------------------------------------

def test_default_options_are_valid():
    assert check_options(params()) == []
    assert check_options(params(mode="host", destination="127.0.0.9")) == []


@pytest.mark.parametrize(("overrides", "fragment"), [
    ({"mode": "remote"}, "mode must be one of lab, host"),
    ({"scope": "deep"}, "scope must be one of quick, full"),
    ({"sample_ports": 0}, "sample_ports must be a positive integer"),
    ({"sample_ports": -5}, "sample_ports must be a positive integer"),
    ({"churn_seconds": -1}, "churn_seconds must lie in 0..300"),
    ({"churn_seconds": 301}, "churn_seconds must lie in 0..300"),
    ({"timeout": 0}, "timeout must lie in 1..3600"),
    ({"timeout": -3}, "timeout must lie in 1..3600"),
    ({"max_connections": -1}, "max_connections must be a positive integer"),
    ({"destination": "127.0.0.5"}, "destination applies to mode=host only"),
    ({"mode": "host", "destination": "192.0.2.1"}, "IPv4 loopback address"),
    ({"mode": "host", "destination": "not-an-ip"}, "IPv4 loopback address"),
    ({"mode": "host", "destination": "::1"}, "IPv4 loopback address"),
])
def test_bad_options_are_named(overrides, fragment):
    errors = check_options(params(**overrides))
    assert len(errors) == 1
    assert fragment in errors[0]


def test_every_bad_option_is_reported_at_once():
    errors = check_options(params(mode="x", scope="y", timeout=-1))
    assert len(errors) == 3


# -- host settings and samples ---------------------------------------------

def test_host_settings_parse_and_normalise():
    parsed = settings(**{"net.ipv4.ip_local_reserved_ports": "33000-33009,50000"})
    assert parsed["range"] == (32768, 60999)
    assert parsed["reserved"] == [[33000, 33009], [50000, 50000]]
    assert parsed["tw_reuse"] == 2
    assert parsed["tw_reuse_delay_ms"] == 1000
    assert parsed["raw"]["net.ipv4.ip_local_port_range"] == "32768 60999"


def test_host_settings_without_reuse_delay_sysctl():
    parsed = settings(**{"net.ipv4.tcp_tw_reuse_delay": None})
    assert parsed["tw_reuse_delay_ms"] is None


def test_host_settings_missing_required_key():
    with pytest.raises(ValueError, match="tcp_tw_reuse"):
        settings(**{"net.ipv4.tcp_tw_reuse": None})


def test_resolve_sample():
    assert resolve_sample(None, 28232) == (1000, None)
    assert resolve_sample(None, 10) == (10, None)
    assert resolve_sample(500, 28232) == (500, None)
    assert resolve_sample(28232, 28232) == (28232, None)
    sample, error = resolve_sample(1001, 1000)
    assert sample is None
    assert "larger than the range, which has 1000 usable ports" in error


@pytest.mark.parametrize(("low", "high", "spans", "sample", "window"), [
    (32768, 60999, [], 1000, [32768, 33767]),
    (40001, 40998, [], 10, [40001, 40010]),               # odd start kept
    (40000, 40999, [[40002, 40004]], 10, [40000, 40012]),  # reserved inside: window grows
    (40000, 40999, [[39000, 39999], [45000, 45010]], 10, [40000, 40009]),  # outside
    (40000, 40999, [[40000, 40099]], 5, [40000, 40104]),   # reserved at the start
    (40000, 40009, [[40003, 40003]], 9, [40000, 40009]),   # the whole range
])
def test_measured_window(low, high, spans, sample, window):
    assert measured_window(low, high, spans, sample) == window
    assert expected_count(window[0], window[1], spans) == sample


def test_measured_window_too_small():
    with pytest.raises(ValueError, match="only 9 usable ports"):
        measured_window(40000, 40009, [[40003, 40003]], 10)


def test_expected_count_subtracts_reserved_and_a_listener_inside():
    assert expected_count(32768, 60999, []) == 28232
    assert expected_count(32768, 60999, [[8080, 8080], [33000, 33009]]) == 28222
    assert expected_count(1024, 65535, [], listener_port=9) == 64512
    assert expected_count(1, 65535, [], listener_port=9) == 65534
    assert expected_count(1, 65535, [[9, 9]], listener_port=9) == 65534


def test_listener_port_candidates():
    assert next(listener_port_candidates(32768, 60999)) == 9
    assert next(listener_port_candidates(32768, 60999, min_port=1024)) == 61000
    assert next(listener_port_candidates(1025, 65535, min_port=1024)) == 1024
    assert next(listener_port_candidates(1024, 65535, min_port=1024), None) is None
    assert next(listener_port_candidates(1, 65535), None) is None
    assert next(listener_port_candidates(5, 65535)) == 4


# -- workers ---------------------------------------------------------------

def test_plan_workers_spreads_over_processes_below_the_pool():
    assert plan_workers(1000, 20000) == {"workers": 1, "per_worker": 19936}
    assert plan_workers(28232, 20000) == {"workers": 2, "per_worker": 19936}
    assert plan_workers(1000, 300) == {"workers": 5, "per_worker": 236}
    assert plan_workers(1000, 10)["per_worker"] == 1
    assert plan_workers(28232, 10)["workers"] == 64


def test_worker_quotas():
    assert worker_quotas(2, 19936) == [19936, 19936]
    assert worker_quotas(3, 100, cap=10) == [4, 3, 3]
    assert sum(worker_quotas(5, 236, cap=1000)) == 1000
    assert worker_quotas(1, 50, cap=1000) == [50]


@pytest.mark.parametrize(("reasons", "established", "cap", "stopped"), [
    (["EADDRNOTAVAIL"], 1000, None, "EADDRNOTAVAIL"),
    (["quota", "EADDRNOTAVAIL"], 28232, None, "EADDRNOTAVAIL"),
    (["quota", "quota"], 39872, None, "EMFILE"),
    (["EMFILE"], 17, None, "EMFILE"),
    (["timeout", "quota"], 500, None, "timeout"),
    (["quota"], 100, 100, "cap"),
    (["quota", "quota"], 100, 100, "cap"),
])
def test_combine_stop_reasons(reasons, established, cap, stopped):
    assert combine_stop_reasons(reasons, established, cap) == stopped


# -- TIME_WAIT model -------------------------------------------------------

@pytest.mark.parametrize(("tw_reuse", "timestamps", "loopback", "expected"), [
    (0, 1, False, False), (0, 1, True, False),
    (1, 1, False, True), (1, 1, True, True),
    (2, 1, False, False), (2, 1, True, True),
    (1, 0, False, False), (2, 0, True, False),
])
def test_reuse_expected(tw_reuse, timestamps, loopback, expected):
    assert reuse_expected(tw_reuse, timestamps, loopback) is expected


def test_model_rate():
    assert model_rate(28232, reuse=False) == 470.5   # the thread's "500 per second"
    assert model_rate(28232, reuse=True) == 28232.0
    assert model_rate(1000, reuse=True, delay_ms=250) == 4000.0
    assert model_rate(0, reuse=True) == 0.0


def test_reuse_verdict():
    assert reuse_verdict(None, 0, 1.5, 1.1) is None         # never exhausted
    assert reuse_verdict(0.1, 1000, 1.5, 1.1) is True
    assert reuse_verdict(0.1, 0, 1.5, 1.1) is False
    assert reuse_verdict(0.1, 0, 1.15, 1.1) is None         # too short to tell


def test_reuse_wait_follows_what_the_kernel_shows():
    assert reuse_wait_seconds({"tw_reuse_delay_ms": 1000}) == 1.1
    assert reuse_wait_seconds({"tw_reuse_delay_ms": 250}) == 0.35
    # No sysctl (before 6.14): one second, counted in whole seconds.
    assert reuse_wait_seconds({"tw_reuse_delay_ms": None}) == 2.1


# -- lab sysctls -----------------------------------------------------------

def test_lab_writes_in_host_order_and_copy_every_value():
    writes = lab_sysctl_writes(settings(), [32768, 33767], lab_unprivileged=1024)
    assert writes == [
        ("net.ipv4.ip_unprivileged_port_start", "1024"),
        ("net.ipv4.ip_local_port_range", "32768 33767"),
        ("net.ipv4.ip_local_reserved_ports", ""),
        ("net.ipv4.tcp_tw_reuse", "2"),
        ("net.ipv4.tcp_tw_reuse_delay", "1000"),
        ("net.ipv4.tcp_timestamps", "1"),
        ("net.ipv4.tcp_max_tw_buckets", "131072"),
        ("net.core.somaxconn", str(LAB_SOMAXCONN)),
    ]
    assert all(name.startswith("net.") for name, _ in writes)


def test_lab_writes_range_first_when_unprivileged_start_rises():
    host = settings(**{"net.ipv4.ip_unprivileged_port_start": "40000",
                       "net.ipv4.ip_local_port_range": "40000 40999"})
    names = [name for name, _ in lab_sysctl_writes(host, [40000, 40999], 1024)]
    assert names.index("net.ipv4.ip_local_port_range") < names.index(
        "net.ipv4.ip_unprivileged_port_start")


def test_lab_writes_skip_somaxconn_the_lab_does_not_show():
    # A user namespace's network namespace hides net.core on Debian's 6.1.
    names = [name for name, _ in lab_sysctl_writes(settings(), [32768, 60999], 1024,
                                                   lab_has_somaxconn=False)]
    assert "net.core.somaxconn" not in names
    assert "net.ipv4.ip_local_port_range" in names


def test_lab_writes_skip_missing_delay():
    host = settings(**{"net.ipv4.tcp_tw_reuse_delay": None})
    names = [name for name, _ in lab_sysctl_writes(host, [32768, 60999], 1024)]
    assert "net.ipv4.tcp_tw_reuse_delay" not in names
    names = [name for name, _ in lab_sysctl_writes(settings(), [32768, 60999], 1024,
                                                   lab_has_delay=False)]
    assert "net.ipv4.tcp_tw_reuse_delay" not in names


def test_sysctl_equal():
    assert sysctl_equal("net.ipv4.ip_local_port_range", "1 2", "1\t2")
    assert sysctl_equal("net.ipv4.ip_local_reserved_ports", "50000,40000-40001",
                        "40000-40001,50000")
    assert sysctl_equal("net.ipv4.ip_local_reserved_ports", "", None)
    assert not sysctl_equal("net.ipv4.tcp_tw_reuse", "1", "2")


# -- plans and results -----------------------------------------------------

def test_plan_quick_lab():
    plan, error = make_plan(params(), settings(), is_root=True)
    assert error is None
    assert plan["measured_range"] == [32768, 33767]
    assert plan["expected"] == 28232
    assert plan["target"] == 1000
    assert plan["listener_candidates"][0] == 9


def test_plan_full_and_host():
    plan, _ = make_plan(params(scope="full"), settings(), is_root=True)
    assert plan["measured_range"] == [32768, 60999]
    assert plan["target"] == 28232
    plan, _ = make_plan(params(mode="host"), settings(), is_root=False)
    assert plan["measured_range"] == [32768, 60999]
    assert plan["cap"] == 1000
    assert plan["listener_candidates"][0] == 61000
    assert plan["destinations"]["hold"] == "127.0.0.5"
    assert plan["destinations"]["churn_remote"] is None


def test_plan_rejects_a_sample_larger_than_the_pool_and_all_reserved():
    _, error = make_plan(params(sample_ports=5000),
                         settings(**{"net.ipv4.ip_local_port_range": "40000 40999"}), True)
    assert "sample_ports=5000 is larger than the range" in error
    _, error = make_plan(params(), settings(**{
        "net.ipv4.ip_local_port_range": "40000 40009",
        "net.ipv4.ip_local_reserved_ports": "40000-40009"}), True)
    assert "no usable port" in error


def test_host_destinations_are_distinct():
    for hold in ("127.0.0.4", "127.0.0.5", "127.0.0.6"):
        chosen = host_destinations(hold)
        values = [chosen["hold"], chosen["second"], chosen["churn_loopback"]]
        assert len(set(values)) == 3


def _raw(established, stopped_by, churn=None, missing=None):
    return {
        "listener_port": 9,
        "hold": {"established": established, "stopped_by": stopped_by,
                 "worker_reasons": [stopped_by], "seconds": 0.1234, "workers": 1,
                 "fd_limit_per_process": 20000, "missing": missing},
        "per_destination": True, "bind_zero_blocked": True, "bind_address_no_port_ok": True,
        "churn": churn,
    }


def test_build_result_exhausted_quick():
    plan, _ = make_plan(params(), settings(), is_root=True)
    churn_run = {"destination": "198.18.0.4:9", "ok": 1000, "failures": 400,
                 "before_first_failure": 1000, "first_failure_at": 0.1,
                 "ok_after_failure": 0, "seconds": 1.5, "other_errors": {}, "tw_overflow": 0}
    result = build_result(plan, _raw(1000, "EADDRNOTAVAIL",
                                     {"remote": churn_run, "loopback": dict(churn_run)}))
    assert result["matches_expected"] is True
    assert result["expected"] == 28232
    assert result["hold"]["expected"] == 1000
    assert result["hold"]["measured_range"] == [32768, 33767]
    assert result["hold"]["fd_limit_below_pool"] is True
    assert result["per_destination"] is True
    assert result["churn"]["remote"]["reuse_expected"] is False
    assert result["churn"]["remote"]["reuse_effective"] is False
    assert result["churn"]["loopback"]["reuse_expected"] is True
    assert result["churn"]["model_rate_per_s"] == 470.5
    assert result["churn"]["remote"]["model_rate_per_s"] == 16.7
    assert "measured 32768-33767 (1000 usable ports)" in result["summary"]


def test_build_result_not_exhausted_hides_the_checks():
    plan, _ = make_plan(params(max_connections=10), settings(), is_root=True)
    result = build_result(plan, _raw(10, "cap"))
    assert result["matches_expected"] is False
    assert result["hold"]["target"] == 10
    assert result["per_destination"] is None
    assert result["bind_zero_blocked"] is None
    assert result["churn"] is None


def test_low_end_may_be_skipped_only_for_same_parity_ends_with_a_free_low_end():
    assert low_end_may_be_skipped(40000, 40998, [])          # 999 ports, both even
    assert low_end_may_be_skipped(40001, 40999, [])          # both odd
    assert not low_end_may_be_skipped(40000, 40999, [])      # 1000 ports
    assert not low_end_may_be_skipped(40000, 40998, [[40000, 40000]])  # low end reserved


def test_a_same_parity_range_matches_one_short_but_not_two():
    plan, _ = make_plan(params(), settings(**{"net.ipv4.ip_local_port_range": "40000 40998"}),
                        is_root=True)
    assert plan["measured_range"] == [40000, 40998]
    full = build_result(plan, _raw(999, "EADDRNOTAVAIL"))
    assert full["matches_expected"] is True and full["hold"]["low_end_may_be_skipped"]
    assert "never handed out" not in full["summary"]
    one_short = build_result(plan, _raw(998, "EADDRNOTAVAIL"))
    assert one_short["matches_expected"] is True
    assert "one port was never handed out" in one_short["summary"]
    assert build_result(plan, _raw(997, "EADDRNOTAVAIL"))["matches_expected"] is False


@pytest.mark.parametrize(("established", "missing", "matches"), [
    (999, [], True),
    (998, [40000], True),            # either end: where the last searches started
    (998, [40998], True),
    (998, [40500], False),           # an inside port is always within reach
    (997, [40000, 40998], False),    # at most one end is out of reach
    (997, [40000], False),           # the count must agree with the ports named
])
def test_missing_ports_decide_the_match_exactly(established, missing, matches):
    plan, _ = make_plan(params(), settings(**{"net.ipv4.ip_local_port_range": "40000 40998"}),
                        is_root=True)
    result = build_result(plan, _raw(established, "EADDRNOTAVAIL", missing=missing))
    assert result["matches_expected"] is matches
    assert result["hold"]["missing_ports"] == [str(port) for port in missing]
    if missing and matches:
        assert "never handed out: %d" % missing[0] in result["summary"]


def test_a_range_of_different_parity_must_match_exactly():
    plan, _ = make_plan(params(), settings(**{"net.ipv4.ip_local_port_range": "40000 40999"}),
                        is_root=True)
    result = build_result(plan, _raw(999, "EADDRNOTAVAIL"))
    assert result["hold"]["low_end_may_be_skipped"] is False
    assert result["matches_expected"] is False
