"""leakwatch.sources.formats on hand-made samples of each documented log format.

Fixtures live in tests/data/formats/; every PII value in them is synthetic (example.com,
555 numbers). Each test looks a field up by the offset of a value in the real line, the way
the pipeline will after a scanner match.
"""
from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leakwatch.errors import LeakwatchError
from leakwatch.sources.formats import (
    FORMAT_NAMES,
    FormatError,
    ParsedRecord,
    field_at,
    make_parser,
    parse_timestamp,
    role_at,
    sniff,
)
from leakwatch.sources.formats._csv import cell_text, split_row
from leakwatch.sources.formats._json import decode_json_string, fast_record, walk_json
from leakwatch.sources.formats._record import AttrCollector, norm_key
from leakwatch.sources.formats._time import _ELF, _EPOCH

DATA = Path(__file__).parent / "data" / "formats"


def lines_of(name: str) -> list[bytes]:
    return [ln for ln in (DATA / name).read_bytes().split(b"\n") if ln]


def head_of(name: str) -> bytes:
    return (DATA / name).read_bytes()[:8192]


def parser_for(name: str, **kw):
    """The parser the pipeline would build for a fixture: sniffed format, first line as header."""
    fmt = sniff(head_of(name), str(DATA / name))
    return make_parser(fmt, header_line=lines_of(name)[0], **kw)


def at(line: bytes, needle: bytes, nth: int = 0) -> int:
    """Offset of the ``nth`` occurrence of ``needle`` in ``line``."""
    pos = -1
    for _ in range(nth + 1):
        pos = line.index(needle, pos + 1)
    return pos


def value(line: bytes, rec: ParsedRecord, name: str) -> bytes:
    """Bytes of the first field called ``name``."""
    for f, s, e in rec.fields:
        if f == name:
            return line[s:e]
    raise AssertionError(f"no field {name!r} in {[f for f, _, _ in rec.fields]}")


def assert_spans_sane(line: bytes, rec: ParsedRecord) -> None:
    for name, s, e in rec.fields:
        assert isinstance(name, str) and name
        assert 0 <= s <= e <= len(line), (name, s, e, len(line))


# --- sniffing ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("fixture", "expected"), [
    ("elf_apexcallout_release_a.csv", "eventlogfile"),
    ("elf_apexcallout_release_b.csv", "eventlogfile"),
    ("elf_restapi.csv", "eventlogfile"),
    ("report_export.csv", "csv"),
    ("elf_headerless.csv", "text"),
    ("apigw_access.jsonl", "apigw"),
    ("app_llm.jsonl", "jsonl"),
    ("heroku_drain.log", "heroku"),
    ("heroku_router.log", "heroku"),
    ("app_logfmt.log", "logfmt"),
    ("mule-app-orders-api.log", "mule"),
    ("access_combined.log", "combined"),
    ("apigee_messagelogging.log", "text"),  # free-form template: only a user regex can read it
])
def test_sniff_each_sample(fixture, expected):
    assert sniff(head_of(fixture), str(DATA / fixture)) == expected


def test_sniff_headerless_elf_is_not_named_after_its_first_row():
    """A data row where the header should be: its cells (a TIMESTAMP, IDs) are not column names,
    so the file is `text` (field_before heuristics), and forcing the format fails loudly."""
    head = head_of("elf_headerless.csv")
    assert sniff(head, "ApexCallout.csv") == "text"
    with pytest.raises(FormatError) as e:
        make_parser("eventlogfile", header_line=lines_of("elf_headerless.csv")[0])
    msg = str(e.value)
    assert "not a CSV header" in msg and "column 2" in msg
    assert "20240311160000" not in msg and "0055j" not in msg  # no data in the message


def test_sniff_mule_by_file_name_and_by_content():
    assert sniff(b"", "/logs/mule-app-orders-api.log") == "mule"
    assert sniff(b"", "/logs/mule-app-orders-api.log.2.gz") == "mule"
    # A Mule app configured with a JSON layout: the content wins over the name.
    assert sniff(b'{"level":"INFO","message":"x"}\n{"level":"INFO","message":"y"}\n',
                 "mule-app-orders.log") == "jsonl"
    # Content alone: one header line among stack-trace continuation lines is enough.
    lines = lines_of("mule-app-orders-api.log")
    assert sniff(b"\n".join(lines[:2] + [b"\tat x.y(Z.java:1)"] * 6) + b"\n", "app.log") == "mule"


@pytest.mark.parametrize(("head", "expected"), [
    (b"", "text"),
    (b"\n\n  \n", "text"),
    (b"Hello, world\nThis is, in fact, prose\n", "text"),
    (b"\x00\x01\x02\xff\xfe" * 100, "text"),
    (b"plain text line\nanother {\"a\": 1}\nmore text\n", "text"),
    # head cut in the middle of the last JSON line: the cut line does not vote
    (b'{"a": 1}\n{"b": 2}\n{"c": "trunc', "jsonl"),
    (b"\xef\xbb\xbfId,Email,Phone\r\n1,a@example.com,555\r\n", "csv"),
    # one header line, no rows yet
    (b'"EVENT_TYPE","TIMESTAMP","USER_ID"\n', "eventlogfile"),
    # headerless rows whose cells all look like names: the repeating first column gives it away
    (b'"Login","Success","Chrome"\n"Login","Failed","Firefox"\n', "text"),
    # a quoted cell with a newline breaks one row; the header still has rows
    (b'Name,Street,City\nJane,"1 Main St\nApt 2",Springfield\nBob,2 Elm St,Shelbyville\n', "csv"),
    # any RFC 5424 line has drain-like framing; only Heroku's sources make it heroku
    (b"<14>1 2024-03-11T16:00:00Z web-01 nginx 123 - GET /\n" * 3, "text"),
])
def test_sniff_edge_cases(head, expected):
    assert sniff(head) == expected


def test_sniff_never_raises_on_odd_input():
    assert sniff(None) == "text"  # type: ignore[arg-type]
    assert sniff(b"[" * 5000 + b"\n" + b"{" * 5000) == "text"


# --- eventlogfile / csv ----------------------------------------------------------------------------


@pytest.mark.parametrize("fixture", ["elf_apexcallout_release_a.csv", "elf_apexcallout_release_b.csv"])
def test_elf_apexcallout_url_column_is_found_by_header_in_both_releases(fixture):
    """The two releases put URL at different indexes (17 and 6); the header decides."""
    p = parser_for(fixture)
    assert p.name == "eventlogfile"
    line = lines_of(fixture)[1]
    rec = p.parse(line)
    assert rec.problem is None
    assert_spans_sane(line, rec)
    assert field_at(rec, at(line, b"api.")) == "URL"
    # The cell is """https://…""": the span is the URL itself, without any quotes.
    assert value(line, rec, "URL").startswith(b"https://api.")
    assert value(line, rec, "URL").endswith((b"/completions", b"/messages"))
    assert rec.attrs["url"] == value(line, rec, "URL").decode()
    assert rec.attrs["event_type"] == "ApexCallout"
    assert rec.attrs["method"] == "POST"
    assert rec.attrs["status"] == "200"
    assert len(rec.attrs["user"]) == 18  # USER_ID_DERIVED beats the 15-char USER_ID
    assert rec.ts is not None and rec.ts.tzinfo is not None and rec.ts.utcoffset().total_seconds() == 0


def test_elf_release_columns_really_differ():
    """Guard for the test above: the fixtures must disagree on the URL position."""
    a = make_parser("eventlogfile", header_line=lines_of("elf_apexcallout_release_a.csv")[0])
    b = make_parser("eventlogfile", header_line=lines_of("elf_apexcallout_release_b.csv")[0])
    assert a.columns.index("URL") != b.columns.index("URL")


