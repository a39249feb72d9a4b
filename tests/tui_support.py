"""A fixed, deterministic findings database for the console's tests (pilot and snapshot).

:func:`build_tui_db` writes small, realistic logs with fake personal data into a folder next to
the database, scans them with the real pipeline (``scan_paths``), groups the findings into
incidents (``book.group``) and makes a few responder changes through the core functions, each
with a fixed ``now``. The same inputs give the same rows, ids, times and audit trail on every
run, so screens drawn from it at :data:`FROZEN_NOW` look the same every time.

What is not fixed by the pipeline is fixed here, by hand, right after the scan: the storing
times (``created_at`` of findings, alerts, scans and sources are real clock times) are set to
:data:`STORED_AT`, so that the detection clock (the first storing time) is fixed too.

Use it from a test module::

    from tui_support import FROZEN_NOW, build_tui_db   # tests/ is on sys.path

    info = build_tui_db(tmp_path / "tui.duckdb")
    app = make_app(info["db"], config=info["config"], clock=FrozenClock(FROZEN_NOW))
"""
from __future__ import annotations

import json
import os
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

#: The log times of the planted lines start here.
T0 = datetime(2026, 3, 11, 9, 0, tzinfo=UTC)
#: When the scan "stored" the findings (after the last planted line, 11:00): the detection clock
#: of every incident, and the default awareness.
STORED_AT = datetime(2026, 3, 11, 11, 5, tzinfo=UTC)
#: When ``incidents group`` ran.
GROUPED_AT = datetime(2026, 3, 11, 11, 10, tzinfo=UTC)
#: Awareness of the OpenAI gateway-bypass incident, as the responder corrected it.
AWARE_AT = datetime(2026, 3, 11, 11, 20, tzinfo=UTC)
#: The frozen "now" of snapshot tests: 34 h 10 min after that awareness. Its GDPR Art. 33
#: 72-hour deadline has 37 h 50 min left (green), the playbook's transfer assessment
#: (awareness + 36 h) 1 h 50 min (red), the NIS2 24-hour early warning is overdue.
FROZEN_NOW = datetime(2026, 3, 12, 21, 30, tzinfo=UTC)
#: The responder every change of the fixture is recorded under.
ACTOR = "alice"

#: Fake personal data (reserved example domains, Ofcom drama numbers, a NINO of the documented
#: test form): never real people.
EMAILS = [f"customer{i}.tester@example.com" for i in range(6)]
PHONES = ["+44 7700 900123", "+44 7700 900456"]
NINO = "AB123456C"
#: A synthetic Anthropic key of the documented shape (DOMAIN.md §3), never issued.
ANTHROPIC_KEY = "sk-ant-api03-Zx9Wv8Ut7Sr6Qp5On4Ml3Kj2Ih1Gf0EdCbAZx9Wv8Ut7Sr6Qp5On4Ml3Kj2Ih1Gf0EdCbA"
#: Every raw value planted: tests assert none of them reaches a screen.
RAW_VALUES = (*EMAILS, *PHONES, NINO, ANTHROPIC_KEY)

OPENAI_URL = "https://api.openai.com/v1/chat/completions"
ANTHROPIC_URL = "https://api.anthropic.com/v1/messages"


