"""Seed a demo workspace: people, teams, queues, a generic API channel, contacts and conversations."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from threadline.actions import channels as channel_actions
from threadline.actions import conversations as conv_actions
from threadline.actions import inbound as inbound_actions
from threadline.actions import users as user_actions
from threadline.db.repos import users as users_repo
from threadline.domain.access import Actor
from threadline.domain.contacts import IdentityKind, IdentityValue, normalise_identity
from threadline.domain.messages import InboundMessage, Sender
from threadline.domain.users import Role
from threadline.services import Services

DEMO_PASSWORD = "threadline-demo"
API_SECRET = "demo-api-channel-secret-change-me"
WEBCHAT_NAME = "Website chat"
WEBCHAT_IDENTITY_SECRET = "demo-identity-secret-change-me"

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
    demo_url: str | None = None  # the demo shop page with the web chat widget
    pbx_url: str | None = None  # the demo phone system's CTI events URL (Authorization: Bearer PBX_TOKEN)


async def seed(services: Services) -> DemoResult:
    logins = [(email, role, DEMO_PASSWORD) for email, _, role, *_ in PEOPLE]
    async with services.db.transaction(write=True) as session:
        if await users_repo.get_user_by_email(session, PEOPLE[0][0]) is not None:
            await seed_webchat(services, session)
            return DemoResult(False, logins, None, f"{services.settings.public_base_url}/demo",
                              await seed_pbx(services, session))
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
                msg = await inbound_actions.receive_inbound(
                    session, channel, InboundMessage(provider_id=f"demo-{i}-{j}", sender=sender, text=text))
            assert msg is not None
            if queue:
                await conv_actions.update_conversation(session, sup_actor, msg.conversation_id,
                                                       queue_id=queues[queue])
            if i == 0:
                await conv_actions.update_conversation(session, sup_actor, msg.conversation_id,
                                                       assignee_id=users["bruno@demo.threadline.dev"].id,
                                                       labels=["billing", "refund"], priority="high")
        await seed_webchat(services, session)
        pbx_url = await seed_pbx(services, session)
        await seed_canned(session, users[PEOPLE[0][0]].id)
    return DemoResult(True, logins, f"{services.settings.public_base_url}/hooks/{channel.key}",
                      f"{services.settings.public_base_url}/demo", pbx_url)


def _local_origins(base: str) -> list[str]:
    """The origin of the public URL, plus its localhost/127.0.0.1 twin (either may be typed in a browser)."""
    from urllib.parse import urlsplit

    u = urlsplit(base)
    port = f":{u.port}" if u.port else ""
    origins = [f"{u.scheme}://{u.hostname}{port}"]
    for host in ("127.0.0.1", "localhost"):
        if u.hostname in ("127.0.0.1", "localhost") and host != u.hostname:
            origins.append(f"{u.scheme}://{host}{port}")
    return origins


PBX_NAME = "Office phone system"
PBX_TOKEN = "demo-pbx-token-change-me-0123456789"  # a demo secret: the phone system posts it (Bearer)


async def seed_pbx(services: Services, session: AsyncSession) -> str:
    """The demo phone system (the generic CTI endpoint, docs/channels/voice.md): its events URL."""
    from threadline.db.repos import channels as channels_repo

    row = await channels_repo.get_channel_by_name(session, PBX_NAME)
    if row is None:
        queues = {q.name: q.id for q in await users_repo.list_queues(session)}
        row = await channel_actions.create_channel(session, services.box, kind="pbx", name=PBX_NAME,
                                                   default_queue_id=queues.get("general"),
                                                   config={"token": PBX_TOKEN})
    return f"{services.settings.public_base_url}/hooks/{row.key}/cti"


async def seed_webchat(services: Services, session: AsyncSession) -> None:
    """The demo web chat channel (also added to a demo workspace seeded before web chat existed)."""
    from threadline.db.repos import channels as channels_repo

    if await channels_repo.get_channel_by_name(session, WEBCHAT_NAME) is not None:
        return
    queues = {q.name: q.id for q in await users_repo.list_queues(session)}
    await channel_actions.create_channel(
        session, services.box, kind="webchat", name=WEBCHAT_NAME, default_queue_id=queues.get("general"),
        config={"allowed_origins": _local_origins(services.settings.public_base_url),
                "title": "Northwind Coffee", "greeting": "Hi there! Questions about an order, a subscription "
                "or our coffee? We're here to help.", "colour": "#7c3aed",
                "prechat_fields": ["name", "email", "topic"], "prechat_required": ["name"],
                "topics": [{"label": "Orders & delivery", "queue_id": queues.get("general")},
                           {"label": "Billing", "queue_id": queues.get("billing")},
                           {"label": "Soporte en español", "queue_id": queues.get("soporte-es")}],
                "identity_secret": WEBCHAT_IDENTITY_SECRET,
                "calls": "video"})  # the demo shop's visitors can call (voice or video) from the widget


CANNED = [
    ("hello", "Greeting", "Hi {{name}}, thanks for reaching out! Let me look into this for you."),
    ("refund", "Refund issued", "I have issued the refund; it shows on your statement within 3-5 business days."),
    ("bye", "Closing", "Glad I could help. Have a great day!"),
]


async def seed_canned(session: AsyncSession, admin_id: int) -> None:
    """Canned responses for the desk's composer (type /hello)."""
    from threadline.actions import canned as canned_actions

    admin = Actor(user_id=admin_id, role=Role.ADMIN, name="Demo")
    for shortcut, title, text in CANNED:
        await canned_actions.create_canned(session, admin, shortcut=shortcut, title=title, text=text)
