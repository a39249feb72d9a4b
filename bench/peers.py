"""Peer engines, each set up to do the same job as leakwatch's native core on the same bytes.

Fairness choices, applied to every peer alike:

* the rule regexes are the ones leakwatch runs, with capturing groups turned non-capturing: a
  capture forces RE2 off its DFA onto a submatch engine, which would measure our regex style, not
  the engine;
* one alternation (or one database) of all rules, Latin-1 bytes in, ``(?m)`` like the native core;
* RE2-based peers get the native core's DFA memory budget (RE2's 8 MiB default thrashes on ~30
  digit-heavy rules, shared/DOMAIN.md §8).
"""
from __future__ import annotations

import contextlib
import glob
import importlib.util
import os
import re
import socket
import sysconfig

# Native core's default DFA budget; read from the extension when it exposes it.
try:
    from leakwatch._core.scanner import DEF_MAX_MEM as NATIVE_MAX_MEM
except ImportError:  # pragma: no cover - only while the core is being rebuilt
    NATIVE_MAX_MEM = 256 << 20


def noncapturing(pattern: str) -> str:
    """Rewrite every capturing group, named or not, as ``(?:``; leave classes and escapes alone."""
    out: list[str] = []
    i, n = 0, len(pattern)
    in_class = False
    while i < n:
        c = pattern[i]
        if c == "\\":
            out.append(pattern[i:i + 2])
            i += 2
            continue
        if in_class:
            if pattern.startswith("[:", i):  # POSIX class such as [[:alpha:]]
                j = pattern.find(":]", i + 2)
                if j != -1:
                    out.append(pattern[i:j + 2])
                    i = j + 2
                    continue
            if c == "]":
                in_class = False
            out.append(c)
            i += 1
            continue
        if c == "[":
            in_class = True
            out.append(c)
            i += 1
            if i < n and pattern[i] == "^":
                out.append("^")
                i += 1
            if i < n and pattern[i] == "]":  # a leading ] is a literal
                out.append("]")
                i += 1
            continue
        if c == "(":
            if pattern.startswith("(?P<", i) or (pattern.startswith("(?<", i) and pattern[i + 3:i + 4] not in ("=", "!")):
                i = pattern.index(">", i) + 1
                out.append("(?:")
                continue
            if pattern.startswith("(?", i):
                out.append("(")
                i += 1
                continue
            out.append("(?:")
            i += 1
            continue
        out.append(c)
        i += 1
    return "".join(out)


def alternation(patterns: list[str]) -> bytes:
    """All rules as one regex: ``(?m)(?:r1)|(?:r2)|…`` in Latin-1 bytes."""
    return ("(?m)" + "|".join(f"(?:{noncapturing(p)})" for p in patterns)).encode("latin-1")


# --- google-re2 -------------------------------------------------------------------------------

def google_re2_compile(patterns: list[str]):
    """google-re2's ``re2`` package (the directory ``re2/``, which wins over pyre2's ``re2.so``
    on import: a package directory is found before a same-named extension file)."""
    import re2

    if not hasattr(re2, "Options"):
        raise ImportError(f"'re2' resolved to {re2.__file__}, not google-re2")
    opts = re2.Options()
    opts.encoding = re2.Options.Encoding.LATIN1
    opts.max_mem = NATIVE_MAX_MEM
    opts.never_nl = True
    return re2.compile(alternation(patterns), opts)


# --- pyre2 --------------------------------------------------------------------------------------

def load_pyre2():
    """pyre2 installs a top-level ``re2.cpython-*.so`` that google-re2's ``re2/`` package shadows.
    Load that file directly under its own init name without touching ``sys.modules['re2']``, so
    both bindings live in one process (pyre2 carries its own vendored libre2)."""
    site = sysconfig.get_paths()["platlib"]
    hits = sorted(glob.glob(os.path.join(site, "re2.cpython-*.so")))
    if not hits:
        raise ImportError("pyre2 is not installed (no re2.cpython-*.so in site-packages)")
    spec = importlib.util.spec_from_file_location("re2", hits[0])
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    if not hasattr(mod, "set_fallback_notification"):
        raise ImportError(f"{hits[0]} is not pyre2")
    # pyre2 silently falls back to the stdlib `re` on syntax it cannot hand to RE2; that would
    # benchmark `re` under pyre2's name.
    mod.set_fallback_notification(mod.FALLBACK_EXCEPTION)
    return mod


