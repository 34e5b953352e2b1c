"""Netlink sock_diag and /proc/net/tcp parsers, on captured kernel replies and tables.

The fixtures under fixtures/sockdiag/ were captured from one socket population
(tests/integration/facts_scenario.py --capture) on a 6.18 kernel, together
with the counts ss reported for it (sockdiag_expected.json).
"""

import json
import socket
import struct
from collections import Counter
from pathlib import Path

import pytest
from ansible.module_utils import portpool_sockdiag as sd

FIXTURES = Path(__file__).parent / "fixtures" / "sockdiag"
EXPECTED = json.loads((FIXTURES / "sockdiag_expected.json").read_text())
LOW, HIGH = EXPECTED["range"]
LISTEN_PORTS = (45000, 46000)  # the two listeners the scenario puts inside the range
SS_STATE = {"established": "established", "time-wait": "time_wait", "listening": "listen",
            "syn-recv": "syn_recv", "fin-wait-1": "fin_wait1", "fin-wait-2": "fin_wait2",
            "close-wait": "close_wait", "last-ack": "last_ack", "closing": "closing",
            "syn-sent": "syn_sent"}


def fixture_tally(exclude=LISTEN_PORTS):
    tally = sd.SocketTally(LOW, HIGH, exclude_ports=exclude)
    for name in ("sockdiag_all_v4.bin", "sockdiag_all_v6.bin"):
        data = (FIXTURES / name).read_bytes()
        assert sd.parse_diag_buffer(data, len(data), tally) is True
    return tally


def proc_tally():
    tally = sd.SocketTally(LOW, HIGH)
    warnings = sd.proc_tally(tally, proc=str(_proc_tree()))
    assert warnings == []
    return tally


def _proc_tree():
    return FIXTURES.parent / "proc_facts"


def expected_destinations():
    result = {}
    for name, counts in EXPECTED["destinations"].items():
        address, _, port = name.rpartition(":")
        result[(address, int(port))] = counts
    return result


def test_request_layout():
    request = sd.build_request(socket.AF_INET6, sd.state_mask(["time_wait"]), seq=7)
    assert len(request) == 72
    length, msg_type, flags, seq, pid = struct.unpack_from("=IHHII", request)
    assert (length, msg_type, flags, seq, pid) == (72, 20, 0x301, 7, 0)
    family, protocol, ext, states = struct.unpack_from("=BBBxI", request, 16)
    assert (family, protocol, ext, states) == (socket.AF_INET6, 6, 0, 1 << 6)


def test_state_mask_adds_request_sockets_to_syn_recv():
    assert sd.state_mask(["syn_recv"]) == (1 << 3) | (1 << 12)
    assert sd.state_mask([6, "listen"]) == (1 << 6) | (1 << 10)


def test_request_with_port_filter_carries_the_bytecode_attribute():
    code = sd.port_range_bytecode(40000, 49999)
    assert code == struct.pack("=BBHBBHBBHBBH", 2, 8, 20, 0, 0, 40000, 3, 8, 12, 0, 0, 49999)
    request = sd.build_request(socket.AF_INET, 1 << 6, 1, code)
    assert len(request) == 72 + 4 + 16
    assert struct.unpack_from("=I", request)[0] == len(request)
    assert struct.unpack_from("=HH", request, 72) == (20, 1)
    assert request[76:] == code


@pytest.mark.parametrize("ss_state", sorted(SS_STATE))
def test_netlink_state_counts_equal_ss(ss_state):
    counts = sd.state_counts(fixture_tally())
    name = SS_STATE[ss_state]
    assert counts["ipv4"][name] == EXPECTED["states"][ss_state]["ipv4"]
    assert counts["ipv6"][name] == EXPECTED["states"][ss_state]["ipv6"]
    assert counts["total"][name] == sum(EXPECTED["states"][ss_state].values())


def test_netlink_destinations_equal_ss():
    top, count = sd.summarise_destinations(fixture_tally().destinations, 10000, top=20)
    got = {(e["address"], e["port"]): {"time_wait": e["time_wait"],
                                       "established": e["established"]} for e in top}
    assert got == expected_destinations()
    assert count == len(expected_destinations())


