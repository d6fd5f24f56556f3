"""The SQL translation of the access rule (db/repos/access.py) answers exactly as the rule in memory
(domain/access.py ``Visibility.allows``): lists, counts and contact search filter the same conversations
that a single read lets through."""

from __future__ import annotations

from itertools import product

from threadline.actions import users as user_actions
from threadline.db.models import ContactRow, ConversationRow
from threadline.db.repos import contacts as contacts_repo
from threadline.db.repos import conversations as conv_repo
from threadline.db.repos import desk as desk_repo
from threadline.domain.access import Actor
from threadline.domain.users import Role
from threadline.services import Services


async def test_lists_filter_the_conversations_the_rule_allows(services: Services) -> None:
    async with services.db.transaction() as s:
        team = await user_actions.create_team(s, "Support")
        other_team = await user_actions.create_team(s, "Sales")
        q1 = await user_actions.create_queue(s, "general", {})
        q2 = await user_actions.create_queue(s, "billing", {})
        me = await user_actions.create_user(s, email="me@example.com", name="Me", password="pw-0123456789",
                                            queue_ids=[q1.id], team_ids=[team.id])
        other = await user_actions.create_user(s, email="o@example.com", name="O", password="pw-0123456789")
        contacts = []
        # every placement: assignee (me, someone else, nobody) x queue (mine, not mine, none) x team (...)
        for assignee, queue, team_id in product((me.id, other.id, None), (q1.id, q2.id, None),
                                                (team.id, other_team.id, None)):
            contact = ContactRow(name=f"c{len(contacts)}")
            s.add(contact)
            await s.flush()
            contacts.append(contact.id)
            s.add(ConversationRow(contact_id=contact.id, assignee_id=assignee, queue_id=queue, team_id=team_id))
        lonely = ContactRow(name="no conversation yet")
        s.add(lonely)
    actors = [Actor(user_id=me.id, role=Role.AGENT, queue_ids=[q1.id], team_ids=[team.id]),
              Actor(user_id=other.id, role=Role.AGENT),
              Actor(user_id=me.id, role=Role.SUPERVISOR)]
    async with services.db.transaction(write=False) as s:
        everything, _ = await conv_repo.list_conversations(s, conv_repo.ConversationFilter(), None, 100)
        assert len(everything) == 27
        for actor in actors:
            vis = actor.visibility
            expected = {c.id for c in everything if vis.allows(c)}
            flt = conv_repo.ConversationFilter(visible_to=vis)
            listed, _ = await conv_repo.list_conversations(s, flt, None, 100)
            assert {c.id for c in listed} == expected
            searched, _ = await desk_repo.search_conversations(s, flt, None, 100)
            assert {c.id for c in searched} == expected
            assert await desk_repo.count_conversations(s, flt) == len(expected)
            found, _ = await contacts_repo.search_contacts(s, None, None, 100, vis)
            seen_contacts = {c.contact_id for c in everything if vis.allows(c)} | {lonely.id}
            assert {c.id for c in found} == seen_contacts
