"""Run one module on many cases, paying Python's start and imports once.

Under emulation starting Python and importing `ansible.module_utils.basic`
costs about 10 s, and a probe on a small range well under one. So this script
imports once, then forks one child per case; the child runs the module file as
`__main__` (what Ansible's runtime does), with the case's environment and
descriptor limit, optionally in a network namespace of its own with the case's
sysctls (that namespace plays the host whose settings the probe's lab copies),
and optionally runs the naive connect() loop there afterwards.

    python module_batch.py MODULE_NAME  < cases (one JSON line each) > results (the same)

Cases are read and answered one line at a time, so a test may also drive it
interactively, checking the system between two calls (module_run.ModuleServer).

A case: {"args": {...}, "env": {...}, "nofile": N, "netns": bool,
"sysctls": {"net.ipv4.x": "text"}, "naive_port": N, "naive_runs": N,
"join_netns": "/proc/PID/ns/net"} (join_netns: run in that existing network namespace
instead). A result: {"result": the module's JSON or null, "output": its raw output when
not JSON, "naive": a list of the naive loop's runs, or null}.
"""

import contextlib
import ctypes
import json
import os
import resource
import runpy
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CLONE_NEWNET = 0x40000000
CASE_SECONDS = 120

sys.path.insert(0, str(REPO))
import ansible.module_utils.basic  # noqa: E402, F401  (imported once, before the forks)

import tests.ansiballz_path  # noqa: E402, F401  (after the path: this runs as a script)
from tests.integration.naive_loop import naive_holds  # noqa: E402


def _enter_namespace(sysctls):
    if ctypes.CDLL(None, use_errno=True).unshare(CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET)")
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    for key, value in sysctls.items():
        with open("/proc/sys/" + key.replace(".", "/"), "w", encoding="ascii") as handle:
            handle.write(value + "\n")


def _join_namespace(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        if ctypes.CDLL(None, use_errno=True).setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns(%s)" % path)
    finally:
        os.close(fd)


def _child(module_path, case, out_path):
    """Runs in the forked child; never returns."""
    code = 0
    try:
        if case.get("join_netns"):
            _join_namespace(case["join_netns"])
        if case.get("netns"):
            _enter_namespace(case.get("sysctls", {}))
        os.environ.update(case.get("env", {}))
        if case.get("nofile"):
            resource.setrlimit(resource.RLIMIT_NOFILE, (case["nofile"], case["nofile"]))
        sys.argv = [str(module_path), json.dumps({"ANSIBLE_MODULE_ARGS": case["args"]})]
        out = os.open(out_path, os.O_WRONLY)
        os.dup2(out, 1)
        os.close(out)
        with contextlib.suppress(SystemExit):  # exit_json and fail_json end with it
            runpy.run_path(str(module_path), run_name="__main__")
        sys.stdout.write("\nNAIVE\n")
        if case.get("naive_port"):
            sys.stdout.write(json.dumps(naive_holds(case["naive_port"],
                                                    case.get("naive_runs", 1))))
        sys.stdout.flush()
    except BaseException as exc:  # report, never fall back into the parent's loop
        sys.stderr.write("case failed: %r\n" % exc)
        code = 1
    os._exit(code)


def _wait(pid, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            return True
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)  # the probe's own children die with it
    os.waitpid(pid, 0)
    return False


def _parse(text):
    module_text, _, naive_text = text.partition("\nNAIVE\n")
    start = module_text.find("{")
    result = None
    if start >= 0:
        with contextlib.suppress(ValueError):
            result = json.JSONDecoder().raw_decode(module_text[start:])[0]
    naive = json.loads(naive_text) if naive_text.strip() else None
    return {"result": result, "output": None if result else module_text[-3000:],
            "naive": naive}


def main(name):
    module_path = REPO / "library" / (name + ".py")
    while True:
        line = sys.stdin.readline()
        if not line:
            break
        if not line.strip():
            continue
        case = json.loads(line)
        with tempfile.NamedTemporaryFile("r", prefix="ppbatch-") as out:
            os.chmod(out.name, 0o600)
            sys.stdout.flush()
            pid = os.fork()
            if pid == 0:
                _child(module_path, case, out.name)
            finished = _wait(pid, case.get("seconds", CASE_SECONDS))
            parsed = _parse(out.read())
            if not finished:
                parsed["output"] = "the case did not finish in time"
        print(json.dumps(parsed), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
