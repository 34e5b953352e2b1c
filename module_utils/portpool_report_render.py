# -*- coding: utf-8 -*-
# Copyright: portpool contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Render the fleet report model with Jinja2 and write every file atomically.

Runs on the controller only (jinja2 is an ansible-core dependency there).
Each output format gets its own Jinja environment whose escaping is on by
default, so a template cannot forget it:

- HTML: autoescape on.
- JUnit XML: `finalize` escapes every expression for XML and removes the
  characters XML cannot hold (cheaper than autoescape for 160,000 testcases).
- Markdown: `finalize` escapes every expression for Markdown and inline HTML.
- Prometheus: `finalize` escapes every string as a label value and prints
  numbers the way the text format reads them.
"""

from __future__ import annotations

import base64
import contextlib
import gc
import hashlib
import json
import os
import queue
import re
import resource
import shutil
import tempfile
import threading

from .portpool_files import (
    DIR_MODE,
    FILE_MODE,
    atomic_write,
    fsync_dir,
    make_private_dir,
    utc_now,
)
from .portpool_report import (
    FORMATS,
    SEVERITIES,
    STATUSES,
    as_str,
    build_model,
    display_text,
    fleet_document,
    format_count,
    load_results,
    load_rules,
    markdown_text,
    prometheus_label,
    read_bytes,
    xml_text,
)

try:
    import jinja2
    from markupsafe import Markup, escape
except ImportError:  # pragma: no cover - reported by the module
    jinja2 = None
    Markup = str
    escape = None

OUTPUT_FILES = {
    "json": "fleet.json",
    "markdown": "report.md",
    "html": "report.html",
    "junit": "junit.xml",
}
TEMPLATES = {
    "markdown": "report.md.j2",
    "html": "report.html.j2",
    "junit": "junit.xml.j2",
    "prometheus": "host.prom.j2",
}
SCRIPT_FILE = "report.js"
# Fleets from this size render JSON, JUnit and Prometheus in a forked process.
PARALLEL_HOSTS = 2000
FORKED_FORMATS = ("json", "junit", "prometheus")
PROMETHEUS_DIR = "prometheus"
LATEST_LINK = "latest"
# In every folder the report may later replace (prometheus/): proof it is ours.
MARKER_FILE = ".portpool-report"
MARKER_TEXT = "Written by portpool_report; the next report replaces this folder.\n"
_ANCHOR_SAFE = re.compile(r"[A-Za-z0-9._-]+")


def _number(value):
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _finalize_markdown(value):
    if value is None:
        return "-"
    if isinstance(value, Markup):
        return value
    if isinstance(value, (int, float)):
        return _number(value)
    return markdown_text(value)


def _finalize_prometheus(value):
    if isinstance(value, Markup):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _number(value)
    return prometheus_label(value)


def _finalize_xml(value):
    if type(value) is Markup:  # pylint: disable=unidiomatic-typecheck
        return value
    if value is None:
        return ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _number(value)
    return escape(xml_text(value))


def _finalize_html(value):
    if value is None:
        return ""
    # Control and bidi-override characters would reorder or hide text on screen.
    # Exactly str: Markup (a str subclass) is already safe and stays as it is.
    return display_text(value) if type(value) is str else value  # pylint: disable=unidiomatic-typecheck


def percent(value, digits=1):
    """0.4321 -> '43.2%'; None -> '-'."""
    if value is None:
        return "-"
    return "%.*f%%" % (digits, value * 100)


def plain(value):
    """A number with thousands separators; None -> '-'."""
    if value is None:
        return "-"
    return f"{value:,}"


def rate(value):
    """New connections per second: 327.4 -> '327.4'; None -> '-'."""
    if value is None:
        return "-"
    return f"{value:,.1f}"


def anchor(file_name, prefix="host-"):
    """An element id from a safe file name ([A-Za-z0-9._-] only), unescaped on purpose."""
    text = as_str(file_name)
    if not _ANCHOR_SAFE.fullmatch(text):
        raise ValueError("not a safe anchor: %r" % text)
    return Markup(prefix + text)


def label_filter(value):
    """Escape once for a Prometheus label; finalize leaves the result alone."""
    return Markup(prometheus_label(value))


def xml_filter(value):
    """Escape once for XML text or attributes; finalize leaves the result alone."""
    return Markup(escape(xml_text(value)))


def make_environment(template_dir, kind):
    """The Jinja environment of one output format, escaping by default."""
    if jinja2 is None:
        raise RuntimeError("the report needs the jinja2 Python package on the controller")
    settings = {
        "html": {"autoescape": True, "finalize": _finalize_html},
        "junit": {"autoescape": False, "finalize": _finalize_xml},
        "markdown": {"autoescape": False, "finalize": _finalize_markdown},
        "prometheus": {"autoescape": False, "finalize": _finalize_prometheus},
    }[kind]
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(template_dir),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        **settings,
    )
    env.filters.update(percent=percent, plain=plain, count=format_count, rate=rate,
                       anchor=anchor,
                       label=label_filter, xml=xml_filter, zip=zip)
    env.globals.update(severities=SEVERITIES, statuses=STATUSES)
    return env


def update_latest_link(dest):
    """Point `<parent of dest>/latest` at dest (a relative link), atomically.

    Returns the link's path. Raises OSError when `latest` exists and is not a
    symbolic link (a real folder there is never replaced).
    """
    dest = os.path.abspath(dest)
    parent, name = os.path.split(dest)
    link = os.path.join(parent, LATEST_LINK)
    if name == LATEST_LINK:
        return link
    if os.path.lexists(link) and not os.path.islink(link):
        raise OSError("%s exists and is not a symbolic link; not replacing it" % link)
    temporary = os.path.join(parent, ".%s.tmp-%d" % (LATEST_LINK, os.getpid()))
    if os.path.lexists(temporary):
        os.unlink(temporary)
    os.symlink(name, temporary)
    try:
        os.replace(temporary, link)
    except OSError:
        os.unlink(temporary)
        raise
    return link


def rules_candidates(dest, result_dirs, rules_file=None):
    """Where rules.json may be: the explicit file, else the run folder and each slice's."""
    if rules_file:
        return [rules_file]
    paths = [os.path.join(dest, "rules.json")]
    for folder in map(os.path.abspath, result_dirs):
        paths.append(os.path.join(folder, "rules.json"))
        paths.append(os.path.join(os.path.dirname(folder), "rules.json"))
    seen = set()
    return [path for path in paths if not (path in seen or seen.add(path))]


