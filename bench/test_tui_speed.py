"""Speed of the incident console's findings side on 1,000,000 findings (issue 6).

Targets: console start to the first painted findings page < 1 s; next page and filter change
< 100 ms median; memory of the TUI process < 300 MB.

The database is generated, not scanned: one ``INSERT … SELECT`` from ``range()`` through the
real migrations (``Store.open``), with distributions shaped like the demo database a real scan
of ``demo-out/logs`` writes (rules and severities, formats and field paths, Salesforce objects,
~40% of records sent to an AI endpoint, most findings grouped into ~60 incidents). It is cached
as ``bench/.corpus/tui-findings-<version>-<n>.duckdb``; the version is a hash of the generator,
so editing it regenerates. ~15 s for a million rows on a 2-core box.

Measured with the real app (``leakwatch.tui.app.make_app``) under ``App.run_test()``:

* start: from calling ``make_app`` to the findings table holding its first page (the app's own
  start screen, then the Findings screen pushed the way a user would get there);
* next page: ``pagedown`` until the table shows the next page (median of rounds, one warm-up);
* filter change: setting a filter-bar value until the table shows the filtered first page (and
  separately, until the count "of N" is shown, which runs in its own worker);
* memory: peak RSS (``ru_maxrss``) of a fresh subprocess that opens the console on the database,
  shows the findings, pages and filters, then exits.

Like the other rows, nothing here passes or fails on a timing: the table printed at the end says
whether each target is met, and ``bench/results/tui_speed.json`` keeps the numbers.
``LEAKWATCH_BENCH_TUI_ROWS`` changes the size (default 1,000,000) and
``LEAKWATCH_BENCH_TUI_ROUNDS`` the rounds per measurement (default 15).
"""
from __future__ import annotations

import asyncio
import hashlib
import inspect
import json
import os
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

N_ROWS = int(os.environ.get("LEAKWATCH_BENCH_TUI_ROWS", "1000000"))
ROUNDS = int(os.environ.get("LEAKWATCH_BENCH_TUI_ROUNDS", "15"))
CORPUS_DIR = Path(__file__).resolve().parent / ".corpus"
RESULTS = Path(__file__).resolve().parent / "results" / "tui_speed.json"
SIZE = (120, 40)

TARGETS = {"start_ms": 1000.0, "next_page_ms": 100.0, "filter_ms": 100.0, "rss_mib": 300.0}

# -- the generated database ------------------------------------------------------------------------

# (rule_id, entity, severity, rank, base confidence, mask style, weight in %)
_RULES = (
    ("email", "EMAIL_ADDRESS", "medium", 2, 0.75, "email", 26),
    ("ipv4_public", "IP_ADDRESS", "low", 1, 0.6, "ip", 15),
    ("sf_record_id", "SALESFORCE_RECORD_ID", "low", 1, 0.45, "sfid", 12),
    ("person_name", "PERSON_NAME", "medium", 2, 0.5, "name", 10),
    ("phone_e164", "PHONE_NUMBER", "medium", 2, 0.7, "phone", 8),
    ("date_of_birth", "DATE_OF_BIRTH", "medium", 2, 0.55, "date", 4),
    ("jwt", "JWT", "high", 3, 0.85, "secret", 4),
    ("password", "PASSWORD", "high", 3, 0.7, "password", 3),
    ("payment_card", "CREDIT_CARD", "high", 3, 0.8, "card", 3),
    ("bearer_token", "BEARER_TOKEN", "high", 3, 0.8, "secret", 3),
    ("iban", "IBAN_CODE", "high", 3, 0.8, "iban", 2),
    ("us_ssn", "US_SSN", "high", 3, 0.6, "national", 2),
    ("street_address", "STREET_ADDRESS", "medium", 2, 0.5, "address", 2),
    ("openai_api_key", "OPENAI_API_KEY", "critical", 4, 0.95, "openai", 2),
    ("anthropic_api_key", "ANTHROPIC_API_KEY", "critical", 4, 0.95, "anthropic", 1),
    ("aws_access_key_id", "AWS_ACCESS_KEY_ID", "critical", 4, 0.9, "aws", 1),
    ("sf_session_id", "SALESFORCE_SESSION_ID", "critical", 4, 0.9, "session", 1),
    ("uk_nino", "UK_NINO", "high", 3, 0.6, "national", 1),
)
assert sum(r[-1] for r in _RULES) == 100

