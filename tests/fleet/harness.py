"""An SSH test fleet on one machine: each host is its own namespaces and sshd.

A host is a network namespace (own address on 198.18.<1+slot>.0/24, own net.*
sysctls), a mount namespace (own /etc/sysctl.d, /etc/sysctl.conf,
/var/lib/portpool, /etc/passwd with a sudo user, /home) and a UTS namespace
(own hostname), with an sshd that only accepts the fleet's key. The hosts sit
on a bridge in the root namespace, so Ansible reaches them over real SSH.

Only net.* sysctls are per network namespace: writing fs.*, vm.* or kernel.*
in a host would change the whole machine, so HostSpec refuses them.

Every fleet lives in a slot (/run/portpool-fleet/slot-N) that records what it
made and who owns it. Teardown undoes all of it, and the next Fleet.create() also
tears down the slots of test fleets whose owner process has died (an interrupted
test run). A fleet made by hand (`python -m tests.fleet up`) belongs to the shell
that made it; only `down` removes it, by name, or once that shell has gone.
Processes are matched by exact path component or by their connection to the
slot's own subnet, never by a substring.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
FLEET_RUN = Path("/run/portpool-fleet")
NETWORK = ipaddress.ip_network("198.18.0.0/15")
MAX_SLOTS = 32
MAX_HOSTS = 200
SUDO_USER = "ppadmin"
SUDO_UID = 4242
TARGET_PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
# Paths each host gets its own copy of, bind-mounted inside its mount namespace.
STATE_DIR = "/var/lib/portpool"
START_TIMEOUT = 15.0
# Bounds of one churn run: connections and seconds.
MAX_CHURN = 200000
MAX_CHURN_SECONDS = 600


class FleetError(RuntimeError):
    """A fleet could not be made or used; the message says what and where."""


@dataclass
class HostSpec:
    """What one fleet host should look like when it starts."""

    # The "help" of each field is what `python -m tests.fleet up --help` shows.
    name: str = field(metadata={"help": "host name: letters, digits, - and _, at most 20"})
    sysctls: dict = field(default_factory=dict, metadata={
        "help": "runtime net.* sysctls, {key: value}, written to /proc/sys"})
    sysctl_d: dict = field(default_factory=dict, metadata={
        "help": "files in the host's /etc/sysctl.d, {file name: content}"})
    sysctl_conf: str | None = field(default=None, metadata={
        "help": "content of the host's /etc/sysctl.conf"})
    become: bool = field(default=False, metadata={
        "help": "log in as ppadmin and become root with sudo"})
    listeners: tuple = field(default=(), metadata={
        "help": "TCP ports a stand-in service accepts on (a backend for churn)"})
    groups: tuple = field(default=(), metadata={"help": "inventory groups of the host"})
    hostvars: dict = field(default_factory=dict, metadata={
        "help": "extra inventory variables for the host"})

    @classmethod
    def field_help(cls):
        """One line per field: name, type, default and help, from the dataclass itself."""
        lines = []
        for item in fields(cls):
            if item.default is not MISSING:
                default = " (default %r)" % (item.default,)
            elif item.default_factory is not MISSING:
                default = " (default %r)" % (item.default_factory(),)
            else:
                default = " (required)"
            kind = item.type if isinstance(item.type, str) else item.type.__name__
            lines.append("  %-12s %-11s %s%s" % (item.name, kind, item.metadata.get("help", ""),
                                                 default))
        return "\n".join(lines)

    def validate(self):
        if not self.name.replace("-", "").replace("_", "").isalnum() or len(self.name) > 20:
            raise FleetError("host name %r: letters, digits, - and _ only, at most 20" % self.name)
        for key in self.sysctls:
            if not key.startswith("net."):
                raise FleetError(
                    "host %s: %s is not a net.* sysctl; only net.* keys are per "
                    "namespace, others would change the whole machine" % (self.name, key))
        for name in self.sysctl_d:
            if "/" in name or name.startswith("."):
                raise FleetError("host %s: bad sysctl.d file name %r" % (self.name, name))
        for port in self.listeners:
            if not 1 <= int(port) <= 65535:
                raise FleetError("host %s: bad listener port %r" % (self.name, port))


@dataclass
class Host:
    """A running fleet host, as the tests see it."""

    name: str
    address: str
    netns: str
    root: Path
    pid: int
    spec: HostSpec

    @property
    def sysctl_d(self):
        return self.root / "etc" / "sysctl.d"

    @property
    def sysctl_conf(self):
        return self.root / "etc" / "sysctl.conf"

    @property
    def state(self):
        return self.root / "state"


def _run(argv, check=True, **kwargs):
    env = dict(os.environ, LANG="C", LC_ALL="C")
    result = subprocess.run(argv, capture_output=True, text=True, env=env, **kwargs)
    if check and result.returncode != 0:
        raise FleetError("%s failed (%d): %s" % (" ".join(argv), result.returncode,
                                                 result.stderr.strip() or result.stdout.strip()))
    return result


def _pid_alive(pid, start_time):
    """True when pid runs and is the same process that started at start_time."""
    try:
        with open("/proc/%d/stat" % pid, encoding="ascii") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return start_time is None or fields[19] == str(start_time)


def _start_time(pid):
    with open("/proc/%d/stat" % pid, encoding="ascii") as handle:
        return handle.read().rsplit(")", 1)[1].split()[19]


def _names_path(cmdline, path):
    """True when an argument of cmdline is path itself or a path below it.

    Arguments are split on NUL, whitespace, '=' and ',' (ssh -o Key=/path, and
    masters retitled "ssh: /path/cp/xyz [mux]"), then compared whole or up to a
    '/': slot-1 never matches slot-10.
    """
    prefix = str(path).rstrip("/")
    for token in re.split(r"[\s=,\x00]+", cmdline.decode(errors="replace")):
        if token == prefix or token.startswith(prefix + "/"):
            return True
    return False


def _kill_processes_using(path):
    """Kill processes whose command line names path (ssh ControlPersist masters)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open("/proc/%s/cmdline" % entry, "rb") as handle:
                if _names_path(handle.read(), path):
                    os.kill(int(entry), signal.SIGKILL)
        except (OSError, ProcessLookupError):
            continue


