"""Masked previews never reveal the value; normalizers make equal things hash equal."""
from __future__ import annotations

import random
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from leakwatch.detect.mask import MASKERS, NORMALIZERS, get_masker, get_normalizer


@pytest.mark.parametrize(
    ("style", "value", "expected"),
    [
        ("email", b"jane.doe@example.com", "j***@e******.com"),
        ("email", b"ops@mail.example.org", "o***@m***********.org"),
        ("card", b"4111 1111 1111 1111", "************1111"),
        ("card", b"378282246310005", "***********0005"),
        ("iban", b"GB82 WEST 1234 5698 7654 32", "GB****************5432"),
        ("phone", b"+44 20 7946 0958", "+**********58"),
        ("phone", b"030 1234567", "********67"),
        ("national_id", b"123-45-6789", "*******89"),
        ("national_id", b"RSSMRA85T10A562S", "**************2S"),
        ("name", b"Jane Doe", "J***"),
        ("ip", b"203.0.113.5", "203.x.x.x"),
        ("ip", b"2001:db8::1", "2001:x:\u2026"),
        ("ip", b"not-an-address", "no**********ss"),
        ("generic", b"0123456789abcdef", "01************ef"),
        ("generic", b"short", "*****"),
        ("date", b"1985-04-12", "****-**-**"),
        ("address", b"1 Market St", "* ****** **"),
        ("sfid", b"0015j00000AbCdEAAV", "001***************"),
        ("password", b"hunter2", "********"),
        ("redact", b"anything", "[REDACTED]"),
        ("secret", b"sk-proj-" + b"A1b2C3d4" * 20, "sk-proj-\u2026[168]"),
        ("secret", b"sk-ant-api03-" + b"x9Y8z7W6" * 12, "sk-ant-api03-\u2026[109]"),
        ("secret", b"AKIA" + b"Z9Y8X7W6V5U4T3S2", "AKIA\u2026[20]"),
        ("secret", b"ghp_" + b"a1" * 18, "ghp_\u2026[40]"),
        ("secret", b"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln", "eyJ\u2026[41]"),
        ("secret", b"Zk3p9QmX2vL8nR4tW7yB1cF6hJ0sD5gA", "\u2026[32]"),
        ("secret", b"xai-" + b"Q1w2E3r4" * 5, "xai-\u2026[44]"),
    ],
)
def test_mask_examples(style, value, expected):
    out = get_masker(style)(value)
    assert out == expected
    assert value.decode("utf-8") not in out


def test_every_style_has_an_example():
    covered = {
        "email", "card", "iban", "phone", "national_id", "name", "ip", "generic", "date", "address", "sfid",
        "password", "redact", "secret",
    }
    assert covered == set(MASKERS)


def _random_part_shown(masked: str, value: str) -> int:
    """Characters of ``value`` beyond a vendor prefix that appear in ``masked``, as the longest
    run of consecutive value characters found in the output."""
    longest = 0
    for i in range(len(value)):
        for j in range(i + longest + 1, len(value) + 1):
            if value[i:j] in masked:
                longest = j - i
            else:
                break
    return longest


@pytest.mark.parametrize("prefix", ["sk-proj-", "sk-ant-api03-", "AKIA", "AIza", "hf_", "gsk_", "r8_", "", "eyJ"])
def test_secret_mask_shows_at_most_4_random_characters(prefix):
    rng = random.Random(prefix)
    for n in (8, 16, 40, 120):
        rand = "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(n))
        masked = get_masker("secret")((prefix + rand).encode())
        assert rand not in masked
        # Strip the prefix the mask is allowed to show, then look for any of the random part.
        shown = masked[len(prefix):] if masked.startswith(prefix) else masked
        assert _random_part_shown(shown, rand) <= 4, masked


@given(st.binary(min_size=1, max_size=200))
def test_no_masker_crashes_or_reveals_long_values(value):
    for style, masker in MASKERS.items():
        out = masker(value)
        assert isinstance(out, str)
        text = value.decode("utf-8", errors="replace")
        if len(text.strip()) >= 6 and any(c.isalnum() for c in text):
            assert text not in out, style


@pytest.mark.parametrize(
    ("style", "a", "b"),
    [
        ("lower", b"Jane@Example.COM", b"jane@example.com"),
        ("digits", b"4111 1111-1111 1111", b"4111111111111111"),
        ("alnum_upper", b"gb82 west 1234 5698 7654 32", b"GB82WEST12345698765432"),
        ("sfid15", b"0015j00000AbCdEAAV", b"0015j00000AbCdE"),
        ("ip", b"2001:DB8:0:0:0:0:0:1", b"2001:db8::1"),
        ("lower_ws", b"  Jane   DOE ", b"jane doe"),
        ("alnum", b"ab-12_cd", b"ab12cd"),
        ("upper", b"ab", b"AB"),
        ("none", b"X y", b"X y"),
        ("email_plain", b"Max.Mustermann [at] gmx [dot] de", b"max.mustermann@gmx.de"),
        ("email_plain", b"anna {AT} mail {punkt} de", b"anna@mail.de"),
        ("email_plain", b"jane(at)example.com", b"jane%40example.com"),
    ],
)
def test_normalizers_make_forms_equal(style, a, b):
    n = get_normalizer(style)
    assert n(a) == n(b)


