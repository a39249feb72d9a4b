"""``leakwatch watch`` end to end: the real CLI in a subprocess follows a directory, a PII line is
appended, and a Standard-Webhooks receiver on 127.0.0.1 must get a correctly signed webhook
about the new incident within seconds, holding masked values only. SIGTERM stops it cleanly with
its offsets saved; SIGINT exits 130; a restart sends nothing twice."""
from __future__ import annotations

import base64
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time

import pytest
from helpers import read_rows, webhook_config

from leakwatch.notify.receiver import WebhookReceiver
from leakwatch.notify.webhook_verify import verify

SECRET = "whsec_" + base64.b64encode(b"leakwatch-watch-e2e-secret-32byt").decode()
EMAIL = "olivia.martin@example.com"
CARD = "4111 1111 1111 1111"
PII_LINE = f"2024-05-01T10:00:07Z INFO checkout customer={EMAIL} card={CARD} total=129.90\n"


def config_file(tmp_path, url: str):
    cfg = tmp_path / "cfg.toml"
    webhook_config(cfg, url, "LW_E2E_WEBHOOK_SECRET")
    return cfg


class Proc:
    """``leakwatch watch …`` as a subprocess, its stdout read line by line on a thread."""

    def __init__(self, *args, env=None):
        self.p = subprocess.Popen([sys.executable, "-m", "leakwatch", "watch", *map(str, args)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        self.lines: queue.Queue[str] = queue.Queue()
        self.out: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.p.stdout:
            self.out.append(line)
            self.lines.put(line)

    def wait_line(self, text: str, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                if self.p.poll() is not None:
                    break
                continue
            if text in line:
                return line
        raise AssertionError(f"no line with {text!r}; stdout: {''.join(self.out)!r}; "
                             f"stderr: {self.p.stderr.read() if self.p.poll() is not None else ''}")

    def stop(self, sig=signal.SIGTERM, timeout: float = 30.0) -> tuple[int, str]:
        self.p.send_signal(sig)
        rc = self.p.wait(timeout)
        return rc, self.p.stderr.read()


@pytest.fixture
def env(monkeypatch):
    e = dict(os.environ)
    e["LW_E2E_WEBHOOK_SECRET"] = SECRET
    e["NO_PROXY"] = e["no_proxy"] = "127.0.0.1,localhost"
    return e


def test_watch_is_a_registered_command():
    from leakwatch.cli import COMMAND_MODULES

    assert "leakwatch.commands.watch" in COMMAND_MODULES, "add 'leakwatch.commands.watch' to cli.COMMAND_MODULES"


def test_a_pii_line_reaches_the_webhook_signed_and_masked_within_seconds(tmp_path, env):
    logs = tmp_path / "logs"
    logs.mkdir()
    log = logs / "checkout.log"
    log.write_text("2024-05-01T10:00:00Z INFO service started\n")
    db = tmp_path / "lw.duckdb"
    with WebhookReceiver(SECRET) as rx:
        cfg = config_file(tmp_path, rx.url)
        proc = Proc(logs, "--config", cfg, "--db", db, "--interval", "0.1", "-v", env=env)
        try:
            proc.wait_line("following 1 file(s)")
            t0 = time.time()
            with open(log, "a") as f:
                f.write(PII_LINE)
            assert rx.wait_for(1, timeout=10), f"no webhook; stdout: {''.join(proc.out)}"
            d = rx.deliveries[0]
            latency = d.received_at - t0
            assert latency < 5.0
            # Correctly signed: the receiver verified it; check it once more on the recorded bytes.
            assert rx.rejected == []
            assert verify(SECRET, d.headers, d.body, now=d.timestamp) == d.webhook_id
            body = d.json()
            assert body["type"] == "incident.opened"
            data = body["data"]
            assert data["incident"]["id"] == 1 and data["counts"]["findings"] == 2
            assert {"EMAIL_ADDRESS", "CREDIT_CARD"} <= set(data["entities"])
            # Masked values only: the examples are masked, the raw values appear nowhere.
            raw = d.body.decode() + json.dumps(d.headers)
            assert EMAIL not in raw and CARD not in raw and CARD.replace(" ", "") not in raw
            assert data["masked_examples"] and all("*" in m for m in data["masked_examples"])
            proc.wait_line("opened incident #1")
            proc.wait_line("→ soc: #1 incident.opened incident #1: HTTP 200")
        finally:
            rc, err = proc.stop(signal.SIGTERM)
        assert rc == 0, err
        assert EMAIL not in "".join(proc.out) + err
        assert "offsets saved" in "".join(proc.out)
        # Offsets saved: the whole file was read; the session is closed as a scan.
        assert read_rows(db, 'SELECT path, "offset", line FROM watch_files') == [(str(log), log.stat().st_size, 2)]
        assert read_rows(db, "SELECT status, delivered_at IS NOT NULL FROM outbox") == [("delivered", True)]
        assert read_rows(db, "SELECT status FROM scans") == [("ok",)]

        # A restart reads nothing again and sends nothing twice; the next new line is numbered on.
        with open(log, "a") as f:
            f.write("2024-05-01T10:00:09Z INFO heartbeat\n")
        p = subprocess.run([sys.executable, "-m", "leakwatch", "watch", str(logs), "--config", str(cfg),
                            "--db", str(db), "--once"], capture_output=True, text=True, env=env, timeout=120, check=False)
        assert p.returncode == 0, p.stderr
        time.sleep(0.3)
        assert len(rx.deliveries) == 1 and rx.request_count == 1
        assert read_rows(db, "SELECT count(*) FROM findings") == [(2,)]
        assert read_rows(db, 'SELECT "offset", line FROM watch_files') == [(log.stat().st_size, 3)]


@pytest.mark.parametrize(("sig", "rc", "status"), [(signal.SIGINT, 130, "interrupted"), (signal.SIGHUP, 0, "ok")],
                         ids=["ctrl-c", "closed-terminal"])
def test_a_signal_stops_with_offsets_saved_and_the_session_recorded(tmp_path, env, sig, rc, status):
    logs = tmp_path / "logs"
    logs.mkdir()
    log = logs / "app.log"
    log.write_text(PII_LINE)
    db = tmp_path / "lw.duckdb"
    proc = Proc(logs, "--db", db, "--interval", "0.1", "--no-notify", env=env)
    proc.wait_line("following 1 file(s)")
    got, err = proc.stop(sig)
    assert got == rc, err
    assert read_rows(db, 'SELECT "offset", line FROM watch_files') == [(log.stat().st_size, 1)]
    assert read_rows(db, "SELECT status FROM scans") == [(status,)]
    assert read_rows(db, "SELECT status FROM sources") == [("ok",)]


def test_sigterm_does_not_wait_for_sends_to_a_target_that_never_answers(tmp_path, env):
    # Two notifications hang on send threads (a listening socket that never answers, 30 s
    # timeout). Those threads are daemons: the process exits at once, and the rows left
    # 'sending' are the next dispatcher's to take over.
    import socket

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)
    port = silent.getsockname()[1]
    cfg = tmp_path / "cfg.toml"
    cfg.write_text("\n".join(f"""
[[notify.targets]]
name = "silent{i}"
kind = "webhook"
url = "http://127.0.0.1:{port}/hook{i}"
timeout_s = 30
credentials = {{ secret = "LW_E2E_WEBHOOK_SECRET" }}
""" for i in (1, 2)) + """
[[notify.rules]]
on = ["incident.opened"]
targets = ["silent1", "silent2"]
""")
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "app.log").write_text("2024-05-01T10:00:00Z INFO started\n")
    db = tmp_path / "lw.duckdb"
    try:
        proc = Proc(logs, "--db", db, "--interval", "0.1", "--config", cfg, env=env)
        proc.wait_line("following 1 file(s)")
        with open(logs / "app.log", "a") as f:
            f.write(PII_LINE)
        proc.wait_line("opened incident")
        time.sleep(1.0)  # both sends are in flight now
        t0 = time.monotonic()
        rc, err = proc.stop(signal.SIGTERM, timeout=60)
        took = time.monotonic() - t0
    finally:
        silent.close()
    assert rc == 0, err
    assert took < 15, f"SIGTERM took {took:.1f} s: it waited for the silent sends"
    assert read_rows(db, "SELECT count(*) FROM outbox WHERE status = 'sending'") == [(2,)]


def test_help_teaches_examples_and_exit_codes(env):
    p = subprocess.run([sys.executable, "-m", "leakwatch", "watch", "--help"], capture_output=True, text=True,
                       env=env, timeout=60, check=False)
    assert p.returncode == 0
    for text in ("examples:", "exit codes:", "--pull-salesforce", "rotated", "130"):
        assert text in p.stdout


def test_bad_config_and_missing_credentials_are_usage_errors(tmp_path, env):
    bad = tmp_path / "bad.toml"
    bad.write_text("[notify]\nmax_attempts = 'many'\n")
    p = subprocess.run([sys.executable, "-m", "leakwatch", "watch", str(tmp_path), "--config", str(bad), "--once",
                        "--db", str(tmp_path / "x.duckdb")], capture_output=True, text=True, env=env, timeout=60, check=False)
    assert p.returncode == 2 and "max_attempts" in p.stderr
    e = {k: v for k, v in env.items() if not k.startswith("SF_")}
    p = subprocess.run([sys.executable, "-m", "leakwatch", "watch", str(tmp_path), "--pull-salesforce", "--once",
                        "--db", str(tmp_path / "x.duckdb")], capture_output=True, text=True, env=e, timeout=60, check=False)
    assert p.returncode == 2 and "no Salesforce credentials" in p.stderr


def test_kill_9_mid_stream_then_restart_loses_nothing_and_stores_nothing_twice(tmp_path, env):
    """Findings and offsets are one transaction: a watch killed at any moment, restarted, ends
    with exactly one finding per PII line."""
    logs = tmp_path / "logs"
    logs.mkdir()
    log = logs / "stream.log"
    log.write_text("")
    db = tmp_path / "lw.duckdb"
    proc = Proc(logs, "--db", db, "--interval", "0.02", "--no-notify", env=env)
    proc.wait_line("following 1 file(s)")
    n = 400
    with open(log, "a") as f:
        for i in range(n):
            f.write(f"2024-05-01T10:00:00Z INFO order {i} for buyer{i}.k@example.com\n")
            f.flush()
            if i == n // 2:
                time.sleep(0.3)  # let the watch store part of it
                proc.p.kill()
                proc.p.wait(30)
            elif i % 20 == 0:
                time.sleep(0.01)
    stored_before = read_rows(db, "SELECT count(*) FROM findings")[0][0]
    assert 0 < stored_before <= n // 2 + 1
    p = subprocess.run([sys.executable, "-m", "leakwatch", "watch", str(logs), "--db", str(db), "--once",
                        "--no-notify"], capture_output=True, text=True, env=env, timeout=120, check=False)
    assert p.returncode == 0, p.stderr
    assert read_rows(db, "SELECT count(*), count(DISTINCT line), min(line), max(line) FROM findings") == [(n, n, 1, n)]
    assert read_rows(db, 'SELECT "offset", line FROM watch_files') == [(log.stat().st_size, n)]


def test_a_path_that_does_not_exist_is_refused_before_a_database_is_created(tmp_path):
    db = tmp_path / "w.duckdb"
    missing = tmp_path / "no-such-dir"
    p = subprocess.run([sys.executable, "-m", "leakwatch", "watch", str(missing), "--db", str(db)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2, p.stderr
    assert f"{missing}: no such file or directory" in p.stderr
    assert not db.exists()
