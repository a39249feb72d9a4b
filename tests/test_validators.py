"""Validators: each accepts well-formed fake values and rejects near misses."""
from __future__ import annotations

import base64
import datetime as dt
import json

import pytest
from stdnum import iban as stdnum_iban

from leakwatch._core.fastval import sfid_suffix
from leakwatch.detect.validators import VALIDATORS, get_validator


def _jwt(header: dict, payload: dict, sig: str = "c2lnbmF0dXJl") -> bytes:
    enc = lambda o: base64.urlsafe_b64encode(json.dumps(o).encode()).rstrip(b"=")  # noqa: E731
    return enc(header) + b"." + enc(payload) + b"." + sig.encode()


TODAY = dt.date.today()

# validator name -> (params, accepted values, rejected values)
CASES: dict[str, tuple[dict, list, list]] = {
    "luhn": ({}, [b"4111111111111111", b"4111 1111 1111 1111", b"378282246310005"], [b"4111111111111112", b"1"]),
    "email": ({}, [b"jane@example.com", b"a.b+c@mail.example.org"], [b"logo@2x.png", b"app@1.2.3.js", b"@example.com"]),
    "iban": (
        {},
        [b"GB82 WEST 1234 5698 7654 32", b"DE89370400440532013000", b"NO9386011117947",
         b"MT84MALT011000012345MTLCAST001S"],
        [b"GB82 WEST 1234 5698 7654 33", b"DE8937040044053201300", b"XX89370400440532013000", b"GB82-WEST"],
    ),
    "sfid": (
        {},
        [b"0015j00000AbCdE", b"0015j00000AbCdE" + sfid_suffix(b"0015j00000AbCdE").encode(), b"0055j00000AT6I1AAL"],
        [b"0055j00000AT6I1AAA", b"001234500000000", b"0015j10000AbCdE", b"0015j00000AbCd!"],
    ),
    "us_ssn": (
        {},
        [b"123-45-6789", b"536221234"],
        [b"000-12-3456", b"666-12-3456", b"900-12-3456", b"123-00-4567", b"123-45-0000", b"078-05-1120", b"12345678"],
    ),
    "entropy": ({"min": 3.0}, [b"aB3dE5gH7jK9"], [b"aaaaaaaaaaaa", b"abababababab"]),
    "token": ({}, [b"Zk3p9QmX2vL8nR4tW7yB1cF6hJ0sD5gA"], [b"my_application_key_name", b"Zk3p9QmX", b"a" * 32]),
    "de_steuerid": ({}, [b"86420975363", b"86 420 975 363"], [b"86420975364", b"11111111111"]),
    "fr_nir": ({}, [b"185057800608491", b"2 69 07 99 123 456 94"], [b"185057800608492"]),
    "es_dni": ({}, [b"12345678Z", b"12345678-Z"], [b"12345678A"]),
    "es_nie": ({}, [b"X7654321J"], [b"X7654321A"]),
    "it_codice_fiscale": ({}, [b"RSSMRA85T10A562S"], [b"RSSMRA85T10A562X"]),
    "nl_bsn": ({}, [b"123456782", b"1234.56.782"], [b"123456789"]),
    "pl_pesel": ({}, [b"85010112345", b"44050543214"], [b"85010112346"]),
    "uk_nino": ({}, [b"AB123456C", b"AB 12 34 56 C"], [b"GB123456A", b"NT123456A", b"DA123456A", b"AB123456E"]),
    "ipv4_public": (
        {},
        [b"8.8.8.8", b"192.0.2.1", b"198.51.100.7", b"203.0.113.9", b"172.32.0.1"],
        [b"10.0.0.1", b"192.168.1.1", b"172.16.5.4", b"127.0.0.1", b"169.254.1.1", b"100.64.0.1", b"224.0.0.1",
         b"0.0.0.0", b"255.255.255.255", b"999.1.1.1", b"1.2.3"],
    ),
    "ipv6_global": (
        {},
        [b"2001:db8::1", b"2606:4700:4700::1111", b"2a00:1450:4001:82b::200e"],
        [b"fe80::1", b"::1", b"fc00::1", b"ff02::1", b"2001:db8::g"],
    ),
    "jwt": (
        {},
        [_jwt({"alg": "HS256", "typ": "JWT"}, {"sub": "x"}), _jwt({"alg": "none"}, {"sub": "x"}, sig="")],
        [_jwt({"typ": "JWT"}, {"sub": "x"}), b"eyJhbGciOi.eyJzdWIi.abc", b"a.b", b"eyJ.eyJ.x.y"],
    ),
    "date": (
        {},
        [b"1985-04-12", b"12.04.1985", b"04/12/1985", b"19850412", b"1900-01-01", b"31.12.1999",
         "12. März 1985".encode(), b"12 de marzo de 1985", b"March 12, 1985", b"1 juin 1990", b"12 lipca 1985",
         b"3 mai 1970", b"7 Dec 2001", "3 Jänner 1970".encode(), b"12 de outubro de 1985", b"1 Sept. 1999",
         b"1985-3-12", b"1985.03.12", b"12.03.85", b"12-Mar-1985", b"01.01.05"],
        [b"1985-13-01", b"30.02.1985", b"1899-12-31", b"31.02.85", b"12-Foo-1985", (TODAY + dt.timedelta(days=30)).isoformat().encode(), b"12-04-85",
         b"12 Monday 1985", b"31 February 1985", b"12 Order 1985", b"12 marathons 1985", b"3 setups 1990",
         b"Maandag 12, 1985", b"Decimal 12, 1985", b"5 Jungle 1999"],
    ),
    "phone": (
        {}, [b"+44 20 7946 0958", b"(555) 010-1234", b"030 1234567"], [b"1234567", b"+1234567890123456", b"0000000000"],
    ),
    "aws_secret": ({}, [b"hFyJfm5di4PzJ59FHz5r1pY4OjE2jBMptUsGr7Cm"], [b"a" * 40, b"hFyJfm5di4PzJ59F", b"0123456789" * 4]),
    "password": (
        {},
        [b"hunter2!x", b"Tr0ub4dor", b"correct-horse"],
        [b"null", b"********", b"${DB_PASSWORD}", b"${DB_PASSWORD", b"{{ secret }}", b"<password>", b"[FILTERED]",
         b"%s", b"true", b"abc", b"$DB_PASS", b"xxxxxx"],
    ),
    "pl_nrb": (
        {},
        [b"61 1090 1014 0000 0712 1981 2874", b"61109010140000071219812874", b"61+1090+1014+0000+0712+1981+2874"],
        [b"61 1090 1014 0000 0712 1981 2875", b"6110901014000007121981287", b"PL61109010140000071219812874"],
    ),
    "street": (
        {},
        [b"1 Market St", b"Hauptstra\xc3\x9fe 5", b"221B Baker Street", b"3325 W 34th St"],
        [b"Main Street", b"12345", b"https://x.example/1", b"12 B"],
    ),
    "email_obfuscated": (
        {},
        [b"max.mustermann [at] gmx [dot] de", b"jane(at)example.com", b"anna {at} mail {punkt} de"],
        [b"fn(at)line.py", b"config[at]key.json", b"array[at]index.value", b"item(@)index.js", b"INFO [at] home.html",
         b"x(at)localhost"],
    ),
    "postal_code": (
        {},
        [b"SW1A 1AA", b"M1 1AE", b"EC1A1BB", b"94043", b"94043-1234", b"1012 AB", b"00-950", b"K1A 0B1", b" 10115 "],
        [b"00000", b"99999", b"1234", b"940431", b"SW1A", b"12-34", b"n/a", b"ABCDE"],
    ),
    "person_name": (
        {}, [b"Jane Doe", b"JANE DOE", b"Ana-Maria Test", b"Guest Smith"],
        [b"NULL", b"N/A", b"Test User", b"ADMIN", b"customer service", b"No-Reply", b"  "],
    ),
    "basic_auth": (
        {}, [base64.b64encode(b"user:pass")], [base64.b64encode(b"userpass"), b"not base64!", base64.b64encode(b":pw")],
    ),
}


