"""Throughput of leakwatch and its peers on the same corpus bytes.

Everything a timed function needs (compiled rules, chunks, database paths) is prepared outside
it; each timed run goes over the whole input once. One warm-up round first: RE2 and hyperscan
build DFA states lazily, and DOMAIN.md §8 measured warm-up dominating inputs under ~1 MB.
"""
from __future__ import annotations

import itertools
import re

import pytest

from bench import peers
from bench.runner import SCAN_DONE_EXIT_CODES, cli_unavailable_reason, run_measured, scan_command

ROUNDS = 3
WARMUP = 1


def _count_all(fn, chunks) -> int:
    n = 0
    for c in chunks:
        for _ in fn(c):
            n += 1
    return n


@pytest.mark.engine("native")
def test_native_core(benchmark, bench_record, rule_set, chunks, corpus_bytes):
    from leakwatch._core import Scanner

    scanner = Scanner(rule_set.patterns)

    def run():
        return sum(len(scanner.scan(c).rule) for c in chunks)

    matches = benchmark.pedantic(run, rounds=ROUNDS, iterations=1, warmup_rounds=WARMUP)
    bench_record.ok("native", benchmark, len(corpus_bytes), matches=matches,
                    notes=f"{matches:,} raw matches; {scanner.n_shards} Set shard(s), block {scanner.block_size} B")


@pytest.mark.parametrize("workers", [pytest.param(1, marks=pytest.mark.engine("scan_w1")),
                                     pytest.param(2, marks=pytest.mark.engine("scan_w2"))])
def test_scan_paths(benchmark, bench_record, corpus, tmp_path, workers):
    key = f"scan_w{workers}"
    try:
        from leakwatch.pipeline import scan_paths
    except ImportError as e:
        bench_record.unavailable(key, f"leakwatch.pipeline.scan_paths not importable ({e})")
    path, manifest = corpus
    rounds = itertools.count()

    def setup():
        # A fresh database per round, and the previous one deleted: 4 rounds of findings from
        # 200 MiB would otherwise pile up on /tmp, and an existing db could change the work done.
        for old in tmp_path.glob("scan-*"):
            old.unlink()
        return ([str(path)], str(tmp_path / f"scan-{next(rounds)}.duckdb")), {"workers": workers}

    summary = benchmark.pedantic(scan_paths, setup=setup, rounds=ROUNDS, warmup_rounds=WARMUP)
    total = getattr(summary, "total_findings", None)
    if total is None:  # an older or newer summary shape: show what there is
        notes = f"summary: {str(summary)[:120]}"
    else:
        notes = (f"{total:,} findings, {getattr(summary, 'records', 0):,} records, "
                 f"{len(getattr(summary, 'problems', []))} input problems")
    bench_record.ok(key, benchmark, manifest["bytes"], notes=notes, findings=total)


@pytest.mark.parametrize("workers", [pytest.param(1, marks=pytest.mark.engine("cli_w1")),
                                     pytest.param(2, marks=pytest.mark.engine("cli_w2"))])
def test_scan_cli(benchmark, bench_record, corpus, tmp_path, workers):
    key = f"cli_w{workers}"
    reason = cli_unavailable_reason()
    if reason:
        bench_record.unavailable(key, reason)
    path, manifest = corpus
    rounds = itertools.count()
    last = {}

    def setup():
        for old in tmp_path.glob("cli-*"):
            old.unlink()
        return (scan_command(path, tmp_path / f"cli-{next(rounds)}.duckdb", workers),), {}

    def run(cmd):
        m = run_measured(cmd)
        if m.returncode not in SCAN_DONE_EXIT_CODES:
            raise RuntimeError(f"leakwatch scan exited {m.returncode}: {m.stderr_tail[-300:]}")
        last["m"] = m

    benchmark.pedantic(run, setup=setup, rounds=ROUNDS, warmup_rounds=WARMUP)
    m = last["m"]
    tree = f", process tree {m.tree_peak_mib:.0f} MiB" if m.tree_peak_mib else ""
    bench_record.ok(key, benchmark, manifest["bytes"], peak_rss_mib=m.maxrss_mib, tree_peak_mib=m.tree_peak_mib,
                    notes=f"wall incl. interpreter start; peak RSS {m.maxrss_mib:.0f} MiB{tree}")


@pytest.mark.engine("reference")
def test_reference_engine(benchmark, bench_record, rule_set, slice_1mib):
    from leakwatch._core import PatternError, ReferenceScanner, Scanner

    # The oracle compiles with the stdlib `re`; a rule using RE2-only syntax is left out (and
    # counted) rather than losing the row.
    patterns = list(rule_set.patterns)
    dropped = []
    while True:
        try:
            ref = ReferenceScanner(patterns)
            break
        except PatternError as e:
            dropped.append(rule_set.ids[rule_set.patterns.index(patterns[e.index])])
            del patterns[e.index]
    matches = benchmark.pedantic(lambda: len(ref.scan(slice_1mib).rule), rounds=ROUNDS, iterations=1,
                                 warmup_rounds=0)
    native = len(Scanner(patterns).scan(slice_1mib).rule)
    agree = "same matches as native" if native == matches else f"MISMATCH: {matches:,} vs native {native:,}"
    notes = f"{matches:,} matches, {agree}"
    if dropped:
        notes += f"; {len(dropped)} rules not valid stdlib re, left out: {', '.join(dropped)}"
    bench_record.ok("reference", benchmark, len(slice_1mib), notes=notes, matches=matches)


