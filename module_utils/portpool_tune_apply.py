# -*- coding: utf-8 -*-
# Copyright: portpool contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The on-host side of portpool_settings: survey, the all-or-nothing transaction and
each mode (preflight, apply, verify, rollback).

Everything takes a Paths, whose `root` prefixes the file system paths (not /proc),
so tests run it on temp trees. Pure decisions live in portpool_tune_plan, the state
directory, its lock and the saved state in portpool_tune_state.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import uuid

from .portpool_boot_order import boot_overrides
from .portpool_files import atomic_write, utc_now
from .portpool_persisted import (
    SYSCTL_D_DIRS,
    list_config_files,
    under_root,
)
from .portpool_sockdiag import listening_ports_proc
from .portpool_sysctl import (
    normalise_value,
    parse_port_range,
    parse_reserved_ports,
    pool_size,
    read_sysctl,
    sysctl_path,
)
from .portpool_tune_plan import (
    DOTTED_TO_SHORT,
    MANAGED,
    boot_files_with_ours,
    compute_diff,
    facts_mismatches,
    file_content_errors,
    file_name_error,
    find_overrides,
    plan,
    probe_mismatches,
    render_file,
    validate_settings,
)
from .portpool_tune_state import (
    FILE_MODE,
    MAX_FILE_BYTES,
    RETIRED_NAME,
    STATE_MODE,
    STATE_NAME,
    TuneError,
    check_state_dir,
    extend_state,
    host_lock,
    load_state,
    new_state,
    safe_mode,
    saved_file,
    state_bytes,
)

RANGE_KEYS = (MANAGED["ip_local_port_range"], MANAGED["ip_local_reserved_ports"])


class Paths:
    """Where things live: `root` prefixes the file system paths, not /proc."""

    def __init__(self, params, root="/", proc_sys="/proc/sys", proc_net="/proc/net"):
        problem = file_name_error(params["file_name"])
        if problem:
            raise TuneError(problem)
        self.root = root
        self.proc_sys = proc_sys
        self.proc_net = proc_net
        self.name = params["file_name"]
        self.sysctl_dir = params["sysctl_dir"]
        self.file = os.path.join(self.sysctl_dir, self.name)
        self.state_dir = params["state_dir"]
        self.state = os.path.join(self.state_dir, STATE_NAME)
        self.retired = os.path.join(self.state_dir, RETIRED_NAME)
        self.lock_timeout = params.get("lock_timeout", 60)

    def real(self, path):
        """The path on this machine for a path as the host sees it."""
        return os.path.join(self.root, path.lstrip("/"))


# ---- plain I/O -------------------------------------------------------------------------

def read_target(paths):
    """(content, mode) of our sysctl.d file, or (None, None) when absent.

    A mask (a symlink to /dev/null), any other symlink (99-sysctl.conf ->
    ../sysctl.conf) or a non-regular file is never written over: TuneError.
    """
    path = paths.real(paths.file)
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None, None
    if stat.S_ISLNK(info.st_mode):
        target = os.readlink(path)
        if target == "/dev/null":
            raise TuneError(
                "%s is masked (a symlink to /dev/null): an administrator disabled this name, "
                "and portpool will not replace the mask; choose another "
                "portpool_tune_file_name, or remove the mask by hand" % paths.file)
        raise TuneError(
            "%s is a symlink to %s; writing it would replace the link (and what it points "
            "to would stop applying at boot), so portpool refuses; choose another "
            "portpool_tune_file_name" % (paths.file, target))
    if not stat.S_ISREG(info.st_mode):
        raise TuneError("%s is not a regular file; portpool refuses to replace it" % paths.file)
    if info.st_size > MAX_FILE_BYTES:
        raise TuneError("%s is %d bytes, more than a portpool file; portpool refuses to "
                        "replace it" % (paths.file, info.st_size))
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as handle:
        return handle.read(), stat.S_IMODE(os.fstat(handle.fileno()).st_mode)


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


def shadowed_files(paths):
    """Files of our name in the directories read after ours: ours would replace them."""
    found = []
    for directory in SYSCTL_D_DIRS:
        if directory == paths.sysctl_dir:
            continue
        candidate = os.path.join(directory, paths.name)
        if os.path.lexists(under_root(paths.root, candidate)):
            found.append(candidate)
    return found


def write_sysctl(key, value, proc_sys):
    """Write one value straight to /proc/sys; a trailing newline clears empty lists."""
    with open(sysctl_path(key, proc_sys), "w", encoding="ascii") as handle:
        handle.write(value + "\n")