def test_elf_timestamps_and_query_in_url():
    p = parser_for("elf_apexcallout_release_a.csv")
    first, second = (p.parse(ln) for ln in lines_of("elf_apexcallout_release_a.csv")[1:3])
    assert first.ts == datetime(2024, 3, 11, 16, 0, 0, tzinfo=UTC)
    assert second.ts == datetime(2024, 3, 11, 16, 5, 12, 250000, tzinfo=UTC)
    line = lines_of("elf_apexcallout_release_a.csv")[2]
    assert field_at(second, at(line, b"jane.doe@")) == "URL"
    assert field_at(second, at(line, b"203.0.113.9")) == "CLIENT_IP"
    assert field_at(second, 0) is None  # the opening quote is not part of the value
    assert field_at(second, 1) == "EVENT_TYPE"


def test_elf_timestamp_column_alone():
    """No TIMESTAMP_DERIVED: the compact TIMESTAMP is UTC."""
    p = make_parser("eventlogfile", header_line=b'"EVENT_TYPE","TIMESTAMP","USER_ID"')
    rec = p.parse(b'"Login","20240311235959.999","0055j00000AT6I1"')
    assert rec.ts == datetime(2024, 3, 11, 23, 59, 59, 999000, tzinfo=UTC)
    assert p.parse(b'"Login","not a time","0055j00000AT6I1"').ts is None
    assert p.parse(b'"Login","not a time","0055j00000AT6I1"').problem is None


def test_elf_restapi_attributes():
    p = parser_for("elf_restapi.csv")
    line = lines_of("elf_restapi.csv")[1]
    rec = p.parse(line)
    assert rec.problem is None
    assert rec.attrs == {
        "event_type": "RestApi", "user": "0055j00000AT6I1AAL", "app": "0H45j000000CzWq", "method": "GET",
        "status": "200", "path": "/services/data/v59.0/query", "entity": "Contact", "rows": "2000",
    }
    assert "url" not in rec.attrs  # URI is the inbound path, not an outbound call


def test_elf_rows_with_too_many_and_too_few_columns():
    p = parser_for("elf_restapi.csv")
    many, few = lines_of("elf_restapi.csv")[2:4]
    rec = p.parse(many)
    assert rec.problem == "row has 23 columns, header has 22"
    assert rec.fields[-1][0] == "column[22]"
    assert value(many, rec, "column[22]") == b"unexpected"
    assert field_at(rec, at(many, b"Contact")) == "ENTITY_NAME"  # what can be named still is
    rec = p.parse(few)
    assert rec.problem == "row has 12 columns, header has 22"
    assert len(rec.fields) == 12
    assert rec.attrs["entity"] == "Contact"


def test_report_export_is_csv_and_names_cells():
    name = "report_export.csv"
    p = parser_for(name)
    assert p.name == "csv"
    assert p.columns == ["Id", "FirstName", "LastName", "Email", "Phone"]
    jane, ana, bob, extra, short = lines_of(name)[1:6]
    rec = p.parse(jane)
    assert rec.problem is None
    assert field_at(rec, at(jane, b"415 555")) == "Phone"
    assert field_at(rec, at(jane, b"jane.doe")) == "Email"
    assert value(jane, rec, "Phone") == b"+1 415 555 0134"
    rec = p.parse(ana)  # a quoted cell holding a comma
    assert rec.problem is None
    assert value(ana, rec, "FirstName") == "Ana, María".encode()
    assert field_at(rec, at(ana, b"+34")) == "Phone"
    rec = p.parse(bob)  # doubled quotes stay doubled in the span (offsets index the raw line)
    assert value(bob, rec, "FirstName") == b'Bob ""Bobby""'
    assert field_at(rec, at(bob, b"Bobby")) == "FirstName"
    assert field_at(rec, at(bob, b"7946")) == "Phone"
    assert p.parse(extra).problem == "row has 6 columns, header has 5"
    rec = p.parse(short)
    assert rec.problem == "row has 4 columns, header has 5"
    assert field_at(rec, at(short, b"kim.park")) == "Email"


def test_csv_unterminated_quote_and_text_after_quote():
    p = make_parser("csv", header_line=b"Id,Name,Email")
    rec = p.parse(b'1,"Jane,jane@example.com')
    assert rec.problem.startswith("unterminated quoted value in column 2")
    assert field_at(rec, at(b'1,"Jane,jane@example.com', b"jane@")) == "Name"
    rec = p.parse(b'1,"Jane"x,jane@example.com')
    assert rec.problem == "text after the closing quote in column 2"
    assert field_at(rec, 12) == "Email"


def test_csv_header_is_required_and_validated():
    with pytest.raises(FormatError, match="needs the file's header line"):
        make_parser("csv")
    with pytest.raises(FormatError, match="no comma-, semicolon- or tab-separated columns"):
        make_parser("csv", header_line=b"just one column")
    with pytest.raises(FormatError, match="column 2 has no name"):
        make_parser("csv", header_line=b"Id,,Email")
    with pytest.raises(FormatError, match="column 1 looks like data"):
        make_parser("csv", header_line=b"jane@example.com,Jane,Doe")
    # Header names with spaces, punctuation and non-ASCII letters are fine.
    p = make_parser("csv", header_line='"Account Name","Amount (USD)","Téléphone"\r\n'.encode())
    assert p.columns == ["Account Name", "Amount (USD)", "Téléphone"]


# --- apigw / jsonl ------------------------------------------------------------------------------------


def test_apigw_fields_and_attributes():
    p = parser_for("apigw_access.jsonl")
    assert p.name == "apigw"
    line = lines_of("apigw_access.jsonl")[0]
    rec = p.parse(line)
    assert rec.problem is None
    assert_spans_sane(line, rec)
    assert field_at(rec, at(line, b"A-1001")) == "order_id"
    assert value(line, rec, "order_id") == b"A-1001"
    assert rec.ts == datetime(2023, 6, 10, 15, 36, 28, tzinfo=UTC)
    assert rec.attrs == {"method": "POST", "path": "/orders", "status": "201", "host": "api.shop.example.com",
                         "url": "https://orders.internal.example.com/v2/orders"}  # caller/user "-" dropped


def test_apigw_nested_integration_and_user():
    p = make_parser("apigw")
    line = lines_of("apigw_access.jsonl")[1]
    rec = p.parse(line)
    assert rec.attrs["user"] == "arn:aws:iam::123456789012:user/jane"  # user beats caller
    assert rec.attrs["url"] == "https://api.openai.com/v1/embeddings"  # integration.upstreamUrl
    assert rec.attrs["status"] == "200"  # a number works as well as a string
    assert rec.attrs["path"] == "/customers/0035j00000Qm1AbAAJ"  # path beats routeKey
    assert field_at(rec, at(line, b"0035j")) == "path"
    assert field_at(rec, at(line, b"api.openai")) == "integration.upstreamUrl"


def test_apigw_request_body_held_as_escaped_json_string():
    p = make_parser("apigw")
    line = lines_of("apigw_access.jsonl")[2]
    rec = p.parse(line)
    off = at(line, b"+1 415")
    assert field_at(rec, off) == "requestBody.messages[0].content"
    assert role_at(rec, off) == "user"
    assert rec.attrs["model"] == "gpt-4o-mini"
    assert value(line, rec, "requestBody.messages[0].content") == b"Call me at +1 415 555 0134"


def test_jsonl_llm_request_messages():
    p = parser_for("app_llm.jsonl")
    assert p.name == "jsonl"
    line = lines_of("app_llm.jsonl")[0]
    rec = p.parse(line)
    assert rec.problem is None
    in_system = at(line, b"jane.doe@")
    assert field_at(rec, in_system) == "request.messages[0].content"
    assert role_at(rec, in_system) == "system"
    in_user = at(line, b"+1 415")
    assert field_at(rec, in_user) == "request.messages[1].content"
    assert role_at(rec, in_user) == "user"
    assert role_at(rec, at(line, b"support-bot")) is None  # not inside a message
    assert rec.attrs == {"app": "support-bot", "model": "gpt-4o",
                         "url": "https://api.openai.com/v1/chat/completions"}
    assert rec.ts == datetime(2024, 3, 11, 16, 0, 0, 123000, tzinfo=UTC)


