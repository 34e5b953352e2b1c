# -*- coding: utf-8 -*-
# Copyright: portpool contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Lab measurements on record, so that an audit need not repeat them.

A lab probe starts from an empty network namespace: what it measures depends only
on its configuration key (the kernel, the copied settings, who runs it, the
options, portpool's version; `configuration_key` in portpool_probe_model). The
audit keeps the newest measurement of each key in `probes.json`, beside its run
folders, and hands the next run the keys still fresh. A host whose key is among
them skips the hold, and the audit fills its probe in from the record, saying
which host measured it and when (docs/probe.md).
"""

from __future__ import annotations

import json
import os
import time

from .portpool_files import atomic_write, parse_time

RECORD_FILE = "probes.json"
SCHEMA = 1
DAY = 86400
# What every entry holds; filled_in reads each of them.
ENTRY_KEYS = ("probe", "host", "measured_at", "run")


def record_path(run_folder):
    """The record beside a run folder: shared by every run under the same parent."""
    return os.path.join(os.path.dirname(os.path.normpath(run_folder)), RECORD_FILE)


def measured_epoch(entry):
    """When an entry was measured, in seconds since the epoch; ValueError when the
    entry lacks a field or its time is not one."""
    missing = [key for key in ENTRY_KEYS if key not in entry]
    if missing or not isinstance(entry["probe"], dict):
        raise ValueError("an entry lacks %s" % (", ".join(missing) or "its probe"))
    stamp = parse_time(entry["measured_at"])
    if stamp is None:
        raise ValueError("%r is not a time" % (entry["measured_at"],))
    return stamp


def read_record(path, max_age_days, now=None):
    """(entries still fresh {key: entry}, warning or None). No file: nothing on record.

    An entry older than `max_age_days` is dropped, so every host measures again at
    least that often; 0 keeps nothing. A record that cannot be read is ignored with
    a warning: the run then measures every host, as a first run does.
    """
    if max_age_days <= 0:
        return {}, None
    try:
        with open(path, encoding="utf-8") as handle:
            document = json.load(handle)
        entries = document["measurements"]
        if document.get("schema") != SCHEMA or not isinstance(entries, dict):
            raise ValueError("not a schema %d record" % SCHEMA)
        now = time.time() if now is None else now
        fresh = {key: entry for key, entry in entries.items()
                 if now - measured_epoch(entry) < max_age_days * DAY}
    except FileNotFoundError:
        return {}, None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        return {}, ("probe measurements on record ignored (every host measures again):"
                    " %s: %s: %s" % (path, type(exc).__name__, exc))
    return fresh, None


def filled_in(probe, entries):
    """(probe, error): a probe that skipped its hold, completed from the record.

    A probe that measured is returned as it is. One that names a key the record
    does not hold (another run rewrote the record meanwhile) has no measurement.
    """
    if not isinstance(probe, dict) or not probe.get("on_record"):
        return probe, None
    entry = entries.get(probe.get("key"))
    if entry is None:
        return None, ("the probe skipped its hold for a measurement on record that this"
                      " run does not hold (key %s): run the audit again" % probe.get("key"))
    record = {key: entry[key] for key in ENTRY_KEYS if key != "probe"}
    summary = "%s; on record: measured on %s at %s with the same kernel and settings" % (
        entry["probe"].get("summary") or "", record["host"], record["measured_at"])
    return dict(entry["probe"], settings_from=probe.get("settings_from"), record=record,
                summary=summary), None


def updated_record(entries, measured, run_id):
    """The record after a run: the fresh entries read, plus this run's measurements.

    `measured` lists (host, probe, measured_at) for every probe of this run. Kept:
    the probes that measured (not those filled in from the record) and ran their
    range dry; a hold cut short by a timeout or a descriptor limit is not a
    measurement to hand on. The newest per key wins.
    """
    record = dict(entries)
    for host, probe, measured_at in measured:
        key = probe.get("key")
        complete = (probe.get("hold") or {}).get("stopped_by") == "EADDRNOTAVAIL"
        if not key or not complete or probe.get("record") or probe.get("on_record"):
            continue
        record[key] = {"probe": probe, "host": host, "measured_at": measured_at,
                       "run": run_id}
    return record


def write_record(path, entries):
    atomic_write(path, json.dumps({"schema": SCHEMA, "measurements": entries},
                                  indent=1, sort_keys=True) + "\n")
