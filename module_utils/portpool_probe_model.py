# -*- coding: utf-8 -*-
# Copyright: portpool contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure decisions of the portpool_probe module: no I/O, no sockets, no processes.

What the probe should find (expected counts, the measured window of a quick
run, the TIME_WAIT rate model), how it spreads the hold over processes, and in
which order the lab namespace's sysctls are written. Everything here is a
function of its arguments so unit tests can pin every case down.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import math

from .portpool_probe_partition import compact_ports, missing_verdict
from .portpool_sysctl import (
    PROBE_COPIED,
    PROBE_REQUIRED,
    normalise_value,
    parse_int,
    parse_port_range,
    parse_reserved_ports,
    pool_size,
)

MODES = ("lab", "host")
SCOPES = ("quick", "full")
DEFAULT_SAMPLE_PORTS = 1000
DEFAULT_TIMEOUT = 120
DEFAULT_CHURN_SECONDS = 1.5
MAX_CHURN_SECONDS = 300
MAX_TIMEOUT = 3600
# mode=host holds the host's own ports: much shorter limits.
MAX_HOST_TIMEOUT = 300
MAX_HOST_CHURN_SECONDS = 30
DEFAULT_HOST_DESTINATION = "127.0.0.5"
# TCP_TIMEWAIT_LEN: compile-time constant, tcp_fin_timeout does not change it.
TIME_WAIT_SECONDS = 60
# tcp_tw_reuse_delay default, and the fixed delay before the sysctl existed (6.14).
DEFAULT_REUSE_DELAY_MS = 1000
# Descriptors a hold worker keeps for itself (stdio, pipes, Python's own).
FD_RESERVE = 64
MAX_WORKERS = 64
# The lab listener's accept queue: raised inside the lab only, so that
# connections never wait for the listener to catch up.
LAB_SOMAXCONN = 65535

# Lab addresses: 198.18.0.1/15 is put on lo, which makes the whole /15 local
# (a loopback prefix route is of type local) with source 198.18.0.1, as a
# host with one address talking to several remote peers.
LAB_SOURCE = "198.18.0.1"
LAB_PREFIX_MASK = "255.254.0.0"
LAB_DESTINATIONS = {
    "hold": "198.18.0.2",
    "second": "198.18.0.3",
    "churn_remote": "198.18.0.4",
    "churn_loopback": "127.0.0.5",
}

# Host sysctls copied into the lab (all net.*, all per network namespace), and the
# ones it cannot run without: views of the one key table.
COPIED_KEYS = PROBE_COPIED
REQUIRED_KEYS = PROBE_REQUIRED

STOP_REASONS = ("EADDRNOTAVAIL", "EMFILE", "timeout", "cap")


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_options(params):
    """Return a list of messages for options that cannot work (empty when fine).

    Runs before anything is created: no socket, process or namespace exists
    when these messages reach the user.
    """
    errors = []
    mode = params.get("mode")
    scope = params.get("scope")
    if mode not in MODES:
        errors.append("mode must be one of %s, got %r" % (", ".join(MODES), mode))
    if scope not in SCOPES:
        errors.append("scope must be one of %s, got %r" % (", ".join(SCOPES), scope))
    sample = params.get("sample_ports")
    if sample is not None and (not _is_number(sample) or sample < 1):
        errors.append("sample_ports must be a positive integer, got %r" % (sample,))
    churn = params.get("churn_seconds")
    if churn is None or not _is_number(churn) or churn < 0 or churn > MAX_CHURN_SECONDS:
        errors.append("churn_seconds must lie in 0..%d (0 disables churn), got %r"
                      % (MAX_CHURN_SECONDS, churn))
    timeout = params.get("timeout")
    if timeout is None or not _is_number(timeout) or timeout <= 0 or timeout > MAX_TIMEOUT:
        errors.append("timeout must lie in 1..%d seconds, got %r" % (MAX_TIMEOUT, timeout))
    if mode == "host":
        # The host's own pool is held: keep that short whatever was asked.
        if _is_number(timeout) and timeout > MAX_HOST_TIMEOUT:
            errors.append("timeout must lie in 1..%d seconds in mode=host, got %r"
                          % (MAX_HOST_TIMEOUT, timeout))
        if _is_number(churn) and churn > MAX_HOST_CHURN_SECONDS:
            errors.append("churn_seconds must lie in 0..%d in mode=host, got %r"
                          % (MAX_HOST_CHURN_SECONDS, churn))
    cap = params.get("max_connections")
    if cap is not None and (not _is_number(cap) or cap < 1):
        errors.append("max_connections must be a positive integer, got %r" % (cap,))
    destination = params.get("destination")
    if destination is not None:
        if mode == "lab":
            errors.append("destination applies to mode=host only; the lab chooses its own")
        else:
            try:
                address = ipaddress.ip_address(destination)
            except ValueError:
                address = None
            if address is None or address.version != 4 or not address.is_loopback:
                errors.append("destination must be an IPv4 loopback address (127.0.0.0/8),"
                              " got %r" % (destination,))
    return errors