def test_every_validator_has_cases():
    assert set(CASES) == set(VALIDATORS)


@pytest.mark.parametrize("name", sorted(CASES))
def test_accepts(name):
    params, good, _ = CASES[name]
    check = get_validator(name, params)
    for value in good:
        assert check(value), value


@pytest.mark.parametrize("name", sorted(CASES))
def test_rejects(name):
    params, _, bad = CASES[name]
    check = get_validator(name, params)
    for value in bad:
        assert not check(value), value


def test_iban_agrees_with_stdnum_on_valid_numbers():
    # Our own mod-97 must accept everything stdnum accepts (stdnum also checks BBAN formats).
    import random

    rng = random.Random(5)
    base = "GB82WEST12345698765432"
    for _ in range(500):
        s = list(base)
        s[rng.randrange(4, len(s))] = rng.choice("0123456789")
        cand = "".join(s)
        if stdnum_iban.is_valid(cand):
            assert get_validator("iban")(cand.encode())


def test_non_utf8_input_does_not_crash():
    junk = b"\xff\xfe\x00\x80abc"
    for name in VALIDATORS:
        assert get_validator(name, {})(junk) in (True, False)


def test_unknown_name_and_bad_params():
    with pytest.raises(KeyError):
        get_validator("nope")
    with pytest.raises(ValueError, match="does not take"):
        get_validator("luhn", {"min": 1})
    with pytest.raises(ValueError, match="must be a number"):
        get_validator("entropy", {"min": "high"})
    with pytest.raises(ValueError, match="min_digits"):
        get_validator("phone", {"min_digits": 12, "max_digits": 9})