# (path template, format, field paths, weight): 48 files in all.
_FILES = (
    ("logs/EventLogFile_ApexCallout_2024-03-{d:02d}.csv", "eventlogfile", ("URL", "EXCEPTION_MESSAGE", "CLIENT_IP"), 8),
    ("logs/EventLogFile_RestApi_2024-03-{d:02d}.csv", "eventlogfile", ("URI", "EXCEPTION_MESSAGE", "CLIENT_IP"), 8),
    ("logs/mule-app-orders-api.log.{d}.gz", "mule", ("message.customer_email", "message.phone", "message.user",
                                                   "message.Authorization"), 8),
    ("logs/apigw-prod-{d:02d}.jsonl", "apigw", ("ip", "email", "contact_email", "anthropic_api_key"), 8),
    ("logs/heroku-router-{d:02d}.log", "heroku", ("fwd", "query.email", "query.customer_email"), 8),
    ("logs/llm-proxy-{d:02d}.jsonl", "jsonl", ("body.messages[1].content", "body.messages[0].content", "user.email",
                                              "headers.authorization"), 8),
)
# (vendor, host, region, jurisdiction, residency violation)
_DESTS = (
    ("OpenAI", "api.openai.com", "us", "US", True),
    ("OpenAI", "eu.api.openai.com", "eu", "EU", False),
    ("Microsoft (Azure OpenAI)", "acme.openai.azure.com", None, "unknown", True),
    ("Anthropic", "api.anthropic.com", "us", "US", True),
    ("Amazon Web Services (Bedrock)", "bedrock-runtime.eu-central-1.amazonaws.com", "eu-central-1", "EU", False),
    ("Google (Gemini API)", "generativelanguage.googleapis.com", None, "US", True),
    ("Google Cloud (Vertex AI)", "europe-west4-aiplatform.googleapis.com", "europe-west4", "EU", False),
    ("Mistral AI", "api.mistral.ai", "eu", "EU", False),
    ("Groq", "api.groq.com", "us", "US", True),
    ("Cohere", "api.cohere.com", None, "unknown", True),
)
# entity -> (sf_object, sf_field) choices; SALESFORCE_RECORD_ID gets an object and no field.
_SF = {
    "EMAIL_ADDRESS": (("Contact", "Email"), ("Lead", "Email"), ("User", "Username")),
    "PHONE_NUMBER": (("Contact", "Phone"), ("Contact", "MobilePhone"), ("Account", "Phone")),
    "PERSON_NAME": (("Contact", "Name"), ("Lead", "Name")),
    "DATE_OF_BIRTH": (("Contact", "Birthdate"),),
    "STREET_ADDRESS": (("Account", "ShippingStreet"), ("Contact", "MailingStreet")),
    "SALESFORCE_RECORD_ID": (("Account", None), ("Contact", None), ("Lead", None), ("Case", None)),
}
N_INCIDENTS = 60


def _sql_list(values) -> str:
    def lit(v):
        if v is None:
            return "NULL"
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        return "'" + str(v).replace("'", "''") + "'"
    return "[" + ", ".join(lit(v) for v in values) + "]"