def test_jsonl_anthropic_system_blocks_and_epoch_time():
    p = make_parser("jsonl")
    line = lines_of("app_llm.jsonl")[1]
    rec = p.parse(line)
    off = at(line, b"ana.lopez")
    assert field_at(rec, off) == "body.system[0].text"
    assert role_at(rec, off) == "system"
    off = at(line, b"Summarise")
    assert field_at(rec, off) == "body.messages[0].content[0].text"
    assert role_at(rec, off) == "user"
    assert rec.ts == datetime(2024, 3, 11, 16, 0, 1, tzinfo=UTC)
    assert rec.attrs["url"] == "https://api.anthropic.com/v1/messages"


def test_jsonl_single_message_per_line():
    line = b'{"role": "system", "content": "Escalate to jane@example.com"}'
    rec = make_parser("jsonl").parse(line)
    assert field_at(rec, at(line, b"jane@")) == "content"
    assert role_at(rec, at(line, b"jane@")) == "system"


def test_jsonl_system_key_is_no_role_outside_llm_records():
    rec = make_parser("jsonl").parse(b'{"system": "billing", "email": "jane@example.com"}')
    assert rec.roles == {}
    assert role_at(rec, 13) is None


def test_jsonl_embedded_body_spans_index_the_escaped_line():
    p = make_parser("jsonl")
    line = lines_of("app_llm.jsonl")[2]
    rec = p.parse(line)
    off = at(line, b"bob.smith")
    assert field_at(rec, off) == "request.body.messages[0].content"
    assert role_at(rec, off) == "system"
    assert value(line, rec, "request.body.messages[0].content") == b"Secret prompt for bob.smith@example.co.uk"
    assert value(line, rec, "request.body.model") == b"gpt-4o-mini"
    assert rec.ts == datetime(2024, 3, 11, 15, 0, 2, tzinfo=UTC)  # @timestamp +01:00 → UTC
    assert rec.attrs["method"] == "POST" and rec.attrs["status"] == "200"
    assert field_at(rec, at(line, b"A-1002")) == "order_id"


def test_jsonl_truncated_line_is_a_problem_but_keeps_its_fields():
    p = make_parser("jsonl")
    line = lines_of("app_llm.jsonl")[3]
    rec = p.parse(line)
    assert rec.problem == f"not JSON: expected ',' or '}}', found the end of the line at column {len(line) + 1}"
    assert field_at(rec, at(line, b"A-1003")) == "order_id"
    assert field_at(rec, at(line, b"kim.park")) == "customer.email"
    assert rec.ts == datetime(2024, 3, 11, 16, 0, 3, tzinfo=UTC)


@pytest.mark.parametrize(("line", "problem"), [
    (b"GET /index.html 200", "not JSON: expected a value at column 1"),
    (b"", "not JSON: empty line"),
    (b'{"a": 1,}', "not JSON: expected a key in double quotes at column 9"),
    (b'{"a": [1, 2,]}', "not JSON: expected a value at column 13"),
    (b"{'a': 1}", "not JSON: expected a key in double quotes at column 2"),
    (b'{"a": NaN}', "not JSON: expected a value at column 7"),
    (b'{"a": 1} {"b": 2}', "not JSON: extra data after the JSON value at column 10"),
    (b'{"a": "x\ty"}', "not JSON: invalid escape or control character in string at column 7"),
    (b'{"a": "x\\qy"}', "not JSON: invalid escape or control character in string at column 7"),
    (b'{"email": "jane@example.com}', "not JSON: unterminated string at column 11"),
    (b'{"a" 1}', "not JSON: expected ':' at column 6"),
    (b"[" * 200 + b"]" * 200, "not JSON: nesting deeper than 128 levels at column 129"),
])
def test_not_json(line, problem):
    rec = make_parser("jsonl").parse(line)
    assert rec.problem == problem
    assert b"jane@" not in rec.problem.encode()


def test_json_scalars_and_arrays_at_top_level():
    p = make_parser("jsonl")
    rec = p.parse(b'  [{"a": "x"}, 5]  ')
    assert rec.problem is None
    assert [f for f, _, _ in rec.fields] == ["[0].a", "[1]"]
    assert p.parse(b'"just a string"').fields == [("$", 1, 14)]


# JSON documents of any shape: the walker must find every scalar, at the path the test computes,
# with a span whose bytes decode to that scalar.
_scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12),
                     st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20))
_json_docs = st.recursive(_scalars, lambda kids: st.one_of(
    st.lists(kids, max_size=4), st.dictionaries(st.text(max_size=8), kids, max_size=4)), max_leaves=25)


def _expected_leaves(v, path=""):
    if isinstance(v, dict):
        for k, x in v.items():
            yield from _expected_leaves(x, f"{path}.{k}" if path else k)
    elif isinstance(v, list):
        for i, x in enumerate(v):
            yield from _expected_leaves(x, f"{path}[{i}]")
    else:
        yield (path or "$", v)


@settings(max_examples=300, deadline=None)
@given(doc=_json_docs, ascii_only=st.booleans(), spaced=st.booleans())
def test_walker_finds_every_scalar_with_its_span(doc, ascii_only, spaced):
    seps = (", ", ": ") if spaced else (",", ":")
    line = json.dumps(doc, ensure_ascii=ascii_only, separators=seps).encode()
    leaves, end, err = walk_json(line, 0, embed=False)
    assert err is None and end == len(line)
    got = []
    for path, s, e, is_str, *_ in leaves:
        raw = line[s:e]
        got.append((path, decode_json_string(raw) if is_str else json.loads(raw)))
    assert got == list(_expected_leaves(doc))


@settings(max_examples=300, deadline=None)
@given(doc=_json_docs, pos=st.integers(0, 10**6), junk=st.sampled_from(list('{}[]",: x\\\t\x01')),
       delete=st.booleans())
def test_walker_agrees_with_json_loads_on_validity(doc, pos, junk, delete):
    text = json.dumps(doc, ensure_ascii=False)
    pos %= len(text) + 1
    text = text[:pos] + text[pos + 1:] if delete else text[:pos] + junk + text[pos:]
    try:
        json.loads(text)
        valid = True
    except ValueError:
        valid = False
    rec = make_parser("jsonl").parse(text.encode())
    assert (rec.problem is None) == valid, (text, rec.problem)


@settings(max_examples=200, deadline=None)
@given(inner=st.dictionaries(st.text(max_size=6), _scalars, min_size=1, max_size=5))
def test_embedded_json_spans_map_back_to_the_escaped_bytes(inner):
    body = json.dumps(inner, ensure_ascii=False)
    line = json.dumps({"body": body}, ensure_ascii=False).encode()
    rec = make_parser("jsonl").parse(line)
    if len(body.encode()) < 8:
        return  # too short to be walked as embedded JSON
    got = {}
    for path, s, e in rec.fields:
        if path.startswith("body."):
            once = decode_json_string(line[s:e])  # one level of escaping undone: the inner text
            got[path] = once
    for key, v in inner.items():
        text = got[f"body.{key}"]
        assert (json.loads('"' + text + '"') if isinstance(v, str) else json.loads(text)) == v


# --- heroku / logfmt -----------------------------------------------------------------------------