def test_entropy_threshold_param():
    v = b"abcdabcdabcdabcd"  # exactly 2 bits/byte
    assert get_validator("entropy", {"min": 2.0})(v)
    assert not get_validator("entropy", {"min": 2.1})(v)


def test_fast_ipv4_public_agrees_with_ipaddress_module():
    """The integer-range IPv4 check must decide exactly like the ipaddress-based reference."""
    import random

    from leakwatch.detect.validators import get_validator, ipv4_public_reference

    check = get_validator("ipv4_public", {})
    rnd = random.Random(11)
    samples = [b"%d.%d.%d.%d" % tuple(rnd.randrange(256) for _ in range(4)) for _ in range(20000)]
    # Edges of every special range, leading zeros and out-of-range octets.
    samples += [b"10.0.0.0", b"9.255.255.255", b"11.0.0.0", b"100.63.255.255", b"100.64.0.0", b"100.127.255.255",
                b"100.128.0.0", b"172.15.255.255", b"172.16.0.0", b"172.31.255.255", b"172.32.0.0", b"192.0.2.1",
                b"198.51.100.7", b"203.0.113.9", b"224.0.0.1", b"239.255.255.255", b"255.255.255.255",
                b"01.2.3.4", b"1.2.3.256", b"1.2.3", b"1.2.3.4.5", b"8.8.8.8", b"0.1.2.3", b"127.0.0.1"]
    for s in samples:
        assert check(s) == ipv4_public_reference(s), s


def test_mixed_password_wants_letters_with_digits_or_symbols():
    plain, mixed = get_validator("password", {}), get_validator("password", {"mixed": 1})
    # Words, hyphenated words, masks and stored hashes are what prose says about a password.
    for value in (b"wrong", b"expired", b"incorrect", b"12345678", b"!!!!!!", b"auto-generated", b"never-expire",
                  b"up-to-date", b"write-only", b"***redacted***", b"sha256:9f86d081", b"$2b$12$R9h/cIPz0gi"):
        assert not mixed(value), value
    assert plain(b"expired")  # behind a password key any word is the password
    for value in (b"Tr0ub4dor", b"hunter2hunter2", b"Sonne#2024", b"Gato_2024", b"Winter2024!"):
        assert mixed(value), value


def test_strict_person_name_refuses_a_service_or_product_word():
    lenient, strict = get_validator("person_name", {}), get_validator("person_name", {"strict": 1})
    for value in (b"Payment Gateway", b"Inventory Sync", b"Order Service", b"Classic Hoodie"):
        assert not strict(value), value
    assert lenient(b"Payment Gateway")  # under a first/last-name key it is someone's name
    for value in (b"Jane Doe", b"Maria de la Cruz", b"Jos\xc3\xa9 M\xc3\xbcller"):
        assert strict(value), value
