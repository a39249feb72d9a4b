"""Detection rules: the YAML schema, its validation, and loading.

Rules are data (``rules/*.yaml`` at the top of the repository; users add their own files). Each
file holds ``rules:``, a list of mappings whose keys are listed in ``FIELDS`` below (the shipped
files show each in use). Loading never stops at the first mistake: a file that is not valid YAML
yields one :class:`RuleError` and is skipped, a rule with a bad field yields one
:class:`RuleError` and is skipped, and every other rule still loads. Errors name the file, the
line, the rule and the field, so a typo can be fixed without reading this module.

Disabled rules (``enabled: false``) are validated like the others but are not returned: the scan
pipeline only ever sees enabled rules, and a disabled rule with a typo still gets reported.
"""
from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import re._parser as _sre  # the parser behind `re`: its tree shows nested repeats
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Any

import yaml

from leakwatch._core import PatternError, check_pattern
from leakwatch.detect.context import normalize_field
from leakwatch.detect.mask import MASKERS, NORMALIZERS
from leakwatch.detect.validators import VALIDATORS, get_validator
from leakwatch.rxcheck import nested_unbounded

# RE2 program size above which a rule is refused. The shipped rules measure 17-277; a rule of a
# few thousand instructions (e.g. `(?:[a-z0-9]{1,100}\.){1,10}`, 3016) multiplies the states of
# the combined RE2::Set DFA that every log byte goes through, and slows every other rule with it.
MAX_PROGRAM_SIZE = 2_000

_ID_RE = re.compile(r"[a-z0-9][a-z0-9_.-]*\Z")
_ENTITY_RE = re.compile(r"[A-Z][A-Z0-9_]*\Z")
_TAG_RE = re.compile(r"[a-z0-9][a-z0-9_.:-]*\Z")

FIELDS = (
    "id", "entity", "regex", "validator", "context", "confidence", "severity", "tags", "mask",
    "normalize", "enabled", "description",
)
CONTEXT_FIELDS = ("keywords", "before", "after", "fields", "required", "boost", "not_fields", "not_keywords",
                  "not_paths", "not_siblings")
VALIDATOR_KEYS = ("name", "on_fail", "boost", "penalty")  # the rest are the validator's params
ON_FAIL = ("drop", "penalize")
_TOP_LEVEL = ("rules", "description")

DEFAULT_VALIDATOR_BOOST = 0.2
DEFAULT_VALIDATOR_PENALTY = 0.3


