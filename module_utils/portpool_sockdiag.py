# -*- coding: utf-8 -*-
# Copyright: portpool contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""TCP socket tables from the kernel: NETLINK_SOCK_DIAG (inet_diag) and /proc/net/tcp.

Two sources, one shape. The netlink path asks the kernel for the TCP states it
needs (the `idiag_states` bitmask is applied in the kernel, as `ss state ...`
does) and parses the replies with fixed struct layouts; /proc/net/tcp and tcp6
are the fallback where netlink sock_diag is unavailable (old kernels, seccomp,
some containers).

Everything that turns bytes or text into numbers is a pure function over a
buffer, so the unit tests feed it captured replies and fixture files. The hot
path (100,000 TIME_WAIT sockets) never builds a per-socket dict: a reply buffer
is walked with precompiled structs and a Counter is keyed on the raw
(remote port, local address, remote address) bytes; addresses are decoded only
for the grouped keys.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections import Counter

# include/net/tcp_states.h
TCP_STATES = {
    1: "established",
    2: "syn_sent",
    3: "syn_recv",
    4: "fin_wait1",
    5: "fin_wait2",
    6: "time_wait",
    7: "close",
    8: "close_wait",
    9: "last_ack",
    10: "listen",
    11: "closing",
    12: "new_syn_recv",
}
STATE_NUMBERS = {name: number for number, name in TCP_STATES.items()}
ESTABLISHED = 1
SYN_RECV = 3
TIME_WAIT = 6
CLOSE = 7
LISTEN = 10
NEW_SYN_RECV = 12
ALL_STATES = sum(1 << number for number in TCP_STATES)

# Netlink and sock_diag constants (include/uapi/linux/{netlink,sock_diag,inet_diag}.h)
NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300
INET_DIAG_REQ_BYTECODE = 1
INET_DIAG_BC_S_GE = 2
INET_DIAG_BC_S_LE = 3

# struct nlmsghdr (native order) + struct inet_diag_req_v2: family, protocol,
# ext, pad, states, then inet_diag_sockid (ports and addresses in network order).
_REQUEST = struct.Struct("=IHHIIBBBxI48x")
# The first two fields of struct nlmsghdr: len, type.
_NLMSG_LEN_TYPE = struct.Struct("=IH")
# A reply = nlmsghdr (16) + inet_diag_msg (72) + optional attributes
# (TIME_WAIT replies have none). inet_diag_msg: family, state, timer, retrans,
# inet_diag_sockid (sport, dport, src[16], dst[16], if, cookie[2]), expires,
# rqueue, wqueue, uid, inode.
MSG_HEADER_LEN = 16
DIAG_MSG_LEN = 72
TIMEWAIT_MSG_LEN = MSG_HEADER_LEN + DIAG_MSG_LEN
# Offsets inside one message (from the start of its nlmsghdr).
_OFF_FAMILY = 16
_OFF_STATE = 17
_OFF_SPORT = 20
_OFF_DPORT = 22
_OFF_SRC = 24
_OFF_DST = 40
_OFF_END = 56

# The kernel fills one dump step per recv (about 32 KiB on 6.x); the buffer is
# far larger so no reply is ever truncated, and is reused for every recv.
RECV_BUFFER = 1 << 20
SOCKET_RCVBUF = 4 << 20
MAX_DUMP_RECVS = 1_000_000  # hard bound on a dump loop (~30 M sockets)
DUMP_TIMEOUT = 30.0  # seconds one recv may wait for the kernel


class NetlinkUnavailable(Exception):
    """sock_diag cannot be used here; fall back to /proc/net/tcp."""


def state_mask(names):
    """Bitmask for idiag_states from state names (`time_wait`) or numbers."""
    mask = 0
    for name in names:
        number = name if isinstance(name, int) else STATE_NUMBERS[name]
        mask |= 1 << number
    if mask & (1 << SYN_RECV):
        # The kernel reports request sockets (NEW_SYN_RECV) as SYN_RECV.
        mask |= 1 << NEW_SYN_RECV
    return mask


