"""The outbox and its dispatcher against a real Standard Webhooks receiver on 127.0.0.1 that
verifies signatures, deduplicates by webhook-id and is told to answer 429/500/400, hang or drop
the connection. The clock and the jitter's random source are injected where the schedule is
under test; nothing else is."""
from __future__ import annotations

import email.utils
import json
import random
import textwrap
import time
from datetime import UTC, datetime, timedelta

import pytest

from leakwatch.config import load_config
from leakwatch.notify.base import Message
from leakwatch.notify.outbox import Dispatcher, backoff_delay, delivery_namespace, enqueue, outbox_status, retry_dead
from leakwatch.notify.receiver import WebhookReceiver
from leakwatch.notify.secrets import SecretStore
from leakwatch.notify.targets import build_targets
from leakwatch.notify.webhook_verify import new_secret
from leakwatch.store import Store

SECRET_VAR = "LW_TEST_OUTBOX_SECRET"


@pytest.fixture
def secret(monkeypatch):
    value = new_secret()
    monkeypatch.setenv(SECRET_VAR, value)
    return value


@pytest.fixture
def receiver(secret):
    with WebhookReceiver(secret) as rx:
        yield rx


@pytest.fixture
def store(tmp_path):
    with Store.open(tmp_path / "lw.duckdb") as s:
        yield s


def make_config(tmp_path, url: str, *, notify: str = "", extra: str = "", timeout_s: float = 5.0):
    path = tmp_path / "leakwatch.toml"
    path.write_text(textwrap.dedent(f"""\
        [notify]
        {notify}

        [[notify.targets]]
        name = "soc"
        kind = "webhook"
        url = "{url}"
        timeout_s = {timeout_s}
        credentials = {{ secret = "{SECRET_VAR}" }}
        """) + textwrap.dedent(extra))
    return load_config(path, env={})


def message(i: int = 1, target: str = "soc", event: str = "incident.opened") -> Message:
    return Message(target=target, kind="webhook", event=event, idempotency_key=f"{event}:{i}:{target}:",
                   body={"type": event, "timestamp": "2026-03-11T09:00:00Z", "data": {"subject": f"test {i}"}})


def queue(store, *msgs: Message, now: datetime | None = None) -> None:
    con = store.con
    con.begin()
    for m in msgs:
        enqueue(con, m, now=now or datetime.now(UTC))
    con.commit()


def sent_id(store, m: Message) -> str:
    """The key as the target sees it: the row's key under the database's namespace."""
    return delivery_namespace(store.key) + m.idempotency_key


def row(store, key: str) -> dict:
    cur = store.con.execute("SELECT * FROM outbox WHERE idempotency_key = ?", [key])
    return dict(zip([d[0] for d in cur.description], cur.fetchone(), strict=True))


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, start: datetime):
        self.now = start

    def __call__(self) -> datetime:
        return self.now


def dispatcher(store, cfg, **kw) -> Dispatcher:
    return Dispatcher(store, build_targets(cfg, SecretStore.from_config(cfg)), cfg, **kw)


# --- enqueue -------------------------------------------------------------------------------------------


def test_enqueue_is_part_of_the_callers_transaction(store):
    con = store.con
    con.begin()
    assert enqueue(con, message(1), now=datetime.now(UTC)) is True
    con.rollback()  # the event that caused it failed
    assert con.execute("SELECT count(*) FROM outbox").fetchone()[0] == 0
    con.begin()
    enqueue(con, message(1), now=datetime.now(UTC))
    con.commit()
    assert con.execute("SELECT status, attempts FROM outbox").fetchall() == [("pending", 0)]


def test_enqueue_is_idempotent(store):
    now = datetime.now(UTC)
    con = store.con
    assert enqueue(con, message(1), now=now) is True
    assert enqueue(con, message(1), now=now + timedelta(seconds=5)) is False
    assert enqueue(con, message(2), now=now) is True
    assert con.execute("SELECT count(*) FROM outbox").fetchone()[0] == 2


# --- delivery and retries ----------------------------------------------------------------------------


