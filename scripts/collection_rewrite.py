"""Rewrite playbook-project sources into the portpool.portpool collection namespace.

Pure text transforms, each checked after the fact: a shape this file does not
recognise raises RewriteError instead of shipping a half-rewritten collection.
"""

from __future__ import annotations

import ast
import re

import yaml

NAMESPACE = "portpool.portpool"
COLLECTION_PACKAGE = "ansible_collections.portpool.portpool.plugins"
UTILS_PACKAGE = COLLECTION_PACKAGE + ".module_utils"
# Controller-only helpers: the folder ansible.utils and others use for them.
PLUGIN_UTILS_PACKAGE = COLLECTION_PACKAGE + ".plugin_utils"
MODULE_UTILS = "ansible.module_utils"
# The playbook project's action plugins import module_utils/ as this collection
# (collections/ links to it; ansible.cfg says why).
PROJECT_UTILS = "ansible_collections.portpool.project.plugins.module_utils"
# The three ways our sources name one of our module_utils: ansible.module_utils.X
# (library/), the project collection's (action_plugins/), and .X (module_utils/).
OURS = r"(?:%s|%s)?\." % (re.escape(MODULE_UTILS), re.escape(PROJECT_UTILS))
# The name of ours a `from ... import` line imports, whichever way it is named.
OUR_IMPORT = re.compile(r"^\s*from %s(portpool_\w+)[\w.]* import " % OURS, re.M)
# Keywords that take a role name, with or without the ansible.builtin prefix.
ROLE_INCLUDES = ("import_role", "include_role")


class RewriteError(Exception):
    """A source file has a shape the generator does not know how to rewrite."""


def fqcn(name):
    return "%s.%s" % (NAMESPACE, name)


# ---- Python -------------------------------------------------------------------


def rewrite_python(text, utils, where):
    """Point our imports at the collection; refuse a source that changes import paths.

    `utils` maps each of our module_utils names to its collection package (a plain
    set means all of them stay in plugins/module_utils).
    """
    if not isinstance(utils, dict):
        utils = dict.fromkeys(utils, UTILS_PACKAGE)
    text = _rewrite_imports(text, utils, where)
    problems = leftover_hacks(text) + _leftover_imports(text, utils)
    if problems:
        raise RewriteError("%s: %s" % (where, "; ".join(problems)))
    return text


def _rewrite_imports(text, utils, where):
    names = "|".join(re.escape(name) for name in sorted(utils)) or r"(?!)"
    submodule = re.compile(r"^(\s*)from %s(%s)(\.[\w.]+)? import " % (OURS, names), re.M)
    text = submodule.sub(lambda m: "%sfrom %s.%s%s import " % (
        m.group(1), utils[m.group(2)], m.group(2), m.group(3) or ""), text)

    def package(match):
        imported = [part.split(" as ")[0].strip() for part in match.group(2).split(",")]
        ours = [name for name in imported if name in utils]
        if not ours:
            return match.group(0)
        if len(ours) != len(imported):
            raise RewriteError("%s: mixes ansible-core and portpool module_utils in one "
                               "import: %s" % (where, match.group(0).strip()))
        packages = {utils[name] for name in ours}
        if len(packages) != 1:
            raise RewriteError("%s: one import of target and controller-only module_utils: "
                               "%s" % (where, match.group(0).strip()))
        return "%sfrom %s import %s" % (match.group(1), packages.pop(), match.group(2))

    text = re.sub(r"^(\s*)from %s import ([\w ,]+)$" % re.escape(MODULE_UTILS), package,
                  text, flags=re.M)
    if re.search(r"^\s*import %s\.(%s)\b" % (re.escape(MODULE_UTILS), names), text, re.M):
        raise RewriteError("%s: `import ansible.module_utils.<ours>` is not supported; "
                           "use `from ... import ...`" % where)
    return text


def _leftover_imports(text, utils):
    problems = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                problems.append("line %d still imports relatively (.%s)" % (node.lineno, module))
                continue
            parts = module.split(".")
            if module.startswith(PROJECT_UTILS) or (parts[:2] == ["ansible", "module_utils"] and (
                    (len(parts) > 2 and parts[2] in utils)
                    or (len(parts) == 2 and any(a.name in utils for a in node.names)))):
                problems.append("line %d still imports %s" % (node.lineno, module))
    return problems


def _is_path_list(node):
    """`<something>.__path__` or `sys.path`: the lists a path hack appends to."""
    return isinstance(node, ast.Attribute) and (
        node.attr == "__path__"
        or (node.attr == "path" and isinstance(node.value, ast.Name) and node.value.id == "sys"))