def test_heroku_drain_router_line():
    p = parser_for("heroku_drain.log")
    assert p.name == "heroku"
    line = lines_of("heroku_drain.log")[0]
    rec = p.parse(line)
    assert rec.problem is None
    assert_spans_sane(line, rec)
    assert value(line, rec, "syslog.appname") == b"heroku"
    assert value(line, rec, "syslog.procid") == b"router"
    assert value(line, rec, "fwd") == b"203.0.113.9"
    assert field_at(rec, at(line, b"jane.doe")) == "query.email"
    assert field_at(rec, at(line, b"/orders")) == "path"
    assert field_at(rec, at(line, b"5c7a1b2e")) == "request_id"
    assert rec.ts == datetime(2024, 3, 11, 16, 0, 0, 123456, tzinfo=UTC)
    assert rec.attrs == {"method": "GET", "path": "/orders?email=jane.doe%40example.com",
                         "host": "shop-example.herokuapp.com", "app": "web.1", "status": "200"}


def test_heroku_error_line_and_app_lines():
    p = make_parser("heroku")
    err, text, kv = lines_of("heroku_drain.log")[1:4]
    rec = p.parse(err)
    assert value(err, rec, "code") == b"H12"
    assert value(err, rec, "desc") == b"Request timeout"
    assert rec.attrs["status"] == "503"
    rec = p.parse(text)  # an app's plain text in the drain is not malformed
    assert rec.problem is None
    assert field_at(rec, at(text, b"jane.doe")) is None  # the caller falls back to field_before
    assert rec.attrs == {"app": "web.2"}
    assert rec.ts == datetime(2024, 3, 11, 16, 0, 31, 100000, tzinfo=UTC)
    rec = p.parse(kv)  # an app that logs logfmt gets its fields
    assert field_at(rec, at(kv, b"bob.smith")) == "email"
    assert field_at(rec, at(kv, b"00Q5j")) == "lead_id"
    assert value(kv, rec, "msg") == b"enriched lead"


def test_heroku_cli_form_bare_router_and_unterminated_quote():
    p = make_parser("heroku")
    cli, bare, broken = lines_of("heroku_router.log")
    rec = p.parse(cli)
    assert rec.problem is None
    assert value(cli, rec, "syslog.appname") == b"heroku"
    assert field_at(rec, at(cli, b"%2B1415")) == "query.phone"
    assert rec.ts == datetime(2024, 3, 11, 16, 2, tzinfo=UTC)
    rec = p.parse(bare)
    assert rec.problem is None and rec.ts is None
    assert rec.attrs["path"] == "/health"
    rec = p.parse(broken)  # cut short inside the last value
    assert rec.problem == f"unterminated quote in the value of 'path' at column {at(broken, b'/search')}"
    assert field_at(rec, at(broken, b"/search")) == "path"  # the rest of the line, as best we can
    assert field_at(rec, at(broken, b"jane")) == "query.q"
    assert rec.attrs["method"] == "GET" and rec.attrs["status"] == "200"
    # A quote left open mid-line pairs with the next one, as in any logfmt reader: the stray
    # quote after it is reported.
    mid = b'at=info path="/search?q=jane host=x fwd="192.0.2.12" status=200'
    rec = p.parse(mid)
    assert rec.problem == f"unexpected '\"' where a key should start, at column {at(mid, b'192') + 11}"


def test_heroku_router_line_that_is_not_logfmt():
    assert make_parser("heroku").parse(b"Starting process with command `bin/rails s`").problem == \
        "no key=value pairs in a router line"


def test_logfmt_app_lines():
    p = parser_for("app_logfmt.log")
    assert p.name == "logfmt"
    first, second = lines_of("app_logfmt.log")
    rec = p.parse(first)
    assert rec.problem is None
    assert field_at(rec, at(first, b"jane.doe")) == "email"
    assert value(first, rec, "msg") == b"payment captured"
    assert rec.attrs == {"user": "0055j00000AT6I1"}
    assert rec.ts == datetime(2024, 3, 11, 16, 0, tzinfo=UTC)
    rec = p.parse(second)
    assert rec.attrs["url"] == "https://api.mistral.ai/v1/chat/completions"


@pytest.mark.parametrize(("line", "problem"), [
    (b'msg="unterminated', "unterminated quote in the value of 'msg' at column 5"),
    (b'a=1 "quoted" b=2', "unexpected '\"' where a key should start, at column 5"),
    (b"a=1 =2", "unexpected '=' where a key should start, at column 5"),
    (b"just words", "no key=value pairs"),
    (b'a=1 jane@example.com="x', "unterminated quote in the value of a key at column 22"),  # no data
])
def test_logfmt_problems(line, problem):
    assert make_parser("logfmt").parse(line).problem == problem


def test_logfmt_quoted_escapes_and_bare_keys():
    line = rb'msg="say \"hi\" to jane@example.com" debug email=x@example.com'
    rec = make_parser("logfmt").parse(line)
    assert rec.problem is None
    assert [f for f, _, _ in rec.fields] == ["msg", "email"]  # bare `debug` has no value span
    assert field_at(rec, at(line, b"jane@")) == "msg"
    assert field_at(rec, at(line, b"debug")) is None


# --- mule ----------------------------------------------------------------------------------------


def test_mule_logger_line_with_json_payload():
    p = parser_for("mule-app-orders-api.log")
    assert p.name == "mule"
    line = lines_of("mule-app-orders-api.log")[0]
    rec = p.parse(line)
    assert rec.problem is None
    assert_spans_sane(line, rec)
    assert value(line, rec, "level") == b"INFO"
    assert value(line, rec, "thread") == b"[MuleRuntime].uber.04: [orders-api].orders-flow.CPU_LITE @1a2b3c4d"
    assert value(line, rec, "processor") == b"orders-flow/processors/2"
    assert value(line, rec, "event") == b"3f2c1a90-dfa1-11ee-8f1e-0a58a9feac02"
    assert value(line, rec, "logger") == b"org.mule.runtime.core.internal.processor.LoggerMessageProcessor"
    assert field_at(rec, at(line, b"jane.doe")) == "message.customer.email"
    assert field_at(rec, at(line, b"+1 415")) == "message.customer.phone"
    assert field_at(rec, at(line, b"A-1001", 1)) == "message.order_id"
    assert field_at(rec, at(line, b"A-1001", 0)) == "message.orderId"  # key=value before the JSON
    assert field_at(rec, at(line, b"Order received")) == "message"
    assert rec.attrs == {"app": "orders-api"}
    assert rec.ts == datetime(2024, 3, 11, 16, 0, 0, 123000, tzinfo=UTC)


def test_mule_key_value_message_and_outbound_urls():
    p = make_parser("mule")
    lines = lines_of("mule-app-orders-api.log")
    line = lines[1]
    rec = p.parse(line)
    assert field_at(rec, at(line, b"api.openai")) == "message.url"
    assert field_at(rec, at(line, b"jane.doe")) == "message.email"  # "email: jane…"
    assert rec.attrs["url"] == "https://api.openai.com/v1/chat/completions"
    err = p.parse(lines[2])
    assert err.problem is None and value(lines[2], err, "message") == b""
    assert value(lines[2], err, "processor") == b""
    http = p.parse(lines[-1])  # the HTTP requester's own log line
    assert http.attrs["url"] == "https://api.anthropic.com/v1/messages"


def test_mule_continuation_and_malformed_lines():
    p = make_parser("mule")
    lines = lines_of("mule-app-orders-api.log")
    for cont in (lines[3], lines[4], lines[5], lines[8]):  # banner, error block, stack frame
        rec = p.parse(cont)
        assert rec.problem is None and rec.fields == [] and rec.ts is None
    rec = p.parse(lines[7])  # WARN with an unbracketed thread name
    assert rec.problem == f"no 'logger: ' before the message at column {at(lines[7], b'.HTTP_Listener') + 1}"
    assert p.parse(b"INFO  yesterday [main] x: y").problem.startswith("Mule line without")
    rec = p.parse(b"INFO  2024-03-11 16:00:00,123 [[MuleRuntime].uber.04: [orders-api")
    assert rec.problem == "unclosed '[' of the thread name at column 31"


# --- combined ------------------------------------------------------------------------------------


