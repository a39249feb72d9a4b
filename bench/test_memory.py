"""Peak memory of ``leakwatch scan`` (CLI, one worker) on the corpus and on a ~2 GB input.

Memory must stay flat as the input grows (the scan streams; target <= 400 MiB at both sizes).
The 2 GB input is the corpus concatenated ``LEAKWATCH_BENCH_BIG_X`` times (default 10);
``LEAKWATCH_BENCH_BIG_X=0`` skips that row on a short run. Each measurement is one run: the
number is a peak, not a rate, and a second 2 GB scan would add a minute for no information.
"""
from __future__ import annotations

import os

import pytest

from bench.corpus import ensure_big_corpus
from bench.runner import SCAN_DONE_EXIT_CODES, cli_unavailable_reason, run_measured, scan_command


def _measure(key, benchmark, bench_record, path, nbytes, tmp_path):
    reason = cli_unavailable_reason()
    if reason:
        bench_record.unavailable(key, reason)
    cmd = scan_command(path, tmp_path / f"{key}.duckdb", 1)
    box = {}

    def run():
        box["m"] = run_measured(cmd)

    benchmark.pedantic(run, rounds=1, iterations=1, warmup_rounds=0)
    m = box["m"]
    if m.returncode not in SCAN_DONE_EXIT_CODES:
        raise RuntimeError(f"leakwatch scan exited {m.returncode}: {m.stderr_tail[-300:]}")
    tree = f"; live process tree peaked at {m.tree_peak_mib:.0f} MiB (50 ms samples)" if m.tree_peak_mib else ""
    # The target is judged on the larger of the two views, so workers spawned even with
    # --workers 1 cannot hide their memory from the check.
    peak = max(m.maxrss_mib, m.tree_peak_mib or 0.0)
    bench_record.ok(key, benchmark, nbytes, peak_rss_mib=peak, maxrss_mib=m.maxrss_mib,
                    tree_peak_mib=m.tree_peak_mib,
                    notes=f"peak RSS {m.maxrss_mib:.0f} MiB (wait4 ru_maxrss){tree}; MB/s is wall incl. startup")


@pytest.mark.engine("rss_corpus")
def test_rss_corpus(benchmark, bench_record, corpus, tmp_path):
    path, manifest = corpus
    _measure("rss_corpus", benchmark, bench_record, path, manifest["bytes"], tmp_path)


@pytest.mark.engine("rss_big")
def test_rss_big(benchmark, bench_record, corpus, tmp_path):
    times = int(os.environ.get("LEAKWATCH_BENCH_BIG_X", 10))
    if times <= 0:
        bench_record.unavailable("rss_big", "skipped: LEAKWATCH_BENCH_BIG_X=0")
    reason = cli_unavailable_reason()
    if reason:  # checked before writing 2 GB to disk for nothing
        bench_record.unavailable("rss_big", reason)
    path, manifest = ensure_big_corpus(times)
    _measure("rss_big", benchmark, bench_record, path, manifest["bytes"], tmp_path)
