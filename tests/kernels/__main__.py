"""The kernel matrix: `python -m tests.kernels [SERIES ...]` (default: all).

Fetches the newest Debian kernel of each series (tests/kernels/images.py),
boots each under QEMU (tests/kernels/vm.py) and runs the tests listed in
tests/kernels/selection.txt inside it with pytest. Prints one line per kernel
and one line per failing test, naming the kernel; exits non-zero when any
kernel fails or cannot be booted.
"""

import argparse
import os
import re
import shutil
import sys
import threading
import time
from pathlib import Path

from tests.kernels import images, vm

REPO = Path(__file__).resolve().parents[2]
SELECTION = Path(__file__).with_name("selection.txt")
CACHE = Path(os.environ.get("PORTPOOL_KERNEL_CACHE", REPO / ".cache" / "kernels"))
GUEST_TIMEOUT = 420
TOOLS = ("qemu-system-x86_64", "busybox", "depmod", "modprobe", "cpio", "zstd", "apt-get", "dpkg")
SUMMARY = re.compile(r"^=*\s*(\d+ (passed|failed|errors?|skipped|xfailed|xpassed|deselected)"
                     r".*?) in [\d.]+s")


def selected_tests(path=SELECTION):
    """Node ids or paths, one a line; `#` starts a comment."""
    tests = []
    for line in path.read_text().splitlines():
        entry = line.split("#", 1)[0].strip()
        if entry:
            tests.append(entry)
    return tests


def guest_script(tests):
    """The job the guest runs: pytest on the selection, from the repository."""
    python = sys.executable
    env = {
        "PYTHONDONTWRITEBYTECODE": "1",
        "PORTPOOL_KERNEL_MATRIX": "1",
        "CI": os.environ.get("CI", ""),
    }
    lines = ["cd %s || exit 125" % _quote(str(REPO))]
    lines += ["export %s=%s" % (key, _quote(value)) for key, value in env.items()]
    lines.append("echo \"kernel $(uname -r)\"")
    argv = [python, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rfEsxX",
            "--color=no", "--durations=5", *tests]
    lines.append("exec " + " ".join(_quote(part) for part in argv) + " 2>&1")
    return "\n".join(lines) + "\n"


def _quote(text):
    return "'" + text.replace("'", "'\\''") + "'"


def report(release, status, output, seconds):
    """Per-kernel lines: the summary, and every failure prefixed with the kernel."""
    lines = []
    summary = None
    for line in output.splitlines():
        if line.startswith(("FAILED ", "ERROR ", "XPASS ")):
            lines.append("[%s] %s" % (release, line))
        found = SUMMARY.match(line.strip())
        if found:
            summary = found.group(1)
    if status == vm.VM_FAILED:
        verdict = "could not run (%s)" % output.strip().splitlines()[0] if output.strip() else "?"
    elif status == 0:
        verdict = "ok"
    else:
        verdict = "FAILED (pytest exit %d)" % status
    lines.insert(0, "kernel %s: %s, %s, %.0f s" % (release, verdict, summary or "no summary",
                                                   seconds))
    return lines


def run_kernel(series, tests, results, log_folder):
    start = time.monotonic()
    try:
        image = images.prepare(series, CACHE)
    except images.ImageError as exc:
        results[series] = (series, vm.VM_FAILED, "cannot prepare: %s" % exc, 0.0)
        return
    release = (image / "release").read_text().strip()
    status, output = vm.run_job(image, guest_script(tests), CACHE / "jobs", GUEST_TIMEOUT)
    (log_folder / ("%s.log" % release)).write_text(output)
    results[series] = (release, status, output, time.monotonic() - start)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tests.kernels", description=__doc__)
    parser.add_argument("series", nargs="*", default=sorted(images.SERIES),
                        help="kernel series to run (%s)" % ", ".join(sorted(images.SERIES)))
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                        help="kernels booted at the same time (each keeps a core busy)")
    args = parser.parse_args(argv)
    unknown = [series for series in args.series if series not in images.SERIES]
    if unknown:
        parser.error("unknown series %s" % ", ".join(unknown))
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        # scripts/install-system-deps installs them when run as root (as in CI).
        print("kernel matrix: needs %s (scripts/install-system-deps, as root)"
              % ", ".join(missing))
        return 1 if os.geteuid() == 0 else 0
    tests = selected_tests()
    log_folder = CACHE / "logs"
    log_folder.mkdir(parents=True, exist_ok=True)
    # Fetch sequentially (apt and dpkg), then boot up to --jobs kernels at once.
    for series in args.series:
        images.prepare(series, CACHE)
    results = {}
    pending = list(args.series)
    while pending:
        batch, pending = pending[:max(args.jobs, 1)], pending[max(args.jobs, 1):]
        threads = [threading.Thread(target=run_kernel, args=(series, tests, results, log_folder))
                   for series in batch]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    failed = False
    for series in args.series:
        release, status, output, seconds = results[series]
        if status != 0:
            failed = True
            sys.stdout.write(output if status == vm.VM_FAILED else "")
        for line in report(release, status, output, seconds):
            print(line)
    print("guest logs: %s" % log_folder)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
