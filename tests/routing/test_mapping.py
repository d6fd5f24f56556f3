"""From admins' settings and conversations to the engine's inputs (pure), and the validation of
routing settings against every queue and the roster (database)."""

from __future__ import annotations

import pytest

from tests.conftest import seed_basics
from threadline.actions import routing as routing_actions
from threadline.actions.permissions import Actor
from threadline.db.repos import routing as routing_repo
from threadline.domain.errors import PermissionDenied, ValidationFailed
from threadline.domain.queues import QueueSettings
from threadline.domain.routing import RoutingEngine, validate_routing
from threadline.domain.routing.settings import QueueRouting, channel_class, queue_config, task_for
from threadline.domain.users import Role
from threadline.workers.router import work_class


def test_queue_settings_and_routing_map_to_the_engine_config() -> None:
    qs = QueueSettings.model_validate({"skills": {"billing": 3}, "priority": 5,
                                       "sla": {"answer_seconds": 30, "service_level_percent": 90,
                                               "near_breach_ratio": 0.5}})
    routing = QueueRouting.model_validate({"steps": [{"after_seconds": 30, "max_level": 2},
                                                     {"after_seconds": 60, "add_teams": [7]}],
                                           "offer_timeout_seconds": 15, "wrap_up_seconds": 45})
    cfg = queue_config(qs, routing)
    assert cfg.skills == {"billing": 3} and cfg.priority == 5
    assert (cfg.sla.threshold_seconds, cfg.sla.target_percent, cfg.sla.near_breach_ratio) == (30.0, 90.0, 0.5)
    assert (cfg.offer_timeout_seconds, cfg.wrap_up_seconds) == (15, 45)
    assert cfg.steps[1].add_teams == ["7"]  # team ids, as the engine's team names
    assert [b.attribute for b in cfg.boosts] == ["vip"]  # the default boost
    RoutingEngine({1: cfg})  # the engine accepts it


@pytest.mark.parametrize(("kind", "expected"), [
    ("email", "email"), ("webchat", "chat"), ("api", "messaging"), ("twilio", "messaging"),
    ("twilio_whatsapp", "messaging"), ("whatsapp", "messaging"), ("telegram", "messaging"),
    ("messenger", "messaging"), ("instagram", "messaging"), ("voice", "messaging"), (None, "messaging"),
])
def test_the_work_class_is_what_the_channel_adapter_declares(kind: str | None, expected: str) -> None:
    assert work_class(kind) == expected  # a kind no adapter claims (no voice adapter yet) is messaging


def test_a_channel_class_attribute_overrides_the_adapters_work_class() -> None:
    assert channel_class("messaging", {"channel_class": "voice"}) == "voice"
    assert channel_class("email", {"channel_class": "bogus"}) == "email"
    assert channel_class("chat", None) == "chat"


def test_a_plug_in_adapter_routes_as_the_work_class_it_declares(monkeypatch: pytest.MonkeyPatch) -> None:
    """A voice channel from an installed integration package is routed as voice without the core naming
    its kind (tests/plugins/fakes.py: acme_phone, installed through a fake entry point)."""
    from importlib.metadata import EntryPoint

    from threadline.plugins import registry

    monkeypatch.setattr(registry, "entry_points", lambda group: [
        EntryPoint("acme_phone", "tests.plugins.fakes:acme_phone", group)] if group == registry.GROUP else [])
    registry.reset()
    try:
        assert work_class("acme_phone") == "voice"
    finally:
        monkeypatch.undo()
        registry.reset()


def test_a_conversation_becomes_a_task_with_vip_language_skills_and_sticky_agent() -> None:
    qs = QueueSettings(language="en")
    routing = QueueRouting(sticky_seconds=600)
    task = task_for(conversation_id=9, queue_id=1, work_class="chat", priority="high",
                    conversation_attributes={"skills": {"spanish": 4, "bad": 9}},
                    contact_attributes={"vip": True, "language": "es", "nested": {"x": 1}},
                    enqueued_at=100.0, queue_settings=qs, routing=routing, last_agent_id=42)
    assert (task.id, task.channel, task.queue_id, task.enqueued_at) == (9, "chat", 1, 100.0)
    assert task.language == "es" and task.priority == 10 and task.skills == {"spanish": 4}
    assert task.attributes == {"vip": True, "language": "es"}
    assert (task.preferred_agent_id, task.sticky_until, task.preferred_only) == (42, 700.0, False)
    plain = task_for(conversation_id=10, queue_id=1, work_class="messaging", priority="normal", conversation_attributes={},
                     contact_attributes={}, enqueued_at=5.0, queue_settings=qs, routing=QueueRouting(),
                     last_agent_id=42)
    assert plain.language == "en" and plain.preferred_agent_id is None  # queue language; no sticky window
    # the vip boost raises it in the engine
    eng = RoutingEngine({1: queue_config(qs, QueueRouting(language_required=False))})
    eng.enqueue(plain, 6.0)
    eng.enqueue(task.model_copy(update={"priority": 0, "preferred_agent_id": None, "sticky_until": None}), 6.0)
    assert [p.task_id for p in eng.positions(1, 6.0)] == [9, 10]


