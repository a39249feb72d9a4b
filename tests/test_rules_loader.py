"""Rule loading: schema validation, error messages that name file/line/rule/field, resilience."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from leakwatch.detect.rules import (
    MAX_PROGRAM_SIZE,
    ContextSpec,
    Rule,
    RuleError,
    Severity,
    default_rules_dir,
    load_rules,
    ruleset_hash,
)

GOOD = """\
rules:
  - id: email
    entity: EMAIL_ADDRESS
    regex: '[a-z]+@example\\.com'
    severity: medium
    confidence: 0.6
    mask: email
    normalize: lower
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text), encoding="utf-8")
    return p


def one_rule(**fields: str) -> str:
    """A rules file with one rule whose fields are GOOD's, overridden by ``fields`` (raw YAML)."""
    base = {
        "id": "r1",
        "entity": "THING",
        "regex": "'thing-[0-9]+'",
        "severity": "low",
    }
    base.update(fields)
    body = "\n".join(f"    {k}: {v}" for k, v in base.items() if v is not None)
    return "rules:\n  - " + body.lstrip() + "\n"


def test_good_file_loads(tmp_path):
    rules, errors = load_rules([write(tmp_path, "a.yaml", GOOD)])
    assert errors == []
    (r,) = rules
    assert isinstance(r, Rule)
    assert (r.id, r.entity, r.severity, r.confidence, r.mask, r.normalize) == (
        "email", "EMAIL_ADDRESS", Severity.MEDIUM, 0.6, "email", "lower",
    )
    assert r.line == 2 and r.source.endswith("a.yaml")
    assert r.has_value_group is False and r.enabled is True


def test_typo_field_suggests_the_closest(tmp_path):
    p = write(tmp_path, "t.yaml", "rules:\n  - id: r1\n    entity: X\n    regx: 'abc'\n")
    rules, errors = load_rules([p])
    assert rules == []
    (e,) = errors
    assert isinstance(e, RuleError)
    assert (e.rule_id, e.field, e.line) == ("r1", "regx", 4)
    assert "unknown field 'regx' (did you mean 'regex'?)" in str(e)
    assert str(e).startswith(f"{p}:4: rule 'r1': field 'regx': ")


def test_bad_severity_message(tmp_path):
    p = write(tmp_path, "s.yaml", one_rule(severity="hgih"))
    _, (e,) = load_rules([p])
    assert e.field == "severity"
    assert str(e) == f"{p}:5: rule 'r1': field 'severity': 'hgih' is not one of info, low, medium, high, critical"


def test_invalid_regex_names_file_rule_and_field(tmp_path):
    p = write(tmp_path, "x.yaml", one_rule(regex="'(unclosed'"))
    _, (e,) = load_rules([p])
    assert (e.file, e.rule_id, e.field, e.line) == (str(p), "r1", "regex", 4)
    assert "RE2 rejects it" in e.message and "missing )" in e.message


@pytest.mark.parametrize(
    ("regex", "needle"),
    [
        ("'(?<=x)abc'", "RE2 rejects it"),  # lookbehind
        ("'(a)\\1'", "RE2 rejects it"),  # backreference
        ("'a*'", "empty string"),
        ("'(?:x|)'", "empty string"),
        ("'(?:[a-z0-9]{1,100}\\.){1,10}com'", "too complex"),
        ("'(?P<value>(a+)+)b'", "catastrophic"),
        ("'(?P<value>a)(?P<other>b)'", "only one named group"),
        ("'stra\u00dfe'", "write \\xc3\\x9f instead"),
    ],
)
def test_bad_regexes_are_rejected(tmp_path, regex, needle):
    _, errors = load_rules([write(tmp_path, "r.yaml", one_rule(regex=regex))])
    (e,) = errors
    assert e.field == "regex"
    assert needle in e.message


def test_too_complex_mentions_the_limit(tmp_path):
    _, (e,) = load_rules([write(tmp_path, "r.yaml", one_rule(regex="'(?:[a-z0-9]{1,100}\\.){1,10}com'"))])
    assert str(MAX_PROGRAM_SIZE) in e.message


