# -*- coding: utf-8 -*-
# Copyright: portpool contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""File helpers for everything portpool writes: results and reports on the
controller, sysctl.d files and saved state on the targets (standard library only).

Results hold every host's facts (listeners, backend addresses, process names),
so they are private: files 0600, folders 0700. A write never follows a symbolic
link planted in a shared folder: the temporary file is created exclusively under
a random name, then renamed over the target, and the folder is fsynced so the
rename survives a crash.
"""

from __future__ import annotations

import errno
import hashlib
import itertools
import os
import re
import tempfile
import time
from datetime import datetime, timezone

FILE_MODE = 0o600
DIR_MODE = 0o700
_UNSAFE_FILE_CHARS = re.compile(r"[^A-Za-z0-9._-]")


# What fsync on a folder returns where the filesystem cannot do it; the rename
# still happened. Any other error (EIO: the disk) is raised.
_CANNOT_SYNC_FOLDER = frozenset((errno.EINVAL, errno.ENOTSUP, errno.EBADF))


def fsync_dir(path):
    """Flush a folder's entries (a rename in it) to disk."""
    handle = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(handle)
    except OSError as exc:
        if exc.errno not in _CANNOT_SYNC_FOLDER:
            raise
    finally:
        os.close(handle)


def atomic_write(path, text, mode=FILE_MODE, sync=False):
    """Write text to path through an exclusive temporary file renamed over it.

    Readers (a browser, node_exporter's textfile collector) see the old file
    or the new one, never half of one. `mkstemp` opens with O_EXCL under a
    random name, so a link planted in the folder is never written through;
    the rename replaces a link at `path` itself rather than following it.
    `text` may be a string, bytes, or an iterable of strings (a template's
    `generate()`), written as it comes so a large report is never whole in memory.
    With `sync`, the file (with its mode) and then its folder are fsynced, so
    the new file survives a crash: about 10 ms a file on ext4, so a caller
    writing thousands (the audit's results) leaves it off and calls `fsync_dir`
    once. Tune's sysctl.d file and saved state are always written with `sync`.
    """
    folder, name = os.path.split(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(prefix=".%s." % name[:64], suffix=".tmp",
                                         dir=folder)
    try:
        with os.fdopen(handle, "wb", buffering=1 << 20) as stream:
            if isinstance(text, bytes):
                stream.write(text)
            elif isinstance(text, str):
                stream.write(text.encode("utf-8", "replace"))
            else:
                # Templates yield a million small strings: join them in batches.
                chunks = iter(text)
                batch = list(itertools.islice(chunks, 8192))
                while batch:
                    stream.write("".join(batch).encode("utf-8", "replace"))
                    batch = list(itertools.islice(chunks, 8192))
            stream.flush()
            os.fchmod(stream.fileno(), mode)  # set, not masked: umask does not apply
            if sync:
                os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.lexists(temporary):
            os.unlink(temporary)
        raise
    if sync:
        fsync_dir(folder)


def make_private_dir(path):
    """Create path (and its parents) as 0700 folders; an existing one is kept as is."""
    os.makedirs(path, mode=DIR_MODE, exist_ok=True)
    return path


def safe_file_name(host):
    """An ASCII file name for a host that cannot escape its folder.

    Names made only of ASCII letters, digits, dot, dash and underscore (and
    not starting with a dot) are kept; anything else is replaced by `_` and a
    short hash of the real name is appended, so two hosts never share a file.
    """
    host = host if isinstance(host, str) else ("" if host is None else str(host))
    safe = _UNSAFE_FILE_CHARS.sub("_", host)[:100]
    if safe == host and safe and not safe.startswith("."):
        return safe
    digest = hashlib.sha256(host.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    return "%s-%s" % (safe.lstrip(".") or "host", digest)


def unique_file_names(names):
    """Each name made unique ignoring case (macOS and Windows folders fold case).

    `names` in a stable order; the second `WEB01`/`web01` gets `-2`, and so on.
    """
    seen = set()
    unique = []
    for base in names:
        name, number = base, 1
        while name.casefold() in seen:
            number += 1
            name = "%s-%d" % (base, number)
        seen.add(name.casefold())
        unique.append(name)
    return unique


def utc_now():
    """The time now in UTC, to the second: `2026-12-04T15:41:31Z`."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def parse_time(text):
    """Seconds since the epoch for an ISO-8601 timestamp, or None.

    A timestamp without a zone is taken as UTC, as the audit writes UTC.
    """
    if not isinstance(text, str) or not text:
        return None
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    try:
        stamp = datetime.fromisoformat(value)
    except ValueError:
        return None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=timezone.utc)
    return stamp.timestamp()


def utc_stamp():
    """The time now in UTC for a folder name: `20261204T154131Z`."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