def _kill_ssh_clients(subnet):
    """Kill ssh clients (in this namespace) connected to port 22 inside subnet.

    ControlPersist masters of a user's own ansible runs keep their sockets under
    ~/.ansible/cp, so their command line does not name the slot; their
    connection to the fleet's addresses does, exactly.
    """
    result = _run(["ss", "-Htnp", "state", "all", "dst", str(subnet), "dport", "=", ":22"],
                  check=False)
    for pid in sorted({int(pid) for pid in re.findall(r"pid=(\d+)", result.stdout)}):
        try:
            comm = Path("/proc/%d/comm" % pid).read_text().strip()
        except OSError:
            continue
        if comm == "ssh" and pid != os.getpid():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _netns_pids(netns):
    result = _run(["ip", "netns", "pids", netns], check=False)
    return [int(pid) for pid in result.stdout.split() if pid.isdigit()]


def _teardown_record(record):
    """Undo everything a slot's record lists; safe to call twice."""
    slot_dir = Path(record["dir"])
    for host in record.get("hosts", []):
        for _ in range(3):
            pids = _netns_pids(host["netns"])
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)
        # The kernel frees a deleted namespace (and its veth ends) lazily:
        # delete our end now so a new fleet can reuse the name at once.
        if host.get("veth"):
            _run(["ip", "link", "del", host["veth"]], check=False)
        _run(["ip", "netns", "del", host["netns"]], check=False)
    _kill_processes_using(slot_dir)
    if record.get("slot") is not None:
        _kill_ssh_clients(slot_subnet(record["slot"]))
    if record.get("bridge"):
        _run(["ip", "link", "del", record["bridge"]], check=False)
    # A process killed a moment ago may still be closing files in it: retry briefly.
    for _ in range(20):
        shutil.rmtree(slot_dir, ignore_errors=True)
        if not slot_dir.exists():
            break
        time.sleep(0.05)


def _write_record(slot_dir, record):
    """Replace fleet.json in one step: a reader never sees half a record."""
    partial = slot_dir / ("fleet.json.%d" % os.getpid())
    partial.write_text(json.dumps(record))
    os.replace(partial, slot_dir / "fleet.json")


def _read_record(slot_dir):
    """The slot's record, or None when it stays unreadable (a slot half made).

    Fleets made by older harness code write the file in place, so a read can land
    mid-write: read again before calling a live fleet's record unreadable.
    """
    for attempt in range(3):
        try:
            return json.loads((slot_dir / "fleet.json").read_text())
        except (OSError, ValueError):
            if attempt < 2:
                time.sleep(0.2)
    return None


def _is_stale(record):
    if record is None:
        return True
    if record.get("persistent"):
        return False
    return not _pid_alive(record["owner_pid"], record.get("owner_start"))