def test_combined_line_fields_and_query():
    p = parser_for("access_combined.log")
    assert p.name == "combined"
    line = lines_of("access_combined.log")[0]
    rec = p.parse(line)
    assert rec.problem is None
    assert_spans_sane(line, rec)
    assert field_at(rec, at(line, b"jane.doe")) == "query.email"
    assert field_at(rec, at(line, b"4155550134")) == "query.phone"
    assert field_at(rec, at(line, b"/api/customers")) == "path"
    assert field_at(rec, at(line, b"HTTP/1.1")) == "protocol"
    assert field_at(rec, at(line, b"203.0.113.9")) == "remote_addr"
    assert field_at(rec, at(line, b"shop.example.com")) == "referer"
    assert field_at(rec, at(line, b"X11")) == "user_agent"
    assert rec.ts == datetime(2000, 10, 10, 20, 55, 36, tzinfo=UTC)
    assert rec.attrs == {"method": "GET", "path": "/api/customers", "status": "200", "user": "frank"}


def test_combined_cdn_variant_and_broken_line():
    p = make_parser("combined")
    lines = lines_of("access_combined.log")
    rec = p.parse(lines[2])
    assert rec.problem is None
    assert value(lines[2], rec, "extra[0]") == b"203.0.113.9"
    assert value(lines[2], rec, "rt") == b"0.002"
    assert rec.attrs["cache"] == "HIT" and rec.attrs["edge"] == "FRA"
    rec = p.parse(lines[1] + b"   ")  # trailing blanks are no field
    assert rec.problem is None and "user" not in rec.attrs
    assert [f for f, _, _ in rec.fields][-2:] == ["referer", "user_agent"]
    assert p.parse(lines[3]).problem == "not a combined/common access log line"


# --- regex, text ---------------------------------------------------------------------------------

APIGEE = (r"^<\d+>1 (?P<timestamp>\S+) \S+ proxy=(?P<proxy>\S+) client=(?P<client_ip>\S+) "
          r"verb=(?P<verb>\S+) uri=(?P<uri>\S+) status=(?P<status>\d+) target=(?P<target_url>\S+) body=(?P<body>.*)$")


def test_regex_format_for_apigee_messagelogging():
    p = make_parser("regex", pattern=APIGEE)
    line, chat, other = lines_of("apigee_messagelogging.log")
    rec = p.parse(line)
    assert rec.problem is None
    assert_spans_sane(line, rec)
    assert field_at(rec, at(line, b"203.0.113.9")) == "client_ip"
    assert field_at(rec, at(line, b"jane.doe")) == "body.email"
    assert field_at(rec, at(line, b"+1 415")) == "body.phone"
    assert rec.ts == datetime(2024, 3, 11, 16, 0, tzinfo=UTC)
    assert rec.attrs == {"method": "POST", "path": "/v1/orders", "status": "201",
                         "url": "https://orders.internal.example.com/v2/orders"}
    rec = p.parse(chat)
    assert role_at(rec, at(chat, b'"hi"') + 1) == "user"
    assert p.parse(other).problem == "line does not match the configured regex"


def test_regex_pcre_style_groups_and_optional_groups():
    p = make_parser("regex", pattern=r"(?<user>\w+) did (?<what>\w+)(?: to (?<target>\S+))?")
    line = b"jane did login"
    rec = p.parse(line)
    assert [f for f, _, _ in rec.fields] == ["user", "what"]  # target did not take part
    assert rec.attrs == {"user": "jane"}
    assert rec.ts is None


@pytest.mark.parametrize(("pattern", "message"), [
    (r"(?P<a>[unclosed", "invalid regex in formats.apigee.pattern: unterminated character set at position 6"),
    (r"(\d+) (\w+)", "the regex in formats.apigee.pattern has no named groups"),
    ("", "format 'regex' needs a regex with named groups in formats.apigee.pattern"),
    (None, "format 'regex' needs a regex with named groups in formats.apigee.pattern"),
])
def test_invalid_user_regex_names_the_config_field(pattern, message):
    with pytest.raises(FormatError) as e:
        make_parser("regex", pattern=pattern, pattern_origin="formats.apigee.pattern")
    assert str(e.value).startswith(message)


def test_text_format_has_no_fields():
    rec = make_parser("text").parse(b"Customer jane@example.com called at 16:00")
    assert rec == ParsedRecord()
    assert field_at(rec, 10) is None and role_at(rec, 10) is None


def test_unknown_format_name():
    with pytest.raises(FormatError) as e:
        make_parser("syslog")
    assert isinstance(e.value, LeakwatchError)
    assert "unknown log format 'syslog'" in str(e.value)
    for name in FORMAT_NAMES:
        assert name in str(e.value)


# --- all formats ---------------------------------------------------------------------------------


def _all_parsers():
    return [make_parser(n, header_line=W3C_FIELDS if n == "w3c" else b'"EVENT_TYPE","TIMESTAMP","URL"',
                        pattern=APIGEE) for n in FORMAT_NAMES]


@settings(max_examples=150, deadline=None)
@given(line=st.one_of(
    st.binary(max_size=300),
    st.text(alphabet='{}[]":,=\\ab1 \t"\'<>/?&%-.', max_size=200).map(str.encode),
))
def test_no_parser_raises_on_garbage(line):
    for p in _all_parsers():
        rec = p.parse(line)
        assert isinstance(rec, ParsedRecord)
        assert_spans_sane(line, rec)
        assert rec.problem is None or "reader failed" not in rec.problem  # no internal failure


def test_crlf_line_endings_are_not_part_of_values():
    rec = make_parser("csv", header_line=b"Id,Email\r\n").parse(b"1,jane@example.com\r")
    assert rec.problem is None and rec.fields[-1] == ("Email", 2, 18)


def test_field_at_prefers_the_innermost_span():
    rec = ParsedRecord(fields=[("message", 0, 100), ("message.a", 10, 20), ("message.a.b", 12, 15)])
    assert field_at(rec, 13) == "message.a.b"
    assert field_at(rec, 11) == "message.a"
    assert field_at(rec, 50) == "message"
    assert field_at(rec, 100) is None  # end is exclusive


@pytest.mark.parametrize(("text", "expected"), [
    ("20240311160000.000", datetime(2024, 3, 11, 16, 0, tzinfo=UTC)),
    ("2024-03-11T16:00:00.000Z", datetime(2024, 3, 11, 16, 0, tzinfo=UTC)),
    ("2024-03-11T17:00:00.123456789+01:00", datetime(2024, 3, 11, 16, 0, 0, 123456, tzinfo=UTC)),
    ("2024-03-11 16:00:00,123", datetime(2024, 3, 11, 16, 0, 0, 123000, tzinfo=UTC)),
    ("10/Jun/2023:15:36:28 +0000", datetime(2023, 6, 10, 15, 36, 28, tzinfo=UTC)),
    ("10/Oct/2000:13:55:36 -0700", datetime(2000, 10, 10, 20, 55, 36, tzinfo=UTC)),
    ("1710172800", datetime(2024, 3, 11, 16, 0, tzinfo=UTC)),
    ("1710172800000", datetime(2024, 3, 11, 16, 0, tzinfo=UTC)),
    ("1710172800000000", datetime(2024, 3, 11, 16, 0, tzinfo=UTC)),
    ("Mon, 11 Mar 2024 16:00:00 GMT", datetime(2024, 3, 11, 16, 0, tzinfo=UTC)),
    ("yesterday", None), ("", None), ("2024-13-45T99:00:00Z", None), ("32/Foo/2023:00:00:00 +0000", None),
    ("-", None), (None, None),
])
def test_parse_timestamp(text, expected):
    assert parse_timestamp(text) == expected