def _generator_sql(n: int) -> list[str]:
    """The statements that fill an empty, migrated database with ``n`` findings."""
    weighted = [i for i, r in enumerate(_RULES) for _ in range(r[-1])]  # 100 slots
    files = [(t.format(d=d), fmt, fps) for t, fmt, fps, k in _FILES for d in range(1, k + 1)]
    col = lambda j: _sql_list([r[j] for r in _RULES])
    # Per rule: its Salesforce choices (object list, field list) padded to 4 by repeating.
    sf_obj, sf_fld = [], []
    for r in _RULES:
        ch = _SF.get(r[1], ())
        sf_obj.append([ch[k % len(ch)][0] for k in range(4)] if ch else [None] * 4)
        sf_fld.append([ch[k % len(ch)][1] for k in range(4)] if ch else [None] * 4)
    path_list = _sql_list([f[0] for f in files])
    fmt_list = _sql_list([f[1] for f in files])
    fp_list = "[" + ", ".join(_sql_list([f[2][k % len(f[2])] for k in range(4)]) for f in files) + "]"
    d = {k: _sql_list([x[j] for x in _DESTS]) for j, k in enumerate(("vendor", "host", "region", "juris", "viol"))}
    sfo = "[" + ", ".join(_sql_list(x) for x in sf_obj) + "]"
    sff = "[" + ", ".join(_sql_list(x) for x in sf_fld) + "]"
    nf = len(files)
    # hash(i, salt) gives independent, deterministic "random" numbers per row; 1-based lists.
    return [
        f"""
        INSERT INTO scans (scan_id, started_at, finished_at, status, argv, rules_hash, workers,
                           n_files, n_bytes, n_records, n_findings, version)
        SELECT s, TIMESTAMPTZ '2024-03-11 00:00:00+00' + INTERVAL (s * 7) DAY,
               TIMESTAMPTZ '2024-03-11 00:30:00+00' + INTERVAL (s * 7) DAY, 'ok',
               'leakwatch scan logs/', 'bench', 2, {nf}, 0, 0, 0, 'bench'
        FROM range(1, 4) t(s);
        INSERT INTO sources (source_id, scan_id, path, size, status, n_records, n_findings, format)
        SELECT k, 1 + (k - 1) % 3, {path_list}[k], 100000000, 'ok', 0, 0, {fmt_list}[k]
        FROM range(1, {nf + 1}) t(k);
        """,
        f"""
        INSERT INTO findings (finding_id, scan_id, source_id, source_path, line, start_byte, end_byte,
            rule_id, entity, confidence, score_base, score_validator, score_context, severity,
            severity_rank, field, masked, value_hash, created_at, field_path, ts, format, detector,
            dest_host, dest_vendor, dest_region, dest_jurisdiction, residency_violation,
            sf_object, sf_field)
        WITH r AS (
            SELECT i,
                   {_sql_list([w + 1 for w in weighted])}[1 + (hash(i, 1) >> 1)::BIGINT % 100] AS ri,
                   1 + (hash(i, 2) >> 1)::BIGINT % {nf} AS fi,
                   (hash(i, 3) >> 1)::BIGINT AS h3, (hash(i, 4) >> 1)::BIGINT AS h4,
                   (hash(i, 5) >> 1)::BIGINT AS h5, (hash(i, 6) >> 1)::BIGINT AS h6
            FROM range({n}) t(i)
        ), v AS (
            SELECT *,
                   {col(1)}[ri] AS entity,
                   {col(5)}[ri] AS style,
                   {col(4)}[ri] AS base,
                   CASE WHEN h4 % 10 < 4 THEN 1 + (h5 % {len(_DESTS)}) END AS di,
                   CASE WHEN h6 % 100 < 15 THEN 0.2 WHEN h6 % 100 < 20 THEN -0.2 ELSE 0.0 END AS s_val,
                   CASE WHEN h6 % 7 < 3 THEN 0.15 ELSE 0.0 END AS s_ctx,
                   chr(97 + (h3 % 26)::INT) AS c1, chr(97 + ((h3 >> 8) % 26)::INT) AS c2,
                   lpad(((h3 >> 16) % 10000)::VARCHAR, 4, '0') AS d4
            FROM r
        )
        SELECT i + 1, 1 + (fi - 1) % 3, fi, {path_list}[fi], 1 + i // {nf} + (h3 % 3),
               (h4 >> 20) % 400, (h4 >> 20) % 400 + 8 + (h5 >> 20) % 30,
               {col(0)}[ri], entity, greatest(0.0, least(1.0, base + s_val + s_ctx)), base, s_val, s_ctx,
               {col(2)}[ri], {col(3)}[ri],
               lower(replace(({fp_list}[fi])[1 + (h5 >> 8) % 4], '.', '')),
               CASE style
                   WHEN 'email' THEN c1 || '***@' || c2 || repeat('*', 4 + ((h3 >> 24) % 8)::INT)
                                     || ['.com', '.org', '.de', '.fr', '.co.uk'][1 + (h3 >> 32) % 5]
                   WHEN 'ip' THEN (1 + (h3 % 223))::VARCHAR || '.x.x.x'
                   WHEN 'sfid' THEN ['001', '003', '00Q', '500'][1 + h3 % 4] || repeat('*', 12)
                   WHEN 'name' THEN upper(c1) || '***'
                   WHEN 'phone' THEN '+' || repeat('*', 9) || right(d4, 2)
                   WHEN 'date' THEN '****-**-**'
                   WHEN 'secret' THEN 'eyJ…[' || (120 + h3 % 300)::VARCHAR || ']'
                   WHEN 'password' THEN '********'
                   WHEN 'card' THEN repeat('*', 12) || d4
                   WHEN 'iban' THEN ['DE', 'FR', 'GB', 'NL'][1 + h3 % 4] || repeat('*', 16) || d4
                   WHEN 'national' THEN repeat('*', 7) || right(d4, 2)
                   WHEN 'address' THEN '** ****** ******'
                   WHEN 'openai' THEN 'sk-proj-…[164]'
                   WHEN 'anthropic' THEN 'sk-ant-api03-…[108]'
                   WHEN 'aws' THEN 'AKIA…[20]'
                   ELSE '00D…[' || (90 + h3 % 20)::VARCHAR || ']'
               END,
               sha256(ri::VARCHAR || ':' || ((h3 >> 40) % 40000)::VARCHAR),
               TIMESTAMPTZ '2024-03-11 00:00:00+00' + to_seconds(i * 1.8 + 120),
               ({fp_list}[fi])[1 + (h5 >> 8) % 4],
               CASE WHEN h6 % 20 = 0 THEN NULL
                    ELSE TIMESTAMPTZ '2024-03-11 00:00:00+00' + to_seconds(i * 1.8 + (h6 >> 8) % 60) END,
               {fmt_list}[fi], 'regex',
               {d['host']}[di], {d['vendor']}[di], {d['region']}[di], {d['juris']}[di], {d['viol']}[di],
               CASE WHEN h6 % 5 < 2 OR entity = 'SALESFORCE_RECORD_ID' THEN {sfo}[ri][1 + (h5 >> 16) % 4] END,
               CASE WHEN h6 % 5 < 2 OR entity = 'SALESFORCE_RECORD_ID' THEN {sff}[ri][1 + (h5 >> 16) % 4] END
        FROM v
        ORDER BY i;
        """,
        f"""
        INSERT INTO incidents (incident_id, title, origin, status, severity, severity_rank, opened_at, updated_at)
        SELECT k, 'Bench incident ' || k::VARCHAR, 'auto',
               ['detected', 'triaged', 'contained', 'notified'][1 + k % 4],
               ['medium', 'high', 'critical'][1 + k % 3], 2 + k % 3,
               TIMESTAMPTZ '2024-03-12 00:00:00+00', TIMESTAMPTZ '2024-03-12 00:00:00+00'
        FROM range(1, {N_INCIDENTS + 1}) t(k);
        INSERT INTO incident_findings (finding_id, incident_id)
        SELECT finding_id, 1 + (hash(finding_id, 7) >> 1)::BIGINT % {N_INCIDENTS}
        FROM findings WHERE (hash(finding_id, 8) >> 1)::BIGINT % 10 < 6;
        SELECT setval('findings_seq', {n + 1});
        SELECT setval('scans_seq', 4);
        SELECT setval('sources_seq', {nf + 1});
        SELECT setval('incidents_seq', {N_INCIDENTS + 1});
        """,
    ]


