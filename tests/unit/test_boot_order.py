"""portpool_boot_order: which later sysctl file undoes portpool's values at boot."""

from ansible.module_utils.portpool_boot_order import boot_overrides, override_reason
from ansible.module_utils.portpool_tune_plan import boot_files_with_ours

OURS = "/etc/sysctl.d/60-portpool.conf"
RANGE = "net.ipv4.ip_local_port_range"
REUSE = "net.ipv4.tcp_tw_reuse"
TARGET = {RANGE: "15000 64999", REUSE: "1"}


def _order(*others):
    return boot_files_with_ours(sorted(others, key=lambda p: p.rsplit("/", 1)[1]), OURS)


def test_a_later_file_with_another_value_is_an_override_with_file_line_and_values():
    order = _order("/etc/sysctl.d/70-proxy.conf")
    contents = {OURS: "%s = 15000 64999\n%s = 1\n" % (RANGE, REUSE),
                "/etc/sysctl.d/70-proxy.conf": "# x\n%s = 40000   40999\n" % RANGE}
    found = boot_overrides(OURS, order, contents, TARGET)
    why = found[0].pop("why")
    assert found == [{"key": RANGE, "file": "/etc/sysctl.d/70-proxy.conf", "line": 2,
                      "value": "40000 40999", "ours": "15000 64999"}]
    text = why
    assert "70-proxy.conf (line 2)" in text and "gets 40000 40999, not 15000 64999" in text


def test_the_same_value_later_is_no_override():
    order = _order("/etc/sysctl.d/70-proxy.conf")
    contents = {OURS: "%s = 1\n" % REUSE, "/etc/sysctl.d/70-proxy.conf": "%s=1\n" % REUSE}
    assert boot_overrides(OURS, order, contents, {REUSE: 1}) == []


def test_earlier_files_lose_and_sysctl_conf_is_read_last():
    order = _order("/usr/lib/sysctl.d/50-default.conf", "/etc/sysctl.conf")
    assert order[-1] == "/etc/sysctl.conf"
    contents = {OURS: "%s = 1\n" % REUSE,
                "/usr/lib/sysctl.d/50-default.conf": "%s = 2\n" % REUSE,
                "/etc/sysctl.conf": "%s = 0\n" % REUSE}
    found = boot_overrides(OURS, order, contents, {REUSE: "1"})
    assert [(item["file"], item["value"]) for item in found] == [("/etc/sysctl.conf", "0")]
    del contents["/etc/sysctl.conf"]
    assert boot_overrides(OURS, order, contents, {REUSE: "1"}) == []


def test_a_quoted_value_is_not_the_same_value():
    order = _order("/run/sysctl.d/90-ports.conf")
    contents = {OURS: "%s = 15000 64999\n" % RANGE,
                "/run/sysctl.d/90-ports.conf": '%s = "15000 64999"\n' % RANGE}
    found = boot_overrides(OURS, order, contents, {RANGE: "15000 64999"})
    assert [item["value"] for item in found] == ['"15000 64999"']


def test_an_empty_value_is_shown_as_empty():
    item = {"key": "net.ipv4.ip_local_reserved_ports", "file": "/etc/sysctl.d/99-x.conf",
            "line": 1, "value": "", "ours": "45000"}
    assert "gets (empty), not 45000" in override_reason(item, OURS)
