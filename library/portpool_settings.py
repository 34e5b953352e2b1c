#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: portpool contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: portpool_settings
short_description: Apply pool sysctls all-or-nothing, persist them, roll them back
description:
  - Manages a chosen subset of C(net.ipv4.ip_local_port_range), C(ip_local_reserved_ports),
    C(tcp_tw_reuse), C(tcp_tw_reuse_delay), C(tcp_timestamps) and C(tcp_max_tw_buckets).
    Keys left out of O(settings) are not touched.
  - "O(mode=apply): validate, plan, save the previous runtime values and the previous
    content (or absence) of the sysctl.d file in O(state_dir) before the first change,
    write the file atomically (mode 0644, a header, unquoted values), write only the
    changed keys straight to C(/proc/sys) (never C(sysctl --system)), read each back and
    compare it whitespace-normalised. If any step fails, everything written in this run
    is put back, so a host is either all old or all new."
  - Listening TCP ports that the new range covers are added to C(ip_local_reserved_ports),
    merged with what is already reserved, unless O(protect_listeners=false).
  - Warns, naming the file, when a file that systemd-sysctl applies after ours at boot
    sets one of the managed keys to a different value.
  - "O(mode=rollback): restore exactly the saved runtime values and file, then retire the
    saved state; a second rollback finds nothing to do."
  - "O(mode=validate) checks the settings of many hosts at once without touching any host
    (run it on the controller); O(mode=preflight) adds the host-side checks (the host's
    C(ip_unprivileged_port_start), keys the kernel lacks, a read-only C(/proc/sys)) and
    reports what would change, changing nothing; O(mode=verify) reads the values back."
  - Values are data, never commands. Nothing is run through a shell.
version_added: "1.0.0"
author: portpool contributors
options:
  mode:
    description: What to do.
    type: str
    choices: [validate, preflight, apply, verify, rollback]
    default: apply
  settings:
    description:
      - Desired values by short name (C(ip_local_port_range), C(ip_local_reserved_ports),
        C(tcp_tw_reuse), C(tcp_tw_reuse_delay), C(tcp_timestamps), C(tcp_max_tw_buckets)).
      - A null value means "not managed". C(tcp_tw_recycle) is refused with the reason.
      - C(ip_local_port_range) is C('low high') or C([low, high]);
        C(ip_local_reserved_ports) is C('8080,9000-9010') or a list.
    type: dict
    default: {}
  layers:
    description:
      - The ordered variables the settings were merged from, as C([[name, dict], ...]).
        Only used to name the variable that set a bad value in error messages.
    type: list
    elements: raw
    default: []
  hosts:
    description:
      - For O(mode=validate) only. Maps a host name to C({settings, layers}).
    type: dict
    default: {}
  protect_listeners:
    description: Add listening TCP ports inside the new range to C(ip_local_reserved_ports).
    type: bool
    default: true
  min_pool_size:
    description: The fewest usable ports (range minus reserved ports in it) a range may leave.
    type: int
    default: 1024
  optional_keys:
    description:
      - Short names that are skipped with a warning where the kernel lacks them.
        Any other missing key is an error for that host.
    type: list
    elements: str
    default: [tcp_tw_reuse_delay]
  file_name:
    description: Name of the file in O(sysctl_dir), C(NN-name.conf).
    type: str
    default: 60-portpool.conf
  sysctl_dir:
    description: Directory the file is written to.
    type: path
    default: /etc/sysctl.d
  state_dir:
    description: Where the previous values are saved before the first change (created 0700).
    type: path
    default: /var/lib/portpool
  restore:
    description:
      - For O(mode=rollback). Restore these C(runtime) values (dotted names) and this C(file)
        content (null for absent), as returned by O(mode=apply) under RV(before), instead of
        the saved state; the saved state is kept. Used to undo one run that failed
        verification without undoing earlier runs.
    type: dict
  facts:
    description:
      - For O(mode=verify). The host's C(ansible_facts.portpool) from C(portpool_facts),
        gathered after applying; its C(sysctl) values must show O(expected) as well.
    type: dict
  probe:
    description:
      - For O(mode=verify). The C(probe) result of a quick C(portpool_probe) run after
        applying; it must have measured the range and the usable pool the settings give.
    type: dict
  expected:
    description:
      - For O(mode=verify). The runtime values (dotted names) and C(file) content that should
        be in place, as returned by O(mode=apply) under RV(after).
    type: dict
    default: {}
