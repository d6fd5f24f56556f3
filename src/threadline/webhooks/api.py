"""Outgoing webhooks (admins only): endpoints, their signing secrets, test pings and the delivery log.
Guide: docs/webhooks.md."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field

from threadline.db.repos.common import decode_cursor, encode_cursor
from threadline.db.types import utcnow
from threadline.domain.errors import NotFound, ValidationFailed
from threadline.domain.events import EVENT_NAMES
from threadline.services import Services
from threadline.web.api.schemas import Id, In, Page
from threadline.web.deps import AdminActor, ServicesDep
from threadline.webhooks import actions as webhook_actions
from threadline.webhooks import repo
from threadline.webhooks.domain import NOT_IN_WILDCARD, normalise_events
from threadline.webhooks.models import WebhookDeliveryRow, WebhookEndpointRow

router = APIRouter(tags=["webhooks"])
RECENT = timedelta(days=7)


class WebhookIn(In):
    url: str = Field(max_length=2000, description="https:// (or http://) URL that receives the POSTs")
    events: list[str] = Field(min_length=1, max_length=100, description="Event names, or ['*'] for all but "
                              "the frequent internal ones (GET /api/v1/webhooks/event-types)")
    description: str = Field(default="", max_length=500)
    active: bool = True


class WebhookUpdate(In):
    url: str | None = Field(default=None, max_length=2000)
    events: list[str] | None = Field(default=None, min_length=1, max_length=100)
    description: str | None = Field(default=None, max_length=500)
    active: bool | None = Field(default=None, description="false disables; true re-enables (failures forgotten, "
                                "waiting deliveries go out)")


class RollSecretIn(In):
    keep_previous_seconds: int = Field(default=0, ge=0, le=86_400, description="Keep signing with the old "
                                       "secret too (a second v1=) for this long, so receivers switch without a gap")


class WebhookOut(BaseModel):
    id: int
    url: str
    description: str
    events: list[str]
    active: bool
    disabled_reason: str | None = Field(description="Why it is disabled (by an admin, or automatically)")
    consecutive_failures: int = Field(description="Failed attempts in a row (0: healthy)")
    failing_since: datetime | None
    paused_until: datetime | None = Field(description="A failing endpoint rests until then between attempts")
    pending_deliveries: int = 0
    failed_deliveries_7d: int = Field(default=0, description="Deliveries given up in the last 7 days")
    previous_secret_expires_at: datetime | None = None
    created_at: datetime
    updated_at: datetime


class WebhookWithSecret(WebhookOut):
    secret: str = Field(description="The signing secret: shown this once, store it now")


class DeliveryOut(BaseModel):
    id: int
    endpoint_id: int
    event: str
    seq: int | None
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    last_status_code: int | None
    last_error: str | None
    last_response: str | None = Field(description="The first characters the receiver answered")
    last_duration_ms: int | None
    last_attempt_at: datetime | None
    next_attempt_at: datetime | None = Field(description="When it is tried next (pending deliveries)")
    delivered_at: datetime | None
    created_at: datetime


class DeliveryPage(Page[DeliveryOut]):
    pass


class PingOut(BaseModel):
    ok: bool
    delivery_id: int
    status_code: int | None = Field(description="What the receiver answered; null when it could not be reached")
    error: str | None
    duration_ms: int
    response: str | None


class EventTypesOut(BaseModel):
    events: list[str] = Field(description="Every name an endpoint may subscribe to")
    wildcard: list[str] = Field(description="What '*' covers")
    not_in_wildcard: list[str] = Field(description="Frequent internal events: only sent when named")


def endpoint_out(row: WebhookEndpointRow, counts: dict[int, dict[str, int]] | None = None) -> WebhookOut:
    c = (counts or {}).get(row.id, {})
    return WebhookOut(id=row.id, url=row.url, description=row.description, events=list(row.events), active=row.active,
                      disabled_reason=row.disabled_reason, consecutive_failures=row.consecutive_failures,
                      failing_since=row.failing_since, paused_until=row.paused_until,
                      pending_deliveries=c.get("pending", 0), failed_deliveries_7d=c.get("failed", 0),
                      previous_secret_expires_at=row.previous_secret_expires_at,
                      created_at=row.created_at, updated_at=row.updated_at)


def delivery_out(row: WebhookDeliveryRow) -> DeliveryOut:
    return DeliveryOut(id=row.id, endpoint_id=row.endpoint_id, event=row.event_name, seq=row.event_seq,
                       status=row.status, attempts=row.attempts, last_status_code=row.last_status_code,  # type: ignore[arg-type]
                       last_error=row.last_error, last_response=row.last_response,
                       last_duration_ms=row.last_duration_ms, last_attempt_at=row.last_attempt_at,
                       next_attempt_at=row.next_attempt_at if row.status == "pending" else None,
                       delivered_at=row.delivered_at, created_at=row.created_at)


def _webhooks(services: Services):  # type: ignore[no-untyped-def]
    assert services.webhooks is not None
    return services.webhooks


@router.get("/webhooks/event-types", response_model=EventTypesOut, summary="Event names endpoints subscribe to")
async def event_types(actor: AdminActor) -> EventTypesOut:
    return EventTypesOut(events=list(EVENT_NAMES), wildcard=[n for n in EVENT_NAMES if n not in NOT_IN_WILDCARD],
                         not_in_wildcard=sorted(NOT_IN_WILDCARD))


@router.get("/webhooks", response_model=list[WebhookOut])
async def list_webhooks(actor: AdminActor, services: ServicesDep) -> list[WebhookOut]:
    async with services.db.transaction(write=False) as session:
        rows = await repo.list_endpoints(session)
        counts = await repo.delivery_counts(session, utcnow() - RECENT)
    return [endpoint_out(r, counts) for r in rows]


@router.post("/webhooks", response_model=WebhookWithSecret, status_code=201,
             summary="Subscribe a URL to events; the answer holds the signing secret, shown once")
async def create_webhook(body: WebhookIn, actor: AdminActor, services: ServicesDep) -> WebhookWithSecret:
    normalise_events(body.events)  # the cheap checks first: an unknown event is named before any DNS lookup
    await _webhooks(services).check_destination(body.url)
    async with services.db.transaction(write=True) as session:
        row, secret = await webhook_actions.create_endpoint(
            session, services.box, url=body.url, events=body.events, description=body.description,
            active=body.active, created_by=actor.user_id, now=utcnow())
    return WebhookWithSecret(**endpoint_out(row).model_dump(), secret=secret)


async def _get(services: Services, endpoint_id: int) -> WebhookOut:
    async with services.db.transaction(write=False) as session:
        row = await repo.get_endpoint(session, endpoint_id)
        if row is None:
            raise NotFound(f"webhook endpoint {endpoint_id} does not exist")
        counts = await repo.delivery_counts(session, utcnow() - RECENT)
    return endpoint_out(row, counts)


@router.get("/webhooks/{endpoint_id}", response_model=WebhookOut)
async def get_webhook(endpoint_id: Id, actor: AdminActor, services: ServicesDep) -> WebhookOut:
    return await _get(services, endpoint_id)


@router.patch("/webhooks/{endpoint_id}", response_model=WebhookOut)
async def update_webhook(endpoint_id: Id, body: WebhookUpdate, actor: AdminActor, services: ServicesDep
                         ) -> WebhookOut:
    if body.url is not None:
        await _webhooks(services).check_destination(body.url)
    async with services.db.transaction(write=True) as session:
        await webhook_actions.update_endpoint(session, endpoint_id, **body.model_dump(exclude_unset=True))
    return await _get(services, endpoint_id)


@router.delete("/webhooks/{endpoint_id}", status_code=204, response_class=Response,
               summary="Delete an endpoint and its delivery log")
async def delete_webhook(endpoint_id: Id, actor: AdminActor, services: ServicesDep) -> Response:
    async with services.db.transaction(write=True) as session:
        await webhook_actions.delete_endpoint(session, endpoint_id)
    return Response(status_code=204)


@router.post("/webhooks/{endpoint_id}/roll-secret", response_model=WebhookWithSecret,
             summary="Replace the signing secret (the new one is shown once)")
async def roll_secret(endpoint_id: Id, actor: AdminActor, services: ServicesDep,
                      body: RollSecretIn | None = None) -> WebhookWithSecret:
    async with services.db.transaction(write=True) as session:
        row, secret = await webhook_actions.roll_secret(
            session, services.box, endpoint_id, keep_previous_seconds=(body or RollSecretIn()).keep_previous_seconds,
            now=utcnow())
    return WebhookWithSecret(**(await _get(services, row.id)).model_dump(), secret=secret)


@router.post("/webhooks/{endpoint_id}/ping", response_model=PingOut,
             summary="Send a webhook.ping delivery now and return what the receiver answered")
async def ping_webhook(endpoint_id: Id, actor: AdminActor, services: ServicesDep) -> PingOut:
    result = await _webhooks(services).ping(endpoint_id)
    return PingOut(ok=result.ok, delivery_id=result.delivery_id, status_code=result.status_code, error=result.error,
                   duration_ms=result.duration_ms, response=result.response)


@router.get("/webhooks/{endpoint_id}/deliveries", response_model=DeliveryPage,
            summary="An endpoint's recent deliveries, newest first")
async def list_deliveries(endpoint_id: Id, actor: AdminActor, services: ServicesDep,
                          status: Literal["pending", "delivered", "failed"] | None = None,
                          limit: int = Query(default=50, ge=1, le=200), cursor: str | None = None) -> DeliveryPage:
    before = None
    if cursor:
        value = decode_cursor(cursor, 1)[0]
        if not isinstance(value, int):
            raise ValidationFailed("cursor is not one this API gave out", field="cursor")
        before = value
    async with services.db.transaction(write=False) as session:
        if await repo.get_endpoint(session, endpoint_id) is None:
            raise NotFound(f"webhook endpoint {endpoint_id} does not exist")
        rows = await repo.list_deliveries(session, endpoint_id, status=status, before_id=before, limit=limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    return DeliveryPage(items=[delivery_out(r) for r in rows],
                        next_cursor=encode_cursor(rows[-1].id) if more and rows else None)


@router.post("/webhooks/deliveries/{delivery_id}/redeliver", response_model=DeliveryOut, status_code=202,
             summary="Send a delivery again now (same id and body)")
async def redeliver(delivery_id: Id, actor: AdminActor, services: ServicesDep) -> DeliveryOut:
    async with services.db.transaction(write=True) as session:
        row = await webhook_actions.redeliver(session, delivery_id, now=utcnow())
    return delivery_out(row)
