#!/usr/bin/env python3
"""Generate the portpool.portpool Galaxy collection from the playbook project.

The playbook-project layout (library/, action_plugins/, module_utils/, roles/,
playbooks/) stays the only source; this writes

    build/collection/ansible_collections/portpool/portpool/

with the modules, action plugins and module_utils under plugins/, imports and
names rewritten to the collection namespace (scripts/collection_rewrite.py),
galaxy.yml and meta/runtime.yml, then runs `ansible-galaxy collection build`
into build/dist/. The tree is rebuilt from scratch each time, so the same
sources always give the same files.

    python3 scripts/build_collection.py [--no-tarball]
"""

from __future__ import annotations

import argparse
import ast
import gzip
import io
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import yaml
from ansible.release import __version__ as ansible_version

sys.path.insert(0, str(Path(__file__).resolve().parent))
from collection_rewrite import (
    OUR_IMPORT,
    PLUGIN_UTILS_PACKAGE,
    UTILS_PACKAGE,
    RewriteError,
    leftover_hacks,
    rewrite_module_docs,
    rewrite_python,
    rewrite_yaml,
)

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build"
COLLECTION = BUILD / "collection" / "ansible_collections" / "portpool" / "portpool"
DIST = BUILD / "dist"
# The oldest ansible-core the collection declares; CI tests the pinned 2.19.
REQUIRES_ANSIBLE = ">=2.16.0"
# Every tarball entry's time: 2026-01-01T00:00:00Z, so rebuilding changes no byte.
REPRODUCIBLE_MTIME = 1767225600
# Role and playbook folders whose YAML names modules, roles and playbooks.
TASK_DIRS = ("tasks", "handlers")


