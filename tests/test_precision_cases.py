"""Precision and recall cases left open by earlier reviews, each built by hand from what real
logs hold, each failing before its fix."""
from __future__ import annotations

import json

import pytest


def _jsonl_findings(cli, tmp_path, text: str, *extra: str, name: str = "app.log"):
    log = tmp_path / name
    log.write_text(text)
    r = cli("scan", log, "--db", tmp_path / "lw.duckdb", "--jsonl", "-", *extra)
    return r, [json.loads(line) for line in r.out.splitlines() if line.startswith("{")]


def test_a_placeholder_key_is_listed_low_and_does_not_trip_fail_on_high(cli, tmp_path):
    placeholder = "OPENAI_API_KEY=sk-" + "x" * 48 + "\n"
    r, found = _jsonl_findings(cli, tmp_path, placeholder, "--fail-on", "high")
    assert [(f["rule"], f["severity"]) for f in found] == [("openai_api_key", "low")]
    assert r.rc == 0
    real = placeholder + "key=sk-proj-Ab3dE5gH7jK9mN1pQ3sT5vX7zB9dF1hJ3lN5\n"
    r, found = _jsonl_findings(cli, tmp_path, real, "--fail-on", "high", name="b.log")
    assert sorted((f["line"], f["severity"]) for f in found) == [(1, "low"), (2, "high")]
    assert r.rc == 1


def test_a_generic_tax_id_scores_below_a_german_keyword(cli, tmp_path):
    _, found = _jsonl_findings(cli, tmp_path, 'tax_id=86420975363\nSteuer-ID: 86420975363\n')
    conf = {f["line"]: f["confidence"] for f in found if f["rule"] == "de_steuerid"}
    assert set(conf) == {1, 2} and conf[1] <= conf[2] - 0.2


def test_a_java_map_in_a_logfmt_file_keeps_its_keys(cli, tmp_path):
    router = ('at=info method=GET path="/" host=shop.herokuapp.com request_id=r{0} fwd="10.0.0.{0}" dyno=web.1 '
              'connect=1ms service=2ms status=200 bytes=12 protocol=https\n')
    mule = ("INFO  2024-03-11 16:00:00,123 [[MuleRuntime].uber.12: [orders-api].orders-flow.CPU_LITE @3f2a1b] "
            "org.mule.runtime.core.internal.processor.LoggerMessageProcessor: payload "
            "{FirstName=Jane, LastName=Doe, Email=jane.doe@example.com}\n")
    _, found = _jsonl_findings(cli, tmp_path, router.format(1) + router.format(2) + mule, name="router.log")
    assert {f["format"] for f in found} == {"heroku"}
    assert sorted(f["field_path"] for f in found) == ["Email", "FirstName", "LastName"]


def test_a_phone_written_with_dots_is_no_ip_address(cli, tmp_path):
    text = '{"ts":"2024-05-01T10:00:00Z","phone":"06.12.34.56.78","fax":"01.23.45.67.89","ip":"203.0.113.9"}\n'
    _, found = _jsonl_findings(cli, tmp_path, text, name="app.jsonl")
    assert [f["field_path"] for f in found if f["entity"] == "IP_ADDRESS"] == ["ip"]


def test_field_names_fold_their_accents():
    from leakwatch.detect.context import normalize_field

    assert [normalize_field(k) for k in ("Straße", "prénom", "imię", "Teléfono", "Komórka", "First_Name")] == [
        "strasse", "prenom", "imie", "telefono", "komorka", "firstname"]
    assert normalize_field("Straße".encode()) == "strasse"


def test_catalog_names_and_part_numbers_are_no_people(cli, tmp_path):
    # A reviewer's false-positive hunt on logs holding no personal data: a multilingual product
    # feed, a span export and a catalog CSV (each line below was a finding before).
    lines = [
        {"product": {"sku": "MW-3102", "name": "Knit Sock", "i18n": {"fr": {"nom": "Pull Marin"},
                                                                       "es": {"nombre": "Zapatillas Trail"}}}},
        {"spans": [{"name": "Process Payment Authorization", "traceId": "4bf92f3577b34da6"}]},
        {"customer": {"nom": "Dupont", "prenom": "Jean"}},
    ]
    _, found = _jsonl_findings(cli, tmp_path, "".join(json.dumps(x) + "\n" for x in lines), name="feed.jsonl")
    assert sorted((f["line"], f["field_path"]) for f in found) == [(3, "customer.nom"), (3, "customer.prenom")]
    catalog = "sku,mpn,title,dni\nMW-3102,292-10-2956,Pant Shirt,\nMW-3103,72561610Z,Rain Jacket,\n"
    _, found = _jsonl_findings(cli, tmp_path, catalog, name="catalog.csv")
    assert found == []