def leftover_hacks(text):
    """Every line that still reads or changes an import path list."""
    lines = sorted({node.lineno for node in ast.walk(ast.parse(text)) if _is_path_list(node)})
    return ["line %d changes the import path" % line for line in lines]


def rewrite_module_docs(text, modules):
    """Module documentation names our modules by FQCN, as validate-modules requires.

    M(x), O(x#module:..), RV(x#module:..) markup, `seealso: - module: x`, and the
    task keys of the EXAMPLES block.
    """
    names = "|".join(re.escape(name) for name in sorted(modules)) or r"(?!)"
    text = re.sub(r"\bM\((%s)\)" % names, lambda m: "M(%s)" % fqcn(m.group(1)), text)
    text = re.sub(r"\b(O|RV)\((%s)#module:" % names,
                  lambda m: "%s(%s#module:" % (m.group(1), fqcn(m.group(2))), text)
    text = re.sub(r"^(\s*-\s+module:\s+)(%s)[ \t]*$" % names,
                  lambda m: m.group(1) + fqcn(m.group(2)), text, flags=re.M)
    examples = re.search(r'^EXAMPLES = r?"""\n(.*?)^"""', text, re.M | re.S)
    if examples:
        block = re.sub(r"^(\s*(?:-\s+)?)(%s):(?=\s|$)" % names,
                       lambda m: m.group(1) + fqcn(m.group(2)) + ":", examples.group(1),
                       flags=re.M)
        text = text[:examples.start(1)] + block + text[examples.end(1):]
    return text


# ---- YAML (roles and playbooks) -------------------------------------------------


def rewrite_yaml(text, modules, roles, playbooks, where):
    """Our modules, roles and playbooks by FQCN, keeping comments and layout."""
    new = text
    for name in sorted(modules):
        new = re.sub(r"^(\s*(?:-\s+)?)%s:(?=\s|$)" % re.escape(name),
                     r"\g<1>%s:" % fqcn(name), new, flags=re.M)
    role_names = "|".join(re.escape(name) for name in sorted(roles)) or r"(?!)"
    new = re.sub(r"^(\s*(?:-\s+)?(?:name|role):\s+)([\"']?)(%s)\2[ \t]*$" % role_names,
                 lambda m: "%s%s%s%s" % (m.group(1), m.group(2), fqcn(m.group(3)), m.group(2)),
                 new, flags=re.M)
    new = re.sub(r"^(\s*-\s+)(%s)[ \t]*$" % role_names,
                 lambda m: m.group(1) + fqcn(m.group(2)), new, flags=re.M)
    book_names = "|".join(re.escape(name) for name in sorted(playbooks)) or r"(?!)"
    new = re.sub(r"^(\s*(?:-\s+)?(?:ansible\.builtin\.)?import_playbook:\s+)([\"']?)"
                 r"(?:\./)?(%s)\.ya?ml\2[ \t]*$" % book_names,
                 lambda m: m.group(1) + fqcn(m.group(3)), new, flags=re.M)
    expected = _expected(yaml.safe_load(text), modules, roles, playbooks)
    if yaml.safe_load(new) != expected:
        raise RewriteError("%s: the FQCN rewrite changed more or less than the module, role "
                           "and playbook names (an unusual YAML shape?)" % where)
    return new


def _expected(node, modules, roles, playbooks, in_list=False):
    """What the rewrite must produce, computed on the parsed data instead of the text."""
    if isinstance(node, list):
        return [_expected(item, modules, roles, playbooks, in_list=True) for item in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, original in node.items():
        new_key = fqcn(key) if in_list and key in modules else key
        short = key.rsplit(".", 1)[-1] if isinstance(key, str) else key
        value = original
        if short in ROLE_INCLUDES and isinstance(value, dict) and value.get("name") in roles:
            value = dict(value, name=fqcn(value["name"]))
        elif short == "import_playbook" and isinstance(value, str):
            stem = re.sub(r"^\./|\.ya?ml$", "", value)
            value = fqcn(stem) if stem in playbooks else value
        elif key == "roles" and isinstance(value, list):
            value = [_role_entry(entry, roles) for entry in value]
        out[new_key] = _expected(value, modules, roles, playbooks)
    return out


def _role_entry(entry, roles):
    if isinstance(entry, str):
        return fqcn(entry) if entry in roles else entry
    if isinstance(entry, dict):
        for key in ("role", "name"):
            if entry.get(key) in roles:
                return dict(entry, **{key: fqcn(entry[key])})
    return entry
