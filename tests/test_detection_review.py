"""Detection and Salesforce mapping: misses and false alarms found by a review with hand-made
log lines in each format (each test failed before its fix)."""
from __future__ import annotations

import json

from helpers import scan_jsonl


def _by_rule(rows: list[dict], rule: str) -> list[dict]:
    return [r for r in rows if r["rule"] == rule]


def test_a_url_encoded_salesforce_session_id_is_found(tmp_path, cli):
    """frontdoor.jsp?sid=00D…%21… (a client encoded the '!'): a live org session, missed."""
    rows = scan_jsonl(cli, tmp_path, "a.log",
                 '203.0.113.5 - - [11/Mar/2024:16:00:00 +0000] "GET /secur/frontdoor.jsp?sid=00D5j000000AbCd%21AQ0AQ'
                 'Hk9bRz3Jx8Lm2Np4Qr6St8Uv0Wx2Yz4Ab6Cd8Ef0Gh2Ij4Kl6Mn8&retURL=%2Fhome HTTP/1.1" 302 0 "-" "Mozilla/5.0"\n')
    sid = _by_rule(rows, "sf_session_id")
    assert len(sid) == 1 and sid[0]["severity"] == "critical"
    assert "AQ0AQHk9" not in json.dumps(rows)


def test_a_line_break_in_a_quoted_report_cell_keeps_the_columns_of_the_rest_of_the_row(tmp_path, cli):
    """Counted from the left, the line after the break filed the e-mail under Description and
    the phone under Email (Contact.Email)."""
    text = "\r\n".join(['"First Name","Description","Email","Phone"',
                        '"Jane","Called about order',
                        'write to zed@example.net, phone',
                        'needs refund","jane.doe@example.com","+14155550132"',
                        '"Bob","ok","bob@example.org","+14155550199"']) + "\r\n"
    rows = scan_jsonl(cli, tmp_path, "report.csv", text)
    got = {(r["line"], r["rule"]): (r.get("field_path"), r.get("sf_object"), r.get("sf_field")) for r in rows}
    assert got[(3, "email")] == (None, None, None)  # inside the Description: column not known here
    assert got[(4, "email")] == ("Email", "Contact", "Email")
    assert got[(4, "phone_e164")] == ("Phone", "Contact", "Phone")
    assert got[(5, "email")] == ("Email", "Contact", "Email")


def test_times_and_versions_kept_about_a_phone_are_no_phone_numbers(tmp_path, cli):
    rows = scan_jsonl(cli, tmp_path, "a.jsonl", "\n".join([
        '{"ts":"2024-03-11T16:00:00Z","user_id":42,"phone_verified_at":1710172800,"email_verified":true}',
        '{"ts":"2024-03-11T16:00:01Z","user_id":42,"phoneVerifiedAt":"2024-03-11 16:00:00"}',
        '{"ts":"2024-03-11T16:00:02Z","mobile_app_version":"10203040","mobile_build":"20240311"}',
        '{"ts":"2024-03-11T16:00:03Z","fax_sent_at":1710172800,"mobileOtpExpiresAt":1710173100000}',
        '{"ts":"2024-03-11T16:00:04Z","phone":"+14155550132","mobile":"07700 900123","phone_number":"030 1234567"}',
    ]) + "\n")
    phones = [r for r in rows if r["entity"] == "PHONE_NUMBER"]
    assert sorted(r["field"] for r in phones) == ["mobile", "phone", "phonenumber"]
    assert {r["line"] for r in phones} == {5}


def test_names_and_paths_of_secrets_are_no_api_keys(tmp_path, cli):
    rows = scan_jsonl(cli, tmp_path, "a.log", "\n".join([
        "2024-03-11T16:00:00Z INFO loaded secret arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod/payments/stripe-api-XyZ123",
        '{"ts":"2024-03-11T16:00:01Z","SecretId":"arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db/credentials-AbC12d"}',
        "2024-03-11T16:00:07Z INFO client_secret: projects/123456789012/secrets/oauth-client/versions/3",
        "2024-03-11T16:00:04Z INFO vault read secret=kv/data/prod/payments2024/config",
        "2024-03-11T16:00:05Z INFO api_key=Xk9fQ2mZ7rT4vB8nL1pW6yH3jD5sA0cE",
        "2024-03-11T16:00:06Z INFO aws_secret=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY9",
    ]) + "\n")
    assert [r["line"] for r in _by_rule(rows, "generic_api_key")] == [5, 6]


def test_signed_numbers_are_no_international_phone_numbers(tmp_path, cli):
    rows = scan_jsonl(cli, tmp_path, "a.log", "\n".join([
        "2024-03-11T16:00:00Z INFO geo lat=+52.5200066 lon=+13.4049540 city=Berlin",
        "2024-03-11T16:00:03Z INFO heap delta=+104857600 bytes",
        "2024-03-11T16:00:04Z INFO balance +1500000.00 EUR credited",
        "2024-03-11T16:00:05Z INFO sms sent to +44 7700 900123",
    ]) + "\n")
    assert [r["line"] for r in _by_rule(rows, "phone_e164")] == [4]


def test_order_invoice_and_message_numbers_are_no_cards(tmp_path, cli):
    keys = ["order_no", "orderNo", "invoice_number", "invoiceId", "shipment_id", "msgId"]
    values = ["4666176031372159", "4010928159013962", "4760207764265651", "4156404104234685",
              "4541858369492359", "4302901195203480"]
    lines = [json.dumps({"ts": "2024-03-11T16:00:00Z", k: v}) for k, v in zip(keys, values)]
    lines.append('{"ts":"2024-03-11T16:00:00Z","card":"4111111111111111"}')
    rows = scan_jsonl(cli, tmp_path, "a.jsonl", "\n".join(lines) + "\n")
    assert [r["line"] for r in _by_rule(rows, "payment_card")] == [7]


def test_nested_billing_and_shipping_addresses_and_report_postcode_labels_map_to_their_fields(tmp_path, cli):
    rows = scan_jsonl(cli, tmp_path, "a.jsonl", "\n".join([
        '{"ts":"2024-03-11T16:00:00Z","shipping":{"address":{"line1":"1600 Amphitheatre Parkway","postal_code":"94043"}}}',
        '{"ts":"2024-03-11T16:00:01Z","billing":{"address":{"line1":"12 High Street","postal_code":"SW1A 1AA"}}}',
    ]) + "\n")
    got = sorted((r["line"], r.get("sf_object"), r.get("sf_field")) for r in rows if r["rule"] in ("street_address", "postal_code"))
    assert got == [(1, "Account", "ShippingPostalCode"), (1, "Account", "ShippingStreet"),
                   (2, "Account", "BillingPostalCode"), (2, "Account", "BillingStreet")]
    rows = scan_jsonl(cli, tmp_path, "report.csv", '"First Name","Mailing Zip/Postal Code","Billing Zip/Postal Code"\n'
                                              '"Jane","94105","SW1A 1AA"\n')
    got = sorted((r.get("sf_object"), r.get("sf_field")) for r in _by_rule(rows, "postal_code"))
    assert got == [("Account", "BillingPostalCode"), ("Contact", "MailingPostalCode")]