def build_request(family, states, seq=1, bytecode=b""):
    """Bytes of one SOCK_DIAG_BY_FAMILY dump request for TCP sockets of `family`.

    `bytecode` (see port_range_bytecode) is sent as the INET_DIAG_REQ_BYTECODE
    attribute: a filter the kernel runs on each socket before replying.
    """
    attr = b""
    if bytecode:
        attr = struct.pack("=HH", 4 + len(bytecode), INET_DIAG_REQ_BYTECODE) + bytecode
        attr += bytes(-len(attr) % 4)
    return _REQUEST.pack(
        _REQUEST.size + len(attr), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, seq, 0,
        family, socket.IPPROTO_TCP, 0, states) + attr


def port_range_bytecode(low, high):
    """inet_diag filter program: local port >= low and local port <= high.

    Each comparison is two `struct inet_diag_bc_op` {code, yes, no}: the
    operation, then one carrying the port in `no`. `yes` jumps to the next
    operation; `no` jumps past the end (+4), which the kernel reads as reject,
    as ss(8) encodes `sport >= :low and sport <= :high`.
    """
    total = 16
    return struct.pack(
        "=BBHBBH BBHBBH",
        INET_DIAG_BC_S_GE, 8, total + 4, 0, 0, low,
        INET_DIAG_BC_S_LE, 8, total - 8 + 4, 0, 0, high)


def decode_address(family, raw):
    """Text form of a 16-byte inet_diag address field (IPv4 uses the first 4)."""
    if family == socket.AF_INET:
        return socket.inet_ntop(socket.AF_INET, bytes(raw[:4]))
    return socket.inet_ntop(socket.AF_INET6, bytes(raw[:16]))


def port_table(low, high):
    """bytes(65536): 1 where a big-endian port, read as its two raw bytes, lies in [low, high].

    Indexed by `buf[o] << 8 | buf[o + 1]`, i.e. the port itself; kept as a
    table so the hot loop does one index instead of two comparisons.
    """
    table = bytearray(65536)
    if low is not None and high is not None:
        table[low:high + 1] = b"\x01" * (high - low + 1)
    return bytes(table)


class SocketTally:
    """What one or more dumps add up to. Plain counters, no per-socket objects.

    - `states[family][state]`: sockets per TCP state number.
    - `destinations[(family, raw34)][state]`: connection sockets whose local port
      lies in the ephemeral range, keyed on the raw dport+src+dst bytes.
    - `listeners`: (family, raw local address, port) of listening sockets.
    """

    def __init__(self, low=None, high=None, exclude_ports=()):
        self.in_range = port_table(low, high)
        if exclude_ports:
            table = bytearray(self.in_range)
            for port in exclude_ports:
                table[port] = 0
            self.in_range = bytes(table)
        self.states = {socket.AF_INET: Counter(), socket.AF_INET6: Counter()}
        self.destinations = {}
        self.listeners = []
        self.messages = 0
        self.tables = 0  # /proc tables read (the fallback path)

    def add_buffer(self, buf, length=None):
        """Account for every inet_diag_msg in `buf[:length]`.

        Returns True when the buffer held NLMSG_DONE (the dump is complete).
        Raises OSError for an NLMSG_ERROR reply.
        """
        return parse_diag_buffer(buf, length, self)


