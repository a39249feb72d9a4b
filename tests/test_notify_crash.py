"""Crash recovery: ``leakwatch notify dispatch`` is killed with SIGKILL in the middle of
delivering, restarted, and every notification reaches an idempotent receiver exactly once.

The receiver records each new webhook-id *before* holding the request ~50 ms and answering, so
at the moment of the kill some notifications have arrived without the dispatcher knowing. The
restarted dispatcher finds their rows left ``sending`` by a process that is gone, resends them
with the same webhook-id, and the receiver absorbs exactly those resends as duplicates."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime

import duckdb

from leakwatch.notify.base import Message
from leakwatch.notify.outbox import delivery_namespace, enqueue
from leakwatch.notify.receiver import WebhookReceiver
from leakwatch.notify.webhook_verify import new_secret
from leakwatch.store import Store

N = 50
SECRET_VAR = "LW_TEST_CRASH_SECRET"
# The CLI as a subprocess; adds the notify command if the CLI does not list it yet.
RUNNER = ("import sys; from leakwatch import cli; m = 'leakwatch.commands.notify'; "
          "cli.COMMAND_MODULES = cli.COMMAND_MODULES if m in cli.COMMAND_MODULES else (*cli.COMMAND_MODULES, m); "
          "raise SystemExit(cli.main(sys.argv[1:]))")


def statuses(db) -> dict[str, str]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return dict(con.execute("SELECT idempotency_key, status FROM outbox").fetchall())
    finally:
        con.close()


def test_kill_9_mid_delivery_then_restart_delivers_each_exactly_once(tmp_path):
    secret = new_secret()
    db = tmp_path / "lw.duckdb"
    keys = [f"incident.opened:{i}:soc:" for i in range(N)]
    with Store.open(db) as s:
        s.con.begin()
        for k in keys:
            enqueue(s.con, Message("soc", "webhook", "incident.opened", k, {"type": "incident.opened", "data": {"k": k}}),
                    now=datetime.now(UTC))
        s.con.commit()
        ns = delivery_namespace(s.key)  # the key the target sees is the row's key under the database's namespace
    env = {**os.environ, SECRET_VAR: secret, "LEAKWATCH_NOTIFY_LEASE_S": "1", "LEAKWATCH_NOTIFY_WORKERS": "4"}
    with WebhookReceiver(secret, hold_s=0.05) as rx:
        cfg = tmp_path / "leakwatch.toml"
        cfg.write_text(textwrap.dedent(f"""\
            [notify]
            backoff_base_s = 0.05

            [[notify.targets]]
            name = "soc"
            kind = "webhook"
            url = "{rx.url}"
            timeout_s = 1
            credentials = {{ secret = "{SECRET_VAR}" }}
            """))
        cmd = [sys.executable, "-c", RUNNER, "notify", "dispatch", "--until-empty", "--timeout", "60",
               "--db", str(db), "--config", str(cfg)]

        first = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            assert rx.wait_for(N // 3, timeout=60), "the first dispatcher never got going"
            os.kill(first.pid, signal.SIGKILL)   # a request is being held right now: mid-delivery
        finally:
            first.wait(timeout=30)
        assert first.returncode == -signal.SIGKILL
        time.sleep(0.3)  # requests already on the wire are read (and recorded) by the receiver
        arrived = {i.removeprefix(ns) for i in rx.ids()}
        before = statuses(db)
        delivered_before = {k for k, st in before.items() if st == "delivered"}
        unconfirmed = arrived - delivered_before  # at the target, but the outbox does not know
        assert 0 < len(arrived) < N, "killed too late or too early to test anything"
        assert delivered_before, "results are written back while a batch is in flight, not only at its end"
        assert unconfirmed, "the kill did not land mid-delivery"
        assert {before[k] for k in unconfirmed} <= {"sending", "pending"}
        assert not rx.duplicates
        print(f"at the kill: {len(arrived)} arrived, {len(delivered_before)} recorded delivered, "
              f"{len(unconfirmed)} unconfirmed")

        second = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True, timeout=120)
        assert second.returncode == 0, second.stderr
        assert f"delivered {N - len(delivered_before)}" in second.stdout

    # Exactly once at the target: every key, each recorded once ...
    ids = rx.ids()
    assert len(ids) == N and set(ids) == {ns + k for k in keys}
    # ... and the resends the restart had to make are exactly the ones the kill left unconfirmed,
    # each absorbed once by the receiver's deduplication.
    assert {i.removeprefix(ns) for i in rx.duplicates} == unconfirmed and set(rx.duplicates.values()) == {1}
    assert rx.rejected == []
    after = statuses(db)
    assert set(after.values()) == {"delivered"} and len(after) == N