def test_destinations_sorted_with_utilisation_and_cut_to_top():
    top, count = sd.summarise_destinations(fixture_tally().destinations, 10000, top=2)
    assert count == 6
    assert [(e["address"], e["total"]) for e in top] == [("198.18.0.3", 9), ("198.18.0.2", 5)]
    assert top[0]["utilisation"] == 0.0009
    assert set(top[0]) == {"address", "port", "time_wait", "established", "total",
                           "utilisation"}


def test_accepted_side_of_a_listener_in_range_is_not_outgoing():
    with_exclusion = fixture_tally()
    without = fixture_tally(exclude=())
    _top, count_without = sd.summarise_destinations(without.destinations, 10000, top=50)
    _top, count_with = sd.summarise_destinations(with_exclusion.destinations, 10000, top=50)
    # The accepted socket on port 46000 looks like an outgoing one to 127.0.0.1:<client port>.
    assert count_without == count_with + 1


def test_listeners_in_range_flag_reserved():
    listeners = sd.summarise_listeners(fixture_tally().listeners, LOW, HIGH,
                                       [[45000, 45000], [47000, 47010]])
    assert listeners == [
        {"address": "0.0.0.0", "port": 45000, "family": "ipv4", "reserved": True},
        {"address": "127.0.0.1", "port": 46000, "family": "ipv4", "reserved": False},
    ]


def test_timewait_fast_path_equals_general_walk():
    data = (FIXTURES / "sockdiag_tw_v4.bin").read_bytes()
    fast = Counter()
    messages, done = sd.count_timewait_buffer(data, len(data), sd.port_table(LOW, HIGH), fast)
    assert done is True
    assert messages == EXPECTED["states"]["time-wait"]["ipv4"]
    general = sd.SocketTally(LOW, HIGH)
    sd.parse_diag_buffer(data, len(data), general)
    assert fast == Counter({raw: c[sd.TIME_WAIT] for (_f, raw), c in general.destinations.items()})
    top, _count = sd.summarise_destinations(sd.timewait_raw({socket.AF_INET: fast}), 10000)
    tw = {(e["address"], e["port"]): e["time_wait"] for e in top}
    expected = {k: v["time_wait"] for k, v in expected_destinations().items()
                if v["time_wait"] and ":" not in k[0]}
    assert tw == expected


def test_uniform_records_counted_without_a_loop():
    data = (FIXTURES / "sockdiag_tw_range_v4.bin").read_bytes()
    msg_len = struct.unpack_from("=I", data)[0]
    replies = data[:len(data) - 20]  # everything but the final NLMSG_DONE
    assert len(replies) % msg_len == 0
    counter = Counter()
    assert sd.count_uniform_records(replies, len(replies), counter) == len(replies) // msg_len
    assert sum(counter.values()) == len(replies) // msg_len
    # A buffer that also holds NLMSG_DONE is not uniform: left to the general walk.
    assert sd.count_uniform_records(data, len(data), Counter()) == 0


def test_uniform_records_reject_a_foreign_message():
    data = bytearray((FIXTURES / "sockdiag_tw_range_v4.bin").read_bytes()[:-20])
    msg_len = struct.unpack_from("=I", data)[0]
    struct.pack_into("=H", data, msg_len + 4, sd.NLMSG_ERROR)
    assert sd.count_uniform_records(data, len(data), Counter()) == 0


def test_error_reply_raises_oserror():
    error = struct.pack("=IHHIIi", 36, sd.NLMSG_ERROR, 0, 1, 0, -13) + bytes(16)
    with pytest.raises(OSError) as info:
        sd.parse_diag_buffer(error, len(error), sd.SocketTally())
    assert info.value.errno == 13


def test_truncated_reply_raises_valueerror():
    data = (FIXTURES / "sockdiag_tw_v4.bin").read_bytes()
    with pytest.raises(ValueError, match="truncated"):
        sd.parse_diag_buffer(data[:100], 100, sd.SocketTally())