attributes:
  check_mode:
    support: full
    description: Reports what would change; writes no file, no value and no state.
  diff_mode:
    support: full
    description: The file before and after, and each changed runtime value before and after.
  platform:
    platforms: [posix]
notes:
  - Needs root (become) to write C(/proc/sys), the file and the state directory.
  - C(sysctl -w) can exit 0 after the kernel refused a value (EINVAL), so the module
    writes C(/proc/sys) itself and reads every value back.
seealso:
  - module: ansible.posix.sysctl
"""

EXAMPLES = r"""
- name: Widen the pool and reuse TIME_WAIT for outgoing connections
  portpool_settings:
    settings:
      ip_local_port_range: "15000 64999"
      tcp_tw_reuse: 1
  become: true
  register: tuned

- name: Check what would change, with the host-side checks, without changing anything
  portpool_settings:
    mode: preflight
    settings: "{{ portpool_tune_effective }}"

- name: Validate a whole fleet's settings on the controller
  portpool_settings:
    mode: validate
    hosts:
      web-01:
        settings: {ip_local_port_range: "40000 30000"}
  delegate_to: localhost
  run_once: true

- name: Put back what the first tune run found
  portpool_settings:
    mode: rollback
  become: true
"""

RETURN = r"""
target:
  description: The runtime values this host should have (dotted names), managed keys only.
  returned: modes preflight, apply
  type: dict
  sample: {"net.ipv4.ip_local_port_range": "15000 64999", "net.ipv4.tcp_tw_reuse": "1"}
changed_keys:
  description: Keys whose runtime value was (or in check mode would be) written.
  returned: modes preflight, apply, rollback
  type: list
  elements: str
file:
  description: Path of the managed sysctl.d file.
  returned: modes preflight, apply, verify, rollback
  type: str
  sample: /etc/sysctl.d/60-portpool.conf
file_changed:
  description: Whether the file was (or would be) written or removed.
  returned: modes preflight, apply, rollback
  type: bool
before:
  description: Runtime values (C(runtime)) and file content (C(file), null when absent) found.
  returned: modes preflight, apply, rollback
  type: dict
  sample: {"runtime": {"net.ipv4.tcp_tw_reuse": "2"}, "file": null}
after:
  description: Runtime values and file content after the run (or, in check mode, planned).
  returned: modes preflight, apply, rollback
  type: dict
reserved_added:
  description: Listening ports added to C(ip_local_reserved_ports) to protect them.
  returned: modes preflight, apply
  type: list
  elements: int
skipped_keys:
  description: Optional keys this kernel lacks, left unmanaged.
  returned: modes preflight, apply
  type: list
  elements: str
overrides:
  description: Files applied after ours at boot that set a managed key (each also a warning).
  returned: modes preflight, apply
  type: list
  elements: dict
  sample: [{"key": "net.ipv4.tcp_tw_reuse", "file": "/etc/sysctl.d/99-sysctl.conf"}]
boot_overrides:
  description:
    - Files applied after ours at boot that set a managed key to a different value
      (each also a warning); a file that sets the same value is left out.
    - C(value) is what the kernel gets at boot, C(ours) what portpool sets, C(why) one
      line saying so.
  returned: modes preflight, apply
  type: list
  elements: dict
  sample: [{"key": "net.ipv4.tcp_tw_reuse", "file": "/etc/sysctl.d/99-sysctl.conf",
            "line": 3, "value": "0", "ours": "1", "why": "net.ipv4.tcp_tw_reuse is also..."}]
input_errors:
  description: "O(mode=preflight): bad settings for this host (fatal for the whole rollout)."
  returned: mode preflight
  type: list
  elements: str
host_errors:
  description: "O(mode=preflight): why this host cannot be tuned (missing key, read-only)."
  returned: mode preflight
  type: list
  elements: str
planned_warnings:
  description: "O(mode=preflight): the warnings O(mode=apply) will give (preflight gives none)."
  returned: mode preflight
  type: list
  elements: str
