import pytest
from ansible.module_utils.portpool_sysctl import (
    format_reserved_ports,
    normalise_value,
    parse_kernel_version,
    parse_port_range,
    parse_reserved_ports,
    pool_size,
    read_sysctl,
    same_parity,
    sysctl_path,
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