def synthetic_reply(family, state, ports, src, dst):
    """One inet_diag_msg reply as the kernel lays it out (no attributes)."""
    raw_src = socket.inet_pton(family, src).ljust(16, b"\0")
    raw_dst = socket.inet_pton(family, dst).ljust(16, b"\0")
    body = struct.pack("=BBBB", family, state, 0, 0) + struct.pack(">HH", *ports)
    body += raw_src + raw_dst + struct.pack("=I8s", 0, b"\xff" * 8)
    body += struct.pack("=5I", 0, 0, 0, 0, 0)
    return struct.pack("=IHHII", 16 + len(body), 20, 2, 1, 0) + body


def test_synthetic_ipv6_reply_decodes_address_and_port():
    data = b"".join([
        synthetic_reply(socket.AF_INET6, 6, (40001, 443), "2001:db8::2", "2001:db8::1"),
        synthetic_reply(socket.AF_INET6, 1, (40002, 443), "2001:db8::3", "2001:db8::1"),
        synthetic_reply(socket.AF_INET6, 1, (30000, 443), "2001:db8::3", "2001:db8::1"),
        struct.pack("=IHHIIi", 20, sd.NLMSG_DONE, 2, 1, 0, 0),
    ])
    tally = sd.SocketTally(40000, 49999)
    assert sd.parse_diag_buffer(data, len(data), tally) is True
    top, count = sd.summarise_destinations(tally.destinations, 100)
    # Two local addresses, one destination: merged.
    assert count == 1
    assert top == [{"address": "2001:db8::1", "port": 443, "time_wait": 1, "established": 1,
                    "total": 2, "utilisation": 0.02}]
    assert sd.state_counts(tally)["ipv6"]["established"] == 2


def test_proc_tables_equal_netlink():
    netlink = fixture_tally()
    proc = proc_tally()
    assert sd.state_counts(proc) == sd.state_counts(netlink)
    assert (sd.summarise_destinations(proc.destinations, 10000, 50)
            == sd.summarise_destinations(netlink.destinations, 10000, 50))
    assert (sd.summarise_listeners(proc.listeners, LOW, HIGH, [])
            == sd.summarise_listeners(netlink.listeners, LOW, HIGH, []))


def test_proc_parser_counts_bad_lines():
    text = (_proc_tree() / "net" / "tcp").read_text() + "   9: garbage\n  10: 0100007F:ZZZZ x 01\n"
    tally = sd.SocketTally(LOW, HIGH)
    assert sd.parse_proc_net_tcp(text, socket.AF_INET, tally) == 2


def test_proc_ipv6_address_bytes():
    # ::1 as /proc/net/tcp6 prints it on a little-endian machine.
    raw = sd._proc_address("00000000000000000000000001000000", socket.AF_INET6)
    if struct.pack("=I", 1) == b"\x01\0\0\0":
        assert sd.decode_address(socket.AF_INET6, raw) == "::1"
    assert len(raw) == 16


def test_proc_missing_tables_warn(tmp_path):
    tally = sd.SocketTally(LOW, HIGH)
    warnings = sd.proc_tally(tally, proc=str(tmp_path))
    assert len(warnings) == 2
    assert "net/tcp" in warnings[0]


def test_netstat_counter():
    text = (_proc_tree() / "net" / "netstat").read_text()
    assert sd.parse_netstat_counter(text, "TCPTimeWaitOverflow") == 0
    assert sd.parse_netstat_counter(text, "NoSuchCounter") is None
    text = "TcpExt: SyncookiesSent TCPTimeWaitOverflow\nTcpExt: 0 17\n"
    assert sd.parse_netstat_counter(text, "TCPTimeWaitOverflow") == 17
    assert sd.parse_netstat_counter("TcpExt: TCPTimeWaitOverflow\n", "TCPTimeWaitOverflow") is None


class FakeDiagSocket:
    """Replays captured reply bytes, one chunk per recv, and records requests."""

    def __init__(self, replies):
        self.replies = {family: list(chunks) for family, chunks in replies.items()}
        self.requests = []
        self.pending = []

    def send(self, data):
        self.requests.append(bytes(data))
        family = data[16]
        self.pending = list(self.replies[family])
        return len(data)

    def recv_into(self, buf):
        chunk = self.pending.pop(0)
        buf[:len(chunk)] = chunk
        return len(chunk)

    def close(self):
        pass


