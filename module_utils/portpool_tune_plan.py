# -*- coding: utf-8 -*-
# Copyright: portpool contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure decisions for tuning the ephemeral-port pool.

Validation of the desired settings, the plan (what to write where), the
rendered sysctl.d file, the diff and the boot-time override check (on top of
portpool_persisted, which models systemd-sysctl's precedence). Nothing
here touches the system: callers read files and /proc/sys and pass the text in.
"""

from __future__ import annotations

import os

from .portpool_persisted import (
    SYSCTL_CONF,
    parse_sysctl_conf,
    resolve_persisted,
)
from .portpool_sysctl import (
    PORT_MAX,
    TUNED,
    format_reserved_ports,
    merge_spans,
    normalise_value,
    parse_reserved_ports,
    pool_size,
    same_parity,
    to_text,
)

# Short names users write, mapped to the dotted sysctl names, in apply order: the
# tuned keys of portpool_sysctl.KEYS.
MANAGED = TUNED
DOTTED_TO_SHORT = {dotted: short for short, dotted in MANAGED.items()}

# Keys refused outright, with the reason the operator needs.
REFUSED = {
    "tcp_tw_recycle": (
        "tcp_tw_recycle was removed from Linux in 4.12: it dropped SYNs from clients "
        "behind NAT (their timestamps are not monotonic per address), and a file that "
        "still sets it makes `sysctl -p` fail on newer kernels; use tcp_tw_reuse instead"),
    "tcp_fin_timeout": (
        "tcp_fin_timeout does not shorten TIME_WAIT (a fixed 60 s in the kernel); it only "
        "bounds orphaned FIN_WAIT_2 sockets, so portpool does not manage it"),
}

# (low, high) bounds for the single-integer keys, as the kernel accepts them.
INT_BOUNDS = {
    "tcp_tw_reuse": (0, 2),
    "tcp_tw_reuse_delay": (1, 60000),
    "tcp_timestamps": (0, 2),
    "tcp_max_tw_buckets": (0, 2147483647),
}

STATE_VERSION = 1


FILE_HEADER = (
    "# Written by portpool (roles/portpool_tune, module portpool_settings).\n"
    "# Do not edit: the next tune run rewrites it; playbooks/rollback.yml restores\n"
    "# what was here before. Values are unquoted, as systemd-sysctl requires.\n"
)


# Names distributions ship in the later sysctl.d directories. An /etc/sysctl.d file of the
# same name replaces that file at boot (its settings are lost), or replaces the
# 99-sysctl.conf link to /etc/sysctl.conf, so portpool never takes one of them.
DISTRO_FILE_NAMES = frozenset((
    "99-sysctl.conf", "99-protect-links.conf", "50-default.conf", "50-pid-max.conf",
    "50-coredump.conf", "50-bubblewrap.conf", "10-network-security.conf",
))
FILE_NAME_MAX = 200


class SettingsError(ValueError):
    """Bad desired settings; the message names the variable."""


def _strict_int(value, label):
    """An int from an int or a string of digits; bools, floats and the rest are refused."""
    if isinstance(value, bool):
        raise SettingsError("%s must be an integer, got the boolean %r" % (label, value))
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.strip()
        if text == "":
            raise SettingsError("%s is empty" % label)
        digits = text[1:] if text.startswith("-") else text
        if digits.isdigit() and digits.isascii():
            return int(text)
    raise SettingsError("%s must be an integer, got %r" % (label, value))


def _port_range(value, label, min_pool_size):
    if isinstance(value, (list, tuple)):
        fields = list(value)
    elif isinstance(value, str):
        if value.strip() == "":
            raise SettingsError("%s is empty; write it as 'low high', e.g. '32768 60999'" % label)
        fields = value.split()
    else:
        raise SettingsError("%s must be 'low high' or [low, high], got %r" % (label, value))
    if len(fields) != 2:
        raise SettingsError("%s must be two integers 'low high', got %r" % (label, value))
    low = _strict_int(fields[0], "%s low end" % label)
    high = _strict_int(fields[1], "%s high end" % label)
    if low < 1:
        raise SettingsError("%s low end %d must be at least 1" % (label, low))
    if high > PORT_MAX:
        raise SettingsError("%s high end %d is above %d" % (label, high, PORT_MAX))
    if low >= high:
        raise SettingsError("%s low end %d must be below the high end %d" % (label, low, high))
    if high - low + 1 < min_pool_size:
        raise SettingsError(
            "%s gives %d ports, below portpool_tune_min_pool_size %d"
            % (label, high - low + 1, min_pool_size))
    return "%d %d" % (low, high)


def _reserved(value, label):
    if isinstance(value, (list, tuple)):
        items = []
        for item in value:
            if isinstance(item, bool):
                raise SettingsError("%s entry %r is not a port" % (label, item))
            items.append(str(item))
        text = ",".join(items)
    elif isinstance(value, (int, str)) and not isinstance(value, bool):
        text = str(value)
    else:
        raise SettingsError("%s must be like '8080,9000-9010' or a list, got %r" % (label, value))
    allowed = set("0123456789,- \t")
    if any(char not in allowed for char in text):
        raise SettingsError(
            "%s may hold only ports, commas and hyphens ('8080,9000-9010'), got %r"
            % (label, value))
    try:
        spans = parse_reserved_ports(text)
    except ValueError as exc:
        raise SettingsError("%s: %s" % (label, exc)) from None
    return format_reserved_ports(spans)


def source_of(key, layers):
    """The variable that set `key` last, among ordered (name, dict) layers."""
    found = None
    for name, layer in layers or ():
        if isinstance(layer, dict) and key in layer:
            found = name
    return found or "portpool_tune_settings"


def validate_settings(settings, layers=None, min_pool_size=1):
    """Check desired settings; return (values by dotted name, errors, warnings).

    `settings` maps short names (ip_local_port_range, tcp_tw_reuse, ...) to
    values; None means "not managed". `layers` is the ordered list of
    (variable name, dict) the settings were merged from, used only to name
    the variable that set a bad value. Every message names that variable.
    Values are data: anything that is not the expected integers is refused.
    """
    errors = []
    warnings = []
    values = {}
    if not isinstance(settings, dict):
        return {}, ["portpool_tune_settings must be a dict of setting: value, got %r"
                    % (settings,)], []
    for key in sorted(settings, key=str):
        value = settings[key]
        label = "%s.%s" % (source_of(key, layers), key)
        if key in REFUSED:
            if value is not None:
                errors.append("%s is refused: %s" % (label, REFUSED[key]))
            continue
        if key not in MANAGED:
            errors.append("%s is not a setting portpool manages (known: %s)"
                          % (label, ", ".join(MANAGED)))
            continue
        if value is None:
            continue
        try:
            if key == "ip_local_port_range":
                text = _port_range(value, label, min_pool_size)
                low, high = (int(part) for part in text.split())
                if same_parity(low, high):
                    warnings.append(
                        "%s: both ends are %s; the kernel prefers different parity (connect() "
                        "takes even ports first, bind() odd ones)"
                        % (label, "even" if low % 2 == 0 else "odd"))
            elif key == "ip_local_reserved_ports":
                text = _reserved(value, label)
            else:
                number = _strict_int(value, label)
                low, high = INT_BOUNDS[key]
                if not low <= number <= high:
                    raise SettingsError("%s must be between %d and %d, got %d"
                                        % (label, low, high, number))
                text = str(number)
        except SettingsError as exc:
            errors.append(str(exc))
            continue
        values[MANAGED[key]] = text
    if MANAGED["ip_local_reserved_ports"] in values:
        # Without the host's range, the widest one the kernel allows: a reservation
        # that leaves too few ports even there is wrong on every host.
        widest = {MANAGED["ip_local_port_range"]: "1 %d" % PORT_MAX}
        too_small = pool_error(values, widest, min_pool_size)
        if too_small:
            errors.append(too_small)
    if "net.ipv4.tcp_tw_reuse" in values and values.get("net.ipv4.tcp_timestamps") == "0":
        warnings.append("tcp_tw_reuse needs tcp_timestamps on at both ends; with "
                        "tcp_timestamps 0 reuse never takes effect")
    return values, errors, warnings


def validate_fleet(hosts, min_pool_size=1):
    """Validate every host's settings on the controller.

    `hosts` maps host name to {"settings": dict, "layers": [[name, dict], ...]}.
    Returns (values by host, errors, warnings); messages start with the host.
    """
    by_host, errors, warnings = {}, [], []
    for host in sorted(hosts):
        entry = hosts[host] or {}
        values, host_errors, host_warnings = validate_settings(
            entry.get("settings"), entry.get("layers"), min_pool_size)
        by_host[host] = values
        errors.extend("%s: %s" % (host, message) for message in host_errors)
        warnings.extend("%s: %s" % (host, message) for message in host_warnings)
    return by_host, errors, warnings


def file_name_error(name):
    """Why `name` cannot be portpool's sysctl.d file name, or None when it can."""
    label = "portpool_tune_file_name %r" % (name,)
    if not isinstance(name, str) or not name:
        return label + " must be a plain NN-name.conf file name"
    if (len(name) > FILE_NAME_MAX or name.startswith(".") or not name.endswith(".conf")
            or not all(char.isascii() and (char.isalnum() or char in "-_.") for char in name)):
        return label + (" must be a plain NN-name.conf file name (ASCII letters, digits, "
                        "'-', '_' and '.', at most %d characters)" % FILE_NAME_MAX)
    if name in DISTRO_FILE_NAMES or name.startswith("10-"):
        return label + (" is a name distributions ship under /usr/lib/sysctl.d (or the "
                        "99-sysctl.conf link to /etc/sysctl.conf); a file of that name in "
                        "/etc/sysctl.d replaces it at boot and its settings are lost: "
                        "choose a portpool-specific name such as 60-portpool.conf")
    return None


def file_content_errors(text, label):
    """Why a sysctl.d file's text is not one portpool may write back, as a list.

    portpool only ever saves and restores a file that holds comments and managed
    keys with values it accepts itself; anything else would be someone else's
    settings, or a planted file.
    """
    entries, bad_lines = parse_sysctl_conf(text)
    errors = ["%s line %d is not a `key = value` line" % (label, number)
              for number, _line in bad_lines]
    for entry in entries:
        short = DOTTED_TO_SHORT.get(entry["key"])
        if short is None or entry["glob"] or entry["value"] is None:
            errors.append("%s line %d sets %s, which portpool does not manage"
                          % (label, entry["line"], entry["key"]))
            continue
        value_errors = validate_settings({short: entry["value"]}, [[label, {short: 1}]])[1]
        errors.extend(value_errors)
    return errors


def pool_error(target, current, min_pool_size):
    """Why the pool the target leaves is too small, or None.

    The pool is always (target or current range) minus (target or current reserved
    ports): managing only one of the two can empty it as surely as both can.
    """
    range_key = MANAGED["ip_local_port_range"]
    reserved_key = MANAGED["ip_local_reserved_ports"]
    if range_key not in target and reserved_key not in target:
        return None
    range_text = target.get(range_key, current.get(range_key))
    try:
        low, high = (int(part) for part in (range_text or "").split())
        spans = parse_reserved_ports(target.get(reserved_key, current.get(reserved_key)) or "")
    except ValueError:
        return None
    usable = pool_size(low, high, spans)["usable"]
    if usable >= min_pool_size:
        return None
    names = [DOTTED_TO_SHORT[key] for key in (range_key, reserved_key) if key in target]
    return ("portpool_tune_settings.%s leaves %d usable ports in the range %d-%d after "
            "reserved ports, below portpool_tune_min_pool_size %d"
            % (" and ".join(names), usable, low, high, min_pool_size))


def plan(desired, current, *, unprivileged_start=None, listeners=(), protect=True,
         min_pool_size=1, optional=()):
    """Decide the target runtime values for one host.

    desired: dotted name -> canonical text (from validate_settings).
    current: dotted name -> runtime text, or None when the kernel lacks the key.
    Returns a dict: target (dotted -> text, managed keys only), changes (keys whose
    runtime value differs), reserved_added (ports protected), skipped (optional
    keys the kernel lacks), input_errors (bad for this host: stop everything),
    host_errors (this host cannot take them), warnings.
    """
    result = {"target": {}, "changes": [], "reserved_added": [], "skipped": [],
              "input_errors": [], "host_errors": [], "warnings": []}
    target = dict(desired)
    optional_dotted = {MANAGED.get(name, name) for name in optional}
    for key in list(target):
        if current.get(key) is None:
            if key in optional_dotted:
                result["skipped"].append(key)
                result["warnings"].append(
                    "%s: this kernel lacks it; not managed on this host" % key)
                del target[key]
            else:
                result["host_errors"].append(
                    "%s: this kernel has no such key (/proc/sys/%s is missing)"
                    % (DOTTED_TO_SHORT.get(key, key), key.replace(".", "/")))
    range_key = MANAGED["ip_local_port_range"]
    reserved_key = MANAGED["ip_local_reserved_ports"]
    if range_key in target:
        low, high = (int(part) for part in target[range_key].split())
        if unprivileged_start is not None and low < unprivileged_start:
            result["input_errors"].append(
                "portpool_tune_settings.ip_local_port_range low end %d is below this host's "
                "net.ipv4.ip_unprivileged_port_start %d (the kernel refuses it)"
                % (low, unprivileged_start))
        base_text = target.get(reserved_key, current.get(reserved_key)) or ""
        spans = parse_reserved_ports(base_text)
        covered = [port for port in listeners if low <= port <= high] if protect else []
        if covered:
            # Managed whenever a listener needs it, so a second run renders the same file.
            added = [port for port in covered if not any(a <= port <= b for a, b in spans)]
            spans = merge_spans(spans + [[port, port] for port in covered])
            target[reserved_key] = format_reserved_ports(spans)
            result["reserved_added"] = added
            if added:
                result["warnings"].append(
                    "listening port(s) %s lie inside the new range %d-%d: added to "
                    "ip_local_reserved_ports" % (", ".join(map(str, added)), low, high))
    too_small = pool_error(target, current, min_pool_size)
    if too_small:
        result["input_errors"].append(too_small)
    buckets = MANAGED["tcp_max_tw_buckets"]
    if buckets in target and current.get(buckets) not in (None, ""):
        try:
            if int(target[buckets]) < int(current[buckets]):
                result["warnings"].append(
                    "tcp_max_tw_buckets lowered from %s to %s: beyond it sockets skip TIME_WAIT; "
                    "the kernel documentation advises never to lower it"
                    % (current[buckets], target[buckets]))
        except ValueError:
            pass
    result["target"] = {key: target[key] for key in MANAGED.values() if key in target}
    result["changes"] = [key for key in result["target"]
                         if normalise_value(current.get(key)) != result["target"][key]]
    return result


def render_file(target):
    """The sysctl.d file for the managed keys: a header, then `key = value` lines."""
    lines = [FILE_HEADER]
    for key in MANAGED.values():
        if key not in target:
            continue
        value = normalise_value(target[key])
        if value == "":
            # An empty value is what a booting kernel has already; systemd-sysctl and
            # procps disagree on empty assignments, so none is written.
            lines.append("# %s: none reserved (the kernel's default)\n" % key)
        else:
            lines.append("%s = %s\n" % (key, value))
    return "".join(lines)


def runtime_text(values):
    """`key = value` lines for a diff of runtime values."""
    return "".join("%s = %s\n" % (key, "<absent>" if value is None else value)
                   for key, value in values.items())


def compute_diff(path, file_before, file_after, runtime_before, runtime_after):
    """Ansible diff entries: the file before/after and the runtime values before/after."""
    entries = []
    if file_before != file_after:
        entries.append({
            "before_header": path if file_before is not None else "%s (absent)" % path,
            "after_header": path if file_after is not None else "%s (absent)" % path,
            "before": file_before or "",
            "after": file_after or "",
        })
    keys = [key for key in runtime_after if runtime_before.get(key) != runtime_after[key]]
    if keys:
        entries.append({
            "before_header": "/proc/sys (runtime)",
            "after_header": "/proc/sys (runtime)",
            "before": runtime_text({key: runtime_before.get(key) for key in keys}),
            "after": runtime_text({key: runtime_after[key] for key in keys}),
        })
    return entries


def boot_files_with_ours(files, ours):
    """The boot reading order once our file exists.

    `files` is the order portpool_persisted.list_config_files gives (sorted by
    file name across the sysctl.d directories, /etc/sysctl.conf last when read).
    Ours, in /etc/sysctl.d, masks a file of the same name in any later directory.
    """
    tail = [SYSCTL_CONF] if files and files[-1] == SYSCTL_CONF else []
    name = os.path.basename(ours)
    body = [path for path in files[:len(files) - len(tail)]
            if os.path.basename(path) != name]
    body.append(ours)
    body.sort(key=os.path.basename)
    return body + tail


def find_overrides(ours, order, contents, keys):
    """Files that would win over ours at boot for one of `keys`, as [{key, file}].

    order: paths in reading order (boot_files_with_ours); contents: path -> text,
    ours included with the content it will have (unreadable files left out).
    Follows systemd-sysctl: later assignments win, globs apply only to keys with
    no explicit assignment (portpool_persisted.resolve_persisted).
    """
    parsed = [(path, parse_sysctl_conf(contents[path])[0]) for path in order if path in contents]
    winners = resolve_persisted(parsed, keys)
    found = []
    for key in keys:
        winner = winners.get(key)
        if winner is not None and winner["file"] != ours:
            found.append({"key": key, "file": winner["file"]})
    return found


def facts_mismatches(expected, sysctl_facts):
    """Keys whose portpool_facts value differs from the expected runtime text."""
    mismatches = []
    for key, want in expected.items():
        short = DOTTED_TO_SHORT.get(key, key)
        got = to_text(key, (sysctl_facts or {}).get(short))
        if got != normalise_value(want):
            mismatches.append({"key": key, "expected": want, "actual": got,
                               "source": "portpool_facts"})
    return mismatches


def probe_mismatches(runtime, probe):
    """What a quick portpool_probe measured that the applied settings do not promise.

    runtime: dotted key -> text as applied (range and reserved ports read back);
    probe: the module's `probe` result. Checks that the probe saw our range and
    the usable pool it gives, and that the measurement matched it.
    """
    mismatches = []
    text = runtime.get("net.ipv4.ip_local_port_range")
    if not text or not isinstance(probe, dict):
        return mismatches
    low, high = (int(part) for part in text.split())
    spans = parse_reserved_ports(runtime.get("net.ipv4.ip_local_reserved_ports") or "")
    usable = pool_size(low, high, spans)["usable"]
    if list(probe.get("range") or []) != [low, high]:
        mismatches.append({"key": "probe range", "expected": [low, high],
                           "actual": probe.get("range"), "source": "portpool_probe"})
    if probe.get("expected") != usable:
        mismatches.append({"key": "probe expected pool", "expected": usable,
                           "actual": probe.get("expected"), "source": "portpool_probe"})
    if probe.get("matches_expected") is not True:
        mismatches.append({"key": "probe measurement", "expected": "matches the pool",
                           "actual": (probe.get("hold") or {}).get("established"),
                           "source": "portpool_probe"})
    return mismatches