def host_settings(values):
    """Parse the host's raw sysctl texts (dotted name -> text or None).

    Returns a dict with `range` (low, high), `reserved` spans, `unprivileged`,
    `tw_reuse`, `tw_reuse_delay_ms` (None when the kernel lacks the sysctl),
    `timestamps`, `max_tw_buckets` and `raw` (the normalised texts). Raises
    ValueError naming the first key that is missing or malformed.
    """
    for key in REQUIRED_KEYS:
        if values.get(key) is None:
            raise ValueError("the kernel does not expose %s" % key)

    def optional_int(key):
        text = values.get(key)
        return None if text is None else parse_int(text, key)

    return {
        "range": parse_port_range(values["net.ipv4.ip_local_port_range"]),
        "reserved": parse_reserved_ports(values.get("net.ipv4.ip_local_reserved_ports") or ""),
        "unprivileged": parse_int(values["net.ipv4.ip_unprivileged_port_start"],
                                  "net.ipv4.ip_unprivileged_port_start"),
        "tw_reuse": parse_int(values["net.ipv4.tcp_tw_reuse"], "net.ipv4.tcp_tw_reuse"),
        "tw_reuse_delay_ms": optional_int("net.ipv4.tcp_tw_reuse_delay"),
        "timestamps": parse_int(values["net.ipv4.tcp_timestamps"], "net.ipv4.tcp_timestamps"),
        "max_tw_buckets": optional_int("net.ipv4.tcp_max_tw_buckets"),
        "raw": {key: normalise_value(values.get(key)) for key in COPIED_KEYS},
    }


def resolve_sample(sample_ports, usable):
    """The number of usable ports a quick run measures.

    An explicit sample larger than the pool is an error (returned as a
    message); the default shrinks to the pool on hosts with a small range.
    Returns (sample, error).
    """
    if sample_ports is None:
        return min(DEFAULT_SAMPLE_PORTS, usable), None
    if sample_ports > usable:
        return None, ("sample_ports=%d is larger than the range, which has %d usable ports"
                      % (sample_ports, usable))
    return sample_ports, None


def _reserved_set(spans, low, high):
    ports = set()
    for span_low, span_high in spans:
        ports.update(range(max(span_low, low), min(span_high, high) + 1))
    return ports


def measured_window(low, high, spans, sample):
    """The quick scope's range: from `low` (so the start keeps its parity) up to
    the port where `sample` usable ports have been counted.

    Reserved ports inside the window stay reserved in the lab, so the window
    checks the reservation as the full range would. Returns [low, end].
    """
    if sample < 1:
        raise ValueError("sample must be positive")
    reserved = _reserved_set(spans, low, high)
    count = 0
    for port in range(low, high + 1):
        if port not in reserved:
            count += 1
            if count == sample:
                return [low, port]
    raise ValueError("the range %d-%d has only %d usable ports, fewer than %d"
                     % (low, high, count, sample))


def listener_port_candidates(low, high, min_port=1):
    """Ports outside [low, high] for the probe's own listener, best first.

    A port bound explicitly is skipped by connect()'s search, so a listener
    inside the range would cost one port of the pool being measured.
    """
    if min_port <= 9 and not low <= 9 <= high:
        yield 9
    yield from range(high + 1, 65536)
    for port in range(min(low - 1, 65535), max(min_port, 1) - 1, -1):
        if port != 9:
            yield port


def expected_count(low, high, spans, listener_port=None):
    """What anonymous connect() to one destination can take from [low, high]:
    the ports minus reserved ones, minus the listener's port when it lies inside
    (its bind bucket comes from an explicit bind)."""
    usable = pool_size(low, high, spans)["usable"]
    if (listener_port is not None and low <= listener_port <= high
            and listener_port not in _reserved_set(spans, listener_port, listener_port)):
        usable -= 1
    return usable


