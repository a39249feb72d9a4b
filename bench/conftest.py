"""Fixtures shared by the benchmarks, and the side-by-side table printed at the end of the run.

Each benchmark test is tagged ``@pytest.mark.engine("<key>")`` and reports through the
``bench_record`` fixture: either ``ok(key, benchmark, nbytes, ...)`` after its timed run, or
``unavailable(key, reason)`` (which skips the test). A test that raises is recorded as an error
by ``pytest_runtest_makereport``. Nothing here asserts on timings: the "target" column says
pass/fail, the exit status does not (timings never gate anything; HOUSE_STYLE.md habit 9).
"""
from __future__ import annotations

import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pytest

from bench.corpus import bench_mb, ensure_corpus
from bench.patterns import RuleSet, load_patterns

RESULTS_DIR = Path(__file__).resolve().parent / "results"
CHUNK_SIZE = 8 << 20  # 8 MiB: what the pipeline hands the core per call
SLICE_SIZE = 1 << 20  # 1 MiB for the engines that would take minutes on the whole corpus

# Table rows, in print order: key, label.
ROWS: tuple[tuple[str, str], ...] = (
    ("native", "leakwatch native core (Scanner.scan, 8 MiB chunks)"),
    ("scan_w1", "leakwatch scan_paths -> DuckDB, 1 worker"),
    ("scan_w2", "leakwatch scan_paths -> DuckDB, 2 workers"),
    ("cli_w1", "leakwatch scan CLI (subprocess, incl. startup), 1 worker"),
    ("cli_w2", "leakwatch scan CLI (subprocess, incl. startup), 2 workers"),
    ("reference", "leakwatch ReferenceScanner (stdlib re, per line), 1 MiB"),
    ("google_re2", "google-re2 alternation finditer"),
    ("native_clean", "leakwatch native core, hit-free records only (RE2 DFA floor)"),
    ("google_re2_clean", "google-re2 alternation finditer, hit-free records only"),
    ("pyre2", "pyre2 alternation finditer"),
    ("hyperscan", "hyperscan database, all matches (callback)"),
    ("presidio", "presidio-analyzer, no_op NLP, per line, 1 MiB"),
    ("rss_corpus", "peak RSS, leakwatch scan CLI, 1 worker, corpus"),
    ("rss_big", "peak RSS, leakwatch scan CLI, 1 worker, 2 GB"),
    ("notify_drain", "outbox drain, 10,000 signed webhooks to a local verifying receiver (MB/s of payload)"),
)
_LABELS = dict(ROWS)
RSS_LIMIT_MIB = 400


def _targets(res: dict) -> dict[str, tuple[str, bool | None]]:
    """The lead's targets: row key -> (text, passed). ``None`` when the inputs are missing."""

    def mbps(k):
        r = res.get(k)
        return r.get("mb_per_s") if r and r.get("status") == "ok" else None

    def rss(k):
        r = res.get(k)
        return r.get("peak_rss_mib") if r and r.get("status") == "ok" else None

    native, w1, w2 = mbps("native"), mbps("scan_w1"), mbps("scan_w2")
    g, hs = mbps("google_re2"), mbps("hyperscan")
    out = {
        "native": (">= 300 MB/s", None if native is None else native >= 300),
        "scan_w1": (">= 250 MB/s", None if w1 is None else w1 >= 250),
        "scan_w2": (">= 1.7x 1 worker" + (f" (is {w2 / w1:.2f}x)" if w1 and w2 else ""),
                    None if not (w1 and w2) else w2 >= 1.7 * w1),
        "google_re2": ("native >= 1.5x this" + (f" (is {native / g:.2f}x)" if native and g else ""),
                       None if not (native and g) else native >= 1.5 * g),
        "hyperscan": ("native >= 3x this" + (f" (is {native / hs:.2f}x)" if native and hs else ""),
                      None if not (native and hs) else native >= 3 * hs),
    }
    clean, g_clean = mbps("native_clean"), mbps("google_re2_clean")
    if clean and g:
        # The engines share RE2's DFA: on records without a match the native core does nothing
        # but that DFA pass, so this is the most it could gain over the peer on this corpus.
        out["native_clean"] = (f"ceiling vs google-re2: {clean / g:.2f}x", None)
    if clean and g_clean:
        out["google_re2_clean"] = (f"native {clean / g_clean:.2f}x this", None)
    nd = res.get("notify_drain")
    if nd and nd.get("status") == "ok" and nd.get("notifications_per_s"):
        rate = nd["notifications_per_s"]
        out["notify_drain"] = (f">= 200 notifications/s (is {rate:.0f})", rate >= 200)
    for k in ("rss_corpus", "rss_big"):
        v = rss(k)
        out[k] = (f"<= {RSS_LIMIT_MIB} MiB" + (f" (is {v:.0f})" if v is not None else ""),
                  None if v is None else v <= RSS_LIMIT_MIB)
    return out


