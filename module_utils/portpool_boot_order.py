# -*- coding: utf-8 -*-
# Copyright: portpool contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which other sysctl files undo portpool's values at the next boot.

systemd-sysctl reads /etc, /run, /usr/local/lib, /usr/lib and /lib sysctl.d
merged and sorted by file name (a name in an earlier directory masks the same
name later), then /etc/sysctl.conf; a later assignment wins. The reading order
comes from portpool_tune_plan.boot_files_with_ours and the precedence from
portpool_persisted.resolve_persisted: this file only compares the winners with
the values portpool writes. Pure: callers read the files and pass the text in.
"""

from __future__ import annotations

from .portpool_persisted import parse_sysctl_conf, resolve_persisted
from .portpool_sysctl import normalise_value


def boot_overrides(ours, order, contents, target):
    """Keys whose boot winner is another file with a different value.

    ours: the system path of portpool's file; order: every file read at boot, in
    reading order, ours included; contents: path -> text (ours as it will be;
    unreadable files left out); target: dotted key -> the value portpool sets.
    Returns [{key, file, line, value, ours, why}]: `value` is what the other file
    sets (and the kernel gets at boot), `ours` what portpool sets, `why` one line
    saying so. A file that sets the same value is harmless and left out.
    """
    parsed = [(path, parse_sysctl_conf(contents[path])[0]) for path in order if path in contents]
    winners = resolve_persisted(parsed, list(target))
    found = []
    for key, want in target.items():
        winner = winners.get(key)
        if winner is None or winner["file"] == ours:
            continue
        if winner["value"] == normalise_value(want):
            continue
        item = {"key": key, "file": winner["file"], "line": winner["line"],
                "value": winner["value"], "ours": normalise_value(want)}
        item["why"] = override_reason(item, ours)
        found.append(item)
    return found


def override_reason(item, ours):
    """One line: which file wins at boot, and what the kernel gets instead of ours."""
    return ("%s is also set in %s (line %d), which is applied after %s at boot and wins "
            "there: after a reboot the kernel gets %s, not %s" % (
                item["key"], item["file"], item["line"], ours,
                item["value"] or "(empty)", item["ours"] or "(empty)"))