def script_and_hash(template_dir):
    """The inline script and its CSP hash (only this exact script may run)."""
    with open(os.path.join(template_dir, SCRIPT_FILE), encoding="utf-8") as handle:
        script = handle.read()
    digest = hashlib.sha256(script.encode("utf-8")).digest()
    return Markup(script), "sha256-" + base64.b64encode(digest).decode("ascii")


class BackgroundWriter:
    """Runs file writes on one background thread, in order.

    Disk work (creating 10,000 files) then overlaps the rendering of the next
    format instead of adding to it. The first error is raised again by
    `submit` or `finish`; later jobs are skipped.
    """

    def __init__(self, depth=16):
        self._queue = queue.Queue(maxsize=depth)
        self._error = None
        self._thread = threading.Thread(target=self._run, name="portpool-report-writer",
                                        daemon=True)
        self._thread.start()

    def _run(self):
        while True:
            job = self._queue.get()
            if job is None:
                return
            if self._error is None:
                try:
                    job[0](*job[1:])
                except BaseException as exc:  # handed back to the caller
                    self._error = exc

    def submit(self, function, *args):
        if self._error is not None:
            raise self._error
        self._queue.put((function, *args))

    def finish(self):
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error


def read_ahead(paths, batch=64, depth=8, chunk_bytes=4 * 1024 * 1024):
    """Yield each path's bytes (or OSError) in order, read on a background thread.

    Reading the next files overlaps parsing the current ones. A chunk ends at
    `batch` files or once it holds `chunk_bytes`, so at most depth + 2 chunks
    of about chunk_bytes plus one file (itself capped at MAX_RESULT_BYTES) wait
    in memory, however large the files are.
    """
    chunks = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def work():
        try:
            chunk, size = [], 0
            for path in paths:
                if stop.is_set():
                    return
                data = read_bytes(path)
                chunk.append(data)
                size += len(data) if isinstance(data, bytes) else 0
                if len(chunk) >= batch or size >= chunk_bytes:
                    chunks.put(("data", chunk))
                    chunk, size = [], 0
            if chunk:
                chunks.put(("data", chunk))
        except BaseException as exc:  # handed to the consumer
            chunks.put(("error", exc))
        finally:
            chunks.put(("end", None))

    thread = threading.Thread(target=work, name="portpool-report-reader", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = chunks.get()
            if kind == "end":
                break
            if kind == "error":
                raise value
            yield from value
    finally:
        stop.set()
        while thread.is_alive():
            with contextlib.suppress(queue.Empty):
                chunks.get(timeout=0.1)
        thread.join()


def private_memory_kb():
    """This process's own (not shared) resident memory in KiB, or None."""
    try:
        with open("/proc/self/smaps_rollup", encoding="ascii") as handle:
            return sum(int(line.split()[1]) for line in handle
                       if line.startswith(("Private_Clean:", "Private_Dirty:")))
    except (OSError, ValueError, IndexError):
        return None


def render_formats(model, dest, formats, template_dir, *, parallel=None, stats=None):
    """Render and write every requested format; returns {format: path}.

    With `parallel` (default: for PARALLEL_HOSTS hosts or more, on a machine
    with several CPUs), a forked child renders FORKED_FORMATS (JSON, JUnit,
    Prometheus) while this process renders the rest: the formats are
    independent and the model is shared copy-on-write. `stats`, when a dict,
    receives the child's memory.
    """
    if parallel is None:
        parallel = (len(model["hosts"]) >= PARALLEL_HOSTS and hasattr(os, "fork")
                    and (os.cpu_count() or 1) > 1)
    split = [name for name in formats if name in FORKED_FORMATS]
    rest = [name for name in formats if name not in FORKED_FORMATS]
    if not (parallel and split and rest):
        return render_serial(model, dest, formats, template_dir)
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: render its formats, report through the pipe, exit
        status = 1
        try:
            os.close(reader)
            message = {"files": render_serial(model, dest, split, template_dir),
                       "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                       "private_kb": private_memory_kb()}
            status = 0
        except BaseException as exc:
            message = {"error": "%s: %s" % (type(exc).__name__, exc)}
        finally:
            try:
                os.write(writer, json.dumps(message).encode("utf-8"))
            finally:
                os._exit(status)
    os.close(writer)
    try:
        files = render_serial(model, dest, rest, template_dir)
    finally:
        with os.fdopen(reader, "rb") as pipe:
            answer = pipe.read()
        _pid, status = os.waitpid(pid, 0)
    try:
        message = json.loads(answer)
    except ValueError:
        message = {"error": "exit status %d, no message" % status}
    if "error" in message or status != 0:
        raise RuntimeError("rendering %s failed: %s"
                           % (", ".join(split), message.get("error", status)))
    if stats is not None:
        stats["child_maxrss_kb"] = message["maxrss_kb"]
        stats["child_private_kb"] = message["private_kb"]
    files.update(message["files"])
    return {name: files[name] for name in formats}


def render_serial(model, dest, formats, template_dir):
    """Render each requested format and write it; returns {format: path}.

    Rendering happens on this thread, writing on a background one.
    """
    files = {}
    writer = BackgroundWriter()
    fresh = None
    file_mode, dir_mode = modes(model.get("private", True))

    def render_file(name, **context):
        files[name] = path = os.path.join(dest, OUTPUT_FILES[name])
        template = make_environment(template_dir, name).get_template(TEMPLATES[name])
        # Streamed to disk as it renders: a 10,000-host report is never one string.
        atomic_write(path, template.generate(model=model, **context), file_mode, sync=True)

    try:
        if "json" in formats:
            files["json"] = path = os.path.join(dest, OUTPUT_FILES["json"])
            writer.submit(atomic_write, path, json.dumps(
                fleet_document(model), ensure_ascii=False, sort_keys=True,
                separators=(",", ":")) + "\n", file_mode, True)
        if "markdown" in formats:
            render_file("markdown")
        if "html" in formats:
            script, script_hash = script_and_hash(template_dir)
            render_file("html", script=script, script_hash=script_hash)
        if "junit" in formats:
            render_file("junit")
        if "prometheus" in formats:
            template = make_environment(template_dir, "prometheus").get_template(
                TEMPLATES["prometheus"])
            host_file = template.module.host_file
            fresh = new_folder(os.path.join(dest, PROMETHEUS_DIR), dir_mode, file_mode)
            batch = []
            for record in model["hosts"]:
                batch.append((record["file"] + ".prom", str(host_file(record))))
                if len(batch) == 256:
                    writer.submit(write_files, fresh, batch, file_mode)
                    batch = []
            writer.submit(write_files, fresh, batch, file_mode)
        pending, writer = writer, None
        pending.finish()
        if fresh is not None:
            files["prometheus"] = swap_folder(fresh, os.path.join(dest, PROMETHEUS_DIR))
            fresh = None
    finally:
        if writer is not None:
            writer.finish()
        if fresh is not None and os.path.lexists(fresh):
            shutil.rmtree(fresh)
    return files


def modes(private):
    """(file mode, folder mode): private by default, readable by all when asked."""
    return (FILE_MODE, DIR_MODE) if private else (0o644, 0o755)


def new_folder(path, dir_mode=DIR_MODE, file_mode=FILE_MODE):
    """An empty folder beside path (random name, created exclusively, 0700 by default).

    It carries portpool's marker, so a later run knows it may replace it.
    """
    parent, name = os.path.split(path)
    fresh = tempfile.mkdtemp(prefix=".%s.new-" % name, dir=parent)
    os.chmod(fresh, dir_mode)
    write_files(fresh, [(MARKER_FILE, MARKER_TEXT)], file_mode)
    return fresh


def write_files(folder, files, mode=FILE_MODE):
    """Create each (name, text) file in folder (0600 by default); the folder is new."""
    flags = (os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
             | getattr(os, "O_NOFOLLOW", 0))
    for name, text in files:
        handle = os.open(os.path.join(folder, name), flags, mode)
        if mode & ~FILE_MODE:
            os.fchmod(handle, mode)  # the umask must not narrow a mode asked for
        try:
            os.write(handle, text.encode("utf-8", "replace"))
        finally:
            os.close(handle)


def foreign_folder(path):
    """Why path may not be replaced by the report, or None when it may.

    A folder is portpool's when it carries the marker, or (from releases
    before the marker) when it holds nothing but `*.prom` files.
    """
    if not os.path.lexists(path):
        return None
    if os.path.islink(path) or not os.path.isdir(path):
        return "%s exists and is not a folder portpool made" % path
    if os.path.isfile(os.path.join(path, MARKER_FILE)):
        return None
    with os.scandir(path) as entries:
        if all(entry.name.endswith(".prom") and entry.is_file(follow_symlinks=False)
               for entry in entries):
            return None
    return ("%s was not made by portpool (no %s marker and not only .prom files)"
            % (path, MARKER_FILE))


def swap_folder(fresh, path):
    """Move the filled folder to path, replacing (then deleting) portpool's folder there.

    Readers of path see the old set of files or the new one, never a mix. A
    folder without portpool's marker is never replaced (OSError).
    """
    reason = foreign_folder(path)
    if reason:
        raise OSError("not replacing it: " + reason)
    parent, name = os.path.split(path)
    stale = None
    if os.path.lexists(path):
        # An empty folder with a random name: renaming a folder over it is atomic.
        stale = tempfile.mkdtemp(prefix=".%s.old-" % name, dir=parent)
        os.rename(path, stale)
    fsync_dir(fresh)
    os.rename(fresh, path)
    fsync_dir(parent)
    if stale is not None:
        shutil.rmtree(stale)
    return path


def write_folder(path, files):
    """Write (name, text) pairs into a new folder, then move it to path at once."""
    fresh = new_folder(path)
    try:
        write_files(fresh, files)
        return swap_folder(fresh, path)
    finally:
        if os.path.lexists(fresh):
            shutil.rmtree(fresh)


def build_report(result_dirs, dest, template_dir, *, formats=FORMATS, fail_on="high",
                 top_destinations=20, host_destinations=5, chart_hosts=50, console_hosts=20,
                 title="portpool fleet report", rules_file=None,
                 latest_link=True, check_mode=False, generated_at=None, parallel=None,
                 private=True):
    """Load, merge, aggregate and render: the whole report step.

    Returns a dict with the written `files`, the fleet `totals`, the console
    `summary`, `warnings`, the `latest` link (or None) and `stats` (memory of
    the forked renderer, when one ran).
    """
    dest = os.path.abspath(dest)
    # The same folder listed twice would make every host a duplicate of itself.
    result_dirs = list(dict.fromkeys(os.path.abspath(folder) for folder in result_dirs))
    formats = [name for name in FORMATS if name in formats]
    warnings = []
    report_path = dest
    for name in ("html", "markdown", "json"):
        if name in formats:
            report_path = os.path.join(dest, OUTPUT_FILES[name])
            break
    # Many small objects, none cyclic: the collector would only walk them.
    collecting = gc.isenabled()
    gc.disable()
    try:
        records, file_count = load_results(
            result_dirs, max(top_destinations, host_destinations), warnings, reader=read_ahead)
        rules = load_rules(rules_candidates(dest, result_dirs, rules_file), warnings)
        model = build_model(records, rules, {
            "fail_on": fail_on, "top_destinations": top_destinations,
            "host_destinations": host_destinations,
            "chart_hosts": chart_hosts, "console_hosts": console_hosts,
            "title": title, "generated_at": generated_at or utc_now(),
            "result_dirs": result_dirs, "dest": dest, "report_path": report_path,
        })
        model["warnings"] = warnings
        model["private"] = private
        model["file_count"] = file_count
        files = {}
        latest = None
        stats = {}
        if not check_mode:
            if private:
                make_private_dir(dest)
            else:
                os.makedirs(dest, mode=0o755, exist_ok=True)
            foreign = foreign_folder(os.path.join(dest, PROMETHEUS_DIR))
            if foreign and "prometheus" in formats:
                # Everything else is still written; that folder is left as it is.
                warnings.append("Prometheus files not written: %s. Move it away or choose "
                                "another report folder." % foreign)
                formats = [name for name in formats if name != "prometheus"]
            files = render_formats(model, dest, formats, template_dir, parallel=parallel,
                                   stats=stats)
            if latest_link:
                try:
                    latest = update_latest_link(dest)
                except OSError as exc:
                    warnings.append("latest link not updated: %s" % exc)
    finally:
        if collecting:
            gc.enable()
    return {
        "dest": dest,
        "files": files,
        "file_count": file_count,
        "totals": model["totals"],
        "worst_severity": model["totals"]["worst"],
        "summary": model["summary"],
        "warnings": warnings,
        "latest": latest,
        "report": report_path,
        "stats": stats,
    }