@dataclass
class Recorder:
    """What a benchmark test reports; kept on the pytest config so the summary hook sees it."""

    results: dict

    def ok(self, key: str, benchmark, nbytes: int, notes: str = "", **extra) -> None:
        """Record a finished pytest-benchmark run over ``nbytes`` input bytes."""
        benchmark.extra_info["bytes"] = nbytes
        benchmark.extra_info["engine"] = key
        benchmark.extra_info.update(extra)
        s = benchmark.stats.stats
        # Median of the rounds: on a shared 2-core box one slow round should not set the result,
        # and min would flatter whichever engine had the luckiest round.
        self.results[key] = {
            "status": "ok", "label": _LABELS[key], "bytes": nbytes, "rounds": s.rounds,
            "median_s": s.median, "min_s": s.min, "max_s": s.max,
            "mb_per_s": nbytes / s.median / 1e6, "notes": notes, **extra,
        }

    def unavailable(self, key: str, reason: str):
        """Mark a row "not available" and skip the test; the other rows still run."""
        self.results[key] = {"status": "n/a", "label": _LABELS[key], "notes": reason}
        pytest.skip(f"{key}: {reason}")


_RESULTS = pytest.StashKey[dict]()
_RULESET = pytest.StashKey[RuleSet]()
_CORPUS = pytest.StashKey[dict]()


def pytest_configure(config):
    config.addinivalue_line("markers", "engine(key): the table row a benchmark test reports to")
    config.stash[_RESULTS] = {}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    marker = item.get_closest_marker("engine")
    if marker and rep.failed:
        key = marker.args[0]
        msg = str(call.excinfo.value).strip().splitlines()[0][:160] if call.excinfo else rep.when
        item.config.stash[_RESULTS][key] = {"status": "error", "label": _LABELS[key],
                                            "notes": f"{call.excinfo.typename if call.excinfo else ''}: {msg}"}


# --- fixtures -----------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def bench_record(request) -> Recorder:
    return Recorder(request.config.stash[_RESULTS])


@pytest.fixture(scope="session")
def rule_set(request) -> RuleSet:
    rs = load_patterns()
    request.config.stash[_RULESET] = rs
    return rs


@pytest.fixture(scope="session")
def corpus(request) -> tuple[Path, dict]:
    """(path, manifest) of the cached corpus; generated on first use (~10 s per 200 MiB)."""
    path, manifest = ensure_corpus()
    request.config.stash[_CORPUS] = manifest
    return path, manifest


@pytest.fixture(scope="session")
def corpus_bytes(corpus) -> bytes:
    return corpus[0].read_bytes()


@pytest.fixture(scope="session")
def chunks(corpus_bytes) -> list[memoryview]:
    """Newline-aligned ~8 MiB memoryview slices of the one corpus buffer (no copies)."""
    return _chunked(corpus_bytes)


def _chunked(buf: bytes) -> list[memoryview]:
    mv = memoryview(buf)
    out, pos, n = [], 0, len(buf)
    while pos < n:
        end = min(pos + CHUNK_SIZE, n)
        if end < n:
            end = buf.index(b"\n", end - 1) + 1
        out.append(mv[pos:end])
        pos = end
    return out


@pytest.fixture(scope="session")
def clean_chunks(corpus_bytes, rule_set) -> list[memoryview]:
    """The corpus without the records in which any rule matches (~2.4% of lines), in the same
    chunks: what both engines do on the 97% of a log that holds nothing."""
    from leakwatch._core import Scanner

    scanner = Scanner(rule_set.patterns)
    hit = set()
    base = 0
    for c in _chunked(corpus_bytes):  # newline-aligned: records never straddle two chunks
        res = scanner.scan(c)
        hit.update((base + r) for r in res.record.tolist())
        base += res.n_records
    lines = corpus_bytes.split(b"\n")
    clean = b"\n".join(line for i, line in enumerate(lines) if i not in hit)
    return _chunked(clean)