def _z(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def _prompt_line(ts: datetime, url: str, content: str) -> str:
    return json.dumps({"ts": _z(ts), "level": "info", "service": "case-summarizer", "msg": "llm request", "url": url,
                       "body": {"model": "x", "messages": [{"role": "user", "content": content}]}})


def _record_line(ts: datetime, url: str, i: int) -> str:
    """A sync job that sends Salesforce Contact records to an AI endpoint: fields map to
    ``Contact.Email`` / ``Contact.Phone`` for the Salesforce map."""
    contact_id = f"0035j00000AbC{i:02d}"
    return json.dumps({"ts": _z(ts), "level": "info", "service": "crm-enrich", "msg": "enrich batch", "url": url,
                       "body": {"records": [{"attributes": {"type": "Contact"}, "Id": contact_id,
                                             "Email": EMAILS[(i + 3) % len(EMAILS)], "Phone": PHONES[i % 2]}]}})


def write_logs(folder: Path) -> list[Path]:
    """The planted logs: prompts with customer data to OpenAI (8 lines, one with a UK NINO),
    Contact records to OpenAI (3), prompts to Anthropic an hour later (4), and an Anthropic
    API key in an application error log (1). Returns the files written."""
    folder.mkdir(parents=True, exist_ok=True)
    openai = [_prompt_line(T0 + timedelta(minutes=i), OPENAI_URL,
                           f"Summarise the complaint of {EMAILS[i % len(EMAILS)]} (phone {PHONES[i % 2]})"
                           + (f", NINO {NINO}" if i == 3 else "") + " about order 1234567890")
              for i in range(8)]
    openai += [_record_line(T0 + timedelta(minutes=10 + i), OPENAI_URL, i) for i in range(3)]
    anthropic = [_prompt_line(T0 + timedelta(hours=1, minutes=i), ANTHROPIC_URL,
                              f"Draft a reply to {EMAILS[(i + 2) % len(EMAILS)]} about the refund")
                 for i in range(4)]
    errors = [json.dumps({"ts": _z(T0 + timedelta(hours=2)), "level": "error", "service": "case-summarizer",
                          "msg": "upstream auth failed", "request": {"url": ANTHROPIC_URL,
                                                                     "headers": {"x-api-key": ANTHROPIC_KEY}}})]
    files = []
    for name, lines in (("app-openai.jsonl", openai), ("app-anthropic.jsonl", anthropic), ("app-errors.jsonl", errors)):
        p = folder / name
        p.write_text("\n".join(lines) + "\n", encoding="utf-8")
        files.append(p)
    return files


def write_config(path: Path) -> Path:
    """A config: an EU organisation (Paris time), NIS2 important entity, one webhook target
    nobody listens on (127.0.0.1 port 9), rules that queue a notification when an incident opens
    and when a notify step changes, one delivery attempt before a dead letter."""
    path.write_text(textwrap.dedent("""\
        [organisation]
        name = "Acme Shop GmbH"
        timezone = "Europe/Paris"
        establishment = ["EU"]
        customer_jurisdictions = ["EU"]
        nis2_entity = "important"
        contact_point = "DPO, dpo@acme-shop.example"
        lead_authority = "CNIL"

        [notify]
        max_attempts = 1

        [[notify.targets]]
        name = "soc"
        kind = "webhook"
        url = "http://127.0.0.1:9/hook"
        credentials = { secret = "LW_TUI_TEST_WEBHOOK_SECRET" }

        [[notify.rules]]
        name = "page-the-soc"
        on = ["incident.opened", "step.notify"]
        targets = ["soc"]
        min_severity = "medium"
        """), encoding="utf-8")
    return path


#: A fixed webhook signing secret (``whsec_`` + base64 of 31 bytes).
WEBHOOK_SECRET = "whsec_dHVpLXRlc3Qtd2ViaG9vay1zZWNyZXQtMDEyMzQ1Ng=="


def build_tui_db(path: str | os.PathLike) -> dict[str, Any]:
    """Build the console's test database at ``path`` (a new file; its folder gets ``logs/``
    and ``leakwatch.toml``). Returns::

        {"db": Path, "config": Config, "config_path": Path, "logs": Path, "now": FROZEN_NOW,
         "incidents": {"openai": id, "anthropic": id, "key": id | None},
         "opened": [ids], "step_done": (playbook_id, step_id), "step_started": (playbook_id, step_id),
         "dead_letter": notification id, "pending": [ids]}

    The OpenAI incident is acknowledged, its awareness set to :data:`AWARE_AT` (reason given),
    one playbook step done with evidence and the step that notifies the authority started (which
    queues a notification); the Anthropic one is left ``detected``. The
    notification queued for the Anthropic incident failed once and is a dead letter; the others
    are pending.
    """
    from leakwatch.config import load_config
    from leakwatch.incidents import book
    from leakwatch.incidents.playbooks import (
        check_transition,
        load_playbooks,
        select_playbooks,
    )
    from leakwatch.incidents.regimes import load_regimes
    from leakwatch.notify import triggers
    from leakwatch.notify.outbox import Dispatcher
    from leakwatch.notify.targets import build_targets
    from leakwatch.pipeline import scan_paths
    from leakwatch.store import Store

    db = Path(path)
    if db.exists():
        raise FileExistsError(f"{db}: build_tui_db makes a new database; remove it first")
    base = db.parent
    logs = base / "logs"
    write_logs(logs)
    config_path = write_config(base / "leakwatch.toml")
    os.environ["LW_TUI_TEST_WEBHOOK_SECRET"] = WEBHOOK_SECRET
    config = load_config(config_path, env={})
    regimes = load_regimes()
    playbooks = load_playbooks()
    summary = scan_paths([str(logs)], db, config=config, store_raw=False, ner=False, argv=["scan", "logs"])
    if not summary.total_findings:
        raise AssertionError("the planted logs gave no findings: the rules changed?")

    with Store.open(db) as store:
        con = store.con
        # Storing times are real clock times; fix them so the detection clock is fixed.
        con.execute("UPDATE findings SET created_at = ?", [STORED_AT])
        con.execute("UPDATE alerts SET created_at = ?", [STORED_AT])
        con.execute("UPDATE scans SET started_at = ?, finished_at = ?", [STORED_AT - timedelta(seconds=5), STORED_AT])
        con.execute("UPDATE sources SET started_at = ?, finished_at = ?", [STORED_AT - timedelta(seconds=5), STORED_AT])
        con.execute("UPDATE scan_errors SET \"at\" = ?", [STORED_AT])

        targets = build_targets(config, None, {"soc"})
        at = [GROUPED_AT]  # the hook's clock: the time of the change it is called for
        notify = triggers.hook(config, store.key, targets=targets, regimes=regimes, playbooks=playbooks,
                               clock=lambda: at[0])
        res = book.group(store, config, now=GROUPED_AT, actor="leakwatch", notify=notify)
        rows = book.list_incidents(con)
        # Per vendor, the incident with the most findings (its customer data); the key exposure apart.
        by_vendor: dict[str, int] = {}
        most: dict[str, int] = {}
        key_incident = None
        for r in rows:
            gk = json.loads(r["group_key"] or "{}")
            if gk.get("pattern") in ("credential_exposure", "P1_key_exposed"):
                key_incident = key_incident or r["incident_id"]
                continue
            vendor = str(gk.get("dest_vendor")).lower()
            for name in ("openai", "anthropic"):
                if name in vendor and r["n_findings"] > most.get(name, -1):
                    by_vendor[name], most[name] = r["incident_id"], r["n_findings"]
        if "openai" not in by_vendor or "anthropic" not in by_vendor:
            raise AssertionError(f"expected an OpenAI and an Anthropic incident, got {rows}")
        openai, anthropic = by_vendor["openai"], by_vendor["anthropic"]

        # Responder actions on the OpenAI incident, in order, each at its own fixed time.
        book.acknowledge(store, openai, actor=ACTOR, reason="on call, looking", now=GROUPED_AT + timedelta(minutes=20))
        book.set_clock(store, openai, "awareness", AWARE_AT, actor=ACTOR, reason="DPO confirmed the leak (ticket INC-42)",
                       now=GROUPED_AT + timedelta(minutes=30))
        facts = book.build_facts(con, openai, config, regimes)
        chosen = select_playbooks(playbooks, facts)
        step = next(s for pb in chosen for s in pb.steps if s.evidence and s.when is None)
        pb_id = next(pb.id for pb in chosen if step in pb.steps)
        evidence = {item: "see INC-42" for item in step.evidence}
        at[0] = GROUPED_AT + timedelta(minutes=45)
        book.set_step(store, openai, pb_id, step.id, "done", actor=ACTOR, evidence=evidence, now=at[0],
                      check=lambda old: check_transition(step, old, "done", evidence=evidence, reason=None),
                      notify=notify)
        # Starting the step that notifies the authority queues a step.notify notification: the
        # playbook screen shows its outbox state next to the step.
        notify_step = next(s for pb in chosen if pb.id == pb_id for s in pb.steps if s.notify is not None
                           and s.notify.regime == "gdpr-33")
        at[0] = GROUPED_AT + timedelta(minutes=50)
        book.set_step(store, openai, pb_id, notify_step.id, "in_progress", actor=ACTOR, now=at[0], notify=notify)

        # One delivery attempt for the Anthropic incident's notification: nobody listens on
        # port 9, so the connection is refused and (max_attempts = 1) it becomes a dead letter.
        dead_ids = [r[0] for r in con.execute(
            "SELECT notification_id FROM outbox WHERE incident_id = ? ORDER BY notification_id", [anthropic]).fetchall()]
        with Dispatcher(store, targets, config, clock=lambda: GROUPED_AT + timedelta(hours=1)) as d:
            d.run_once(ids=dead_ids[:1])
        pending = [r[0] for r in con.execute(
            "SELECT notification_id FROM outbox WHERE status = 'pending' ORDER BY notification_id").fetchall()]
        dead = con.execute("SELECT notification_id FROM outbox WHERE status = 'dead' ORDER BY notification_id").fetchone()
    return {"db": db, "config": config, "config_path": config_path, "logs": logs, "now": FROZEN_NOW,
            "incidents": {"openai": openai, "anthropic": anthropic, "key": key_incident},
            "opened": list(res.opened), "step_done": (pb_id, step.id), "step_started": (pb_id, notify_step.id),
            "dead_letter": dead[0] if dead else None, "pending": pending}


def clone_tui_db(info: dict[str, Any], dest: str | os.PathLike) -> dict[str, Any]:
    """A copy of the database of :func:`build_tui_db` (and its key file) in the folder
    ``dest``, for one test to change: building costs ~2 s, copying ~nothing. Returns ``info``
    with ``db`` pointing at the copy."""
    import shutil

    from leakwatch.store.db import key_path_for

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    db = dest / Path(info["db"]).name
    shutil.copyfile(info["db"], db)
    shutil.copyfile(key_path_for(info["db"]), key_path_for(db))
    os.chmod(db, 0o600)
    os.chmod(key_path_for(db), 0o600)
    return {**info, "db": db}