def parse_diag_buffer(buf, length, tally):
    """Walk one recv()'s worth of netlink messages into `tally` (see SocketTally).

    Pure: only `buf` and `tally` are touched. Every message is checked for its
    length and type; TIME_WAIT replies (88 bytes, no attributes) and full
    sockets (longer, with attributes) are handled alike by nlmsg_len.
    """
    if length is None:
        length = len(buf)
    unpack_head = _NLMSG_LEN_TYPE.unpack_from
    in_range = tally.in_range
    states = tally.states
    destinations = tally.destinations
    offset = 0
    done = False
    count = 0
    while offset + MSG_HEADER_LEN <= length:
        msg_len, msg_type = unpack_head(buf, offset)
        if msg_len < MSG_HEADER_LEN or offset + msg_len > length:
            raise ValueError("truncated netlink message at offset %d" % offset)
        if msg_type == NLMSG_DONE:
            done = True
            break
        if msg_type == NLMSG_ERROR:
            (error,) = struct.unpack_from("=i", buf, offset + MSG_HEADER_LEN)
            if error:
                raise OSError(-error, os.strerror(-error))
            offset += (msg_len + 3) & ~3
            continue
        if msg_type != SOCK_DIAG_BY_FAMILY or msg_len < TIMEWAIT_MSG_LEN:
            offset += (msg_len + 3) & ~3
            continue
        count += 1
        family = buf[offset + _OFF_FAMILY]
        state = buf[offset + _OFF_STATE]
        states[family][state] += 1
        if state == LISTEN:
            tally.listeners.append((
                family, bytes(buf[offset + _OFF_SRC:offset + _OFF_DST]),
                buf[offset + _OFF_SPORT] << 8 | buf[offset + _OFF_SPORT + 1]))
        elif state != CLOSE and in_range[
                buf[offset + _OFF_SPORT] << 8 | buf[offset + _OFF_SPORT + 1]]:
            key = (family, bytes(buf[offset + _OFF_DPORT:offset + _OFF_END]))
            per_state = destinations.get(key)
            if per_state is None:
                per_state = destinations[key] = Counter()
            per_state[state] += 1
        offset += (msg_len + 3) & ~3
    tally.messages += count
    if not done and offset < length:
        raise ValueError("truncated netlink message at offset %d" % offset)
    return done


# TIME_WAIT fast path. TIME_WAIT replies all have the same length (88 bytes,
# or 96 when the kernel adds the INET_DIAG_MARK attribute for a CAP_NET_ADMIN
# caller), so a run of them is a sequence of fixed-size records. A record is
# read big-endian (the port is network order): nlmsg_len, nlmsg_type, skip to
# the sport, then dport+src+dst raw, skip the rest. The two native header
# fields are compared with their byte-swapped expected values.
_TYPE_SWAPPED = struct.unpack(">H", struct.pack("=H", SOCK_DIAG_BY_FAMILY))[0]
_STRUCTS = {}
# One reply as (nlmsg_len, nlmsg_type, state, sport, dport+src+dst), big-endian
# (the state too, as a full socket's reply can also be 96 bytes long); and the 34
# key bytes alone.
_STATE_RECORD = ">IH11xB2xH34s%dx"
_KEY_RECORD = "22x34s%dx"


def _record_struct(pattern, msg_len):
    """The precompiled struct for `pattern` over replies of `msg_len` bytes (cached)."""
    record = _STRUCTS.get((pattern, msg_len))
    if record is None:
        record = _STRUCTS[(pattern, msg_len)] = struct.Struct(pattern % (msg_len - _OFF_END))
    return record


def count_mixed_buffer(buf, length, tally, counter):
    """Walk a reply buffer of a dump of every state but LISTEN.

    Runs of TIME_WAIT replies take the fixed-record path (their in-range raw
    keys go into `counter`); every other reply goes through the general walk
    into `tally`, one message at a time. One dump per family then serves both,
    where two would each walk the kernel's whole established hash table.
    Returns (TIME_WAIT messages, done).
    """
    view = memoryview(buf)[:length]
    in_range = tally.in_range
    messages = 0
    offset = 0
    while offset + MSG_HEADER_LEN <= length:
        msg_len, msg_type = _NLMSG_LEN_TYPE.unpack_from(buf, offset)
        whole = offset + (length - offset) // msg_len * msg_len if msg_len else offset
        if (msg_type == SOCK_DIAG_BY_FAMILY and msg_len >= TIMEWAIT_MSG_LEN
                and msg_len % 4 == 0 and buf[offset + _OFF_STATE] == TIME_WAIT
                and whole > offset):
            len_swapped = struct.unpack(">I", struct.pack("=I", msg_len))[0]
            run = 0
            for rec_len, rec_type, state, sport, key in _record_struct(
                    _STATE_RECORD, msg_len).iter_unpack(view[offset:whole]):
                if rec_len != len_swapped or rec_type != _TYPE_SWAPPED or state != TIME_WAIT:
                    break
                run += 1
                if in_range[sport]:
                    counter[key] += 1
            messages += run
            offset += run * msg_len
            continue
        if msg_len < MSG_HEADER_LEN or offset + msg_len > length:
            raise ValueError("truncated netlink message at offset %d" % offset)
        end = min(offset + ((msg_len + 3) & ~3), length)
        if parse_diag_buffer(view[offset:end], end - offset, tally):
            return messages, True
        offset = end
    if offset < length:
        raise ValueError("truncated netlink message at offset %d" % offset)
    return messages, False


