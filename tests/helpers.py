"""Helpers shared by test modules (import as ``from helpers import ...``; pytest puts this folder
on sys.path)."""
from __future__ import annotations

import time

import duckdb


def read_rows(db, sql: str, params=None) -> list[tuple]:
    """Rows of ``sql`` from a read-only connection to ``db``, closed right after."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql, list(params or [])).fetchall()
    finally:
        con.close()


async def wait_for(pilot, cond, timeout: float, what: str, step: float = 0.1):
    """Let a Textual app run until ``cond()`` holds (returns its value); fail naming ``what``
    after ``timeout`` s."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        await pilot.pause(step)
        value = cond()
        if value:
            return value
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def webhook_config(path, url: str, secret_var: str, *, name: str = "soc") -> None:
    """Write a leakwatch.toml at ``path``: one webhook target ``name`` at ``url`` (its secret in
    the environment variable ``secret_var``) notified of every new incident, quick retries."""
    path.write_text(f"""
[notify]
backoff_base_s = 0.2

[[notify.targets]]
name = "{name}"
kind = "webhook"
url = "{url}"
credentials = {{ secret = "{secret_var}" }}

[[notify.rules]]
on = ["incident.opened"]
targets = ["{name}"]
""")


class FifoReader:
    """A named pipe at ``path`` (mode ``mode``) and a thread that reads it to its end: what a
    command writes into it lands in ``text`` after :meth:`join`."""

    def __init__(self, path, mode: int = 0o644) -> None:
        import os
        import threading

        self.path = path
        os.mkfifo(path, mode)
        os.chmod(path, mode)  # mkfifo's mode is masked by the umask
        self._chunks: list[str] = []
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        with open(self.path, encoding="utf-8") as f:
            self._chunks.append(f.read())

    def join(self, timeout: float = 30) -> str:
        self._thread.join(timeout)
        return "".join(self._chunks)


def scan_jsonl(cli, tmp_path, name: str, text: str) -> list[dict]:
    """Write ``text`` to ``tmp_path/name``, scan it into a database of its own with ``--jsonl``
    and return the findings as the JSON lines give them."""
    import json

    p = tmp_path / name
    p.write_text(text)
    out = tmp_path / f"{name}.jsonl"
    r = cli("scan", p, "--db", tmp_path / f"{name}.duckdb", "--jsonl", out, "-q")
    assert r.rc in (0, 1), r.err
    return [json.loads(x) for x in out.read_text().splitlines()]