state_file:
  description: Where the previous values are (or were) saved.
  returned: modes preflight, apply, rollback
  type: str
  sample: /var/lib/portpool/tune-state.json
state_saved:
  description: Whether this run saved or extended the saved state.
  returned: mode apply
  type: bool
state_created:
  description: Whether this run saved the state for the first time (the host was untouched).
  returned: mode apply
  type: bool
saved_at:
  description: "O(mode=rollback): when the restored state was saved (UTC, ISO 8601)."
  returned: mode rollback, when there was a state
  type: str
mismatches:
  description: "O(mode=verify): keys (and C(file)) whose value differs from O(expected)."
  returned: mode verify
  type: list
  elements: dict
pool:
  description: "O(mode=verify): the pool the runtime values give (low, high, size, usable...)."
  returned: mode verify, when the range is readable
  type: dict
values:
  description: "O(mode=validate): canonical values by host and dotted key."
  returned: mode validate
  type: dict
"""

import base64
import contextlib
import errno
import json
import os
import tempfile
from datetime import datetime, timezone

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.portpool_boot_order import boot_overrides
from ansible.module_utils.portpool_persisted import list_config_files, under_root
from ansible.module_utils.portpool_sockdiag import listening_ports_proc
from ansible.module_utils.portpool_sysctl import (
    normalise_value,
    parse_port_range,
    parse_reserved_ports,
    pool_size,
    read_sysctl,
    sysctl_path,
)
from ansible.module_utils.portpool_tune_plan import (
    DOTTED_TO_SHORT,
    STATE_VERSION,
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

STATE_NAME = "tune-state.json"
RETIRED_NAME = "tune-state.rolled-back.json"
FILE_MODE = 0o644


def get_argument_spec():
    return dict(
        mode=dict(type="str", default="apply",
                  choices=["validate", "preflight", "apply", "verify", "rollback"]),
        settings=dict(type="dict", default={}),
        layers=dict(type="list", elements="raw", default=[]),
        hosts=dict(type="dict", default={}),
        protect_listeners=dict(type="bool", default=True),
        min_pool_size=dict(type="int", default=1024),
        optional_keys=dict(type="list", elements="str", default=["tcp_tw_reuse_delay"]),
        file_name=dict(type="str", default="60-portpool.conf"),
        sysctl_dir=dict(type="path", default="/etc/sysctl.d"),
        state_dir=dict(type="path", default="/var/lib/portpool"),
        expected=dict(type="dict", default={}),
        restore=dict(type="dict"),
        facts=dict(type="dict"),
        probe=dict(type="dict"),
    )


class TuneError(Exception):
    """A failure on this host; the message says what and whether it was undone."""


# ---- paths and plain I/O (everything takes a root so tests use temp trees) ---------

class Paths:
    """Where things live: `root` prefixes the file system paths, not /proc."""

    def __init__(self, params, root="/", proc_sys="/proc/sys", proc_net="/proc/net"):
        name = params["file_name"]
        if (not name or "/" in name or name.startswith(".") or not name.endswith(".conf")
                or not all(c.isalnum() or c in "-_." for c in name)):
            raise TuneError("portpool_tune_file_name %r must be a plain NN-name.conf file name"
                            % (name,))
        self.root = root
        self.proc_sys = proc_sys
        self.proc_net = proc_net
        self.sysctl_dir = params["sysctl_dir"]
        self.file = os.path.join(self.sysctl_dir, name)
        self.state_dir = params["state_dir"]
        self.state = os.path.join(self.state_dir, STATE_NAME)
        self.retired = os.path.join(self.state_dir, RETIRED_NAME)

    def real(self, path):
        """The path on this machine for a path as the host sees it."""
        return os.path.join(self.root, path.lstrip("/"))


def read_bytes(path):
    """(content, mode) of a file, or (None, None) when it does not exist."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
        return data, os.stat(path).st_mode & 0o7777
    except FileNotFoundError:
        return None, None


def as_text(data):
    return None if data is None else data.decode("utf-8", "replace")


def read_runtime(keys, proc_sys):
    return {key: read_sysctl(key, proc_sys) for key in keys}