# --- fast paths agree with the general readers ---------------------------------------------------
#
# The readers take shortcuts on the lines that allow them (bytes.split for plainly quoted CSV
# rows, json.loads for valid JSON); each shortcut must give exactly the record the general code
# gives: same fields (in the same order), timestamp, attrs (same insertion order), problem, roles.


def assert_same_record(got: ParsedRecord, want: ParsedRecord) -> None:
    assert got == want
    assert list(got.attrs.items()) == list(want.attrs.items())  # callers may iterate attrs
    assert list(got.roles.items()) == list(want.roles.items())
    assert all(type(f) is tuple for f in got.fields)
    if want.ts is not None:
        assert got.ts.tzinfo is want.ts.tzinfo


def csv_reference(parser, line: bytes) -> ParsedRecord:
    """A CSV row as split_row + cell_text + AttrCollector read it, cell by cell, in column order."""
    if line[-1:] == b"\r":
        line = line[:-1]
    cols = parser.columns
    header = parser._header.removeprefix(b"\xef\xbb\xbf")
    if header.startswith(b'"') and header.count(b'"') == 2 * len(cols) and not line.startswith(b'"') \
            and line.strip():
        # A writer that quotes every cell: this line continues a quoted value from the line
        # before. With a quote it closes the value and ends the row (the last columns).
        spans, _ = split_row(line)
        if b'"' not in line or len(spans) >= len(cols):
            return ParsedRecord([], None, {}, None)
        first = len(cols) - len(spans)
        return ParsedRecord([(cols[first + k], s, e) for k, (s, e) in enumerate(spans)], None, {}, None)
    spans, problem = split_row(line)
    fields = [(cols[k] if k < len(cols) else f"column[{k}]", s, e) for k, (s, e) in enumerate(spans)]
    if len(spans) != len(cols):
        count = f"row has {len(spans)} column{'s' if len(spans) != 1 else ''}, header has {len(cols)}"
        problem = f"{problem}; {count}" if problem else count
    col = AttrCollector()
    for k, name in enumerate(cols):
        key = norm_key(name)
        if k < len(spans) and col.wants(key):
            col.offer(key, cell_text(line[spans[k][0]:spans[k][1]]))
    return ParsedRecord(fields, col.timestamp(), col.attrs(), problem)


_CSV_HEADERS = [
    (b'"EVENT_TYPE","TIMESTAMP","USER_ID","URI","METHOD","URL","STATUS_CODE","TIMESTAMP_DERIVED","USER_ID_DERIVED",'
     b'"TIME"'),
    b"Id,Name,Email,uri,Status,url,date,CreatedDate",
    b'"A","B"',
    b"app,App_Name,Status,HTTP_Status,uri,request_uri",  # synonyms of equal rank: the first cell wins
]
_csv_cells = st.one_of(
    st.text(alphabet='ab"é, -\t', max_size=8),
    st.sampled_from(["", " ", "-", "null", "None", "POST", "/services/data/v59.0/query", " https://api.openai.com/v1 ",
                     '""https://api.anthropic.com/v1/messages""', '""""', '""', '"', '""x', 'x""',
                     "20240311160000.250", "2024-03-11T16:00:00.000Z", "not a time", "0055j00000AT6I1",
                     "0055j00000AT6I1AAL"]),
)


@settings(max_examples=600, deadline=None)
@given(header=st.sampled_from(_CSV_HEADERS), cells=st.lists(_csv_cells, max_size=12),
       quoting=st.sampled_from(["all", "none", "mixed"]), tail=st.sampled_from([b"", b"\r", b'"', b",", b' "']))
def test_csv_fast_paths_match_the_general_reader(header, cells, quoting, tail):
    if quoting == "all":
        text = ",".join(f'"{c}"' for c in cells)
    elif quoting == "none":
        text = ",".join(cells)
    else:
        text = ",".join(f'"{c}"' if k % 2 else c for k, c in enumerate(cells))
    line = text.encode() + tail
    p = make_parser("eventlogfile", header_line=header)
    assert_same_record(p.parse(line), csv_reference(p, line))


@pytest.mark.parametrize("fixture", ["elf_apexcallout_release_a.csv", "elf_apexcallout_release_b.csv",
                                     "elf_restapi.csv", "report_export.csv"])
def test_csv_fixture_rows_match_the_general_reader(fixture):
    p = parser_for(fixture)
    for line in lines_of(fixture)[1:]:
        assert_same_record(p.parse(line), csv_reference(p, line))


def test_csv_fast_path_reads_eventlogfile_rows_and_triple_quoted_urls():
    """Guard for the tests above: EventLogFile rows, URL cells in three quotes included, really
    take the split path (otherwise those tests would compare the general reader with itself)."""
    p = parser_for("elf_apexcallout_release_a.csv")
    rows = lines_of("elf_apexcallout_release_a.csv")[1:]
    assert any(b'"""https://' in r for r in rows)
    for row in rows:
        assert p._spans(row)[2] is not None
    # and a row with a doubled quote inside a value does not
    assert p._spans(b'"ApexCallout","x ""quoted"" y"')[2] is None


def test_csv_wide_row_names_every_extra_column():
    p = make_parser("csv", header_line=b"A,B")
    line = b",".join(b"v%d" % k for k in range(15))
    rec = p.parse(line)
    assert [f for f, _, _ in rec.fields][-1] == "column[14]"
    assert_same_record(rec, csv_reference(p, line))
    quoted = b",".join(b'"v%d"' % k for k in range(15))
    assert_same_record(p.parse(quoted), csv_reference(p, quoted))


# JSON documents shaped like log records: keys the attribute table and the LLM rules react to,
# values that are URLs, timestamps, empty markers, numbers, nested messages.
_log_keys = st.sampled_from(["role", "content", "model", "system", "messages", "instructions", "status", "user",
                             "caller", "url", "upstreamUrl", "path", "ts", "requestTime", "@timestamp", "a", "",
                             "Status_Code", "host", "x\\y", 'q"k', "é"])
_log_values = st.one_of(
    _scalars,
    st.sampled_from(["-", "null", "  ", "https://api.openai.com/v1/chat", "/orders?id=1", "system", "USER ",
                     "2024-03-11T16:00:00Z", "10/Jun/2023:15:36:28 +0000", 1710172800, "gpt-4o", "{not json",
                     '{"role": "user", "content": "hi there"}', "[1, 2, 3, 4, 5]", "tab\there", "é\u2028"]),
)
_log_docs = st.recursive(_log_values, lambda kids: st.one_of(
    st.lists(kids, max_size=4), st.dictionaries(_log_keys, kids, max_size=5)), max_leaves=20)


@settings(max_examples=500, deadline=None)
@given(doc=_log_docs, ascii_only=st.booleans(), spaced=st.booleans())
def test_json_fast_path_matches_the_walker(doc, ascii_only, spaced):
    seps = (", ", ": ") if spaced else (",", ":")
    line = json.dumps(doc, ensure_ascii=ascii_only, separators=seps).encode()
    p = make_parser("jsonl")
    slow = p._parse_slow(line)
    fast = fast_record(line)
    if fast is not None:
        assert_same_record(fast, slow)
    # parse() is either reader, plus the query-string fields of URL-like values.
    from leakwatch.sources.formats._json import _add_query_fields

    if b"?" in line:
        _add_query_fields(slow, line)
    assert_same_record(p.parse(line), slow)


@settings(max_examples=300, deadline=None)
@given(doc=_json_docs, spaced=st.booleans())
def test_json_fast_path_takes_every_plain_document(doc, spaced):
    """Any valid document with no JSON-looking string in it takes the fast path (so the test
    above compares two different readers) and gives the walker's record."""
    seps = (", ", ": ") if spaced else (",", ":")
    line = b"  " + json.dumps(doc, ensure_ascii=False, separators=seps).encode() + b" "
    assume_plain = all(not (isinstance(v, str) and v[:1] in "{[") for _, v in _expected_leaves(doc))
    fast = fast_record(line)
    if assume_plain:
        assert fast is not None
        assert_same_record(fast, make_parser("jsonl")._parse_slow(line))