class Severity(IntEnum):
    """How bad a finding of this rule is; ordered, so ``>=`` filters work."""

    INFO = 0
    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    @classmethod
    def parse(cls, text: str) -> Severity:
        """``"high"`` → ``Severity.HIGH`` (case-insensitive); ``ValueError`` listing valid names."""
        try:
            return cls[str(text).strip().upper()]
        except KeyError:
            valid = ", ".join(s.name.lower() for s in cls)
            raise ValueError(f"{text!r} is not one of {valid}") from None

    def __str__(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class ContextSpec:
    """What counts as context for a rule: keywords near the value, or the field it sits under."""

    keywords: tuple[bytes, ...] = ()
    before: int = 40
    after: int = 10
    fields: frozenset[str] = frozenset()
    required: bool = False
    boost: float = 0.25
    # Negative context: a value under a field whose name ends with one of ``not_fields``
    # (``trace_id``, ``x_span_id``…), or right after one of ``not_keywords``, is not this
    # entity (a Luhn-valid trace ID is not a card; ``version 4.12.0.1`` is not an address).
    not_fields: tuple[str, ...] = ()
    not_keywords: tuple[bytes, ...] = ()
    # ...or under an object one of ``not_paths`` names anywhere above it in the field's path
    # (``products.i18n.fr.nom``: a product's name in French, not a person's surname).
    not_paths: frozenset[str] = frozenset()
    # ...or in a record where a field beside it (same object) is one of ``not_siblings``
    # ({"sku": …, "name": "Knit Sock"}: a product's name). Checked where records are parsed.
    not_siblings: frozenset[str] = frozenset()

    @property
    def has_negative(self) -> bool:
        return bool(self.not_fields or self.not_keywords or self.not_paths)


@dataclass(frozen=True)
class Rule:
    """One detection rule, validated. ``line`` is the 1-based line of its ``- id:`` item."""

    id: str
    entity: str
    regex: str
    validator: str | None = None
    validator_params: tuple[tuple[str, Any], ...] = ()
    on_fail: str = "drop"
    validator_boost: float = DEFAULT_VALIDATOR_BOOST
    validator_penalty: float = DEFAULT_VALIDATOR_PENALTY
    context: ContextSpec | None = None
    confidence: float = 0.5
    severity: Severity = Severity.MEDIUM
    tags: tuple[str, ...] = ()
    mask: str = "generic"
    normalize: str = "none"
    enabled: bool = True
    source: str = ""
    line: int = 0
    has_value_group: bool = False
    description: str = field(default="", compare=False)


class RuleError(Exception):
    """A rule file or rule that could not be loaded, located as precisely as possible."""

    def __init__(self, file: str, line: int | None, rule_id: str | None, field: str | None, message: str):
        self.file = file
        self.line = line
        self.rule_id = rule_id
        self.field = field
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.file + (f":{self.line}" if self.line else "")
        parts = [where]
        if self.rule_id is not None:
            parts.append(f"rule {self.rule_id!r}")
        if self.field is not None:
            parts.append(f"field {self.field!r}")
        return ": ".join(parts) + ": " + self.message


# --- YAML with line numbers -------------------------------------------------------------------

_Base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Mapping(dict):
    """A YAML mapping that remembers where it and each of its keys start (1-based lines)."""

    line: int = 0
    key_lines: dict
    duplicates: list


_MERGE_TAG = "tag:yaml.org,2002:merge"
# Keys of one mapping once its merge keys are expanded: a hand-written data file has dozens.
_MAX_MAPPING_KEYS = 100_000


class _LineLoader(_Base):  # type: ignore[misc, valid-type]
    def flatten_mapping(self, node):  # noqa: D102 - PyYAML hook, also called for merged mappings
        self._merged_count(node)

    def _merged_count(self, node) -> int:
        """Expand ``node``'s merge keys (<<: *base) once, as PyYAML's own loaders do; return how
        many of its leading pairs came from them. Once per node: a mapping merged through many
        aliases is not expanded again and again (older PyYAML did, exponentially: a merge-key
        bomb), and its pairs stay told apart from its own on every use."""
        memo = self.__dict__.setdefault("_lw_merged", {})
        if id(node) not in memo:
            memo[id(node)] = 0  # while it is being expanded (a merge of itself)
            own = sum(1 for k, _ in node.value if k.tag != _MERGE_TAG)
            super().flatten_mapping(node)
            if len(node.value) > _MAX_MAPPING_KEYS:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark,
                    f"merge keys expand it to more than {_MAX_MAPPING_KEYS:,} keys", node.start_mark)
            memo[id(node)] = len(node.value) - own
        return memo[id(node)]

    def construct_mapping(self, node, deep=False):  # noqa: D102 - PyYAML hook
        merged = 0
        if isinstance(node, yaml.MappingNode):
            # The merged pairs come first, and the mapping's own keys override them (no
            # duplicate: that is the point of a merge).
            merged = self._merged_count(node)
        out = _Mapping()
        out.line = node.start_mark.line + 1
        out.key_lines = {}
        out.duplicates = []
        from_merge: set = set()
        for i, (key_node, value_node) in enumerate(node.value):
            key = self.construct_object(key_node, deep=deep)
            try:
                hash(key)
            except TypeError:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark, "found unhashable key", key_node.start_mark
                ) from None
            if i < merged:
                from_merge.add(key)
            elif key in out and key not in from_merge:
                out.duplicates.append((key, key_node.start_mark.line + 1))
            else:
                from_merge.discard(key)  # its own value from here: a second own one is a duplicate
            out[key] = self.construct_object(value_node, deep=deep)
            out.key_lines[key] = key_node.start_mark.line + 1
        return out


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _LineLoader.construct_mapping)