def writable(key, proc_sys):
    return os.access(sysctl_path(key, proc_sys), os.W_OK)


def put_file(path, data, mode):
    """Make path hold data (bytes) with mode, or be absent when data is None."""
    if data is None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    else:
        atomic_write(path, data, mode, sync=True)


def new_run_id():
    return uuid.uuid4().hex


@contextlib.contextmanager
def locked(paths, create=False):
    """The host lock when the state directory exists (or is created), else nothing."""
    state_dir = paths.real(paths.state_dir)
    if check_state_dir(state_dir, create=create):
        with host_lock(state_dir, paths.lock_timeout):
            yield
    else:
        yield


# ---- the transaction -------------------------------------------------------------------

def describe_oserror(key, exc):
    if exc.errno == errno.EROFS:
        return "%s: /proc/sys is read-only here (a container?); this host cannot be tuned" % key
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "%s: permission denied writing /proc/sys (run with become)" % key
    if exc.errno == errno.EINVAL:
        return "%s: the kernel refused the value (EINVAL)" % key
    return "%s: %s" % (key, exc.strerror or exc)


def transact(paths, runtime_new, runtime_old, *, file_new, file_new_mode, file_old,
             file_old_mode):
    """Write the file and the changed runtime values; on any failure undo all of it.

    runtime_new: key -> value to write (only changed keys); runtime_old: key -> value now.
    file_new/file_old: bytes or None (absent). Raises TuneError saying what failed and
    whether everything was put back.
    """
    file_done = False
    written = []
    try:
        if file_new != file_old or (file_new is not None
                                    and safe_mode(file_new_mode) != file_old_mode):
            file_done = True
            put_file(paths.real(paths.file), file_new, safe_mode(file_new_mode))
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
    except Exception as exc:
        # Any failure, not only I/O: a host is all old or all new.
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
                put_file(paths.real(paths.file), file_old, safe_mode(file_old_mode))
            except OSError as undo:
                problems.append("%s could not be put back: %s" % (paths.file, undo))
        if problems:
            raise TuneError("%s. Undoing failed, this host is HALF-CHANGED: %s"
                            % (reason, "; ".join(problems))) from None
        raise TuneError("%s. Everything this run wrote was put back (file and runtime "
                        "values are as before)" % reason) from None


# ---- modes -----------------------------------------------------------------------------

def host_file_problems(paths, file_old, state):
    """Why this host's file or state stops a tune (M2, M3 and a foreign file)."""
    problems = []
    if state is not None and state["file"] != paths.file:
        problems.append(
            "the saved state in %s is for %s, not %s: roll back first (playbooks/rollback.yml "
            "with portpool_tune_file_name=%s), or set portpool_tune_file_name back"
            % (paths.state_dir, state["file"], paths.file, os.path.basename(state["file"])))
    for path in shadowed_files(paths):
        problems.append(
            "%s would replace %s at boot (same name, read earlier), so its settings would be "
            "lost; choose another portpool_tune_file_name" % (paths.file, path))
    if file_old is not None and state is None:
        foreign = file_content_errors(as_text(file_old), paths.file)
        if foreign:
            problems.append(
                "%s already exists with settings portpool would drop (%s); move them to "
                "another file or choose another portpool_tune_file_name"
                % (paths.file, "; ".join(foreign[:3])))
    return problems


def survey(params, paths):
    """Validate and plan for this host: everything preflight and apply need, read-only."""
    values, errors, warnings = validate_settings(
        params["settings"], params["layers"], params["min_pool_size"])
    if errors:
        return {"input_errors": errors, "host_errors": [], "warnings": warnings}
    keys = set(values)
    if keys & set(RANGE_KEYS):
        keys.update(RANGE_KEYS)  # the pool is always range and reservation together
    current = read_runtime(sorted(keys), paths.proc_sys)
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
    decided["state"] = None
    try:
        file_old, file_old_mode = read_target(paths)
        if check_state_dir(paths.real(paths.state_dir)):
            decided["state"] = load_state(paths.real(paths.state), paths.sysctl_dir)
    except TuneError as exc:
        decided["host_errors"].append(str(exc))
        file_old, file_old_mode = None, None
    decided["host_errors"].extend(host_file_problems(paths, file_old, decided["state"]))
    file_new = render_file(decided["target"]).encode("ascii") if decided["target"] else None
    decided["file_old"], decided["file_old_mode"] = file_old, file_old_mode
    # An empty plan leaves an existing file alone rather than deleting it.
    decided["file_new"] = file_new if file_new is not None else file_old
    decided["file_new_mode"] = FILE_MODE if file_new is not None else file_old_mode
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


