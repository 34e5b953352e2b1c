"""Debian kernels for the matrix: fetched, unpacked and made bootable in a cache.

Each kernel package is fetched with `apt-get download` and unpacked with
`dpkg -x` into the cache folder; it is never installed as the machine's kernel.
From it we keep an uncompressed `vmlinux` (QEMU boots it through its PVH entry,
which saves the guest a slow decompression under emulation) and a small
initramfs: static busybox, the guest init, and the virtio/9p/overlay modules of
that very kernel, resolved with `depmod -b`/`modprobe -d` on the unpacked tree.
"""

import lzma
import os
import re
import shutil
import subprocess
import zlib
from pathlib import Path

# Series the matrix runs, as apt package name patterns. Only the generic
# `-amd64` flavour works: `-cloud-amd64` is built without 9p.
SERIES = {
    "6.1": r"^linux-image-6\.1\.0-[0-9]+-amd64$",
    "6.12": r"^linux-image-6\.12\.[0-9]+\+deb12-amd64$",
}
# The root share, and the socket diagnostics that ss and portpool_facts query over
# netlink: Debian builds them as modules, which the guest cannot autoload (the
# host has no /lib/modules for it), so the initramfs loads them at boot.
GUEST_MODULES = ("virtio_pci", "virtio_mmio", "9pnet_virtio", "9p", "overlay",
                 "inet_diag", "tcp_diag", "udp_diag")
BUSYBOX_LINKS = ("sh", "mount", "insmod", "mkdir", "cat", "tr", "sed", "switch_root",
                 "poweroff")
INIT = Path(__file__).with_name("guest_init.sh")


class ImageError(RuntimeError):
    """A kernel could not be fetched or made bootable."""


def _run(argv, **kwargs):
    done = subprocess.run(argv, capture_output=True, check=False, **kwargs)
    if done.returncode != 0:
        raise ImageError("%s failed: %s" % (" ".join(map(str, argv)),
                                            done.stderr.decode(errors="replace")[-2000:]))
    return done.stdout


def version_key(name):
    """Sort key for package names: numbers compare as numbers."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def newest_package(pattern, names):
    """The newest package name matching `pattern` among `names`, or None."""
    matching = [name for name in names if re.match(pattern, name)]
    return max(matching, key=version_key) if matching else None


def available_packages(pattern):
    """Package names apt knows for the pattern (`apt-cache search --names-only`)."""
    out = _run(["apt-cache", "search", "--names-only", pattern]).decode()
    names = [line.split(" ", 1)[0] for line in out.splitlines() if line.strip()]
    if not names:
        # A fresh machine may not have the package lists yet.
        _run(["apt-get", "update", "-qq"])
        out = _run(["apt-cache", "search", "--names-only", pattern]).decode()
        names = [line.split(" ", 1)[0] for line in out.splitlines() if line.strip()]
    return names


def extract_vmlinux(vmlinuz):
    """The ELF kernel inside a bzImage (xz, zstd or gzip payload)."""
    data = Path(vmlinuz).read_bytes()
    for magic, kind in ((b"\xfd7zXZ\x00", "xz"), (b"\x28\xb5\x2f\xfd", "zstd"),
                        (b"\x1f\x8b\x08", "gzip")):
        start = data.find(magic)
        while start >= 0:
            try:
                if kind == "xz":
                    out = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(data[start:])
                elif kind == "gzip":
                    out = zlib.decompressobj(31).decompress(data[start:])
                else:
                    out = subprocess.run(["zstd", "-qdc"], input=data[start:],
                                         capture_output=True, check=False).stdout
            except (lzma.LZMAError, zlib.error):
                out = b""
            if out[:4] == b"\x7fELF":
                return out
            start = data.find(magic, start + 1)
    raise ImageError("no ELF kernel inside %s" % vmlinuz)


def _module_files(tree, release):
    """Module files to load, dependencies first, each once."""
    _run(["depmod", "-b", str(tree), release])
    ordered = []
    for module in GUEST_MODULES:
        out = _run(["modprobe", "-d", str(tree), "-S", release, "--show-depends", module])
        for line in out.decode().splitlines():
            fields = line.split()
            if fields and fields[0] == "insmod" and fields[1] not in ordered:
                ordered.append(fields[1])
    return ordered


def _decompressed(path):
    if path.endswith(".xz"):
        return path[:-3], lzma.decompress(Path(path).read_bytes())
    if path.endswith(".zst"):
        return path[:-4], _run(["zstd", "-qdc", path])
    return path, Path(path).read_bytes()


def build_initramfs(tree, release, target):
    """A gzip'd cpio with busybox, guest_init.sh as /init and the guest modules."""
    staging = Path(str(target) + ".d")
    shutil.rmtree(staging, ignore_errors=True)
    for folder in ("bin", "proc", "sys", "dev", "lower", "rw", "mnt/root", "lib/mods"):
        (staging / folder).mkdir(parents=True)
    busybox = shutil.which("busybox") or "/bin/busybox"
    shutil.copy(busybox, staging / "bin" / "busybox")
    for name in BUSYBOX_LINKS:
        (staging / "bin" / name).symlink_to("busybox")
    order = []
    for path in _module_files(tree, release):
        name, data = _decompressed(path)
        (staging / "lib" / "mods" / os.path.basename(name)).write_bytes(data)
        order.append(os.path.basename(name))
    (staging / "lib" / "mods" / "order").write_text("\n".join(order) + "\n")
    shutil.copy(INIT, staging / "init")
    (staging / "init").chmod(0o755)
    listing = subprocess.run(["find", "."], cwd=staging, capture_output=True, check=True).stdout
    archive = _run(["cpio", "-o", "-H", "newc", "--quiet"], input=listing, cwd=staging)
    Path(target).write_bytes(_gzip(archive))
    shutil.rmtree(staging)