# A data file read by hand is small: past this many values once its aliases are expanded, it
# is an alias bomb (&a [*b, *b, …] nine levels deep is a billion values in a few hundred bytes),
# which would take minutes and gigabytes to walk or to quote in an error message.
MAX_YAML_VALUES = 1_000_000


def alias_bomb(doc: Any, limit: int = MAX_YAML_VALUES) -> str | None:
    """A message when ``doc`` expands to more than ``limit`` values through YAML aliases (or
    nests too deep to walk), else None. Shared parts are counted once per use, each only once
    computed."""
    memo: dict[int, int] = {}

    def size(v: Any) -> int:
        if not isinstance(v, (list, dict)):
            return 1
        k = id(v)
        if k in memo:
            return memo[k]
        memo[k] = 1  # a recursive alias (&a [*a]) counts once
        n = 1 + sum(size(x) for x in (v.values() if isinstance(v, dict) else v))
        memo[k] = n
        return n

    try:
        n = size(doc)
    except RecursionError:
        return "nested too deep to read"
    if n > limit:
        return (f"expands to more than {limit:,} values through YAML aliases (&anchor / *alias): "
                f"not read")
    return None


def duplicate_keys(value: Any, path: str = "", _seen: set[int] | None = None):
    """(dotted path, key, line) of every key given twice in ``value`` or in a mapping or list
    nested in it (each shared or recursive alias walked once). YAML keeps the last of two equal
    keys, so whatever was under the first one would be dropped without a word."""
    if not isinstance(value, (dict, list)):
        return
    seen = set() if _seen is None else _seen
    if id(value) in seen:
        return
    seen.add(id(value))
    if isinstance(value, _Mapping):
        for key, line in value.duplicates:
            yield (f"{path}.{key}" if path else str(key)), key, line
    items = value.items() if isinstance(value, dict) else ((f"[{i}]", v) for i, v in enumerate(value))
    for key, v in items:
        sub = f"{path}{key}" if isinstance(value, list) else (f"{path}.{key}" if path else str(key))
        yield from duplicate_keys(v, sub, seen)


# --- field checks ------------------------------------------------------------------------------


class _FieldError(Exception):
    def __init__(self, field: str, message: str, line: int | None = None):
        super().__init__(message)
        self.field = field
        self.message = message
        self.line = line


def _unknown_key(key: Any, valid: Iterable[str]) -> str:
    valid = list(valid)
    hint = difflib.get_close_matches(str(key), valid, n=1, cutoff=0.6)
    msg = f"unknown field {key!r}"
    if hint:
        return msg + f" (did you mean {hint[0]!r}?)"
    return msg + f" (valid: {', '.join(valid)})"


def _type_name(v: Any) -> str:
    return {str: "string", bool: "boolean", int: "integer", float: "number", list: "list"}.get(
        type(v), "mapping" if isinstance(v, dict) else type(v).__name__
    )


def _want_str(name: str, v: Any) -> str:
    if isinstance(v, bool):
        # YAML 1.1 reads unquoted yes/no/on/off/true/false as booleans.
        raise _FieldError(
            name, f"expected a string, got boolean {v!r} (quote the value: YAML reads on/off/yes/no as booleans)"
        )
    if not isinstance(v, str):
        raise _FieldError(name, f"expected a string, got {_type_name(v)} {v!r}")
    return v


def _want_bool(name: str, v: Any) -> bool:
    if not isinstance(v, bool):
        raise _FieldError(name, f"expected true or false, got {_type_name(v)} {v!r}")
    return v


def _want_number(name: str, v: Any, lo: float, hi: float) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise _FieldError(name, f"expected a number, got {_type_name(v)} {v!r}")
    if not lo <= v <= hi:
        raise _FieldError(name, f"{v!r} is out of range {lo:g}..{hi:g}")
    return float(v)