def count_timewait_buffer(buf, length, in_range, counter):
    """Add the raw destination key of every in-range TIME_WAIT reply to `counter`.

    For a dump that asked for TIME_WAIT only: count_mixed_buffer's walk, with
    any reply it could not take as a fixed record (another length) counted from
    the general walk. Returns (messages, done).
    """
    tally = SocketTally()
    tally.in_range = in_range
    messages, done = count_mixed_buffer(buf, length, tally, counter)
    for (_family, raw), per_state in tally.destinations.items():
        counter[raw] += per_state[TIME_WAIT]
    return messages + tally.messages, done


def count_uniform_records(buf, length, counter):
    """Count the raw destination keys of a buffer made only of same-length replies.

    For dumps already filtered in the kernel (state and port range): when every
    message in the buffer is a SOCK_DIAG_BY_FAMILY reply of the first one's
    length, which strided memoryview slices check in C, the keys (as 1-tuples
    of the 34 raw dport+src+dst bytes) go into `counter` with no Python-level
    loop at all. Returns the number of messages counted, or 0 when the buffer
    is not uniform (the caller then walks it message by message).
    """
    if length < TIMEWAIT_MSG_LEN:
        return 0
    msg_len, msg_type = _NLMSG_LEN_TYPE.unpack_from(buf, 0)
    if msg_type != SOCK_DIAG_BY_FAMILY or msg_len < TIMEWAIT_MSG_LEN or length % msg_len:
        return 0
    count = length // msg_len
    view = memoryview(buf)[:length]
    for index in range(6):  # nlmsg_len (4 bytes) and nlmsg_type (2) of every message
        if view[index:length:msg_len] != view[index:index + 1].tobytes() * count:
            return 0
    record = _record_struct(_KEY_RECORD, msg_len)
    counter.update(record.iter_unpack(view))
    return count


def open_diag_socket():
    """A NETLINK_SOCK_DIAG socket with a large receive buffer, or NetlinkUnavailable."""
    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG)
    except (OSError, AttributeError) as exc:
        raise NetlinkUnavailable("netlink sock_diag socket: %s" % exc) from exc
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_RCVBUF)
        sock.bind((0, 0))
        sock.settimeout(DUMP_TIMEOUT)
    except OSError as exc:
        sock.close()
        raise NetlinkUnavailable("netlink sock_diag bind: %s" % exc) from exc
    return sock


def run_dump(sock, family, states, consume, *, seq=1, bytecode=b""):
    """Send one dump request and feed every reply buffer to `consume(buf, n)`.

    `consume` returns True once it has seen NLMSG_DONE. Bounded by
    MAX_DUMP_RECVS receives; a dump the kernel cannot serve raises
    NetlinkUnavailable so callers fall back to /proc.
    """
    try:
        sock.send(build_request(family, states, seq, bytecode))
        buf = bytearray(RECV_BUFFER)
        for _recv in range(MAX_DUMP_RECVS):
            length = sock.recv_into(buf)
            if length == 0:
                raise NetlinkUnavailable("netlink sock_diag: the dump ended without NLMSG_DONE")
            if consume(buf, length):
                return
    except (OSError, ValueError) as exc:
        # OSError: the request was refused or the socket failed (a timeout too);
        # ValueError: a reply did not parse. Either way /proc is the answer.
        if isinstance(exc, OSError) and exc.errno == errno.ENOENT:
            # Where inet_diag is a module (Debian) and cannot be loaded, the
            # kernel answers a dump with ENOENT: say so, not "no such file".
            raise NetlinkUnavailable(
                "netlink sock_diag: this kernel has no TCP diag handler (module tcp_diag"
                " not loaded and not loadable): %s" % exc) from exc
        raise NetlinkUnavailable("netlink sock_diag: %s" % exc) from exc
    raise NetlinkUnavailable("netlink dump did not finish after %d receives" % MAX_DUMP_RECVS)