def test_people_inside_lists_and_products_are_still_people(cli, tmp_path):
    lines = [
        {"data": {"items": [{"customer": {"first_name": "Hans", "last_name": "Mueller"}}]}},
        {"items": [{"firstName": "Jane", "lastName": "Doe"}]},
        {"product": {"sku": "MW-1", "seller": {"contactName": "Anna Schmidt"}}},
    ]
    _, found = _jsonl_findings(cli, tmp_path, "".join(json.dumps(x) + "\n" for x in lines), name="api.jsonl")
    assert sorted(f["field_path"] for f in found if f["entity"] == "PERSON_NAME") == [
        "data.items[0].customer.first_name", "data.items[0].customer.last_name", "items[0].firstName",
        "items[0].lastName", "product.seller.contactName"]


def test_street_and_birth_date_columns_of_an_export_are_read(cli, tmp_path):
    export = ("Id,FirstName,LastName,MailingStreet,Birthdate,Geburtsdatum\n"
              "0035j00000AbCdEAAV,Jane,Doe,221B Baker Street,1985-07-14,\n"
              "0035j00000AbCdFAAV,Max,Muster,Hauptstraße 5,,14.07.1985\n"
              "0035j00000AbCdGAAV,Ann,Lee,N/A,not known,\n")
    _, found = _jsonl_findings(cli, tmp_path, export, name="contacts.csv")
    got = sorted((f["line"], f["rule"], f["field_path"]) for f in found
                 if f["rule"] in ("street_address", "date_of_birth"))
    assert got == [(2, "date_of_birth", "Birthdate"), (2, "street_address", "MailingStreet"),
                   (3, "date_of_birth", "Geburtsdatum"), (3, "street_address", "MailingStreet")]


@pytest.mark.parametrize("sep", [";", "\t"])
def test_a_spreadsheet_export_with_semicolons_or_tabs_is_read_by_its_header(cli, tmp_path, sep):
    # Excel writes semicolons where the comma is the decimal mark (Germany, France, Spain…).
    rows = [["Kundennummer", "Prénom", "Nachname", "E-Mail", "Telefon", "Straße", "Geburtsdatum"],
            ["10001", "Jürgen", "Müller", "jm@example.de", "030 1234567", "Hauptstraße 5", "12.03.1985"],
            ["10002", '"Anna"', '"Schmidt"', "as@example.de", "0151 23456789", '"Kerkweg 12"', "01.02.1990"]]
    text = "".join(sep.join(r) + "\n" for r in rows)
    _, found = _jsonl_findings(cli, tmp_path, text, name="kunden.csv")
    got = {(f["line"], f["field_path"]) for f in found}
    assert got == {(n, c) for n in (2, 3) for c in ("Prénom", "Nachname", "E-Mail", "Telefon", "Straße", "Geburtsdatum")}
    assert {f["format"] for f in found} == {"csv"}
    raw = text.encode().split(b"\n")
    assert {raw[f["line"] - 1][f["start"]:f["end"]] for f in found if f["field_path"] == "Straße"} == {
        "Hauptstraße 5".encode(), b"Kerkweg 12"}


def test_name_value_pairs_name_their_values(cli, tmp_path):
    # OpenTelemetry attributes, a HAR capture's headers, Cognito's attribute list.
    lines = [
        {"spans": [{"attributes": [{"key": "product.gtin", "value": {"stringValue": "38803968862030"}},
                                   {"key": "payment.card", "value": {"stringValue": "4111111111111111"}}]}]},
        {"request": {"headers": [{"name": "Authorization", "value": "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJqYW5lIn0."
                                                                     "c2lnbmF0dXJlX2hlcmVfMTIzNDU2"}]}},
        {"UserAttributes": [{"Name": "email", "Value": "jane@example.com"}, {"Name": "Jane Doe", "Value": "x@y.example"}]},
    ]
    _, found = _jsonl_findings(cli, tmp_path, "".join(json.dumps(x) + "\n" for x in lines), name="pairs.jsonl")
    assert sorted((f["line"], f["rule"], f["field_path"]) for f in found) == [
        (1, "payment_card", "spans[0].attributes[1].payment.card"),
        (2, "jwt", "request.headers[0].Authorization"),
        (3, "email", "UserAttributes[0].email"),
        (3, "email", "UserAttributes[1].Value"),  # a name with a space names no field...
        (3, "person_name_generic", "UserAttributes[1].Name"),  # ...and may be a person's
    ]


def test_a_name_value_object_outside_the_known_layouts_keeps_its_path(cli, tmp_path):
    lines = [{"customer": {"name": "Smith", "value": "jane.smith@example.com"}},
             {"postData": {"params": [{"name": "email", "value": "j.smith@example.com"}]}}]
    _, found = _jsonl_findings(cli, tmp_path, "".join(json.dumps(x) + "\n" for x in lines), name="nv.jsonl")
    paths = {f["field_path"] for f in found if f["entity"] == "EMAIL_ADDRESS"}
    assert paths == {"customer.value", "postData.params[0].email"}  # a HAR list names its values


