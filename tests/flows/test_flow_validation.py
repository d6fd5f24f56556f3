"""A flow is refused when saved, with the reason: each rule of ``validate`` on its own, and ``check``/
``parse`` answering one 422 that names them all."""

from __future__ import annotations

from typing import Any

import pytest
from tests.flows.sample import ivr

from threadline.domain.errors import ValidationFailed
from threadline.flows.domain import FlowDefinition, check, parse, problems_in, validate


def problems(data: dict[str, Any]) -> list[str]:
    flow, found = problems_in(data)
    return [str(p) for p in found]


def test_the_sample_is_valid() -> None:
    assert problems(ivr()) == []
    assert isinstance(check(FlowDefinition.model_validate(ivr())), FlowDefinition)
    assert parse(ivr()).start == "welcome"


def test_unknown_targets_name_the_node_and_the_field() -> None:
    data = ivr()
    data["nodes"]["main"]["options"][1]["next"] = "ordr"
    data["nodes"]["hours"]["closed"] = "gone"
    found = problems(data)
    assert "main: 'options[2].next' points to 'ordr', which is not a node" in found
    assert "hours: 'closed' points to 'gone', which is not a node" in found


def test_a_missing_start() -> None:
    data = ivr()
    data["start"] = "hello"
    assert "'start' points to 'hello', which is not a node" in problems(data)


def test_a_dead_end() -> None:
    data = ivr()
    del data["nodes"]["main"]["no_match"]
    del data["nodes"]["welcome"]["next"]
    found = problems(data)
    assert "main: menu has no 'no_match': a dead end" in found
    assert "welcome: say has no 'next': a dead end" in found


def test_unreachable_nodes() -> None:
    data = ivr()
    data["nodes"]["orphan"] = {"type": "hangup"}
    assert problems(data) == ["orphan: unreachable: no path from the start 'welcome' leads here"]


def test_a_loop_without_an_exit_names_its_path() -> None:
    data = {"start": "m", "nodes": {
        "m": {"type": "menu", "prompt": {"en": "?"}, "options": [{"key": "1", "label": {"en": "A"}, "next": "a"}],
              "no_match": "a"},
        "a": {"type": "say", "text": {"en": "again"}, "next": "m"}}}
    assert problems(data) == ["m: a loop without an exit: m → a → m"]
    data["nodes"]["m"]["no_match"] = "m"  # the shortest way round is named
    assert problems(data) == ["m: a loop without an exit: m → m"]


def test_a_loop_that_asks_nothing_names_its_path() -> None:
    data = ivr()
    data["nodes"]["tag"]["next"] = "again"
    data["nodes"]["again"] = {"type": "say", "text": {"en": "x", "es": "y"}, "next": "check"}
    data["nodes"]["check"] = {"type": "branch", "on": "vip", "cases": [{"values": ["yes"], "next": "orders"}],
                              "default": "tag"}
    found = problems(data)
    assert len(found) == 1 and found[0].startswith("tag: an endless loop that asks nothing")
    assert found[0].endswith("tag → again → check → tag")


def test_a_loop_through_a_menu_is_allowed() -> None:
    data = ivr()
    data["nodes"]["main"]["options"].append({"key": "0", "label": {"en": "Repeat", "es": "Repetir"},
                                             "next": "welcome"})
    assert problems(data) == []


def test_a_self_loop_that_asks_nothing() -> None:
    data = {"start": "s", "nodes": {"s": {"type": "set", "attributes": {"a": 1}, "next": "s"}}}
    found = problems(data)
    assert "s: a loop without an exit: s → s" in found
    assert any(p.startswith("s: an endless loop that asks nothing") for p in found)


def test_texts_missing_for_a_declared_locale() -> None:
    data = ivr()
    del data["nodes"]["main"]["options"][0]["label"]["es"]
    data["nodes"]["welcome"]["text"]["fr"] = "Bienvenue"
    data["nodes"]["order"]["prompt"]["es"] = "  "
    found = problems(data)
    assert "main: 'options[1].label' has no text for locale es" in found
    assert "welcome: 'text' has text for undeclared locale fr" in found
    assert "order: 'prompt' has no text for locale es" in found