def netlink_tally(tally, states, families=(socket.AF_INET, socket.AF_INET6)):
    """Fill `tally` (a SocketTally) from the kernel for the given idiag_states mask."""
    sock = open_diag_socket()
    try:
        for seq, family in enumerate(families, 1):
            run_dump(sock, family, states, tally.add_buffer, seq=seq)
    finally:
        sock.close()
    return tally


def netlink_timewait_destinations(low, high, families=(socket.AF_INET, socket.AF_INET6),
                                  kernel_filter=True):
    """{family: Counter(raw key: count)} of TIME_WAIT sockets with a local port in range.

    The lean path behind the per-destination breakdown: the kernel sends
    TIME_WAIT sockets with a local port in [low, high] only (state mask and a
    port-range filter program), and nothing but a Counter of raw key bytes is
    built. With `kernel_filter` false, or when the kernel rejects the filter,
    the port range is applied here instead.
    """
    in_range = port_table(low, high)
    bytecode = port_range_bytecode(low, high) if kernel_filter else b""
    result = {}
    sock = open_diag_socket()
    try:
        for seq, family in enumerate(families, 1):
            counter = Counter()
            uniform = Counter()

            # Defaults bind this iteration's counters (ruff B023); each dump gets fresh ones.
            def consume(buf, length, counter=counter, uniform=uniform):  # pylint: disable=dangerous-default-value
                if bytecode and count_uniform_records(buf, length, uniform):
                    return False
                return count_timewait_buffer(buf, length, in_range, counter)[1]

            try:
                run_dump(sock, family, 1 << TIME_WAIT, consume, seq=seq, bytecode=bytecode)
            except NetlinkUnavailable:
                if not bytecode:
                    raise
                return netlink_timewait_destinations(low, high, families, False)
            for (key,), count in uniform.items():
                counter[key] += count
            result[family] = counter
    finally:
        sock.close()
    return result


def netlink_connections_into(tally, families=(socket.AF_INET, socket.AF_INET6)):
    """Add every socket but the listeners to `tally`: one dump per family.

    TIME_WAIT replies are counted through the fixed-record path, the rest
    through the general walk (count_mixed_buffer). All TIME_WAIT sockets count
    per family; those whose local port is set in `tally.in_range` also count
    towards their destination.
    """
    sock = open_diag_socket()
    try:
        for seq, family in enumerate(families, 1):
            counter = Counter()
            seen = [0]

            # Defaults bind this iteration's counters (ruff B023); each dump gets fresh ones.
            def consume(buf, length, counter=counter, seen=seen):  # pylint: disable=dangerous-default-value
                messages, done = count_mixed_buffer(buf, length, tally, counter)
                seen[0] += messages
                return done

            run_dump(sock, family, ALL_STATES & ~(1 << LISTEN), consume, seq=seq)
            tally.states.setdefault(family, Counter())[TIME_WAIT] += seen[0]
            tally.messages += seen[0]
            for key, count in counter.items():
                tally.destinations.setdefault((family, key), Counter())[TIME_WAIT] += count
    finally:
        sock.close()
    return tally


def families_in_use(sockstat, sockstat6):
    """The address families worth a dump, from /proc/net/sockstat{,6} text.

    `inuse` counts the full IPv4 (sockstat) and IPv6 (sockstat6) TCP sockets of
    the reading process's namespace, listeners included; `tw` its TIME_WAIT
    ones of both families (were it machine-wide it would only be larger). A
    family with no full socket while nothing is in TIME_WAIT has nothing to
    find. Both families when a line or field is not there.
    """
    both = (socket.AF_INET, socket.AF_INET6)
    counts = {}
    for text, label, family in ((sockstat, "TCP:", socket.AF_INET),
                                (sockstat6, "TCP6:", socket.AF_INET6)):
        line = next((line.split() for line in text.splitlines()
                     if line.startswith(label + " ")), None)
        if line is None:
            return both
        fields = dict(zip(line[1::2], line[2::2]))
        try:
            counts[family] = int(fields["inuse"])
            if family == socket.AF_INET:
                timewait = int(fields["tw"])
        except (KeyError, ValueError):
            return both
    if timewait:
        return both
    return tuple(family for family in both if counts[family])