def run_check(params, paths):
    """state=present in check mode: what an apply would do, changing nothing.

    The preflight of a rollout. Problems come back as lists, `input_errors` (the
    settings are wrong: fatal for every host) and `host_errors` (this host cannot
    take them), and fail the call; otherwise `changed` says whether an apply
    would change the host."""
    result = run_preflight(params, paths)
    result["warnings"] = result["planned_warnings"]
    problems = result["input_errors"] + result["host_errors"]
    if problems:
        result.update(failed=True, msg="nothing would be changed on this host: "
                      + "; ".join(problems))
        return result
    result.update(changed=result["would_change"], state_saved=False, state_created=False,
                  run_id=None)
    return with_diff(result, paths)


def run_apply(params, paths, check_mode=False, now=utc_now):
    # A first look without the lock: a refused or unchanged host gets no state directory.
    result = _apply_locked(params, paths, True, now)
    if check_mode or not result["changed"]:
        return result
    with locked(paths, create=True):
        # Surveyed again under the lock: `current` is what this run really replaces.
        return _apply_locked(params, paths, False, now)


def _apply_locked(params, paths, check_mode, now):
    decided = survey(params, paths)
    problems = decided["input_errors"] + decided["host_errors"]
    if problems:
        raise TuneError("nothing was changed on this host: " + "; ".join(problems))
    result = planned_result(decided, paths)
    result["warnings"] = decided["warnings"]
    result["state_saved"] = False
    result["state_created"] = False
    result["run_id"] = None
    changing = bool(decided["changes"] or decided["file_changed"])
    result["changed"] = changing
    if not changing or check_mode:
        return with_diff(result, paths)

    # Save what is there now before the first change (kept across later runs), and
    # which run changed the host last, so an older run's undo cannot undo a newer one.
    state_path = paths.real(paths.state)
    state = decided["state"]
    fresh = state is None
    state_old_bytes = None if fresh else state_bytes(state)
    if fresh:
        state = new_state(paths.file, decided["file_old"], decided["file_old_mode"], now())
    extend_state(state, decided["current"])
    state["last_run"] = result["run_id"] = new_run_id()
    atomic_write(state_path, state_bytes(state), STATE_MODE, sync=True)
    result["state_saved"] = True
    result["state_created"] = fresh
    runtime_new = {key: decided["target"][key] for key in decided["changes"]}
    try:
        transact(paths, runtime_new, decided["current"], file_new=decided["file_new"],
                 file_new_mode=decided["file_new_mode"], file_old=decided["file_old"],
                 file_old_mode=decided["file_old_mode"])
    except TuneError:
        put_file(state_path, state_old_bytes, STATE_MODE)
        raise
    return with_diff(result, paths)


def _superseded(state, run_id):
    return run_id is not None and state is not None and state.get("last_run") != run_id


def run_verify(params, paths):
    with locked(paths):
        state = None
        if check_state_dir(paths.real(paths.state_dir)):
            state = load_state(paths.real(paths.state), paths.sysctl_dir)
        return _verify(params, paths, state)


def _verify(params, paths, state):
    expected = params["expected"] or {}
    runtime = dict(expected.get("runtime") or {})
    mismatches = []
    if _superseded(state, params.get("run_id")):
        mismatches.append({"key": "run", "expected": params["run_id"],
                           "actual": state.get("last_run"),
                           "source": "the state (another portpool run changed this host after "
                                     "this one)"})
    for key, want in runtime.items():
        got = read_sysctl(key, paths.proc_sys)
        if normalise_value(got) != normalise_value(want):
            mismatches.append({"key": key, "expected": want, "actual": got})
    if "file" in expected:
        data, mode = read_target(paths)
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
    live = read_runtime(RANGE_KEYS, paths.proc_sys)
    if params.get("probe") is not None:
        mismatches.extend(probe_mismatches({**runtime, **live}, params["probe"]))
    result = {"changed": False, "file": paths.file, "mismatches": mismatches}
    try:
        low, high = parse_port_range(live[RANGE_KEYS[0]])
        spans = parse_reserved_ports(live[RANGE_KEYS[1]] or "")
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