def _want_int(name: str, v: Any, lo: int, hi: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise _FieldError(name, f"expected an integer, got {_type_name(v)} {v!r}")
    if not lo <= v <= hi:
        raise _FieldError(name, f"{v!r} is out of range {lo}..{hi}")
    return v


def _want_str_list(name: str, v: Any) -> list[str]:
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list) or not all(isinstance(x, str) and x for x in v):
        raise _FieldError(name, f"expected a list of non-empty strings, got {v!r}")
    return v


def _one_of(name: str, v: Any, valid: Iterable[str]) -> str:
    v = _want_str(name, v)
    valid = list(valid)
    if v not in valid:
        hint = difflib.get_close_matches(v, valid, n=1, cutoff=0.6)
        extra = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise _FieldError(name, f"{v!r} is not one of {', '.join(valid)}{extra}")
    return v


def _parse_validator(raw: Any) -> tuple[str, dict, str, float, float]:
    if isinstance(raw, str):
        name, params, on_fail = raw, {}, "drop"
        boost, penalty = DEFAULT_VALIDATOR_BOOST, DEFAULT_VALIDATOR_PENALTY
    elif isinstance(raw, dict):
        if "name" not in raw:
            raise _FieldError("validator", "a validator mapping needs 'name'")
        name = _want_str("validator.name", raw["name"])
        on_fail = _one_of("validator.on_fail", raw.get("on_fail", "drop"), ON_FAIL)
        boost = _want_number("validator.boost", raw.get("boost", DEFAULT_VALIDATOR_BOOST), 0, 1)
        penalty = _want_number("validator.penalty", raw.get("penalty", DEFAULT_VALIDATOR_PENALTY), 0, 1)
        params = {k: v for k, v in raw.items() if k not in VALIDATOR_KEYS}
    else:
        raise _FieldError("validator", f"expected a name or a mapping, got {_type_name(raw)} {raw!r}")
    try:
        get_validator(name, params)
    except KeyError:
        hint = difflib.get_close_matches(name, list(VALIDATORS), n=1, cutoff=0.6)
        extra = f" (did you mean {hint[0]!r}?)" if hint else f" (known: {', '.join(sorted(VALIDATORS))})"
        raise _FieldError("validator", f"unknown validator {name!r}{extra}") from None
    except ValueError as e:
        raise _FieldError("validator", str(e)) from None
    return name, params, on_fail, boost, penalty


def _parse_context(raw: Any) -> ContextSpec:
    if not isinstance(raw, dict):
        raise _FieldError("context", f"expected a mapping, got {_type_name(raw)} {raw!r}")
    for k in raw:
        if k not in CONTEXT_FIELDS:
            raise _FieldError("context", _unknown_key(k, CONTEXT_FIELDS), getattr(raw, "key_lines", {}).get(k))
    keywords = _want_str_list("context.keywords", raw.get("keywords", []))
    fields = _want_str_list("context.fields", raw.get("fields", []))
    spec = ContextSpec(
        keywords=tuple(dict.fromkeys(k.lower().encode("utf-8") for k in keywords)),
        before=_want_int("context.before", raw.get("before", 40), 0, 1024),
        after=_want_int("context.after", raw.get("after", 10), 0, 1024),
        fields=frozenset(normalize_field(f) for f in fields),
        required=_want_bool("context.required", raw.get("required", False)),
        boost=_want_number("context.boost", raw.get("boost", 0.25), 0, 1),
        not_fields=tuple(dict.fromkeys(normalize_field(f) for f in
                                       _want_str_list("context.not_fields", raw.get("not_fields", [])))),
        not_keywords=tuple(dict.fromkeys(k.lower().encode("utf-8") for k in
                                         _want_str_list("context.not_keywords", raw.get("not_keywords", [])))),
        not_paths=frozenset(normalize_field(f) for f in _want_str_list("context.not_paths", raw.get("not_paths", []))),
        not_siblings=frozenset(normalize_field(f) for f in
                               _want_str_list("context.not_siblings", raw.get("not_siblings", []))),
    )
    if "" in spec.not_fields or b"" in spec.not_keywords or "" in spec.not_paths or "" in spec.not_siblings:
        raise _FieldError("context", "not_fields, not_keywords, not_paths and not_siblings need letters or digits")
    if spec.required and not spec.keywords and not spec.fields:
        raise _FieldError("context", "required context needs keywords or fields")
    return spec