def test_delivers_signed_and_records_remote_id(tmp_path, store, receiver):
    cfg = make_config(tmp_path, receiver.url)
    queue(store, *(message(i) for i in range(10)))
    with dispatcher(store, cfg) as d:
        st = d.run_once()
    assert (st.claimed, st.delivered, st.retried, st.dead) == (10, 10, 0, 0)
    assert sorted(receiver.ids()) == sorted(sent_id(store, message(i)) for i in range(10))
    assert receiver.rejected == [] and not receiver.duplicates
    r = row(store, message(3).idempotency_key)
    by_id = {d.webhook_id: d for d in receiver.deliveries}
    assert r["status"] == "delivered" and r["attempts"] == 1 and r["last_status"] == 200
    assert r["remote_id"] == by_id[sent_id(store, message(3))].delivery_id
    assert r["delivered_at"] is not None and r["lease_owner"] is None


def test_backoff_schedule_doubles_up_to_the_maximum_with_full_jitter(tmp_path, store, receiver):
    cfg = make_config(tmp_path, receiver.url, notify="max_attempts = 6\nbackoff_base_s = 2\nbackoff_max_s = 10")
    receiver.fail_next(500, times=100)
    clock = Clock(datetime(2026, 3, 11, 9, 0, tzinfo=UTC))
    queue(store, message(1), now=clock.now)

    class Top(random.Random):
        """Always the top of the jitter range: the schedule's upper bounds."""

        def uniform(self, a, b):
            return b

    delays = []
    with dispatcher(store, cfg, clock=clock, rng=Top()) as d:
        for _ in range(5):
            assert d.run_once().retried == 1
            nxt = row(store, message(1).idempotency_key)["next_attempt_at"]
            delays.append((nxt - clock.now).total_seconds())
            assert d.run_once().claimed == 0  # not due before its time
            clock.now = nxt
        st = d.run_once()
    assert delays == [2.0, 4.0, 8.0, 10.0, 10.0]
    assert st.dead == 1 and row(store, message(1).idempotency_key)["attempts"] == 6
    assert receiver.answered[500] == 6

    # With a real random source every delay lies within [0, min(max, base * 2^(n-1))], and they vary.
    rng = random.Random(7)
    samples = {n: [backoff_delay(n, 2.0, 10.0, rng) for _ in range(300)] for n in range(1, 7)}
    for n, xs in samples.items():
        cap = min(10.0, 2.0 * 2 ** (n - 1))
        assert all(0.0 <= x <= cap for x in xs)
        assert max(xs) > 0.8 * cap and min(xs) < 0.2 * cap  # full jitter: the whole range is used


def test_retry_after_seconds_is_honoured(tmp_path, store, receiver):
    cfg = make_config(tmp_path, receiver.url, notify="backoff_base_s = 0.01")
    receiver.fail_next(429, retry_after=2)
    queue(store, message(1))
    with dispatcher(store, cfg) as d:
        sent = datetime.now(UTC)
        assert d.run_once().retried == 1
        r = row(store, message(1).idempotency_key)
        assert r["status"] == "pending" and r["last_status"] == 429
        assert (r["next_attempt_at"] - sent).total_seconds() >= 2.0   # not the 10 ms backoff
        assert (r["next_attempt_at"] - sent).total_seconds() < 4.0
        assert d.run_once().claimed == 0                               # asked to wait: it waits
    later = Clock(r["next_attempt_at"] + timedelta(milliseconds=1))
    with dispatcher(store, cfg, clock=later) as d:
        assert d.run_once().delivered == 1
    assert receiver.ids() == [sent_id(store, message(1))]


def test_retry_after_http_date_on_503_is_honoured(tmp_path, store, receiver):
    cfg = make_config(tmp_path, receiver.url, notify="backoff_base_s = 0.01")
    when = email.utils.formatdate(time.time() + 5, usegmt=True)
    receiver.fail_next(503, retry_after=when)
    queue(store, message(1))
    with dispatcher(store, cfg) as d:
        sent = datetime.now(UTC)
        assert d.run_once().retried == 1
    wait = (row(store, message(1).idempotency_key)["next_attempt_at"] - sent).total_seconds()
    assert 3.0 <= wait <= 6.5  # an HTTP date has whole seconds