@pytest.mark.parametrize(
    ("fields", "field", "needle"),
    [
        ({"confidence": "1.5"}, "confidence", "out of range"),
        ({"confidence": "'high'"}, "confidence", "expected a number"),
        ({"enabled": "'yes please'"}, "enabled", "expected true or false"),
        ({"tags": "{a: 1}"}, "tags", "list of non-empty strings"),
        ({"id": "'Bad Id'"}, "id", "must match"),
        ({"entity": "lower"}, "entity", "must match"),
        ({"mask": "emial"}, "mask", "did you mean 'email'"),
        ({"normalize": "lowercase"}, "normalize", "is not one of"),
        ({"validator": "luhnn"}, "validator", "did you mean 'luhn'"),
        ({"validator": "{name: entropy, minimum: 3}"}, "validator", "does not take minimum"),
        ({"validator": "{name: entropy, min: 'x'}"}, "validator", "must be a number"),
        ({"validator": "{name: luhn, on_fail: ignore}"}, "validator.on_fail", "is not one of drop, penalize"),
        ({"context": "{keywords: [a], befor: 3}"}, "context", "did you mean 'before'"),
        ({"context": "{required: true}"}, "context", "needs keywords or fields"),
        ({"context": "{keywords: a, after: -1}"}, "context.after", "out of range"),
        ({"entity": None}, "entity", "missing"),
    ],
)
def test_field_errors(tmp_path, fields, field, needle):
    _, errors = load_rules([write(tmp_path, "f.yaml", one_rule(**fields))])
    (e,) = errors
    assert e.field == field
    assert needle in e.message
    assert e.rule_id == fields.get("id", "r1").strip("'")


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    p = write(tmp_path, "broken.yaml", "rules:\n  - id: a\n    entity: X\n    regex: 'abc\n  - id: b\n")
    q = write(tmp_path, "ok.yaml", GOOD)
    rules, errors = load_rules([p, q])
    assert [r.id for r in rules] == ["email"]  # the next file still loads
    (e,) = errors
    assert e.file == str(p) and e.line is not None
    assert "YAML syntax error" in e.message and f"line {e.line}, column" in e.message
    assert str(e).startswith(f"{p}:{e.line}: ")


def test_yaml_indentation_error(tmp_path):
    p = write(tmp_path, "indent.yaml", "rules:\n  - id: a\n   entity: X\n")
    _, (e,) = load_rules([p])
    assert e.line == 3 and "YAML syntax error" in e.message


def test_duplicate_ids_across_files(tmp_path):
    a = write(tmp_path, "a.yaml", GOOD)
    b = write(tmp_path, "b.yaml", GOOD.replace("[a-z]+", "[0-9]+"))
    rules, errors = load_rules([tmp_path])
    assert len(rules) == 1 and rules[0].source == str(a)
    (e,) = errors
    assert (e.file, e.rule_id, e.field) == (str(b), "email", "id")
    assert f"first defined at {a}:2" in e.message


def test_duplicate_key_within_a_rule(tmp_path):
    p = write(tmp_path, "d.yaml", "rules:\n  - id: a\n    entity: X\n    regex: 'abc'\n    regex: 'abd'\n")
    _, (e,) = load_rules([p])
    assert (e.field, e.line) == ("regex", 5) and "twice" in e.message


def test_a_second_rules_list_is_an_error_not_a_silent_loss(tmp_path):
    """YAML keeps the last of two equal keys: the first list's rules would be dropped unseen."""
    text = GOOD + "\nrules:\n  - id: ssn2\n    entity: US_SSN\n    regex: 'ssn-[0-9]{4}'\n"
    rules, errors = load_rules([write(tmp_path, "two.yaml", text)])
    assert [(e.line, e.field) for e in errors] == [(10, "rules")]
    assert "given twice in this file" in errors[0].message and "two.yaml:10" in str(errors[0])


@pytest.mark.parametrize(("nested", "field", "line"), [
    ("    context:\n      keywords: [mail]\n      before: 20\n      before: 40\n", "context.before", 8),
    ("    validator:\n      name: entropy\n      name: luhn\n", "validator.name", 7),
])
def test_a_key_given_twice_deeper_in_a_rule_is_named(tmp_path, nested, field, line):
    p = write(tmp_path, "n.yaml", "rules:\n  - id: a\n    entity: X\n    regex: 'abc'\n" + nested)
    _, (e,) = load_rules([p])
    assert (e.rule_id, e.field, e.line) == ("a", field, line) and "twice" in e.message


BOMB = "".join(
    f"{x}: &{x} [" + ", ".join([f"*{prev}"] * 9 if prev else ['"lol"'] * 9) + "]\n"
    for prev, x in zip([None, *"abcdefgh"], "abcdefghi"))