def generator_version(n: int) -> str:
    """A hash of the generator (this module's generation code and its tables) and the schema."""
    from leakwatch.store.migrations import MIGRATIONS

    src = inspect.getsource(_generator_sql) + repr((_RULES, _FILES, _DESTS, _SF, N_INCIDENTS))
    src += ",".join(m.__name__ for m in MIGRATIONS)
    return hashlib.sha256(f"{src}|{n}".encode()).hexdigest()[:12]


def ensure_tui_db(n: int = N_ROWS) -> Path:
    """The cached generated database with ``n`` findings; built on first use."""
    from leakwatch.store import Store

    CORPUS_DIR.mkdir(exist_ok=True)
    path = CORPUS_DIR / f"tui-findings-{generator_version(n)}-{n}.duckdb"
    done = path.with_suffix(".done")
    if path.exists() and done.exists():
        return path
    for p in (path, Path(f"{path}.wal"), Path(f"{path}.key"), done):
        p.unlink(missing_ok=True)
    with Store.open(path, memory_limit="2GB") as store:
        for stmt in _generator_sql(n):
            store.con.execute(stmt)
        store.checkpoint()
        got = store.con.execute("SELECT count(*) FROM findings").fetchone()[0]
    if got != n:
        raise RuntimeError(f"{path}: generated {got} findings, expected {n}")
    done.write_text(json.dumps({"rows": n, "version": generator_version(n)}) + "\n")
    return path