@pytest.mark.parametrize("fault", ["500", "timeout", "drop"])
def test_transient_failures_retry_and_then_deliver_once(tmp_path, store, receiver, fault):
    cfg = make_config(tmp_path, receiver.url, notify="backoff_base_s = 0.01\nbackoff_max_s = 0.01", timeout_s=0.3)
    if fault == "500":
        receiver.fail_next(500)
    elif fault == "timeout":
        receiver.hang_next(0.8)   # longer than the target's 0.3 s timeout; the receiver then records it
    else:
        receiver.drop_next()
    queue(store, message(1))
    with dispatcher(store, cfg) as d:
        first = d.run_once()
        assert first.retried == 1 and first.delivered == 0
        r = row(store, message(1).idempotency_key)
        assert r["status"] == "pending" and r["attempts"] == 1
        expected = {"500": "HTTP 500", "timeout": "no answer within 0.3 s", "drop": "connection failed"}[fault]
        assert expected in r["last_error"]
        # After no answer (a timeout, a drop) the retry waits at least the target's timeout: the
        # request may still land, and the lookup before the resend must see it.
        time.sleep(0.9 if fault == "timeout" else 0.4 if fault == "drop" else 0.05)
        second = d.run_once()
    assert second.delivered == 1
    r = row(store, message(1).idempotency_key)
    assert r["status"] == "delivered" and r["attempts"] == 2
    # Whatever happened on the wire, the receiver has the notification exactly once; after the
    # timeout, the resend carried the same webhook-id and was absorbed as a duplicate.
    assert receiver.ids() == [sent_id(store, message(1))]
    assert sum(receiver.duplicates.values()) == (1 if fault == "timeout" else 0)


def test_400_is_dead_at_once_with_audit_row_and_visible_in_status(tmp_path, store, receiver):
    cfg = make_config(tmp_path, receiver.url)
    receiver.fail_next(400, body='{"error": "schema mismatch: field data.subject"}')
    queue(store, message(1))
    with dispatcher(store, cfg) as d:
        st = d.run_once()
    assert (st.dead, st.retried, st.dead_ids) == (1, 0, [row(store, message(1).idempotency_key)["notification_id"]])
    r = row(store, message(1).idempotency_key)
    assert r["status"] == "dead" and r["attempts"] == 1 and r["last_status"] == 400
    assert "schema mismatch" in r["last_error"]
    audit = store.con.execute("SELECT action, detail FROM audit_log WHERE action = 'notify.dead_letter'").fetchall()
    assert len(audit) == 1 and json.loads(audit[0][1])["last_status"] == 400
    status = outbox_status(store.con, datetime.now(UTC))
    assert status["totals"]["dead"] == 1
    assert status["dead_letters"][0]["notification_id"] == r["notification_id"]
    assert "schema mismatch" in status["dead_letters"][0]["last_error"]
    # Requeued by hand, it goes out.
    assert retry_dead(store, [r["notification_id"]], now=datetime.now(UTC), actor="alice") == [r["notification_id"]]
    with dispatcher(store, cfg) as d:
        assert d.run_once().delivered == 1
    assert receiver.ids() == [sent_id(store, message(1))]


def test_dead_letter_after_max_attempts_notifies_the_rule_that_asks(tmp_path, store, secret):
    with WebhookReceiver(secret) as broken, WebhookReceiver(secret) as ops:
        cfg = make_config(tmp_path, broken.url, notify="max_attempts = 3\nbackoff_base_s = 0.001\nbackoff_max_s = 0.001",
                          extra=f"""
            [[notify.targets]]
            name = "ops"
            kind = "webhook"
            url = "{ops.url}"
            credentials = {{ secret = "{SECRET_VAR}" }}

            [[notify.rules]]
            on = ["outbox.dead_letter"]
            targets = ["ops"]
            """)
        broken.fail_next(503, times=10)
        queue(store, message(1))
        nid = row(store, message(1).idempotency_key)["notification_id"]
        with dispatcher(store, cfg) as d:
            total = []
            for _ in range(4):
                total.append(d.run_once())
                time.sleep(0.01)
        assert [s.retried for s in total[:2]] == [1, 1]
        assert total[2].dead == 1 and total[2].dead_ids == [nid]
        assert broken.answered[503] == 3 and broken.ids() == []
        assert row(store, message(1).idempotency_key)["status"] == "dead"
        # The dead-letter notice was queued in the same transaction and delivered on the next pass.
        notice = row(store, f"outbox.dead_letter::ops:{nid}")
        assert notice["status"] == "delivered" and notice["event"] == "outbox.dead_letter"
        body = ops.deliveries[0].json()
        assert body["type"] == "outbox.dead_letter"
        assert body["data"]["detail"]["notification_id"] == nid and body["data"]["detail"]["attempts"] == 3
        assert "could not be delivered" in body["data"]["subject"]