def test_routing_settings_refuse_bad_steps_with_a_message() -> None:
    with pytest.raises(ValueError, match="changes nothing"):
        QueueRouting.model_validate({"steps": [{"after_seconds": 10}]})
    with pytest.raises(ValueError, match="increasing"):
        QueueRouting.model_validate({"steps": [{"after_seconds": 60, "max_level": 2},
                                               {"after_seconds": 30, "max_level": 1}]})
    report = validate_routing({1: queue_config(QueueSettings(), QueueRouting.model_validate(
        {"steps": [{"after_seconds": 5, "overflow_to": 2}]})), 2: queue_config(QueueSettings(), QueueRouting.model_validate(
            {"steps": [{"after_seconds": 5, "overflow_to": 1}]}))})
    assert not report.ok and "overflow cycle" in report.error_text()


async def test_check_queue_routing_against_all_queues_and_the_roster(services) -> None:
    ids = await seed_basics(services)
    admin = Actor(user_id=ids["admin"], role=Role.ADMIN)
    async with services.db.transaction() as s:
        with pytest.raises(ValidationFailed, match="does not exist"):
            await routing_actions.check_queue_routing(s, ids["general"], {"steps": [
                {"after_seconds": 5, "overflow_to": 999}]})
        with pytest.raises(ValidationFailed, match="routing.steps.0.max_level"):
            await routing_actions.check_queue_routing(s, ids["general"], {"steps": [
                {"after_seconds": 5, "max_level": 9}]})
        with pytest.raises(ValidationFailed, match="skill .x.: a minimum level"):
            await routing_actions.check_queue_routing(s, ids["general"], {}, {"skills": {"x": 7}})
        # bob (billing 5) is the only agent of billing: level 5 matches, a skill nobody has does not
        _, report = await routing_actions.check_queue_routing(s, ids["billing"], {}, {"skills": {"billing": 5}})
        assert report.ok and not [w for w in report.warnings if w.queue_id == ids["billing"]]
        with pytest.raises(ValidationFailed, match="can never be matched"):
            await routing_actions.set_queue_routing(s, admin, ids["billing"], {}, settings={"skills": {"french": 2}})
        # a step that relaxes the requirement makes it acceptable, with a warning saying when
        warnings = await routing_actions.set_queue_routing(
            s, admin, ids["billing"], {"steps": [{"after_seconds": 60, "ignore_skills": True}]},
            settings={"skills": {"french": 2}})
        assert warnings and "after 60 s" in warnings[0]
        with pytest.raises(PermissionDenied):
            await routing_actions.set_queue_routing(s, Actor(user_id=ids["sup"], role=Role.SUPERVISOR),
                                                    ids["billing"], {})
        [billing] = [q for q in await routing_repo.queues(s) if q.id == ids["billing"]]
        assert billing.routing["steps"][0]["ignore_skills"] is True


def test_an_account_owner_set_on_the_contact_is_offered_first_even_without_sticky_routing() -> None:
    qs = QueueSettings(language="en")
    task = task_for(conversation_id=11, queue_id=1, work_class="messaging", priority="normal", conversation_attributes={},
                    contact_attributes={"preferred_agent_id": 7}, enqueued_at=10.0, queue_settings=qs,
                    routing=QueueRouting(), last_agent_id=42)
    assert (task.preferred_agent_id, task.sticky_until) == (7, 70.0)  # the owner, over the last agent
    ignored = task_for(conversation_id=12, queue_id=1, work_class="messaging", priority="normal", conversation_attributes={},
                       contact_attributes={"preferred_agent_id": "7"}, enqueued_at=10.0, queue_settings=qs,
                       routing=QueueRouting(), last_agent_id=None)
    assert ignored.preferred_agent_id is None  # not an agent id
