"""Benchmark: the whole portpool_probe task against a naive C loop and a ping task.

    python -m bench.probe            (as root; PORTPOOL_BENCH_ROUNDS=3 by default)

For each range (the kernel default 32768-60999, `1024 65535`, and a 10,000-port
range) one run alternates three things, each in a fresh network namespace
carrying that range:
- the whole `ansible localhost -m portpool_probe -a 'scope=full churn_seconds=0'`
  task, with the project's ansible.cfg;
- the naive C loop: worker processes (as many as the descriptor limit needs)
  connect() until EADDRNOTAVAIL and hold every connection, while the parent
  accepts and closes the server side;
- an `ansible localhost -m ping` task (Ansible's own floor for one task).
It prints the medians and the ratios task/C loop and task/ping, against the
targets (default range at most 0.25x the C loop, `1024 65535` at most 3x the
ping task), and the peak memory of the probe's workers while they held the
pool (the sum of their peak RSS, as the module reports it).

PORTPOOL_BENCH_PROBE_RANGES=default,wide,10k picks ranges (all by default); the
C loop alone takes minutes per round on `1024 65535`.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = REPO / ".venv" / "bin"
if not (VENV_BIN / "ansible").exists():
    VENV_BIN = Path(sys.executable).parent
RANGES = (("default", "32768 60999", 0.25, None), ("wide", "1024 65535", None, 3.0),
          ("10k", "32768 42767", None, None))
FD_RESERVE = 64  # as portpool_probe_model.FD_RESERVE

BASELINE_C = r"""
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc != 5) { fprintf(stderr, "usage: hold ADDR PORT WORKERS QUOTA\n"); return 2; }
    int workers = atoi(argv[3]), quota = atoi(argv[4]), port = atoi(argv[2]);
    struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, argv[1], &dst.sin_addr);
    struct sockaddr_in any = {.sin_family = AF_INET, .sin_port = htons(port)};
    int one = 1;
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(lfd, (struct sockaddr *)&any, sizeof any) || listen(lfd, 65535)) {
        perror("listen");
        return 1;
    }
    int report[64], control[64];
    pid_t pids[64];
    pid_t parent = getpid();
    double start = now();
    for (int w = 0; w < workers; w++) {
        int rp[2], cp[2];
        if (pipe(rp) || pipe(cp)) { perror("pipe"); return 1; }
        pid_t pid = fork();
        if (pid == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (getppid() != parent) _exit(1);
            close(lfd); close(rp[0]); close(cp[1]);
            int *held = malloc(sizeof(int) * (quota + 1));
            int n = 0;
            while (n < quota) {
                int fd = socket(AF_INET, SOCK_STREAM, 0);
                if (fd < 0) break;
                if (connect(fd, (struct sockaddr *)&dst, sizeof dst)) { close(fd); break; }
                held[n++] = fd;
            }
            int alive = 0;  /* the same check as the module: no pending reset */
            for (int i = 0; i < n; i++) {
                int err = 0;
                socklen_t len = sizeof err;
                if (!getsockopt(held[i], SOL_SOCKET, SO_ERROR, &err, &len) && !err)
                    alive++;
            }
            dprintf(rp[1], "%d\n", alive);
            char c;
            (void)read(cp[0], &c, 1);
            struct linger lg = {1, 0};
            for (int i = 0; i < n; i++) {
                setsockopt(held[i], SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
                close(held[i]);
            }
            _exit(0);
        }
        close(rp[1]); close(cp[0]);
        report[w] = rp[0]; control[w] = cp[1]; pids[w] = pid;
    }
    struct pollfd pfd[65];
    int done[64] = {0}, left = workers;
    long total = 0;
    while (left > 0) {
        int n = 0;
        pfd[n].fd = lfd; pfd[n].events = POLLIN; n++;
        for (int w = 0; w < workers; w++)
            if (!done[w]) { pfd[n].fd = report[w]; pfd[n].events = POLLIN; n++; }
        poll(pfd, n, 1000);
        for (;;) {
            int fd = accept(lfd, NULL, NULL);
            if (fd < 0) break;
            close(fd);
        }
        for (int i = 1; i < n; i++) {
            if (!(pfd[i].revents & (POLLIN | POLLHUP))) continue;
            for (int w = 0; w < workers; w++) {
                if (report[w] != pfd[i].fd || done[w]) continue;
                char buf[32] = {0};
                if (read(report[w], buf, sizeof buf - 1) > 0) total += atol(buf);
                done[w] = 1; left--;
            }
        }
    }
    double hold = now() - start;
    for (int w = 0; w < workers; w++) close(control[w]);
    for (int w = 0; w < workers; w++) waitpid(pids[w], NULL, 0);
    printf("{\"established\": %ld, \"seconds\": %.6f}\n", total, hold);
    return 0;
}
"""


def _env(extra=None):
    env = dict(os.environ)
    env["PATH"] = "%s:%s" % (VENV_BIN, env.get("PATH", "/usr/bin:/bin"))
    env["LANG"] = "C"
    env.update({"ANSIBLE_STDOUT_CALLBACK": "default", "ANSIBLE_CALLBACK_RESULT_FORMAT": "json",
                "ANSIBLE_NOCOLOR": "1", "ANSIBLE_LOCALHOST_WARNING": "0"})
    env.update(extra or {})
    return env


def compile_baseline(workdir):
    source = workdir / "hold.c"
    source.write_text(BASELINE_C)
    binary = workdir / "hold"
    subprocess.run(["cc", "-O2", "-o", str(binary), str(source)], check=True)
    return binary


def _in_namespace(port_range, command, lab=False):
    lines = []
    if lab:
        lines += ["ip link set lo up", "ip addr add 198.18.0.1/15 dev lo",
                  "sysctl -qw net.core.somaxconn=65535"]
    lines.append("sysctl -qw net.ipv4.ip_local_port_range='%s'" % port_range)
    lines.append('exec "$@"')
    return ["unshare", "--net", "sh", "-c", "\n".join(lines), "sh", *command]


def _timed(command, **kwargs):
    start = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, check=False, **kwargs)
    return time.monotonic() - start, done


def run_task(port_range):
    wall, done = _timed(_in_namespace(port_range, [
        "ansible", "localhost", "-m", "portpool_probe", "-a",
        "scope=full churn_seconds=0 timeout=600"]), cwd=REPO, env=_env())
    text = done.stdout
    try:
        result = json.JSONDecoder().raw_decode(text[text.index("=>") + 2:].strip())[0]
    except ValueError as exc:
        raise SystemExit("cannot read the task's result: %s\n%s%s"
                         % (exc, text, done.stderr)) from exc
    if "probe" not in result:
        raise SystemExit("probe failed: %s" % result.get("msg"))
    return wall, result["probe"]


def run_ping():
    wall, done = _timed(["ansible", "localhost", "-m", "ping"], cwd=REPO, env=_env())
    if done.returncode:
        raise SystemExit("ping task failed: %s" % done.stdout)
    return wall


def run_baseline(binary, port_range, workers, quota):
    wall, done = _timed(_in_namespace(
        port_range, [str(binary), "198.18.0.2", "9", str(workers), str(quota)], lab=True))
    if done.returncode:
        raise SystemExit("C loop failed: %s" % done.stderr)
    return wall, json.loads(done.stdout)["established"]


def _verdict(value, target):
    if target is None:
        return ""
    return " (target <= %.2fx: %s)" % (target, "met" if value <= target else "MISSED")


def bench_range(binary, spec, rounds, fd_limit):
    name, port_range, c_target, ping_target = spec
    low, high = (int(part) for part in port_range.split())
    pool = high - low + 1
    per_worker = max(1, fd_limit - FD_RESERVE)
    workers = -(-pool // per_worker)
    tasks, loops, pings, memory = [], [], [], []
    status = 0
    for index in range(rounds):
        order = ("task", "loop", "ping") if index % 2 == 0 else ("ping", "loop", "task")
        for which in order:
            if which == "task":
                wall, probe = run_task(port_range)
                tasks.append(wall)
                memory.append(probe["hold"].get("workers_peak_rss_kb") or 0)
                if probe["hold"]["established"] != pool or not probe["matches_expected"]:
                    print("  mismatch: task held %d of %d" % (probe["hold"]["established"],
                                                             pool))
                    status = 1
                method = probe.get("method") or {}
            elif which == "loop":
                wall, count = run_baseline(binary, port_range, workers, per_worker)
                loops.append(wall)
                if count != pool:
                    print("  note: the C loop held %d of %d" % (count, pool))
            else:
                pings.append(run_ping())
        print("  %-7s round %d: task %.2f s, C loop %.2f s, ping task %.2f s"
              % (name, index + 1, tasks[-1], loops[-1], pings[-1]), flush=True)
    task, loop, ping = (statistics.median(times) for times in (tasks, loops, pings))
    print("probe %-7s %s (%d ports, %s/%s): task %.2f s, C loop %.2f s, ping task %.2f s;"
          " task/C loop %.2fx%s, task/ping %.2fx%s; probe workers' peak RSS %.1f MiB"
          " (medians of %d)"
          % (name, port_range, pool, method.get("sockets"), method.get("partition"), task,
             loop, ping, task / loop, _verdict(task / loop, c_target), task / ping,
             _verdict(task / ping, ping_target), statistics.median(memory) / 1024.0, rounds),
          flush=True)
    return status


def main(argv=None):
    del argv
    if os.geteuid() != 0:
        print("bench.probe needs root (network namespaces)", file=sys.stderr)
        return 1
    rounds = int(os.environ.get("PORTPOOL_BENCH_ROUNDS", "3"))
    fd_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    workdir = Path(tempfile.mkdtemp(prefix="ppprobe-bench-"))
    status = 0
    try:
        binary = compile_baseline(workdir)
        wanted = os.environ.get("PORTPOOL_BENCH_PROBE_RANGES")
        names = wanted.split(",") if wanted else [spec[0] for spec in RANGES]
        for spec in RANGES:
            if spec[0] in names:
                status |= bench_range(binary, spec, rounds, fd_limit)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