def test_normalizer_ip_fallback_and_unknown_styles():
    assert get_normalizer("ip")(b"not-an-ip") == b"not-an-ip"
    assert set(NORMALIZERS) >= {"none", "lower", "digits", "alnum_upper", "sfid15"}
    with pytest.raises(KeyError):
        get_masker("nope")
    with pytest.raises(KeyError):
        get_normalizer("nope")


def test_url_encoded_email_masks_and_hashes_like_the_plain_one():
    from leakwatch.detect.mask import get_masker, get_normalizer

    assert get_masker("email")(b"jane.doe%40example.com") == get_masker("email")(b"jane.doe@example.com")
    norm = get_normalizer("email")
    assert norm(b"Jane.Doe%40Example.com") == norm(b"jane.doe@example.com") == b"jane.doe@example.com"


# Field paths and URL paths: safe_path skips the PII-segment pattern when a path holds nothing
# that pattern could match. The shortcut must never change the answer.
_PATH_ALPHABET = "/.[]@%40 0123456789abcXYZ_+=-?"


@given(st.text(alphabet=_PATH_ALPHABET, max_size=80)
       | st.builds(lambda a, n, b: a + n + b, st.text(alphabet="/.ab", max_size=6),
                   st.sampled_from(["1234", "12345", "x" * 32, "x" * 33, "a%40b", "a@b", "%4", "4" * 9]),
                   st.text(alphabet="/.[]ab1", max_size=6)))
def test_safe_path_shortcut_equals_the_full_pattern(path):
    from leakwatch.detect import enrich

    enrich._SAFE_PATHS.clear()
    assert enrich.safe_path(path) == enrich._PII_SEGMENT.sub("*", path)


def test_safe_path_masks_identifier_segments_of_url_paths():
    from leakwatch.detect.enrich import _path_of

    assert _path_of({"url": "https://api.openai.com/v1/chat/completions?x=1"}, prefer_url=True) == "/v1/chat/completions"
    assert _path_of({"path": "/users/jane.doe@example.com/orders/123456"}) == "/users/*/orders/*"
    assert _path_of({"path": "/a/" + "k" * 40 + "/b"}) == "/a/*/b"
    # A report's id (00O…) says which report was exported; a Contact's id (003…) is a person's.
    assert _path_of({"path": "/00O5j000004XyZa?export=1"}) == "/00O5j000004XyZa"
    assert _path_of({"path": "/lightning/r/Report/00O5j000004XyZaEAK/view"}) == "/lightning/r/Report/00O5j000004XyZaEAK/view"
    assert _path_of({"path": "/u/jane@example.com/00O5j000004XyZa"}) == "/u/*/00O5j000004XyZa"
    assert _path_of({"path": "/lightning/r/Contact/0035j00000AbCdEAAZ/view"}) == "/lightning/r/Contact/*/view"
    # A card or an SSN in groups, an AWS key id, a provider's token by its prefix: masked too
    # (they were stored raw in events.url_path), versions and API paths are not.
    assert _path_of({"url": "https://api.openai.com/v1/cards/4242-4242-4242-4242/ssn/219-09-9999/keys/"
                            "AKIAZQPATH7X4R2T9WQE/t/sk-proj-abcdefgh1234/chat"}, prefer_url=True) == \
        "/v1/cards/*/ssn/*/keys/*/t/*/chat"
    assert _path_of({"path": "/static/app-1.2.3.js"}) == "/static/app-1.2.3.js"
    assert _path_of({"path": "/services/data/v60.0/query"}) == "/services/data/v60.0/query"


def test_actor_and_app_labels_are_masked_like_the_values_they_are():
    from leakwatch.detect.mask import mask_actor, safe_label

    assert mask_actor(b"zinkerfield.bartholomew") == "z***"
    assert mask_actor(b"005xIxBSRypVaikQOC") == "00**************OC"  # a user id: a record id, kept apart
    assert safe_label("zq.appmail@example.com") == "z***@e******.com"
    assert safe_label("crm-sync") == "crm-sync" and safe_label("0H4Hs000000Integr") == "0H4Hs000000Integr"


def test_url_encoded_values_hash_and_mask_like_plain_ones():
    from leakwatch.detect.mask import get_masker, get_normalizer

    digits, email = get_normalizer("digits"), get_normalizer("email")
    assert digits(b"%2B44%2020%207946%200958") == digits(b"+44 20 7946 0958") == b"442079460958"
    assert email(b"Jane.Doe%2540Example.com") == email(b"jane.doe%40example.com") == b"jane.doe@example.com"
    assert get_masker("phone")(b"%2B442079460958") == get_masker("phone")(b"+442079460958")
    assert get_masker("email")(b"jane.doe%2540example.com") == "j***@e******.com"