# /proc/net/tcp and tcp6 fallback.


def _proc_address(text, family):
    """16 network-order bytes from the kernel's hex address (native-order 32-bit words)."""
    if family == socket.AF_INET:
        return struct.pack("=I", int(text, 16)) + bytes(12)
    return struct.pack("=4I", *(int(text[i:i + 8], 16) for i in range(0, 32, 8)))


def parse_proc_net_tcp(text, family, tally):
    """Add every socket of a /proc/net/tcp (or tcp6) table to `tally`.

    Pure: `text` is the file's content. Lines that do not parse are skipped and
    counted; the count is returned so callers can warn.
    """
    bad = 0
    states = tally.states.setdefault(family, Counter())
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 4:
            if line.strip():
                bad += 1
            continue
        try:
            local_addr, local_port = fields[1].split(":")
            remote_addr, remote_port = fields[2].split(":")
            state = int(fields[3], 16)
            sport = int(local_port, 16)
            dport = int(remote_port, 16)
            src = _proc_address(local_addr, family)
            dst = _proc_address(remote_addr, family)
        except (ValueError, struct.error):
            bad += 1
            continue
        tally.messages += 1
        states[state] += 1
        if state == LISTEN:
            tally.listeners.append((family, src, sport))
        elif state != CLOSE and tally.in_range[sport]:
            key = (family, dport.to_bytes(2, "big") + src + dst)
            per_state = tally.destinations.get(key)
            if per_state is None:
                per_state = tally.destinations[key] = Counter()
            per_state[state] += 1
    return bad


def proc_tally(tally, proc="/proc", states=ALL_STATES):
    """Fill `tally` from <proc>/net/tcp and tcp6, keeping only sockets in `states`.

    Returns a list of warnings (a missing tcp6 table is normal without IPv6).
    """
    warnings = []
    texts = []
    for name, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        path = os.path.join(proc, "net", name)
        try:
            with open(path, encoding="ascii", errors="replace") as handle:
                text = handle.read()
        except OSError as exc:
            warnings.append("cannot read %s: %s" % (path, exc.strerror or exc))
            continue
        texts.append((path, family, text))
    # Ports with a listener are not outgoing connections: find them first.
    listening = set()
    for _path, _family, text in texts:
        listening.update(listening_ports_proc(text))
    in_range = tally.in_range
    if listening:
        table = bytearray(in_range)
        for port in listening:
            table[port] = 0
        in_range = bytes(table)
    tally.tables += len(texts)
    for path, family, text in texts:
        part = SocketTally()
        part.in_range = in_range
        bad = parse_proc_net_tcp(text, family, part)
        if bad:
            warnings.append("%s: %d line(s) did not parse" % (path, bad))
        merge_tally(tally, part, states)
    return warnings


def listening_ports_proc(text):
    """Local ports of LISTEN (0A) sockets in a /proc/net/tcp table."""
    ports = set()
    for line in text.splitlines()[1:]:
        fields = line.split(None, 4)
        if len(fields) >= 4 and fields[3] == "0A" and ":" in fields[1]:
            try:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
            except ValueError:
                continue
    return ports


def merge_tally(into, part, states=ALL_STATES):
    """Add `part` to `into`, keeping only sockets whose state is in the `states` mask."""
    for family, counts in part.states.items():
        target = into.states.setdefault(family, Counter())
        for state, count in counts.items():
            if states & (1 << state):
                target[state] += count
    for key, per_state in part.destinations.items():
        kept = Counter({s: n for s, n in per_state.items() if states & (1 << s)})
        if kept:
            into.destinations.setdefault(key, Counter()).update(kept)
    if states & (1 << LISTEN):
        into.listeners.extend(part.listeners)
    into.messages += part.messages


