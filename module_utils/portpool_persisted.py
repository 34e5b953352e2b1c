# -*- coding: utf-8 -*-
# Copyright: portpool contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which sysctl value wins at boot: systemd-sysctl's file precedence, as pure functions.

The order modelled (systemd `src/sysctl/sysctl.c`, sysctl.d(5), procps
`sysctl --system`):

1. `*.conf` files from /etc/sysctl.d, /run/sysctl.d, /usr/local/lib/sysctl.d,
   /usr/lib/sysctl.d and /lib/sysctl.d. A file name found in an earlier
   directory masks the same name in every later one; a winner that is a
   symlink to /dev/null masks the name altogether. A directory that is the same
   directory as an earlier one (/lib -> /usr/lib) is read once.
2. The surviving files are read in order of their file names, whatever the
   directory; a later assignment to the same key overrides an earlier one.
3. /etc/sysctl.conf is read last (procps `sysctl --system`; current systemd
   reads it through the /etc/sysctl.d/99-sysctl.conf symlink distributions
   ship, which is then recognised and not read twice).

Keys may use `/` or `.` as separators (the first separator decides); a `-`
prefix means "ignore errors when applying"; keys with glob characters apply to
every matching key that has no explicit assignment, and `-pattern` on its own
excludes a key from glob matches.

