# -*- coding: utf-8 -*-
# Copyright: portpool contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Structured fixes: what a finding asks for, as one model, rendered and re-checkable.

A fix is a dict:
- `settings`: {dotted key: value text} the fix ends with;
- `file`: the sysctl file to write, and `file_lines`: the lines for it, unquoted
  (systemd-sysctl and `sysctl -p` take the value verbatim: quotes make it EINVAL);
- `delete`: [{"file", "key"}], lines to remove from other files;
- `shell`: `sysctl -w 'key=value'` lines that apply the value now (only the shell
  form quotes, because the value may hold spaces).

apply_fix performs a fix on a copy of a host's facts, the way the files and the
kernel would change, so the engine can judge the result with every rule before the
fix is offered.
"""

from __future__ import annotations

import copy
import os

from .portpool_audit_facts import show
from .portpool_sysctl import (
    dotted_name,
    from_text,
    pool_size,
    same,
    short_name,
    to_text,
)

SYSCTL_CONF = "/etc/sysctl.conf"


def file_line(key, text):
    """A sysctl.d line: never quoted, an empty value as `key =`."""
    return ("%s = %s" % (dotted_name(key), text)).rstrip()


def shell_line(key, text):
    """The runtime form, quoted for the shell: `sysctl -w 'key=value'`."""
    return "sysctl -w '%s=%s'" % (dotted_name(key), text)


def make_fix(settings, file=None, delete=(), runtime=True):
    """A fix setting `settings` ({key: text}) in `file`, deleting `delete`, and now."""
    settings = {dotted_name(key): text for key, text in settings.items()}
    return {
        "settings": settings,
        "file": file,
        "file_lines": [file_line(key, text) for key, text in settings.items()] if file else [],
        "delete": [{"file": path, "key": dotted_name(key)} for path, key in delete],
        "shell": [shell_line(key, text) for key, text in settings.items()] if runtime else [],
    }


def render(fix):
    """One sentence for a fix, from its fields (the report shows the same fields)."""
    parts = []
    if fix["file_lines"]:
        parts.append("in %s write %s (replacing the key's line if there is one)" % (
            fix["file"], ", ".join("`%s`" % line for line in fix["file_lines"])))
    by_file = {}
    for item in fix["delete"]:
        by_file.setdefault(item["file"], []).append(item["key"])
    for path, keys in by_file.items():
        parts.append("delete the %s line%s from %s" % (
            ", ".join(keys), "s" if len(keys) > 1 else "", path))
    if fix.get("container"):
        parts.append("in the container's own configuration: %s" % " / ".join(
            "`%s`" % line.strip() for line in fix["container"]))
    if fix["shell"]:
        parts.append("apply it now with %s" % ", ".join("`%s`" % line for line in fix["shell"]))
    text = "; ".join(parts)
    return text[:1].upper() + text[1:] + "." if text else ""


def describe_values(settings):
    return ", ".join("%s = %s" % (key, show(text)) for key, text in settings.items())


# --------------------------------------------------------------------------- target

def target_for(ctx, key):
    """Where a new value for `key` goes, and the lines that must go for it to win at boot.

    - nothing sets it, or portpool's own file wins: portpool's file;
    - portpool's file sets it but a later file overrides it: portpool's file, and
      delete the key from every file read after it (never the other way round);
    - another file wins: that file (its line is replaced).
    Returns (file, [(file, key), ...] to delete).
    """
    key = dotted_name(key)
    managed = ctx.managed_file()
    entry = ctx.persisted_entry(key)
    if not entry or entry["file"] == managed:
        return managed, []
    files = [item["file"] for item in entry["also"]] + [entry["file"]]
    if managed in files:
        after = files[files.index(managed) + 1:]
        return managed, [(path, key) for path in dict.fromkeys(after) if path != managed]
    return entry["file"], []


def persist_fix(ctx, settings, runtime=True):
    """A fix that sets `settings` where they win at boot (and now, unless runtime=False)."""
    files, delete = {}, []
    for key in settings:
        path, gone = target_for(ctx, key)
        files.setdefault(path, {})[key] = settings[key]
        delete.extend(gone)
    fixes = [make_fix(values, path, delete, runtime) for path, values in files.items()]
    if len(fixes) == 1:
        return fixes[0]
    merged = fixes[0]
    for other in fixes[1:]:
        merged["settings"].update(other["settings"])
        merged["file_lines"].extend(other["file_lines"])
        merged["shell"].extend(other["shell"])
    return merged


# --------------------------------------------------------------------------- apply

def _order(files, path):
    """Reading position of a file: known files keep theirs; a new one sorts by name."""
    if path in files:
        return (files.index(path), 0)
    if path == SYSCTL_CONF:
        return (len(files), 0)
    names = [os.path.basename(item) for item in files if item != SYSCTL_CONF]
    return (sum(1 for name in names if name < os.path.basename(path)), -1)


def _assign(persisted, key, path, text):
    """Set or delete (text None) the assignment of `key` in `path`; recompute the winner."""
    key = short_name(key)
    keys = persisted.setdefault("keys", {})
    entry = keys.get(key)
    assigned = []
    if entry:
        assigned = [(item["file"], item.get("value")) for item in entry.get("also") or []]
        assigned.append((entry["file"], entry["value"]))
    assigned = [(file, value) for file, value in assigned if file != path]
    if text is not None:
        assigned.append((path, text))
    files = persisted.setdefault("files", [])
    assigned.sort(key=lambda item: _order(files, item[0]))
    if not assigned:
        keys[key] = None
        return
    win_file, win_value = assigned[-1]
    keys[key] = {"value": win_value, "file": win_file, "line": None, "ignore_errors": False,
                 "glob": None,
                 "also": [{"file": file, "line": None, "value": value}
                          for file, value in assigned[:-1]]}
    if win_file not in files:
        files.insert(_order(files, win_file)[0], win_file)


def apply_fix(facts, fix):
    """A copy of `facts` as they would be after `fix` is carried out literally.

    Raises ValueError when a value in the fix is not one the kernel accepts.
    """
    if fix.get("namespace"):
        return _apply_in_namespace(facts, fix)
    # Copy only what a fix changes (the rest is shared, never written): a deep copy
    # per fix was most of the audit's time.
    facts = dict(facts)
    persisted = dict(facts.get("persisted") or {})
    persisted["keys"] = dict(persisted.get("keys") or {})
    persisted["files"] = list(persisted.get("files") or [])
    facts["persisted"] = persisted
    facts["sysctl"] = dict(facts.get("sysctl") or {})
    for item in fix["delete"]:
        _assign(persisted, item["key"], item["file"], None)
    if fix["file"]:
        for key, text in fix["settings"].items():
            _assign(persisted, key, fix["file"], text)
    sysctl = facts["sysctl"]
    if fix["shell"]:
        for key, text in fix["settings"].items():
            sysctl[short_name(key)] = from_text(key, text)
    drift = {}
    for key, entry in (persisted.get("keys") or {}).items():
        now = to_text(key, sysctl.get(short_name(key)))
        if entry and not same(key, now, entry["value"]):
            drift[key] = {"runtime": now, "persisted": entry["value"], "file": entry["file"]}
    persisted["drift"] = drift
    _recount(facts)
    return facts


def _apply_in_namespace(facts, fix):
    """`facts` with a namespace fix's values set inside that namespace only.

    Only that namespace's entry is copied; the host's facts are shared, untouched.
    """
    inode = fix["namespace"]["inode"]
    facts = dict(facts)
    fact = dict(facts.get("namespaces") or {})
    items = []
    for item in fact.get("items") or []:
        if item.get("inode") == inode and item.get("sysctl") is not None:
            changed = copy.deepcopy(item)
            for key, text in fix["settings"].items():
                changed["sysctl"][short_name(key)] = from_text(key, text)
            _recount(changed)
            items.append(changed)
        else:
            items.append(item)
    fact["items"] = items
    facts["namespaces"] = fact
    return facts


def _recount(facts):
    """The pool, utilisation and listeners in range for the new range and reservation."""
    sysctl = facts["sysctl"]
    rng = sysctl.get("ip_local_port_range")
    reserved = sysctl.get("ip_local_reserved_ports") or []
    if not rng:
        return
    facts["ephemeral"] = pool_size(rng[0], rng[1], reserved)
    usable = facts["ephemeral"]["usable"]
    if facts.get("destinations"):
        facts["destinations"] = dict(facts["destinations"], top=[
            dict(dest, utilisation=round((dest.get("total") or 0) / usable, 4)
                 if usable else None)
            for dest in facts["destinations"].get("top") or []])
    listeners = []
    for item in facts.get("listeners_in_range") or []:
        port = item["port"]
        if rng[0] <= port <= rng[1]:
            listeners.append(dict(item, reserved=any(low <= port <= high
                                                     for low, high in reserved)))
    if facts.get("listeners_in_range") is not None:
        facts["listeners_in_range"] = listeners
