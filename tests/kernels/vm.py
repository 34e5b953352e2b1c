"""Boot one cached kernel under QEMU and run a shell job in it as root.

QEMU's `microvm` machine with TCG (software emulation): this machine's KVM
cannot boot these kernels. The guest sees the host's / read-only over 9p with a
RAM overlay, so it runs the project, its .venv and Python as they are here.
"""

import os
import re
import subprocess
import tempfile
from pathlib import Path

MARKERS = re.compile(r"MATRIX-BEGIN\r?\n(.*)MATRIX-END rc=(\d+)", re.S)
VM_FAILED = 125


def tsc_khz():
    """The host TSC rate: passed to the guest, it avoids microvm's flaky PIT
    calibration (about one boot in three hangs without it)."""
    try:
        log = subprocess.run(["dmesg"], capture_output=True, text=True, check=False).stdout
    except OSError:
        log = ""
    found = re.search(r"tsc: Detected (\d+)\.(\d{3}) MHz", log)
    if found:
        return int(found.group(1) + found.group(2))
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("cpu MHz"):
                return int(float(line.split(":")[1]) * 1000)
    return None


def qemu_argv(image, job, memory_mb=512):
    # loglevel=1 keeps kernel warnings (such as the range parity one) out of the
    # console, where they would land in the middle of the job's output.
    append = ["console=ttyS0", "panic=-1", "quiet", "loglevel=1", "pci=off",
              "matrix_job=%s" % job]
    khz = tsc_khz()
    if khz:
        append.append("tsc_early_khz=%d" % khz)
    return [
        "qemu-system-x86_64",
        "-M", "microvm,x-option-roms=off,isa-serial=on,rtc=on,acpi=on,pit=on,pic=on",
        "-accel", "tcg,thread=multi", "-cpu", "max", "-m", str(memory_mb), "-smp", "1",
        "-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio",
        "-monitor", "none", "-no-reboot",
        "-fsdev", "local,id=root,path=/,readonly=on,security_model=none,multidevs=remap",
        "-device", "virtio-9p-device,fsdev=root,mount_tag=hostroot",
        "-kernel", str(Path(image) / "vmlinux"), "-initrd", str(Path(image) / "initrd.gz"),
        "-append", " ".join(append),
    ]


def run_job(image, script, workdir, timeout):
    """Run `script` (shell text) in the guest; return (exit status, output).

    The status is the job's own, or VM_FAILED when the guest never got to run it
    (the output then is the tail of the console log).
    """
    Path(workdir).mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".sh", dir=workdir, delete=False) as job:
        job.write(script)
    try:
        done = subprocess.run(qemu_argv(image, os.path.abspath(job.name)),
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as expired:
        console = (expired.stdout or b"").decode(errors="replace")
        return VM_FAILED, "guest timed out after %ds\n%s" % (timeout, console[-3000:])
    finally:
        os.unlink(job.name)
    console = done.stdout.decode(errors="replace")
    found = MARKERS.search(console)
    if not found:
        return VM_FAILED, "guest did not run the job\n" + console[-3000:]
    return int(found.group(2)), found.group(1).replace("\r\n", "\n")
