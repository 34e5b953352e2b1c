# -*- coding: utf-8 -*-
# Copyright: portpool contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The tune state directory: who may write it, the saved state, the host lock.

Rollback writes what the state file says into /etc/sysctl.d and /proc/sys as root,
so the directory is trusted only when it is a real directory owned by the user
running the module (root) that nobody else can write, and the file is checked like
user input: a known schema, managed keys only, values portpool itself accepts.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import errno
import fcntl
import json
import os
import stat
import time

from .portpool_tune_plan import (
    DOTTED_TO_SHORT,
    STATE_VERSION,
    file_content_errors,
    file_name_error,
    validate_settings,
)

STATE_NAME = "tune-state.json"
RETIRED_NAME = "tune-state.rolled-back.json"
DIR_MODE = 0o700
STATE_MODE = 0o600
FILE_MODE = 0o644
MAX_STATE_BYTES = 256 * 1024
MAX_FILE_BYTES = 64 * 1024
STATE_KEYS = frozenset(("version", "saved_at", "file", "file_existed", "file_content_b64",
                        "file_mode", "runtime", "last_run"))


class TuneError(Exception):
    """A failure on this host; the message says what and whether it was undone."""


# ---- trust checks -------------------------------------------------------------------

def _owner_and_mode_problem(info, what):
    if info.st_uid != os.geteuid():
        return "%s is owned by uid %d, not by uid %d running portpool" % (
            what, info.st_uid, os.geteuid())
    if info.st_mode & 0o022:
        return "%s is writable by group or others (mode %04o)" % (
            what, stat.S_IMODE(info.st_mode))
    return None


def check_state_dir(path, create=False):
    """True when the state directory exists and is trusted; raise TuneError otherwise.

    Created 0700 when `create`; an existing one that only its owner (us) can write
    is tightened to 0700, anything else is refused, never used.
    """
    refuse = ("refusing the state directory %s: %%s. Rollback runs what it holds as root, "
              "so it must be a directory owned by root with mode 0700; fix or remove it "
              "by hand" % path)
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        if not create:
            return False
        os.makedirs(os.path.dirname(path) or ".", mode=0o755, exist_ok=True)
        os.mkdir(path, DIR_MODE)
        os.chmod(path, DIR_MODE)
        info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode):
        raise TuneError(refuse % "it is a symlink")
    if not stat.S_ISDIR(info.st_mode):
        raise TuneError(refuse % "it is not a directory")
    problem = _owner_and_mode_problem(info, "it")
    if problem:
        raise TuneError(refuse % problem)
    parent = os.lstat(os.path.dirname(os.path.abspath(path)))
    if parent.st_mode & 0o022 and not parent.st_mode & stat.S_ISVTX:
        raise TuneError(refuse % ("its parent directory is writable by group or others "
                                  "without the sticky bit, so it can be swapped"))
    if create and stat.S_IMODE(info.st_mode) != DIR_MODE:
        os.chmod(path, DIR_MODE)
    return True