def _orphans(live_slots):
    """Namespaces (ppf<slot>-<host>) and bridges (ppfbr<slot>) whose slot is gone."""
    netns = _run(["ip", "netns", "list"], check=False).stdout.splitlines()
    stale_ns = []
    for line in netns:
        match = re.match(r"ppf(\d+)-[\w-]+$", line.split(" ", 1)[0]) if line else None
        if match and int(match.group(1)) not in live_slots:
            stale_ns.append(match.group(0))
    links = _run(["ip", "-o", "link", "show", "type", "bridge"], check=False).stdout
    bridges = []
    for line in links.splitlines():
        match = re.match(r"\d+: (ppfbr(\d+))[:@]", line)
        if match and int(match.group(2)) not in live_slots:
            bridges.append(match.group(1))
    return stale_ns, bridges


def cleanup_stale():
    """Tear down test fleets whose owner died (never one made by hand), and anything
    of ours no slot claims.

    Returns the slot numbers it removed.
    """
    FLEET_RUN.mkdir(parents=True, exist_ok=True)
    removed = []
    with _lock():
        live = set()
        for slot_dir in sorted(FLEET_RUN.glob("slot-*")):
            slot = int(slot_dir.name.split("-")[1])
            record = _read_record(slot_dir)
            if _is_stale(record):
                _teardown_record(record or {"dir": str(slot_dir)})
                removed.append(slot)
            else:
                live.add(slot)
        stale_ns, bridges = _orphans(live)
        for name in stale_ns:
            for pid in _netns_pids(name):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            _run(["ip", "netns", "del", name], check=False)
        for name in bridges:
            _run(["ip", "link", "del", name], check=False)
    return removed


def slot_subnet(slot):
    """The /24 a slot's hosts live in: 198.18.<slot+1>.0/24."""
    return ipaddress.ip_network("198.18.%d.0/24" % (1 + int(slot)))