def read_listening_ports(proc_net):
    ports = set()
    for name in ("tcp", "tcp6"):
        try:
            with open(os.path.join(proc_net, name), encoding="ascii", errors="replace") as handle:
                ports.update(listening_ports_proc(handle.read()))
        except FileNotFoundError:
            continue
    return sorted(ports)


def boot_contents(paths, ours_text):
    """(order, contents) of the files read at boot, with our file as it will be."""
    files, _masked = list_config_files(paths.root)
    order = boot_files_with_ours(files, paths.file)
    contents = {}
    for path in order:
        if path == paths.file:
            contents[path] = ours_text
            continue
        try:
            with open(under_root(paths.root, path), encoding="utf-8", errors="replace") as handle:
                contents[path] = handle.read()
        except OSError:
            continue
    return order, contents


def write_sysctl(key, value, proc_sys):
    """Write one value straight to /proc/sys; a trailing newline clears empty lists."""
    with open(sysctl_path(key, proc_sys), "w", encoding="ascii") as handle:
        handle.write(value + "\n")


def writable(key, proc_sys):
    return os.access(sysctl_path(key, proc_sys), os.W_OK)


def write_atomic(path, data, mode, mover):
    """Write data to a temp file beside path, fsync, chmod, then move it into place."""
    directory = os.path.dirname(path)
    handle, temp = tempfile.mkstemp(prefix=".portpool-", dir=directory)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temp, mode)
        mover(temp, path)
        os.chmod(path, mode)
    finally:
        if os.path.exists(temp):
            os.unlink(temp)


def put_file(path, data, mode, mover):
    """Make path hold data (bytes) with mode, or be absent when data is None."""
    if data is None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    else:
        write_atomic(path, data, mode, mover)


def load_state(path):
    data, _ = read_bytes(path)
    if data is None:
        return None
    try:
        state = json.loads(data.decode("utf-8"))
    except ValueError as exc:
        raise TuneError("saved state %s is not valid JSON (%s); fix or remove it by hand"
                        % (path, exc)) from None
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
        raise TuneError("saved state %s has an unknown format" % path)
    return state


def new_state(file_path, file_data, file_mode, now):
    return {
        "version": STATE_VERSION,
        "saved_at": now,
        "file": file_path,
        "file_existed": file_data is not None,
        "file_content_b64": None if file_data is None else base64.b64encode(file_data).decode(),
        "file_mode": file_mode,
        "runtime": {},
    }


def extend_state(state, runtime_before):
    """Add previous values for keys the state does not hold yet; True when it grew."""
    grew = False
    for key, value in runtime_before.items():
        if key not in state["runtime"] and value is not None:
            state["runtime"][key] = value
            grew = True
    return grew


def utc_now():
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---- the transaction ---------------------------------------------------------------

def describe_oserror(key, exc):
    if exc.errno == errno.EROFS:
        return "%s: /proc/sys is read-only here (a container?); this host cannot be tuned" % key
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "%s: permission denied writing /proc/sys (run with become)" % key
    if exc.errno == errno.EINVAL:
        return "%s: the kernel refused the value (EINVAL)" % key
    return "%s: %s" % (key, exc.strerror or exc)


