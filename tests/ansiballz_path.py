"""Import library/ modules outside Ansible, as their AnsiballZ payload does.

A module imports its helpers as `ansible.module_utils.portpool_*`; inside a
payload Ansible puts them there. Tests, the kernel matrix and the benchmarks run
the modules without a payload, so importing this file puts `module_utils/` on
that package's path: the project's only change to an import path, for them
alone (the action plugins use the collection loader, module_utils/README.md).
"""

from pathlib import Path

import ansible.module_utils

REPO = Path(__file__).resolve().parents[1]
MODULE_UTILS = str(REPO / "module_utils")
LIBRARY = str(REPO / "library")

if MODULE_UTILS not in ansible.module_utils.__path__:
    ansible.module_utils.__path__.append(MODULE_UTILS)