def test_locales_and_the_language_options() -> None:
    data = ivr()
    data["default_locale"] = "it"
    data["nodes"]["language"]["options"]["3"] = "it"
    found = problems(data)
    assert "the default locale 'it' is not one of 'locales'" in found
    assert "language: option '3' chooses locale 'it', which the flow does not declare" in found


def test_duplicate_menu_keys() -> None:
    data = ivr()
    data["nodes"]["main"]["options"][1]["key"] = "1"
    assert "main: menu key '1' is offered twice" in problems(data)


def test_a_bad_timezone_and_bad_hours() -> None:
    data = ivr()
    data["nodes"]["hours"]["timezone"] = "Mars/Olympus"
    data["nodes"]["hours"]["weekly"]["funday"] = []
    data["nodes"]["hours"]["weekly"]["sat"] = [["18:00", "09:00"]]
    found = problems(data)
    assert "hours: 'Mars/Olympus' is not a known time zone (an IANA name such as Europe/Rome)" in found
    assert "hours: 'funday' is not a day (mon, tue, wed, thu, fri, sat, sun)" in found
    assert "hours: sat 18:00-09:00: the opening must be before the closing" in found
    data["nodes"]["hours"]["timezone"] = "../../etc/passwd"
    assert any("is not a known time zone" in p for p in problems(data))


def test_a_bad_regex_and_collect_limits() -> None:
    data = ivr()
    data["nodes"]["order"].update(validator="regex", pattern="([0-9]+", min_digits=9, max_digits=8)
    found = problems(data)
    assert any(p.startswith("order: 'pattern' is not a valid regular expression") for p in found)
    assert "order: min_digits (9) is more than max_digits (8)" in found
    data["nodes"]["order"].update(pattern=None, min_digits=1)
    assert "order: the regex validator needs a 'pattern'" in problems(data)


@pytest.mark.parametrize("change, words", [
    (lambda d: d["nodes"]["billing"].update(queue_id=10**40), "billing: queue_id: Input should be less than or equal to 2147483647"),
    (lambda d: d["nodes"]["billing"].update(priority=-1), "priority"),
    (lambda d: d["nodes"]["main"].update(max_tries=0), "max_tries"),
    (lambda d: d["nodes"]["main"].update(max_tries=10**20), "max_tries"),
    (lambda d: d["nodes"]["main"]["options"][0].update(key="12"), "key"),
    (lambda d: d["nodes"].update(bad={"type": "teleport"}), "bad"),
    (lambda d: d["nodes"]["welcome"].update(colour="red"), "unknown field"),
    (lambda d: d["nodes"].update({"has space": {"type": "hangup"}}), "has space"),
    (lambda d: d.update(locales=[]), "locales"),
])
def test_shapes_that_do_not_parse_are_problems_too(change, words) -> None:  # type: ignore[no-untyped-def]
    data = ivr()
    change(data)
    flow, found = problems_in(data)
    assert flow is None and found and any(words in str(p) for p in found), found


def test_check_and_parse_raise_one_422_naming_every_reason() -> None:
    data = ivr()
    data["nodes"]["main"]["no_match"] = "nowhere"
    data["nodes"]["hours"]["timezone"] = "Nowhere/Land"
    with pytest.raises(ValidationFailed) as caught:
        parse(data)
    err = caught.value
    assert err.status == 422 and err.field == "definition"
    assert "'no_match' points to 'nowhere'" in err.message and "Nowhere/Land" in err.message
    with pytest.raises(ValidationFailed):
        check(FlowDefinition.model_validate(data))
    with pytest.raises(ValidationFailed, match="nodes"):
        parse({"start": "x"})
    assert validate(FlowDefinition.model_validate(ivr())) == []


def test_the_guides_example_is_valid() -> None:
    import json
    from pathlib import Path

    text = (Path(__file__).parents[2] / "docs" / "flows.md").read_text()
    example = json.loads(text.split("```json\n", 1)[1].split("```", 1)[0])
    assert problems(example) == []