# -- measuring -----------------------------------------------------------------------------------

def _quantiles(values: list[float]) -> dict:
    v = sorted(values)
    p95 = v[min(len(v) - 1, max(0, round(0.95 * len(v)) - 1))]
    return {"rounds": len(v), "median_ms": statistics.median(v), "p95_ms": p95, "min_ms": v[0], "max_ms": v[-1]}


async def _until(cond, what: str, timeout: float = 30.0) -> None:
    """Let the app run until ``cond()`` holds (polled every 2 ms)."""
    deadline = time.perf_counter() + timeout
    while not cond():
        if time.perf_counter() > deadline:
            raise RuntimeError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(0.002)


async def _painted_after(screen, action, what: str) -> float:
    """Run ``action()`` and return the ms until the findings screen has drawn the page it
    causes (``pages_painted``: set after the refresh that follows the table update)."""
    n = screen.pages_painted
    t = time.perf_counter()
    action()
    await _until(lambda: screen.pages_painted > n, what)
    return (screen.painted_at - t) * 1000


async def _settled(app) -> None:
    """Wait for the workers running now; an exclusive worker replaced by a newer one is
    cancelled, which is not an error here."""
    from textual.worker import WorkerCancelled

    for _ in range(5):
        try:
            await app.workers.wait_for_complete()
            return
        except WorkerCancelled:
            continue


