"""Run the benchmarks: `python -m bench [probe facts audit report]` (all by default).

Each benchmark runs portpool and its baseline alternately in one run and prints
median ratios; they need root (namespaces, the SSH fleet).
"""

import importlib
import sys

BENCHMARKS = ("probe", "facts", "netns", "audit", "report", "tune")


def main(argv=None):
    names = list(argv if argv is not None else sys.argv[1:]) or list(BENCHMARKS)
    unknown = [name for name in names if name not in BENCHMARKS]
    if unknown:
        print("unknown benchmark(s): %s (choose from %s)" % (
            ", ".join(unknown), ", ".join(BENCHMARKS)), file=sys.stderr)
        return 2
    status = 0
    for name in names:
        print("== bench.%s" % name, flush=True)
        status |= importlib.import_module("bench.%s" % name).main() or 0
    return status


if __name__ == "__main__":
    sys.exit(main())