@pytest.mark.parametrize(("line", "why"), [
    (b'{"a":"zzz","a":7}', "duplicate key: a dict keeps one member, the walker lists both"),
    (b'{"a":{"x":1},"a":"b5"}', "duplicate key holding an object"),
    (b'{"a": NaN}', "NaN is not JSON"),
    (b'{"a": -Infinity}', "Infinity is not JSON"),
    (b'{"email": "jane\xff@example.com"}', "not UTF-8: the walker still gives the field"),
    (b"[" * 130 + b"]" * 130, "deeper than MAX_DEPTH"),
    (b'{"body": "{\\"messages\\": [{\\"role\\": \\"user\\"}]}"}', "JSON inside a string"),
    (b'\xef\xbb\xbf{"a": 1}', "a BOM is not JSON whitespace"),
    (b'{"a": 1} x', "extra data"),
])
def test_json_fast_path_leaves_what_it_cannot_reproduce_to_the_walker(line, why):
    assert fast_record(line) is None, why
    p = make_parser("jsonl")
    assert_same_record(p.parse(line), p._parse_slow(line))


@pytest.mark.parametrize("line", [
    b'{"a":{"status":"x"},"status":200}',  # a shallower field beats a deeper one of equal rank
    b'{"status":200,"a":{"status":"x"}}',
    b'{"a":{"status":"x"},"b":{"status":"y"},"status":" "}',  # equal rank and depth: the first wins
    b'{"a":{"ts":"2023-01-01T00:00:00Z"},"ts":"2024-03-11T16:00:00Z","time":"1710172800"}',
    b'{"a":[{"ts":"bad"}],"time":"2024-03-11T16:00:00+01:00"}',
    b'{"model":" m ","system":[{"text":"s"}],"messages":[{"role":" User ","content":"c"},{"role":7}]}',
    b'{"model":7,"role":"tool","instructions":"x","request":{"model":"second"}}',
    b'{"integration":{"upstreamUrl":"https://api.openai.com/v1"},"url":"https://b.example/"}',
    b'{"uri":"https://a.example/x","path":"/p","uri2":"-"}',
])
def test_json_fast_path_ranks_depths_and_roles_like_the_walker(line):
    p = make_parser("jsonl")
    fast = fast_record(line)
    assert fast is not None
    assert_same_record(fast, p._parse_slow(line))


def test_json_duplicate_keys_keep_both_fields():
    line = b'{"a":"zzz","a":7}'
    rec = make_parser("jsonl").parse(line)
    assert rec.fields == [("a", 6, 9), ("a", 15, 16)]


@pytest.mark.parametrize("fixture", ["apigw_access.jsonl", "app_llm.jsonl"])
def test_json_fixture_lines_match_the_walker(fixture):
    p = make_parser("jsonl")
    taken = 0
    for line in lines_of(fixture):
        fast = fast_record(line)
        taken += fast is not None
        assert_same_record(p.parse(line), p._parse_slow(line))
        if fast is not None:
            assert_same_record(fast, p._parse_slow(line))
    assert taken >= 2  # the plain lines of each fixture take the fast path


# EventLogFile TIMESTAMP is read by slices; _ELF is its definition (\d = Unicode Nd, as int() reads).
_elf_digits = st.sampled_from("0123456789\u0663\u0969")  # ASCII, Arabic-Indic 3, Devanagari 3


@settings(max_examples=400, deadline=None)
@given(body=st.lists(_elf_digits, min_size=14, max_size=14).map("".join),
       frac=st.one_of(st.none(), st.lists(_elf_digits, min_size=0, max_size=8).map("".join)),
       junk=st.sampled_from(["", "x", "\u00b2", " ", "-"]))
def test_elf_timestamp_slices_follow_the_regex(body, frac, junk):
    text = body + ("" if frac is None else "." + frac) + junk
    if _EPOCH.fullmatch(text.strip()):
        return  # 14 digits and a long fraction read as an epoch number: another test's business
    m = _ELF.fullmatch(text.strip())
    expected = None
    if m is not None:
        y, mo, d, h, mi, se, f = m.groups()
        try:
            expected = datetime(int(y), int(mo), int(d), int(h), int(mi), int(se), int((f or "0").ljust(6, "0")),
                                tzinfo=UTC)
        except ValueError:
            expected = None
    assert parse_timestamp(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("20240311160000", datetime(2024, 3, 11, 16, 0, tzinfo=UTC)),
    ("20240311160000.5", datetime(2024, 3, 11, 16, 0, 0, 500000, tzinfo=UTC)),
    ("20240311160000.123456", datetime(2024, 3, 11, 16, 0, 0, 123456, tzinfo=UTC)),
    ("20240311160000.", None),
    ("20241311160000.000", None),
    ("10/Jun/2023:15:36:28 +0000", datetime(2023, 6, 10, 15, 36, 28, tzinfo=UTC)),
    ("10/Jun/2023:15:36:28 +05:30", datetime(2023, 6, 10, 10, 6, 28, tzinfo=UTC)),
    ("10/Jun/2023:15:36:28 -0000", datetime(2023, 6, 10, 15, 36, 28, tzinfo=UTC)),
    ("10/Jun/2023:15:36:28.25", datetime(2023, 6, 10, 15, 36, 28, 250000, tzinfo=UTC)),
    ("10/Jun/2023:15:36:28 +2400", None),
    ("01/Jan/0001:00:30:00 +0100", None),  # before year 1 in UTC
    ("2024-03-11T16:00:00.123456789Z", datetime(2024, 3, 11, 16, 0, 0, 123456, tzinfo=UTC)),
    ("2024-03-11T16:00:00.123456+00:00", datetime(2024, 3, 11, 16, 0, 0, 123456, tzinfo=UTC)),
    ("2024-03-11 16:00:00,1234567", datetime(2024, 3, 11, 16, 0, 0, 123456, tzinfo=UTC)),
    ("2024-/03/11", None),
])
def test_parse_timestamp_fast_paths(text, expected):
    got = parse_timestamp(text)
    assert got == expected
    if expected is not None:
        assert got.tzinfo is UTC


# --- W3C extended (CloudFront standard logs, IIS) ----------------------------------------------

W3C_FIELDS = (b"#Fields: date time x-edge-location sc-bytes c-ip cs-method cs(Host) cs-uri-stem sc-status "
              b"cs(Referer) cs(User-Agent) cs-uri-query cs(Cookie) x-edge-result-type x-edge-request-id "
              b"x-host-header cs-protocol")
CLOUDFRONT_LINE = (b"2019-12-04\t21:02:31\tLAX1-C1\t392\t192.0.2.100\tGET\td111111abcdef8.cloudfront.net\t"
                   b"/index.html\t200\t-\tMozilla/5.0%20(Windows%20NT%2010.0)\temail=jane%40example.com&x=1\t-\t"
                   b"RefreshHit\tSOX4xwn4XV6Q4rgb7XiVGOHms==\twww.example.com\thttps")


def test_w3c_cloudfront_line_fields_attributes_and_time():
    p = make_parser("w3c", header_line=W3C_FIELDS)
    rec = p.parse(CLOUDFRONT_LINE)
    assert rec.problem is None
    assert_spans_sane(CLOUDFRONT_LINE, rec)
    by_name = {name: CLOUDFRONT_LINE[s:e] for name, s, e in rec.fields}
    assert by_name["c-ip"] == b"192.0.2.100" and by_name["cs(User-Agent)"].startswith(b"Mozilla")
    assert by_name["query.email"] == b"jane%40example.com" and by_name["query.x"] == b"1"
    at = CLOUDFRONT_LINE.index(b"jane")
    assert field_at(rec, at) == "query.email"  # the parameter, not the whole query string
    assert rec.ts == datetime(2019, 12, 4, 21, 2, 31, tzinfo=UTC)
    # x-host-header (what the client asked for) wins over the distribution's cs(Host).
    assert rec.attrs == {"edge": "LAX1-C1", "method": "GET", "host": "www.example.com", "path": "/index.html",
                         "status": "200", "cache": "RefreshHit"}