async def measure_console(db: Path, rounds: int = ROUNDS, on_phase=lambda name: None) -> dict:
    """Start, next page, filter change and count latencies of the real app on ``db``.

    Keys go in the way a terminal sends them (the driver's message queue, as Textual's pilot
    does, without the pilot's idle waits, which would add ~40 ms to every figure)."""
    from textual import events
    from textual.widgets import Select

    from leakwatch.config import load_config
    from leakwatch.tui.app import make_app
    from leakwatch.tui.data import FindingFilter
    from leakwatch.tui.screens.findings import FindingsScreen
    from leakwatch.tui.widgets.findings_table import FindingsTable

    out: dict = {}
    config = load_config(None, env={})
    t0 = time.perf_counter()
    app = make_app(db, config=config, size=SIZE)
    async with app.run_test() as pilot:
        on_phase("start")
        # The responder's first key: F for the findings, while the incidents screen loads.
        t_push = time.perf_counter()
        app.open_findings(None)
        await _until(lambda: isinstance(app.screen, FindingsScreen) and app.screen.pages_painted >= 1,
                     "the first findings page")
        screen = app.screen
        out["start_ms"] = (screen.painted_at - t0) * 1000
        out["push_to_page_ms"] = (screen.painted_at - t_push) * 1000
        out["page_rows"] = screen.query_one(FindingsTable).row_count
        await _until(lambda: screen.total is not None, "the count")
        out["total"] = screen.total
        await _settled(app)  # the incidents list, the choices, the read-ahead
        t = time.perf_counter()
        app.pop_screen()
        await pilot.pause()
        app.open_findings(None)
        await _until(lambda: isinstance(app.screen, FindingsScreen) and app.screen.pages_painted >= 1,
                     "the findings page again")
        out["reopen_ms"] = (app.screen.painted_at - t) * 1000
        screen = app.screen
        await _settled(app)

        def key(name):
            return lambda: app._driver.send_message(events.Key(name, None))

        on_phase("paging")
        # Next page as a reader pages: pagedown, read (the read-ahead finishes), pagedown …
        lat = []
        for _ in range(rounds):
            lat.append(await _painted_after(screen, key("pagedown"), "the next page"))
            await _settled(app)
        out["next_page"] = _quantiles(lat)
        # … and with the key held down: no pause, so each page is read when asked for.
        lat = []
        for _ in range(rounds):
            lat.append(await _painted_after(screen, key("pagedown"), "the next page (held)"))
        out["next_page_held"] = _quantiles(lat)
        await _settled(app)
        out["deep_page_index"] = screen.first_index

        on_phase("filters")
        # Filter change: a dropdown value as the responder picks it, each round a new filter.
        bar = screen.query_one("#findings-filters")
        entities = [v for _label, v in bar.options_of("flt-entity") if v is not Select.NULL]
        dests = [v for _label, v in bar.options_of("flt-dest") if v not in ("", Select.NULL)]
        plans = [("flt-entity", e) for e in entities] + [("flt-dest", d) for d in dests]
        page_lat, count_lat = [], []
        for wid, value in plans[:rounds]:
            sel = bar.query_one(f"#{wid}", Select)
            t = time.perf_counter()
            page_lat.append(await _painted_after(screen, lambda s=sel, v=value: setattr(s, "value", v),
                                                  "the filtered page"))
            await _until(lambda: screen.total is not None, "the filtered count")
            count_lat.append((time.perf_counter() - t) * 1000)
            await _settled(app)
            await _painted_after(screen, lambda s=sel: setattr(s, "value", Select.NULL), "the unfiltered page")
            await _settled(app)
        out["filter_change"] = _quantiles(page_lat)
        out["filter_count"] = _quantiles(count_lat)

        on_phase("search")
        # Search: the masked-value substring search (ILIKE over masked and field_path).
        lat = []
        for text in ["sk-proj", "@e", ".de", "+*", "messages", "eyJ", "AKIA", "x.x.x", "00D", "co.uk", "****",
                     "body", "url", "001", "DE**", "@z"][:rounds]:
            lat.append(await _painted_after(screen, lambda q=text: screen.set_filter(FindingFilter(search=q)),
                                            "the search page"))
            await _settled(app)
        out["search"] = _quantiles(lat)
        screen.set_filter(FindingFilter())
        await _settled(app)
    return out


_RSS_SCRIPT = textwrap.dedent("""
    import asyncio, json, sys, threading, time
    from pathlib import Path
    sys.path.insert(0, sys.argv[2])
    import psutil
    from bench.test_tui_speed import measure_console
    before = next(int(ln.split()[1]) for ln in open("/proc/self/status") if ln.startswith("VmHWM:"))
    proc, phase, peaks = psutil.Process(), ["open"], {}

    def sample():  # the peak RSS of each phase, sampled every 10 ms
        while True:
            rss = proc.memory_info().rss
            peaks[phase[0]] = max(peaks.get(phase[0], 0), rss)
            time.sleep(0.01)

    threading.Thread(target=sample, daemon=True).start()
    res = asyncio.run(measure_console(Path(sys.argv[1]), rounds=5, on_phase=lambda p: phase.__setitem__(0, p)))
    # VmHWM, the high-water mark of this process's own memory: ru_maxrss also counts the RSS of
    # the parent this process was spawned from (Linux carries it over exec), and the bench's
    # pytest process holds the 200 MB corpus by now.
    peak = next(int(ln.split()[1]) for ln in open("/proc/self/status") if ln.startswith("VmHWM:"))
    print(json.dumps({"peak_rss_kib": peak, "startup_rss_kib": before, "total": res["total"],
                      "phase_peaks_mib": {k: round(v / 2**20) for k, v in peaks.items()}}))
""")