All paths live under a `root` so tests use fixture trees.
"""

from __future__ import annotations

import fnmatch
import os

from .portpool_sysctl import normalise_value, same

SYSCTL_D_DIRS = (
    "/etc/sysctl.d",
    "/run/sysctl.d",
    "/usr/local/lib/sysctl.d",
    "/usr/lib/sysctl.d",
    "/lib/sysctl.d",
)
SYSCTL_CONF = "/etc/sysctl.conf"
MAX_SYMLINK_HOPS = 40
GLOB_CHARS = "*?["


def under_root(root, path):
    """`path` (absolute, as the target system sees it) inside `root`."""
    return os.path.join(root, path.lstrip("/")) if root not in ("", "/") else path


def resolve(root, path):
    """Follow symlinks of a system path inside `root`.

    Returns the resolved system path (absolute, as the target sees it) or None
    when the chain is too long. Absolute link targets are taken relative to the
    root, as systemd-sysctl --root would.
    """
    current = path
    for _hop in range(MAX_SYMLINK_HOPS):
        real = under_root(root, current)
        if not os.path.islink(real):
            return os.path.normpath(current)
        target = os.readlink(real)
        if not target.startswith("/"):
            target = os.path.join(os.path.dirname(current), target)
        current = os.path.normpath(target)
    return None


def _same_directory(root, first, second):
    try:
        return os.path.samefile(under_root(root, first), under_root(root, second))
    except OSError:
        return False


def list_config_files(root="/"):
    """The files systemd-sysctl reads, in order, and the names that are masked.

    Returns (files, masked): `files` is a list of system paths in reading
    order, ending with /etc/sysctl.conf when it exists and is not already read
    through a symlink; `masked` lists the system paths of /dev/null symlinks.
    """
    winners = {}
    masked = []
    seen_dirs = []
    for directory in SYSCTL_D_DIRS:
        real_dir = under_root(root, directory)
        if not os.path.isdir(real_dir):
            continue
        if any(_same_directory(root, directory, earlier) for earlier in seen_dirs):
            continue
        seen_dirs.append(directory)
        try:
            names = os.listdir(real_dir)
        except OSError:
            continue
        for name in names:
            if not name.endswith(".conf") or name in winners:
                continue
            path = os.path.join(directory, name)
            target = resolve(root, path)
            if target == "/dev/null":
                winners[name] = None
                masked.append(path)
                continue
            if target is None or not os.path.isfile(under_root(root, target)):
                continue
            winners[name] = path
    files = [winners[name] for name in sorted(winners) if winners[name] is not None]
    conf_real = resolve(root, SYSCTL_CONF)
    if conf_real and os.path.isfile(under_root(root, conf_real)):
        already = {resolve(root, path) for path in files}
        if conf_real not in already:
            files.append(SYSCTL_CONF)
    return files, sorted(masked)


def normalise_key(key):
    """Canonical dotted form of a sysctl key, as systemd's sysctl_normalize does.

    If the first separator is a slash, slashes and dots swap roles, so
    `net/ipv4/conf/eth0.100/rp_filter` becomes `net.ipv4.conf.eth0/100.rp_filter`.
    """
    key = key.strip().strip("/")
    slash = key.find("/")
    dot = key.find(".")
    if slash != -1 and (dot == -1 or slash < dot):
        key = key.translate(str.maketrans("/.", "./"))
    return key


def parse_sysctl_conf(text):
    """Assignments in one sysctl.d file.

    Returns (entries, errors). Each entry is a dict with `line`, `key`
    (normalised), `value` (stripped, `None` for a bare `-pattern` exclusion),
    `ignore_errors` (the `-` prefix) and `glob`. Comment lines start with `#`
    or `;`. `errors` lists (line, text) of lines that are not assignments.
    """
    entries = []
    errors = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        ignore = line.startswith("-")
        body = line[1:] if ignore else line
        if "=" not in body:
            key = normalise_key(body)
            if ignore and key:
                entries.append({"line": number, "key": key, "value": None,
                                "ignore_errors": True,
                                "glob": any(char in key for char in GLOB_CHARS)})
            else:
                errors.append((number, line))
            continue
        key, _equals, value = body.partition("=")
        key = normalise_key(key)
        if not key:
            errors.append((number, line))
            continue
        entries.append({
            "line": number, "key": key, "value": value.strip(),
            "ignore_errors": ignore,
            "glob": any(char in key for char in GLOB_CHARS)})
    return entries, errors


def resolve_persisted(parsed_files, keys):
    """What wins at boot for each of `keys`, given files parsed in reading order.

    `parsed_files` is a list of (system path, entries from parse_sysctl_conf).
    Returns {key: None or {value, file, line, ignore_errors, glob, also}} where
    `also` lists every other assignment of the key (file, line, value), in
    reading order.
    """
    result = {}
    for key in keys:
        explicit = []
        globbed = []
        excluded = False
        for path, entries in parsed_files:
            for entry in entries:
                if entry["glob"]:
                    if fnmatch.fnmatchcase(key, entry["key"]):
                        globbed.append((path, entry))
                elif entry["key"] == key:
                    if entry["value"] is None:
                        excluded = True
                    else:
                        explicit.append((path, entry))
        if explicit:
            candidates = explicit
        elif excluded:
            candidates = []
        else:
            candidates = [(p, e) for p, e in globbed if e["value"] is not None]
        if not candidates:
            result[key] = None
            continue
        win_path, win = candidates[-1]
        also = [
            {"file": path, "line": entry["line"], "value": entry["value"]}
            for path, entry in explicit + [(p, e) for p, e in globbed if e["value"] is not None]
            if (path, entry["line"]) != (win_path, win["line"])]
        result[key] = {
            "value": normalise_value(win["value"]),
            "file": win_path,
            "line": win["line"],
            "ignore_errors": win["ignore_errors"],
            "glob": win["key"] if win["glob"] else None,
            "also": also,
        }
    return result


def read_persisted(keys, root="/"):
    """Read the config tree under `root` and resolve `keys`.

    Returns (persisted dict with `files`, `masked`, `keys`; warnings list).
    """
    warnings = []
    files, masked = list_config_files(root)
    parsed = []
    for path in files:
        real = under_root(root, path)
        try:
            with open(real, encoding="utf-8", errors="replace") as handle:
                text = handle.read()
        except OSError as exc:
            warnings.append("cannot read %s: %s" % (path, exc.strerror or exc))
            continue
        entries, errors = parse_sysctl_conf(text)
        for number, line in errors:
            warnings.append("%s:%d: not an assignment: %s" % (path, number, line))
        parsed.append((path, entries))
    return {
        "root": root,
        "files": [path for path, _entries in parsed],
        "masked": masked,
        "keys": resolve_persisted(parsed, keys),
    }, warnings


def find_drift(runtime, persisted_keys):
    """Keys whose runtime value differs from the value that would win at boot.

    `runtime` maps dotted keys to normalised runtime text (None: the kernel
    lacks the key). Keys nothing persists are not drift. Returns
    {key: {runtime, persisted, file}}.
    """
    drift = {}
    for key, winner in persisted_keys.items():
        if winner is None:
            continue
        now = runtime.get(key)
        if not same(key, now, winner["value"]):
            drift[key] = {"runtime": now, "persisted": winner["value"], "file": winner["file"]}
    return drift
