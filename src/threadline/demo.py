"""Seed a demo workspace: people, teams, queues, a generic API channel, contacts and conversations."""

from __future__ import annotations

from dataclasses import dataclass

from threadline.actions import channels as channel_actions
from threadline.actions import conversations as conv_actions
from threadline.actions import messages as message_actions
from threadline.actions import users as user_actions
from threadline.actions.permissions import Actor
from threadline.db.repos import users as users_repo
from threadline.domain.contacts import IdentityKind, IdentityValue, normalise_identity
from threadline.domain.messages import InboundMessage, Sender
from threadline.domain.users import Role
from threadline.services import Services

DEMO_PASSWORD = "threadline-demo"
API_SECRET = "demo-api-channel-secret-change-me"

PEOPLE = [
    ("admin@demo.threadline.dev", "Ada Admin", "admin", {}, ["en"], [], []),
    ("supervisor@demo.threadline.dev", "Sam Supervisor", "supervisor", {"general": 5, "billing": 4}, ["en", "es"],
     ["Support"], ["general", "billing", "soporte-es"]),
    ("alice@demo.threadline.dev", "Alice Agent", "agent", {"general": 4, "billing": 2}, ["en"],
     ["Support"], ["general", "billing"]),
    ("bruno@demo.threadline.dev", "Bruno Billing", "agent", {"billing": 5, "general": 2}, ["en", "it"],
     ["Billing"], ["billing"]),
    ("carmen@demo.threadline.dev", "Carmen Soporte", "agent", {"general": 3, "spanish": 5}, ["es", "en"],
     ["Support"], ["soporte-es", "general"]),
]

QUEUES = [
    ("general", "Support", {"skills": {"general": 1}, "sla": {"answer_seconds": 60}}),
    ("billing", "Billing", {"skills": {"billing": 3}, "priority": 10, "sla": {"answer_seconds": 30}}),
    ("soporte-es", "Support", {"skills": {"spanish": 3}, "language": "es",
                                "hours": {"timezone": "Europe/Madrid",
                                          "weekly": {d: [["09:00", "19:00"]] for d in ("mon", "tue", "wed",
                                                                                        "thu", "fri")}}}),
]

CONVERSATIONS = [
    ("ext-1001", "Maria Rossi", "maria.rossi@example.com", "+39 06 1234 5678",
     ["Hi! I was charged twice for my March invoice.", "Invoice number INV-2031."], "billing"),
    ("ext-1002", "John Smith", "john@example.com", "+1 415 555 0100",
     ["My order #1234 has not arrived yet, can you check?"], None),
    ("ext-1003", "Lucía García", "lucia@example.es", "+34 612 345 678",
     ["Hola, no puedo acceder a mi cuenta desde ayer."], "soporte-es"),
]


@dataclass
class DemoResult:
    created: bool
    logins: list[tuple[str, str, str]]
    api_channel_url: str | None


async def seed(services: Services) -> DemoResult:
    logins = [(email, role, DEMO_PASSWORD) for email, _, role, *_ in PEOPLE]
    async with services.db.transaction(write=True) as session:
        if await users_repo.get_user_by_email(session, PEOPLE[0][0]) is not None:
            return DemoResult(False, logins, None)
        teams = {name: (await user_actions.create_team(session, name)).id for name in ("Support", "Billing")}
        queues = {}
        for name, team, settings in QUEUES:
            queues[name] = (await user_actions.create_queue(session, name, settings, teams[team])).id
        users = {}
        for email, name, role, skills, langs, team_names, queue_names in PEOPLE:
            user = await user_actions.create_user(
                session, email=email, name=name, role=role, password=DEMO_PASSWORD, skills=skills,
                languages=langs, team_ids=[teams[t] for t in team_names], queue_ids=[queues[q] for q in queue_names])
            users[email] = user
        channel = await channel_actions.create_channel(
            session, services.box, kind="api", name="Website API", default_queue_id=queues["general"],
            config={"secret": API_SECRET, "webhook_url": None})
        sup = users["supervisor@demo.threadline.dev"]
        sup_actor = Actor(user_id=sup.id, role=Role.SUPERVISOR, name=sup.name)
        for i, (ext_id, name, email, phone, texts, queue) in enumerate(CONVERSATIONS):
            sender = Sender(identities=(IdentityValue(IdentityKind.HANDLE, ext_id, str(channel.id)),
                                        normalise_identity("email", email), normalise_identity("phone", phone)),
                            name=name)
            msg = None
            for j, text in enumerate(texts):
                msg = await message_actions.receive_inbound(
                    session, channel, InboundMessage(provider_id=f"demo-{i}-{j}", sender=sender, text=text))
            assert msg is not None
            if queue:
                await conv_actions.update_conversation(session, sup_actor, msg.conversation_id,
                                                       queue_id=queues[queue])
            if i == 0:
                await conv_actions.update_conversation(session, sup_actor, msg.conversation_id,
                                                       assignee_id=users["bruno@demo.threadline.dev"].id,
                                                       labels=["billing", "refund"], priority="high")
    return DemoResult(True, logins, f"{services.settings.public_base_url}/hooks/{channel.key}")
