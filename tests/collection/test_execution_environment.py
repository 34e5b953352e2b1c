"""execution-environment.yml: valid ansible-builder 3 schema, and it installs the
tarball that `make collection` writes, with the project's ansible-core.

Building the image needs a container engine, which CI does not have; the schema
is the one ansible-lint ships for these files."""

import json
import re
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml
from ansiblelint import schemas

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import build_collection  # noqa: E402


def schema(name):
    return json.loads((Path(schemas.__file__).parent / ("%s.json" % name)).read_text())


@pytest.fixture(scope="module")
def definition():
    return yaml.safe_load((ROOT / "execution-environment.yml").read_text())


def test_matches_the_ansible_builder_3_schema(definition):
    assert definition["version"] == 3
    jsonschema.validate(definition, schema("execution-environment"))


def test_the_schema_check_rejects_a_broken_definition(definition):
    broken = dict(definition, dependencies=dict(definition["dependencies"], galaxy=42))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema("execution-environment"))


def test_installs_the_tarball_make_collection_writes(definition):
    tarball = "portpool-portpool-%s.tar.gz" % build_collection.read_version()
    copied = {Path(item["src"]).name: item["dest"]
              for item in definition["additional_build_files"]}
    assert copied.get(tarball), "additional_build_files does not copy build/dist/%s" % tarball
    source = next(item["src"] for item in definition["additional_build_files"]
                  if Path(item["src"]).name == tarball)
    assert (ROOT / source).parent == build_collection.DIST
    wanted = [entry for entry in definition["dependencies"]["galaxy"]["collections"]
              if entry.get("type") == "file"]
    assert [entry["name"] for entry in wanted] == ["%s/%s" % (copied[tarball], tarball)]


def test_uses_the_projects_ansible_core(definition):
    pinned = re.search(r"^ansible-core==(\S+)$", (ROOT / "requirements.txt").read_text(), re.M)
    assert definition["dependencies"]["ansible_core"]["package_pip"] == (
        "ansible-core==%s" % pinned.group(1))


def test_the_generated_manifests_match_their_schemas(tmp_path):
    dest = tmp_path / "ansible_collections" / "portpool" / "portpool"
    build_collection.generate(dest)
    jsonschema.validate(yaml.safe_load((dest / "galaxy.yml").read_text()), schema("galaxy"))
    jsonschema.validate(yaml.safe_load((dest / "meta" / "runtime.yml").read_text()),
                        schema("meta-runtime"))
