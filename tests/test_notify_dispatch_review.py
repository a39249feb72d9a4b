"""`leakwatch notify dispatch` / `test` / `retry` against loopback targets: defects found by a
review with targets that hang, refuse and drop answers (each test failed before its fix).
Real HTTP on 127.0.0.1 and the real CLI in a subprocess; nothing patched."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import duckdb
import pytest

from leakwatch.notify.receiver import WebhookReceiver
from leakwatch.notify.sim import ServiceNowSim
from leakwatch.notify.webhook_verify import new_secret

SECRET_VAR = "LW_TEST_DISPATCH_SECRET"
LOG = ("2026-03-11T10:00:00Z user=jane@example.com card=4111111111111111 "
       "POST https://api.openai.com/v1/chat/completions\n")


def lw(*args, env=None, timeout=120, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "leakwatch", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})}, **kw)


def webhook_toml(path, url: str, *, timeout_s: float = 2, max_attempts: int = 3) -> None:
    path.write_text(textwrap.dedent(f"""\
        [notify]
        backoff_base_s = 0.1
        backoff_max_s = 0.2
        max_attempts = {max_attempts}

        [[notify.targets]]
        name = "soc"
        kind = "webhook"
        url = "{url}"
        timeout_s = {timeout_s}
        credentials = {{ secret = "{SECRET_VAR}" }}

        [[notify.rules]]
        on = ["incident.opened"]
        targets = ["soc"]
        """))


def queued_db(tmp_path, cfg, env) -> object:
    """A database whose incidents queued notifications (two incidents: the PII and the bypass)."""
    log = tmp_path / "app.log"
    log.write_text(LOG)
    db = tmp_path / "lw.duckdb"
    assert lw("scan", log, "--db", db, "-q", env=env).returncode == 1
    r = lw("incidents", "--db", db, "--config", cfg, "group", env=env)
    assert r.returncode == 0, r.stderr
    return db


def statuses(db) -> list[str]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return [r[0] for r in con.execute("SELECT status FROM outbox ORDER BY notification_id").fetchall()]
    finally:
        con.close()


def test_a_retried_dead_letter_is_looked_up_at_servicenow_before_it_is_sent_again(tmp_path):
    """retry set attempts to 0, and the dispatcher took that for 'never sent': a ticket whose
    answer was lost was created a second time."""
    env = {"SN_USER": "leakwatch.integration", "SN_PASSWORD": "sn-Pa55word!"}
    with ServiceNowSim() as sn:
        sn.add_user(env["SN_USER"], env["SN_PASSWORD"])
        cfg = tmp_path / "lw.toml"
        cfg.write_text(textwrap.dedent(f"""\
            [notify]
            max_attempts = 1

            [[notify.targets]]
            name = "snow"
            kind = "servicenow"
            url = "{sn.url}"
            timeout_s = 2
            credentials = {{ user = "SN_USER", password = "SN_PASSWORD" }}

            [[notify.rules]]
            on = ["incident.opened"]
            targets = ["snow"]
            """))
        db = queued_db(tmp_path, cfg, env)
        n = len(statuses(db))
        assert n >= 1
        sn.drop_next("/api/now/table/incident", times=n, method="POST", process=True)  # created, answer lost
        r = lw("notify", "--db", db, "--config", cfg, "dispatch", "--until-empty", "--timeout", "30", env=env)
        assert r.returncode == 4 and statuses(db) == ["dead"] * n, r.stdout + r.stderr
        assert len(sn.records()) == n
        assert lw("notify", "--db", db, "--config", cfg, "retry", "--all", env=env).returncode == 0
        r = lw("notify", "--db", db, "--config", cfg, "dispatch", "--until-empty", "--timeout", "30", env=env)
        assert r.returncode == 0, r.stderr
        assert f"delivered {n} ({n} found already at the target)" in r.stdout
        assert len(sn.records()) == n  # no second ticket
        assert len(sn.requests_to("/api/now/table/incident", "GET")) == n


class _Silent:
    """A target that accepts connections and never answers; ``connected`` is set at the first."""

    def __enter__(self):
        import socket
        import threading

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/hook"
        self.connected = threading.Event()
        self._held: list = []

        def accept() -> None:
            while True:
                try:
                    conn, _ = self.sock.accept()
                except OSError:
                    return
                self._held.append(conn)
                self.connected.set()

        threading.Thread(target=accept, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.sock.close()
        for c in self._held:
            c.close()


@pytest.mark.parametrize("how", ["SIGTERM", "SIGINT", "timeout"])
def test_a_send_stuck_on_a_silent_target_does_not_hold_a_stopped_dispatcher(tmp_path, how):
    """SIGTERM, Ctrl-C and --timeout waited out the target's 30 s timeout before the process
    ended; a send still waiting is now left 'sending' for the next dispatcher."""
    env = {SECRET_VAR: new_secret()}
    with _Silent() as silent:
        cfg = tmp_path / "lw.toml"
        webhook_toml(cfg, silent.url, timeout_s=30)
        db = queued_db(tmp_path, cfg, env)
        cmd = [sys.executable, "-m", "leakwatch", "notify", "--db", str(db), "--config", str(cfg), "dispatch"]
        if how == "timeout":
            cmd += ["--until-empty", "--timeout", "2"]
        t0 = time.monotonic()
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env={**os.environ, **env}, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        if how != "timeout":
            assert silent.connected.wait(30), "the dispatcher never sent"
            time.sleep(0.3)
            p.send_signal(getattr(signal, how))
        out, err = p.communicate(timeout=60)
        took = time.monotonic() - t0
    assert took < 12, (took, out, err)
    assert "waited on a silent target" in err and "Traceback" not in err, err
    assert p.returncode == (4 if how == "timeout" else 0), err
    assert "sending" in statuses(db)


def test_ctrl_c_reports_what_the_run_did_and_its_dead_letters(tmp_path):
    """Ctrl-C threw the run's totals away: 'delivered 0 … dead 0' and exit 0, although both
    notifications had been dead-lettered (401)."""
    env = {SECRET_VAR: new_secret()}
    with WebhookReceiver(env[SECRET_VAR], status=401) as rx:
        cfg = tmp_path / "lw.toml"
        webhook_toml(cfg, rx.url)
        db = queued_db(tmp_path, cfg, env)
        n = len(statuses(db))
        p = subprocess.Popen([sys.executable, "-m", "leakwatch", "notify", "--db", str(db), "--config", str(cfg),
                              "dispatch"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env={**os.environ, **env}, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        # Not the database: a read while the dispatcher opens it would lock it out.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and rx.request_count < n:
            time.sleep(0.1)
        time.sleep(1.0)  # the refusals are written back
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=30)
    assert statuses(db) == ["dead"] * n, out + err
    assert p.returncode == 4, out + err
    assert f"dead {n}" in out and err.count("DEAD LETTER #") == n


def test_a_credential_problem_is_a_configuration_error_and_dead_letters_nothing(tmp_path):
    with WebhookReceiver(new_secret()) as rx:
        cfg = tmp_path / "lw.toml"
        webhook_toml(cfg, rx.url)
        db = queued_db(tmp_path, cfg, {SECRET_VAR: new_secret()})
        n = len(statuses(db))
        env = {k: v for k, v in os.environ.items() if k != SECRET_VAR}
        r = subprocess.run([sys.executable, "-m", "leakwatch", "notify", "--db", str(db), "--config", str(cfg),
                            "dispatch", "--once"], capture_output=True, text=True, env=env, timeout=60)
        assert r.returncode == 2, r.stderr
        assert f"{n} notification(s) for target 'soc' left queued, none sent" in r.stderr
        assert SECRET_VAR in r.stderr and "DEAD LETTER" not in r.stderr
        bad = {SECRET_VAR: "notawhsecvalue123"}
        r = lw("notify", "--db", db, "--config", cfg, "dispatch", "--once", "--json", env=bad)
        assert r.returncode == 2
        doc = json.loads(r.stdout)
        assert doc["dead"] == 0 and doc["credential_problems"]["soc"]["queued"] == n
        assert "whsec_" in doc["credential_problems"]["soc"]["error"] and "notawhsecvalue123" not in r.stdout
        r = lw("notify", "--db", db, "--config", cfg, "test", "--target", "soc", env=bad)
        assert r.returncode == 2 and "nothing was sent" in r.stderr, r.stderr
        assert statuses(db) == ["pending"] * n and rx.ids() == []


def test_dispatch_json_is_json_and_a_nan_timeout_is_refused(tmp_path):
    env = {SECRET_VAR: new_secret()}
    with WebhookReceiver(env[SECRET_VAR]) as rx:
        cfg = tmp_path / "lw.toml"
        webhook_toml(cfg, rx.url)
        db = queued_db(tmp_path, cfg, env)
        n = len(statuses(db))
        r = lw("notify", "--db", db, "--config", cfg, "dispatch", "--until-empty", "--timeout", "nan", env=env)
        assert r.returncode == 2 and "--timeout must be a positive number" in r.stderr
        r = lw("notify", "--db", db, "--config", cfg, "dispatch", "--once", "--json", env=env)
        assert r.returncode == 0, r.stderr
        doc = json.loads(r.stdout)
        assert doc["delivered"] == n and doc["dead"] == 0 and doc["still_queued"] == 0 and doc["stopped"] is False


def test_a_redirect_is_reported_without_the_token_its_location_carries(tmp_path):
    import http.server
    import threading

    token = "rcv-issued-Zq8f2c0mB7tKpL1vX9"

    class Redirect(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(302)
            self.send_header("Location", f"https://hooks.example.net/v2/hook?sig={token}")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        env = {SECRET_VAR: new_secret()}
        cfg = tmp_path / "lw.toml"
        webhook_toml(cfg, f"http://127.0.0.1:{srv.server_address[1]}/hook", max_attempts=1)
        db = queued_db(tmp_path, cfg, env)
        r = lw("notify", "--db", db, "--config", cfg, "dispatch", "--until-empty", "--timeout", "30", env=env)
        st = lw("notify", "--db", db, "--config", cfg, "status", env=env)
    finally:
        srv.shutdown()
    assert r.returncode == 4
    assert "redirected to https://hooks.example.net/v2/hook (query left out)" in st.stdout
    con = duckdb.connect(str(db), read_only=True)
    try:
        dump = json.dumps(con.execute("SELECT * FROM outbox").fetchall(), default=str)
        dump += json.dumps(con.execute("SELECT * FROM audit_log").fetchall(), default=str)
    finally:
        con.close()
    assert token not in r.stdout + r.stderr + st.stdout + dump
