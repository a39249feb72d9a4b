"""Per-record cost of the format readers (``leakwatch.sources.formats``) on the corpus' lines.

The scan pipeline parses every record that holds a candidate match (~22k per 20 MB of the
corpus), so a reader's µs per record multiplies straight into scan time. Each benchmark parses
up to ``SAMPLE`` lines of one format, taken in file order from the 20 MiB corpus
(``corpus-20240311-20.log``, generated on first use), one ``parse`` call per iteration: the
reported times (min / median / max) are µs **per record**, not per round.

Groups: EventLogFile rows per EVENT_TYPE (parsed with the header row their burst starts with),
then every other line by the format ``sniff`` gives it alone. ``json.loads`` on the JSON lines
is there for scale only: the C parser alone, no spans, no attributes.

Not rows of the conftest table (that one compares scan engines in MB/s); nothing here asserts
on a timing. The lead's targets: median <= 12 µs per EventLogFile row, <= 25 µs per typical
300-byte JSON line.
"""
from __future__ import annotations

import itertools
import json

import pytest

from bench.corpus import ensure_corpus
from leakwatch.sources import formats

CORPUS_MB = 20
SAMPLE = 2000  # lines per group: every variant of a format's lines, and a few ms per round
ROUNDS = 7
ELF_EVENTS = ("ApexCallout", "RestApi", "Login", "BulkApi", "ReportExport")
OTHER_FORMATS = ("apigw", "jsonl", "heroku", "mule", "combined")


@pytest.fixture(scope="module")
def groups() -> dict[str, tuple[bytes | None, list[bytes]]]:
    """group name → (CSV header or None, sample lines)."""
    path, _ = ensure_corpus(CORPUS_MB)
    out: dict[str, tuple[bytes | None, list[bytes]]] = {}
    header = None
    for line in path.read_bytes().split(b"\n"):
        if not line:
            continue
        if line.startswith(b'"EVENT_TYPE"'):
            header = line
            continue
        if line.startswith(b'"') and header is not None:
            name = "eventlogfile/" + line[1:line.index(b'"', 1)].decode("ascii", "replace")
        else:
            name = formats.sniff(line + b"\n")
        lines = out.setdefault(name, (header if name.startswith("eventlogfile/") else None, []))[1]
        if len(lines) < SAMPLE:
            lines.append(line)
    return out


def _per_record(benchmark, fn, lines: list[bytes]) -> None:
    """Time ``fn`` once per line (cycling), reported per call: µs per record."""
    nxt = itertools.cycle(lines).__next__
    benchmark.pedantic(lambda: fn(nxt()), rounds=ROUNDS, iterations=len(lines), warmup_rounds=1)
    benchmark.extra_info.update(records=len(lines), mean_line_bytes=round(sum(map(len, lines)) / len(lines)))
    if benchmark.stats is not None:  # None under --benchmark-disable
        benchmark.extra_info["us_per_record_median"] = round(benchmark.stats.stats.median * 1e6, 2)


@pytest.mark.parametrize("group", [f"eventlogfile/{e}" for e in ELF_EVENTS] + list(OTHER_FORMATS))
def test_parse_per_record(benchmark, groups, group):
    if group not in groups:
        pytest.skip(f"no {group} lines in the corpus")
    header, lines = groups[group]
    name = group.split("/", 1)[0]
    parser = formats.make_parser(name, header_line=header)
    # A reader that fails on the corpus would be timed on its error path: make that loud.
    problems = sum(parser.parse(ln).problem is not None for ln in lines)
    assert problems == 0, f"{problems} of {len(lines)} {group} lines have a parse problem"
    _per_record(benchmark, parser.parse, lines)


@pytest.mark.parametrize("group", ["apigw", "jsonl"])
def test_json_loads_floor(benchmark, groups, group):
    """stdlib ``json.loads`` (C) on the same lines: what values alone cost, for scale."""
    if group not in groups:
        pytest.skip(f"no {group} lines in the corpus")
    _per_record(benchmark, json.loads, groups[group][1])
