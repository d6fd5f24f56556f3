"""Typed custom attributes: values are converted to their type or refused with a message."""

from __future__ import annotations

import pytest

from threadline.domain.contacts import AttributeDef, AttributeType
from threadline.domain.errors import ValidationFailed


@pytest.mark.parametrize(("type_", "given", "stored"), [
    (AttributeType.NUMBER, "42", 42), (AttributeType.NUMBER, 2.5, 2.5), (AttributeType.BOOLEAN, "yes", True),
    (AttributeType.BOOLEAN, False, False), (AttributeType.DATE, "2026-12-31", "2026-12-31"),
    (AttributeType.TAGS, ["B", "a", "b "], ["a", "b"]), (AttributeType.URL, " https://x.example/a ", "https://x.example/a"),
    (AttributeType.TEXT, 7, "7"), (AttributeType.NUMBER, None, None),
])
def test_values_are_converted_to_their_type(type_: AttributeType, given: object, stored: object) -> None:
    assert AttributeDef("k", "K", type_).coerce(given) == stored


@pytest.mark.parametrize(("type_", "given", "says"), [
    (AttributeType.NUMBER, "lots", "must be a number"), (AttributeType.NUMBER, True, "must be a number"),
    (AttributeType.BOOLEAN, "maybe", "true or false"), (AttributeType.DATE, "31/12/2026", "a date like"),
    (AttributeType.URL, "javascript:alert(1)", "http(s) link"), (AttributeType.TEXT, {"a": 1}, "must be text"),
])
def test_wrong_values_are_refused_naming_the_attribute(type_: AttributeType, given: object, says: str) -> None:
    with pytest.raises(ValidationFailed) as err:
        AttributeDef("k", "Thing", type_).coerce(given)
    assert says in err.value.message and err.value.field == "attributes.k"


def test_a_select_takes_only_its_options() -> None:
    tier = AttributeDef("tier", "Tier", AttributeType.SELECT, ("silver", "gold"))
    assert tier.coerce("gold") == "gold"
    with pytest.raises(ValidationFailed, match="silver, gold"):
        tier.coerce("platinum")
