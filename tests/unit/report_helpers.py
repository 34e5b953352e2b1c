"""Helpers shared by the report tests: fixture paths and strict format parsers."""

import re
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "report"
SLICE_A = FIXTURES / "slice-a" / "results"
SLICE_B = FIXTURES / "slice-b" / "results"
RULES = FIXTURES / "slice-a" / "rules.json"
TEMPLATES = (Path(__file__).resolve().parents[2] / "roles" / "portpool_report" / "templates")
HOSTILE = '<script>document.title="pwned"</script>'

_METRIC = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)')
_UNESCAPE = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


def parse_prometheus(text):
    """Parse a textfile the way the text format is specified; raise on any bad line.

    Returns {(metric, frozenset(labels.items())): value} and {metric: type}.
    """
    samples = {}
    types = {}
    helped = set()
    assert text.endswith("\n"), "a textfile ends with a newline"
    for number, line in enumerate(text.split("\n")[:-1], 1):
        if line.startswith("# HELP "):
            name = line.split(" ")[2]
            assert name not in helped, "HELP twice for %s (line %d)" % (name, number)
            helped.add(name)
            continue
        if line.startswith("# TYPE "):
            _hash, _type, name, kind = line.split(" ")
            assert kind in ("gauge", "counter", "untyped"), line
            assert name not in types, "TYPE twice for %s" % name
            types[name] = kind
            continue
        assert not line.startswith("#"), "unexpected comment line %d: %r" % (number, line)
        match = _METRIC.match(line)
        assert match, "bad sample line %d: %r" % (number, line)
        name, labels_text, value = match.groups()
        assert name in types, "sample before its TYPE line: %r" % line
        labels = {}
        position = 0
        labels_text = labels_text or ""
        while position < len(labels_text):
            label = _LABEL.match(labels_text, position)
            assert label, "bad labels on line %d: %r" % (number, labels_text)
            labels[label.group(1)] = re.sub(r'\\[\\"n]', lambda m: _UNESCAPE[m.group(0)],
                                            label.group(2))
            position = label.end()
        float(value)
        key = (name, frozenset(labels.items()))
        assert key not in samples, "duplicate sample %r" % (key,)
        samples[key] = float(value)
    return samples, types