def _check_regex(regex: str) -> bool:
    """Validate a rule regex; returns whether it has a ``value`` group."""
    if not regex:
        raise _FieldError("regex", "must not be empty")
    for ch in regex:
        if ord(ch) > 127:
            # The scanner reads the pattern as Latin-1 bytes, so "ß" would look for byte 0xDF,
            # never the UTF-8 bytes C3 9F that logs carry.
            utf8 = "".join(f"\\x{b:02x}" for b in ch.encode("utf-8"))
            raise _FieldError("regex", f"non-ASCII character {ch!r}: patterns match bytes; write {utf8} instead")
    try:
        size = check_pattern(regex)
    except PatternError as e:
        raise _FieldError("regex", f"RE2 rejects it: {e.message}") from None
    if size > MAX_PROGRAM_SIZE:
        raise _FieldError(
            "regex", f"too complex: RE2 program size {size} > {MAX_PROGRAM_SIZE} (narrow bounded repeats)"
        )
    if "(?P<" not in regex:
        return False
    # The evaluator finds the value group with RE2; Python's `re` must take the pattern too: the
    # reference engine (the oracle the native scanner is tested against) runs every rule with it.
    try:
        rx = re.compile(regex.encode("latin-1"), re.MULTILINE)
    except re.error as e:
        raise _FieldError("regex", f"Python's re cannot compile it (needed for the value group): {e}") from None
    names = set(rx.groupindex)
    if names - {"value"}:
        raise _FieldError("regex", f"only one named group, 'value', is allowed; found {sorted(names)}")
    if nested_unbounded(_sre.parse(regex.encode("latin-1"))):
        raise _FieldError(
            "regex", "nested unbounded repetition like (a+)+: catastrophic backtracking in Python's re "
                     "(which the reference engine uses)"
        )
    return "value" in names


def _build_rule(raw: _Mapping, source: str) -> Rule:
    kl = raw.key_lines
    for path, _key, line in duplicate_keys(raw):
        raise _FieldError(path, "given twice in this rule (YAML would keep only the last)", line)
    for k in raw:
        if k not in FIELDS:
            raise _FieldError(str(k), _unknown_key(k, FIELDS), kl.get(k))
    for required in ("id", "entity", "regex"):
        if required not in raw:
            raise _FieldError(required, "missing (required)")

    def located(name: str, fn, *args):
        try:
            return fn(*args)
        except _FieldError as e:
            if e.line is None:
                e.line = kl.get(name)
            raise

    def id_check(v: Any) -> str:
        v = _want_str("id", v)
        if not _ID_RE.match(v):
            raise _FieldError("id", f"{v!r} must match ^[a-z0-9][a-z0-9_.-]*$")
        return v

    def entity_check(v: Any) -> str:
        v = _want_str("entity", v)
        if not _ENTITY_RE.match(v):
            raise _FieldError("entity", f"{v!r} must match ^[A-Z][A-Z0-9_]*$")
        return v

    def severity_check(v: Any) -> Severity:
        try:
            return Severity.parse(_want_str("severity", v))
        except ValueError as e:
            raise _FieldError("severity", str(e)) from None

    def tags_check(v: Any) -> tuple[str, ...]:
        tags = _want_str_list("tags", v)
        for t in tags:
            if not _TAG_RE.match(t):
                raise _FieldError("tags", f"{t!r} must match ^[a-z0-9][a-z0-9_.:-]*$")
        return tuple(tags)

    rule_id = located("id", id_check, raw["id"])
    entity = located("entity", entity_check, raw["entity"])
    regex = located("regex", _want_str, "regex", raw["regex"])
    has_value = located("regex", _check_regex, regex)
    validator, params, on_fail = None, {}, "drop"
    vboost, vpenalty = DEFAULT_VALIDATOR_BOOST, DEFAULT_VALIDATOR_PENALTY
    if raw.get("validator") is not None:
        validator, params, on_fail, vboost, vpenalty = located("validator", _parse_validator, raw["validator"])
    context = located("context", _parse_context, raw["context"]) if raw.get("context") is not None else None
    return Rule(
        id=rule_id,
        entity=entity,
        regex=regex,
        validator=validator,
        validator_params=tuple(sorted(params.items())),
        on_fail=on_fail,
        validator_boost=vboost,
        validator_penalty=vpenalty,
        context=context,
        confidence=located("confidence", _want_number, "confidence", raw.get("confidence", 0.5), 0, 1),
        severity=located("severity", severity_check, raw.get("severity", "medium")),
        tags=located("tags", tags_check, raw.get("tags", [])),
        mask=located("mask", _one_of, "mask", raw.get("mask", "generic"), MASKERS),
        normalize=located("normalize", _one_of, "normalize", raw.get("normalize", "none"), NORMALIZERS),
        enabled=located("enabled", _want_bool, "enabled", raw.get("enabled", True)),
        source=source,
        line=raw.line,
        has_value_group=has_value,
        description=located("description", _want_str, "description", raw.get("description", "")),
    )


