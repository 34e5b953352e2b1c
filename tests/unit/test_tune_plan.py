"""Pure decisions of portpool_tune: validation, planning, file, diff, boot overrides."""

import pytest
from ansible.module_utils import portpool_tune_plan as plan_module
from ansible.module_utils.portpool_sockdiag import listening_ports_proc
from ansible.module_utils.portpool_tune_plan import (
    FILE_HEADER,
    boot_files_with_ours,
    compute_diff,
    facts_mismatches,
    find_overrides,
    plan,
    probe_mismatches,
    render_file,
    validate_fleet,
    validate_settings,
)

RANGE = "net.ipv4.ip_local_port_range"
RESERVED = "net.ipv4.ip_local_reserved_ports"
REUSE = "net.ipv4.tcp_tw_reuse"
DELAY = "net.ipv4.tcp_tw_reuse_delay"


def _errors(settings, **kwargs):
    return validate_settings(settings, **kwargs)[1]


# ---- validation: every bad input of the issue, each naming the variable ------------

@pytest.mark.parametrize(
    "settings, words",
    [
        ({"ip_local_port_range": "50000 40000"}, ["ip_local_port_range", "below the high end"]),
        ({"ip_local_port_range": "40000 40000"}, ["ip_local_port_range", "below the high end"]),
        ({"ip_local_port_range": "4OOOO 50000"}, ["ip_local_port_range low end", "integer"]),
        ({"ip_local_port_range": "40000 50000.5"}, ["ip_local_port_range high end", "integer"]),
        ({"ip_local_port_range": "40000 70000"}, ["ip_local_port_range high end", "65535"]),
        ({"ip_local_port_range": ""}, ["ip_local_port_range", "empty"]),
        ({"ip_local_port_range": "   "}, ["ip_local_port_range", "empty"]),
        ({"ip_local_port_range": "40000"}, ["ip_local_port_range", "two integers"]),
        ({"ip_local_port_range": "1 2 3"}, ["ip_local_port_range", "two integers"]),
        ({"ip_local_port_range": "40000 50000; rm -rf /"}, ["ip_local_port_range"]),
        ({"ip_local_port_range": "; rm -rf /"}, ["ip_local_port_range"]),
        ({"ip_local_port_range": "0 50000"}, ["ip_local_port_range low end", "at least 1"]),
        ({"ip_local_port_range": 40000}, ["ip_local_port_range"]),
        ({"ip_local_port_range": [40000, True]}, ["ip_local_port_range high end", "boolean"]),
        ({"ip_local_reserved_ports": "8080; rm -rf /"}, ["ip_local_reserved_ports"]),
        ({"ip_local_reserved_ports": "9010-9000"}, ["ip_local_reserved_ports", "backwards"]),
        ({"ip_local_reserved_ports": "8080,,9000"}, ["ip_local_reserved_ports", "empty entry"]),
        ({"ip_local_reserved_ports": "70000"}, ["ip_local_reserved_ports", "outside"]),
        ({"ip_local_reserved_ports": '"8080"'}, ["ip_local_reserved_ports", "only ports"]),
        ({"tcp_tw_reuse": 3}, ["tcp_tw_reuse", "between 0 and 2", "3"]),
        ({"tcp_tw_reuse": "1; rm -rf /"}, ["tcp_tw_reuse", "integer"]),
        ({"tcp_tw_reuse": True}, ["tcp_tw_reuse", "boolean"]),
        ({"tcp_tw_reuse": 1.0}, ["tcp_tw_reuse", "integer"]),
        ({"tcp_tw_reuse": "-1"}, ["tcp_tw_reuse", "between 0 and 2"]),
        ({"tcp_tw_reuse_delay": 0}, ["tcp_tw_reuse_delay", "between 1 and 60000"]),
        ({"tcp_timestamps": 3}, ["tcp_timestamps", "between 0 and 2"]),
        ({"tcp_max_tw_buckets": "lots"}, ["tcp_max_tw_buckets", "integer"]),
        ({"tcp_tw_recycle": 1}, ["tcp_tw_recycle", "refused", "4.12", "NAT"]),
        ({"tcp_tw_recycle": 0}, ["tcp_tw_recycle", "refused"]),
        ({"tcp_fin_timeout": 10}, ["tcp_fin_timeout", "refused", "TIME_WAIT"]),
        ({"somaxconn": 10}, ["somaxconn", "not a setting"]),
    ],
)
def test_bad_values_are_refused_naming_the_variable(settings, words):
    errors = _errors(settings)
    assert len(errors) == 1, errors
    assert errors[0].startswith("portpool_tune_settings.")
    for word in words:
        assert word in errors[0]