def test_w3c_iis_space_separated_directives_and_dashes():
    p = make_parser("w3c", header_line=b"#Fields: date time s-ip cs-method cs-uri-stem cs-uri-query s-port "
                                       b"cs-username c-ip sc-status")
    assert p.parse(b"#Date: 2024-03-11 16:00:00") == ParsedRecord()  # directives are no records
    assert p.parse(b"#Software: Microsoft Internet Information Services 10.0") == ParsedRecord()
    line = b"2024-03-11 16:00:05 10.0.0.4 GET /api/orders - 443 ACME\\jdoe 198.51.100.7 200"
    rec = p.parse(line)
    assert rec.problem is None and rec.ts == datetime(2024, 3, 11, 16, 0, 5, tzinfo=UTC)
    assert rec.attrs == {"method": "GET", "path": "/api/orders", "user": "ACME\\jdoe", "status": "200"}
    assert field_at(rec, line.index(b"198.51")) == "c-ip"
    assert not any(name.startswith("query.") for name, _, _ in rec.fields)  # "-" is no query string


def test_w3c_wrong_field_count_is_a_problem_and_the_line_keeps_its_fields():
    p = make_parser("w3c", header_line=b"#Fields: date time c-ip cs-uri-stem")
    rec = p.parse(b"2024-03-11\t16:00:05\t198.51.100.7\t/a\textra")
    assert rec.problem == "line has 5 fields, #Fields names 4"
    assert [name for name, _, _ in rec.fields] == ["date", "time", "c-ip", "cs-uri-stem", "column[4]"]
    short = p.parse(b"2024-03-11\t16:00:05")
    assert short.problem == "line has 2 fields, #Fields names 4" and short.ts is not None


def test_w3c_needs_its_fields_directive():
    with pytest.raises(FormatError, match="#Fields"):
        make_parser("w3c")
    with pytest.raises(FormatError, match="#Fields"):
        make_parser("w3c", header_line=b"date time c-ip")
    with pytest.raises(FormatError, match="names no fields"):
        make_parser("w3c", header_line=b"#Fields:   ")


def test_sniff_w3c_by_its_directives():
    from leakwatch.sources.formats import fields_directive

    head = b"#Version: 1.0\n" + W3C_FIELDS + b"\n" + CLOUDFRONT_LINE + b"\n"
    assert sniff(head, "E2ABCDEF.2019-12-04-21.abcd1234") == "w3c"
    assert fields_directive(head) == W3C_FIELDS
    # A "#" comment in another format is no W3C directive.
    assert sniff(b"# exported 2024-03-11\nId,Email,Phone\n1,a@b.c,1\n") != "w3c"
    assert fields_directive(b"Id,Email\n#Fields: a b\n") is None  # data before the directive


@settings(max_examples=300, deadline=None)
@given(parts=st.lists(st.text(alphabet='ab \\"x\t/', max_size=12), min_size=3, max_size=3),
       tail=st.text(alphabet='ab \\"=x-', max_size=20))
def test_combined_quoted_strings_unrolled_equal_the_plain_pattern(parts, tail):
    # The fast quoted-string form must give exactly the spans of the readable one.
    from leakwatch.sources.formats._text import _Q, _Q_REFERENCE, _combined

    req, ref_, ua = (p.encode() for p in parts)
    line = (b'192.0.2.1 - - [11/Mar/2024:16:00:01 +0000] "' + req + b'" 200 12 "' + ref_ + b'" "' + ua + b'"'
            + tail.encode())
    fast, slow = _combined(_Q).match(line), _combined(_Q_REFERENCE).match(line)
    assert (fast is None) == (slow is None)
    if fast is not None:
        assert [fast.span(i) for i in range(10)] == [slow.span(i) for i in range(10)]
    for pos in range(len(line)):
        a = re.compile(_Q).match(line, pos)
        b = re.compile(_Q_REFERENCE).match(line, pos)
        assert (a and a.span(1)) == (b and b.span(1))


def test_text_lines_and_python_logging_json_keep_their_time(tmp_path):
    from leakwatch.pipeline import scan_paths
    from helpers import read_rows

    text = tmp_path / "app.log"
    text.write_text("2024-03-11 17:00:00,123 INFO signup mail=jane.doe@example.com\n"
                    "[2024-03-11T17:00:01Z] retry mail=jane.doe@example.com\n"
                    "no time here mail=jane.doe@example.com\n")
    js = tmp_path / "py.jsonl"
    js.write_text('{"asctime": "2024-03-11 17:00:02,500", "levelname": "INFO", "msg": "to ann@example.com"}\n')
    db = tmp_path / "t.duckdb"
    scan_paths([str(text), str(js)], db)
    got = read_rows(db, "SELECT epoch_ms(ts) FROM findings ORDER BY source_path, line")
    base = 1710176400000  # 2024-03-11T17:00:00Z
    assert got == [(base + 123,), (base + 1000,), (None,), (base + 2500,)]


def test_query_parameters_in_json_paths_and_referers_are_fields(tmp_path):
    """An API Gateway path, a JSON url and an access log's referer name the query parameter a
    value sits in, like the request line does (query.email → Contact.Email)."""
    from leakwatch.pipeline import scan_paths
    from helpers import read_rows

    gw = tmp_path / "gw.jsonl"
    gw.write_text('{"requestTime":"11/Mar/2024:10:00:00 +0000","httpMethod":"GET",'
                  '"path":"/prod/v1/assist?email=max.mustermann%40example.de&lang=de","status":"200"}\n')
    ng = tmp_path / "access.log"
    ng.write_text('203.0.113.9 - - [11/Mar/2024:10:00:00 +0000] "GET /cart HTTP/1.1" 200 512 '
                  '"https://shop.example.com/checkout?email=ref.user@example.com&step=2" "Mozilla/5.0"\n')
    db = tmp_path / "q.duckdb"
    scan_paths([str(gw), str(ng)], db)
    got = read_rows(db, "SELECT field_path, sf_object, sf_field FROM findings WHERE entity = 'EMAIL_ADDRESS' "
                        "ORDER BY source_path")
    assert got == [("referer.query.email", "Contact", "Email"), ("path.query.email", "Contact", "Email")]


def test_a_json_line_longer_than_the_head_is_jsonl():
    # An LLM request logged as one line is often longer than the 8 KiB the sniffer reads.
    line = json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "x " * 10_000}]}).encode()
    assert sniff(line[:8192]) == "jsonl"
    assert sniff(line + b"\n" + line)[:5] == "jsonl"
    assert sniff(b"x " * 5000) == "text"  # a long text line is not JSON because it is long


def test_semicolon_and_tab_headers_are_csv():
    from leakwatch.sources.formats import make_parser
    from leakwatch.sources.formats._csv import separator_of

    assert separator_of(b'Name;"Amount (USD, net)";Date') == b";"
    assert separator_of(b"a\tb\tc") == b"\t" and separator_of(b"a,b;c,d") == b"," and separator_of(b"abc") == b","
    text = "Vorname;Nachname;E-Mail\nJürgen;Müller;jm@example.de\n".encode()
    assert sniff(text) == "csv"
    line = "Jürgen;Müller;jm@example.de".encode()
    rec = make_parser("csv", header_line=b"Vorname;Nachname;E-Mail").parse(line)
    assert rec.problem is None
    assert [(p, line[s:e]) for p, s, e in rec.fields] == [
        ("Vorname", "Jürgen".encode()), ("Nachname", "Müller".encode()), ("E-Mail", b"jm@example.de")]