def transact(paths, runtime_new, runtime_old, *, file_new, file_new_mode, file_old,
             file_old_mode, mover):
    """Write the file and the changed runtime values; on any failure undo all of it.

    runtime_new: key -> value to write (only changed keys); runtime_old: key -> value now.
    file_new/file_old: bytes or None (absent). Raises TuneError saying what failed and
    whether everything was put back.
    """
    file_done = False
    written = []
    try:
        if file_new != file_old:
            put_file(paths.real(paths.file), file_new, file_new_mode, mover)
            file_done = True
        for key, value in runtime_new.items():
            written.append(key)
            try:
                write_sysctl(key, value, paths.proc_sys)
            except OSError as exc:
                raise TuneError(describe_oserror(key, exc)) from None
            got = read_sysctl(key, paths.proc_sys)
            if normalise_value(got) != normalise_value(value):
                raise TuneError("%s: wrote %r but the kernel reads back %r"
                                % (key, value, got))
    except (TuneError, OSError) as exc:
        reason = str(exc) if isinstance(exc, TuneError) else "%s: %s" % (paths.file, exc)
        problems = []
        for key in reversed(written):
            old = runtime_old.get(key)
            try:
                write_sysctl(key, old, paths.proc_sys)
                if normalise_value(read_sysctl(key, paths.proc_sys)) != normalise_value(old):
                    problems.append("%s did not go back to %r" % (key, old))
            except OSError as undo:
                problems.append("%s could not be put back to %r: %s" % (key, old, undo))
        if file_done:
            try:
                put_file(paths.real(paths.file), file_old, file_old_mode or FILE_MODE, mover)
            except OSError as undo:
                problems.append("%s could not be put back: %s" % (paths.file, undo))
        if problems:
            raise TuneError("%s. Undoing failed, this host is HALF-CHANGED: %s"
                            % (reason, "; ".join(problems))) from None
        raise TuneError("%s. Everything this run wrote was put back (file and runtime "
                        "values are as before)" % reason) from None


# ---- modes ---------------------------------------------------------------------------

def survey(params, paths):
    """Validate and plan for this host: everything preflight and apply need, read-only."""
    values, errors, warnings = validate_settings(
        params["settings"], params["layers"], params["min_pool_size"])
    if errors:
        return {"input_errors": errors, "host_errors": [], "warnings": warnings}
    keys = list(values)
    if "net.ipv4.ip_local_port_range" in values:
        keys.append("net.ipv4.ip_local_reserved_ports")
    current = read_runtime(sorted(set(keys)), paths.proc_sys)
    start = read_sysctl("net.ipv4.ip_unprivileged_port_start", paths.proc_sys)
    listeners = read_listening_ports(paths.proc_net) if params["protect_listeners"] else []
    decided = plan(values, current,
                   unprivileged_start=int(start) if start not in (None, "") else None,
                   listeners=listeners, protect=params["protect_listeners"],
                   min_pool_size=params["min_pool_size"], optional=params["optional_keys"])
    decided["warnings"] = warnings + decided["warnings"]
    decided["current"] = {key: current.get(key) for key in decided["target"]}
    for key in decided["changes"]:
        if not writable(key, paths.proc_sys):
            decided["host_errors"].append(
                "%s: /proc/sys is not writable here (read-only in a container, or no "
                "become); this host cannot be tuned" % key)
    file_old, file_old_mode = read_bytes(paths.real(paths.file))
    file_new = render_file(decided["target"]).encode("ascii") if decided["target"] else None
    decided["file_old"], decided["file_old_mode"] = file_old, file_old_mode
    # An empty plan leaves an existing file alone rather than deleting it.
    decided["file_new"] = file_new if file_new is not None else file_old
    decided["file_changed"] = (decided["file_new"] != file_old
                               or (file_old is not None and file_new is not None
                                   and file_old_mode != FILE_MODE))
    order, contents = boot_contents(paths, as_text(decided["file_new"]) or "")
    decided["overrides"] = find_overrides(paths.file, order, contents, list(decided["target"]))
    # Warn only where the boot winner sets a different value (portpool_boot_order).
    decided["boot_overrides"] = boot_overrides(paths.file, order, contents, decided["target"])
    decided["warnings"].extend(item["why"] for item in decided["boot_overrides"])
    return decided


def planned_result(decided, paths):
    after_runtime = dict(decided["current"])
    after_runtime.update(decided["target"])
    return {
        "target": decided["target"],
        "changed_keys": decided["changes"],
        "file": paths.file,
        "file_changed": decided["file_changed"],
        "before": {"runtime": decided["current"], "file": as_text(decided["file_old"])},
        "after": {"runtime": after_runtime, "file": as_text(decided["file_new"])},
        "reserved_added": decided["reserved_added"],
        "skipped_keys": decided["skipped"],
        "overrides": decided["overrides"],
        "boot_overrides": decided["boot_overrides"],
        "state_file": paths.state,
    }


def with_diff(result, paths):
    result["diff"] = compute_diff(paths.file, result["before"]["file"], result["after"]["file"],
                                  result["before"]["runtime"], result["after"]["runtime"])
    return result


