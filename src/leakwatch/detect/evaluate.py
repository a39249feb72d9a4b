"""Second stage: turn one regex match into a scored verdict (or drop it).

The native scanner reports where each rule's regex matched; :class:`Evaluator` decides what the
value is (the ``value`` group or the whole match), whether it survives its validator, which field
it sits under and whether the rule's context is there, and scores it. Everything that depends
only on the rule is prepared once in ``Evaluator.__init__``; ``evaluate`` is called once per
regex match and stays at a few microseconds.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

from leakwatch.detect.context import field_before, has_context, normalize_field, not_context
from leakwatch.detect.rules import ContextSpec, Rule
from leakwatch.detect.validators import get_validator


class Verdict(NamedTuple):
    """A candidate that survived: value span within the line (end exclusive) and its score."""

    value_start: int
    value_end: int
    confidence: float
    score_base: float
    score_validator: float
    score_context: float
    field: str | None


# Callers pass the same few CSV column names millions of times.
_normalized = functools.lru_cache(maxsize=4096)(normalize_field)


class _Plan(NamedTuple):
    value_rx: Any | None  # a ValueRegex (see value_regex)
    value_group: int
    validator: Callable[[bytes], bool] | None
    drop_on_fail: bool
    boost: float
    penalty: float
    context: ContextSpec | None
    base: float


def value_regex(pattern: str):
    """A rule's regex for finding its ``value`` group inside a match the scanner found: RE2 with
    the scanner's settings (Latin-1, multi-line anchors; :class:`leakwatch._core.scanner.ValueRegex`),
    so the group is found in linear time. Python's backtracking ``re`` took exponential time on
    some patterns that pass every load check (``(?:(?:a|a)*b)?(?:a|a)*c`` on a run of "a"s), and
    a scan could not even be interrupted while it ran."""
    from leakwatch._core.scanner import ValueRegex

    return ValueRegex(pattern)


class Evaluator:
    """Scores matches of ``rules`` (the same list, in the same order, the scanner was built from)."""

    def __init__(self, rules: list[Rule]):
        self.rules = list(rules)
        plans = []
        for r in self.rules:
            value_rx = value_regex(r.regex) if r.has_value_group else None
            group = value_rx.groupindex["value"] if value_rx is not None else 0
            validator = get_validator(r.validator, dict(r.validator_params)) if r.validator else None
            plans.append(
                _Plan(
                    value_rx,
                    group,
                    validator,
                    r.on_fail == "drop",
                    r.validator_boost,
                    -r.validator_penalty,
                    r.context,
                    r.confidence,
                )
            )
        self._plans = plans

    def value_start(self, rule_index: int, line: bytes, start: int, end: int) -> int:
        """Where the value of the match ``line[start:end]`` begins (its ``value`` group, if any)."""
        value_rx, group = self._plans[rule_index][:2]
        if value_rx is not None:
            m = value_rx.match(line, start, end)
            if m is not None and m.start(group) >= 0:
                return m.start(group)
        return start

    def evaluate(self, rule_index: int, line: bytes, start: int, end: int, field: str | None = None) -> Verdict | None:
        """Score the match ``line[start:end]`` of rule ``rule_index``; ``None`` means drop it.

        ``line`` is the record without its newline. ``field`` is the key the caller already
        knows the value sits under (a CSV column name, normalized here); otherwise it is read
        from the line with :func:`~leakwatch.detect.context.field_before`.
        """
        value_rx, group, validator, drop_on_fail, boost, penalty, ctx, base = self._plans[rule_index]
        vs, ve = start, end
        if value_rx is not None:
            m = value_rx.match(line, start, end)
            if m is not None:
                gs, ge = m.span(group)
                if gs >= 0:
                    vs, ve = gs, ge
        s_val = 0.0
        if validator is not None:
            if validator(line[vs:ve]):
                s_val = boost
            elif drop_on_fail:
                return None
            else:
                s_val = penalty
        field = field_before(line, vs) if field is None else _normalized(field)
        s_ctx = 0.0
        if ctx is not None:
            if ctx.has_negative and not_context(ctx, line, vs, field):
                return None
            if has_context(ctx, line, vs, ve, field):
                s_ctx = ctx.boost
            elif ctx.required:
                return None
        conf = base + s_val + s_ctx
        if conf > 1.0:
            conf = 1.0
        elif conf < 0.0:
            conf = 0.0
        return Verdict(vs, ve, conf, base, s_val, s_ctx, field)