def test_a_yaml_alias_bomb_is_refused_quickly(tmp_path):
    """Nine levels of nine aliases: a billion values in 500 bytes. Walking it (and quoting it in
    an error) ran for minutes and past 4.8 GB."""
    import time

    p = write(tmp_path, "bomb.yaml", BOMB + "rules:\n  - id: x\n    entity: X\n    regex: 'abc'\n    tags: *i\n")
    t = time.monotonic()
    rules, (e,) = load_rules([p, write(tmp_path, "good.yaml", GOOD)])
    assert time.monotonic() - t < 5  # generous: it takes ~0.1 s; before, minutes
    assert [r.id for r in rules] == ["email"]  # the other file still loads
    assert e.file == str(p) and "expands to more than 1,000,000 values through YAML aliases" in e.message


def test_a_recursive_alias_is_not_a_hang(tmp_path):
    p = write(tmp_path, "rec.yaml", GOOD + "    tags: &t [a, *t]\n")
    _, errors = load_rules([p])
    assert errors  # refused as a bad tags list, in no time


def test_yaml_merge_keys_share_fields_between_rules(tmp_path):
    """<<: *base was 'YAML syntax error … merge' and the whole file was skipped."""
    text = ("rules:\n  - &base\n    id: a\n    entity: X\n    regex: 'abc-[0-9]{3}'\n    severity: high\n"
            "  - <<: *base\n    id: b\n    regex: 'xyz-[0-9]{3}'\n")
    rules, errors = load_rules([write(tmp_path, "m.yaml", text)])
    assert errors == []
    assert [(r.id, r.regex, r.severity) for r in rules] == [("a", "abc-[0-9]{3}", Severity.HIGH),
                                                            ("b", "xyz-[0-9]{3}", Severity.HIGH)]
    _, (e,) = load_rules([write(tmp_path, "d.yaml", text + "    regex: 'xyz-[0-9]{4}'\n")])
    assert (e.rule_id, e.field, e.line) == ("b", "regex", 10)  # a key given twice by hand still is


def test_merge_keys_that_expand_past_the_key_limit_are_refused(tmp_path, monkeypatch):
    """A merge-key bomb (older PyYAML re-expanded a merged mapping on every alias,
    exponentially) is refused while loading, with the file named. The limit (100,000 keys) is
    lowered here so that the file stays small."""
    import leakwatch.detect.rules as rules_mod

    monkeypatch.setattr(rules_mod, "_MAX_MAPPING_KEYS", 1_000)
    bases = "".join(f"b{j}: &b{j} {{" + ", ".join(f"k{j}_{i}: {i}" for i in range(400)) + "}\n" for j in range(3))
    text = bases + "big: {<<: [*b0, *b1, *b2]}\n" + GOOD
    rules, (e,) = load_rules([write(tmp_path, "mb.yaml", text)])
    assert rules == [] and "more than 1,000 keys" in e.message and e.file.endswith("mb.yaml")


def test_a_mapping_merged_through_an_anchor_inside_a_merge_is_no_duplicate(tmp_path):
    from leakwatch.detect.rules import _LineLoader, duplicate_keys

    import yaml

    doc = yaml.load("inner: &inner {a: 1}\ny: {<<: &base {<<: *inner, a: 2}, b: 3}\nz: *base\n", Loader=_LineLoader)
    assert list(duplicate_keys(doc)) == []
    assert doc == yaml.load("inner: &inner {a: 1}\ny: {<<: &base {<<: *inner, a: 2}, b: 3}\nz: *base\n",
                            Loader=yaml.SafeLoader)  # the same values PyYAML's own loader gives


def test_one_bad_rule_does_not_stop_the_others(tmp_path):
    text = GOOD + (
        "  - id: broken\n    entity: X\n    regex: '(x'\n"
        "  - id: third\n    entity: THIRD\n    regex: 'third-[0-9]{3}'\n    severity: high\n"
    )
    rules, errors = load_rules([write(tmp_path, "m.yaml", text)])
    assert [r.id for r in rules] == ["email", "third"]
    assert [(e.rule_id, e.line) for e in errors] == [("broken", 11)]


