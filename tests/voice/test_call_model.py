"""The pure call model: moves allowed and refused, provider order and repeats, the cause of an end,
the timeline line in three languages, and what a queued caller hears."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from threadline.voice.domain.calls import (
    CallFacts,
    CallState,
    Direction,
    EndCause,
    announcement,
    duration,
    timeline_text,
)

T0 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_a_call_moves_forward_only_and_late_events_change_nothing() -> None:
    c = CallFacts(CallState.RINGING, started_at=T0).move(CallState.IN_FLOW, at(1), seq=0)
    c = c.move(CallState.QUEUED, at(30), seq=1)
    assert c.enqueued_at == at(30)
    c = c.move(CallState.CONNECTED, at(95), seq=2)
    assert c.answered_at == at(95) and c.wait_seconds == 65
    assert c.move(CallState.RINGING, at(96)).state is CallState.CONNECTED  # a late "ringing"
    assert not c.fresh(2) and not c.fresh(1) and c.fresh(3) and c.fresh(None)
    held = c.move(CallState.ON_HOLD, at(100)).move(CallState.CONNECTED, at(110))
    assert held.answered_at == at(95)  # hold does not restart the talk time


@pytest.mark.parametrize(("state", "answered", "cause"), [
    (CallState.QUEUED, False, EndCause.ABANDONED),
    (CallState.OFFERED, False, EndCause.ABANDONED),
    (CallState.IN_FLOW, False, EndCause.SELF_SERVED),
    (CallState.VOICEMAIL, False, EndCause.VOICEMAIL),
    (CallState.CONNECTED, True, EndCause.COMPLETED),
])
def test_the_cause_of_an_end_follows_from_where_the_call_was(state: CallState, answered: bool, cause: EndCause) -> None:
    c = CallFacts(state, started_at=T0, enqueued_at=T0, answered_at=at(5) if answered else None)
    ended = c.hang_up(at(60))
    assert ended.state is CallState.ENDED and ended.end_cause is cause
    assert ended.hang_up(at(90)) == ended  # a second hang-up changes nothing


def test_a_caller_who_asked_for_a_callback_did_not_abandon() -> None:
    c = CallFacts(CallState.QUEUED, started_at=T0, enqueued_at=T0, callback=True).hang_up(at(40))
    assert c.end_cause is EndCause.CALLBACK and not c.abandoned
    assert timeline_text(c, "+34600111222") == "Callback requested after waiting 40 s"


def test_the_timeline_line_says_how_the_call_went_in_the_agents_language() -> None:
    answered = CallFacts(CallState.ENDED, started_at=T0, enqueued_at=at(10), answered_at=at(20), ended_at=at(272),
                         end_cause=EndCause.COMPLETED, agent_name="Alice")
    assert timeline_text(answered, "+1") == "Call, 4 min 12 s, answered by Alice"
    assert timeline_text(answered, "+1", "es") == "Llamada, 4 min 12 s, atendida por Alice"
    assert timeline_text(answered, "+1", "it") == "Chiamata, 4 min 12 s, risposta da Alice"
    missed = CallFacts(CallState.ENDED, started_at=T0, enqueued_at=at(5), ended_at=at(70), end_cause=EndCause.ABANDONED)
    assert timeline_text(missed, "+1") == "Missed call (hung up after waiting 1 min 5 s)"
    vm = CallFacts(CallState.ENDED, started_at=T0, ended_at=at(50), end_cause=EndCause.VOICEMAIL, voicemail_seconds=42)
    assert timeline_text(vm, "+1") == "Voicemail 0:42"
    ringing = CallFacts(CallState.RINGING, direction=Direction.OUTBOUND)
    assert timeline_text(ringing, "+34600111222") == "Outgoing call to +34600111222"
    assert duration(3725) == "1 h 2 min" and duration(60) == "1 min"


def test_a_queued_caller_hears_their_place_and_a_rounded_wait() -> None:
    assert announcement(3, 200) == ["You are number 3 in the queue.", "Your estimated wait is about 4 minutes."]
    assert announcement(1, 20, "es") == ["Usted es el número 1 en la cola.", "Su espera es de menos de un minuto."]
    assert announcement(2, 61, "it")[1] == "L'attesa stimata è di circa 2 minuti."
    assert announcement(2, None) == ["You are number 2 in the queue."]  # nobody logged in: no promise


async def test_a_sensitive_capture_is_masked_in_the_stored_flow_state(monkeypatch: pytest.MonkeyPatch) -> None:
    """A card number taken by a ``sensitive`` collect never reaches the stored flow state."""
    from types import SimpleNamespace

    from threadline.flows import domain as flow
    from threadline.voice import actions

    definition = flow.FlowDefinition.model_validate({"start": "card", "nodes": {
        "card": {"type": "collect", "prompt": {"en": "Card number"}, "attribute": "card", "min_digits": 12,
                 "max_digits": 19, "validator": "luhn", "sensitive": True, "next": "bye", "fail": "bye"},
        "bye": {"type": "hangup"}}})
    call = SimpleNamespace(conversation_id=1, contact_id=None, locale="en", state="in_flow", message_id=None,
                           details={}, flow_state=flow.FlowState(node="card", locale="en").model_dump(mode="json"))

    async def no_conversation(session: object, cid: int, for_update: bool = False) -> None:
        return None

    monkeypatch.setattr(actions.conversation_repo, "get_conversation", no_conversation)
    turn = await actions.run_flow(None, call, definition, flow.Digits("4111111111111111"), T0)  # type: ignore[arg-type]
    assert turn.hangup is not None  # the card was taken (Luhn-valid) and the flow went on
    assert call.flow_state["variables"]["card"] == "•••"
    assert "4111111111111111" not in str(call.flow_state)