def run_validate(params):
    values, errors, warnings = validate_fleet(params["hosts"], params["min_pool_size"])
    result = {"changed": False, "values": values, "warnings": warnings}
    if errors:
        result.update(failed=True, msg="Invalid portpool settings, nothing was changed on any "
                      "host:\n" + "\n".join(errors), errors=errors)
    else:
        result["msg"] = "settings of %d host(s) are valid" % len(values)
    return result


def run_preflight(params, paths):
    # Warnings are returned, not raised: the apply step that follows raises them once.
    decided = survey(params, paths)
    if "target" not in decided:
        return {"changed": False, "input_errors": decided["input_errors"], "host_errors": [],
                "planned_warnings": decided["warnings"]}
    result = planned_result(decided, paths)
    result.update(changed=False, input_errors=decided["input_errors"],
                  host_errors=decided["host_errors"], planned_warnings=decided["warnings"],
                  would_change=bool(decided["changes"] or decided["file_changed"]))
    return result


def run_apply(params, paths, check_mode=False, mover=os.replace, now=utc_now):
    decided = survey(params, paths)
    problems = decided["input_errors"] + decided["host_errors"]
    if problems:
        raise TuneError("nothing was changed on this host: " + "; ".join(problems))
    result = planned_result(decided, paths)
    result["warnings"] = decided["warnings"]
    result["state_saved"] = False
    result["state_created"] = False
    changing = bool(decided["changes"] or decided["file_changed"])
    result["changed"] = changing
    if not changing or check_mode:
        return with_diff(result, paths)

    # Save what is there now before the first change (kept across later runs).
    state_path = paths.real(paths.state)
    state = load_state(state_path)
    fresh = state is None
    state_old_bytes, _ = read_bytes(state_path)
    if fresh:
        state = new_state(paths.file, decided["file_old"], decided["file_old_mode"], now())
    grew = extend_state(state, decided["current"])
    if fresh or grew:
        os.makedirs(paths.real(paths.state_dir), mode=0o700, exist_ok=True)
        write_atomic(state_path, (json.dumps(state, indent=2, sort_keys=True) + "\n").encode(),
                     0o600, mover)
        result["state_saved"] = True
        result["state_created"] = fresh
    runtime_new = {key: decided["target"][key] for key in decided["changes"]}
    try:
        transact(paths, runtime_new, decided["current"], file_new=decided["file_new"],
                 file_new_mode=FILE_MODE, file_old=decided["file_old"],
                 file_old_mode=decided["file_old_mode"], mover=mover)
    except TuneError:
        if result["state_saved"]:
            put_file(state_path, state_old_bytes, 0o600, mover)
        raise
    return with_diff(result, paths)


def run_verify(params, paths):
    expected = params["expected"] or {}
    runtime = {key: value for key, value in (expected.get("runtime") or {}).items()}
    mismatches = []
    for key, want in runtime.items():
        got = read_sysctl(key, paths.proc_sys)
        if normalise_value(got) != normalise_value(want):
            mismatches.append({"key": key, "expected": want, "actual": got})
    if "file" in expected:
        data, mode = read_bytes(paths.real(paths.file))
        if as_text(data) != expected["file"]:
            mismatches.append({"key": "file", "expected": expected["file"],
                               "actual": as_text(data)})
        elif data is not None and mode != FILE_MODE:
            mismatches.append({"key": "file mode", "expected": "0644",
                               "actual": "%04o" % mode})
    if params.get("facts") is not None:
        mismatches.extend(facts_mismatches(runtime, params["facts"].get("sysctl")))
    # The pool as the kernel has it now, read once: what the probe must have
    # measured, and the `pool` this result reports.
    live = {key: read_sysctl(key, paths.proc_sys)
            for key in ("net.ipv4.ip_local_port_range", "net.ipv4.ip_local_reserved_ports")}
    if params.get("probe") is not None:
        mismatches.extend(probe_mismatches({**runtime, **live}, params["probe"]))
    result = {"changed": False, "file": paths.file, "mismatches": mismatches}
    try:
        low, high = parse_port_range(live["net.ipv4.ip_local_port_range"])
        spans = parse_reserved_ports(live["net.ipv4.ip_local_reserved_ports"] or "")
        result["pool"] = pool_size(low, high, spans)
    except (TypeError, ValueError):
        pass
    if mismatches:
        result.update(failed=True, msg="verification failed: " + "; ".join(
            "%s is %r%s, expected %r" % (
                m["key"], m["actual"], " in " + m["source"] if m.get("source") else "",
                m["expected"])
            for m in mismatches))
    return result


