"""Salesforce context: record-ID prefixes (shipped and learned), field mapping, subject entities."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from leakwatch.detect import salesforce as sf
from leakwatch.detect.rules import default_rules_dir, load_rules
from leakwatch.detect.salesforce import (
    SUBJECT_ENTITIES,
    FieldMapError,
    builtin_prefixes,
    load_field_map,
    load_learned_prefixes,
    map_field,
    object_for_id,
    objects_for_prefix,
    prefixes_from_describe_global,
    save_learned_prefixes,
    sfid_checksum_ok,
    to_18,
)
from leakwatch.errors import InputError, LeakwatchError
from leakwatch.store import Store

# --- record IDs --------------------------------------------------------------------------------


def test_checksum_from_domain_facts():
    assert to_18("0055j00000AT6I1") == "0055j00000AT6I1AAL"
    assert sfid_checksum_ok("0055j00000AT6I1AAL") is True
    assert sfid_checksum_ok("0055j00000AT6I1AAA") is False
    assert sfid_checksum_ok("0055j00000AT6I1") is None
    with pytest.raises(ValueError):
        to_18("0055j")


@pytest.mark.parametrize(
    ("prefix", "obj"),
    [("001", "Account"), ("003", "Contact"), ("005", "User"), ("006", "Opportunity"), ("00Q", "Lead"),
     ("500", "Case"), ("801", "Order"), ("802", "OrderItem"), ("00D", "Organization"), ("0AT", "EventLogFile"),
     ("701", "Campaign"), ("068", "ContentVersion"), ("069", "ContentDocument")],
)
def test_standard_prefixes(prefix, obj):
    id15 = prefix + "5j00000AbCdE"
    assert object_for_id(id15) == obj
    assert object_for_id(to_18(id15)) == obj
    assert object_for_id(to_18(id15).encode()) == obj  # bytes straight from the scanner


def test_case_sensitive_prefixes():
    # 00Q is Lead, 00q is not the same prefix.
    assert object_for_id("00Q5j00000AbCdE") == "Lead"
    assert object_for_id("00q5j00000AbCdE") != "Lead"


def test_ambiguous_and_duplicate_prefixes():
    assert objects_for_prefix("00I") == ("Partner", "OpportunityPartner")
    assert object_for_id("00I5j00000AbCdE") == "Partner|OpportunityPartner"
    # The community file lists "0C3" twice with different names: both are kept. "0ab" is listed
    # twice with the same name: one name.
    assert set(objects_for_prefix("0C3")) == {"LiveChatUserConfig", "RequestThrottle"}
    assert objects_for_prefix("0ab") == ("AuraDefinitionBundleInfo",)
    table = builtin_prefixes()
    assert len(table) == 1302  # 1,306 entries, four keys given twice
    assert all(isinstance(v, tuple) and v for v in table.values())


@pytest.mark.parametrize("bad", ["", "003", "0035j00000AbCd", "0035j00000AbCdE1", "0035j00000AbCdEAAL1",
                                 "0035j00000AbCd!", "zzz5j00000AbCdE"])
def test_not_an_id_or_unknown_prefix(bad):
    assert object_for_id(bad) is None


def test_wrong_checksum_scores_not_rejects():
    bad = "0035j00000AbCdEAAA"
    assert sfid_checksum_ok(bad) is False
    assert object_for_id(bad) == "Contact"  # fixtures carry wrong suffixes: keep the mapping
    assert object_for_id(bad, strict=True) is None
    assert object_for_id(to_18("0035j00000AbCdE"), strict=True) == "Contact"
    assert object_for_id("003000000000000", strict=True) is None  # all digits: an order number


def test_learned_prefixes_win():
    learned = {"a0X": "Invoice__c", "001": "Account_Renamed"}
    assert object_for_id("a0X5j00000AbCdE") is None
    assert object_for_id("a0X5j00000AbCdE", learned) == "Invoice__c"
    assert object_for_id("0015j00000AbCdE", learned) == "Account_Renamed"
    assert object_for_id("0035j00000AbCdE", learned) == "Contact"
    assert object_for_id("00I5j00000AbCdE", {"00I": "OpportunityPartner"}) == "OpportunityPartner"


DESCRIBE = {
    "encoding": "UTF-8",
    "maxBatchSize": 200,
    "sobjects": [
        {"name": "Account", "keyPrefix": "001", "label": "Account", "custom": False},
        {"name": "AccountHistory", "keyPrefix": None, "label": "Account History", "custom": False},
        {"name": "Invoice__c", "keyPrefix": "a0X", "label": "Invoice", "custom": True},
        {"name": "Shipment__c", "keyPrefix": "a1B", "label": "Shipment", "custom": True},
        {"name": "Broken__c", "keyPrefix": "toolong", "custom": True},
        {"name": "Dup__c", "keyPrefix": "a0X", "custom": True},
    ],
}


def test_prefixes_from_describe_global():
    assert prefixes_from_describe_global(DESCRIBE) == {"001": "Account", "a0X": "Invoice__c", "a1B": "Shipment__c"}
    with pytest.raises(InputError, match="sobjects"):
        prefixes_from_describe_global({"errorCode": "INVALID_SESSION_ID"})
    with pytest.raises(InputError, match=r"sobjects\[0\]"):
        prefixes_from_describe_global({"sobjects": [{"keyPrefix": "a0X"}]})


def test_learned_prefixes_round_trip_in_the_store(tmp_path):
    db = tmp_path / "lw.duckdb"
    with Store.open(db) as store:
        assert load_learned_prefixes(store.con) == {}
        n = save_learned_prefixes(store.con, prefixes_from_describe_global(DESCRIBE),
                                  "https://admin:hunter2@acme.my.salesforce.com/services/data/v60.0")
        assert n == 3
        # Learned again later, from another sandbox: the prefix is replaced, not duplicated.
        save_learned_prefixes(store.con, {"a1B": "Parcel__c"}, "https://acme--uat.sandbox.my.salesforce.com")
    with Store.open(db) as store:
        learned = load_learned_prefixes(store.con)
        assert learned == {"001": "Account", "a0X": "Invoice__c", "a1B": "Parcel__c"}
        assert object_for_id("a1B5j00000AbCdE", learned) == "Parcel__c"
        rows = store.con.execute("SELECT prefix, origin, instance FROM sf_prefixes ORDER BY prefix").fetchall()
        assert rows == [("001", "describe", "https://acme.my.salesforce.com"),
                        ("a0X", "describe", "https://acme.my.salesforce.com"),
                        ("a1B", "describe", "https://acme--uat.sandbox.my.salesforce.com")]
        assert "hunter2" not in repr(store.con.execute("SELECT * FROM sf_prefixes").fetchall())
        assert load_learned_prefixes(store.con, "https://acme.my.salesforce.com") == {"001": "Account", "a0X": "Invoice__c"}


def test_bad_learned_prefix_writes_nothing(tmp_path):
    with Store.open(tmp_path / "lw.duckdb") as store:
        with pytest.raises(InputError, match="'a0'"):
            save_learned_prefixes(store.con, {"a0X": "Invoice__c", "a0": "Short__c"}, "https://x.my.salesforce.com")
        with pytest.raises(InputError, match="empty"):
            save_learned_prefixes(store.con, {"a0X": " "}, "https://x.my.salesforce.com")
        assert load_learned_prefixes(store.con) == {}
        assert save_learned_prefixes(store.con, {}, "https://x.my.salesforce.com") == 0


# --- field mapping -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "kw", "expected"),
    [
        ("Email", {"entity": "Contact"}, ("Contact", "Email")),
        ("EMAIL", {"entity": "Lead"}, ("Lead", "Email")),
        ("Email", {}, ("Contact", "Email")),
        ("Lead.Phone", {}, ("Lead", "Phone")),
        ("BillingStreet", {}, ("Account", "BillingStreet")),
        ("MailingPostalCode", {}, ("Contact", "MailingPostalCode")),
        ("contact.email", {}, ("Contact", "Email")),
        ("Contact.Email", {"entity": "Lead"}, ("Contact", "Email")),  # the path beats the context
        ("customer.firstName", {}, ("Contact", "FirstName")),
        ("customer.first_name", {"entity": "Lead"}, ("Lead", "FirstName")),
        ("shipping_address.street", {}, ("Account", "ShippingStreet")),
        ("shipping_address.street", {"entity": "Order"}, ("Order", "ShippingStreet")),
        ("order.shippingAddress.city", {}, ("Order", "ShippingCity")),
        ("order.email", {}, ("Order", "BillingEmailAddress")),
        ("case.email", {}, ("Case", "SuppliedEmail")),
        ("records[3].Contact.MobilePhone", {}, ("Contact", "MobilePhone")),
        ("contacts[2].email", {}, ("Contact", "Email")),
        ('data["lead"]["phone"]', {}, ("Lead", "Phone")),
        ("opportunities[0].Name", {}, ("Opportunity", "Name")),
        ("records[0].Owner.Email", {}, ("User", "Email")),
        ("email", {"entity": "Account"}, ("Account", "PersonEmail")),  # person accounts
        ("user.email", {}, ("User", "Email")),
        ("customer.address.postal_code", {}, ("Contact", "MailingPostalCode")),
        ("dob", {}, ("Contact", "Birthdate")),
        ("name", {"entity": "Account"}, ("Account", "Name")),
        ("Name", {"entity": "contacts"}, ("Contact", "Name")),
        ("USER_NAME", {"event_type": "Login"}, ("User", "Username")),
        ("Username", {"event_type": "ApiEvent"}, ("User", "Username")),
        ("Score__c", {"entity": "Lead"}, ("Lead", "Score__c")),
        ("Invoice__c.Billing_Email__c", {}, ("Invoice__c", "Billing_Email__c")),
        # The record names the object (ENTITY_NAME, sobjectType): that object's own aliases.
        ("Email", {"entity": "Case"}, ("Case", "SuppliedEmail")),
        ("Phone", {"entity": "Case"}, ("Case", "SuppliedPhone")),
        ("Email", {"entity": "Order"}, ("Order", "BillingEmailAddress")),
        # Unmapped: generic keys without an object, keys that are no field, no path at all.
        ("name", {}, None),
        ("product.name", {}, None),
        ("title", {"entity": "Opportunity"}, None),
        ("contact.company", {}, None),  # Contact has no Company: the path named the object
        ("Email", {"entity": "Opportunity"}, None),  # the record named the object: not a contact's
        ("messages[0].content", {}, None),
        ("attributes.type", {}, None),
        ("Score__c", {}, None),
        ("CLIENT_IP", {"event_type": "Login"}, None),
        ("", {}, None),
        (None, {}, None),
    ],
)
def test_map_field(path, kw, expected):
    assert map_field(path, **kw) == expected


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "fields.yaml"
    p.write_text(textwrap.dedent(text), encoding="utf-8")
    return p


def test_custom_field_map(tmp_path):
    fm = load_field_map(write(tmp_path, """\
        objects:
          Patient__c: [Email__c, Insurance_Number__c]
          Contact: [Email]
        object_aliases:
          patient: Patient__c
        aliases:
          - keys: [insurance.number, versichertennummer]
            field: Insurance_Number__c
        needs_object: [email]
        """))
    assert map_field("patient.insurance.number", fields=fm) == ("Patient__c", "Insurance_Number__c")
    assert map_field("Versichertennummer", fields=fm) == ("Patient__c", "Insurance_Number__c")
    assert map_field("email", fields=fm) is None  # needs an object in this map
    assert map_field("email", entity="Contact", fields=fm) == ("Contact", "Email")
    assert map_field("patient.email__c", fields=fm) == ("Patient__c", "email__c")


def _fm_error(tmp_path: Path, text: str) -> FieldMapError:
    with pytest.raises(FieldMapError) as ei:
        load_field_map(write(tmp_path, text))
    assert isinstance(ei.value, LeakwatchError)
    return ei.value


@pytest.mark.parametrize(
    ("text", "line", "field", "needle"),
    [
        ("objects:\n  Contact: [Email]\nalias:\n  - {keys: [a], field: Email}\n", 3, "alias", "did you mean 'aliases'"),
        ("objects:\n  Contact: [Email]\naliases:\n  - keys: [mail]\n    field: Phone\n", 5, "field", "no object"),
        ("objects:\n  Contact: [Email]\n  Lead: [Phone]\naliases:\n  - keys: [mail]\n    field: Email\n    objects: [Lead]\n",
         7, "objects", "Lead has no field Email"),
        ("objects:\n  Contact: [Email]\naliases:\n  - keys: [mail]\n    field: Email\n    objects: [Contakt]\n",
         6, "objects", "did you mean 'Contact'"),
        ("objects:\n  Contact: [Email]\naliases:\n  - keys: [mail]\n    feld: Email\n", 5, "feld", "did you mean 'field'"),
        ("objects:\n  Contact: [Email, EMail]\n", 2, "objects", "listed twice"),
        ("objects:\n  contact: [Email]\n", 2, "objects.contact", "API name"),
        ("objects:\n  Contact: [Email]\nevent_columns:\n  Login:\n    USER_NAME: User.Username\n", 5,
         "event_columns.Login.USER_NAME", "not Object.Field"),
        ("objects:\n  Contact: [Email]\nobject_aliases:\n  owner: User\n", 4, "object_aliases.owner", "unknown object"),
        ("objects:\n  Contact: [Email]\naliases:\n  - {keys: [mail], field: Email}\n  - {keys: [e_mail, MAIL], field: Email}\n",
         5, "keys", "already an alias"),
        ("objects: [Contact]\n", 1, "objects", "mapping"),
        ("objects:\n  Contact: [Email\n", 3, None, "YAML syntax error"),
    ],
)
def test_field_map_errors(tmp_path, text, line, field, needle):
    e = _fm_error(tmp_path, text)
    assert (e.line, e.field) == (line, field), str(e)
    assert needle in e.message, e.message
    assert str(e).startswith(str(tmp_path / "fields.yaml") + f":{line}")


def test_shipped_field_map_loads():
    fm = load_field_map()
    assert {"Contact", "Lead", "Account", "User", "Case", "Order"} <= set(fm.objects)
    assert sf.default_field_map() is sf.default_field_map()


# --- subjects ----------------------------------------------------------------------------------


def test_subject_entities_exist_in_the_shipped_rules():
    rules, errors = load_rules([default_rules_dir()])
    assert errors == []
    entities = {r.entity for r in rules}
    assert SUBJECT_ENTITIES <= entities, SUBJECT_ENTITIES - entities
    assert {"EMAIL_ADDRESS", "PHONE_NUMBER", "PERSON_NAME", "US_SSN", "UK_NINO"} <= SUBJECT_ENTITIES
    # Shared or non-identifying values are not subjects.
    assert not {"IP_ADDRESS", "DATE_OF_BIRTH", "OPENAI_API_KEY", "SALESFORCE_RECORD_ID"} & SUBJECT_ENTITIES


def test_notice_ships_with_the_prefix_table():
    from importlib import resources

    notice = resources.files("leakwatch").joinpath("data", "NOTICE-sfid.txt").read_text(encoding="utf-8")
    assert "Copyright 2017 Bjarke Walling" in notice and "Permission is hereby granted" in notice