def test_secret_never_reaches_last_error_or_audit(tmp_path, store, receiver, secret):
    cfg = make_config(tmp_path, receiver.url)
    # A receiver that quotes the secret back in its error (it happens: "bad secret whsec_…").
    receiver.fail_next(401, body=f"signature check failed with secret {secret} (key {secret[6:]})")
    queue(store, message(1))
    with dispatcher(store, cfg) as d:
        st = d.run_once()
    r = row(store, message(1).idempotency_key)
    assert r["status"] == "dead" and "[REDACTED]" in r["last_error"] and "signature check failed" in r["last_error"]
    dump = json.dumps(store.con.execute("SELECT * FROM outbox").fetchall(), default=str)
    dump += json.dumps(store.con.execute("SELECT * FROM audit_log").fetchall(), default=str)
    dump += " ".join(st.errors)
    assert secret not in dump and secret[6:] not in dump


def test_rows_of_an_unconfigured_target_stay_queued_and_are_reported(tmp_path, store, receiver):
    cfg = make_config(tmp_path, receiver.url)
    queue(store, message(1, target="gone"), message(2))
    with dispatcher(store, cfg) as d:
        st = d.run_once()
        assert (st.claimed, st.delivered, st.dead) == (1, 1, 0)   # only the configured target's row
        assert d.unroutable() == {"gone": 1} and d.pending() == 0
    assert row(store, message(1, target="gone").idempotency_key)["status"] == "pending"


def test_lease_keeps_a_live_dispatcher_row_until_it_expires(tmp_path, store, receiver):
    cfg = make_config(tmp_path, receiver.url, notify="lease_s = 30")
    clock = Clock(datetime.now(UTC))
    queue(store, message(1), now=clock.now)
    with dispatcher(store, cfg, clock=clock) as a, dispatcher(store, cfg, clock=clock) as b:
        assert len(a._claim(clock.now, 10, None, set())) == 1   # a takes it and (say) stalls
        assert b.run_once().claimed == 0                          # a is alive and its lease holds
        clock.now += timedelta(seconds=31)
        st = b.run_once()                                          # the lease ran out: b takes over
        assert st.delivered == 1
    assert row(store, message(1).idempotency_key)["status"] == "delivered"


def test_a_row_left_sending_by_a_dead_owner_is_taken_over_once_its_attempt_cannot_land(tmp_path, store, receiver):
    cfg = make_config(tmp_path, receiver.url, notify="lease_s = 3600", timeout_s=2)
    queue(store, message(1))
    # What a killed dispatcher leaves behind: 'sending', an hour's lease, an owner that is gone,
    # and an attempt that began a moment ago and may still be creating a ticket at the far end.
    store.con.execute("UPDATE outbox SET status = 'sending', lease_owner = 'otherhost:4242:dead', "
                      "lease_until = now() + INTERVAL 1 HOUR, updated_at = now()")
    with dispatcher(store, cfg) as d:
        assert d.run_once().claimed == 0  # not yet: a lookup now could miss what is still landing
        # Twice the target's timeout after the attempt began it is taken over, without the lease.
        store.con.execute("UPDATE outbox SET updated_at = now() - INTERVAL 5 SECOND")
        st = d.run_once()
    assert st.delivered == 1
    assert receiver.ids() == [sent_id(store, message(1))]