def test_the_message_names_the_layer_that_set_the_bad_value():
    layers = [["portpool_tune_default_settings", {"tcp_tw_reuse": 1}],
              ["portpool_tune_settings", {"tcp_tw_reuse": 2}],
              ["portpool_tune_host_settings", {"tcp_tw_reuse": 3}]]
    errors = _errors({"tcp_tw_reuse": 3}, layers=layers)
    assert errors[0].startswith("portpool_tune_host_settings.tcp_tw_reuse")


def test_settings_must_be_a_dict():
    assert "must be a dict" in _errors("ip_local_port_range=1 2")[0]


def test_good_values_are_canonical_text():
    values, errors, warnings = validate_settings({
        "ip_local_port_range": " 15000\t64999 ",
        "ip_local_reserved_ports": [9000, "8080", "9001-9005"],
        "tcp_tw_reuse": "1",
        "tcp_tw_reuse_delay": 500,
        "tcp_timestamps": 1,
        "tcp_max_tw_buckets": 262144,
        "tcp_tw_recycle": None,
    })
    assert errors == []
    assert warnings == []
    assert values == {
        RANGE: "15000 64999",
        RESERVED: "8080,9000-9005",
        REUSE: "1",
        DELAY: "500",
        "net.ipv4.tcp_timestamps": "1",
        "net.ipv4.tcp_max_tw_buckets": "262144",
    }


def test_unset_keys_are_not_managed():
    values, errors, _ = validate_settings({"ip_local_port_range": None, "tcp_tw_reuse": 0})
    assert errors == []
    assert values == {REUSE: "0"}


def test_same_parity_is_a_warning_not_an_error():
    values, errors, warnings = validate_settings({"ip_local_port_range": "40000 50000"})
    assert errors == [] and values[RANGE] == "40000 50000"
    assert "parity" in warnings[0] and "even" in warnings[0]


def test_reuse_without_timestamps_is_warned():
    _, errors, warnings = validate_settings({"tcp_tw_reuse": 1, "tcp_timestamps": 0})
    assert errors == []
    assert any("tcp_timestamps" in warning for warning in warnings)


def test_min_pool_size_on_the_controller():
    errors = _errors({"ip_local_port_range": "40000 40099"}, min_pool_size=1024)
    assert "100 ports" in errors[0] and "portpool_tune_min_pool_size" in errors[0]


def test_validate_fleet_prefixes_hosts_and_collects_every_error():
    by_host, errors, _ = validate_fleet({
        "h1": {"settings": {"tcp_tw_reuse": 1}},
        "h2": {"settings": {"tcp_tw_reuse": 3, "ip_local_port_range": ""}},
    })
    assert by_host["h1"] == {REUSE: "1"}
    assert len(errors) == 2
    assert all(error.startswith("h2: portpool_tune_settings.") for error in errors)


# ---- planning ------------------------------------------------------------------------

CURRENT = {RANGE: "32768 60999", RESERVED: "", REUSE: "2", DELAY: "1000"}