def restore_values(restore):
    """(runtime, file bytes, mode) from a `restore` argument, checked like user input."""
    if not isinstance(restore, dict):
        raise TuneError("restore must be the `before` an apply returned")
    saved_runtime = {}
    for key, value in (restore.get("runtime") or {}).items():
        if value is None:
            continue
        short = DOTTED_TO_SHORT.get(key)
        if short is None:
            raise TuneError("the values to restore name %r, which portpool does not manage"
                            % (key,))
        errors = validate_settings({short: value}, [["restore", {short: 1}]])[1]
        if errors:
            raise TuneError("nothing was rolled back: " + "; ".join(errors))
        saved_runtime[key] = value
    text = restore.get("file")
    if text is None:
        return saved_runtime, None, None
    errors = file_content_errors(text, "restore.file")
    if errors:
        raise TuneError("nothing was rolled back: " + "; ".join(errors))
    return saved_runtime, text.encode("utf-8"), FILE_MODE


def run_rollback(params, paths, check_mode=False):
    if check_mode:
        return _rollback(params, paths, True)
    with locked(paths):
        return _rollback(params, paths, False)


def _rollback(params, paths, check_mode):
    state_path = paths.real(paths.state)
    result = {"changed": False, "file": paths.file, "state_file": paths.state,
              "changed_keys": [], "file_changed": False}
    state = None
    if check_state_dir(paths.real(paths.state_dir)):
        state = load_state(state_path, paths.sysctl_dir)
    run_id = params.get("run_id")
    if _superseded(state, run_id):
        # Not an error of the undo: the newer run's values stay, and its own
        # verification says whether they are right.
        result["msg"] = ("not undone: another portpool run changed this host after this run "
                         "(its values are in place now and the saved state is kept)")
        result["before"] = result["after"] = {"runtime": {}, "file": None}
        return result
    restore = params.get("restore")
    if restore is not None:
        saved_runtime, file_saved, saved_mode = restore_values(restore)
    else:
        if state is None:
            result["msg"] = "no saved state in %s: nothing to roll back" % paths.state_dir
            result["before"] = result["after"] = {"runtime": {}, "file": None}
            return result
        if state["file"] != paths.file:
            raise TuneError("the saved state is for %s, not %s; set portpool_tune_file_name to "
                            "match" % (state["file"], paths.file))
        saved_runtime = state["runtime"]
        file_saved, saved_mode = saved_file(state)
        result["saved_at"] = state["saved_at"]
    current = read_runtime(list(saved_runtime), paths.proc_sys)
    file_old, file_old_mode = read_target(paths)
    changes = {key: value for key, value in saved_runtime.items()
               if normalise_value(current.get(key)) != normalise_value(value)}
    file_changed = file_saved != file_old or (
        file_saved is not None and file_old_mode != safe_mode(saved_mode))
    result.update(
        changed=bool((state is not None and restore is None) or changes or file_changed),
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
             file_old=file_old, file_old_mode=file_old_mode)
    if restore is None:
        os.replace(state_path, paths.real(paths.retired))
        result["msg"] = "restored the values saved at %s" % state["saved_at"]
    else:
        if state is not None and run_id is not None:
            # This run is undone: no run is the last one any more.
            state["last_run"] = None
            atomic_write(state_path, state_bytes(state), STATE_MODE, sync=True)
        result["msg"] = "restored the values found before this run"
    return result


def run_apply_verified(params, paths, check_mode=False, measure=None):
    """Apply, then verify on the host in the same call: one round trip, nothing echoed back.

    The read-back is verify's own (each written key in /proc/sys, the file and its mode,
    this run still the last one); with `verify_probe` options, `measure` (the probe's
    code, portpool_probe_run.measure) also checks the pool the kernel now hands out.
    A failed verification fails the result but keeps `before`, `run_id` and
    `state_created`, so the caller can undo exactly this run.
    """
    result = run_apply(params, paths, check_mode)
    if check_mode or not result["changed"] or not params.get("verify", True):
        return result
    probe = None
    probe_error = None
    if params.get("verify_probe") is not None and measure is not None:
        outcome = measure(params["verify_probe"], False)
        probe, probe_error = outcome.probe, outcome.error
    checked = dict(params, run_id=result["run_id"], facts=None, probe=probe,
                   expected={"runtime": result["target"], "file": result["after"]["file"]})
    verified = run_verify(checked, paths)
    if probe_error:
        verified["mismatches"].append({"key": "probe", "expected": "a measurement",
                                       "actual": probe_error, "source": "portpool_probe"})
        verified["failed"] = True
        verified["msg"] = ((verified.get("msg") or "verification failed") + "; the probe failed: "
                           + probe_error)
    result["mismatches"] = verified["mismatches"]
    if params.get("verify_probe") is not None:
        result["probe"] = probe
    if "pool" in verified:
        result["pool"] = verified["pool"]
    if verified.get("failed"):
        result.update(failed=True, msg=verified["msg"])
    return result
