"""Guards a feature package adds to core actions (``threadline.actions.guards``): a registered guard of
sensitive contact actions is asked before a person changes a contact's attributes or identities or
merges contacts, and may refuse; the system (no actor) and harmless changes are not asked."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from sqlalchemy.ext.asyncio import AsyncSession
from tests.conftest import seed_basics

from threadline.actions import contacts as contact_actions
from threadline.actions import continuity, guards
from threadline.actions.permissions import Actor
from threadline.domain.errors import Conflict
from threadline.domain.users import Role


async def test_a_registered_guard_is_asked_before_sensitive_contact_actions(services, monkeypatch) -> None:
    ids = await seed_basics(services)
    asked: list[tuple[list[int], str]] = []
    locked: set[int] = set()

    async def guard(session: AsyncSession, contact_ids: Sequence[int], what: str) -> None:
        asked.append((list(contact_ids), what))
        if locked & set(contact_ids):
            raise Conflict(f"locked before {what}")

    monkeypatch.setitem(guards._sensitive, "test", guard)
    sup = Actor(ids["sup"], Role.SUPERVISOR, "Sup")
    async with services.db.transaction() as s:
        a = await contact_actions.create_contact(s, name="A", identities=[], attributes={})
        b = await contact_actions.create_contact(s, name="B", identities=[], attributes={})
    locked.add(a.id)
    async with services.db.transaction() as s:
        with pytest.raises(Conflict, match="changing the contact's attributes"):
            await contact_actions.update_contact(s, a.id, attributes={"plan": "gold"}, actor=sup)
        with pytest.raises(Conflict, match="phone numbers or e-mail"):
            await contact_actions.add_identity(s, a.id, kind="email", value="a@example.com", actor=sup)
        with pytest.raises(Conflict, match="merging contacts"):
            await continuity.merge_contacts(s, sup, b.id, a.id)
        assert asked[-1] == (sorted([a.id, b.id]), "merging contacts")
    n = len(asked)
    async with services.db.transaction() as s:
        await contact_actions.update_contact(s, a.id, name="A. Person", actor=sup)  # the name: not asked
        await contact_actions.update_contact(s, a.id, name="A. P.", attributes={}, actor=sup)  # nothing changes
        await contact_actions.update_contact(s, a.id, attributes={"plan": "gold"}, source="crm")  # the system
        await contact_actions.update_contact(s, b.id, attributes={"plan": "gold"}, actor=sup)  # not locked
    assert len(asked) == n + 1
    guards.register_sensitive("test", guard)  # registering again replaces: one guard, asked once
    assert list(guards.sensitive_guards()).count("test") == 1
