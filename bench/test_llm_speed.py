"""Local summary speed (issue 7): the default model (SmolLM2-135M-Instruct Q4_1) writing the
five-sentence responder summary of a fixed incident whose prompt is over 500 tokens.

Figures per round: time to first token (from the start of generation, so it includes reading
the prompt), generation speed after the first token, and the whole summary (five parts: the
first reads the facts block, the later ones reuse llama.cpp's KV cache for it and read only
their question). Cold rounds call ``Llama.reset()`` first so that every one reads the whole
prompt, as the first summary of an incident does; one warm round shows a repeat (the console
re-running a summary). Threads: the default (``[llm] threads = 0``: half the CPUs), and one
round with all CPUs where that differs.

The lead's target: a summary complete in under 10 s on the 2-core CPU box. Nothing here asserts
on a timing; the table says whether the target is met and ``bench/results/llm_speed.json``
keeps the numbers. With a CUDA build of llama-cpp-python the same run records the GPU figures
(backend and offloaded layers are in the JSON). Needs no corpus; skipped (not failed) when the
model is not installed: the test suite's tests/test_llm_real.py is the one that fails then.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from leakwatch.config import Config, LlmConfig, OrganisationConfig
from leakwatch.detect.mask import mask_card, mask_email, mask_national_id
from leakwatch.incidents.facts import Destination, IncidentFacts

RESULTS = Path(__file__).resolve().parent / "results" / "llm_speed.json"
COLD_ROUNDS = int(os.environ.get("LEAKWATCH_BENCH_LLM_ROUNDS", "3"))
TARGET_TOTAL_S = 10.0
MIN_PROMPT_TOKENS = 500

AWARE = datetime(2025, 3, 4, 9, 15, tzinfo=UTC)
NOW = AWARE + timedelta(hours=30)
FACTS = IncidentFacts(
    incident_id=42, title="Customer PII in prompts to api.openai.com", status="contained", severity="high",
    opened_at=AWARE - timedelta(minutes=5), clock_events={"awareness": AWARE, "detection": AWARE - timedelta(minutes=20)},
    first_seen=datetime(2025, 3, 1, 7, 0, tzinfo=UTC), last_seen=datetime(2025, 3, 4, 8, 41, tzinfo=UTC),
    entities=("EMAIL_ADDRESS", "CREDIT_CARD", "UK_NINO"), categories=("contact", "financial", "national_id"),
    objects=("Contact", "Case"), fields=("Contact.Email", "Case.Description"),
    findings=5120, records=3410, data_subjects=1240,
    destinations=(Destination("OpenAI", "us", "US", True, 1240, 3410),),
    patterns=("P3_prompt_pii",), systems=("salesforce",), subject_jurisdictions=("EU", "UK"),
    masked_examples=(mask_email(b"jane.doe@example.com"), mask_card(b"4111111111111111"), mask_national_id(b"AB123456C")),
    responder={"likely_consequences": "Targeted phishing using customers' names and e-mail addresses; card fraud is "
                                      "unlikely because only the last four digits of cards were in the prompts' context.",
               "measures": "Calls to the AI service were blocked at the egress proxy; the vendor was asked to delete "
                           "the requests.", "subject_categories": "retail customers"},
    steps_done=(("stop-flow", "Stop the data flow to the AI service", AWARE + timedelta(hours=3)),),
    org=OrganisationConfig(name="Acme Retail GmbH", timezone="Europe/Berlin", customer_jurisdictions=("EU", "UK")),
)


def _thread_settings() -> list[int]:
    from leakwatch.llm.models import default_threads

    every = os.cpu_count() or 1
    return [default_threads()] + ([every] if every != default_threads() else [])


def _row(s, threads: int, mode: str) -> dict:
    return {"threads": threads, "mode": mode, "ttft_s": round(s.ttft_s, 3) if s.ttft_s is not None else None,
            "tokens_per_s": round(s.tokens_per_s, 1) if s.tokens_per_s else None, "total_s": round(s.total_s, 3),
            "prompt_tokens": s.prompt_tokens, "tokens": s.tokens, "label": s.label}


def test_llm_summary_speed(benchmark):
    from leakwatch.incidents.clocks import incident_clocks
    from leakwatch.incidents.regimes import load_regimes
    from leakwatch.llm import models
    from leakwatch.llm.summarize import stream_summary

    if not models.llama_available():
        pytest.skip("llama-cpp-python is not installed (scripts/bootstrap.sh)")
    env = {k: v for k, v in os.environ.items() if k != models.MODEL_ENV}
    if not models.default_model_path(env).is_file():
        pytest.skip("the default model is not installed: leakwatch models install")
    clocks = incident_clocks(FACTS, load_regimes(), NOW, only_applicable=True)
    rows: list[dict] = []
    loads: dict[int, float] = {}
    backend = models.backend_info()
    for threads in _thread_settings():
        config = Config(llm=LlmConfig(threads=threads))
        import time

        t = time.perf_counter()
        model = models.load_model(config, env)
        loads[threads] = round(time.perf_counter() - t, 3)

        def cold(config=config, model=model, threads=threads):
            model.llm.reset()   # forget the cached prompt: every round reads all of it
            rows.append(_row(stream_summary(FACTS, config, clocks=clocks, env=env), threads, "cold"))

        if threads == _thread_settings()[0]:
            benchmark.pedantic(cold, rounds=COLD_ROUNDS, iterations=1, warmup_rounds=0)
        else:
            cold()   # one round: on a busy machine all-CPU threads are very slow (see default_threads)
        rows.append(_row(stream_summary(FACTS, config, clocks=clocks, env=env), threads, "warm"))
        models.unload_all()
    summary = []
    for threads in _thread_settings():
        for mode in ("cold", "warm"):
            rs = [r for r in rows if r["threads"] == threads and r["mode"] == mode]
            summary.append({"threads": threads, "mode": mode, "rounds": len(rs),
                            "ttft_s": statistics.median(r["ttft_s"] for r in rs),
                            "tokens_per_s": statistics.median(r["tokens_per_s"] for r in rs),
                            "total_s": statistics.median(r["total_s"] for r in rs),
                            "prompt_tokens": rs[0]["prompt_tokens"], "tokens": rs[0]["tokens"],
                            "labels": sorted({r["label"] for r in rs})})
    main = summary[0]
    out = {
        "model": models.DEFAULT_MODEL.name, "backend": backend.name, "gpu_offload": backend.gpu_offload,
        "llama_cpp_python": backend.version, "cpus": os.cpu_count(), "machine": platform.machine(),
        "python": platform.python_version(), "load_s": loads, "target_total_s": TARGET_TOTAL_S,
        "target_met": main["total_s"] < TARGET_TOTAL_S, "summary": summary, "rounds": rows,
        "gpu": "none in this run" if not backend.gpu_offload else f"{backend.name}, all layers offloaded",
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    benchmark.extra_info.update(engine="llm_summary", ttft_s=main["ttft_s"], tokens_per_s=main["tokens_per_s"],
                                total_s=main["total_s"])
    print(f"\n\nlocal summary speed: {out['model']} on {backend.name} (llama-cpp-python {backend.version}, "
          f"{os.cpu_count()} CPUs); prompt {main['prompt_tokens']} tokens, {main['tokens']} generated")
    print(f"{'threads':>7}  {'mode':<5} {'TTFT s':>7} {'tok/s':>7} {'total s':>8}  labels")
    for r in summary:
        print(f"{r['threads']:>7}  {r['mode']:<5} {r['ttft_s']:>7.2f} {r['tokens_per_s']:>7.1f} {r['total_s']:>8.2f}  "
              f"{', '.join(r['labels'])}")
    print(f"target: summary complete < {TARGET_TOTAL_S:.0f} s: {'met' if out['target_met'] else 'NOT met'} "
          f"(default threads, cold); GPU: {out['gpu']}; results: {RESULTS}")
    assert main["prompt_tokens"] >= MIN_PROMPT_TOKENS   # the incident is the size the issue asks for