@pytest.fixture(scope="session")
def slice_1mib(corpus_bytes) -> bytes:
    """The first newline-aligned MiB: ~4,000 lines, every format and planted kind represented."""
    return corpus_bytes[:corpus_bytes.index(b"\n", SLICE_SIZE - 1) + 1]


# --- the table ----------------------------------------------------------------------------------

def _machine() -> dict:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        flags = next((ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("flags")), "")
        mem_kib = int(next(ln for ln in Path("/proc/meminfo").read_text().splitlines()
                           if ln.startswith("MemTotal")).split()[1])
    except (OSError, StopIteration, ValueError):
        flags, mem_kib = "", 0
    versions = {}
    for dist in ("leakwatch", "google-re2", "pyre2", "hyperscan", "presidio-analyzer", "pytest-benchmark",
                 "duckdb", "numpy"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return {
        "cpu": cpu, "cores_usable": len(os.sched_getaffinity(0)), "avx2": " avx2" in flags,
        "mem_gib": round(mem_kib / 1048576, 1), "python": platform.python_version(),
        "platform": platform.platform(), "versions": versions,
    }


def _fmt_row(cells, widths):
    return " | ".join(str(c).ljust(w) for c, w in zip(cells, widths))


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    results = config.stash.get(_RESULTS, {})
    if not results:
        return
    native = results.get("native", {})
    native_mbps = native.get("mb_per_s") if native.get("status") == "ok" else None
    targets = _targets(results)
    header = ("engine", "MB/s", "x native", "target", "notes")
    rows = []
    for key, label in ROWS:
        r = results.get(key)
        if r is None:
            rows.append((label, "-", "-", targets.get(key, ("", None))[0], "not run (deselected)"))
            continue
        text, passed = targets.get(key, ("", None))
        mark = {True: "PASS ", False: "FAIL ", None: ""}[passed] if text else ""
        if r["status"] == "ok":
            mb = r["mb_per_s"]
            x = mb / native_mbps if native_mbps else None
            ratio = "-" if x is None else f"{x:.2f}" if x >= 0.01 else f"{x:.4f}"
            mbs = f"{mb:.2f}" if mb < 10 else f"{mb:.1f}" if mb < 100 else f"{mb:.0f}"
            rows.append((label, mbs, ratio, mark + text, r.get("notes", "")))
        else:
            rows.append((label, "-", "-", text, f"{'NOT AVAILABLE' if r['status'] == 'n/a' else 'ERROR'}: {r['notes']}"))
        r["target"] = text or None
        r["target_passed"] = passed
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(4)] + [0]
    tr = terminalreporter
    tr.write_sep("=", "leakwatch bench: same bytes, every engine")
    rs: RuleSet | None = config.stash.get(_RULESET, None)
    man = config.stash.get(_CORPUS, None)
    if man:
        tr.write_line(f"corpus: {man['bytes'] / 1e6:.1f} MB ({bench_mb()} MiB), {man['lines']:,} lines, "
                      f"{man['pii_lines']:,} with planted PII ({100 * man['pii_lines'] / man['lines']:.1f}%), "
                      f"seed {man['seed']}")
    if rs:
        tr.write_line(f"rules:  {rs.source}" + (f"; {len(rs.load_errors)} load errors" if rs.load_errors else ""))
        if not rs.shipped:
            tr.write_line("        !! NOT the shipped rules: these numbers do not describe leakwatch as released",
                          red=True, bold=True)
    m = _machine()
    tr.write_line(f"host:   {m['cpu']}, {m['cores_usable']} cores, {m['mem_gib']} GiB, Python {m['python']}")
    tr.write_line("MB = 10^6 bytes; MB/s = input bytes / median round time; RSS in MiB")
    tr.write_line(_fmt_row(header, widths))
    tr.write_line("-+-".join("-" * (w or 5) for w in widths))
    for row in rows:
        tr.write_line(_fmt_row(row, widths))
    RESULTS_DIR.mkdir(exist_ok=True)
    out = {
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": m,
        "corpus": man,
        "rules": None if rs is None else {"source": rs.source, "shipped": rs.shipped, "count": len(rs.patterns),
                                          "load_errors": rs.load_errors},
        "argv": sys.argv,
        "results": {k: results[k] for k, _ in ROWS if k in results},
    }
    path = RESULTS_DIR / "latest.json"
    path.write_text(json.dumps(out, indent=2, default=str) + "\n")
    tr.write_line(f"written: {path}")