def measure_rss(db: Path) -> dict:
    """Peak RSS of a fresh process that runs the console on ``db`` headless: open the findings,
    page 6 times, change filters, search (the same steps as :func:`measure_console`, 5 rounds)."""
    root = Path(__file__).resolve().parent.parent
    p = subprocess.run([sys.executable, "-c", _RSS_SCRIPT, str(db), str(root)], capture_output=True, text=True,
                       timeout=600, cwd=root, check=False)
    if p.returncode != 0:
        raise RuntimeError(f"the memory run failed: {p.stderr[-800:]}")
    got = json.loads(p.stdout.strip().splitlines()[-1])
    return {"peak_rss_mib": got["peak_rss_kib"] / 1024, "python_start_rss_mib": got["startup_rss_kib"] / 1024,
            "phase_peaks_mib": got["phase_peaks_mib"]}


# -- the report ------------------------------------------------------------------------------------

class TuiSpeedRecorder:
    """Collects the figures and prints the table at the end of the run (the Recorder pattern of
    ``bench/test_watch_latency.py``)."""

    def __init__(self):
        self.result: dict = {}

    def pytest_terminal_summary(self, terminalreporter, exitstatus, config):
        r = self.result
        if not r:
            return
        tr = terminalreporter
        tr.write_sep("=", "leakwatch bench: console findings side (1M findings)")
        if r.get("notes"):
            tr.write_line(r["notes"])
        rows = []

        def row(label, value, target_key=None, unit="ms"):
            if value is None:
                rows.append((label, "-", "", ""))
                return
            target = TARGETS.get(target_key) if target_key else None
            mark = "" if target is None else (f"{'PASS' if value < target else 'FAIL'} < {target:g} {unit}")
            rows.append((label, f"{value:.0f} {unit}" if value >= 10 else f"{value:.1f} {unit}", mark, ""))

        c = r.get("console", {})
        row("console start -> first findings page painted", c.get("start_ms"), "start_ms")
        row("  of which: Findings pushed -> page painted", c.get("push_to_page_ms"))
        row("Findings opened again (warm) -> page painted", c.get("reopen_ms"))
        for key, label, tk in (("next_page", "next page (pagedown), median", "next_page_ms"),
                               ("next_page_held", "next page, key held (no read-ahead), median", "next_page_ms"),
                               ("filter_change", "filter change -> page painted, median", "filter_ms"),
                               ("filter_count", "filter change -> count shown, median", None),
                               ("search", "search -> page painted, median", None)):
            q = c.get(key)
            row(label, q and q["median_ms"], tk)
            if q:
                rows[-1] = rows[-1][:3] + (f"p95 {q['p95_ms']:.0f} ms, {q['rounds']} rounds",)
        inc = r.get("incidents")
        row("incident list loaded (every incident's facts and nearest deadline), median", inc and inc["median_ms"])
        if inc:
            rows[-1] = rows[-1][:3] + (f"{inc['incidents']} incidents, {inc['rounds']} rounds",)
        m = r.get("memory", {})
        row("peak RSS of the console process", m.get("peak_rss_mib"), "rss_mib", unit="MiB")
        if m.get("phase_peaks_mib"):
            rows[-1] = rows[-1][:3] + ("by phase: " + ", ".join(f"{k} {v}" for k, v in m["phase_peaks_mib"].items()),)
        header = ("row", "value", "target", "notes")
        widths = [max(len(str(x[i])) for x in rows + [header]) for i in range(4)]
        tr.write_line(" | ".join(str(h).ljust(w) for h, w in zip(header, widths)))
        tr.write_line("-+-".join("-" * w for w in widths))
        for x in rows:
            tr.write_line(" | ".join(str(v).ljust(w) for v, w in zip(x, widths)))
        RESULTS.parent.mkdir(exist_ok=True)
        out = {"written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "argv": sys.argv,
               "targets": TARGETS, "tui_speed": r}
        RESULTS.write_text(json.dumps(out, indent=2, default=str) + "\n")
        tr.write_line(f"written: {RESULTS}")