def test_plan_lists_only_changed_keys():
    decided = plan({RANGE: "32768 60999", REUSE: "1"}, CURRENT)
    assert decided["target"] == {RANGE: "32768 60999", REUSE: "1"}
    assert decided["changes"] == [REUSE]
    assert decided["input_errors"] == decided["host_errors"] == []


def test_plan_compares_whitespace_normalised():
    decided = plan({RANGE: "32768 60999"}, dict(CURRENT, **{RANGE: "32768\t60999"}))
    assert decided["changes"] == []


def test_low_below_unprivileged_start_is_an_input_error():
    decided = plan({RANGE: "1000 60999"}, CURRENT, unprivileged_start=1024)
    assert "ip_unprivileged_port_start 1024" in decided["input_errors"][0]
    assert "portpool_tune_settings.ip_local_port_range" in decided["input_errors"][0]


def test_a_missing_key_is_a_host_error_unless_optional():
    current = dict(CURRENT, **{DELAY: None})
    strict = plan({DELAY: "500"}, current)
    assert "tcp_tw_reuse_delay" in strict["host_errors"][0]
    lenient = plan({DELAY: "500"}, current, optional=["tcp_tw_reuse_delay"])
    assert lenient["host_errors"] == [] and lenient["skipped"] == [DELAY]
    assert lenient["target"] == {}


def test_listeners_inside_the_new_range_are_reserved_and_merged():
    current = dict(CURRENT, **{RESERVED: "8080,45000-45001"})
    decided = plan({RANGE: "40000 49999"}, current, listeners=[22, 8080, 44999, 45002, 47000])
    assert decided["target"][RESERVED] == "8080,44999-45002,47000"
    assert decided["reserved_added"] == [44999, 45002, 47000]
    assert RESERVED in decided["changes"]


def test_listeners_merge_with_the_desired_reservation():
    decided = plan({RANGE: "40000 49999", RESERVED: "9000"}, CURRENT, listeners=[41000])
    assert decided["target"][RESERVED] == "9000,41000"


def test_second_run_keeps_the_reservation_managed():
    current = dict(CURRENT, **{RANGE: "40000 49999", RESERVED: "45000"})
    decided = plan({RANGE: "40000 49999"}, current, listeners=[45000])
    assert decided["target"][RESERVED] == "45000"
    assert decided["reserved_added"] == [] and decided["changes"] == []


def test_protection_can_be_turned_off():
    decided = plan({RANGE: "40000 49999"}, CURRENT, listeners=[45000], protect=False)
    assert RESERVED not in decided["target"]


def test_reserved_ports_count_against_the_minimum_pool():
    decided = plan({RANGE: "40000 41999", RESERVED: "40000-41500"}, CURRENT, min_pool_size=1000)
    assert "499 usable ports" in decided["input_errors"][0]


def test_lowering_tw_buckets_is_warned():
    decided = plan({"net.ipv4.tcp_max_tw_buckets": "1000"},
                   {"net.ipv4.tcp_max_tw_buckets": "131072"})
    assert "never" in decided["warnings"][0]


def test_listening_ports_reads_listen_sockets_only():
    text = (
        "  sl  local_address rem_address   st tx_queue rx_queue\n"
        "   0: 00000000:AFC8 00000000:0000 0A 00000000:00000000\n"
        "   1: 0100007F:0016 00000000:0000 0A 00000000:00000000\n"
        "   2: 0100007F:9C40 0100007F:0050 01 00000000:00000000\n"
        "   3: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A x\n"
    )
    assert sorted(listening_ports_proc(text)) == [22, 8080, 45000]


# ---- the file and the diff -----------------------------------------------------------

def test_render_file_has_header_unquoted_values_and_stable_order():
    text = render_file({REUSE: "1", RANGE: "15000\t64999"})
    assert text.startswith(FILE_HEADER)
    body = text[len(FILE_HEADER):]
    assert body == ("net.ipv4.ip_local_port_range = 15000 64999\n"
                    "net.ipv4.tcp_tw_reuse = 1\n")
    assert '"' not in body and "'" not in body