def test_a_person_field_under_a_product_is_a_person(cli, tmp_path):
    lines = [{"catalog": {"customerName": "Jane Doe"}}, {"order": {"product": {"cardholderName": "Max Muster"}}},
             {"brand": {"contact_person": {"lastName": "Schmidt"}}}]
    _, found = _jsonl_findings(cli, tmp_path, "".join(json.dumps(x) + "\n" for x in lines), name="p.jsonl")
    assert sorted(f["line"] for f in found if f["entity"] == "PERSON_NAME") == [1, 2, 3]


def test_a_product_record_names_a_product(cli, tmp_path):
    lines = [{"sku": "MW-3102-BLK", "gtin": "04012345678901", "name": "Knit Sock", "price": 12.5},
             {"items": [{"sku": "MW-1", "name": "Pant Shirt"}], "customer": {"name": "Jane Doe"}},
             {"name": "Jane Doe", "price": 10, "quantity": 1}]
    _, found = _jsonl_findings(cli, tmp_path, "".join(json.dumps(x) + "\n" for x in lines), name="cat.jsonl")
    assert sorted((f["line"], f["field_path"]) for f in found if f["entity"] == "PERSON_NAME") == [
        (2, "customer.name"), (3, "name")]
    text = ("2024-05-01 10:00:00.123 INFO 1 --- [main] c.s.ProductController : Fetched Product{id=1310354, "
            "sku='MW-3102-BLK-44', name='Knit Sock', price=346.31}\n"
            "2024-05-01 10:00:01.123 INFO 1 --- [main] c.s.UserController : Fetched User{id=7, name='Jane Doe'}\n")
    _, found = _jsonl_findings(cli, tmp_path, text, name="spring.log")
    assert [f["line"] for f in found if f["entity"] == "PERSON_NAME"] == [2]


def test_key_anchored_rules_read_name_value_pairs(cli, tmp_path):
    lines = [{"UserAttributes": [{"Name": "phone_number", "Value": "0151 23456789"},
                                 {"Name": "given_name", "Value": "Hans"},
                                 {"Name": "birthdate", "Value": "1985-03-12"}]},
             {"attributes": [{"key": "enduser.phone", "value": {"stringValue": "030 1234567"}}]}]
    text = "".join(json.dumps(x) + "\n" for x in lines)
    _, found = _jsonl_findings(cli, tmp_path, text, name="cognito.jsonl")
    raw = text.encode().split(b"\n")
    got = sorted((f["line"], f["rule"], f["field_path"], raw[f["line"] - 1][f["start"]:f["end"]]) for f in found)
    assert got == [
        (1, "date_of_birth", "UserAttributes[2].birthdate", b"1985-03-12"),
        (1, "person_name", "UserAttributes[1].given_name", b"Hans"),
        (1, "phone_national", "UserAttributes[0].phone_number", b"0151 23456789"),
        (2, "phone_national", "attributes[0].enduser.phone", b"030 1234567"),
    ]


def test_custom_field_columns_of_an_export_are_read_whole(cli, tmp_path):
    # Salesforce custom fields end in __c: Date_of_Birth__c is a birth date column as Birthdate
    # is, PESEL__c a PESEL column. Cells that fail the rule's check (n/a, a wrong checksum) are none.
    export = ("Id,LastName,Steuer_ID__c,BSN__c,PESEL__c,Date_of_Birth__c,Mobile__c,Codice_Fiscale__c\n"
              "0033X00000AbCdEQAV,Mustermann,44098256348,578485692,85031201684,1985-03-12,0151 23456789,"
              "rssmra85t10a562s\n"
              "0033X00000AbCdFQAV,Musterfrau,12345678901,123456789,12345678901,n/a,n/a,rssmra85t10a562x\n"
              # In capitals the code is also a match of its unanchored rule: one finding, not two.
              "0033X00000AbCdGQAV,Rossi,,,,,,RSSMRA85T10A562S\n")
    _, found = _jsonl_findings(cli, tmp_path, export, name="contacts.csv")
    by_line = sorted((f["line"], f["rule"]) for f in found if f["rule"] not in ("sf_record_id", "person_name"))
    assert by_line == [(2, "date_of_birth"), (2, "de_steuerid"), (2, "it_codice_fiscale"), (2, "nl_bsn"),
                       (2, "phone_national"), (2, "pl_pesel"), (4, "it_codice_fiscale")]