def test_run_until_empty_waits_out_backoff(tmp_path, store, receiver):
    import threading

    cfg = make_config(tmp_path, receiver.url, notify="backoff_base_s = 0.2\nbackoff_max_s = 0.2")
    receiver.fail_next(500, times=2)
    queue(store, *(message(i) for i in range(5)))
    with dispatcher(store, cfg) as d:
        st = d.run(threading.Event(), until_empty=True, poll_s=0.05, timeout_s=20)
    assert st.delivered == 5 and st.retried == 2 and st.dead == 0
    assert sorted(receiver.ids()) == sorted(sent_id(store, message(i)) for i in range(5))


# --- secrets -----------------------------------------------------------------------------------------------


def test_redact_removes_a_secret_in_every_encoding_it_travels_in():
    import base64
    from urllib.parse import quote

    from leakwatch.notify.secrets import redact

    pw, user = "p@ss/w0rd+\"Q", "ops-bot@example.com"
    text = " | ".join([
        f"plain {pw}", f"url {quote(pw, safe='')}", f"json {json.dumps(pw)}",
        f"b64 {base64.b64encode(pw.encode()).decode()}",
        f"basic {base64.b64encode(f'{user}:{pw}'.encode()).decode()}",
    ])
    out = redact(text, [pw, user])
    assert out.count("[REDACTED]") >= 5
    assert pw not in out and quote(pw, safe="") not in out and base64.b64encode(pw.encode()).decode() not in out
    assert base64.b64encode(f"{user}:{pw}".encode()).decode() not in out
    assert redact("nothing secret here", [pw]) == "nothing secret here"
    assert redact("abc and abc", ["abc"]) == "abc and abc"  # too short to be a secret worth hiding


def test_secrets_file_formats_and_errors(tmp_path, monkeypatch):
    import os

    from leakwatch.notify.secrets import SecretError, SecretStore

    monkeypatch.delenv("LW_A", raising=False)
    toml_file = tmp_path / "s.toml"
    toml_file.write_text('LW_A = "from-toml-value"\n')
    os.chmod(toml_file, 0o600)
    assert SecretStore(toml_file, env={}).get("LW_A") == "from-toml-value"
    env_file = tmp_path / "s.env"
    env_file.write_text("# comment\nexport LW_A=plain-value-1\nLW_PIN=1234\n")
    os.chmod(env_file, 0o600)
    store = SecretStore(env_file, env={"LW_PIN": "from-env-wins"})
    assert store.get("LW_A") == "plain-value-1" and store.get("LW_PIN") == "from-env-wins"
    with pytest.raises(SecretError, match="LW_NOPE is not set"):
        store.get("LW_NOPE")
    bad = tmp_path / "bad.env"
    bad.write_text("LW_A=ok-value\nsk-live-pasted-without-a-key\n")
    os.chmod(bad, 0o600)
    with pytest.raises(SecretError) as e:
        SecretStore(bad, env={}).get("LW_A")
    assert "bad.env:2" in str(e.value) and "sk-live" not in str(e.value)
    os.chmod(bad, 0o640)
    with pytest.raises(SecretError, match="mode 0640"):
        SecretStore(bad, env={}).get("LW_A")


def test_redact_removes_basic_auth_however_many_values_are_known():
    # A long-running watch knows many credentials (every target's, OAuth tokens): the Basic
    # form of a pair must still go, also when the pairs are too many to list, and a value
    # wrapped in other text before encoding (a token with a newline, "user:pw" of a JSON body).
    import base64

    from leakwatch.notify.secrets import redact

    many = [f"unrelated-secret-{i:03d}" for i in range(40)]
    pw, user = "p@ss/w0rd+\"Q", "ops-bot@example.com"
    basic = base64.b64encode(f"{user}:{pw}".encode()).decode()
    wrapped = base64.urlsafe_b64encode(f'{{"key": "{pw}"}}\n'.encode()).decode().rstrip("=")
    out = redact(f"Authorization: Basic {basic} | body {wrapped} | trace ZGVhZGJlZWZjYWZl", [*many, pw, user])
    assert basic not in out and wrapped not in out
    assert out.count("[REDACTED]") == 2
    assert "ZGVhZGJlZWZjYWZl" in out  # base64 of something else stays