def chunks_of(data, size):
    """Split a captured stream on message boundaries into recv-sized chunks."""
    chunks, start, offset = [], 0, 0
    while offset < len(data):
        length = struct.unpack_from("=I", data, offset)[0]
        if offset + length - start > size:
            chunks.append(data[start:offset])
            start = offset
        offset += (length + 3) & ~3
    chunks.append(data[start:])
    return chunks


def test_mixed_walk_equals_general_walk():
    """One dump of every state, walked with TIME_WAIT runs in C, counts what the
    general walk counts, whatever the recv boundaries."""
    for name in ("sockdiag_all_v4.bin", "sockdiag_all_v6.bin"):
        data = (FIXTURES / name).read_bytes()
        general = sd.SocketTally(LOW, HIGH, exclude_ports=LISTEN_PORTS)
        sd.parse_diag_buffer(data, len(data), general)
        for size in (300, 4096, 1 << 20):
            mixed = sd.SocketTally(LOW, HIGH, exclude_ports=LISTEN_PORTS)
            counter = Counter()
            tw_messages, done = 0, False
            for chunk in chunks_of(data, size):
                messages, done = sd.count_mixed_buffer(chunk, len(chunk), mixed, counter)
                tw_messages += messages
            assert done is True
            family = socket.AF_INET if "v4" in name else socket.AF_INET6
            mixed.states[family][sd.TIME_WAIT] += tw_messages
            for key, count in counter.items():
                mixed.destinations.setdefault((family, key), Counter())[sd.TIME_WAIT] += count
            assert mixed.states == general.states
            assert mixed.destinations == general.destinations
            assert mixed.listeners == general.listeners


def test_mixed_walk_rejects_a_truncated_message():
    data = (FIXTURES / "sockdiag_all_v4.bin").read_bytes()
    with pytest.raises(ValueError, match="truncated"):
        sd.count_mixed_buffer(data[:130], 130, sd.SocketTally(LOW, HIGH), Counter())


def test_connection_dump_through_a_fake_socket(monkeypatch):
    """One dump per family asks for every state but LISTEN."""
    tw = (FIXTURES / "sockdiag_tw_v4.bin").read_bytes()
    done = struct.pack("=IHHIIi", 20, sd.NLMSG_DONE, 2, 1, 0, 0)
    fake = FakeDiagSocket({socket.AF_INET: chunks_of(tw, 400), socket.AF_INET6: [done]})
    monkeypatch.setattr(sd, "open_diag_socket", lambda: fake)
    tally = sd.netlink_connections_into(sd.SocketTally(LOW, HIGH))
    assert tally.states[socket.AF_INET][sd.TIME_WAIT] == EXPECTED["states"]["time-wait"]["ipv4"]
    assert tally.states[socket.AF_INET6][sd.TIME_WAIT] == 0
    assert [r[16] for r in fake.requests] == [socket.AF_INET, socket.AF_INET6]
    assert all(struct.unpack_from("=I", r, 20)[0] == sd.ALL_STATES & ~(1 << sd.LISTEN)
               for r in fake.requests)


SOCKSTAT = ("sockets: used 9\nTCP: inuse {inuse} orphan 0 tw {tw} alloc 3 mem 1\n"
            "UDP: inuse 0 mem 0\n")
SOCKSTAT6 = "TCP6: inuse {inuse6}\nUDP6: inuse 0\n"


V4, V6 = socket.AF_INET, socket.AF_INET6


@pytest.mark.parametrize("inuse, tw, inuse6, expected", [
    (0, 0, 0, ()),
    (2, 0, 0, (V4,)),
    (0, 0, 1, (V6,)),
    (2, 0, 1, (V4, V6)),
    (0, 7, 0, (V4, V6)),  # TIME_WAIT is counted for both families together
])
def test_families_with_tcp_sockets(inuse, tw, inuse6, expected):
    assert sd.families_in_use(SOCKSTAT.format(inuse=inuse, tw=tw),
                              SOCKSTAT6.format(inuse6=inuse6)) == expected