def test_report_export_labels_with_punctuation_keep_the_columns(cli, tmp_path):
    # A Salesforce report export labels its columns as the report shows them: one "/" in a
    # label ("Zip/Postal Code") used to make the whole header unreadable, and every name,
    # phone and street in the file was missed.
    export = ('"Lead ID","First Name","Last Name","Phone","Street","Zip/Postal Code","Company, Inc"\n'
              '"00Q8c00000AbCdE","Raj","Patel","617.555.0119","7188 Market Street","98101-6119","Acme"\n')
    _, found = _jsonl_findings(cli, tmp_path, export, name="report.csv")
    got = sorted((f["rule"], f["field"]) for f in found if f["rule"] != "sf_record_id")
    # The ZIP+4 of the "Zip/Postal Code" column is the postcode it is, not a phone or an SSN.
    assert got == [("person_name", "firstname"), ("person_name", "lastname"), ("phone_national", "phone"),
                   ("postal_code", "zippostalcode"), ("street_address", "street")]


def test_a_quoted_label_may_hold_the_separator():
    from leakwatch.detect.engine import sniff_csv_header

    header = sniff_csv_header(b'"Company, Inc","Owner\'s Name","Phone (Work)","Account #"\r\n')
    assert list(header) == ["Company, Inc", "Owner's Name", "Phone (Work)", "Account #"]
    assert sniff_csv_header(b'{"a":1,"b":2,"c":3}') is None
    assert sniff_csv_header(b"2024-01-01,foo,bar") is None


def test_a_cart_line_names_a_product_and_a_page_of_items_may_name_people(cli, tmp_path):
    lines = ('{"msg":"cart.add","item":{"name":"Classic Hoodie","price":49.99,"qty":1}}\n'
             '{"cart":{"lineItems":[{"name":"Knit Sock Pack","qty":2}]}}\n'
             '{"items":[{"name":"Jane Doe","email_verified":true}]}\n')
    _, found = _jsonl_findings(cli, tmp_path, lines)
    assert [(f["line"], f["rule"]) for f in found] == [(3, "person_name_generic")]


def test_a_value_in_a_query_string_hashes_and_masks_as_written_plainly(cli, tmp_path):
    # The same birth date and phone, typed into a form (query string) and into JSON: one value.
    lines = ('GET /checkout/guest?dob=03%2F14%2F1985&phone=%28415%29+555-0132&iban=DE89%203704%200044%200532%200130%2000'
             ' HTTP/1.1\n'
             '{"dob":"03/14/1985","phone":"(415) 555-0132","iban":"DE89 3704 0044 0532 0130 00"}\n')
    _, found = _jsonl_findings(cli, tmp_path, lines)
    by = {(f["line"], f["entity"]): f for f in found}
    assert by[(1, "IBAN_CODE")]["masked"] == by[(2, "IBAN_CODE")]["masked"] == "DE****************3000"
    for entity in ("DATE_OF_BIRTH", "PHONE_NUMBER", "IBAN_CODE"):
        assert by[(1, entity)]["value_hash"] == by[(2, entity)]["value_hash"]
    assert by[(1, "DATE_OF_BIRTH")]["masked"] == "**/**/****"


def test_a_phone_in_prose_and_a_phone_column_are_each_reported_once(cli, tmp_path):
    # The prose rule's shapes also fit a Phone column's cells: the column is still read whole
    # (the prose rule, which needs a phone word, claims nothing there) and reported once.
    export = ("Id,FirstName,Type,Phone,MobilePhone\n"
              "003000000000001,Jane,Contact,(929) 555-0113,512-650-5673\n")
    _, found = _jsonl_findings(cli, tmp_path, export, name="contacts.csv")
    phones = sorted((f["field"], f["rule"]) for f in found if f["entity"] == "PHONE_NUMBER")
    assert phones == [("mobilephone", "phone_national"), ("phone", "phone_national")]
    prompt = '{"messages":[{"role":"user","content":"Please call me at (415) 555-0132, phone: 415-555-0133"}]}\n'
    _, found = _jsonl_findings(cli, tmp_path, prompt, name="prompt.jsonl")
    spans = sorted((f["start"], f["end"]) for f in found if f["entity"] == "PHONE_NUMBER")
    assert len(spans) == 2 and spans[0][1] <= spans[1][0]


def test_a_polish_account_number_hashes_as_its_iban(cli, tmp_path):
    lines = ('{"nrb":"61 1090 1014 0000 0712 1981 2874"}\n'
             '{"iban":"PL61 1090 1014 0000 0712 1981 2874"}\n')
    _, found = _jsonl_findings(cli, tmp_path, lines)
    assert [f["rule"] for f in found] == ["pl_nrb", "iban"]
    assert found[0]["value_hash"] == found[1]["value_hash"] and found[0]["entity"] == found[1]["entity"]
