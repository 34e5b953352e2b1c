import pytest
from ansible.module_utils.portpool_sysctl import (
    KEYS,
    KNOWN_KEYS,
    NET_KEYS,
    PORT_LIST,
    PROBE_COPIED,
    PROBE_REQUIRED,
    RANGE,
    TUNED,
    dotted_name,
    format_reserved_ports,
    from_text,
    normalise_value,
    parse_kernel_version,
    parse_port_range,
    parse_reserved_ports,
    pool_size,
    read_sysctl,
    same,
    same_parity,
    short_name,
    sysctl_key,
    sysctl_path,
    to_text,
)


@pytest.mark.parametrize("text", ["32768 60999", "32768\t60999", " 32768  60999\n"])
def test_port_range_whitespace_is_normalised(text):
    assert parse_port_range(text) == (32768, 60999)
    assert normalise_value(text) == "32768 60999"


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "two integers"),
        ("32768", "two integers"),
        ("1 2 3", "two integers"),
        ("a 60999", "must be an integer"),
        ("60999 32768", "above the high end"),
        ("1024 70000", "1..65535"),
        ("0 100", "1..65535"),
        ("1; rm -rf / 2", "two integers"),
    ],
)
def test_port_range_rejects(text, message):
    with pytest.raises(ValueError, match=message):
        parse_port_range(text)


def test_reserved_ports_parse_merge_and_format():
    assert parse_reserved_ports("") == []
    assert parse_reserved_ports("\n") == []
    spans = parse_reserved_ports("9000-9010,8080, 9005-9020,8081")
    assert spans == [[8080, 8081], [9000, 9020]]
    assert format_reserved_ports(spans) == "8080-8081,9000-9020"
    assert format_reserved_ports([[5432, 5432]]) == "5432"


@pytest.mark.parametrize("text", ["8080,,9000", "9010-9000", "x", "70000"])
def test_reserved_ports_rejects(text):
    with pytest.raises(ValueError):
        parse_reserved_ports(text)


def test_pool_size_counts_only_reserved_ports_inside_the_range():
    pool = pool_size(32768, 60999, [[80, 80], [32760, 32770], [40000, 40009]])
    assert pool == {
        "low": 32768, "high": 60999, "size": 28232,
        "reserved_in_range": 3 + 10, "usable": 28232 - 13,
    }


def test_parity_and_kernel_version():
    assert same_parity(32768, 60998)
    assert not same_parity(32768, 60999)
    assert parse_kernel_version("6.18.44-fc-v782") == [6, 18, 44]
    assert parse_kernel_version("4.9") == [4, 9, 0]
    assert parse_kernel_version("5.10.0-rc1+") == [5, 10, 0]


def test_read_sysctl_from_fixture_tree(tmp_path):
    target = tmp_path / "net" / "ipv4" / "ip_local_port_range"
    target.parent.mkdir(parents=True)
    target.write_text("32768\t60999\n")
    assert read_sysctl("net.ipv4.ip_local_port_range", str(tmp_path)) == "32768 60999"
    assert read_sysctl("net.ipv4.tcp_tw_recycle", str(tmp_path)) is None
    with pytest.raises(ValueError):
        sysctl_path("../etc/passwd")


# --------------------------------------------------------------------------- the key table

def test_key_table_names_and_views():
    assert len({key.short for key in KEYS}) == len({key.dotted for key in KEYS}) == len(KEYS)
    for key in KEYS:
        assert key.short == key.dotted.rsplit(".", 1)[1].replace("-", "_")
        assert key.short.isidentifier()
        assert key.namespaced == key.dotted.startswith("net.")
        assert sysctl_key(key.short) is sysctl_key(key.dotted) is key
    assert KNOWN_KEYS[0] == "net.ipv4.ip_local_port_range"
    assert "fs.nr_open" in KNOWN_KEYS and "fs.nr_open" not in NET_KEYS
    assert list(TUNED) == ["ip_local_port_range", "ip_local_reserved_ports", "tcp_tw_reuse",
                           "tcp_tw_reuse_delay", "tcp_timestamps", "tcp_max_tw_buckets"]
    assert sysctl_key("ip_local_port_range").kind == RANGE
    assert sysctl_key("ip_local_reserved_ports").kind == PORT_LIST
    # The probe's lab copies only per-namespace keys, and needs a subset of them.
    assert PROBE_COPIED == ("net.ipv4.ip_local_port_range", "net.ipv4.ip_local_reserved_ports",
                            "net.ipv4.ip_unprivileged_port_start", "net.ipv4.tcp_tw_reuse",
                            "net.ipv4.tcp_tw_reuse_delay", "net.ipv4.tcp_timestamps",
                            "net.ipv4.tcp_max_tw_buckets")
    assert set(PROBE_REQUIRED) <= set(PROBE_COPIED) <= set(NET_KEYS)
    assert {key.probe for key in KEYS} == {"required", "copied", ""}
    assert short_name("fs.file-max") == "file_max" and dotted_name("file_max") == "fs.file-max"
    assert short_name("net.ipv4.conf.all.rp_filter") == "net.ipv4.conf.all.rp_filter"
    assert dotted_name("made_up") == "made_up"


@pytest.mark.parametrize("name, text, typed, canonical", [
    ("ip_local_port_range", " 32768\t60999\n", [32768, 60999], "32768 60999"),
    ("net.ipv4.ip_local_reserved_ports", "9000-9010, 8080", [[8080, 8080], [9000, 9010]],
     "8080,9000-9010"),
    ("ip_local_reserved_ports", "", [], ""),
    ("tcp_tw_reuse", "2", 2, "2"),
    ("fs.file-max", "9223372036854775807", 9223372036854775807, "9223372036854775807"),
])
def test_from_text_and_to_text_round_trip(name, text, typed, canonical):
    assert from_text(name, text) == typed
    assert to_text(name, text) == canonical
    assert to_text(name, typed) == canonical
    assert from_text(name, to_text(name, typed)) == typed
    assert same(name, text, typed) and same(name, canonical, text)


def test_codec_absent_and_bad_values():
    assert from_text("tcp_tw_reuse", None) is None and to_text("tcp_tw_reuse", None) is None
    with pytest.raises(ValueError, match=r"net\.ipv4\.tcp_tw_reuse must be an integer"):
        from_text("tcp_tw_reuse", "yes")
    with pytest.raises(ValueError, match="above the high end"):
        from_text("ip_local_port_range", "60999 32768")
    # Text that does not parse is kept, whitespace-normalised, and compared as text.
    assert to_text("ip_local_reserved_ports", "80,, 81") == "80,, 81"
    assert same("tcp_tw_reuse", "01", "1") and not same("tcp_tw_reuse", "1", "2")
    assert not same("ip_local_port_range", '"32768 60999"', "32768 60999")
    assert same("tcp_tw_reuse", "yes ", " yes")