# From raw tallies to facts.


def state_counts(tally):
    """{'ipv4': {...}, 'ipv6': {...}, 'total': {...}} keyed by state name, zeros included."""
    names = [name for number, name in sorted(TCP_STATES.items()) if number != NEW_SYN_RECV]
    result = {}
    total = dict.fromkeys(names, 0)
    for label, family in (("ipv4", socket.AF_INET), ("ipv6", socket.AF_INET6)):
        counts = dict.fromkeys(names, 0)
        for state, count in tally.states.get(family, {}).items():
            name = TCP_STATES.get(state, "unknown")
            if state == NEW_SYN_RECV:
                name = "syn_recv"
            if name in counts:
                counts[name] += count
                total[name] += count
        result[label] = counts
    result["total"] = total
    return result


_V4_MAPPED = bytes(10) + b"\xff\xff"


def summarise_destinations(raw, usable, top=20):
    """Group raw destination counters by remote address and port.

    `raw` maps (family, 34 raw bytes: dport, src, dst) to a Counter of state
    numbers. Sockets from several local addresses to one destination are
    merged, and so are IPv4-mapped IPv6 ones with their IPv4 address.
    Returns (top entries sorted by total then address, number of
    destinations). Only the grouped keys are decoded.
    """
    grouped = {}
    for (family, key), per_state in raw.items():
        port = key[0] << 8 | key[1]
        if family == socket.AF_INET6 and key[18:30] == _V4_MAPPED:
            # An IPv6 socket talking to ::ffff:a.b.c.d draws on the same pool
            # as an IPv4 one to a.b.c.d: group them under the IPv4 address.
            address = decode_address(socket.AF_INET, key[30:34])
        else:
            address = decode_address(family, key[18:34])
        entry = grouped.get((address, port))
        if entry is None:
            entry = grouped[(address, port)] = {
                "address": address, "port": port,
                "time_wait": 0, "established": 0, "total": 0}
        entry["time_wait"] += per_state.get(TIME_WAIT, 0)
        entry["established"] += per_state.get(ESTABLISHED, 0)
        entry["total"] += sum(per_state.values())
    ordered = sorted(grouped.values(), key=lambda e: (-e["total"], e["address"], e["port"]))
    for entry in ordered[:top]:
        entry["utilisation"] = round(entry["total"] / usable, 4) if usable else None
    return ordered[:top], len(ordered)


def timewait_raw(counters):
    """Turn netlink_timewait_destinations() output into summarise_destinations() input."""
    raw = {}
    for family, counter in counters.items():
        for key, count in counter.items():
            raw[(family, key)] = Counter({TIME_WAIT: count})
    return raw


def summarise_listeners(listeners, low, high, reserved_spans):
    """Listening sockets with a port in [low, high], each flagged `reserved`."""
    seen = set()
    result = []
    for family, raw, port in listeners:
        if not low <= port <= high:
            continue
        address = decode_address(family, raw)
        if (address, port) in seen:
            continue
        seen.add((address, port))
        reserved = any(span_low <= port <= span_high for span_low, span_high in reserved_spans)
        result.append({
            "address": address, "port": port,
            "family": "ipv4" if family == socket.AF_INET else "ipv6",
            "reserved": reserved})
    result.sort(key=lambda e: (e["port"], e["family"], e["address"]))
    return result


def parse_netstat_counter(text, name):
    """Value of one counter (e.g. TCPTimeWaitOverflow) from /proc/net/netstat text, or None.

    The file is pairs of lines: `TcpExt: Name1 Name2 ...` then `TcpExt: 1 2 ...`.
    """
    lines = text.splitlines()
    for header, values in zip(lines[::2], lines[1::2]):
        names = header.split()
        numbers = values.split()
        if not names or not numbers or names[0] != numbers[0]:
            continue
        if name in names[1:]:
            index = names.index(name)
            try:
                return int(numbers[index])
            except (IndexError, ValueError):
                return None
    return None