@pytest.mark.engine("google_re2")
def test_google_re2(benchmark, bench_record, rule_set, chunks, corpus_bytes):
    try:
        rx = peers.google_re2_compile(rule_set.patterns)
    except ImportError as e:
        bench_record.unavailable("google_re2", f"google-re2 not importable ({e})")
    matches = benchmark.pedantic(_count_all, args=(rx.finditer, chunks), rounds=ROUNDS, iterations=1,
                                 warmup_rounds=WARMUP)
    bench_record.ok("google_re2", benchmark, len(corpus_bytes), matches=matches,
                    notes=f"{matches:,} leftmost-first matches of one alternation; max_mem {peers.NATIVE_MAX_MEM >> 20} MiB")


@pytest.mark.engine("native_clean")
def test_native_core_clean(benchmark, bench_record, rule_set, clean_chunks, corpus_bytes):
    from leakwatch._core import Scanner

    scanner = Scanner(rule_set.patterns)
    nbytes = sum(c.nbytes for c in clean_chunks)
    matches = benchmark.pedantic(lambda: sum(len(scanner.scan(c).rule) for c in clean_chunks),
                                 rounds=ROUNDS, iterations=1, warmup_rounds=WARMUP)
    assert matches == 0  # the records with a match were taken out
    bench_record.ok("native_clean", benchmark, nbytes, matches=matches,
                    notes=f"{nbytes / 1e6:.1f} MB: the corpus less the records a rule matches "
                          f"({100 * (1 - nbytes / len(corpus_bytes)):.1f}% of its bytes); only the Set's DFA runs")


@pytest.mark.engine("google_re2_clean")
def test_google_re2_clean(benchmark, bench_record, rule_set, clean_chunks):
    try:
        rx = peers.google_re2_compile(rule_set.patterns)
    except ImportError as e:
        bench_record.unavailable("google_re2_clean", f"google-re2 not importable ({e})")
    nbytes = sum(c.nbytes for c in clean_chunks)
    matches = benchmark.pedantic(_count_all, args=(rx.finditer, clean_chunks), rounds=ROUNDS, iterations=1,
                                 warmup_rounds=WARMUP)
    bench_record.ok("google_re2_clean", benchmark, nbytes, matches=matches,
                    notes=f"{matches:,} matches (leftmost-first alternation may differ from the Set at the edges)")


@pytest.mark.engine("pyre2")
def test_pyre2(benchmark, bench_record, rule_set, chunks, corpus_bytes):
    try:
        rx, mod = peers.pyre2_compile(rule_set.patterns)
    except ImportError as e:
        bench_record.unavailable("pyre2", str(e))
    matches = benchmark.pedantic(_count_all, args=(rx.finditer, chunks), rounds=ROUNDS, iterations=1,
                                 warmup_rounds=WARMUP)
    bench_record.ok("pyre2", benchmark, len(corpus_bytes), matches=matches,
                    notes=f"{matches:,} matches; loaded beside google-re2 from its own .so (module name clash)")


@pytest.mark.engine("hyperscan")
def test_hyperscan(benchmark, bench_record, rule_set, chunks, corpus_bytes):
    try:
        import hyperscan  # noqa: F401
    except ImportError as e:
        bench_record.unavailable("hyperscan", f"hyperscan not importable ({e})")
    db, info = peers.hyperscan_database(rule_set.patterns)
    count = [0]

    def on_match(rule_id, start, end, flags, context):
        count[0] += 1  # returning None keeps the scan going

    def run():
        count[0] = 0
        for c in chunks:
            db.scan(c, match_event_handler=on_match)
        return count[0]

    matches = benchmark.pedantic(run, rounds=ROUNDS, iterations=1, warmup_rounds=WARMUP)
    notes = [f"{matches:,} matches (every end offset)", f"{info['compiled']}/{len(rule_set.patterns)} rules compiled"]
    if info["no_som"]:
        notes.append(f"{len(info['no_som'])} without SOM_LEFTMOST (too large with it): "
                     + ", ".join(rule_set.ids[i] for i in info["no_som"]))
    if info["rejected"]:
        notes.append(f"{len(info['rejected'])} REJECTED: "
                     + ", ".join(f"{rule_set.ids[i]} ({msg})" for i, msg in info["rejected"]))
    bench_record.ok("hyperscan", benchmark, len(corpus_bytes), matches=matches, notes="; ".join(notes),
                    rejected=[rule_set.ids[i] for i, _ in info["rejected"]],
                    no_som=[rule_set.ids[i] for i in info["no_som"]])


@pytest.mark.engine("presidio")
def test_presidio(benchmark, bench_record, rule_set, slice_1mib):
    try:
        import regex  # presidio's own regex engine: precheck each rule with it
        from presidio_analyzer import AnalyzerEngine  # noqa: F401
    except ImportError as e:
        bench_record.unavailable("presidio", f"presidio-analyzer not importable ({e})")
    keep, dropped = [], []
    for rid, p in zip(rule_set.ids, rule_set.patterns):
        try:
            regex.compile(peers.noncapturing(p), re.MULTILINE)
            keep.append((rid, p))
        except regex.error:
            dropped.append(rid)
    with peers.no_network():
        engine, entities = peers.presidio_analyzer([p for _, p in keep], [i for i, _ in keep])
        # A log record is presidio's unit of text here, as it would be in a log pipeline: one
        # analyze() per line, offsets relative to that line.
        lines = slice_1mib.decode("latin-1").split("\n")[:-1]

        def run():
            return sum(len(engine.analyze(text=line, language="en", entities=entities)) for line in lines)

        matches = benchmark.pedantic(run, rounds=ROUNDS, iterations=1, warmup_rounds=WARMUP)
    notes = f"{matches:,} results over {len(lines):,} lines; no NLP model, no network"
    if dropped:
        notes += f"; {len(dropped)} rules not valid for `regex`, left out: {', '.join(dropped)}"
    bench_record.ok("presidio", benchmark, len(slice_1mib), matches=matches, notes=notes)
