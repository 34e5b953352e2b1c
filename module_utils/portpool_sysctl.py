# -*- coding: utf-8 -*-
# Copyright: portpool contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure helpers for the sysctl values that shape the ephemeral-port pool.

Shared by every portpool module. Nothing here touches the system except
read_sysctl(), which takes the /proc/sys root as an argument so tests can point
it at a fixture tree.
"""

from __future__ import annotations

import collections
import errno
import os

PORT_MIN = 1
PORT_MAX = 65535

# The one key table: every other list of sysctl names in portpool is a view of it.
# kind says how a value is typed: RANGE `low high` -> [low, high]; PORT_LIST
# `8080,9000-9010` -> [[low, high], ...] merged; INT -> int. namespaced: the key
# belongs to a network namespace (net.*); fs.* are machine-wide. tuned: the tune
# role may write it (its apply order is the table's order).
RANGE = "range"
PORT_LIST = "port list"
INT = "int"


# (short, dotted, kind, namespaced, tuned, probe) for one sysctl portpool knows.
# `probe`: how the probe's lab uses the host's value: "required" (copied, and
# the probe cannot run without it), "copied", or "" (not used).
SysctlKey = collections.namedtuple("SysctlKey", "short dotted kind namespaced tuned probe")


# In the order reports show them (and the lab copies them). The short name is the
# dotted name's leaf, with `file-max` made a valid identifier (`file_max`).
KEYS = (
    SysctlKey("ip_local_port_range", "net.ipv4.ip_local_port_range", RANGE, True, True,
              "required"),
    SysctlKey("ip_local_reserved_ports", "net.ipv4.ip_local_reserved_ports", PORT_LIST,
              True, True, "copied"),
    SysctlKey("ip_unprivileged_port_start", "net.ipv4.ip_unprivileged_port_start", INT,
              True, False, "required"),
    SysctlKey("tcp_tw_reuse", "net.ipv4.tcp_tw_reuse", INT, True, True, "required"),
    SysctlKey("tcp_tw_reuse_delay", "net.ipv4.tcp_tw_reuse_delay", INT, True, True, "copied"),
    SysctlKey("tcp_timestamps", "net.ipv4.tcp_timestamps", INT, True, True, "required"),
    SysctlKey("tcp_max_tw_buckets", "net.ipv4.tcp_max_tw_buckets", INT, True, True, "copied"),
    SysctlKey("tcp_fin_timeout", "net.ipv4.tcp_fin_timeout", INT, True, False, ""),
    SysctlKey("tcp_tw_recycle", "net.ipv4.tcp_tw_recycle", INT, True, False, ""),
    SysctlKey("somaxconn", "net.core.somaxconn", INT, True, False, ""),
    SysctlKey("nr_open", "fs.nr_open", INT, False, False, ""),
    SysctlKey("file_max", "fs.file-max", INT, False, False, ""),
)
_BY_NAME = dict([(key.short, key) for key in KEYS] + [(key.dotted, key) for key in KEYS])

# Views of KEYS.
KNOWN_KEYS = tuple(key.dotted for key in KEYS)
NET_KEYS = tuple(key.dotted for key in KEYS if key.namespaced)
SHORT_NAMES = tuple(key.short for key in KEYS)
TUNED = {key.short: key.dotted for key in KEYS if key.tuned}
# What the probe's lab copies from the host, and what it cannot run without.
PROBE_COPIED = tuple(key.dotted for key in KEYS if key.probe)
PROBE_REQUIRED = tuple(key.dotted for key in KEYS if key.probe == "required")


def sysctl_key(name):
    """The SysctlKey for a short or dotted name, or None when portpool does not know it."""
    return _BY_NAME.get(str(name))


def short_name(name):
    """`net.ipv4.tcp_tw_reuse` -> `tcp_tw_reuse`; short and unknown names pass through."""
    key = sysctl_key(name)
    return key.short if key else str(name)


def dotted_name(name):
    """`tcp_tw_reuse` -> `net.ipv4.tcp_tw_reuse`; dotted and unknown names pass through."""
    key = sysctl_key(name)
    return key.dotted if key else str(name)


def kind_of(name):
    """RANGE, PORT_LIST or INT; a name portpool does not know counts as INT."""
    key = sysctl_key(name)
    return key.kind if key else INT


def normalise_value(text):
    """Collapse whitespace the way the kernel reads a value back.

    `32768\t60999`, `32768 60999` and ` 32768  60999\n` are all the same value.
    """
    if text is None:
        return None
    return " ".join(str(text).split())


def sysctl_path(name, root="/proc/sys"):
    """Map `net.ipv4.tcp_tw_reuse` to `<root>/net/ipv4/tcp_tw_reuse`.

    Dots separate path components, as in sysctl(8); a slash-separated name is
    accepted as is.
    """
    if not name or name.startswith(("/", ".")) or ".." in name:
        raise ValueError("invalid sysctl name %r" % (name,))
    parts = name.split("/") if "/" in name else name.split(".")
    return os.path.join(root, *parts)


def read_sysctl(name, root="/proc/sys"):
    """Return the normalised value of a sysctl, or None when the kernel lacks it.

    Other read errors (EACCES, EIO) are raised: a missing key and an unreadable
    one mean different things to a report.
    """
    try:
        with open(sysctl_path(name, root), encoding="ascii") as handle:
            return normalise_value(handle.read())
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return None
        raise


def parse_int(text, name="value"):
    """Parse a decimal integer, rejecting anything else with a clear message."""
    value = normalise_value(text)
    if value is None or value == "":
        raise ValueError("%s is empty" % name)
    digits = value[1:] if value.startswith("-") else value
    if not digits.isdigit() or not digits.isascii():
        raise ValueError("%s must be an integer, got %r" % (name, text))
    return int(value)


def parse_port_range(text):
    """Parse `ip_local_port_range` text into (low, high).

    Accepts any whitespace between the two numbers. Raises ValueError for
    anything the kernel would not hold: non-integers, ports out of 1..65535,
    low above high.
    """
    value = normalise_value(text)
    fields = value.split(" ") if value else []
    if len(fields) != 2:
        raise ValueError(
            "ip_local_port_range must be two integers 'low high', got %r" % (text,))
    low = parse_int(fields[0], "ip_local_port_range low end")
    high = parse_int(fields[1], "ip_local_port_range high end")
    for port in (low, high):
        if not PORT_MIN <= port <= PORT_MAX:
            raise ValueError(
                "ip_local_port_range ports must lie in %d..%d, got %d"
                % (PORT_MIN, PORT_MAX, port))
    if low > high:
        raise ValueError(
            "ip_local_port_range low end %d is above the high end %d" % (low, high))
    return low, high


def parse_reserved_ports(text):
    """Parse `ip_local_reserved_ports` (`8080,9000-9010`) into sorted merged [low, high] pairs.

    An empty value means nothing is reserved. Overlapping and adjacent entries
    are merged, as the kernel keeps a bitmap and prints it back merged.
    """
    value = normalise_value(text)
    if not value:
        return []
    spans = []
    for item in value.replace(" ", "").split(","):
        if not item:
            raise ValueError(
                "ip_local_reserved_ports has an empty entry in %r" % (text,))
        if "-" in item:
            low_text, _dash, high_text = item.partition("-")
            low = parse_int(low_text, "reserved port")
            high = parse_int(high_text, "reserved port")
        else:
            low = high = parse_int(item, "reserved port")
        for port in (low, high):
            if not 0 <= port <= PORT_MAX:
                raise ValueError(
                    "reserved port %d is outside 0..%d" % (port, PORT_MAX))
        if low > high:
            raise ValueError(
                "reserved port span %r runs backwards" % (item,))
        spans.append([low, high])
    return merge_spans(spans)


def merge_spans(spans):
    """Sort [low, high] spans and merge overlapping or adjacent ones."""
    merged = []
    for low, high in sorted(spans):
        if merged and low <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], high)
        else:
            merged.append([low, high])
    return merged


def format_reserved_ports(spans):
    """Render spans the way the kernel prints them: `8080,9000-9010`."""
    parts = []
    for low, high in merge_spans([list(span) for span in spans]):
        parts.append(str(low) if low == high else "%d-%d" % (low, high))
    return ",".join(parts)


def reserved_in_range(spans, low, high):
    """Count reserved ports that fall inside [low, high]."""
    count = 0
    for span_low, span_high in spans:
        start = max(span_low, low)
        end = min(span_high, high)
        if start <= end:
            count += end - start + 1
    return count


def pool_size(low, high, reserved_spans=()):
    """Describe the per-destination pool a range and reservation give.

    Returns a dict with `low`, `high`, `size` (ports in the range),
    `reserved_in_range` and `usable` (what anonymous connect() can pick for one
    destination ip:port).
    """
    size = high - low + 1
    reserved = reserved_in_range(reserved_spans, low, high)
    return {
        "low": low,
        "high": high,
        "size": size,
        "reserved_in_range": reserved,
        "usable": size - reserved,
    }


def same_parity(low, high):
    """True when both ends share parity, which the kernel warns about since 4.6."""
    return (low % 2) == (high % 2)


def parse_kernel_version(release):
    """Turn `6.18.44-fc-v782` into [6, 18, 44]; missing parts are 0."""
    numbers = []
    for part in str(release).split("-", 1)[0].split(".")[:3]:
        digits = ""
        for char in part:
            if not char.isdigit():
                break
            digits += char
        numbers.append(int(digits) if digits else 0)
    while len(numbers) < 3:
        numbers.append(0)
    return numbers


# --------------------------------------------------------------------------- the codec

def from_text(name, text):
    """The typed value of sysctl text: [low, high], [[low, high], ...] or an int.

    None (an absent key) stays None. Raises ValueError, naming the key, for text
    the kernel would not hold.
    """
    if text is None:
        return None
    kind = kind_of(name)
    if kind == RANGE:
        return list(parse_port_range(text))
    if kind == PORT_LIST:
        return parse_reserved_ports(text)
    return parse_int(text, dotted_name(name))


def to_text(name, value):
    """A value as the kernel prints it back (whitespace-normalised), or None.

    Takes the typed value ([low, high], [[low, high], ...], 1) or text from a
    sysctl.d file (`32768\t60999`, `9000-9010, 8080`); both give the same text.
    Text that does not parse is only whitespace-normalised, so a bad value still
    reads as what was written.
    """
    if value is None:
        return None
    kind = kind_of(name)
    if kind == PORT_LIST:
        if isinstance(value, (list, tuple)):
            return format_reserved_ports(value)
        try:
            return format_reserved_ports(parse_reserved_ports(value))
        except ValueError:
            return normalise_value(value)
    if isinstance(value, (list, tuple)):
        return " ".join(str(item) for item in value)
    return normalise_value(value)


def _comparable(name, value):
    if isinstance(value, (list, tuple)):
        value = to_text(name, value)
    text = normalise_value(value)
    try:
        return from_text(name, text)
    except ValueError:
        return text


def same(name, left, right):
    """True when two values (typed or text) are the same setting to the kernel.

    `1024 65535` and `1024\t65535` are the same; so are `01` and `1`. Text that
    does not parse is compared whitespace-normalised.
    """
    return _comparable(name, left) == _comparable(name, right)
