"""The inbound planners, pure: which contact a sender is (``plan_identities``) and which conversation a
message joins or starts (``place_messages``). The actions that apply them are tested through the inbox."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from threadline.domain.contacts import (
    IdentityKind,
    IdentityValue,
    KnownIdentity,
    MergeSuggestion,
    NewContact,
    SuggestionReason,
    plan_identities,
)
from threadline.domain.conversations import (
    Arrival,
    ConversationFacts,
    ConversationStatus,
    NewConversation,
    place_messages,
)
from threadline.domain.errors import ValidationFailed
from threadline.domain.messages import Sender

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
PHONE = IdentityValue(IdentityKind.PHONE, "+14155550100")
EMAIL = IdentityValue(IdentityKind.EMAIL, "ana@example.com")
OTHER = IdentityValue(IdentityKind.EMAIL, "bo@example.com")


# --- plan_identities -------------------------------------------------------------------------------------

def test_a_verified_identity_names_its_contact_and_writes_nothing() -> None:
    plan = plan_identities([Sender((PHONE,), name="Ana")], {PHONE: KnownIdentity(7, verified=True)},
                           names={7: "Ana"})
    assert [(p.contact, p.created, p.identity) for p in plan.picks] == [(7, False, PHONE)]
    assert plan.new_contacts == [] and plan.writes == [] and plan.suggestions == [] and plan.touched == set()


def test_an_unknown_sender_becomes_one_new_contact_even_twice_in_a_batch() -> None:
    plan = plan_identities([Sender((PHONE,), name="Ana"), Sender((PHONE,))], {})
    assert plan.new_contacts == ["Ana"]
    assert [(p.contact, p.created) for p in plan.picks] == [(NewContact(0), True), (NewContact(0), False)]
    assert [(w.identity, w.contact, w.verified, w.new) for w in plan.writes] == [(PHONE, NewContact(0), True, True)]
    assert plan.touched == {NewContact(0)}


def test_a_new_contact_takes_the_first_name_given_in_the_batch() -> None:
    plan = plan_identities([Sender((PHONE,)), Sender((PHONE,), name="Ana")], {})
    assert plan.new_contacts == ["Ana"]


def test_a_nameless_stored_contact_gets_the_senders_name_and_a_named_one_keeps_its_own() -> None:
    plan = plan_identities([Sender((PHONE,), name="Ana"), Sender((EMAIL,), name="Someone")],
                           {PHONE: KnownIdentity(1, True), EMAIL: KnownIdentity(2, True)}, names={1: "", 2: "Bo"})
    assert plan.names == {1: "Ana"} and plan.touched == {1}


def test_another_vouched_identity_is_attached_to_the_sender_when_nobody_owns_it() -> None:
    plan = plan_identities([Sender((PHONE, EMAIL))], {PHONE: KnownIdentity(1, True)})
    assert plan.picks[0].contact == 1
    assert [(w.identity, w.contact, w.verified, w.new) for w in plan.writes] == [(EMAIL, 1, True, True)]


def test_identities_of_two_contacts_merge_nothing_and_suggest_a_merge() -> None:
    plan = plan_identities([Sender((PHONE, EMAIL))], {PHONE: KnownIdentity(1, True), EMAIL: KnownIdentity(2, True)})
    assert plan.picks[0].contact == 1  # the channel's own address is the strongest
    assert plan.writes == []
    assert plan.suggestions == [MergeSuggestion(1, 2, SuggestionReason.CONFLICT, EMAIL)]
    assert plan.suggestions[0].text(1, 2) == ("email ana@example.com came with a message from contact #1 but "
                                              "belongs to contact #2")


def test_a_conflict_with_a_contact_created_in_the_batch_names_the_new_contact_not_a_placeholder() -> None:
    plan = plan_identities([Sender((PHONE,)), Sender((PHONE, EMAIL))], {EMAIL: KnownIdentity(2, True)})
    assert plan.picks[1].contact == NewContact(0)
    assert plan.suggestions == [MergeSuggestion(NewContact(0), 2, SuggestionReason.CONFLICT, EMAIL)]


def test_a_claim_never_decides_who_writes_an_unknown_one_is_kept_unverified() -> None:
    plan = plan_identities([Sender((PHONE,), claims=(EMAIL,))], {EMAIL: KnownIdentity(5, True)})
    assert plan.picks[0].contact == NewContact(0)  # the claimed address's owner is not the sender
    assert plan.suggestions == [MergeSuggestion(NewContact(0), 5, SuggestionReason.CLAIM_TAKEN, EMAIL)]
    assert plan.suggestions[0].text(9, 5) == "contact #9 gave email ana@example.com, which belongs to contact #5"
    plan = plan_identities([Sender((PHONE,), claims=(OTHER,))], {PHONE: KnownIdentity(1, True)})
    assert [(w.identity, w.contact, w.verified, w.new) for w in plan.writes] == [(OTHER, 1, False, True)]


def test_an_identity_only_claimed_goes_to_the_sender_a_channel_vouches_for_and_the_claimant_gets_a_suggestion(
) -> None:
    plan = plan_identities([Sender((EMAIL,))], {EMAIL: KnownIdentity(3, verified=False)})
    assert plan.picks[0].contact == NewContact(0)  # an unverified identity never decides who writes
    assert [(w.identity, w.contact, w.verified, w.new) for w in plan.writes] == [(EMAIL, NewContact(0), True, False)]
    assert plan.suggestions == [MergeSuggestion(NewContact(0), 3, SuggestionReason.CLAIM_VERIFIED, EMAIL)]
    assert plan.touched == {NewContact(0), 3}
    assert plan.suggestions[0].text(8, 3) == "email ana@example.com was claimed by contact #3 and then verified by a channel"


def test_an_unverified_identity_of_the_sender_itself_is_confirmed_without_a_suggestion() -> None:
    plan = plan_identities([Sender((PHONE, EMAIL))], {PHONE: KnownIdentity(1, True), EMAIL: KnownIdentity(1, False)})
    assert [(w.identity, w.contact, w.verified, w.new) for w in plan.writes] == [(EMAIL, 1, True, False)]
    assert plan.suggestions == []


def test_a_merged_contact_stands_for_the_one_it_was_merged_into() -> None:
    plan = plan_identities([Sender((PHONE, EMAIL))], {PHONE: KnownIdentity(1, True)}, survivors={1: 4})
    assert plan.picks[0].contact == 4
    assert [(w.identity, w.contact) for w in plan.writes] == [(EMAIL, 4)]


def test_a_sender_without_an_identity_is_refused() -> None:
    with pytest.raises(ValidationFailed):
        plan_identities([Sender(())], {})


# --- place_messages --------------------------------------------------------------------------------------

def _conv(cid: int, status: ConversationStatus = ConversationStatus.OPEN, *, contact: int = 1, channel: int | None = 10,
          identity: bool = True) -> ConversationFacts:
    return ConversationFacts(id=cid, contact_id=contact, status=status, last_channel_instance_id=channel,
                             has_last_identity=identity)


def test_a_customer_without_a_conversation_starts_one_in_the_given_queue() -> None:
    plan = place_messages([Arrival(contact_id=1, channel_id=10, queue_id=3)], {}, open_by_contact={}, now=NOW)
    assert plan.new == [NewConversation(0, 1, 3, 10)]
    (p,) = plan.placements
    assert p.is_new and p.touch and p.sets_last_identity and not p.reopen and not p.switched_channel


def test_two_messages_of_a_new_customer_in_a_batch_share_one_new_conversation() -> None:
    plan = place_messages([Arrival(1, 10), Arrival(1, 10)], {}, open_by_contact={}, now=NOW)
    assert len(plan.new) == 1 and [p.conversation for p in plan.placements] == [plan.new[0]] * 2


def test_a_message_joins_the_open_conversation_and_a_channel_change_is_shown() -> None:
    convs = {5: _conv(5)}
    same = place_messages([Arrival(1, 10)], convs, open_by_contact={1: 5}, now=NOW).placements[0]
    assert same.conversation == 5 and same.changes == () and not same.switched_channel
    other = place_messages([Arrival(1, 11), Arrival(1, 11)], convs, open_by_contact={1: 5}, now=NOW).placements
    assert other[0].changes == ("last_channel_instance_id",) and other[0].switched_channel
    assert other[1].changes == () and not other[1].switched_channel  # the batch already moved it


@pytest.mark.parametrize("status", [ConversationStatus.PENDING, ConversationStatus.SNOOZED])
def test_a_pending_or_snoozed_conversation_opens_again_once(status: ConversationStatus) -> None:
    convs = {5: ConversationFacts(5, 1, status, snoozed_until=NOW + timedelta(hours=1), last_channel_instance_id=10)}
    first, second = place_messages([Arrival(1, 10), Arrival(1, 10)], convs, open_by_contact={1: 5}, now=NOW).placements
    assert first.reopen and first.changes == ("status",)
    assert not second.reopen and second.changes == ()


def test_a_recently_resolved_conversation_reopens_within_the_window_a_bound_session_starts_anew() -> None:
    convs = {5: _conv(5, ConversationStatus.RESOLVED)}
    (p,) = place_messages([Arrival(1, 10)], convs, open_by_contact={}, recent_by_contact={1: 5}, now=NOW).placements
    assert p.conversation == 5 and p.reopen and p.changes == ("status",)
    plan = place_messages([Arrival(1, 10, bound_to=5)], convs, open_by_contact={}, recent_by_contact={1: 5}, now=NOW)
    assert plan.placements[0].is_new  # a web chat bound to a resolved conversation: the visitor rated it
    plan = place_messages([Arrival(1, 10)], convs, open_by_contact={}, now=NOW)  # outside the window
    assert plan.placements[0].is_new


def test_an_email_reply_joins_the_conversation_it_answers_and_reopens_it() -> None:
    convs = {5: _conv(5, ConversationStatus.RESOLVED), 6: _conv(6)}
    (p,) = place_messages([Arrival(1, 10, references=(99, 5))], convs, open_by_contact={1: 6}, now=NOW).placements
    assert p.conversation == 5 and p.reopen


def test_a_bound_session_joins_its_open_conversation() -> None:
    convs = {5: _conv(5), 6: _conv(6)}
    (p,) = place_messages([Arrival(1, 10, bound_to=5)], convs, open_by_contact={1: 6}, now=NOW).placements
    assert p.conversation == 5


def test_a_hint_never_moves_a_message_to_someone_elses_conversation() -> None:
    convs = {5: _conv(5, contact=2), 6: _conv(6)}
    (p,) = place_messages([Arrival(1, 10, references=(5,))], convs, open_by_contact={1: 6}, now=NOW).placements
    assert p.conversation == 6


def test_an_automatic_reply_is_recorded_quietly_where_it_belongs() -> None:
    convs = {5: _conv(5, ConversationStatus.RESOLVED), 6: _conv(6, identity=False)}
    (p,) = place_messages([Arrival(1, 10, automatic=True, references=(5,))], convs, open_by_contact={1: 6},
                          recent_by_contact={1: 5}, now=NOW).placements
    assert p.conversation == 5 and not p.reopen and not p.touch and p.changes == () and not p.sets_last_identity
    (p,) = place_messages([Arrival(1, 11, automatic=True)], convs, open_by_contact={1: 6}, now=NOW).placements
    assert p.conversation == 6 and not p.touch and not p.switched_channel
    assert p.sets_last_identity  # replies had nowhere to go yet


def test_an_automatic_reply_with_nowhere_to_go_starts_a_resolved_conversation_and_reopens_nothing() -> None:
    convs = {5: _conv(5, ConversationStatus.RESOLVED)}
    plan = place_messages([Arrival(1, 10, queue_id=2, automatic=True)], convs, open_by_contact={},
                          recent_by_contact={1: 5}, now=NOW)
    assert plan.new == [NewConversation(0, 1, 2, 10, resolved=True)]
    assert plan.placements[0].is_new and plan.placements[0].sets_last_identity and not plan.placements[0].touch