@pytest.mark.parametrize("sockstat, sockstat6", [
    ("", SOCKSTAT6.format(inuse6=0)),
    (SOCKSTAT.format(inuse=0, tw=0), ""),
    ("TCP: inuse x orphan 0 tw 0\n", SOCKSTAT6.format(inuse6=0)),
    ("TCP: inuse 0 orphan 0\n", SOCKSTAT6.format(inuse6=0)),
])
def test_sockstat_unreadable_means_both_families(sockstat, sockstat6):
    assert sd.families_in_use(sockstat, sockstat6) == (V4, V6)


def test_breakdown_falls_back_when_the_kernel_rejects_the_filter(monkeypatch):
    tw = (FIXTURES / "sockdiag_tw_v4.bin").read_bytes()
    done = struct.pack("=IHHIIi", 20, sd.NLMSG_DONE, 2, 1, 0, 0)
    rejected = struct.pack("=IHHIIi", 36, sd.NLMSG_ERROR, 0, 1, 0, -22) + bytes(16)

    class Picky(FakeDiagSocket):
        def send(self, data):
            super().send(data)
            if len(data) > 72:  # carries the bytecode attribute
                self.pending = [rejected]
            return len(data)

    monkeypatch.setattr(sd, "open_diag_socket", lambda: Picky(
        {socket.AF_INET: chunks_of(tw, 1 << 20), socket.AF_INET6: [done]}))
    result = sd.netlink_timewait_destinations(LOW, HIGH)
    assert sum(result[socket.AF_INET].values()) == EXPECTED["states"]["time-wait"]["ipv4"]


def test_closed_sockets_count_as_state_but_not_destination():
    data = synthetic_reply(socket.AF_INET, sd.CLOSE, (40001, 0), "127.0.0.1", "0.0.0.0")
    tally = sd.SocketTally(40000, 49999)
    sd.parse_diag_buffer(data, len(data), tally)
    assert sd.state_counts(tally)["ipv4"]["close"] == 1
    assert tally.destinations == {}


def test_ipv4_mapped_destinations_merge_with_ipv4():
    data = b"".join([
        synthetic_reply(socket.AF_INET6, 1, (40001, 80), "::ffff:198.18.0.1", "::ffff:198.18.0.2"),
        synthetic_reply(socket.AF_INET, 6, (40002, 80), "198.18.0.1", "198.18.0.2"),
    ])
    tally = sd.SocketTally(40000, 49999)
    sd.parse_diag_buffer(data, len(data), tally)
    top, count = sd.summarise_destinations(tally.destinations, 100)
    assert count == 1
    assert (top[0]["address"], top[0]["total"]) == ("198.18.0.2", 2)


def test_garbled_or_cut_dump_means_netlink_unavailable(monkeypatch):
    tw = (FIXTURES / "sockdiag_tw_v4.bin").read_bytes()
    garbled = FakeDiagSocket({socket.AF_INET: [tw[:100]], socket.AF_INET6: []})
    monkeypatch.setattr(sd, "open_diag_socket", lambda: garbled)
    with pytest.raises(sd.NetlinkUnavailable, match="truncated"):
        sd.netlink_tally(sd.SocketTally(LOW, HIGH), sd.ALL_STATES)
    cut = FakeDiagSocket({socket.AF_INET: [tw[:96], b""], socket.AF_INET6: []})
    monkeypatch.setattr(sd, "open_diag_socket", lambda: cut)
    with pytest.raises(sd.NetlinkUnavailable, match="without NLMSG_DONE"):
        sd.netlink_tally(sd.SocketTally(LOW, HIGH), sd.ALL_STATES)


def test_missing_tcp_diag_handler_is_named():
    # Where tcp_diag is a module that cannot be loaded (Debian's kernels in a VM
    # without /lib/modules), the kernel answers the dump with NLMSG_ERROR -ENOENT.
    error = struct.pack("=IHHII", 36, 2, 0, 1, 0) + struct.pack("=i", -2) + bytes(16)
    refused = FakeDiagSocket({socket.AF_INET: [error], socket.AF_INET6: [error]})
    with pytest.raises(sd.NetlinkUnavailable, match="no TCP diag handler"):
        sd.run_dump(refused, socket.AF_INET, sd.ALL_STATES, lambda buf, n: sd.parse_diag_buffer(
            buf, n, sd.SocketTally(LOW, HIGH)))
