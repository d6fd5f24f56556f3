"""The flow engine, pure: turns of a small IVR by keys (voice) and by button labels and text (chat),
menu retries then the default route, captures with Luhn, PIN checks with limited tries, business hours
across time zones and holidays, the language switch, and a state that survives JSON between turns."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError
from tests.flows.sample import ivr

from threadline.flows.domain import (
    Ask,
    Digits,
    Enqueue,
    FlowContext,
    FlowDefinition,
    FlowState,
    Handoff,
    Hangup,
    NoInput,
    Say,
    SetAttributes,
    Text,
    Timeout,
    Verified,
    Voicemail,
    answer,
    fold,
    luhn,
    start,
    validate,
)

MONDAY_10_MADRID = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)  # 10:00 in Madrid (CET)


def ctx(now: datetime = MONDAY_10_MADRID, **kw) -> FlowContext:  # type: ignore[no-untyped-def]
    return FlowContext(now=now, **kw)


def flow(data: dict | None = None) -> FlowDefinition:
    f = FlowDefinition.model_validate(data or ivr())
    assert validate(f) == []
    return f


def kinds(turn) -> list[str]:  # type: ignore[no-untyped-def]
    return [type(i).__name__ for i in turn.instructions]


def roundtrip(state: FlowState) -> FlowState:
    return FlowState.model_validate_json(state.model_dump_json())


def test_voice_run_language_menu_collect_queue() -> None:
    f = flow()
    t = start(f, ctx())
    assert kinds(t) == ["Say", "Ask"] and t.instructions[0] == Say("Welcome to Acme.", "en", "file-41")
    ask = t.instructions[1]
    assert isinstance(ask, Ask) and ask.kind == "choice" and ask.node == "language"
    assert ask.options == [("1", "English"), ("2", "Español")]
    t = answer(f, roundtrip(t.state), Digits("2"), ctx())
    assert t.state.locale == "es" and t.state.node == "main"
    assert t.instructions == [Ask("choice", "Facturación 1, pedidos 2.", "es", "main",
                                  [("1", "Facturación"), ("2", "Pedidos")], num_digits=1, timeout_seconds=5)]
    t = answer(f, roundtrip(t.state), Digits("2"), ctx())
    ask = t.instructions[0]
    assert isinstance(ask, Ask) and ask.kind == "digits" and ask.min_digits == 6 and ask.max_digits == 8
    t = answer(f, roundtrip(t.state), Digits("1234567#"), ctx())
    assert t.finished and kinds(t) == ["SetAttributes", "Enqueue"]
    assert t.instructions[0] == SetAttributes({"last_order": "1234567", "ivr": True})
    enq = t.instructions[1]
    assert enq == Enqueue(1, ["orders"], 3, 120, "9", {"locale": "es", "main": "2", "order_number": "1234567"})
    # a finished flow answers nothing more
    assert answer(f, t.state, Digits("1"), ctx()).instructions == []


def test_the_callers_locale_hint_and_the_default() -> None:
    f = flow()
    assert start(f, ctx(locale="es-MX")).state.locale == "es"
    assert start(f, ctx(locale="ES")).instructions[0].locale == "es"
    assert start(f, ctx(locale="fr-FR")).state.locale == "en"
    assert start(f, ctx()).state.locale == "en"


def test_the_language_choice_changes_what_is_said() -> None:
    f = flow()
    t = start(f, ctx(locale="en"))
    t = answer(f, t.state, Text("español"), ctx())  # chat: the button's label, any case or accent
    assert t.state.locale == "es" and t.instructions[0].locale == "es"
    t2 = answer(f, start(f, ctx(locale="es")).state, Digits("1"), ctx())
    assert t2.state.locale == "en" and t2.instructions[0].prompt == "Billing 1, orders 2."


def _at_menu(f: FlowDefinition) -> FlowState:
    return answer(f, start(f, ctx()).state, Digits("1"), ctx()).state


def test_an_unknown_key_hears_the_menu_again_then_the_default_route() -> None:
    f = flow()
    state = _at_menu(f)
    for attempt in (1, 2):
        t = answer(f, state, Digits("7"), ctx())
        assert kinds(t) == ["Say", "Ask"] and t.instructions[0].text == "Sorry, that is not one of the options."
        assert t.instructions[1].node == "main" and t.state.tries == attempt
        state = roundtrip(t.state)
    t = answer(f, state, Digits("7"), ctx())
    assert t.finished and kinds(t) == ["Say", "Handoff"] and t.instructions[1] == Handoff(None)


def test_silence_is_counted_like_a_wrong_key_and_the_sorry_line_is_localised() -> None:
    f = flow()
    state = answer(f, start(f, ctx()).state, Digits("2"), ctx()).state  # Spanish
    t = answer(f, state, Timeout(), ctx())
    assert t.instructions[0] == Say("Lo siento, no he recibido ninguna respuesta.", "es")
    t = answer(f, t.state, Digits("5"), ctx())
    assert t.instructions[0] == Say("Lo siento, esa no es una de las opciones.", "es")
    t = answer(f, t.state, NoInput(), ctx())
    assert isinstance(t.instructions[-1], Handoff)


def test_italian_sorry_line() -> None:
    data = {"start": "m", "locales": ["it"], "default_locale": "it", "nodes": {
        "m": {"type": "menu", "prompt": {"it": "Premi 1"}, "options": [{"key": "1", "label": {"it": "Uno"},
                                                                      "next": "end"}], "no_match": "end"},
        "end": {"type": "hangup", "text": {"it": "Arrivederci"}}}}
    f = flow(data)
    t = answer(f, start(f, ctx()).state, Digits("9"), ctx())
    assert t.instructions[0].text == "Spiacente, questa non è una delle opzioni."
    t = answer(f, t.state, Digits("1"), ctx())
    assert t.instructions == [Hangup("Arrivederci")]


@pytest.mark.parametrize("said, chosen", [
    ("Facturación", "billing"), ("FACTURACION", "billing"), ("  billing ", "billing"), ("1", "billing"),
    ("I have a question about my invoice", "billing"), ("where is my delivery?", "order"),
    ("Pedidos", "order"),
])
def test_chat_text_matches_labels_keywords_and_keys(said: str, chosen: str) -> None:
    f = flow()
    t = answer(f, _at_menu(f), Text(said), ctx())
    assert t.state.node == chosen


def test_chat_text_that_matches_two_options_or_none_is_no_match() -> None:
    f = flow()
    for said in ("bill for my order", "weather", "", "invoices"):
        t = answer(f, _at_menu(f), Text(said), ctx())
        assert t.state.node == "main" and t.state.tries == 1, said


def test_fold() -> None:
    assert fold("Facturación") == "facturacion" and fold("ÀÉÎõü!") == "aeiou" and fold(" a\tb ") == "a b"


def _collect_flow(validator: str, **extra) -> FlowDefinition:  # type: ignore[no-untyped-def]
    return flow({"start": "card", "nodes": {
        "card": {"type": "collect", "prompt": {"en": "Card number"}, "attribute": "card", "validator": validator,
                 "min_digits": 12, "max_digits": 19, "max_tries": 2, "next": "ok", "fail": "bad", **extra},
        "ok": {"type": "handoff", "queue_id": 4}, "bad": {"type": "hangup", "text": {"en": "Bye"}}}})


def test_collect_with_luhn() -> None:
    assert luhn("4111111111111111") and not luhn("4111111111111112") and not luhn("7")
    f = _collect_flow("luhn", sensitive=True)
    t = start(f, ctx())
    assert t.instructions[0].sensitive
    t2 = answer(f, t.state, Digits("4111111111111112"), ctx())
    assert kinds(t2) == ["Say", "Ask"] and t2.instructions[0].text == "Sorry, that is not valid."
    t3 = answer(f, t2.state, Text("4111 1111 1111 1111"), ctx())  # chat: typed with spaces
    assert t3.instructions == [Handoff(4)] and t3.state.variables == {"card": "4111111111111111"}
    t4 = answer(f, t2.state, Digits("12"), ctx())  # too short, second try: the fail exit
    assert kinds(t4) == ["Say", "Hangup"] and t4.instructions[1] == Hangup("Bye")


def test_collect_with_a_pattern() -> None:
    f = _collect_flow("regex", pattern=r"4\d+", min_digits=2)
    assert answer(f, start(f, ctx()).state, Digits("4123"), ctx()).state.variables == {"card": "4123"}
    assert answer(f, start(f, ctx()).state, Digits("5123"), ctx()).state.tries == 1
    assert answer(f, start(f, ctx()).state, Text("4abc"), ctx()).state.tries == 1


def _verify_flow(**extra) -> FlowDefinition:  # type: ignore[no-untyped-def]
    return flow({"start": "pin", "nodes": {
        "pin": {"type": "verify", "prompt": {"en": "Your PIN"}, "against": "pin", "max_tries": 3, "ok": "in",
                "fail": "out", **extra},
        "in": {"type": "queue", "queue_id": 1}, "out": {"type": "hangup"}}})


def test_verify_a_pin_with_limited_tries() -> None:
    f = _verify_flow()
    attrs = {"pin": "4321"}
    t = start(f, ctx(attributes=attrs))
    assert t.instructions[0].sensitive and t.instructions[0].kind == "digits"
    for attempt in (1, 2):
        t = answer(f, roundtrip(t.state), Digits("0000"), ctx(attributes=attrs))
        assert kinds(t) == ["Say", "Ask"] and t.state.tries == attempt and not t.state.verified
        assert t.instructions[0].text == "Sorry, that does not match our records."
    ok = answer(f, t.state, Digits("4321"), ctx(attributes=attrs))
    assert ok.state.verified and ok.instructions[0] == Verified(True, "pin") and isinstance(ok.instructions[1], Enqueue)
    failed = answer(f, t.state, Digits("1111"), ctx(attributes=attrs))
    assert not failed.state.verified and kinds(failed) == ["Say", "Verified", "Hangup"]
    assert failed.instructions[1] == Verified(False, "pin")


def test_verify_last_digits_and_a_date_of_birth() -> None:
    last4 = _verify_flow(against="account", digits=4)
    attrs = {"account": "ES91-2100-0418-4502-0005-1332", "dob": "1980-04-12"}
    assert answer(last4, start(last4, ctx()).state, Digits("1332"), ctx(attributes=attrs)).state.verified
    assert start(last4, ctx()).instructions[0].num_digits == 4
    assert not answer(last4, start(last4, ctx()).state, Digits("51332"), ctx(attributes=attrs)).state.verified
    dob = _verify_flow(against="dob")
    assert answer(dob, start(dob, ctx()).state, Text("1980/04/12"), ctx(attributes=attrs)).state.verified


def test_verify_without_the_attribute_never_passes() -> None:
    f = _verify_flow()
    t = start(f, ctx())
    for reply in (Digits(""), NoInput(), Digits("0")):
        t = answer(f, t.state, reply, ctx(attributes={"pin": ""}))
    assert t.finished and not t.state.verified and Verified(False, "pin") in t.instructions


def _hours_flow(tz: str, holidays: list[str] | None = None) -> FlowDefinition:
    return flow({"start": "h", "nodes": {
        "h": {"type": "hours", "timezone": tz, "weekly": {"mon": [["09:00", "17:00"]], "sat": [["10:00", "24:00"]]},
              "holidays": holidays or [], "open": "q", "closed": "vm"},
        "q": {"type": "queue", "queue_id": 1}, "vm": {"type": "voicemail", "max_seconds": 30}}})


@pytest.mark.parametrize("tz, now, is_open", [
    ("Europe/Rome", datetime(2025, 3, 3, 8, 30, tzinfo=UTC), True),     # 09:30 Rome, Monday
    ("Europe/Rome", datetime(2025, 3, 3, 7, 30, tzinfo=UTC), False),    # 08:30 Rome
    ("Europe/Rome", datetime(2025, 3, 3, 16, 0, tzinfo=UTC), False),    # 17:00 Rome: closed at the hour
    ("America/New_York", datetime(2025, 3, 3, 14, 0, tzinfo=UTC), True),   # 09:00 New York
    ("America/New_York", datetime(2025, 3, 3, 13, 59, tzinfo=UTC), False),
    ("Asia/Tokyo", datetime(2025, 3, 2, 23, 30, tzinfo=UTC), False),    # Monday 08:30 in Tokyo
    ("Asia/Tokyo", datetime(2025, 3, 3, 0, 30, tzinfo=UTC), True),      # Monday 09:30 in Tokyo, Sunday in UTC
    ("Europe/Rome", datetime(2025, 3, 8, 22, 59, tzinfo=UTC), True),    # Saturday 23:59 Rome, until 24:00
    # summer time: 09:30 in Rome is 07:30 UTC in July
    ("Europe/Rome", datetime(2025, 7, 7, 7, 30, tzinfo=UTC), True),
    ("Europe/Rome", datetime(2025, 3, 3, 10, 30, tzinfo=timezone(timedelta(hours=2))), True),  # any aware now
])
def test_hours_across_time_zones(tz: str, now: datetime, is_open: bool) -> None:
    t = start(_hours_flow(tz), ctx(now=now))
    assert isinstance(t.instructions[0], Enqueue if is_open else Voicemail), (tz, now)


def test_a_holiday_is_closed_in_the_local_date() -> None:
    f = _hours_flow("America/Los_Angeles", ["2025-03-03"])
    assert isinstance(start(f, ctx(now=datetime(2025, 3, 3, 18, 0, tzinfo=UTC))).instructions[0], Voicemail)
    # 10:00 in Los Angeles on the holiday (above) is closed; the Monday after, 10:00 in summer time, opens
    assert isinstance(start(f, ctx(now=datetime(2025, 3, 10, 17, 0, tzinfo=UTC))).instructions[0], Enqueue)


def test_the_context_needs_an_aware_time() -> None:
    with pytest.raises(ValidationError):
        FlowContext(now=datetime(2025, 1, 1, 9, 0))  # noqa: DTZ001 - the point


def test_branch_on_a_variable_or_a_contact_attribute() -> None:
    f = flow({"start": "b", "nodes": {
        "b": {"type": "branch", "on": "tier", "cases": [{"values": ["gold", "platinum"], "next": "vip"}],
              "default": "normal"},
        "vip": {"type": "queue", "queue_id": 9, "priority": 50}, "normal": {"type": "queue", "queue_id": 1}}})
    assert start(f, ctx(attributes={"tier": "Gold"})).instructions[0].queue_id == 9
    assert start(f, ctx(attributes={"tier": "bronze"})).instructions[0].queue_id == 1
    assert start(f, ctx()).instructions[0].queue_id == 1


def test_says_chain_before_the_question_and_a_caller_driven_loop_is_bounded() -> None:
    f = flow({"start": "a", "nodes": {
        "a": {"type": "say", "text": {"en": "One"}, "next": "b"},
        "b": {"type": "say", "text": {"en": "Two"}, "next": "m"},
        "m": {"type": "menu", "prompt": {"en": "1 to repeat, 2 for an agent"},
              "options": [{"key": "1", "label": {"en": "Repeat"}, "next": "a"},
                          {"key": "2", "label": {"en": "Agent"}, "next": "agent"}], "no_match": "agent"},
        "agent": {"type": "handoff"}}})
    t = start(f, ctx())
    assert kinds(t) == ["Say", "Say", "Ask"]
    for _ in range(100):  # a caller pressing "repeat" forever is sent on after MAX_VISITS rounds
        t = answer(f, t.state, Digits("1"), ctx())
        if t.finished:
            break
    assert t.finished and isinstance(t.instructions[-1], Handoff)


def test_a_broken_state_hangs_up_instead_of_crashing() -> None:
    f = flow()
    t = answer(f, FlowState(node="nowhere"), Digits("1"), ctx())
    assert t.finished and t.state.error and t.instructions == [Hangup(None)]
    t = answer(f, FlowState(node="welcome"), Digits("1"), ctx())  # a node that asks nothing
    assert t.finished and t.state.error


def test_answer_leaves_the_given_state_alone() -> None:
    f = flow()
    state = _at_menu(f)
    before = state.model_dump()
    answer(f, state, Digits("2"), ctx())
    assert state.model_dump() == before