def pyre2_compile(patterns: list[str]):
    mod = load_pyre2()
    return mod.compile(alternation(patterns), max_mem=NATIVE_MAX_MEM), mod


# --- hyperscan ----------------------------------------------------------------------------------

def hyperscan_database(patterns: list[str]):
    """Compile what hyperscan accepts; return (db, notes dict).

    Each rule is tried alone first with ``SOM_LEFTMOST`` (start offsets, like every other engine
    here), then without it (end offsets only) when SOM makes it "too large"; rules refused both
    ways are dropped and counted.
    """
    import hyperscan as hs

    base = hs.HS_FLAG_MULTILINE
    exprs, ids, flags = [], [], []
    no_som, rejected = [], []
    for i, p in enumerate(patterns):
        expr = noncapturing(p).encode("latin-1")
        for f in (base | hs.HS_FLAG_SOM_LEFTMOST, base):
            try:
                hs.Database(mode=hs.HS_MODE_BLOCK).compile(expressions=[expr], ids=[i], elements=1, flags=[f])
            except hs.error as e:
                last = str(e)
                continue
            exprs.append(expr)
            ids.append(i)
            flags.append(f)
            if not f & hs.HS_FLAG_SOM_LEFTMOST:
                no_som.append(i)
            break
        else:
            rejected.append((i, last))
    db = hs.Database(mode=hs.HS_MODE_BLOCK)
    db.compile(expressions=exprs, ids=ids, elements=len(exprs), flags=flags)
    return db, {"rejected": rejected, "no_som": no_som, "compiled": len(exprs)}


# --- presidio -----------------------------------------------------------------------------------

def presidio_analyzer(patterns: list[str], ids: list[str]):
    """AnalyzerEngine holding only PatternRecognizers built from our rules, on the ``no_op`` NLP
    engine (no spaCy model: nothing to download, and the model is not what is compared).

    Presidio compiles with ``DOTALL | MULTILINE | IGNORECASE`` by default; we pass ``MULTILINE``
    only, so each recognizer means what the rule means. None of these recognizers calls tldextract
    (only the predefined email/URL ones do, and they are not registered), so no suffix-list fetch
    can be triggered; ``no_network()`` around the run proves it.
    """
    from presidio_analyzer import AnalyzerEngine, Pattern, PatternRecognizer, RecognizerRegistry
    from presidio_analyzer.nlp_engine import NoOpNlpEngine

    nlp = NoOpNlpEngine(models=[{"lang_code": "en", "model_name": "no_op"}])
    registry = RecognizerRegistry(supported_languages=["en"], global_regex_flags=re.MULTILINE)
    entities = []
    for rid, p in zip(ids, patterns):
        entity = "LW_" + re.sub(r"\W", "_", rid).upper()
        entities.append(entity)
        registry.add_recognizer(PatternRecognizer(
            supported_entity=entity, name=f"lw_{rid}", patterns=[Pattern(rid, noncapturing(p), 0.5)],
            global_regex_flags=re.MULTILINE))
    engine = AnalyzerEngine(registry=registry, nlp_engine=nlp, supported_languages=["en"])
    return engine, entities


@contextlib.contextmanager
def no_network():
    """Make any connection attempt inside the block fail loudly instead of hanging offline."""
    def refuse(*args, **kwargs):
        raise OSError("bench: network access attempted during a benchmark")

    saved = (socket.socket.connect, socket.socket.connect_ex, socket.create_connection, socket.getaddrinfo)
    socket.socket.connect = refuse
    socket.socket.connect_ex = refuse
    socket.create_connection = refuse
    socket.getaddrinfo = refuse
    try:
        yield
    finally:
        socket.socket.connect, socket.socket.connect_ex, socket.create_connection, socket.getaddrinfo = saved
