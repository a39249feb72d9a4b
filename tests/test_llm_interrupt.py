"""Ctrl-C during ``leakwatch summarize``, with the real CLI in a subprocess and the real default
model (SmolLM2-135M-Instruct Q4_1, installed by ``scripts/bootstrap.sh`` / ``leakwatch models
install``; a missing model FAILS these tests, as in test_llm_real.py).

Ctrl-C must stop the model between tokens (or, in the first part's long prompt pass, between
graph nodes), print what was generated marked as interrupted and unverified plus the template
summary, and exit 130: no traceback, no "internal error" (exit 70: the worker thread's result
was missing), no crash (SIGSEGV: the interpreter shut down while llama.cpp was still running in
the worker thread).
"""
from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time

import pytest

from leakwatch.llm import models

SETUP = "run scripts/bootstrap.sh (or: .venv/bin/pip install llama-cpp-python==0.3.36 && leakwatch models install)"
HEADER_END = "Ctrl-C stops)\n\n"


@pytest.fixture(scope="module")
def env() -> dict[str, str]:
    """The environment with no $LEAKWATCH_MODEL/$LEAKWATCH_CONFIG/$LEAKWATCH_DB: the default
    model in the user cache is used."""
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        pytest.fail(f"llama-cpp-python is not installed: {SETUP}")
    e = {k: v for k, v in os.environ.items() if k not in (models.MODEL_ENV, "LEAKWATCH_CONFIG", "LEAKWATCH_DB")}
    path = models.default_model_path(e)
    if not path.is_file():
        pytest.fail(f"the default model is not installed ({path} is missing): {SETUP}")
    e["PYTHONUNBUFFERED"] = "1"
    return e


@pytest.fixture(scope="module")
def db(env, tmp_path_factory):
    """A database with one incident (an e-mail address and a card number sent to OpenAI)."""
    d = tmp_path_factory.mktemp("interrupt")
    (d / "app.log").write_text(json.dumps({"email": "jane.doe@example.com", "card": "4111 1111 1111 1111",
                                           "url": "https://api.openai.com/v1/chat/completions"}) + "\n")
    for args in (("scan", "app.log", "--db", "lw.duckdb", "-q"), ("incidents", "group", "--db", "lw.duckdb")):
        p = subprocess.run([sys.executable, "-m", "leakwatch", *args], cwd=d, env=env, capture_output=True, check=False,
                           text=True, timeout=60)
        assert p.returncode in (0, 1), p.stderr
    p = subprocess.run([sys.executable, "-m", "leakwatch", "incidents", "list", "--json", "--db", "lw.duckdb"],
                       cwd=d, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert p.returncode == 0, p.stderr
    rows = json.loads(p.stdout)
    assert rows, p.stdout
    return d, str(rows[0]["incident_id"])


def _start(db, env, *extra: str) -> subprocess.Popen:
    d, incident = db
    return subprocess.Popen([sys.executable, "-m", "leakwatch", "summarize", incident, "--db", "lw.duckdb", *extra],
                            cwd=d, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _read_until(p: subprocess.Popen, cond, timeout: float = 60) -> str:
    """Read the child's stdout as it comes until ``cond(text)`` holds; returns the text so far."""
    buf = b""
    end = time.monotonic() + timeout
    fd = p.stdout.fileno()
    while time.monotonic() < end:
        r, _, _ = select.select([fd], [], [], 0.05)
        if r:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            buf += chunk
            if cond(buf.decode("utf-8", "replace")):
                return buf.decode("utf-8", "replace")
    p.kill()
    p.communicate()
    pytest.fail(f"the summary did not reach the expected point in {timeout} s; output so far: {buf!r}")


def _interrupt(p: subprocess.Popen, before: str) -> tuple[int, str, str, float]:
    """Ctrl-C now; (exit status, all of stdout, stderr, seconds from the signal to the exit)."""
    t0 = time.monotonic()
    p.send_signal(signal.SIGINT)
    try:
        out, err = p.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        pytest.fail(f"still running 30 s after Ctrl-C; stderr: {err.decode(errors='replace')}")
    return p.returncode, before + out.decode("utf-8", "replace"), err.decode("utf-8", "replace"), time.monotonic() - t0


def _no_crash(rc: int, err: str) -> None:
    assert rc == 130, f"exit status {rc} (70: internal error, -11/139: crashed); stderr:\n{err}"
    assert "Traceback" not in err and "internal error" not in err, err
    assert "leakwatch: interrupted" in err


def test_ctrl_c_while_generating_prints_the_partial_text_and_the_template(db, env):
    p = _start(db, env, "--stream")
    # Wait for the first generated word: the model is then in the middle of the first of five parts.
    before = _read_until(p, lambda t: HEADER_END in t and t.split(HEADER_END, 1)[1].strip())
    partial = before.split(HEADER_END, 1)[1]
    rc, out, err, took = _interrupt(p, before)
    print(f"\nstopped {took:.2f} s after Ctrl-C:\n{out}")
    _no_crash(rc, err)
    assert took < 5, f"{took:.1f} s from Ctrl-C to exit: generation is not stopped between tokens"
    assert "[UNVERIFIED] INTERRUPTED with Ctrl-C" in out and "incomplete" in out
    assert "[VERIFIED]" not in out
    generated = out.split(HEADER_END, 1)[1].split("\n\n[UNVERIFIED]", 1)[0]
    assert generated.startswith(partial.strip()) and generated.strip()
    assert "Template summary, from the facts alone:" in out
    template = out.split("Template summary, from the facts alone:", 1)[1]
    assert "OpenAI" in template


def test_ctrl_c_while_the_model_loads_prints_the_template(db, env):
    # The header is written just before the worker thread starts loading the model, so a Ctrl-C
    # sent as soon as it is read lands while the model loads or reads the prompt: before any token.
    p = _start(db, env, "--stream")
    before = _read_until(p, lambda t: HEADER_END in t)
    rc, out, err, took = _interrupt(p, before)
    print(f"\nstopped {took:.2f} s after Ctrl-C:\n{out}")
    _no_crash(rc, err)
    assert took < 5
    assert "[INTERRUPTED] stopped with Ctrl-C before the model wrote anything." in out
    assert "Template summary, from the facts alone:" in out and "OpenAI" in out


def test_ctrl_c_without_stream_and_json(db, env):
    # Without --stream nothing shows progress; wait for the model to be loaded and working (the
    # time the streamed run above took to its header is far less), then Ctrl-C: whatever phase
    # it lands in, the exit is 130 without a traceback, and the JSON says it was interrupted.
    p = _start(db, env, "--json")
    time.sleep(2.5)
    rc, out, err, took = _interrupt(p, "")
    _no_crash(rc, err)
    assert took < 5
    if out.strip():   # the signal landed after the worker started (else before: just "interrupted")
        d = json.loads(out)
        assert d["interrupted"] is True and d["verified"] is False and d["template_text"]