def read_trusted(path, limit, what):
    """The bytes of a regular file nobody but us may write, or None when absent."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise TuneError("refusing %s %s: it is a symlink; remove it by hand" % (what, path)
                            ) from None
        raise
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise TuneError("refusing %s %s: it is not a regular file" % (what, path))
        problem = _owner_and_mode_problem(info, what)
        if problem:
            raise TuneError("refusing %s %s: %s; fix or remove it by hand" % (what, path, problem))
        if info.st_size > limit:
            raise TuneError("refusing %s %s: %d bytes, more than the %d a real one holds"
                            % (what, path, info.st_size, limit))
        return handle.read(limit + 1)


# ---- the lock -------------------------------------------------------------------------

@contextlib.contextmanager
def host_lock(state_dir, timeout, clock=time.monotonic, sleep=time.sleep):
    """Hold the one portpool lock of this host: flock on the state directory itself.

    Locking the directory leaves no lock file behind and cannot race with one being
    removed. A second run waits up to `timeout` seconds, then fails saying so.
    """
    path = state_dir
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        deadline = clock() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if clock() >= deadline:
                    raise TuneError(
                        "another portpool run holds the lock on %s on this host; waited %d s "
                        "(lock_timeout), nothing was changed by this run"
                        % (path, timeout)) from None
                sleep(0.1)
        yield
    finally:
        os.close(fd)


# ---- the state file -------------------------------------------------------------------

def state_errors(state, sysctl_dir):
    """Why a loaded state is not one portpool wrote, as a list (empty when it is)."""
    if not isinstance(state, dict):
        return ["it is not a JSON object"]
    errors = []
    unknown = sorted(set(state) - STATE_KEYS, key=str)
    if unknown:
        errors.append("unknown fields %s" % ", ".join(map(repr, unknown)))
    if state.get("version") != STATE_VERSION:
        errors.append("version %r is not %d" % (state.get("version"), STATE_VERSION))
    if not isinstance(state.get("saved_at"), str) or len(state["saved_at"]) > 64:
        errors.append("saved_at is not a timestamp")
    if state.get("last_run") is not None and (
            not isinstance(state["last_run"], str) or len(state["last_run"]) > 64):
        errors.append("last_run is not a run id")
    file_path = state.get("file")
    if not isinstance(file_path, str) or os.path.dirname(file_path) != sysctl_dir:
        errors.append("file %r is not in %s" % (file_path, sysctl_dir))
    else:
        name_error = file_name_error(os.path.basename(file_path))
        if name_error:
            errors.append(name_error)
    existed = state.get("file_existed")
    b64 = state.get("file_content_b64")
    mode = state.get("file_mode")
    if existed is False:
        if b64 is not None or mode is not None:
            errors.append("a file that did not exist has content or a mode")
    elif existed is True:
        try:
            data = base64.b64decode(b64 if isinstance(b64, str) else "\0", validate=True)
        except (binascii.Error, ValueError):
            data = None
            errors.append("file_content_b64 is not base64")
        if data is not None:
            if len(data) > MAX_FILE_BYTES:
                errors.append("the saved file is over %d bytes" % MAX_FILE_BYTES)
            else:
                errors.extend(file_content_errors(data.decode("utf-8", "replace"),
                                                  "the saved file"))
        if isinstance(mode, bool) or not isinstance(mode, int) or not 0 <= mode <= 0o777:
            errors.append("file_mode %r is not a plain permission mode" % (mode,))
    else:
        errors.append("file_existed is not true or false")
    runtime = state.get("runtime")
    if not isinstance(runtime, dict):
        errors.append("runtime is not an object")
        return errors
    for key, value in runtime.items():
        short = DOTTED_TO_SHORT.get(key)
        if short is None:
            errors.append("runtime names %r, which portpool does not manage" % (key,))
        elif not isinstance(value, str):
            errors.append("runtime %s is not text" % key)
        else:
            errors.extend(validate_settings({short: value}, [["runtime", {short: 1}]])[1])
    return errors


def load_state(path, sysctl_dir):
    """The validated state, or None when there is none; TuneError for anything else."""
    data = read_trusted(path, MAX_STATE_BYTES, "the saved state")
    if data is None:
        return None
    try:
        state = json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        raise TuneError("saved state %s is not valid JSON (%s); fix or remove it by hand"
                        % (path, exc)) from None
    errors = state_errors(state, sysctl_dir)
    if errors:
        raise TuneError("refusing the saved state %s, portpool did not write it this way: %s; "
                        "fix or remove it by hand" % (path, "; ".join(errors)))
    return state


def saved_file(state):
    """(bytes or None, mode) of the file as the validated state saved it."""
    if not state["file_existed"]:
        return None, None
    return base64.b64decode(state["file_content_b64"], validate=True), state["file_mode"]


def new_state(file_path, file_data, file_mode, now):
    return {
        "version": STATE_VERSION,
        "saved_at": now,
        "file": file_path,
        "file_existed": file_data is not None,
        "file_content_b64": None if file_data is None else base64.b64encode(file_data).decode(),
        "file_mode": None if file_data is None else stat.S_IMODE(file_mode) & 0o777,
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


def state_bytes(state):
    return (json.dumps(state, indent=2, sort_keys=True) + "\n").encode()


def safe_mode(mode):
    """The mode a restored file gets: never group/world-writable, setuid or sticky."""
    return FILE_MODE if mode is None else mode & 0o644