def read_version():
    """VERSION from module_utils/portpool_version.py, read without importing it."""
    tree = ast.parse((ROOT / "module_utils" / "portpool_version.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "VERSION" for t in node.targets):
            return ast.literal_eval(node.value)
    raise RewriteError("module_utils/portpool_version.py has no VERSION")


def galaxy_manifest(version):
    return {
        "namespace": "portpool",
        "name": "portpool",
        "version": version,
        "readme": "README.md",
        "authors": ["portpool contributors"],
        "description": "Audit and tune the Linux ephemeral-port pool of a fleet",
        "license": ["GPL-3.0-or-later"],
        "tags": ["networking", "sysctl", "tcp", "linux"],
        "dependencies": {},
        "build_ignore": [],
    }


def runtime_metadata():
    return {"requires_ansible": REQUIRES_ANSIBLE}


def write_yaml(path, data, header):
    path.parent.mkdir(parents=True, exist_ok=True)
    body = yaml.safe_dump(data, sort_keys=False, default_flow_style=False)
    path.write_text("---\n# %s\n%s" % (header, body))


def python_sources(folder):
    return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


def utils_names():
    """Top-level names under module_utils/: files and packages alike."""
    folder = ROOT / "module_utils"
    names = {p.stem for p in folder.glob("*.py")}
    names |= {p.name for p in folder.iterdir() if (p / "__init__.py").is_file()}
    return names


def target_utils(utils):
    """The module_utils the modules import, directly or through each other.

    Those travel to the targets inside AnsiballZ and stay in plugins/module_utils;
    the rest run only in the controller (they may import PyYAML or Jinja2) and go
    to plugins/plugin_utils, where ansible-test checks them as controller code.
    """
    folder = ROOT / "module_utils"

    def imports(path):
        return {name for name in OUR_IMPORT.findall(path.read_text()) if name in utils}

    wanted = set().union(*(imports(p) for p in (ROOT / "library").glob("*.py")))
    pending = list(wanted)
    while pending:
        name = pending.pop()
        package = folder / name
        sources = python_sources(package) if package.is_dir() else [folder / (name + ".py")]
        for found in set().union(*(imports(p) for p in sources)) - wanted:
            wanted.add(found)
            pending.append(found)
    return wanted


def utils_packages(utils):
    on_targets = target_utils(utils)
    return {name: UTILS_PACKAGE if name in on_targets else PLUGIN_UTILS_PACKAGE
            for name in utils}


def copy_utils(packages, dest):
    """module_utils/ split into plugins/module_utils and plugins/plugin_utils."""
    folder = ROOT / "module_utils"
    for source in python_sources(folder):
        relative = source.relative_to(folder)
        name = relative.parts[0].removesuffix(".py")
        kind = packages[name].rsplit(".", 1)[-1] if name in packages else "module_utils"
        target = dest / "plugins" / kind / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(rewrite_python(source.read_text(), packages,
                                         str(source.relative_to(ROOT))))


def copy_python(source_dir, dest_dir, utils, modules=None):
    """Copy Python sources; with `modules`, their documentation gets FQCNs too."""
    for source in python_sources(source_dir):
        target = dest_dir / source.relative_to(source_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        text = rewrite_python(source.read_text(), utils, str(source.relative_to(ROOT)))
        target.write_text(rewrite_module_docs(text, modules) if modules else text)


def copy_yaml_tree(source_dir, dest_dir, names):
    """Copy a role or playbook folder; task and playbook YAML get FQCNs."""
    for source in sorted(p for p in source_dir.rglob("*") if p.is_file()):
        relative = source.relative_to(source_dir)
        target = dest_dir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        is_tasks = dest_dir.name == "playbooks" or (
            len(relative.parts) > 2 and relative.parts[1] in TASK_DIRS)
        if source.suffix in (".yml", ".yaml") and is_tasks:
            target.write_text(rewrite_yaml(source.read_text(), *names,
                                           where=str(source.relative_to(ROOT))))
        else:
            shutil.copyfile(source, target)


def generate(dest):
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    utils = utils_packages(utils_names())
    modules = {p.stem for p in (ROOT / "library").glob("*.py")}
    roles = {p.name for p in (ROOT / "roles").iterdir() if (p / "tasks").is_dir()}
    playbooks = {p.stem for p in (ROOT / "playbooks").glob("*.yml")}
    names = (modules, roles, playbooks)

    copy_python(ROOT / "library", dest / "plugins" / "modules", utils, modules)
    copy_python(ROOT / "action_plugins", dest / "plugins" / "action", utils)
    copy_utils(utils, dest)
    copy_yaml_tree(ROOT / "roles", dest / "roles", names)
    copy_yaml_tree(ROOT / "playbooks", dest / "playbooks", names)
    shutil.copytree(ROOT / "docs", dest / "docs")
    for name in ("README.md", "LICENSE"):
        shutil.copyfile(ROOT / name, dest / name)
    write_yaml(dest / "galaxy.yml", galaxy_manifest(read_version()),
               "Generated by scripts/build_collection.py: edit the playbook project instead.")
    write_yaml(dest / "meta" / "runtime.yml", runtime_metadata(),
               "Generated by scripts/build_collection.py.")
    write_sanity_ignores(dest)
    check_no_path_hack(dest)


def write_sanity_ignores(dest):
    """tests/collection/sanity-ignore.txt, for the ansible-core that runs the tests.

    Each entry is a known problem in the playbook project's sources; ansible-test
    fails on an entry that is no longer needed, so the list can only shrink.
    """
    version = ".".join(ansible_version.split(".")[:2])
    lines = []
    for line in (ROOT / "tests" / "collection" / "sanity-ignore.txt").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        # A renamed or deleted source takes its entries with it (ansible-test
        # rejects entries for missing files); anything it still has fails anew.
        if (dest / line.split()[0]).is_file():
            lines.append(line)
        else:
            print("build_collection: sanity-ignore.txt: no %s any more; entry skipped"
                  % line.split()[0], file=sys.stderr)
    target = dest / "tests" / "sanity" / ("ignore-%s.txt" % version)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("".join(line + "\n" for line in sorted(lines)))


def check_no_path_hack(dest):
    """The collection loader finds module_utils: no file may patch an import path."""
    problems = ["%s: %s" % (path.relative_to(dest), problem)
                for path in python_sources(dest / "plugins")
                for problem in leftover_hacks(path.read_text())]
    if problems:
        raise RewriteError("import-path hack left in the collection: " + "; ".join(problems))


def build_tarball(source, dist):
    dist.mkdir(parents=True, exist_ok=True)
    galaxy = Path(sys.executable).parent / "ansible-galaxy"
    command = [str(galaxy) if galaxy.exists() else "ansible-galaxy", "collection", "build",
               "--force", "--output-path", str(dist), str(source)]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL,
                   env=dict(os.environ, ANSIBLE_NOCOLOR="1"))
    tarball = dist / ("portpool-portpool-%s.tar.gz" % read_version())
    make_reproducible(tarball)
    return tarball


def make_reproducible(tarball):
    """Same sources, same bytes: ansible-galaxy stamps every entry (and gzip) with
    the build time; repack with a fixed time, the members unchanged and in order."""
    members = []
    with tarfile.open(tarball, "r:gz") as source:
        for info in source.getmembers():
            data = source.extractfile(info).read() if info.isfile() else None
            info.mtime = REPRODUCIBLE_MTIME
            members.append((info, data))
    with open(tarball, "wb") as raw, \
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as zipped, \
            tarfile.open(fileobj=zipped, mode="w", format=tarfile.GNU_FORMAT) as target:
        for info, data in members:
            target.addfile(info, io.BytesIO(data) if data is not None else None)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=COLLECTION,
                        help="collection root to (re)generate (default: %(default)s)")
    parser.add_argument("--dist", type=Path, default=DIST,
                        help="folder for the tarball (default: %(default)s)")
    parser.add_argument("--no-tarball", action="store_true", help="generate the tree only")
    args = parser.parse_args(argv)
    try:
        generate(args.dest)
    except RewriteError as exc:
        sys.exit("build_collection: %s" % exc)
    print(args.dest)
    if not args.no_tarball:
        print(build_tarball(args.dest, args.dist))


if __name__ == "__main__":
    main()