def invoking_shell():
    """The pid that owns a fleet made by hand: the session of the shell that ran us.

    sudo may start its own session, so first step past sudo (and su, doas, env)
    to the process that called it, then take that process's session leader.
    """
    pid = os.getppid()
    for _ in range(10):
        try:
            comm = Path("/proc/%d/comm" % pid).read_text().strip()
            parent = int(Path("/proc/%d/stat" % pid).read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
        if comm not in ("sudo", "su", "doas", "env", "setpriv") or parent <= 1:
            break
        pid = parent
    try:
        leader = os.getsid(pid)
    except OSError:
        return pid
    return leader if leader > 1 else pid


def fleet_records():
    """{slot: record} of every slot on the machine (record None when unreadable)."""
    found = {}
    for slot_dir in FLEET_RUN.glob("slot-*"):
        match = re.fullmatch(r"slot-(\d+)", slot_dir.name)
        if match:
            found[int(match.group(1))] = _read_record(slot_dir)
    return dict(sorted(found.items()))


def owner_alive(record):
    return record is not None and _pid_alive(record.get("owner_pid", -1) or -1,
                                             record.get("owner_start"))


def resolve_slot(target):
    """A slot number from `N`, `slot-N`, its directory or its inventory path."""
    text = str(target).strip()
    if text.isdigit():
        return int(text)
    path = Path(text)
    if path.name == "inventory.yml":
        path = path.parent
    match = re.fullmatch(r"slot-(\d+)", path.name)
    if match and (len(path.parts) == 1 or path.resolve().parent == FLEET_RUN.resolve()):
        return int(match.group(1))
    raise FleetError("%s names no fleet: give a slot number, %s/slot-N or its "
                     "inventory.yml" % (target, FLEET_RUN))


def select_for_down(records, target=None):
    """Which slots `down` removes, and why the others named are kept.

    With a target: that slot, if it was made by hand or its owner is gone (a
    running test's fleet is refused). Without: only slots whose owner is gone.
    Returns (slots, refusals).
    """
    if target is not None:
        slot = resolve_slot(target)
        if slot not in records:
            return [], ["no fleet in slot %d" % slot]
        record = records[slot]
        if record is None or record.get("persistent") or not owner_alive(record):
            return [slot], []
        return [], ["slot %d belongs to a running test (pid %s); it goes away with that "
                    "run" % (slot, record.get("owner_pid"))]
    return [slot for slot, record in records.items() if not owner_alive(record)], []


def remove_slots(slots):
    """Tear down exactly these slots (under the allocation lock). Returns those removed."""
    removed = []
    with _lock():
        for slot in slots:
            slot_dir = FLEET_RUN / ("slot-%d" % slot)
            if not slot_dir.is_dir():
                continue
            record = _read_record(slot_dir) or {"dir": str(slot_dir), "slot": slot}
            _teardown_record(record)
            removed.append(slot)
    return removed


class _lock:
    """An exclusive lock over slot allocation, shared by concurrent test runs."""

    def __enter__(self):
        FLEET_RUN.mkdir(parents=True, exist_ok=True)
        self.handle = open(FLEET_RUN / "lock", "w")
        fcntl.flock(self.handle, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.handle, fcntl.LOCK_UN)
        self.handle.close()


def _host_boot_script(host_dir, spec):
    """The script a host runs inside its fresh mount and UTS namespaces."""
    mounts = [
        ("etc/sysctl.d", "/etc/sysctl.d"),
        ("etc/sysctl.conf", "/etc/sysctl.conf"),
        ("etc/passwd", "/etc/passwd"),
        ("etc/group", "/etc/group"),
        ("etc/shadow", "/etc/shadow"),
        ("etc/hosts", "/etc/hosts"),
        ("etc/hostname", "/etc/hostname"),
        ("etc/sudoers.d", "/etc/sudoers.d"),
        ("home", "/home"),
        ("state", STATE_DIR),
    ]
    lines = ["#!/bin/sh", "set -e"]
    for source, target in mounts:
        lines.append("mount --bind %s %s" % (host_dir / source, target))
    lines.append("mount -t tmpfs -o mode=0755 tmpfs /run/sshd")
    # Named network namespaces are the host's own, like its processes: fresh folders
    # where ip netns and docker keep them.
    for folder in ("/run/netns", "/run/docker/netns"):
        lines.append("if [ -d %s ]; then mount -t tmpfs -o mode=0755 tmpfs %s; fi"
                     % (folder, folder))
    lines.append("hostname %s" % spec.name)
    if spec.listeners:
        lines.append("%s %s %s &" % (TARGET_PYTHON, REPO / "tests" / "fleet" / "listener.py",
                                     " ".join(str(int(port)) for port in spec.listeners)))
    lines.append("exec /usr/sbin/sshd -D -e -f %s" % (host_dir / "ssh" / "sshd_config"))
    return "\n".join(lines) + "\n"


def _sshd_config(host_dir, address, authorized_keys):
    return "\n".join([
        "ListenAddress %s" % address,
        "Port 22",
        "HostKey %s" % (host_dir / "ssh" / "host_key"),
        "PidFile %s" % (host_dir / "ssh" / "sshd.pid"),
        "AuthorizedKeysFile %s" % authorized_keys,
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PermitRootLogin prohibit-password",
        "UsePAM no",
        # Key files live under /run, which StrictModes would reject.
        "StrictModes no",
        "MaxStartups 200:30:400",
        "MaxSessions 200",
        "Subsystem sftp /usr/lib/openssh/sftp-server",
        "LogLevel ERROR",
        "",
    ])


def _account_files(host_dir):
    """Copies of passwd, group and shadow with the fleet's sudo user added."""
    etc = host_dir / "etc"
    passwd = Path("/etc/passwd").read_text()
    group = Path("/etc/group").read_text()
    shadow = Path("/etc/shadow").read_text()
    (etc / "passwd").write_text(
        passwd + "%s:x:%d:%d:portpool fleet:/home/%s:/bin/sh\n"
        % (SUDO_USER, SUDO_UID, SUDO_UID, SUDO_USER))
    (etc / "group").write_text(group + "%s:x:%d:\n" % (SUDO_USER, SUDO_UID))
    # '*' is "no password", not "locked" ('!'), so key logins are allowed.
    (etc / "shadow").write_text(shadow + "%s:*:20000:0:99999:7:::\n" % SUDO_USER)
    os.chmod(etc / "shadow", 0o640)
    sudoers = etc / "sudoers.d"
    sudoers.mkdir()
    (sudoers / SUDO_USER).write_text("%s ALL=(ALL) NOPASSWD: ALL\n" % SUDO_USER)
    os.chmod(sudoers / SUDO_USER, 0o440)
    home = host_dir / "home" / SUDO_USER
    home.mkdir(parents=True)
    os.chown(home, SUDO_UID, SUDO_UID)


class Fleet:
    """A set of running hosts; use Fleet.create() as a context manager."""

    def __init__(self, slot, slot_dir, hosts, record):
        self.slot = slot
        self.dir = slot_dir
        self.hosts = hosts
        self._record = record
        self.inventory = slot_dir / "inventory.yml"
        self.known_hosts = slot_dir / "known_hosts"
        self.key = slot_dir / "id_ed25519"

    # ---- creation -------------------------------------------------------------
    @classmethod
    def create(cls, specs, persistent=False, owner_pid=None):
        """Start one host per spec and write the inventory. Tears down on failure.

        owner_pid (default: this process) is whose death makes the fleet stale.
        """
        specs = list(specs)
        if not specs or len(specs) > MAX_HOSTS:
            raise FleetError("a fleet needs 1..%d hosts, got %d" % (MAX_HOSTS, len(specs)))
        names = [spec.name for spec in specs]
        if len(set(names)) != len(names):
            raise FleetError("host names must be unique: %s" % names)
        for spec in specs:
            spec.validate()
        for tool in ("/usr/sbin/sshd", "ssh-keygen", "ip", "unshare", "nsenter", "sudo"):
            if shutil.which(tool) is None:
                raise FleetError("%s is missing: run `make test` as root to install it" % tool)
        if owner_pid is not None and not _pid_alive(int(owner_pid), None):
            raise FleetError("owner pid %s is not running" % owner_pid)
        cleanup_stale()
        slot, slot_dir, record = cls._claim_slot(persistent, owner_pid or os.getpid())
        fleet = cls(slot, slot_dir, {}, record)
        try:
            fleet._start(specs)
        except BaseException:
            fleet.down()
            raise
        return fleet

    @staticmethod
    def _claim_slot(persistent, owner_pid):
        with _lock():
            for slot in range(MAX_SLOTS):
                slot_dir = FLEET_RUN / ("slot-%d" % slot)
                if slot_dir.exists():
                    continue
                slot_dir.mkdir(mode=0o755)
                record = {
                    "slot": slot,
                    "dir": str(slot_dir),
                    "owner_pid": owner_pid,
                    "owner_start": _start_time(owner_pid),
                    "persistent": persistent,
                    "bridge": "ppfbr%d" % slot,
                    "hosts": [],
                }
                _write_record(slot_dir, record)
                return slot, slot_dir, record
        raise FleetError("all %d fleet slots are in use" % MAX_SLOTS)

    @classmethod
    def attach(cls, record):
        """The running fleet a slot's record describes (for the CLI's churn)."""
        slot_dir = Path(record["dir"])
        hosts = {}
        for entry in record.get("hosts", []):
            if "pid" not in entry:
                raise FleetError("slot %s: host %s never started" % (record["slot"],
                                                                     entry["name"]))
            hosts[entry["name"]] = Host(entry["name"], entry["address"], entry["netns"],
                                        slot_dir / "hosts" / entry["name"], entry["pid"],
                                        HostSpec(entry["name"]))
        return cls(record["slot"], slot_dir, hosts, record)

    @property
    def owner_pid(self):
        return self._record["owner_pid"]

    def _save_record(self):
        _write_record(self.dir, self._record)

    def _subnet(self):
        return slot_subnet(self.slot)

    def _start(self, specs):
        subnet = self._subnet()
        assert subnet.subnet_of(NETWORK)
        gateway = "%s/24" % subnet[1]
        bridge = self._record["bridge"]
        _run(["ip", "link", "add", bridge, "type", "bridge"])
        _run(["ip", "addr", "add", gateway, "dev", bridge])
        _run(["ip", "link", "set", bridge, "up"])
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "portpool-fleet",
              "-f", str(self.key)])
        authorized = self.dir / "authorized_keys"
        shutil.copy(self.key.with_suffix(".pub"), authorized)
        os.chmod(authorized, 0o644)
        os.chmod(self.dir, 0o755)
        # Mount points for the per-host copies; sshd also wants /run/sshd.
        Path(STATE_DIR).mkdir(parents=True, exist_ok=True)
        Path("/run/sshd").mkdir(exist_ok=True)
        known = []
        for index, spec in enumerate(specs):
            address = str(subnet[10 + index])
            host = self._start_host(index, spec, address, bridge)
            self.hosts[spec.name] = host
            key_type, key = (host.root / "ssh" / "host_key.pub").read_text().split()[:2]
            known.append("%s %s %s" % (address, key_type, key))
        self.known_hosts.write_text("\n".join(known) + "\n")
        for host in self.hosts.values():
            self._wait_for_sshd(host)
        self._write_inventory()

    def _start_host(self, index, spec, address, bridge):
        netns = "ppf%d-%s" % (self.slot, spec.name)
        veth = "ppf%dv%d" % (self.slot, index)
        host_dir = self.dir / "hosts" / spec.name
        self._record["hosts"].append({"name": spec.name, "netns": netns, "veth": veth})
        self._save_record()
        (host_dir / "ssh").mkdir(parents=True)
        (host_dir / "state").mkdir()
        etc = host_dir / "etc"
        (etc / "sysctl.d").mkdir(parents=True)
        for name, content in spec.sysctl_d.items():
            (etc / "sysctl.d" / name).write_text(content)
        (etc / "sysctl.conf").write_text(spec.sysctl_conf or "")
        (etc / "hostname").write_text(spec.name + "\n")
        (etc / "hosts").write_text("127.0.0.1 localhost\n%s %s\n" % (address, spec.name))
        _account_files(host_dir)
        for path in (host_dir, etc, host_dir / "home"):
            os.chmod(path, 0o755)

        _run(["ip", "netns", "add", netns])
        _run(["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0",
              "netns", netns])
        _run(["ip", "link", "set", veth, "master", bridge, "up"])
        inside = ["ip", "netns", "exec", netns]
        _run([*inside, "ip", "link", "set", "lo", "up"])
        _run([*inside, "ip", "addr", "add", "%s/24" % address, "dev", "eth0"])
        _run([*inside, "ip", "link", "set", "eth0", "up"])
        for key, value in spec.sysctls.items():
            # Written straight to /proc/sys: `sysctl -w` may exit 0 on EINVAL.
            _run([*inside, "tee", "/proc/sys/" + key.replace(".", "/")],
                 input="%s\n" % value)

        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", spec.name,
              "-f", str(host_dir / "ssh" / "host_key")])
        (host_dir / "ssh" / "sshd_config").write_text(
            _sshd_config(host_dir, address, self.dir / "authorized_keys"))
        boot = host_dir / "boot.sh"
        boot.write_text(_host_boot_script(host_dir, spec))
        log = open(host_dir / "sshd.log", "w")  # noqa: SIM115
        process = subprocess.Popen(
            # Own PID namespace and /proc too: a host sees only its own processes, as
            # a machine does, so namespace discovery finds its containers, not the
            # other hosts. --kill-child: the host ends with this process.
            [*inside, "unshare", "--mount", "--uts", "--pid", "--fork", "--kill-child",
             "--mount-proc", "--propagation", "private", "/bin/sh", str(boot)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
        log.close()
        # What attach() needs to reach the host from another process (the CLI).
        self._record["hosts"][-1].update(address=address, pid=process.pid)
        self._save_record()
        return Host(spec.name, address, netns, host_dir, process.pid, spec)

    def _wait_for_sshd(self, host):
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((host.address, 22), timeout=1) as conn:
                    if conn.recv(4).startswith(b"SSH-"):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        log = (host.root / "sshd.log").read_text(errors="replace")
        raise FleetError("sshd on %s (%s) did not start in %ds: %s"
                         % (host.name, host.address, START_TIMEOUT, log.strip()[-500:]))

    def _write_inventory(self):
        ssh_args = " ".join([
            "-o UserKnownHostsFile=%s" % self.known_hosts,
            "-o StrictHostKeyChecking=yes",
            "-o IdentitiesOnly=yes",
            "-o ConnectTimeout=5",
        ])
        hosts = {}
        groups = {}
        for host in self.hosts.values():
            entry = {"ansible_host": host.address, "ansible_user": "root"}
            if host.spec.become:
                entry.update(ansible_user=SUDO_USER, ansible_become=True)
            entry.update(host.spec.hostvars)
            hosts[host.name] = entry
            for group in host.spec.groups:
                groups.setdefault(group, {"hosts": {}})["hosts"][host.name] = None
        inventory = {
            "all": {
                "vars": {
                    "ansible_connection": "ssh",
                    "ansible_python_interpreter": TARGET_PYTHON,
                    "ansible_ssh_private_key_file": str(self.key),
                    "ansible_ssh_common_args": ssh_args,
                },
                "hosts": hosts,
                "children": groups,
            }
        }
        self.inventory.write_text(yaml.safe_dump(inventory, sort_keys=False))

    # ---- use ------------------------------------------------------------------
    def env(self):
        """Environment for ansible commands against this fleet."""
        venv_bin = str(Path(sys.executable).parent)
        control = self.dir / "cp"
        control.mkdir(exist_ok=True)
        return dict(
            os.environ,
            PATH=venv_bin + os.pathsep + os.environ.get("PATH", ""),
            ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
            ANSIBLE_INVENTORY=str(self.inventory),
            ANSIBLE_SSH_CONTROL_PATH_DIR=str(control),
            ANSIBLE_LOCAL_TEMP=str(self.dir / "tmp"),
            ANSIBLE_NOCOLOR="1",
            ANSIBLE_FORCE_COLOR="0",
            LANG="C.UTF-8",
        )

    def ansible(self, *args, timeout=600):
        """Run `ansible <args>` against the fleet from the repository root."""
        return subprocess.run(["ansible", "-i", str(self.inventory), *args], cwd=REPO,
                              env=self.env(), capture_output=True, text=True, timeout=timeout)

    def playbook(self, playbook, *args, extra_vars=None, timeout=900, env=None):
        """Run `ansible-playbook -i <inventory> <playbook> <args>` from the repository root."""
        argv = ["ansible-playbook", "-i", str(self.inventory), str(playbook), *args]
        if extra_vars:
            argv += ["-e", json.dumps(extra_vars)]
        return subprocess.run(argv, cwd=REPO, env=dict(self.env(), **(env or {})),
                              capture_output=True, text=True, timeout=timeout)

    def run(self, name, argv, check=True, input=None, timeout=60):
        """Run argv as root inside host `name` (its network, mount, UTS and PID namespaces)."""
        result = subprocess.run(
            [*self.enter(name), *argv],
            input=input, capture_output=True, text=True, timeout=timeout,
            env=dict(os.environ, LANG="C", LC_ALL="C"))
        if check and result.returncode != 0:
            raise FleetError("on %s, %s failed (%d): %s" % (
                name, " ".join(argv), result.returncode, result.stderr.strip()))
        return result

    def enter(self, name):
        """The nsenter prefix that runs a command inside host `name` (all its namespaces)."""
        host = self.hosts[name]
        try:
            with open("/proc/%d/task/%d/children" % (host.pid, host.pid),
                      encoding="ascii") as handle:
                init = int(handle.read().split()[0])
        except (OSError, ValueError, IndexError):
            raise FleetError("host %s is not running" % name) from None
        return ["nsenter", "-t", str(init), "-n", "-m", "-u", "-p", "--"]

    # ---- containers ------------------------------------------------------------
    def named_netns(self, name, netns, sysctls=None):
        """A named network namespace inside host `name` (`ip netns add`), with net.* values."""
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,15}", netns):
            raise FleetError("bad namespace name %r" % netns)
        self.run(name, ["ip", "netns", "add", netns])
        for key, value in (sysctls or {}).items():
            if not key.startswith("net.") or "/" in key or ".." in key:
                raise FleetError("only net.* sysctls are per namespace, not %r" % key)
            self.run(name, ["ip", "netns", "exec", netns, "tee",
                            "/proc/sys/" + key.replace(".", "/")], input="%s\n" % value)

    def container(self, name, argv):
        """Start argv in a new network namespace inside host `name`, held by that process.

        Like a container: its own namespace, known to the host only through the
        process. Returns the Popen (stdin and stdout piped); the namespace goes when
        the process ends, and at the latest with the host.
        """
        return subprocess.Popen([*self.enter(name), "unshare", "--net", "--", *argv],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def sysctl(self, name, key):
        """The runtime value of a sysctl inside host `name`, whitespace-normalised."""
        if "/" in key or ".." in key:
            raise FleetError("bad sysctl name %r" % key)
        path = "/proc/sys/" + key.replace(".", "/")
        return " ".join(self.run(name, ["cat", path]).stdout.split())

    # ---- traffic --------------------------------------------------------------
    def address_of(self, destination):
        """A fleet host's address, or an address checked to lie in 198.18.0.0/15."""
        if destination in self.hosts:
            return self.hosts[destination].address
        try:
            address = ipaddress.ip_address(destination)
        except ValueError:
            raise FleetError("%s is neither a host of this fleet (%s) nor an address"
                             % (destination, ", ".join(self.hosts))) from None
        if address not in NETWORK:
            raise FleetError("%s is outside %s, the only range fleets may use"
                             % (address, NETWORK))
        return str(address)

    def _churn_argv(self, name, destination, port, count, *, rate, seconds):
        if name not in self.hosts:
            raise FleetError("no host %s in this fleet (%s)" % (name, ", ".join(self.hosts)))
        if not 1 <= int(count) <= MAX_CHURN or not 0 < float(seconds) <= MAX_CHURN_SECONDS:
            raise FleetError("churn: count 1..%d and seconds up to %d, got %s and %s"
                             % (MAX_CHURN, MAX_CHURN_SECONDS, count, seconds))
        if not 1 <= int(port) <= 65535:
            raise FleetError("churn: bad port %r" % port)
        return [*self.enter(name), TARGET_PYTHON,
                str(REPO / "tests" / "fleet" / "churn.py"), self.address_of(destination),
                str(int(port)), str(int(count)), str(float(rate)), str(float(seconds))]

    def churn(self, name, destination, port, count, *, rate=0, seconds=60):
        """From host `name`, connect to destination:port `count` times, closing first.

        Each connection leaves TIME_WAIT on `name` for 60 s. destination is a host
        of this fleet (with a listener on port) or a 198.18.0.0/15 address. rate
        (per second, 0 = as fast as possible) and seconds bound it. Returns
        {"connected", "failed", "stopped_by"}.
        """
        argv = self._churn_argv(name, destination, port, count, rate=rate, seconds=seconds)
        result = subprocess.run(argv, capture_output=True, text=True,
                                timeout=float(seconds) + 30)
        if result.returncode != 0:
            raise FleetError("churn on %s failed: %s" % (name, result.stderr.strip()[-500:]))
        self.settle(name, destination, port)
        return json.loads(result.stdout.strip().splitlines()[-1])

    def settle(self, name, destination, port, seconds=10):
        """Wait (bounded) until host `name`'s closing sockets to destination:port are
        in TIME_WAIT: the client closes first, and each socket waits in FIN_WAIT until
        the peer has closed its side too."""
        address = self.address_of(destination)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            closing = self.run(name, ["ss", "-Htn", "state", "fin-wait-1", "state",
                                      "fin-wait-2", "state", "closing", "dst",
                                      "%s:%d" % (address, int(port))]).stdout
            if not closing.strip():
                return
            time.sleep(0.1)

    def start_churn(self, name, destination, port, *, rate, seconds):
        """Like churn() at a steady rate, in the background, for at most `seconds`.

        Returns the process; stop_churn() ends it (teardown does too).
        """
        argv = self._churn_argv(name, destination, port,
                                max(1, int(float(rate) * float(seconds))), rate=rate,
                                seconds=seconds)
        # Its own process group: nsenter forks into the host's PID namespace, and the
        # group reaches both nsenter and the churn it started.
        return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, start_new_session=True)

    @staticmethod
    def stop_churn(process):
        """Stop a start_churn() process (by its own process group) and return its summary."""
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        try:
            out, _ = process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            out, _ = process.communicate(timeout=10)
        lines = (out or "").strip().splitlines()
        return json.loads(lines[-1]) if lines else None

    def time_wait(self, name, destination, port):
        """How many TIME_WAIT sockets host `name` holds to destination:port."""
        address = self.address_of(destination)
        self.settle(name, destination, port)
        result = self.run(name, ["ss", "-Htn", "state", "time-wait", "dst",
                                 "%s:%d" % (address, int(port))])
        return len(result.stdout.splitlines())

    def clear_time_wait(self, name, destination, port):
        """Drop host `name`'s TIME_WAIT sockets to destination:port (ss -K), so a
        churn() after it leaves exactly its own count. Returns how many remain."""
        address = self.address_of(destination)
        self.run(name, ["ss", "-HtnK", "state", "time-wait", "dst",
                        "%s:%d" % (address, int(port))], check=False)
        left = self.time_wait(name, destination, port)
        if left:
            raise FleetError("%s: %d TIME_WAIT sockets to %s:%s could not be dropped "
                             "(the kernel needs SOCK_DESTROY for TIME_WAIT)"
                             % (name, left, address, port))
        return left

    def kill_sshd(self, name):
        """Make a host unreachable: stop its sshd (the host's namespaces stay)."""
        host = self.hosts[name]
        with contextlib.suppress(ProcessLookupError):
            os.kill(host.pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                socket.create_connection((host.address, 22), timeout=0.5).close()
            except OSError:
                return
            time.sleep(0.05)
        raise FleetError("sshd on %s still answers" % name)

    # ---- teardown -------------------------------------------------------------
    def down(self):
        with _lock():
            _teardown_record(self._record)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.down()