def run_rollback(params, paths, check_mode=False, mover=os.replace):
    state_path = paths.real(paths.state)
    result = {"changed": False, "file": paths.file, "state_file": paths.state,
              "changed_keys": [], "file_changed": False}
    restore = params.get("restore")
    if restore is not None:
        state = None
        saved_runtime = {key: value for key, value in (restore.get("runtime") or {}).items()
                         if value is not None}
        text = restore.get("file")
        file_saved = None if text is None else text.encode("utf-8")
        saved_mode = FILE_MODE
    else:
        state = load_state(state_path)
        if state is None:
            result["msg"] = "no saved state in %s: nothing to roll back" % paths.state_dir
            result["before"] = result["after"] = {"runtime": {}, "file": None}
            return result
        if state.get("file") != paths.file:
            raise TuneError("the saved state is for %s, not %s; set portpool_tune_file_name to "
                            "match" % (state.get("file"), paths.file))
        saved_runtime = state["runtime"]
        b64 = state.get("file_content_b64")
        file_saved = None if b64 is None else base64.b64decode(b64)
        saved_mode = state.get("file_mode") or FILE_MODE
        result["saved_at"] = state.get("saved_at")
    for key in saved_runtime:
        if key not in DOTTED_TO_SHORT:
            raise TuneError("the values to restore name %r, which portpool does not manage"
                            % key)
    current = read_runtime(list(saved_runtime), paths.proc_sys)
    file_old, file_old_mode = read_bytes(paths.real(paths.file))
    changes = {key: value for key, value in saved_runtime.items()
               if normalise_value(current.get(key)) != normalise_value(value)}
    file_changed = file_saved != file_old or (
        file_saved is not None and file_old_mode != saved_mode)
    result.update(
        changed=bool(state is not None or changes or file_changed),
        changed_keys=list(changes), file_changed=file_changed,
        before={"runtime": current, "file": as_text(file_old)},
        after={"runtime": dict(saved_runtime), "file": as_text(file_saved)})
    with_diff(result, paths)
    if check_mode or not result["changed"]:
        return result
    for key in changes:
        if not writable(key, paths.proc_sys):
            raise TuneError("nothing was rolled back: %s is not writable here (read-only "
                            "/proc/sys, or no become)" % key)
    transact(paths, changes, current, file_new=file_saved, file_new_mode=saved_mode,
             file_old=file_old, file_old_mode=file_old_mode, mover=mover)
    if state is not None:
        os.replace(state_path, paths.real(paths.retired))
        result["msg"] = "restored the values saved at %s" % state.get("saved_at")
    else:
        result["msg"] = "restored the values found before this run"
    return result


def main():
    module = AnsibleModule(argument_spec=get_argument_spec(), supports_check_mode=True)
    params = module.params
    mode = params["mode"]
    try:
        if mode == "validate":
            result = run_validate(params)
        else:
            paths = Paths(params)
            if mode == "preflight":
                result = run_preflight(params, paths)
            elif mode == "apply":
                result = run_apply(params, paths, module.check_mode, module.atomic_move)
            elif mode == "verify":
                result = run_verify(params, paths)
            else:
                result = run_rollback(params, paths, module.check_mode, module.atomic_move)
    except TuneError as exc:
        module.fail_json(msg=str(exc))
    except OSError as exc:
        module.fail_json(msg="%s: %s" % (getattr(exc, "filename", "") or "I/O error", exc))
    if not module._diff:
        result.pop("diff", None)
    warnings = result.pop("warnings", [])
    # Ansible prints warnings without the host: say which one (validate names its own).
    prefix = "" if mode == "validate" else os.uname().nodename + ": "
    for warning in warnings:
        module.warn(prefix + warning)
    if result.get("failed"):
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