def test_render_file_leaves_an_empty_reservation_as_a_comment():
    text = render_file({RESERVED: ""})
    assert "net.ipv4.ip_local_reserved_ports =" not in text
    assert "# net.ipv4.ip_local_reserved_ports" in text


def test_diff_shows_file_and_runtime_values():
    entries = compute_diff("/etc/sysctl.d/60-portpool.conf", None, "new\n",
                           {REUSE: "2", RANGE: "1 2"}, {REUSE: "1", RANGE: "1 2"})
    assert entries[0]["before_header"].endswith("(absent)")
    assert entries[0]["after"] == "new\n"
    assert entries[1]["before"] == "net.ipv4.tcp_tw_reuse = 2\n"
    assert entries[1]["after"] == "net.ipv4.tcp_tw_reuse = 1\n"


def test_no_diff_when_nothing_changes():
    assert compute_diff("/f", "x", "x", {REUSE: "1"}, {REUSE: "1"}) == []


# ---- boot-time overrides (systemd-sysctl order, via portpool_persisted) -----------

OURS = "/etc/sysctl.d/60-portpool.conf"


def test_our_file_takes_its_place_in_the_boot_order_and_masks_its_name():
    files = ["/usr/lib/sysctl.d/50-default.conf", "/usr/lib/sysctl.d/60-portpool.conf",
             "/etc/sysctl.d/99-x.conf", "/etc/sysctl.conf"]
    assert boot_files_with_ours(files, OURS) == [
        "/usr/lib/sysctl.d/50-default.conf", OURS, "/etc/sysctl.d/99-x.conf",
        "/etc/sysctl.conf"]
    assert boot_files_with_ours([], OURS) == [OURS]
    assert boot_files_with_ours(["/run/sysctl.d/70-a.conf"], OURS) == [
        OURS, "/run/sysctl.d/70-a.conf"]


def test_find_overrides_names_later_files_only():
    order = ["/usr/lib/sysctl.d/50-default.conf", OURS, "/usr/lib/sysctl.d/80-vendor.conf",
             "/etc/sysctl.d/99-x.conf", "/etc/sysctl.conf"]
    contents = {
        "/usr/lib/sysctl.d/50-default.conf": "net.ipv4.tcp_tw_reuse = 0\n",
        OURS: "net.ipv4.tcp_tw_reuse = 1\nnet.ipv4.ip_local_port_range = 1 2\n",
        "/usr/lib/sysctl.d/80-vendor.conf": "net/ipv4/ip_local_port_range = 1024 65000\n",
        "/etc/sysctl.d/99-x.conf": "# net.ipv4.tcp_tw_reuse = 0\n",
        "/etc/sysctl.conf": "-net.ipv4.tcp_tw_reuse=0\n",
    }
    found = find_overrides(OURS, order, contents, [REUSE, RANGE])
    assert found == [
        {"key": REUSE, "file": "/etc/sysctl.conf"},
        {"key": RANGE, "file": "/usr/lib/sysctl.d/80-vendor.conf"},
    ]


def test_a_later_glob_does_not_beat_our_explicit_key():
    order = [OURS, "/etc/sysctl.d/99-glob.conf"]
    contents = {OURS: "net.ipv4.tcp_tw_reuse = 1\n",
                "/etc/sysctl.d/99-glob.conf": "net.ipv4.tcp_* = 0\n"}
    assert find_overrides(OURS, order, contents, [REUSE]) == []


def test_facts_values_are_compared_as_sysctl_text():
    facts = {"ip_local_port_range": [40000, 49999], "ip_local_reserved_ports": [[45000, 45000],
             [46000, 46010]], "tcp_tw_reuse": 1, "tcp_tw_reuse_delay": None}
    expected = {RANGE: "40000 49999", RESERVED: "45000,46000-46010", REUSE: "1"}
    assert facts_mismatches(expected, facts) == []
    assert facts_mismatches({RESERVED: ""}, {"ip_local_reserved_ports": []}) == []
    wrong = facts_mismatches({REUSE: "2", DELAY: "500"}, facts)
    assert [item["key"] for item in wrong] == [REUSE, DELAY]