@pytest.fixture(scope="session")
def tui_record(request) -> TuiSpeedRecorder:
    rec = TuiSpeedRecorder()
    request.config.pluginmanager.register(rec, "leakwatch-tui-speed")
    return rec


@pytest.fixture(scope="session")
def tui_db(tmp_path_factory) -> Path:
    """A private copy of the cached database (the console opens it read-write)."""
    import shutil

    src = ensure_tui_db(N_ROWS)
    dst = tmp_path_factory.mktemp("tui-bench") / src.name
    shutil.copyfile(src, dst)
    shutil.copyfile(f"{src}.key", f"{dst}.key")
    return dst


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "?"


def test_console_speed(benchmark, tui_record, tui_db):
    """Start, paging, filtering and search of the real console on 1M findings (one benchmark
    round: the whole session; its figures are in extra_info and the table)."""
    res = benchmark.pedantic(lambda: asyncio.run(measure_console(tui_db)), rounds=1, iterations=1)
    assert res["total"] == N_ROWS
    assert res["page_rows"] == SIZE[1] - 6  # one page: the rows that fit, never all of them
    benchmark.extra_info.update({k: (v["median_ms"] if isinstance(v, dict) else v) for k, v in res.items()})
    tui_record.result["console"] = res
    tui_record.result["notes"] = (f"{N_ROWS:,} generated findings, terminal {SIZE[0]}x{SIZE[1]} headless "
                                  f"(App.run_test), {len(os.sched_getaffinity(0))} cores ({_cpu()})")


def test_incident_list(benchmark, tui_record, tui_db):
    """What the Incidents screen (and watch's deadline check, every few seconds) computes: every
    incident's facts — data subjects, destinations, clocks — and its nearest open deadline."""
    from datetime import UTC, datetime

    import duckdb

    from leakwatch.config import load_config
    from leakwatch.incidents.regimes import load_regimes
    from leakwatch.tui.incident_model import load_incidents

    config, regimes = load_config(None, env={}), load_regimes()
    con = duckdb.connect(str(tui_db), read_only=True)
    try:
        now = datetime(2024, 3, 12, tzinfo=UTC)
        times: list[float] = []

        def run():
            t = time.perf_counter()
            rows = load_incidents(con, config, regimes, now)
            times.append((time.perf_counter() - t) * 1000)
            return rows

        rows = benchmark.pedantic(run, rounds=3, warmup_rounds=1, iterations=1)
    finally:
        con.close()
    assert len(rows) >= 50 and sum(r.findings for r in rows) > 0
    res = {**_quantiles(times[1:]), "incidents": len(rows)}
    benchmark.extra_info.update(res)
    tui_record.result["incidents"] = res


def test_console_memory(benchmark, tui_record, tui_db):
    """Peak RSS of a console process doing the same steps."""
    res = benchmark.pedantic(lambda: measure_rss(tui_db), rounds=1, iterations=1)
    benchmark.extra_info.update(res)
    tui_record.result["memory"] = res


if __name__ == "__main__":  # python -m bench.test_tui_speed [rows]: build (or find) the database
    t0 = time.perf_counter()
    print(ensure_tui_db(int(sys.argv[1]) if len(sys.argv) > 1 else N_ROWS), f"{time.perf_counter() - t0:.1f} s")