# --- loading -----------------------------------------------------------------------------------


# Data files that live beside the rules in rules/ but are not rule files: the AI-endpoint
# registry (leakwatch.detect.egress) and the Salesforce field map (leakwatch.detect.salesforce).
# A directory load skips them; naming one explicitly as a rule file still reports its errors.
NOT_RULE_FILES = frozenset({"ai_endpoints.yaml", "salesforce_fields.yaml"})


def _rule_files(paths: Iterable[str | os.PathLike]) -> list[Path]:
    files: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            # Any case: MINE.YAML written on Windows is a rule file as much as mine.yaml.
            files.extend(sorted(f for f in p.iterdir() if f.suffix.lower() in (".yaml", ".yml") and f.is_file()
                                and f.name.lower() not in NOT_RULE_FILES))
        else:
            files.append(p)
    return files


def _load_file(path: Path) -> tuple[list[tuple[Rule | None, _Mapping | None]], list[RuleError]]:
    """Parse one file into (rule or None, raw mapping) pairs plus the errors found on the way."""
    src = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        return [], [RuleError(src, None, None, None, f"cannot read: {e}")]
    try:
        doc = yaml.load(text, Loader=_LineLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else None
        col = f", column {mark.column + 1}" if mark else ""
        what = " ".join(x for x in (e.context, e.problem) if x)
        return [], [RuleError(src, line, None, None, f"YAML syntax error (line {line}{col}): {what}")]
    except yaml.YAMLError as e:
        return [], [RuleError(src, None, None, None, f"YAML error: {e}")]
    errors: list[RuleError] = []
    if doc is None:
        return [], []
    bomb = alias_bomb(doc)
    if bomb:
        return [], [RuleError(src, None, None, None, bomb)]
    if not isinstance(doc, dict):
        return [], [RuleError(src, 1, None, None, f"expected a mapping with 'rules:', got {_type_name(doc)}")]
    for k in doc:
        if k not in _TOP_LEVEL:
            errors.append(RuleError(src, doc.key_lines.get(k), None, str(k), _unknown_key(k, _TOP_LEVEL)))
    for key, line in doc.duplicates:
        # Two 'rules:' lists: YAML keeps the last, and every rule of the first would be lost.
        errors.append(RuleError(src, line, None, str(key), f"{key!r} given twice in this file: only the last one "
                                                           "would be read; merge them into one"))
    items = doc.get("rules")
    if items is None:
        errors.append(RuleError(src, doc.line, None, "rules", "missing: a rule file holds 'rules:', a list"))
        return [], errors
    if not isinstance(items, list):
        errors.append(RuleError(src, doc.key_lines.get("rules"), None, "rules", "expected a list of rules"))
        return [], errors
    out: list[tuple[Rule | None, _Mapping | None]] = []
    for i, raw in enumerate(items):
        if not isinstance(raw, _Mapping):
            errors.append(
                RuleError(src, doc.key_lines.get("rules"), None, None, f"rule #{i + 1} is not a mapping: {raw!r}")
            )
            continue
        rid = raw.get("id") if isinstance(raw.get("id"), str) else None
        try:
            out.append((_build_rule(raw, src), raw))
        except _FieldError as e:
            errors.append(RuleError(src, e.line or raw.line, rid, e.field, e.message))
            out.append((None, raw))
    return out, errors


def load_rules(paths: Iterable[str | os.PathLike] | str | os.PathLike) -> tuple[list[Rule], list[RuleError]]:
    """Load and validate rules from files and/or directories (``*.yaml``/``*.yml``, sorted).

    Returns the enabled rules, in file order then rule order, and every error found. A bad file
    or rule is reported and skipped; the rest still load. Rule ids are unique across all files:
    a later duplicate is an error (the first keeps its place), even when one of them is disabled.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    rules: list[Rule] = []
    errors: list[RuleError] = []
    seen: dict[str, str] = {}
    for path in _rule_files(paths):
        loaded, errs = _load_file(path)
        errors.extend(errs)
        for rule, raw in loaded:
            if rule is None:
                # Reserve the id of a broken rule too: fixing it must not create a duplicate.
                rid = raw.get("id") if raw is not None else None
                if isinstance(rid, str):
                    seen.setdefault(rid, f"{path}:{raw.line}")
                continue
            if rule.id in seen:
                msg = f"duplicate id (first defined at {seen[rule.id]})"
                errors.append(RuleError(rule.source, rule.line, rule.id, "id", msg))
                continue
            seen[rule.id] = f"{rule.source}:{rule.line}"
            if rule.enabled:
                rules.append(rule)
    return rules, errors


def default_rules_dir() -> Path:
    """The shipped ``rules/`` directory, or ``$LEAKWATCH_RULES`` when set."""
    env = os.environ.get("LEAKWATCH_RULES")
    if env:
        return Path(env)
    # src/leakwatch/detect/rules.py -> <repo>/rules
    return Path(__file__).resolve().parents[3] / "rules"


def _canonical(rule: Rule) -> dict:
    ctx = rule.context
    return {
        "id": rule.id,
        "entity": rule.entity,
        "regex": rule.regex,
        "validator": rule.validator,
        "validator_params": [list(p) for p in rule.validator_params],
        "on_fail": rule.on_fail,
        "validator_boost": rule.validator_boost,
        "validator_penalty": rule.validator_penalty,
        "context": None
        if ctx is None
        else {
            "keywords": [k.decode("utf-8", "replace") for k in ctx.keywords],
            "before": ctx.before,
            "after": ctx.after,
            "fields": sorted(ctx.fields),
            "required": ctx.required,
            "boost": ctx.boost,
            "not_fields": list(ctx.not_fields),
            "not_keywords": [k.decode("utf-8", "replace") for k in ctx.not_keywords],
            **({"not_paths": sorted(ctx.not_paths)} if ctx.not_paths else {}),
            **({"not_siblings": sorted(ctx.not_siblings)} if ctx.not_siblings else {}),
        },
        "confidence": rule.confidence,
        "severity": int(rule.severity),
        "tags": list(rule.tags),
        "mask": rule.mask,
        "normalize": rule.normalize,
        "enabled": rule.enabled,
    }


def ruleset_hash(rules: Iterable[Rule]) -> str:
    """SHA-256 (hex) of the rules' content, independent of file names, lines and order.

    Equal hashes mean a rescan would find the same things; descriptions do not count.
    """
    canon = sorted((_canonical(r) for r in rules), key=lambda d: d["id"])
    blob = json.dumps(canon, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(blob.encode("ascii")).hexdigest()


def rule_map(rules: Iterable[Rule]) -> Mapping[str, Rule]:
    """Rules by id."""
    return {r.id: r for r in rules}
