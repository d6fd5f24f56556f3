"""Integration packages a test installs through fake entry points (tests/plugins/)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

from fastapi import APIRouter, Depends
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from threadline.actions import contacts as contact_actions
from threadline.actions.permissions import Actor
from threadline.actions.scheduler import Claimed
from threadline.channels.base import Capabilities, ChannelAdapter, RawRequest
from threadline.domain.events import ContactCreated
from threadline.domain.messages import InboundMessage, OutboundMessage, SendReceipt, StatusUpdate
from threadline.loop import BackgroundLoop
from threadline.plugins import Host, Integration, PluginType, Published


class NoConfig(BaseModel):
    pass


class _Adapter(ChannelAdapter):
    Config = NoConfig

    def verify(self, req: RawRequest) -> None:
        return None

    def parse(self, req: RawRequest) -> list[InboundMessage | StatusUpdate]:
        return []

    async def send(self, msg: OutboundMessage) -> SendReceipt:
        return SendReceipt(provider_id="1")


def _kind(kind: str, title: str) -> type[ChannelAdapter]:
    return type(f"{kind.title()}Channel", (_Adapter,), {"kind": kind, "title": title})


PigeonChannel = _kind("pigeon", "Carrier pigeon")
RivalPigeonChannel = _kind("pigeon", "Another carrier pigeon")
EmailLookalike = _kind("email", "Email, but ours")
LegacyFaxChannel = _kind("fax", "Fax")


class AcmePhoneChannel(_Adapter):
    kind = "acme_phone"
    title = "Acme phone"
    capabilities = Capabilities(identity_kinds=("phone",), work_class="voice")


acme_phone = Integration(name="acme_phone", type=PluginType.TELEPHONY, title="Acme phone", adapters=(AcmePhoneChannel,))
pigeon = Integration(name="pigeon", type=PluginType.CHANNEL, title="Carrier pigeon", adapters=(PigeonChannel,))
rival = Integration(name="rival_pigeon", type=PluginType.CHANNEL, title="Rival", adapters=(RivalPigeonChannel,))
same_name = Integration(name="pigeon", type=PluginType.CRM, title="A CRM named like the pigeon")
lookalike = Integration(name="mail2", type=PluginType.CHANNEL, title="Mail 2", adapters=(EmailLookalike,))
# built without validation, as a careless package might: the registry validates again at load
bad_manifest = Integration.model_construct(name="Bad Name", type=PluginType.CHANNEL, title=" ", adapters=(),
                                           setup=None, migrations=None)
crm_with_adapter = Integration.model_construct(name="crm", type=PluginType.CRM, title="CRM",
                                               adapters=(PigeonChannel,), setup=None, migrations=None)
not_a_manifest = {"name": "dict", "type": "channel"}


# -- a third-party integration that uses its host: a route, a loop, a typed event subscription ----------

class ProbeLoop(BackgroundLoop):
    name = "probe-loop"

    def __init__(self) -> None:
        super().__init__(interval=60)
        self.ticked = asyncio.Event()
        self.stopped = False

    async def tick(self) -> float | None:
        self.ticked.set()
        return None

    async def on_stop(self) -> None:
        self.stopped = True


class NewContact(BaseModel):
    name: str


class Probe:
    """The runtime object ``setup`` returns (the host keeps it)."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.loop = ProbeLoop()
        self.created: list[tuple[int, int]] = []  # (contact id, seq) of every contact.created seen
        self.seen = asyncio.Event()
        self.jobs: list[tuple[str, dict[str, object]]] = []  # (key, payload) of every probe.ping job run
        self.job_ran = asyncio.Event()

    async def on_ping(self, session: AsyncSession, job: Claimed, now: datetime) -> None:
        self.jobs.append((job.key, dict(job.payload or {})))
        self.job_ran.set()

    def on_contact(self, published: Published[ContactCreated]) -> None:
        assert isinstance(published.event, ContactCreated)  # the parsed model, not a dict
        self.created.append((published.event.contact.id, published.seq))
        self.seen.set()


def setup_probe(host: Host) -> Probe:
    probe = Probe(host)
    router = APIRouter(prefix="/probe", tags=["probe"])

    @router.get("/me")
    async def me(actor: Actor = Depends(host.current_actor)) -> dict[str, object]:
        return {"user_id": actor.user_id, "integration": host.name}

    @router.post("/contacts", status_code=201)
    async def add_contact(body: NewContact, actor: Actor = Depends(host.current_actor)) -> dict[str, object]:
        row = await host.write(contact_actions.create_contact, name=body.name, identities=[])
        return {"id": row.id}

    @router.post("/ping", status_code=202)
    async def ping(actor: Actor = Depends(host.current_actor)) -> dict[str, object]:
        await host.schedule("probe.ping", actor.user_id, datetime.now(UTC), {"by": actor.name})
        return {}

    host.add_routes(router)
    host.add_loop(probe.loop)
    host.on_job("probe.ping", probe.on_ping)
    host.subscribe(ContactCreated, probe.on_contact)
    return probe


def setup_that_fails(host: Host) -> None:
    raise RuntimeError("the probe's licence key is missing")


probe = Integration(name="probe", type=PluginType.CRM, title="Probe", setup=setup_probe)
failing = Integration(name="failing", type=PluginType.BOT, title="Failing", setup=setup_that_fails)
notes = Integration(name="notes", type=PluginType.KB, title="Notes",
                    migrations=Path(__file__).parent / "notes_migrations")