def test_probe_must_measure_the_pool_the_settings_promise():
    runtime = {RANGE: "40000 49999", RESERVED: "45000"}
    good = {"range": [40000, 49999], "expected": 9999, "matches_expected": True}
    assert probe_mismatches(runtime, good) == []
    assert probe_mismatches({REUSE: "1"}, good) == []  # range not managed: nothing to check
    bad = {"range": [32768, 60999], "expected": 28232, "matches_expected": False,
           "hold": {"established": 12}}
    assert [item["key"] for item in probe_mismatches(runtime, bad)] == [
        "probe range", "probe expected pool", "probe measurement"]


# ---- the security review (issue 11) -----------------------------------------------------

POOL_NOW = {"net.ipv4.ip_local_port_range": "32768 60999",
           "net.ipv4.ip_local_reserved_ports": ""}


@pytest.mark.parametrize("settings, words", [
    ({"ip_local_reserved_ports": "0-65535"}, "leaves 0 usable ports in the range 1-65535"),
    ({"ip_local_reserved_ports": [1, "2-65535"]}, "leaves 0 usable ports"),
    ({"ip_local_port_range": "40000 41999", "ip_local_reserved_ports": "40000-41500"},
     "ip_local_port_range and ip_local_reserved_ports leaves 499 usable ports"),
])
def test_validate_refuses_a_reservation_that_empties_the_pool(settings, words):
    _, errors, _ = plan_module.validate_settings(settings, min_pool_size=1024)
    assert any(words in error for error in errors), errors


def test_plan_checks_the_pool_with_the_current_range_when_only_reserving():
    values, errors, _ = plan_module.validate_settings(
        {"ip_local_reserved_ports": "30000-60000"}, min_pool_size=1024)
    assert errors == []
    decided = plan_module.plan(values, POOL_NOW, min_pool_size=1024)
    assert decided["input_errors"] == [
        "portpool_tune_settings.ip_local_reserved_ports leaves 999 usable ports in the range "
        "32768-60999 after reserved ports, below portpool_tune_min_pool_size 1024"]


def test_plan_checks_the_pool_with_the_current_reservation_when_only_ranging():
    values, _, _ = plan_module.validate_settings({"ip_local_port_range": "40000 41999"},
                                                 min_pool_size=1024)
    current = dict(POOL_NOW, **{"net.ipv4.ip_local_reserved_ports": "40000-41500"})
    decided = plan_module.plan(values, current, min_pool_size=1024)
    assert "leaves 499 usable ports" in decided["input_errors"][0]


@pytest.mark.parametrize("name, ok", [
    ("60-portpool.conf", True), ("99-sysctl.conf", False), ("99-protect-links.conf", False),
    ("10-anything.conf", False), ("60-p\u00f6rtpool.conf", False), ("x" * 300 + ".conf", False),
])
def test_file_name_rules(name, ok):
    assert (plan_module.file_name_error(name) is None) is ok


def test_file_content_errors_accept_only_managed_keys_with_good_values():
    good = "# a comment\nnet.ipv4.tcp_tw_reuse = 1\nnet.ipv4.ip_local_port_range = 1024 65000\n"
    assert plan_module.file_content_errors(good, "f") == []
    bad = "kernel.core_pattern = |x\nnet.ipv4.tcp_tw_reuse = 9\nnot an assignment\n"
    errors = plan_module.file_content_errors(bad, "f")
    assert any("kernel.core_pattern" in error for error in errors)
    assert any("tcp_tw_reuse must be between 0 and 2" in error for error in errors)
    assert any("line 3 is not" in error for error in errors)