def low_end_may_be_skipped(low, high, spans):
    """True when connect() may leave one end of [low, high] unused.

    With both ends of the same parity (an odd number of ports), connect()'s
    search window is the range size rounded down to even (`remaining &= ~1` in
    __inet_hash_connect since 4.6): the low end is reached only by a search
    that starts on it, and that search's window leaves out the high end.
    Measured on 6.18 with a plain connect() loop: 40000-40010 stopped one
    short in 13 of 100 runs (always 40000), 50000-50004 in 22 (50004 15
    times, 50000 7 times); never with ends of different parity.
    """
    return (high - low) % 2 == 0 and low not in _reserved_set(spans, low, low)


def plan_workers(target, fd_limit, reserve=FD_RESERVE, max_workers=MAX_WORKERS):
    """Spread `target` held connections over processes.

    A pool is per network namespace but descriptors are per process: with a
    descriptor limit below the pool one process cannot hold it all (the
    thread's NR_OPEN case). Returns {"workers", "per_worker"} where per_worker
    is how many connections one process may hold.
    """
    per_worker = max(1, fd_limit - reserve)
    workers = max(1, math.ceil(max(target, 1) / per_worker))
    return {"workers": min(workers, max_workers), "per_worker": per_worker}


def worker_quotas(workers, per_worker, cap=None):
    """Per-worker connection quotas. Without a cap each worker may fill its
    descriptors; with one the quotas add up to exactly the cap."""
    if cap is None:
        return [per_worker] * workers
    cap = min(cap, workers * per_worker)
    return [cap // workers + (1 if index < cap % workers else 0) for index in range(workers)]


def combine_stop_reasons(reasons, established, cap=None):
    """Why the hold stopped, from each worker's own reason.

    EADDRNOTAVAIL anywhere means the pool was exhausted; otherwise a timeout
    wins, then the user's cap, then the descriptor limit (EMFILE, also when a
    worker filled its descriptor quota).
    """
    reasons = set(reasons)
    if "EADDRNOTAVAIL" in reasons:
        return "EADDRNOTAVAIL"
    if "timeout" in reasons:
        return "timeout"
    if cap is not None and established >= cap:
        return "cap"
    if reasons & {"EMFILE", "quota"}:
        return "EMFILE"
    if "cap" in reasons:
        return "cap"
    return sorted(reasons)[0] if reasons else "timeout"


def reuse_expected(tw_reuse, timestamps, loopback):
    """Whether connect() may take over a TIME_WAIT 4-tuple for this destination.

    tcp_tw_reuse 1 applies to every destination, 2 to loopback ones only
    (127/8 or a socket bound to lo); either needs tcp_timestamps.
    """
    if not timestamps:
        return False
    if tw_reuse == 1:
        return True
    return tw_reuse == 2 and loopback


def reuse_delay_ms(settings):
    delay = settings.get("tw_reuse_delay_ms")
    return DEFAULT_REUSE_DELAY_MS if delay is None else delay


def reuse_wait_seconds(settings):
    """How long a churn must see failures before it can say reuse is off.

    With the tcp_tw_reuse_delay sysctl (6.14+) the delay is exact, in ms;
    without it the kernel reuses a TIME_WAIT 4-tuple once its timestamp is
    older than one second, counted in whole seconds, so up to two."""
    delay = settings.get("tw_reuse_delay_ms")
    if delay is None:
        return 2.0 + 0.1
    return max(delay, 1) / 1000.0 + 0.1


def model_rate(usable, reuse, delay_ms=DEFAULT_REUSE_DELAY_MS):
    """Sustainable new connections per second to one destination, client closing
    first: every connection parks its 4-tuple in TIME_WAIT for 60 s, or only for
    the reuse delay when TIME_WAIT reuse applies."""
    if usable <= 0:
        return 0.0
    hold_seconds = (max(delay_ms, 1) / 1000.0) if reuse else float(TIME_WAIT_SECONDS)
    return round(usable / hold_seconds, 1)


def reuse_verdict(first_failure_at, successes_after_failure, elapsed, wait_s):
    """Did TIME_WAIT reuse take effect during a churn run?

    True when a connection succeeded after the first EADDRNOTAVAIL (a TIME_WAIT
    4-tuple was taken over); False when, after the first failure, the run went on
    for longer than the reuse delay without any success; None when the run never
    exhausted the pool or stopped too soon to tell.
    """
    if first_failure_at is None:
        return None
    if successes_after_failure > 0:
        return True
    if elapsed - first_failure_at >= wait_s:
        return False
    return None


def lab_sysctl_writes(settings, measured_range, lab_unprivileged, lab_has_delay=True,
                      lab_has_somaxconn=True):
    """Ordered (dotted name, value) writes that give the lab the host's settings.

    The kernel keeps ip_local_port_range's low end at or above
    ip_unprivileged_port_start, so the two are ordered to keep that true at
    every step. The range is the measured one (narrowed in quick scope).
    A key the lab does not show is not written: tcp_tw_reuse_delay before
    6.14, and net.core.somaxconn where a network namespace owned by a user
    namespace hides net.core (Debian's 6.1); the listener then keeps the
    namespace's default accept queue, which the lab's acceptor drains.
    """
    raw = settings["raw"]
    port_range = ("net.ipv4.ip_local_port_range", "%d %d" % tuple(measured_range))
    unprivileged = ("net.ipv4.ip_unprivileged_port_start", str(settings["unprivileged"]))
    if settings["unprivileged"] <= lab_unprivileged:
        writes = [unprivileged, port_range]
    else:
        writes = [port_range, unprivileged]
    writes.append(("net.ipv4.ip_local_reserved_ports",
                   raw.get("net.ipv4.ip_local_reserved_ports") or ""))
    writes.append(("net.ipv4.tcp_tw_reuse", str(settings["tw_reuse"])))
    if settings["tw_reuse_delay_ms"] is not None and lab_has_delay:
        writes.append(("net.ipv4.tcp_tw_reuse_delay", str(settings["tw_reuse_delay_ms"])))
    writes.append(("net.ipv4.tcp_timestamps", str(settings["timestamps"])))
    if settings["max_tw_buckets"] is not None:
        writes.append(("net.ipv4.tcp_max_tw_buckets", str(settings["max_tw_buckets"])))
    if lab_has_somaxconn:
        writes.append(("net.core.somaxconn", str(LAB_SOMAXCONN)))
    return writes


def sysctl_equal(name, wanted, actual):
    """Compare a written value with the value read back, the kernel's way."""
    if name == "net.ipv4.ip_local_reserved_ports":
        return parse_reserved_ports(wanted or "") == parse_reserved_ports(actual or "")
    return normalise_value(wanted) == normalise_value(actual)


def host_destinations(destination):
    """Loopback destinations for host mode: the hold's, a second one for the
    per-destination check, and one for churn, all distinct."""
    hold = destination or DEFAULT_HOST_DESTINATION
    others = [addr for addr in ("127.0.0.4", "127.0.0.6", "127.0.0.7", "127.0.0.8")
              if addr != hold]
    return {"hold": hold, "second": others[0], "churn_remote": None,
            "churn_loopback": others[1]}


def make_plan(params, settings, is_root):
    """Everything the probe will do, decided before anything is created.

    Returns (plan, error). The plan is plain data (JSON-friendly) handed to the
    child that runs the measurement.
    """
    low, high = settings["range"]
    spans = settings["reserved"]
    full = pool_size(low, high, spans)
    if full["usable"] < 1:
        return None, "the range %d-%d has no usable port (all reserved)" % (low, high)
    mode = params["mode"]
    scope = params["scope"]
    sample, error = resolve_sample(params.get("sample_ports"), full["usable"])
    if error:
        return None, error
    cap = params.get("max_connections")
    if mode == "lab":
        measured = measured_window(low, high, spans, sample) if scope == "quick" else [low, high]
        destinations = dict(LAB_DESTINATIONS)
        min_port = 1
    else:
        # The host's own range is never changed: a quick host run holds only
        # sample_ports connections (a cap), over the real range.
        measured = [low, high]
        if scope == "quick":
            cap = sample if cap is None else min(cap, sample)
        destinations = host_destinations(params.get("destination"))
        min_port = 1 if is_root else settings["unprivileged"]
    candidates = []
    for port in listener_port_candidates(measured[0], measured[1], min_port):
        candidates.append(port)
        if len(candidates) >= 64:
            break
    if not candidates:
        return None, ("no port outside %d-%d is left for the probe's listener"
                      % tuple(measured))
    delay_ms = reuse_delay_ms(settings)
    measured_usable = pool_size(measured[0], measured[1], spans)["usable"]
    # The churn only has to run a destination dry to see whether TIME_WAIT is
    # reused; in the lab it does so over `sample` ports, not the whole range (a
    # dry run of 28,232 real connections costs seconds of CPU on the host).
    churn_range = measured_window(low, high, spans, sample) if mode == "lab" else measured
    plan = {
        "mode": mode,
        "scope": scope,
        "range": [low, high],
        "reserved_spans": spans,
        "reserved_in_range": full["reserved_in_range"],
        "expected": full["usable"],
        "measured_range": measured,
        "measured_usable": measured_usable,
        "sample": sample if scope == "quick" else None,
        "cap": cap,
        "target": measured_usable if cap is None else min(measured_usable, cap),
        "timeout": params["timeout"],
        "churn_seconds": params["churn_seconds"],
        "churn_range": churn_range,
        "churn_usable": pool_size(churn_range[0], churn_range[1], spans)["usable"],
        "destinations": destinations,
        "listener_candidates": candidates,
        "settings": settings,
        "reuse_delay_ms": delay_ms,
        "reuse_wait_s": reuse_wait_seconds(settings),
    }
    return plan, None


def configuration_key(plan, machine, version):
    """What a lab measurement depends on, hashed; None outside the lab.

    A lab namespace starts empty, so its measurement is a function of the kernel,
    the settings copied into it, who runs it, its descriptor limits, the options
    and portpool's own code: `machine` holds the first three (kernel release,
    build and architecture, root or not, the limits) and `version` the last.
    Two hosts, or two runs, with the same key measure the same thing, so a caller
    holding that measurement on record need not repeat it (docs/probe.md).
    """
    if plan["mode"] != "lab":
        return None
    basis = {
        "portpool": version,
        "machine": machine,
        "settings": plan["settings"]["raw"],
        "scope": plan["scope"],
        "measured_range": plan["measured_range"],
        "cap": plan["cap"],
        "timeout": plan["timeout"],
        "churn_seconds": plan["churn_seconds"],
        "refusals": plan.get("refusals") or [],
    }
    text = json.dumps(basis, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def on_record_result(plan, key):
    """The probe's result when the caller holds this configuration's measurement."""
    return {"key": key, "on_record": True, "mode": plan["mode"], "scope": plan["scope"],
            "settings": plan["settings"]["raw"],
            "summary": "on record: this kernel and these settings were measured before"
                       " (key %s); the hold was not repeated" % key}


def churn_summary(raw, usable, reuse, delay_ms, wait_s, *, churn_usable=None):
    """Shape one churn run's raw counters into the reported dict.

    `usable` is the measured pool (for the modelled rate); `churn_usable` the
    ports the run itself had (the lab narrows the churn to a sample)."""
    if raw is None:
        return None
    elapsed = raw["seconds"]
    return {
        "destination": raw["destination"],
        "connections": raw["ok"],
        "failures": raw["failures"],
        "seconds": round(elapsed, 3),
        "before_first_failure": raw["before_first_failure"],
        "first_failure_at": (None if raw["first_failure_at"] is None
                             else round(raw["first_failure_at"], 3)),
        "expected_before_first_failure": usable if churn_usable is None else churn_usable,
        "rate_per_s": round(raw["ok"] / elapsed, 1) if elapsed > 0 else 0.0,
        "reuse_expected": reuse,
        "reuse_effective": reuse_verdict(raw["first_failure_at"], raw["ok_after_failure"],
                                         elapsed, wait_s),
        "model_rate_per_s": model_rate(usable, reuse, delay_ms),
        "tw_overflow": raw.get("tw_overflow"),
        "other_errors": raw.get("other_errors") or {},
    }


def build_result(plan, raw):
    """Turn the child's raw measurements into the documented `probe` dict."""
    settings = plan["settings"]
    measured = plan["measured_range"]
    listener = raw["listener_port"]
    hold_expected = expected_count(measured[0], measured[1], plan["reserved_spans"], listener)
    hold_target = min(hold_expected, plan["cap"]) if plan["cap"] is not None else hold_expected
    hold = dict(raw["hold"])
    hold["expected"] = hold_expected
    hold["target"] = hold_target
    hold["measured_range"] = list(measured)
    hold["fd_limit_below_pool"] = hold["fd_limit_per_process"] < plan["expected"]
    hold["seconds"] = round(hold["seconds"], 3)
    hold["low_end_may_be_skipped"] = low_end_may_be_skipped(
        measured[0], measured[1], plan["reserved_spans"])
    missing = hold.pop("missing", None)
    hold["missing_ports"] = None if missing is None else compact_ports(missing)
    exhausted = hold["stopped_by"] == "EADDRNOTAVAIL"
    shortfall = hold_expected - hold["established"]
    if missing is not None:
        # Exact: which ports were left out is known, not guessed.
        matches = (exhausted and shortfall == len(missing)
                   and missing_verdict(missing, measured[0], measured[1],
                                       plan["reserved_spans"]))
    else:
        matches = exhausted and shortfall in (
            (0, 1) if hold["low_end_may_be_skipped"] else (0,))

    delay_ms = plan["reuse_delay_ms"]
    tw_reuse = settings["tw_reuse"]
    timestamps = settings["timestamps"]
    churn = None
    if raw.get("churn") is not None:
        usable = plan["measured_usable"]
        remote_reuse = reuse_expected(tw_reuse, timestamps, loopback=False)
        loop_reuse = reuse_expected(tw_reuse, timestamps, loopback=True)
        churn_usable = plan.get("churn_usable", usable)
        churn = {
            "remote": churn_summary(raw["churn"].get("remote"), usable, remote_reuse, delay_ms,
                                    plan["reuse_wait_s"], churn_usable=churn_usable),
            "loopback": churn_summary(raw["churn"].get("loopback"), usable, loop_reuse,
                                      delay_ms, plan["reuse_wait_s"], churn_usable=churn_usable),
            "range": list(plan.get("churn_range") or plan["measured_range"]),
            "model_rate_per_s": model_rate(plan["expected"], remote_reuse, delay_ms),
            "model_rate_loopback_per_s": model_rate(plan["expected"], loop_reuse, delay_ms),
            "seconds": plan["churn_seconds"],
            "tw_reuse": tw_reuse,
            "tw_reuse_delay_ms": delay_ms,
            "timestamps": timestamps,
        }
    low, high = plan["range"]
    if plan["mode"] == "lab" and plan["scope"] == "quick":
        where = ("quick: measured %d-%d (%d usable ports) in a lab namespace; the configured"
                 " range is %d-%d (%d usable ports)"
                 % (measured[0], measured[1], plan["measured_usable"], low, high,
                    plan["expected"]))
    elif plan["mode"] == "lab":
        where = "full: measured the whole range %d-%d in a lab namespace" % (low, high)
    else:
        where = "host: measured %d-%d in the host's own namespace" % (low, high)
        if plan["cap"] is not None:
            where += ", capped at %d connections" % plan["cap"]
    summary = "%s; held %d of %d expected in %.2f s, stopped by %s" % (
        where, hold["established"], hold_expected, hold["seconds"], hold["stopped_by"])
    if exhausted and missing:
        summary += ("; never handed out: %s" % ", ".join(hold["missing_ports"]))
        if matches:
            summary += (" (with both ends of the same parity connect()'s own search can"
                        " leave out one end)")
    elif exhausted and shortfall == 1 and hold["low_end_may_be_skipped"]:
        summary += ("; one port was never handed out: with both ends of the same parity"
                    " connect() can leave out one end")
    if hold.get("ends_held_directly"):
        summary += ("; end %s held with a search narrowed to it (with both ends of the same"
                    " parity connect()'s own search reaches an end only from some starting"
                    " points, which a fill from empty usually meets)"
                    % ", ".join(map(str, hold["ends_held_directly"])))
    method = raw.get("method")
    if method:
        summary += "; method: %s sockets, partition by %s" % (
            method["sockets"], method["partition"])
        for note in method.get("notes") or ():
            summary += "; " + note
    return {
        "mode": plan["mode"],
        "scope": plan["scope"],
        "range": [low, high],
        "reserved_in_range": plan["reserved_in_range"],
        "expected": plan["expected"],
        "measured_range": list(measured),
        "hold": hold,
        "per_destination": raw.get("per_destination") if exhausted else None,
        "bind_zero_blocked": raw.get("bind_zero_blocked") if exhausted else None,
        "bind_address_no_port_ok": raw.get("bind_address_no_port_ok") if exhausted else None,
        "churn": churn,
        "matches_expected": matches,
        "method": method,
        "listener_port": listener,
        "destinations": plan["destinations"],
        "settings": settings["raw"],
        "host_sockets": raw.get("host_sockets"),
        "summary": summary,
    }