def test_directory_loading_order_and_extensions(tmp_path):
    write(tmp_path, "b.yml", one_rule(id="from_b"))
    write(tmp_path, "a.yaml", one_rule(id="from_a"))
    write(tmp_path, "c.yaml", one_rule(id="from_c"))
    write(tmp_path, "notes.txt", "not: rules")
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub", "d.yaml", one_rule(id="from_sub"))  # not recursive
    rules, errors = load_rules(tmp_path)
    assert errors == []
    assert [r.id for r in rules] == ["from_a", "from_b", "from_c"]


def test_upper_case_extensions_are_rule_files_too(tmp_path):
    """MINE.YAML (as Windows tools save it) was skipped without a word."""
    write(tmp_path, "MINE.YAML", one_rule(id="from_upper"))
    write(tmp_path, "other.Yml", one_rule(id="from_mixed"))
    write(tmp_path, "AI_ENDPOINTS.YAML", "endpoints: []\n")  # the registry, in any case, is no rule file
    rules, errors = load_rules(tmp_path)
    assert errors == [] and sorted(r.id for r in rules) == ["from_mixed", "from_upper"]


def test_disabled_rules_are_validated_but_not_returned(tmp_path):
    text = one_rule(id="disabled_ok", enabled="false")
    text += "  - id: off_bad\n    entity: X\n    regex: '(x'\n    enabled: false\n"
    rules, errors = load_rules([write(tmp_path, "d.yaml", text)])
    assert rules == []
    assert [e.rule_id for e in errors] == ["off_bad"]


def test_value_group_and_context_parsed(tmp_path):
    text = one_rule(
        regex="'(?i:ssn)=(?P<value>[0-9]{9})'",
        validator="{name: entropy, min: 2.5, on_fail: penalize, boost: 0.1}",
        context="{keywords: [SSN, Social], fields: [Social_Security.Number], required: true, before: 20}",
    )
    (r,), errors = load_rules([write(tmp_path, "v.yaml", text)])
    assert errors == []
    assert r.has_value_group
    assert (r.validator, r.validator_params, r.on_fail, r.validator_boost) == (
        "entropy", (("min", 2.5),), "penalize", 0.1,
    )
    assert r.context == ContextSpec(
        keywords=(b"ssn", b"social"), before=20, after=10, fields=frozenset({"socialsecurity.number"}),
        required=True, boost=0.25,
    )


def test_yaml_boolean_id_gets_a_hint(tmp_path):
    _, (e,) = load_rules([write(tmp_path, "b.yaml", one_rule(id="off"))])
    assert e.field == "id" and "quote the value" in e.message


def test_top_level_problems(tmp_path):
    _, e1 = load_rules([write(tmp_path, "a.yaml", "- id: x\n")])
    assert "expected a mapping" in e1[0].message
    _, e2 = load_rules([write(tmp_path, "b.yaml", "rulez: []\n")])
    assert {e.field for e in e2} == {"rulez", "rules"}
    assert any("did you mean 'rules'" in e.message for e in e2)
    _, e3 = load_rules([write(tmp_path, "c.yaml", "rules:\n  - just a string\n")])
    assert "not a mapping" in e3[0].message
    rules, e4 = load_rules([write(tmp_path, "d.yaml", "")])
    assert rules == [] and e4 == []
    _, e5 = load_rules([tmp_path / "missing.yaml"])
    assert "cannot read" in e5[0].message


def test_severity_parse_and_str():
    assert Severity.parse("HIGH") is Severity.HIGH
    assert str(Severity.CRITICAL) == "critical"
    assert Severity.CRITICAL > Severity.LOW
    with pytest.raises(ValueError, match="info, low, medium, high, critical"):
        Severity.parse("urgent")


def test_ruleset_hash_is_stable_and_content_sensitive(tmp_path):
    a = write(tmp_path, "a.yaml", GOOD)
    r1, _ = load_rules([a])
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    r2, _ = load_rules([write(moved, "z.yaml", "# a comment shifts the lines\n" + GOOD)])
    assert ruleset_hash(r1) == ruleset_hash(r2)
    r3, _ = load_rules([write(moved, "z.yaml", GOOD.replace("0.6", "0.7"))])
    assert ruleset_hash(r3) != ruleset_hash(r1)
    assert len(ruleset_hash(r1)) == 64


def test_default_rules_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("LEAKWATCH_RULES", raising=False)
    d = default_rules_dir()
    assert d.name == "rules" and (d / "secrets.yaml").is_file()
    monkeypatch.setenv("LEAKWATCH_RULES", str(tmp_path))
    assert default_rules_dir() == tmp_path
