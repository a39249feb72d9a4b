"""Every shipped rule, through the real path: native Scanner → Evaluator.

Each rule has true positives (the value it must report) and hard negatives (lines it must stay
silent on). Values are fake: example.* domains, issuer test cards, documentation IPs, national
IDs with checksums computed by python-stdnum for made-up numbers. Credentials are generated at
import time from a seeded RNG so that no key-shaped literal sits in the repository.
"""
from __future__ import annotations

import base64
import json
import random
import string

import pytest

from leakwatch._core import ReferenceScanner, Scanner
from leakwatch._core.fastval import sfid_suffix
from leakwatch.detect.context import field_before, has_context, normalize_field, not_context
from leakwatch.detect.evaluate import Evaluator
from leakwatch.detect.mask import get_masker
from leakwatch.detect.rules import default_rules_dir, load_rules

RULES, ERRORS = load_rules([default_rules_dir()])
SCANNER = Scanner([r.regex for r in RULES])
EVALUATOR = Evaluator(RULES)

_rng = random.Random(20240311)
_B62 = string.ascii_letters + string.digits


def _fake(n: int, alphabet: str = _B62) -> str:
    return "".join(_rng.choice(alphabet) for _ in range(n))


def _b64url_json(obj: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


OPENAI_PROJ = "sk-" + "proj-" + _fake(40) + "_" + _fake(40) + "T3Blbk" + "FJ" + _fake(30)
OPENAI_LEGACY = "sk-" + _fake(20) + "T3Blbk" + "FJ" + _fake(20)
ANTHROPIC = "sk-" + "ant-api03-" + _fake(60) + "-" + _fake(30) + "AA"
GOOGLE = "AI" + "za" + _fake(35, _B62 + "_-")
HF = "hf" + "_" + _fake(34, string.ascii_letters)
GROQ = "gsk" + "_" + _fake(52)
REPLICATE = "r8" + "_" + _fake(37)
COHERE = _fake(40)
MISTRAL = _fake(32)
AWS_AKID = "AK" + "IA" + _fake(16, string.ascii_uppercase + string.digits)
AWS_SECRET = _fake(40, _B62 + "/+")
AZURE_HEX = _fake(32, "0123456789abcdef")
AZURE_STORAGE = base64.b64encode(bytes(_rng.getrandbits(8) for _ in range(64))).decode()
BEARER = _fake(40, _B62 + "._-")
BASIC = base64.b64encode(b"svc-shop:Hunter2-Example").decode()
JWT = ".".join([_b64url_json({"alg": "HS256", "typ": "JWT"}), _b64url_json({"sub": "u1", "iat": 1700000000}), _fake(43)])
JWT_NO_ALG = ".".join([_b64url_json({"typ": "JWT", "kid": "k1"}), _b64url_json({"sub": "u1"}), _fake(43)])
SF_SESSION = "00D5j000000AbCd" + "!" + _fake(96, _B62 + "._")
STRIPE_LIVE = "sk_live_" + "51HxQ2eLkdIwHu7ixT2pQv9R0mZbN4cY8"
GITHUB_PAT = "ghp_" + "R7mK2xQ9vL4pW8nT3bY6cZ1dF5gH0jA2sE4u"
SLACK_BOT = "xoxb-" + "2048603921-5820193847162-Qm7Rv2Lp9Xk4Tn8Wb3Yc6Hd1"
SECRET_32 = _fake(32)


def _sfid18(id15: str) -> str:
    return id15 + sfid_suffix(id15.encode())


# (rule id, line, value the rule must report)
POSITIVES: list[tuple[str, str | bytes, str | bytes]] = [
    ("email", '{"email": "jane.doe@example.com", "status": "ok"}', "jane.doe@example.com"),
    ("email", "Message-ID: <CAF3x9@mail.gmail.com> From: Jane Doe <jane.doe@example.com>", "jane.doe@example.com"),
    ("email", "Reply-To: git.admin@acme-shop.com", "git.admin@acme-shop.com"),
    ("email", "notify j.smith+shop@mail.example.org about order", "j.smith+shop@mail.example.org"),
    ("email", "mailto:ops@example.invalid", "ops@example.invalid"),
    ("email", "GET /account?email=jane.doe%40example.com&x=1 HTTP/1.1", "jane.doe%40example.com"),
    ("phone_e164", '{"phone": "+44 20 7946 0958"}', "+44 20 7946 0958"),
    ("phone_e164", "callback +1 (555) 010-1234 requested", "+1 (555) 010-1234"),
    ("phone_e164", "sms_to=+4915112345678 status=queued", "+4915112345678"),
    ("phone_national", '{"MobilePhone": "030 1234567"}', "030 1234567"),
    ("phone_national", "phone=(555) 010-1234 channel=web", "(555) 010-1234"),
    ("phone_national", "Tel: 06 12 34 56 78", "06 12 34 56 78"),
    ("date_of_birth", '{"birthdate": "1985-04-12"}', "1985-04-12"),
    ("date_of_birth", '{"Birthdate":"1985-04-12T00:00:00.000Z"}', "1985-04-12"),
    ("date_of_birth", "dob=12.04.1985 country=DE", "12.04.1985"),
    ("date_of_birth", '{"geburtsdatum":"12. M\u00e4rz 1985"}'.encode(), "12. M\u00e4rz 1985".encode()),
    ("date_of_birth", '{"fecha_nacimiento":"12 de marzo de 1985"}', "12 de marzo de 1985"),
    ("date_of_birth", '{"date_naissance":"12 juillet 1985"}', "12 juillet 1985"),
    ("date_of_birth", '{"dateOfBirth":"March 12, 1985"}', "March 12, 1985"),
    ("date_of_birth", "data_urodzenia: 12 lipca 1985", "12 lipca 1985"),
    ("es_dni", "DNI: 72.996.991-M", "72.996.991-M"),
    ("iban", "IBAN DE89-3704-0044-0532-0130-00 bitte", "DE89-3704-0044-0532-0130-00"),
    ("phone_national", "T\u00e9l. : 06 12 34 56 78".encode(), b"06 12 34 56 78"),
    ("phone_e164", "sip contact +4915123456789:5060", "+4915123456789"),
    ("phone_e164", "call +49 151 2345678: urgent", "+49 151 2345678"),
    ("date_of_birth", "Geburtsdatum: 04/12/1985", "04/12/1985"),
    ("date_of_birth", "date_of_birth=19850412", "19850412"),
    ("date_of_birth", '{"customerDob":"1985-07-14"}', "1985-07-14"),
    ("date_of_birth", '{"dateOfBirth":"1985-07-14"}', "1985-07-14"),
    ("date_of_birth", "<Birthdate>1985-07-14</Birthdate>", "1985-07-14"),
    ("date_of_birth", '{"Birthdate__c":"1985-07-14"}', "1985-07-14"),
    ("date_of_birth", '{"Date_of_Birth__c":"1985-07-14"}', "1985-07-14"),
    ("date_of_birth", '{"DOB__c":"1985-07-14"}', "1985-07-14"),
    ("date_of_birth", '{"birthDateUtc":"1985-07-14"}', "1985-07-14"),
    ("phone_national", '"GET /track?phone=030%201234567 HTTP/1.1"', "030%201234567"),
    ("phone_national", "<Phone>030 1234567</Phone>", "030 1234567"),
    ("person_name", "<Contact><FirstName>Jane</FirstName><LastName>Doe</LastName></Contact>", "Doe"),
    ("person_name", '{"customerName":"Ludwig van Beethoven"}', "Ludwig van Beethoven"),
    ("person_name", '{"lastName":"McDonald"}', "McDonald"),
    ("person_name", '{"cardholderName":"JANE DOE","amount":42}', "JANE DOE"),
    ("person_name", "LAST_NAME=M\u00dcLLER;FIRST_NAME=J\u00dcRGEN".encode(), "M\u00dcLLER".encode()),
    ("person_name", '{"fullName":"Maria de la Cruz"}', "Maria de la Cruz"),
    # json.dumps writes non-ASCII letters as escapes by default.
    ("person_name", r'{"firstName":"Jos\u00e9","lastName":"M\u00fcller"}', r"Jos\u00e9"),
    ("person_name", r'{"firstName":"Jos\u00e9","lastName":"M\u00fcller"}', r"M\u00fcller"),
    ("person_name", r'{"customerName":"\u00c9mile \u0141ukasz"}', r"\u00c9mile \u0141ukasz"),
    ("street_address", "<MailingStreet>1 Market St</MailingStreet>", "1 Market St"),
    ("street_address", '{"BillingStreet": "1 Market St", "BillingCity": "Springfield"}', "1 Market St"),
    ("street_address", 'address="221B Baker Street, London"', "221B Baker Street, London"),
    ("street_address", '{"street": "Hauptstra\u00dfe 5"}'.encode(), "Hauptstra\u00dfe 5".encode()),
    ("street_address", '{"shipping_address":{"address1":"123 Main St","city":"Springfield"}}', "123 Main St"),
    ("street_address", '{"addressLine1":"221B Baker Street"}', "221B Baker Street"),
    ("street_address", '{"street":"12 O\'Connell Street Upper","city":"Dublin"}', "12 O'Connell Street Upper"),
    ("street_address", "at=info street=Hauptstr. 5 city=Berlin", "Hauptstr. 5"),
    ("street_address", r'{"street":"Hauptstra\u00dfe 5","city":"Berlin"}', r"Hauptstra\u00dfe 5"),
    ("street_address", "{MailingStreet=Unter den Linden 77, Birthdate=1985-07-14}", "Unter den Linden 77"),
    ("person_name", '{"firstName": "Jane", "last_name": "Doe"}', "Jane"),
    ("person_name", '{"firstName": "Jane", "last_name": "Doe"}', "Doe"),
    ("person_name", 'USER_NAME="Jane Roe" action=login', "Jane Roe"),
    ("person_name", '{"customerName": "Jos\u00e9 M\u00fcller"}'.encode(), "Jos\u00e9 M\u00fcller".encode()),
    ("person_name", '{"FirstName":"Ana-Maria","full_name":"Ana-Maria Test"}', "Ana-Maria Test"),
    ("person_name_generic", '{"Id": "x", "Name": "Jane Doe"}', "Jane Doe"),
    ("person_name_generic", '{"displayName": "Jane Doe"}', "Jane Doe"),
    ("payment_card", "card=4111 1111 1111 1111 exp=12/30", "4111 1111 1111 1111"),
    ("payment_card", '{"pan":"5555555555554444"}', "5555555555554444"),
    # European spellings (a reviewer's recall hunt): keys in Dutch, Polish, Italian, with accents;
    # names and e-mails with letters outside ASCII; lower-case IBANs under local keys.
    ("email", "Kontakt: j\u00fcrgen.m\u00fcller@example.de".encode(), "j\u00fcrgen.m\u00fcller@example.de".encode()),
    ("email", "to=jose@espa\u00f1a.es".encode(), "jose@espa\u00f1a.es".encode()),
    ("person_name", r'{"nachname":"Wei\u00df"}', r"Wei\u00df"),
    ("person_name", '{"voornaam":"Jan","achternaam":"Jansen"}', "Jansen"),
    ("person_name", '{"nazwisko":"Wi\u015bniewska"}'.encode(), "Wi\u015bniewska".encode()),
    ("person_name", '{"imi\u0119":"\u0141ukasz"}'.encode(), "\u0141ukasz".encode()),
    ("person_name", '{"pr\u00e9nom":"Fran\u00e7ois"}'.encode(), "Fran\u00e7ois".encode()),
    ("person_name", '{"kontoinhaber":"Max Mustermann"}', "Max Mustermann"),
    ("person_name", "time=10:00 first_name=Max id=42", "Max"),
    ("street_address", '{"anschrift":"Hauptstra\u00dfe 5"}'.encode(), "Hauptstra\u00dfe 5".encode()),
    ("street_address", '{"straat":"Kerkstraat 12"}', "Kerkstraat 12"),
    ("street_address", '{"stra\u00dfe":"Hauptstra\u00dfe 5"}'.encode(), "Hauptstra\u00dfe 5".encode()),
    ("date_of_birth", '{"geboortedatum":"12-03-1985"}', "12-03-1985"),
    ("date_of_birth", "data_urodzenia=12.03.1985", "12.03.1985"),
    ("phone_national", '{"mobilnummer":"0151 23456789"}', "0151 23456789"),
    ("phone_national", '{"telefoonnummer":"06-12345678"}', "06-12345678"),
    ("phone_national", '{"m\u00f3vil":"612 345 678"}'.encode(), b"612 345 678"),
    ("iban_lowercase", '{"kontonummer":"de89370400440532013000"}', "de89370400440532013000"),
    ("iban_lowercase", '{"ibanNumber":"de89 3704 0044 0532 0130 00"}', "de89 3704 0044 0532 0130 00"),
    ("payment_card", "maestro card 6759 1234 5678 9015 exp 09/28", "6759 1234 5678 9015"),
    ("payment_card", '{"cardNumber":"6761123456789012348"}', "6761123456789012348"),
    ("payment_card", "pan=5018-1234-5678-9014", "5018-1234-5678-9014"),
    ("payment_card", "Card No.4111 1111 1111 1111 exp 09/28", "4111 1111 1111 1111"),
    ("payment_card", "cards: 4111111111111111 5500000000000004", "5500000000000004"),
    ("payment_card", "Jan 5 2024 4111111111111111 charged", "4111111111111111"),
    ("person_name", '{"cardholderName":"JOHN O\'NEIL"}', "JOHN O'NEIL"),
    ("person_name", '{"lastName":"O\'Neil","firstName":"Sean"}', "O'Neil"),
    ("person_name", '{"lastName":"Guest"}', "Guest"),
    ("email", "from=git@example.org", "git@example.org"),
    ("ipv6_global", "client_ip:2a00:1450:4001:82a::200e", "2a00:1450:4001:82a::200e"),
    ("ipv6_global", "client=[2606:4700::1111]:443", "2606:4700::1111"),
    ("payment_card", "4111111111111111,5555555555554444", "5555555555554444"),
    ("phone_e164", "GET /api/leads?phone=%2B442079460958&src=ads", "%2B442079460958"),
    ("phone_national", '{"content":"contact 0035j00000AbCdE, Phone 4155550142, email li@example.net"}', "4155550142"),
    ("phone_national", '{"content":"Kunde Tel. 030 1234567 bitte"}', "030 1234567"),
    ("phone_e164", "ref=x&tel=%2B49%2030%2012345678 HTTP/1.1", "%2B49%2030%2012345678"),
    ("email", "GET /a?email=jane.doe%2540example.com&x=1", "jane.doe%2540example.com"),
    # An escape or a %XX before an address is not part of it (JSON \n and \t, Go's \u003c for
    # `<`, a URL's %20 and %3C); an encoded + - . _ in the local part is.
    ("email", r'{"msg":"Contact:\namy@example.com"}', "amy@example.com"),
    ("email", r'{"msg":"To:\tbob@example.com"}', "bob@example.com"),
    ("email", r'{"msg":"\u003cbob@example.com\u003e"}', "bob@example.com"),
    ("email", "/search?q=hello%20cy@example.com&x=1", "cy@example.com"),
    ("email", "x=%3Cdan@example.com%3E", "dan@example.com"),
    ("email", "GET /a?email=jane.doe%2Bshop%40example.com", "jane.doe%2Bshop%40example.com"),
    ("payment_card", '{"trace":"x","cardPan":"5555555555554444"}', "5555555555554444"),
    ("payment_card", "amex 3782 822463 10005 ok", "3782 822463 10005"),
    ("payment_card", "discover=6011-1111-1111-1117", "6011-1111-1111-1117"),
    ("payment_card", "mc2 2223003122003222", "2223003122003222"),
    ("payment_card", "jcb 3530111333300000", "3530111333300000"),
    ("iban", "refund to IBAN GB82 WEST 1234 5698 7654 32 today", "GB82 WEST 1234 5698 7654 32"),
    ("iban", "DE89370400440532013000 USD", "DE89370400440532013000"),
    ("iban", '{"iban":"NL91ABNA0417164300"}', "NL91ABNA0417164300"),
    ("us_ssn", "applicant ssn 123-45-6789 verified", "123-45-6789"),
    ("us_ssn_plain", '{"ssn": "123456789"}', "123456789"),
    ("us_ssn_plain", "Social Security Number: 536221234", "536221234"),
    ("uk_nino", "NINO AB 12 34 56 C on file", "AB 12 34 56 C"),
    ("uk_nino", '{"ni_number":"AB123456C"}', "AB123456C"),
    ("de_steuerid", "Steuer-ID: 86420975363", "86420975363"),
    ("de_steuerid", '{"steuerId":"86 420 975 363"}', "86 420 975 363"),
    ("de_steuerid", "IdNr 86420975363", "86420975363"),
    ("fr_nir", "nir 185057800608491", "185057800608491"),
    ("fr_nir", "numero: 2 69 07 99 123 456 94", "2 69 07 99 123 456 94"),
    ("es_dni", "DNI 12345678Z", "12345678Z"),
    ("es_dni", '{"nif":"12345678-Z"}', "12345678-Z"),
    ("es_nie", "NIE X7654321J", "X7654321J"),
    ("it_codice_fiscale", "cf RSSMRA85T10A562S", "RSSMRA85T10A562S"),
    ("nl_bsn", "BSN: 123456782", "123456782"),
    ("nl_bsn", '{"burgerservicenummer":"1234.56.782"}', "1234.56.782"),
    ("pl_pesel", "pesel=85010112345", "85010112345"),
    ("pl_pesel", '{"PESEL": "44050543214"}', "44050543214"),
    ("ipv4_public", "client=203.0.113.5 lb=10.0.0.1", "203.0.113.5"),
    ("ipv4_public", 'fwd="198.51.100.23" dyno=web.1', "198.51.100.23"),
    ("ipv4_public", "resolver 8.8.8.8", "8.8.8.8"),
    # A version number further back does not hide the address after it.
    ("ipv4_public", "version=4.12.0.1 client=203.0.113.9", "203.0.113.9"),
    ("ipv4_public", "src=172.32.0.1", "172.32.0.1"),
    ("ipv4_public", "peer 192.0.2.44:443", "192.0.2.44"),
    ("ipv6_global", "client 2001:db8::1 connected", "2001:db8::1"),
    ("ipv6_global", "dns=2606:4700:4700::1111", "2606:4700:4700::1111"),
    ("ipv6_global", "[2001:db8:85a3:0:0:8a2e:370:7334]:443", "2001:db8:85a3:0:0:8a2e:370:7334"),
    ("sf_record_id", '{"AccountId":"0015j00000AbCdE"}', "0015j00000AbCdE"),
    ("sf_record_id", f'"URI_ID_DERIVED":"{_sfid18("0035j00000XyZ12")}"', _sfid18("0035j00000XyZ12")),
    ("sf_record_id", "/lightning/r/Order/8015j00000QrStU/view", "8015j00000QrStU"),
    ("sf_record_id", f"individual={_sfid18('0PK5j00000LmNoP')}", _sfid18("0PK5j00000LmNoP")),
    ("sf_custom_record_id", f'{{"Invoice__c":"{_sfid18("a0X5g00000Inv01")}"}}', _sfid18("a0X5g00000Inv01")),
    ("sf_custom_record_id", f"/lightning/r/Loyalty__c/{_sfid18('aB25j00000QrStU')}/view", _sfid18("aB25j00000QrStU")),
    ("sf_session_id", f"sid={SF_SESSION} host=shop.my.salesforce.com", SF_SESSION),
    ("private_key", '"key": "-----BEGIN RSA PRIVATE KEY-----\\nMIIEpAIBAAKCAQEA"', "-----BEGIN RSA PRIVATE KEY-----"),
    ("private_key", "-----BEGIN OPENSSH PRIVATE KEY-----", "-----BEGIN OPENSSH PRIVATE KEY-----"),
    ("private_key", "pem=-----BEGIN PRIVATE KEY-----", "-----BEGIN PRIVATE KEY-----"),
    ("openai_api_key", f'{{"model": "gpt-4o", "api_key": "{OPENAI_PROJ}"}}', OPENAI_PROJ),
    ("openai_api_key", f"OPENAI_API_KEY={OPENAI_LEGACY}", OPENAI_LEGACY),
    ("anthropic_api_key", f"x-api-key: {ANTHROPIC}", ANTHROPIC),
    ("google_api_key", f"GET /v1beta/models?key={GOOGLE} HTTP/1.1", GOOGLE),
    ("huggingface_token", f"HF_TOKEN={HF}", HF),
    ("groq_api_key", f"groq key {GROQ}", GROQ),
    ("replicate_api_token", f"REPLICATE_API_TOKEN={REPLICATE}", REPLICATE),
    ("cohere_api_key", f"COHERE_API_KEY={COHERE}", COHERE),
    ("cohere_api_key", f'"cohere": "Bearer {COHERE}"', COHERE),
    ("mistral_api_key", f'{{"mistral_api_key": "{MISTRAL}"}}', MISTRAL),
    ("aws_access_key_id", f"aws_access_key_id={AWS_AKID}", AWS_AKID),
    ("aws_secret_access_key", f"aws_secret_access_key={AWS_SECRET}", AWS_SECRET),
    ("aws_secret_access_key", f'{{"AWS_SECRET_ACCESS_KEY": "{AWS_SECRET}"}}', AWS_SECRET),
    ("azure_api_key", f"api-key: {AZURE_HEX}", AZURE_HEX),
    ("azure_api_key", f"Ocp-Apim-Subscription-Key: {AZURE_HEX}", AZURE_HEX),
    ("azure_storage_key", f"DefaultEndpointsProtocol=https;AccountName=shop;AccountKey={AZURE_STORAGE};", AZURE_STORAGE),
    ("bearer_token", f"Authorization: Bearer {BEARER}", BEARER),
    ("bearer_token", f'{{"headers": {{"authorization": "bearer {BEARER}"}}}}', BEARER),
    ("basic_auth", f"Authorization: Basic {BASIC}", BASIC),
    ("jwt", f"token={JWT}", JWT),
    ("password_in_url", "postgres://shop:S3cr3t-Pa55@db.example.org:5432/shop", "S3cr3t-Pa55"),
    ("password", '{"user": "svc", "password": "hunter2!x"}', "hunter2!x"),
    ("password", "<password>Tr0ub4dor</password>", "Tr0ub4dor"),
    ("password", "db_passwd=Kx9#mQ2v retries=3", "Kx9#mQ2v"),
    ("generic_api_key", f'{{"client_secret": "{SECRET_32}"}}', SECRET_32),
    ("generic_api_key", f"access_token={SECRET_32}&page=2", SECRET_32),
    ("generic_api_key", f"AWS_SESSION_TOKEN={SECRET_32}", SECRET_32),
    # From a review with hand-made lines: forms each rule missed.
    ("password_in_url", '"REDIS_URL":"rediss://:p4f8e2c1b9a7d6e5f4c3b2a1@ec2-34-201-1-2.compute-1.amazonaws.com:25710"',
     "p4f8e2c1b9a7d6e5f4c3b2a1"),
    ("password", 'Parameters: {"user"=>{"email"=>"jane@example.com", "password"=>"Hunter2xyz"}}', "Hunter2xyz"),
    ("password", "user[email]=jane%40example.com&user[password]=Hunter2xyz&commit=Sign+in", "Hunter2xyz"),
    ("password", '{"userPassword": "Hunter2xyz"}', "Hunter2xyz"),
    ("password", "DB_PASS=Kx9#mQ2v", "Kx9#mQ2v"),
    ("password", "PGPASSWORD=Kx9#mQ2v psql -h db", "Kx9#mQ2v"),
    ("password", "SMTPPASS=Vq7!rT2mZ9 SMTPUSER=mailer", "Vq7!rT2mZ9"),
    ("password", "dbpass: Hq4$wL8nP2", "Hq4$wL8nP2"),
    ("password_quoted", '{"ftpPass": "open sesame 42"}', "open sesame 42"),
    ("password", '{"newpassword":"Hunter2xyz","oldpassword":"Hunter1abc"}', "Hunter2xyz"),
    ("password_quoted", '{"level":"info","password":"correct horse battery staple"}', "correct horse battery staple"),
    ("anthropic_api_key", f"CLAUDE_CODE_OAUTH_TOKEN {ANTHROPIC.replace('api03', 'oat01')}", ANTHROPIC.replace("api03", "oat01")),
    ("stripe_secret_key", f"stripe call failed key={STRIPE_LIVE}", STRIPE_LIVE),
    ("github_token", f'{{"token": "{GITHUB_PAT}"}}', GITHUB_PAT),
    ("slack_token", f'{{"slack": "{SLACK_BOT}"}}', SLACK_BOT),
    ("iban", "SEPA refund to AT61 1904 3002 3457 3201 BIC BKAUATWW", "AT61 1904 3002 3457 3201"),
    ("payment_card", "pan=4716123456789000000 ok", "4716123456789000000"),
    ("payment_card", "card=4111111111111111 123", "4111111111111111"),  # a card, then its CVV
    ("payment_card", "my card is 4111 1111 1111 1111 123 exp 12/26", "4111 1111 1111 1111"),
    ("payment_card", '{"card":"6212 3456 7890 0002"}', "6212 3456 7890 0002"),
    ("iban", "SEPA mandate IBAN ES91 2100 0418 4502 0005 1332 EUR 49.90", "ES91 2100 0418 4502 0005 1332"),
    ("iban", "IBAN DE89 3704 0044 0532 0130 00 EUR", "DE89 3704 0044 0532 0130 00"),
    ("iban_lowercase", '{"iban":"de89370400440532013000"}', "de89370400440532013000"),
    ("iban_lowercase", "bank_account=gb82 west 1234 5698 7654 32&x=1", "gb82 west 1234 5698 7654 32"),
    # JSON logged inside a JSON string (LLM request bodies, Mule payloads): escaped quotes.
    ("phone_national", r'{"body": "{\"phone\": \"030 1234567\"}"}', "030 1234567"),
    ("password", r'{"payload": "{\"password\": \"hunter2!x\"}"}', "hunter2!x"),
    ("person_name", r'{"payload": "{\"firstName\": \"Jane\", \"x\": 1}"}', "Jane"),
    ("street_address", r'{"payload": "{\"MailingStreet\": \"1 Market St\"}"}', "1 Market St"),
    ("us_ssn_plain", r'{"payload": "{\"ssn\":\"123456789\"}"}', "123456789"),
    # Birth dates in the prose of a call note or a prompt, in the shop's languages.
    ("date_of_birth", "Kundin geb. 12.03.1985, Identit\u00e4t best\u00e4tigt".encode(), "12.03.1985"),
    ("date_of_birth", "Client n\u00e9 le 12/03/1985".encode(), "12/03/1985"),
    ("date_of_birth", "Cliente nacida el 12/03/1985", "12/03/1985"),
    ("date_of_birth", "nato il 12/03/1985 a Roma", "12/03/1985"),
    ("date_of_birth", "geboren op 12-03-1985", "12-03-1985"),
    ("date_of_birth", "Klient ur. 12.03.1985", "12.03.1985"),
    ("date_of_birth", "customer born on March 14, 1985", "March 14, 1985"),
    # Delivery and billing addresses under the shop's own keys.
    ("street_address", '{"adres":"Kerkstraat 12"}', "Kerkstraat 12"),
    ("street_address", '{"adresse_livraison":"12 rue de Rivoli"}', "12 rue de Rivoli"),
    ("street_address", '{"adresseFacturation":"12 rue de Rivoli"}', "12 rue de Rivoli"),
    ("street_address", '{"direccion_envio":"Calle Mayor 3"}', "Calle Mayor 3"),
    ("street_address", '{"indirizzo_spedizione":"Via Roma 10"}', "Via Roma 10"),
    ("street_address", '{"straatnaam":"Kerkstraat 12"}', "Kerkstraat 12"),
    # Surnames with a particle or an elided article; family-name keys.
    ("person_name", '{"cognome":"D\'Angelo"}', "D'Angelo"),
    ("person_name", '{"cognome":"dell\'Acqua"}', "dell'Acqua"),
    ("person_name", '{"achternaam":"de Vries"}', "de Vries"),
    ("person_name", '{"last_name":"van den Berg"}', "van den Berg"),
    ("person_name", '{"nom_de_famille":"Dupont"}', "Dupont"),
    ("person_name", '{"primer_apellido":"Garc\u00eda"}'.encode(), "Garc\u00eda".encode()),
    # Card groups separated by dots or no-break spaces (copy-pasted, French typography).
    ("payment_card", '{"cardNumber":"4970.1040.8030.8362"}', "4970.1040.8030.8362"),
    ("payment_card", "card 4970\u00a01040\u00a08030\u00a08362".encode(), "4970\u00a01040\u00a08030\u00a08362".encode()),
    ("payment_card", "carte 4970\u202f1040\u202f8030\u202f8362 ok".encode(), "4970\u202f1040\u202f8030\u202f8362".encode()),
    # A word or two between the keyword and the number.
    ("de_steuerid", "Steuer-ID Nr. 44098256348", "44098256348"),
    ("de_steuerid", "Steuer-Identifikationsnummer (IdNr): 44098256348", "44098256348"),
    ("de_steuerid", "Ihre Steuer-ID lautet 44098256348", "44098256348"),
    ("nl_bsn", "Burgerservicenummer (BSN) 578485692", "578485692"),
    ("nl_bsn", "BSN nr. 578485692", "578485692"),
    ("nl_bsn", '{"citizenServiceNumber":"578485692"}', "578485692"),
    ("pl_pesel", "PESEL nr 85031201684", "85031201684"),
    ("pl_pesel", "PESEL klienta 85031201684", "85031201684"),
    ("ipv4_public", "GET http://203.0.113.9/healthz", "203.0.113.9"),
    ("ipv4_public", "peers=8.8.8.8,1.1.1.1", "1.1.1.1"),
    ("us_ssn_plain", '{"customer":{"ssn":"357 11 5177"}}', "357 11 5177"),
    ("us_ssn_plain", "My SSN is 584932109, please verify my identity.", "584932109"),
    ("date_of_birth", "My birthday is March 14, 1985, can I get the discount?", "March 14, 1985"),
    ("password", "Request body: user%5Bemail%5D=x%40y.com&user%5Bpassword%5D=Winter2024x&commit=Sign+in",
     "Winter2024x"),
    # Form-encoded query strings: a space is "+", parentheses, slashes and commas are %-escaped.
    ("phone_national", 'GET /checkout/guest?phone=%28415%29+555-0132 HTTP/1.1', "%28415%29+555-0132"),
    ("phone_e164", 'GET /checkout/guest?m=%2B44+7700+900123 HTTP/1.1', "%2B44+7700+900123"),
    ("date_of_birth", 'GET /checkout/guest?dob=03%2F14%2F1985 HTTP/1.1', "03%2F14%2F1985"),
    ("payment_card", 'GET /checkout/guest?cc=4111+1111+1111+1111 HTTP/1.1', "4111+1111+1111+1111"),
    ("uk_nino", 'GET /checkout/guest?ni=AB+12+34+56+C&x=1', "AB+12+34+56+C"),
    ("us_ssn_plain", 'GET /checkout/guest?ssn=123+45+6789&x=1', "123+45+6789"),
    # National phone numbers in prose, behind a phone word in the writer's language.
    ("phone_in_text", "Please call me at (415) 555-0132 tomorrow.", "(415) 555-0132"),
    ("phone_in_text", "Please call me at 1 (214) 265-0681 tomorrow.", "1 (214) 265-0681"),
    ("phone_in_text", "You can reach me on 415.555.0132 after 5pm.", "415.555.0132"),
    ("phone_in_text", "my phone number is 07700 900123", "07700 900123"),
    ("phone_in_text", "call the London office on 020 7946 0958", "020 7946 0958"),
    ("phone_in_text", "R\u00fcckruf erbeten unter 0151 23456789, vormittags erreichbar".encode(), "0151 23456789"),
    ("phone_in_text", "La cliente souhaite \u00eatre rappel\u00e9e au 06 12 34 56 78 demain".encode(),
     "06 12 34 56 78"),
    ("phone_in_text", "Klant wil teruggebeld worden op 06-12345678", "06-12345678"),
    ("phone_in_text", "Kunde ruft an von 0049 151 23456789 wegen Retoure", "0049 151 23456789"),
    ("iban", "GET /api/v2/validate?iban=DE89%203704%200044%200532%200130%2000 HTTP/1.1",
     "DE89%203704%200044%200532%200130%2000"),
    ("iban", "GET /api/v2/validate?iban=DE89+3704+0044+0532+0130+00 HTTP/1.1", "DE89+3704+0044+0532+0130+00"),
    ("pl_nrb", '{"msg":"refund requested","nrb":"61 1090 1014 0000 0712 1981 2874"}', "61 1090 1014 0000 0712 1981 2874"),
    ("pl_nrb", "Zwrot na konto nr 61109010140000071219812874", "61109010140000071219812874"),
    ("date_of_birth", '{"geburtsdatum":"12.03.85"}', "12.03.85"),
    ("date_of_birth", '{"birth_date":"1985.03.12"}', "1985.03.12"),
    ("date_of_birth", '{"dob":"12-Mar-1985"}', "12-Mar-1985"),
    ("date_of_birth", '{"geburtsdatum":"1985-3-12"}', "1985-3-12"),
    # Names in prose behind a form of address.
    ("person_name_titled", "note: Herr J\u00fcrgen M\u00fcller ruft wegen Retoure an".encode(),
     "J\u00fcrgen M\u00fcller".encode()),
    ("person_name_titled", "note: Mme H\u00e9l\u00e8ne Dupont a appel\u00e9".encode(), "H\u00e9l\u00e8ne Dupont".encode()),
    ("person_name_titled", "note: La se\u00f1ora Mar\u00eda Garc\u00eda llam\u00f3".encode(),
     "Mar\u00eda Garc\u00eda".encode()),
    ("person_name_titled", "Il signor Mario Rossi ha chiamato", "Mario Rossi"),
    ("person_name_titled", "Mevrouw Anna de Vries belde", "Anna de Vries"),
    ("person_name_titled", "Dear Mr. Smith, your order shipped", "Smith"),
    ("person_name_titled", "spoke with Ms Jane O'Neil today", "Jane O'Neil"),
    # A codice fiscale as typed into a form.
    ("it_codice_fiscale_key", '{"codiceFiscale":"rssmra85t10a562s"}', "rssmra85t10a562s"),
    ("it_codice_fiscale_key", '{"taxCode":"Rssmra85t10a562s"}', "Rssmra85t10a562s"),
    ("it_codice_fiscale_key", "Codice fiscale: rssmra85t10a562s", "rssmra85t10a562s"),
    # Passwords in prose: the verb is required, a sentence's full stop is not the password's.
    ("password_in_text", "Hi, my password is Tr0ub4dor&3 and I can't log in", "Tr0ub4dor&3"),
    ("password_in_text", "I changed the password to Winter2024! but it still fails.", "Winter2024!"),
    ("password_in_text", "Mein Passwort ist Sonne#2024, bitte zur\u00fccksetzen".encode(), "Sonne#2024"),
    ("password_in_text", "mon mot de passe est Chat1234.", "Chat1234"),
    ("password_in_text", "mi contrase\u00f1a es Gato_2024".encode(), "Gato_2024"),
    ("password_in_text", "my password is: \"hunter2hunter2\"", "hunter2hunter2"),
    ("password_in_text", "my password was changed to Winter2024! yesterday", "Winter2024!"),
    ("password_in_text", "the password has been updated to Sonne#2024", "Sonne#2024"),
    # Street addresses in prose, behind the words that give one.
    ("street_in_text", "Please ship it to Flat 3, 12B High Street, London SW1A 1AA instead.",
     "Flat 3, 12B High Street, London SW1A 1AA"),
    ("street_in_text", "My new address is 1234 Main St, Apt 4B, Springfield, IL 62704",
     "1234 Main St, Apt 4B, Springfield, IL 62704"),
    ("street_in_text", "Deliver to: 3325 W 34th St, New York, NY 10001", "3325 W 34th St, New York, NY 10001"),
    ("street_in_text", "I live at 7 Peachtree Rd NE #12, Atlanta, GA 30303", "7 Peachtree Rd NE #12, Atlanta, GA 30303"),
    ("street_in_text", "we moved to 5 Station Road.", "5 Station Road"),
    ("street_in_text", "Please ship it to 1234 Broadway, New York, NY 10001", "1234 Broadway, New York, NY 10001"),
    ("street_in_text", "I live at 12 McAllister Rd, Boston, MA 02108", "12 McAllister Rd, Boston, MA 02108"),
    ("street_in_text", "Lieferadresse ist Hauptstra\u00dfe 5, 10115 Berlin".encode(),
     "Hauptstra\u00dfe 5, 10115 Berlin".encode()),
    ("street_in_text", "bitte liefern an Gartenweg 12a", "Gartenweg 12a"),
    # IBANs typed in mixed case, or in a URL's path.
    ("iban_lowercase", '{"msg":"refund requested","iban":"De89370400440532013000"}', "De89370400440532013000"),
    ("iban_lowercase", "GET /api/v2/customers/c_123/iban/de89370400440532013000 HTTP/1.1", "de89370400440532013000"),
    # National IDs behind their key, grouped as printed.
    ("nl_bsn", '{"msg":"identity verified","bsn":"5784 85 692"}', "5784 85 692"),
    ("pl_pesel", '{"msg":"identity verified","pesel":"850312 01684"}', "850312 01684"),
    # E-mail addresses written to get past spam filters.
    ("email_obfuscated", "callcenter note: max.mustermann [at] gmx [dot] de", "max.mustermann [at] gmx [dot] de"),
    ("email_obfuscated", "note: max.mustermann(at)gmx.de bitte", "max.mustermann(at)gmx.de"),
    ("email_obfuscated", "write to anna {at} mail {punkt} de please", "anna {at} mail {punkt} de"),
    # Postcodes behind their key or word.
    ("postal_code", '{"postcode":"SW1A 1AA","city":"London"}', "SW1A 1AA"),
    ("postal_code", '{"zip":"94105","state":"CA"}', "94105"),
    ("postal_code", '{"BillingPostalCode":"94043-1234"}', "94043-1234"),
    ("postal_code", "at=info event=address.lookup postcode=LS1 4DY", "LS1 4DY"),
    ("postal_code", "customer: my postcode is EC1A 1BB", "EC1A 1BB"),
    ("postal_code", "PLZ: 10115 Berlin", "10115"),
    ("postal_code", '{"postal_code":"1012 AB"}', "1012 AB"),
    ("postal_code", '{"kod_pocztowy":"00-950"}', "00-950"),
]

# (rule id, line on which that rule must report nothing)
NEGATIVES: list[tuple[str, str | bytes]] = [
    ("password_in_text", "my password is wrong and the password was reset yesterday"),
    ("password_in_text", "ERROR password is required (min 8 characters); password is null for user 42"),
    ("password_in_text", "INFO password was changed to ${NEW_PASSWORD}"),
    ("password_in_text", "password is auto-generated; Password is set to never-expire; password is up-to-date"),
    ("password_in_text", "password is write-only; password is ***redacted***; password is sha256:9f86d081"),
    ("password_in_text", "Passwort ist zu-kurz; password is too short; Password is set to expire in 5 days"),
    ("street_in_text", "shipped to 3 customers in 2 days; send it to 42 people on the list"),
    ("street_in_text", "INFO address is 10.0.0.1 port 8080; moved to 2 replicas"),
    ("postal_code", "INFO gzip 12345 bytes written; zip 10240 bytes"),
    ("postal_code", "INFO build.zip: 20480 bytes; zip: 12345 entries extracted; compression: zip=33333"),
    ("email_obfuscated", "fn(at)line.py config[at]key.json array[at]index.value item(@)index.js INFO [at] home.html"),
    ("street_in_text", "shipped to 2 Dr. Martens stores; shipped to 3 St. Louis warehouses; delivered to 12 St Pancras"),
    ("street_in_text", "moved to 1 Shared Drive; config located at 10 Cluster Way; moved to 3 AZ Way"),
    ("nl_bsn", '{"bsn":"5784 85 693"}'),  # the 11-check fails
    ("iban_lowercase", '{"iban":"de89370400440532013001"}'),  # mod-97 fails
    ("pl_pesel", '{"pesel":"850312 01685"}'),  # the checksum fails
    ("email_obfuscated", "meet me at the station at 5; see array[at] index (at) 5; jane@example.com"),
    ("postal_code", '{"zip":"00000"} {"zipCode":"n/a"}'),
    ("person_name_generic", '{"ts": "2024-03-11T00:51:33.883Z", "level": "info", "name": "Payment Gateway", "msg": "ok"}'),
    ("person_name_generic", '{"level": "info", "name": "Inventory Sync"} {"name": "Classic Hoodie"}'),
    ("person_name_titled", "Dr. Martens 1460 boots back in stock; Mrs Test User called; Mr. NULL"),
    ("pl_nrb", "Zwrot na konto nr 61 1090 1014 0000 0712 1981 2875"),
    ("uk_nino", "Is item TZ113217A back in stock in size M?"),
    # The same shapes without a phone word, or as an order's number.
    ("phone_in_text", "total 512 345 678 bytes transferred in 347 123 4567 ms"),
    ("phone_in_text", "Order number 415-555-0132 shipped, please call if it is late"[:34]),
    ("phone_in_text", "please call about order 415-555-0132"),
    ("payment_card", "GET /api/giftcards/balance?giftcard_id=5266441103128660 HTTP/1.1"),
    # An app's four-part version in a user agent.
    ("ipv4_public", '203.0.113.5 - - [11/Mar/2024:00:00:16 +0000] "GET /api/v2/home HTTP/1.1" 200 512 "-" "AcmeShop/4.12.0.1 (iOS 17.3)"'[40:]),
    # A date after "born"/"geb." that is no birth date of a person; a wrong check letter.
    ("date_of_birth", "reborn 12.03.1985 build=12.03.2024"),
    ("it_codice_fiscale_key", '{"codiceFiscale":"rssmra85t10a562x"}'),
    # An IP address under an address-ish key; a PESEL-like number with a word that is no filler.
    ("street_address", '{"adresse_ip":"10.2.3.4 port 5"}'),
    ("pl_pesel", "PESEL checked in 85031201684 ms"),
    # Luhn-valid 16-digit identifiers under ID fields (1 in 10 random ones pass Luhn).
    ("payment_card", '{"trace_id":"4532015112830366","span_id":"0af7651916cd43dd"}'),
    ("payment_card", "card=6759123456789016 maestro=5018123456789015"),
    ("payment_card", "latency=0.4079361356169908 ratio=1.5555555555554444 p99=12.4111111111111111"),
    ("payment_card", '{"count": "962926", "sum": 2436.358023724695, "bucketCounts": ["25218"]}'),
    ("payment_card", 'tracking="9261 4726 1716 6506" url=/p/fleece-pant?variant=36720758765086'),
    ("ipv6_global", "inet6=fd59:388c:3742::4d6b/64 scope=global"),
    ("password", "--- PASS: TestCheckoutTotals (0.01s)"),
    ("phone_national", "shop_mobile_orders_total 11479536"),
    ("payment_card", "order_id=4532015112830366 status=paid"),
    ("payment_card", '{"x_request_id": "4532015112830366"}'),
    ("phone_national", "telemetry 1234567890 samples"),
    ("phone_national", "cellCount 12345678"),
    # Four-part version numbers.
    ("ipv4_public", "version=4.12.0.1"),
    ("ipv4_public", "app_version 3.1.4.159 started"),
    ("ipv4_public", '{"build": "1.24.3.2"}'),
    ("email", "GET /img/logo@2x.png HTTP/1.1"),
    ("email", "com.shop.checkout.OrderService@6d06d69c"),
    ("email", "GET /img/logo%402x.png HTTP/1.1"),
    ("email", "[MuleRuntime].uber.12: [orders-api].orders-flow.CPU_LITE @3f2a1b"),
    ("email", "Message-ID: <CAF3x9Qm+7Lw@mail.gmail.com>"),
    ("email", '{"messageId":"<0100018e3a7c-4b1d@email.amazonses.com>","in_reply_to":"<r2@mx.example.com>"}'),
    ("email", "deploy: git clone git@github.com:acme/shop.git && git fetch git@gitlab.com:acme/ops.git"),
    ("email", "msg_id=<CAF3x9Qm@mail.gmail.com>"),
    ("phone_e164", "GET /search?q=shoes+12345678 HTTP/1.1"),
    ("phone_e164", "[10/Jun/2023:15:36:28 +0000]"),
    ("phone_e164", "ts=2024-03-11T16:00:00+01:00 n=+1234"),
    ("phone_national", '{"order_id": "0123456789"}'),
    ("phone_national", "hotel_id=1234567890"),
    ("phone_national", '{"phone_verified": true, "count": 12345678}'),
    ("phone_national", "phone=0000000000"),
    ("date_of_birth", '{"created": "2024-03-11"}'),
    ("date_of_birth", '{"birthdate":"12 Monday 1985","dob":"31 February 1985"}'),
    ("date_of_birth", "dob=2099-01-01"),
    ("date_of_birth", "adobe_version=2001-01-01"),
    ("date_of_birth", '{"birthdate": "1985-13-45"}'),
    ("street_address", '{"ip_address": "203.0.113.9"}'),
    ("date_of_birth", '{"birthdayPromoSentAt":"2024-03-10","birth_campaign":"2024-03-11"}'),
    ("uk_nino", '{"sku":"AB123456C","url":"/products/SKU-JG103759A"}'),
    # The next field's name is no context for this one's value.
    ("phone_national", '{"level":"info","hotel_id":"0123456789","phone":"+4915112345678"}'),
    ("payment_card", "GET /api/orders/4532015112830366 HTTP/1.1"),
    ("payment_card", "ref=4716123456789000001 trace=6212345678900003"),  # Luhn fails
    ("iban_lowercase", '{"iban":"de89370400440532013001","note":"de89370400440532013000"}'),
    ("ipv4_public", '{"section":"6.1.2.3","oid":"1.3.6.1"}'),
    ("street_address", "remote_addr=10.1.2.3 status=200"),
    ("street_address", '{"email_address": "Room 12 example"}'),
    ("street_address", '{"address": "Main Street"}'),
    ("street_address", '{"address": "https://example.com/1"}'),
    ("person_name", '{"logger_name": "Main"}'),
    ("person_name", '{"firstName":"NULL","lastName":"N/A","fullName":"Test User","username":"ADMIN"}'),
    ("person_name", '{"displayName":"Customer Service","contactName":"UNKNOWN"}'),
    ("person_name", '{"first_name":"A","last_name":"B"}'),
    ("person_name", '{"firstName": "jane"}'),
    ("person_name", '{"event_name": "OrderCreated"}'),
    ("person_name", '{"hostname": "Web"}'),
    ("person_name_generic", '{"name": "Checkout"}'),
    ("person_name_generic", '{"name": "checkout-service"}'),
    ("person_name_generic", '{"service_name": "Order Service"}'),
    ("payment_card", "trace=4111111111111112"),
    ("payment_card", "span 41111111111111111"),
    ("payment_card", "ts=1710172800123 id=4111-1111-1111-111"),
    ("payment_card", '"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736"'),
    ("iban", "GB82 WEST 1234 5698 7654 33"),
    ("iban", "ZZ12ABCD12345678"),
    ("iban", "DE8937040044053201300"),
    ("us_ssn", "ssn 078-05-1120"),
    ("us_ssn", "000-12-3456 666-12-3456 900-12-3456 123-00-4567 123-45-0000"),
    ("us_ssn", "date 2024-03-11"),
    ("us_ssn_plain", '{"order_id": "123456789"}'),
    ("us_ssn_plain", "ssn=000123456"),
    ("uk_nino", "QQ123456C"),
    ("uk_nino", "GB123456A BG123456A"),
    ("uk_nino", "AB123456E"),
    ("de_steuerid", '{"order_id": "86420975363"}'),
    ("de_steuerid", "steuerid=86420975364"),
    ("fr_nir", "185057800608492"),
    ("fr_nir", "385057800608491"),
    ("es_dni", "12345678A"),
    ("es_dni", "heap used 12345698 B after gc rss=12345685 K"),
    ("es_dni", "20240311T160000"),
    ("es_nie", "X7654321A"),
    ("it_codice_fiscale", "RSSMRA85T10A562X"),
    ("it_codice_fiscale", "ABCDEFGHIJKLMNOP"),
    ("nl_bsn", "bsn=123456789"),
    ("nl_bsn", '{"order":"123456782"}'),
    ("pl_pesel", "pesel=85010112346"),
    ("pl_pesel", "order=85010112345"),
    ("ipv4_public", "10.0.0.1 192.168.1.1 172.20.0.1 127.0.0.1 169.254.169.254"),
    ("ipv4_public", "cgnat 100.64.1.1 multicast 224.0.0.1 bcast 255.255.255.255 any 0.0.0.0"),
    ("ipv4_public", "Mozilla/5.0 AppleWebKit/537.36 Chrome/120.0.0.0 Safari/537.36"),
    ("ipv4_public", "agent v1.2.3.4 build 3.15.19"),
    ("ipv6_global", "fe80::1 ::1 fc00::1"),
    ("ipv6_global", "[10/Jun/2023:15:36:28 +0000]"),
    ("ipv6_global", "teredo 2001::1"),
    ("sf_record_id", '"USER_ID":"0055j00000AT6I1","ORGANIZATION_ID":"00D5j00000AbCdE"'),
    ("sf_record_id", "0015j10000AbCdE 0015j00000AbCdE12"),
    # A custom record id only in its 18-character form with a good checksum; words are none.
    ("sf_custom_record_id", "invoice=a0X5g00000Inv01 accountabilities0 abcdefghijklmnopqr"),
    ("sf_custom_record_id", f"invoice={_sfid18('a0X5g00000Inv01')[:15]}AAA"),
    ("sf_session_id", "sid=00D5j000000AbCd!short"),
    ("private_key", "-----BEGIN PUBLIC KEY----- -----BEGIN CERTIFICATE-----"),
    ("openai_api_key", f"x-api-key: {ANTHROPIC}"),
    ("openai_api_key", "task-0123456789abcdefghijABCDEFGHIJ0123456789"),
    ("openai_api_key", "sk-test"),
    ("anthropic_api_key", "sk-ant-api03-short"),
    ("google_api_key", "AIzaShort123"),
    ("huggingface_token", "hf_model_name_for_the_inference_pipeline_x"),
    ("groq_api_key", "gsk_0123456789"),
    ("replicate_api_token", "r8_short"),
    ("cohere_api_key", "cohere_model=command-r-plus-08-2024"),
    ("cohere_api_key", f"token {COHERE}"),
    ("mistral_api_key", "mistral_model=mistral-large-latest"),
    ("aws_access_key_id", "AKIA123 XAKIA0123456789ABCDEF"),
    ("aws_secret_access_key", f"aws_secret_access_key={AWS_SECRET}x"),
    ("aws_secret_access_key", "aws_secret_access_key=" + "a" * 40),
    ("aws_secret_access_key", f"secret={AWS_SECRET}"),
    ("azure_api_key", "api-key: 00000000000000000000000000000000"),
    ("azure_storage_key", "AccountKey=short;"),
    ("bearer_token", '{"token_type": "Bearer", "expires_in": 3600}'),
    ("bearer_token", "Bearer aaaaaaaaaaaaaaaaaaaaaaaa"),
    ("bearer_token", "bearer authentication failed for tenant"),
    ("basic_auth", "Basic plan selected for customer"),
    ("basic_auth", "Authorization: Basic dGVzdA=="),
    ("jwt", f"token={JWT_NO_ALG}"),
    ("jwt", "eyJhbGciOiJIUzI1.eyJzdWIiOiIx.abc"),
    ("password_in_url", "https://user:${PASS}@h.example.com/"),
    ("password_in_url", "http://host:8080/x@y"),
    ("password", "password=${DB_PASSWORD}"),
    ("password", '"password": null, "password": "********", passwd=[FILTERED]'),
    ("password", '{"bypass": "true", "password_hash": "abc123def"}'),
    ("password", "CACHEBYPASS=on SURPASS=yes DBPASSTHROUGH=enabled"),
    ("password", "test pass: 12 of 15"),
    ("password", '{"PWD":"/app","OLDPWD":"/app/releases","upstream_cache_bypass":"enabled","compass":"north"}'),
    ("password_quoted", '{"password":"hunter2!x"}'),  # no space: the password rule's
    ("stripe_secret_key", "sk_test_4eC39HqLyjWDarjtT1zdp7dc pk_live_51HxYZ"),
    ("github_token", "ghp_short gh_pages_deploy_branch_name_is_long_enough_here"),
    ("slack_token", "xoxb-not-a-token"),
    ("generic_api_key", '{"api_key": "my_application_key_name"}'),
    ("generic_api_key", "access_token=short"),
    ("generic_api_key", '{"secret": "aaaaaaaaaaaaaaaaaaaaaaaaa"}'),
]

# Ordinary log lines: no rule may report anything on them.
PLAIN_LOG = [
    '10.56.147.63 - - [22/Mar/2024:23:08:47 +0000] "POST /checkout/confirm HTTP/1.1" 200 60842 '
    '"https://shop.example.com/" "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 '
    '(KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36" 0.024',
    '{"ts":"2024-03-11T09:17:00.173Z","level":"DEBUG","logger":"com.shop.checkout.OrderService",'
    '"thread":"http-nio-8080-exec-76","trace_id":"e7e39f7a17e9c01cee1afd75e8aad058","span_id":"c3b3b8baee59901a",'
    '"request_id":"27e5bfd4-394a-2238-4000-f2832c5ed1e2","msg":"order processed","order_id":5269133543,'
    '"amount":264.31,"currency":"EUR","host":"ip-10-0-81-15.eu-west-1.compute.internal","version":"3.15.19"}',
    '369 <158>1 2024-03-08T03:20:26.919Z host heroku router - at=info method=GET path="/api/v2/cart" '
    'host=shop.herokuapp.com request_id=98ddbe40-786f-d3da-a605-e315353eceef fwd="10.56.147.63" dyno=web.8 '
    "connect=4ms service=848ms status=200 bytes=7894 protocol=https",
    "INFO  2024-03-11 16:02:11,123 [[MuleRuntime].uber.12: [orders-api].orders-flow.CPU_LITE @3f2a1b] "
    "[processor: orders-flow/processors/0; event: 27e5bfd4-394a-2238-4000-f2832c5ed1e2] "
    "org.mule.runtime.core.internal.processor.LoggerMessageProcessor: Order sync completed status=OK",
    '"URI","20240311192252.699","4ZbnG8273be1684","00D5j00000AbCdE","0055j00000C5C3B","860","118",'
    '"/lightning/r/Account/view","","f440ec9a57f25de5","2024-03-19T11:17:13.964Z","0055j00000AT6I1AAL",'
    '"10.1.2.3","Salesforce.com IP"',
    '{"model": "gpt-4o", "messages": [{"role": "system", "content": "You are a helpful assistant."}], '
    '"temperature": 0.2, "max_tokens": 512}',
]


def _b(x: str | bytes) -> bytes:
    return x.encode("utf-8") if isinstance(x, str) else x


def detect(line: str | bytes) -> list[tuple[str, bytes]]:
    """(rule id, value) for every candidate of ``line`` that survives the evaluator."""
    buf = _b(line)
    res = SCANNER.scan(buf)
    out = []
    for rule, start, end, ls in zip(res.rule, res.start, res.end, res.line_start):
        rec_end = buf.find(b"\n", int(ls))
        record = buf[int(ls) : rec_end if rec_end >= 0 else len(buf)]
        v = EVALUATOR.evaluate(int(rule), record, int(start - ls), int(end - ls))
        if v is not None:
            out.append((RULES[rule].id, record[v.value_start : v.value_end]))
    return out


def test_shipped_rules_load_cleanly():
    assert ERRORS == []
    assert len({r.id for r in RULES}) == len(RULES)


@pytest.mark.parametrize(
    ("rule_id", "line", "value"),
    POSITIVES,
    ids=[f"{rid}-{i}" for i, (rid, _, _) in enumerate(POSITIVES)],
)
def test_true_positive(rule_id, line, value):
    assert (rule_id, _b(value)) in detect(line)


@pytest.mark.parametrize(
    ("rule_id", "line"),
    NEGATIVES,
    ids=[f"{rid}-{i}" for i, (rid, _) in enumerate(NEGATIVES)],
)
def test_hard_negative(rule_id, line):
    found = [v for rid, v in detect(line) if rid == rule_id]
    assert found == []


def test_every_rule_has_positive_and_negative_examples():
    ids = {r.id for r in RULES}
    assert ids - {rid for rid, _, _ in POSITIVES} == set(), "rules without a true positive"
    assert ids - {rid for rid, _ in NEGATIVES} == set(), "rules without a hard negative"
    assert {rid for rid, _, _ in POSITIVES} | {rid for rid, _ in NEGATIVES} <= ids, "examples for unknown rules"


@pytest.mark.parametrize("line", PLAIN_LOG, ids=[f"plain-{i}" for i in range(len(PLAIN_LOG))])
def test_ordinary_log_lines_are_silent(line):
    assert detect(line) == []
    # Not even the regex prefilter fires: a shipped rule matching common log text would push
    # every line into the slow second stage.
    assert len(SCANNER.scan(_b(line)).rule) == 0


def test_scanner_agrees_with_python_re():
    """The evaluator re-matches value-group rules with Python's re: both engines must agree."""
    buf = b"\n".join(_b(line) for _, line, _ in POSITIVES) + b"\n" + b"\n".join(_b(x) for _, x in NEGATIVES)
    native = SCANNER.scan(buf)
    ref = ReferenceScanner([r.regex for r in RULES]).scan(buf)
    for a, b in zip(native[:5], ref[:5]):
        assert a.tolist() == b.tolist()


def test_many_lines_in_one_buffer():
    lines = [_b(line) for _, line, _ in POSITIVES]
    found = set(detect(b"\n".join(lines)))
    for rid, _, value in POSITIVES:
        assert (rid, _b(value)) in found


def test_order_id_is_not_a_phone_even_under_a_phone_keyword_elsewhere():
    line = '{"phone_verified": false, "order_id": "0123456789"}'
    assert [rid for rid, _ in detect(line) if rid.startswith("phone")] == []


def test_sfid_wrong_checksum_is_penalized_not_dropped():
    rid = [r.id for r in RULES].index("sf_record_id")
    good = _sfid18("0015j00000AbCdE")
    bad = good[:15] + ("AAA" if good[15:] != "AAA" else "BBB")
    verdicts = {}
    for value in (good, bad):
        line = f'{{"AccountId":"{value}"}}'.encode()
        start = line.index(value.encode())
        verdicts[value] = EVALUATOR.evaluate(rid, line, start, start + 18)
    assert verdicts[good] is not None and verdicts[bad] is not None
    assert verdicts[bad].score_validator < 0 < verdicts[good].score_validator
    assert verdicts[bad].confidence < verdicts[good].confidence


def test_context_raises_confidence():
    rid = [r.id for r in RULES].index("payment_card")
    with_ctx = b'{"card_number": "4111111111111111"}'
    without = b'{"ref": "4111111111111111"}'
    a = EVALUATOR.evaluate(rid, with_ctx, with_ctx.index(b"4111"), with_ctx.index(b"4111") + 16)
    b = EVALUATOR.evaluate(rid, without, without.index(b"4111"), without.index(b"4111") + 16)
    assert a.score_context > 0 and b.score_context == 0
    assert a.confidence > b.confidence
    assert a.field == "cardnumber"


def test_iban_rule_covers_every_iban_country():
    """The rule's country alternation and the validator's length table must not drift apart."""
    from leakwatch.detect.validators import _IBAN_DIGITS, _IBAN_LENGTHS

    for cc, length in _IBAN_LENGTHS.items():
        bban = "".join(_rng.choice(string.digits) for _ in range(length - 4))
        check = 98 - int((bban + cc + "00").translate(_IBAN_DIGITS)) % 97
        iban = f"{cc}{check:02d}{bban}"
        assert ("iban", iban.encode()) in detect(f"refund to {iban} ok"), cc


def test_masked_previews_never_reveal_the_examples():
    by_id = {r.id: r for r in RULES}
    for rid, _, value in POSITIVES:
        raw = _b(value)
        out = get_masker(by_id[rid].mask)(raw)
        assert raw.decode("utf-8") not in out, (rid, out)


@pytest.mark.parametrize(
    ("line", "value", "field"),
    [
        ('{"email": "a@b.co"}', "a@b.co", "email"),
        ('{"email":"a@b.co"}', "a@b.co", "email"),
        ("user_email=a@b.co", "a@b.co", "useremail"),
        ('user_email="a@b.co"', "a@b.co", "useremail"),
        ('"contact": {"Phone": "+44 20 7946 0958"}', "+44", "phone"),
        ("Authorization: Bearer abc.def", "abc.def", "authorization"),
        ("GET /x?first_name=Jane&x=1", "Jane", "firstname"),
        (r'"{\"First_Name\": \"Jane\"}"', "Jane", "firstname"),
        ("<email>a@b.co</email>", "a@b.co", "email"),
        ('{"emails": ["a@b.co"]}', "a@b.co", "emails"),
        ("'contact.email': 'a@b.co'", "a@b.co", "contact.email"),
        ("plain text a@b.co", "a@b.co", None),
        ("a@b.co", "a@b.co", None),
    ],
)
def test_field_before(line, value, field):
    b = line.encode()
    assert field_before(b, b.index(value.encode())) == field


def test_normalize_field():
    assert normalize_field("First_Name") == "firstname"
    assert normalize_field(b"Contact.E-Mail") == "contact.email"


def test_keywords_count_only_where_a_word_starts():
    """"pan" is card context in "pan=" and "cardPan", not inside "span_id" or "japan"."""
    ctx = next(r.context for r in RULES if r.id == "payment_card")
    for line, expected in ((b"pan=4111111111111111", True), (b"cardPan 4111111111111111", True),
                           (b"PAN: 4111111111111111", True), (b"span_id 4111111111111111", False),
                           (b"japan 4111111111111111", False), (b"SPAN 4111111111111111", False)):
        s = line.index(b"4111")
        assert has_context(ctx, line, s, s + 16, None) is expected, line
    # A keyword cut by the window's left edge is not a word start: "...xpan" with "x" outside.
    line = b"x" + b"pan" + b" " * 37 + b"4111111111111111"
    s = line.index(b"4111")
    assert s - ctx.before == 1  # the window starts at "p", inside "xpan"
    assert not has_context(ctx, line, s, s + 16, None)


def test_negative_context_fields_and_the_word_right_before():
    ctx = next(r.context for r in RULES if r.id == "ipv4_public")
    for line, field, expected in ((b"version=4.12.0.1", "version", True), (b"x 4.12.0.1", "appversion", True),
                                  (b"x 4.12.0.1", "meta.build", True), (b"x 4.12.0.1", "client", False),
                                  (b"build: \"4.12.0.1", None, True), (b"rebuild 4.12.0.1", None, False),
                                  (b"version=1 client=4.12.0.1", None, False)):
        s = line.index(b"4.12")
        assert not_context(ctx, line, s, field) is expected, (line, field)


def test_negative_context_in_rule_files(tmp_path):
    (tmp_path / "r.yaml").write_text(
        "rules:\n  - id: num\n    entity: NUM\n    regex: '\\b\\d{6}\\b'\n"
        "    context:\n      not_fields: [orderId]\n      not_keywords: [Ref]\n")
    rules, errors = load_rules(tmp_path)
    assert errors == []
    ev = Evaluator(rules)
    assert ev.evaluate(0, b"order_id=123456", 9, 15) is None
    assert ev.evaluate(0, b"ref 123456", 4, 10) is None
    assert ev.evaluate(0, b"code=123456", 5, 11) is not None
    (tmp_path / "r.yaml").write_text(
        "rules:\n  - id: num\n    entity: NUM\n    regex: '\\d{6}'\n    context:\n      not_fields: ['--']\n")
    rules, errors = load_rules(tmp_path)
    assert rules == [] and "not_fields" in str(errors[0])


@pytest.mark.parametrize(("line", "expected"), [
    (b"123-45-6789: dave.jones@example.com", "*"),                      # an SSN where a key would be
    (b"AKIAIOSFODNN7EXAMPLE=carol.white@example.com", "*"),            # an AWS key id
    (b"ghp_abcdefghijklmnopqrstuvwxyz0123456789: erin@example.com", "*"),
    (b"sk-proj-abc=erin@example.com", "*"),
    (b"mongodb://canaryadmin:CanaryPass99@mongo.example.com/db", None),  # a URL's user name
    (b"user_email=erin@example.com", "useremail"),
    (b"CLIENT_IP=erin@example.com", "clientip"),
])
def test_a_key_that_is_data_is_not_stored_as_a_field_name(line, expected):
    """Field names are stored and printed unmasked, so a token, number or user name standing
    where a key would be is not taken for one."""
    at = line.index(b"@")
    start = max(line.rfind(b"=", 0, at), line.rfind(b": ", 0, at), line.rfind(b":", 0, at)) + 1
    start += line[start:start + 1] == b" "
    assert field_before(line, start) == expected


def test_json_keys_that_are_names_or_tokens_are_starred():
    from leakwatch.detect.enrich import safe_field_path

    assert safe_field_path("byName.Canarina Testova.cardNumber", True) == "byName.*.cardNumber"
    assert safe_field_path("keys.AKIAIOSFODNN7EXAMPLE", True) == "keys.*"
    assert safe_field_path("contact.Email", True) == "contact.Email"
    # A file's header names its columns: "Full Name" is the column, not a person.
    assert safe_field_path("Full Name", False) == "Full Name"
    assert safe_field_path("Order Number", True) == "*"  # over-starring loses a name, never data


def test_has_context_fields_keywords_and_window():
    ctx = next(r.context for r in RULES if r.id == "payment_card")
    for line in (b"card no 4111111111111111", b"4111111111111111 (visa)"):
        s = line.index(b"4111")
        assert has_context(ctx, line, s, s + 16, None)
    line = b"4111111111111111 paid by card"  # "card" ends 13 bytes after: outside `after` (10)
    assert not has_context(ctx, line, 0, 16, None)
    far = b"card " + b"x" * 60 + b" 4111111111111111"
    s = far.index(b"4111")
    assert not has_context(ctx, far, s, s + 16, None)
    assert has_context(ctx, far, s, s + 16, "cardnumber")
    assert has_context(ctx, far, s, s + 16, "payment.cardnumber")  # last dotted component