def _gzip(data):
    compressor = zlib.compressobj(1, zlib.DEFLATED, 31)
    return compressor.compress(data) + compressor.flush()


def prepare(series, cache):
    """Fetch and build the newest kernel of `series` into `cache`; return its folder.

    The folder holds `vmlinux`, `initrd.gz` and `release`; a complete folder is
    reused as it is, so only a new package version is downloaded again.
    """
    package = newest_package(SERIES[series], available_packages(SERIES[series]))
    if package is None:
        raise ImageError("apt offers no package for kernel %s (%s)" % (series, SERIES[series]))
    folder = Path(cache) / package
    ready = folder / "ready"
    if ready.exists() and ready.read_text() == _init_fingerprint():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    debs = sorted(folder.glob("*.deb"))
    if len(debs) != 1:
        for stale in debs:
            stale.unlink()
        _run(["apt-get", "download", "-q", package], cwd=folder)
        debs = sorted(folder.glob("*.deb"))
    if len(debs) != 1:
        raise ImageError("apt-get download %s left %d .deb files" % (package, len(debs)))
    # The unpacked tree (mostly modules) is large: keep the .deb, drop the tree.
    tree = folder / "tree"
    shutil.rmtree(tree, ignore_errors=True)
    try:
        _run(["dpkg", "-x", str(debs[0]), str(tree)])
        releases = os.listdir(tree / "lib" / "modules")
        if len(releases) != 1:
            raise ImageError("%s holds %d module trees" % (package, len(releases)))
        release = releases[0]
        vmlinux = extract_vmlinux(tree / "boot" / ("vmlinuz-" + release))
        (folder / "vmlinux").write_bytes(vmlinux)
        build_initramfs(tree, release, folder / "initrd.gz")
    finally:
        shutil.rmtree(tree, ignore_errors=True)
    (folder / "release").write_text(release)
    ready.write_text(_init_fingerprint())
    return folder


def _init_fingerprint():
    """The guest init and module list: a change rebuilds the initramfs."""
    return INIT.read_text() + "\n# modules: " + " ".join(GUEST_MODULES) + "\n"
