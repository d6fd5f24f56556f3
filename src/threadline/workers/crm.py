"""CRM lookup: enrich new contacts from the business's CRM, never blocking anything.

When ``THREADLINE_CRM_LOOKUP_URL`` is set, every ``contact.created`` event makes the leader POST the new
contact to that URL, signed like Threadline's webhooks (``X-Threadline-Timestamp`` and
``X-Threadline-Signature: sha256=HMAC(secret, "{timestamp}.{body}")``). The CRM answers within
``crm_timeout_seconds`` with JSON such as::

    {"attributes": {"tier": "gold", "vip": true, "preferred_agent_id": 7},
     "external_id": "0015g00000XyZ", "link": "https://crm.example.com/accounts/0015g00000XyZ"}

The attributes are merged into the contact (routing reads ``vip``, ``language`` and
``preferred_agent_id``, the account owner offered first); the external id and link are kept as attributes too, and the
lookup appears in the customer's journey. A slow, failing or absent CRM only means no enrichment: the
conversation is already stored and routed, so nothing waits for it. Lookups are best-effort (a lookup
lost in a restart is not retried).
"""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import structlog

from threadline.actions import contacts as contact_actions
from threadline.actions import continuity as continuity_actions
from threadline.actions.contacts import RESERVED_ATTRIBUTES
from threadline.bus.typed import TypedSubscriptions
from threadline.db.leader import LeaderLock
from threadline.db.session import Database
from threadline.domain.events import ContactCreated, ContactView
from threadline.domain.stream import Published
from threadline.loop import BackgroundLoop
from threadline.metrics import CRM_LOOKUPS
from threadline.security import sign

log = structlog.get_logger(__name__)
MAX_ATTRIBUTES = 50


class CrmLookupWorker(BackgroundLoop):
    name = "crm-lookup"

    def __init__(self, db: Database, events: TypedSubscriptions, http: httpx.AsyncClient, *, url: str, secret: str,
                 timeout: float = 3.0) -> None:
        super().__init__(interval=5.0)
        self.db = db
        self.http = http
        self.url = url
        self.secret = secret
        self.timeout = timeout
        self.leader = LeaderLock(db, "crm")
        self.pending: asyncio.Queue[ContactView] = asyncio.Queue(maxsize=10_000)
        events.subscribe(ContactCreated, self._on_created)

    def _on_created(self, published: Published[ContactCreated]) -> None:
        if self.leader.held:
            try:
                self.pending.put_nowait(published.event.contact)
                self.wake()
            except asyncio.QueueFull:
                CRM_LOOKUPS.labels("dropped").inc()

    async def on_stop(self) -> None:
        await self.leader.release()

    async def tick(self) -> float | None:
        if not await self.leader.try_acquire():
            return None
        while not self.pending.empty() and not self._stopping.is_set():
            await self.lookup(self.pending.get_nowait())
        return None

    async def lookup(self, contact: ContactView) -> bool:
        """Ask the CRM about one contact and store what it says; False when nothing was learnt."""
        # Only identities a channel vouched for: a claim typed into a form must not fetch someone's CRM record.
        verified = contact.model_copy(update={"identities": [i for i in contact.identities if i.verified]})
        body = json.dumps({"event": "contact.lookup", "contact": verified.model_dump(mode="json")},
                          separators=(",", ":")).encode()
        ts = str(int(time.time()))
        try:
            resp = await self.http.post(self.url, content=body, timeout=self.timeout, headers={
                "content-type": "application/json", "x-threadline-timestamp": ts,
                "x-threadline-signature": sign(self.secret, body, ts), "user-agent": "Threadline-CRM-lookup"})
        except httpx.HTTPError as exc:
            CRM_LOOKUPS.labels("unreachable").inc()
            log.warning("crm_lookup_failed", contact_id=contact.id, error=str(exc))
            return False
        if resp.status_code == 404:
            CRM_LOOKUPS.labels("unknown").inc()
            return False
        try:
            data = resp.json() if resp.status_code == 200 else None
        except ValueError:
            data = None
        if not isinstance(data, dict):
            CRM_LOOKUPS.labels("bad_answer").inc()
            log.warning("crm_lookup_bad_answer", contact_id=contact.id, status=resp.status_code)
            return False
        attrs = data.get("attributes") if isinstance(data.get("attributes"), dict) else {}
        attrs = {str(k)[:64]: v for k, v in list(attrs.items())[:MAX_ATTRIBUTES]
                 if (isinstance(v, str | int | float | bool) or v is None) and k not in RESERVED_ATTRIBUTES}
        for key in ("external_id", "link"):
            if isinstance(data.get(key), str):
                attrs[f"crm_{key}"] = data[key][:500]
        if not attrs:
            CRM_LOOKUPS.labels("empty").inc()
            return False
        try:
            async with self.db.transaction() as session:
                await contact_actions.update_contact(session, contact.id, attributes=attrs, source="CRM")
                await continuity_actions.record_activity(session, contact.id, kind="crm",
                                                         title="Enriched from the CRM", url=attrs.get("crm_link", ""),
                                                         data={"keys": sorted(attrs)})
        except Exception as exc:  # e.g. the contact was merged meanwhile: log, never crash the worker
            CRM_LOOKUPS.labels("not_stored").inc()
            log.warning("crm_lookup_not_stored", contact_id=contact.id, error=str(exc))
            return False
        CRM_LOOKUPS.labels("enriched").inc()
        return True
