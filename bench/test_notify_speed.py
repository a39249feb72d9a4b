"""Outbox drain rate: 10,000 queued notifications delivered to a local webhook receiver.

Each round starts from a fresh database holding ``N`` pending webhook notifications (bodies as
the webhook target renders them for an incident: ~1.5 KB of JSON each) and times
``Dispatcher.run(until_empty=True)`` with the configured defaults (4 send threads, batches of
64, results written back every 100 ms). The receiver is leakwatch's loopback Standard Webhooks
receiver, in this process: it verifies every HMAC signature and timestamp and deduplicates by
``webhook-id``, so the figure includes a careful receiver's work on the same 2 cores, a
conservative setting. Each round also checks that all ``N`` arrived exactly once.

The lead's target: >= 200 notifications/s. Reported as notifications/s (the MB/s column of the
table is the payload bytes); nothing here asserts on a timing. Needs no corpus.
"""
from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest

from bench import conftest as bench_conftest
from leakwatch.config import Config
from leakwatch.incidents.facts import Destination, IncidentFacts
from leakwatch.notify.base import TargetConfig
from leakwatch.notify.outbox import Dispatcher
from leakwatch.notify.receiver import WebhookReceiver
from leakwatch.notify.targets import build_target
from leakwatch.notify.webhook_verify import new_secret
from leakwatch.store import Store

N = 10_000
ROUNDS = 3
KEY = "notify_drain"
TARGET_PER_S = 200
_IN_TABLE = KEY in dict(bench_conftest.ROWS)

T0 = datetime(2026, 3, 11, 9, 0, tzinfo=UTC)
FACTS = IncidentFacts(
    incident_id=1, title="Customer PII in AI prompts to OpenAI — EMAIL_ADDRESS, PHONE_NUMBER", status="detected",
    severity="high", opened_at=T0, clock_events={"awareness": T0, "detection": T0}, first_seen=T0, last_seen=T0,
    entities=("EMAIL_ADDRESS", "PHONE_NUMBER"), categories=("contact",), findings=12, records=6, data_subjects=6,
    destinations=(Destination("OpenAI", "us", "US", True, 6, 6),), patterns=("P3_prompt_pii",), systems=("application",),
    masked_examples=("c***0.t***r@e***.com", "+44 77** ***123"),
)


def _payload(url: str, secret: str) -> str:
    import json

    target = build_target(TargetConfig("soc", "webhook", url, {"secret": "S"}), lambda _name: secret)
    body = target.render("incident.opened", FACTS, {"deadlines": [
        {"regime": "gdpr-33", "deadline": "notify", "label": "notify the supervisory authority",
         "due": datetime(2026, 3, 14, 9, 0, tzinfo=UTC), "status": "pending", "regime_applies": True}]})
    return json.dumps(body, separators=(",", ":"), default=str)


def _engine(fn):
    """Tag the test with its table row once bench/conftest.py has one (see ROWS there)."""
    return pytest.mark.engine(KEY)(fn) if _IN_TABLE else fn


@_engine
def test_outbox_drain_to_local_receiver(benchmark, bench_record, tmp_path):
    n = N
    secret = new_secret()
    config = Config.default()
    with WebhookReceiver(secret) as rx:
        target_cfg = TargetConfig("soc", "webhook", rx.url, {"secret": "S"}, timeout_s=10.0)
        payload = _payload(rx.url, secret)
        counter = {"round": 0}
        box: dict = {}

        def setup():
            counter["round"] += 1
            db = tmp_path / f"drain-{counter['round']}.duckdb"
            store = Store.open(db)
            store.con.execute(
                """INSERT INTO outbox (idempotency_key, incident_id, target, kind, event, payload)
                   SELECT 'incident.opened:' || i || ':soc:r' || ?, NULL, 'soc', 'webhook', 'incident.opened', ?
                   FROM range(?) t(i)""", [counter["round"], payload, n])
            box["store"] = store
            box["before"] = len(rx.ids())
            return (), {}

        def drain():
            store = box["store"]
            target = build_target(target_cfg, lambda _name: secret)
            with Dispatcher(store, {"soc": target}, config) as d:
                box["stats"] = d.run(threading.Event(), until_empty=True, poll_s=0.05, timeout_s=600)
            target.close()

        benchmark.pedantic(drain, setup=setup, rounds=ROUNDS, iterations=1, warmup_rounds=0)
        stats = box["stats"]
        box["store"].close()
        got = rx.ids()[box["before"]:]
        # Correctness of the last round: every notification, once, verified.
        assert stats.delivered == n and stats.dead == 0
        assert len(got) == n and len(set(got)) == n and not rx.duplicates and not rx.rejected
    median = benchmark.stats.stats.median
    rate = n / median
    notes = (f"{rate:,.0f} notifications/s (median of {ROUNDS}; target >= {TARGET_PER_S}/s); "
             f"{n:,} x {len(payload):,} B signed JSON, 4 threads, in-process verifying receiver")
    benchmark.extra_info.update(notifications=n, notifications_per_s=rate, payload_bytes=len(payload))
    print(f"\nnotify drain: {notes}")
    if _IN_TABLE:
        bench_record.ok(KEY, benchmark, n * len(payload), notes=notes, notifications_per_s=rate,
                        target_notifications_per_s=TARGET_PER_S)
