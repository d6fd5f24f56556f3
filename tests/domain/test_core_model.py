"""Pure domain rules: identities, conversation status, delivery status, presence, queues, events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from threadline.domain.contacts import Contact, IdentityKind, choose_contact, normalise_identity
from threadline.domain.conversations import Conversation, ConversationStatus, normalise_labels
from threadline.domain.errors import InvalidTransition, ValidationFailed
from threadline.domain.events import EVENT_NAMES, parse_event
from threadline.domain.messages import DeliveryStatus, advance_status
from threadline.domain.queues import BusinessHours, QueueSettings
from threadline.domain.users import Presence, Role, User, normalise_skills, parse_skill_spec

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize("raw", ["+1 (415) 555-0100", "+14155550100", "tel:+1-415-555-0100", "whatsapp:+14155550100"])
def test_phone_numbers_normalise_to_one_e164(raw: str) -> None:
    assert normalise_identity("phone", raw).value == "+14155550100"


@pytest.mark.parametrize("raw", ["12", "not a number", "+999999999999999999999"])
def test_bad_phone_numbers_are_refused_with_a_message(raw: str) -> None:
    with pytest.raises(ValidationFailed) as exc:
        normalise_identity("phone", raw)
    assert "phone" in exc.value.message


def test_emails_are_case_folded_and_checked() -> None:
    assert normalise_identity("email", "  Maria.Rossi@Example.COM ").value == "maria.rossi@example.com"
    with pytest.raises(ValidationFailed):
        normalise_identity("email", "maria@")
    with pytest.raises(ValidationFailed):
        normalise_identity("pigeon", "x")


def test_handles_need_a_scope_and_keys_differ_by_scope() -> None:
    with pytest.raises(ValidationFailed):
        normalise_identity("handle", "123")
    a = normalise_identity("handle", "123", "1")
    b = normalise_identity("handle", "123", "2")
    assert a.key != b.key


def test_contact_identities_are_unique_and_name_falls_back() -> None:
    c = Contact()
    email = normalise_identity(IdentityKind.EMAIL, "a@b.co")
    assert c.add_identity(email) is True
    assert c.add_identity(email) is False
    assert c.display_name() == "a@b.co"


def test_choose_contact_never_merges_two_owners() -> None:
    e = normalise_identity("email", "a@b.co")
    p = normalise_identity("phone", "+14155550100")
    assert choose_contact({e: None, p: None}) is None
    assert choose_contact({e: 3, p: None}) == 3
    assert choose_contact({e: 3, p: 4}) == "conflict"


def test_conversation_status_machine() -> None:
    conv = Conversation(contact_id=1)
    assert conv.change_status("resolved", NOW) is True
    assert conv.resolved_at == NOW
    with pytest.raises(InvalidTransition):
        conv.change_status("pending", NOW)
    assert conv.on_customer_message(NOW) is True
    assert conv.status is ConversationStatus.OPEN and conv.resolved_at is None
    assert conv.change_status("open", NOW) is False
    with pytest.raises(ValidationFailed):
        conv.change_status("snoozed", NOW, NOW - timedelta(minutes=1))
    conv.change_status("snoozed", NOW, NOW + timedelta(hours=1))
    assert conv.wake_if_due(NOW) is False
    assert conv.wake_if_due(NOW + timedelta(hours=2)) is True
    with pytest.raises(ValidationFailed):
        conv.change_status("closed", NOW)


def test_labels_are_normalised_and_checked() -> None:
    assert normalise_labels(["Billing", "billing", " VIP "]) == ["billing", "vip"]
    with pytest.raises(ValidationFailed):
        normalise_labels(["<script>"])


@pytest.mark.parametrize(
    ("current", "new", "expected"),
    [
        (None, DeliveryStatus.QUEUED, DeliveryStatus.QUEUED),
        (DeliveryStatus.QUEUED, DeliveryStatus.SENT, DeliveryStatus.SENT),
        (DeliveryStatus.DELIVERED, DeliveryStatus.SENT, None),
        (DeliveryStatus.READ, DeliveryStatus.DELIVERED, None),
        (DeliveryStatus.SENT, DeliveryStatus.FAILED, DeliveryStatus.FAILED),
        (DeliveryStatus.DELIVERED, DeliveryStatus.FAILED, None),
        (DeliveryStatus.FAILED, DeliveryStatus.READ, DeliveryStatus.READ),
        (DeliveryStatus.READ, DeliveryStatus.READ, None),
    ],
)
def test_delivery_status_never_moves_backwards(current, new, expected) -> None:  # type: ignore[no-untyped-def]
    assert advance_status(current, new) == expected


def test_presence_needs_a_reason_for_a_break_and_is_recorded() -> None:
    user = User(email="a@b.co", name="A")
    with pytest.raises(ValidationFailed):
        user.set_presence("break", NOW)
    change = user.set_presence("break", NOW, "lunch")
    assert change is not None and change.status is Presence.BREAK and change.reason == "lunch"
    assert user.set_presence("break", NOW, "lunch") is None
    assert user.set_presence("available", NOW, "ignored").reason == ""  # type: ignore[union-attr]
    assert user.set_presence("away", NOW, "missed offers").reason == "missed offers"  # type: ignore[union-attr]
    assert user.set_presence("offline", NOW, "ignored").reason == ""  # type: ignore[union-attr]
    with pytest.raises(ValidationFailed):
        user.set_presence("sleeping", NOW)


def test_skills_have_levels_one_to_five() -> None:
    assert parse_skill_spec("Billing:4, spanish:5,general") == {"billing": 4, "spanish": 5, "general": 3}
    with pytest.raises(ValidationFailed):
        normalise_skills({"billing": 6})
    with pytest.raises(ValidationFailed):
        parse_skill_spec("billing:high")
    assert Role.ADMIN.at_least(Role.SUPERVISOR) and not Role.AGENT.at_least(Role.SUPERVISOR)


def test_business_hours_in_the_queue_time_zone() -> None:
    hours = BusinessHours(timezone="Europe/Madrid", weekly={"tue": [("09:00", "18:00")]},
                          closed_dates=[datetime(2026, 12, 25).date()])
    assert hours.is_open(datetime(2026, 11, 24, 8, 30, tzinfo=UTC))  # 09:30 in Madrid, a Tuesday
    assert not hours.is_open(datetime(2026, 11, 24, 7, 30, tzinfo=UTC))  # 08:30 in Madrid
    assert not hours.is_open(datetime(2026, 11, 25, 10, 0, tzinfo=UTC))  # Wednesday: no hours
    assert BusinessHours().is_open(NOW)
    with pytest.raises(ValueError, match="time zone"):
        BusinessHours(timezone="Mars/Olympus")
    with pytest.raises(ValueError, match="after the start"):
        BusinessHours(weekly={"mon": [("18:00", "09:00")]})
    with pytest.raises(ValueError):
        QueueSettings(skills={"billing": 9})


def test_events_round_trip_by_dotted_name() -> None:
    assert "message.created" in EVENT_NAMES and "conversation.updated" in EVENT_NAMES
    event = parse_event({"name": "user.presence_changed", "user_id": 3, "status": "away"})
    assert event.name == "user.presence_changed"
    with pytest.raises(ValueError):
        parse_event({"name": "user.presence_changed", "user_id": 3, "status": "away", "extra": 1})
