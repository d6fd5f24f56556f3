"""Admin pages: users (roles, skills 1-5, teams, queues), teams, queues, channels (any installed kind,
from its Config schema; what each adapter says to connect an instance), canned responses, outgoing webhooks and
flows, the IVR / bot builder (both admins only).

Admins change things; supervisors read the lists (no channel configuration); agents get 403. Forms post
with the ``csrf_token`` field and redirect back with a message (post/redirect/get)."""

from __future__ import annotations

import functools
import json
import time
import zoneinfo
from collections.abc import Awaitable, Callable
from datetime import timedelta
from html import escape
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import SecretStr, ValidationError

from threadline.actions import canned as canned_actions
from threadline.actions import channels as channel_actions
from threadline.actions import routing as routing_actions
from threadline.actions import users as user_actions
from threadline.channels.base import ChannelAdapter, ConnectHint
from threadline.channels.registry import adapters, get_adapter_class
from threadline.db.repos import channels as channels_repo
from threadline.db.repos import desk as desk_repo
from threadline.db.repos import routing as routing_repo
from threadline.db.repos import users as users_repo
from threadline.db.session import Session
from threadline.db.types import utcnow
from threadline.domain.access import Actor
from threadline.domain.errors import DomainError, NotFound, ValidationFailed
from threadline.domain.events import EVENT_NAMES
from threadline.domain.ids import Id, parse_id
from threadline.domain.queues import QueueSettings, QueueVoice
from threadline.domain.users import Role, parse_skill_spec
from threadline.flows import actions as flow_actions
from threadline.flows import domain as flow_domain
from threadline.flows import repo as flows_repo
from threadline.kb import actions as kb_actions
from threadline.kb import domain as kb_domain
from threadline.kb import repo as kb_repo
from threadline.queries import routing as routing_queries
from threadline.queries.channels import check_channel_settings, check_destinations
from threadline.web.deps import ServicesDep
from threadline.web.desk import flowform
from threadline.web.desk.common import actor_or_none, is_htmx, render
from threadline.webhooks import actions as webhook_actions
from threadline.webhooks import repo as webhooks_repo
from threadline.webhooks.domain import NOT_IN_WILDCARD

router = APIRouter(prefix="/admin", include_in_schema=False)
FLOW_FORM_FIELDS = 20_000  # the flow builder posts a field per input (MAX_NODES nodes); Starlette's default is 1000
SECTIONS = [("live", "Live queues", "inbox"), ("users", "Users", "users"), ("teams", "Teams", "users"),
            ("queues", "Queues", "layers"), ("channels", "Channels", "chat"), ("canned", "Canned responses", "chat"),
            ("webhooks", "Webhooks", "code"), ("flows", "Flows (IVR, bots)", "phone"), ("kb", "Knowledge base", "layers")]


class _Denied(Exception):
    def __init__(self, response: Response) -> None:
        self.response = response


async def _guard(request: Request, services: ServicesDep) -> tuple[Actor, str]:
    actor, csrf = await actor_or_none(request, services)
    if actor is None:
        raise _Denied(RedirectResponse("/login", status_code=303))
    if not actor.sees_everything:
        raise _Denied(render(request, "error.html", {"title": "Admins only", "message":
                                                     "Only admins and supervisors can open the admin pages.",
                                                     "back": "/", "csrf": ""}, 403))
    return actor, csrf or ""


async def _page(request: Request, services: ServicesDep, section: str,
                build: Callable[[Session, Actor], Awaitable[dict[str, Any]]]) -> Response:
    try:
        actor, csrf = await _guard(request, services)
    except _Denied as denied:
        return denied.response
    async with services.db.transaction(write=False) as session:
        ctx = await build(session, actor)
        me = await users_repo.get_user(session, actor.user_id)
    ctx.update(actor=actor, me=me, csrf=csrf, section=section, sections=SECTIONS,
               is_admin=actor.role is Role.ADMIN, flash=request.query_params.get("ok", ""),
               flash_error=request.query_params.get("error", ""))
    return render(request, f"admin/{section}.html", ctx)


async def _post(request: Request, services: ServicesDep, back: str,
                run: Callable[[Session, Actor, Any], Awaitable[str]],
                before: Callable[[Any], Awaitable[None]] | None = None, role: Role = Role.ADMIN) -> Response:
    """Check admin + CSRF, run the action in a transaction, redirect back with a message. ``before`` checks
    the form outside the transaction (what takes time, such as resolving a host name)."""
    actor, csrf = await actor_or_none(request, services)
    if actor is None:
        return RedirectResponse("/login", status_code=303)
    if not actor.role.at_least(role):
        return render(request, "error.html", {"title": f"{role.value.capitalize()}s only", "message":
                                              f"Only {role.value}s and above can change this.",
                                              "back": back, "csrf": ""}, 403)
    form = await request.form()
    if not csrf or form.get("csrf_token") != csrf:
        return render(request, "error.html", {"title": "Form expired", "message":
                                              "The form's security token did not match: reload and try again.",
                                              "back": back, "csrf": ""}, 403)
    try:
        if before is not None:
            await before(form)
        async with services.db.transaction(write=True) as session:
            message = await run(session, actor, form)
    except DomainError as exc:
        return RedirectResponse(f"{back}?{urlencode({'error': exc.message})}", status_code=303)
    return RedirectResponse(f"{back}?{urlencode({'ok': message})}", status_code=303)


def _ids(form: Any, key: str) -> list[int]:
    return [i for i in (parse_id(v) for v in form.getlist(key)) if i is not None]


@router.get("")
async def admin_home() -> Response:
    return RedirectResponse("/admin/live", status_code=303)


# --- users ---------------------------------------------------------------------------------------------

async def _users_ctx(session: Session, actor: Actor) -> dict[str, Any]:
    teams_of, queues_of = await users_repo.memberships(session)
    return {"users": await users_repo.list_users(session), "teams": {t.id: t for t in await users_repo.list_teams(session)},
            "queues": {q.id: q for q in await users_repo.list_queues(session)}, "teams_of": teams_of,
            "queues_of": queues_of, "roles": [r.value for r in Role], "edit": None}


@router.get("/users")
async def users_page(request: Request, services: ServicesDep) -> Response:
    return await _page(request, services, "users", _users_ctx)


@router.get("/users/{user_id}")
async def user_edit_page(user_id: Id, request: Request, services: ServicesDep) -> Response:
    async def build(session: Session, actor: Actor) -> dict[str, Any]:
        ctx = await _users_ctx(session, actor)
        ctx["edit"] = await users_repo.get_user(session, user_id)
        if ctx["edit"] is None:
            raise NotFound(f"user {user_id} does not exist")
        return ctx
    try:
        return await _page(request, services, "users", build)
    except NotFound as exc:
        return render(request, "error.html", {"title": "Not found", "message": exc.message, "back": "/admin/users",
                                              "csrf": ""}, 404)


def _skills(form: Any) -> dict[str, int]:
    """Skills come as rows skill_name[] / skill_level[] (levels 1-5) plus a free "name:level, …" field."""
    skills: dict[str, int] = {}
    for name, level in zip(form.getlist("skill_name"), form.getlist("skill_level"), strict=False):
        if str(name).strip():
            if not str(level).isdigit():
                raise ValidationFailed(f"skill {name}: pick a level from 1 to 5", field="skills")
            skills[str(name)] = int(str(level))
    extra = str(form.get("skills_spec", "")).strip()
    if extra:
        skills.update(parse_skill_spec(extra))
    return skills


@router.post("/users")
async def user_create(request: Request, services: ServicesDep) -> Response:
    async def run(session: Session, actor: Actor, form: Any) -> str:
        user = await user_actions.create_user(
            session, email=str(form.get("email", "")), name=str(form.get("name", "")),
            role=str(form.get("role", "agent")), password=str(form.get("password") or "") or None,
            skills=_skills(form), team_ids=_ids(form, "team_ids"), queue_ids=_ids(form, "queue_ids"))
        return f"{user.name} can now log in"
    return await _post(request, services, "/admin/users", run)


@router.post("/users/{user_id}")
async def user_update(user_id: Id, request: Request, services: ServicesDep) -> Response:
    async def run(session: Session, actor: Actor, form: Any) -> str:
        if user_id == actor.user_id and (form.get("role") != "admin" or "active" not in form):
            raise ValidationFailed("you cannot demote or deactivate yourself", field="role")
        user = await user_actions.update_user(
            session, user_id, name=str(form.get("name", "")), role=str(form.get("role", "agent")),
            skills=_skills(form), team_ids=_ids(form, "team_ids"), queue_ids=_ids(form, "queue_ids"),
            active="active" in form)
        if form.get("password"):
            await user_actions.set_password(session, user_id, str(form["password"]))
        return f"{user.name} saved"
    return await _post(request, services, f"/admin/users/{user_id}", run)


# --- teams and queues -------------------------------------------------------------------------------------

async def _teams_ctx(session: Session, actor: Actor) -> dict[str, Any]:
    teams = await users_repo.list_teams(session)
    return {"teams": teams, "members": {t.id: await users_repo.team_member_ids(session, t.id) for t in teams},
            "users": {u.id: u for u in await users_repo.list_users(session)}}


@router.get("/teams")
async def teams_page(request: Request, services: ServicesDep) -> Response:
    return await _page(request, services, "teams", _teams_ctx)


@router.post("/teams")
async def team_create(request: Request, services: ServicesDep) -> Response:
    async def run(session: Session, actor: Actor, form: Any) -> str:
        team = await user_actions.create_team(session, str(form.get("name", "")))
        return f"Team {team.name} created"
    return await _post(request, services, "/admin/teams", run)


async def _queues_ctx(session: Session, actor: Actor) -> dict[str, Any]:
    queues = await users_repo.list_queues(session)
    return {"queues": queues, "members": {q.id: await users_repo.queue_member_ids(session, q.id) for q in queues},
            "teams": {t.id: t for t in await users_repo.list_teams(session)},
            "users": {u.id: u for u in await users_repo.list_users(session)},
            "open_counts": await desk_repo.open_counts_by_queue(session, None),
            "routing": {r.id: routing_actions.queue_parts(r) for r in await routing_repo.queues(session)},
            "voice": {q.id: QueueSettings.model_validate(q.settings or {}).voice for q in queues},
            "record_choices": RECORD_CHOICES, "callback_choices": CALLBACK_CHOICES}


# Today's figures per queue aggregate the day's routing outcomes; every supervisor tab redraws the
# board on many events, so this process keeps them FIGURES_TTL seconds: many redraws, one aggregation.
# Keyed by the Services object (one per process in production; tests run several apps in one process,
# each with its own database). The figures do not depend on which supervisor asks.
FIGURES_TTL = 5.0
_figures_cache: dict[int, tuple[float, Any, list[Any]]] = {}  # id(services) -> (expires_at, services, figures)


def _clock() -> float:
    return time.monotonic()


def clear_figures_cache() -> None:
    """Forget cached figures (tests that change outcomes and read the board again)."""
    _figures_cache.clear()


async def _today_figures(actor: Actor, services: Any) -> list[Any]:
    now = _clock()
    hit = _figures_cache.get(id(services))
    if hit is not None and hit[1] is services and hit[0] > now:
        return hit[2]
    async with services.db.transaction(write=False) as session:
        figures = await routing_queries.queue_figures(session)  # today
    for key in [k for k, (expires, _, _) in _figures_cache.items() if expires <= now]:
        del _figures_cache[key]  # stale entries (of apps gone, in tests) do not pile up
    _figures_cache[id(services)] = (now + FIGURES_TTL, services, figures)
    return figures


async def _board(actor: Actor, services: Any) -> dict[str, Any]:
    """What the supervisors' live view shows: queues (with today's service level, ASA, abandoned and
    AHT from the router's outcomes), agents by state, the longest waiting tasks.
    ``now_ts`` (Unix seconds) lets the page tick waits between redraws."""
    now = time.time()
    async with services.db.transaction(write=False) as session:
        queues = await routing_queries.queue_summaries(session)
        agents = await routing_queries.agent_summaries(session)
        waiting = await routing_queries.visible_tasks(session, actor.visibility, None, "waiting", 15)
    figures = {f.queue_id: f for f in await _today_figures(actor, services)}  # today, cached FIGURES_TTL s
    by_state: dict[str, int] = {}
    for a in agents:
        by_state[a.presence] = by_state.get(a.presence, 0) + 1
    return {"board_queues": queues, "board_agents": sorted(agents, key=lambda a: (a.presence != "available", a.name)),
            "board_waiting": sorted(waiting, key=lambda t: -t.waited_seconds), "board_states": by_state,
            "queue_names": {q.id: q.name for q in queues}, "queue_sla": {q.id: q.sla_answer_seconds for q in queues},
            "board_figures": figures, "now_ts": now}


@router.get("/live")
async def live_page(request: Request, services: ServicesDep) -> Response:
    """Supervisors' live view of queues and agents. static/admin_live.js follows the live stream and
    redraws the board (``/admin/live/board``) when routing or conversations move."""
    try:
        actor, _ = await _guard(request, services)
    except _Denied as denied:
        return denied.response
    board = await _board(actor, services)

    async def build(session: Session, actor: Actor) -> dict[str, Any]:
        return board
    return await _page(request, services, "live", build)


@router.get("/live/board")
async def live_board(request: Request, services: ServicesDep) -> Response:
    try:
        actor, _ = await _guard(request, services)
    except _Denied as denied:
        return denied.response
    return render(request, "admin/live_board.html", await _board(actor, services))


@router.get("/queues")
async def queues_page(request: Request, services: ServicesDep) -> Response:
    return await _page(request, services, "queues", _queues_ctx)


@router.post("/queues")
async def queue_create(request: Request, services: ServicesDep) -> Response:
    async def run(session: Session, actor: Actor, form: Any) -> str:
        settings: dict[str, Any] = {}
        if str(form.get("skills_spec", "")).strip():
            settings["skills"] = parse_skill_spec(str(form["skills_spec"]))
        team_id = str(form.get("team_id", ""))
        queue = await user_actions.create_queue(session, str(form.get("name", "")), settings,
                                                parse_id(team_id))
        return f"Queue {queue.name} created"
    return await _post(request, services, "/admin/queues", run)


@router.post("/queues/{queue_id}")
async def queue_update(queue_id: Id, request: Request, services: ServicesDep) -> Response:
    async def run(session: Session, actor: Actor, form: Any) -> str:
        team_id = str(form.get("team_id", ""))
        queue = await user_actions.update_queue(
            session, queue_id, name=str(form.get("name", "")) or None,
            settings={"skills": parse_skill_spec(str(form.get("skills_spec", "")))},
            team_id=parse_id(team_id))
        return f"Queue {queue.name} saved"
    return await _post(request, services, "/admin/queues", run)


@router.post("/queues/{queue_id}/routing")
async def queue_routing(queue_id: Id, request: Request, services: ServicesDep) -> Response:
    """Routing settings of a queue: offers, wrap-up, sticky agent, escalation steps and business hours.
    Impossible settings (an overflow loop, skills nobody has) are refused with the reason."""
    async def run(session: Session, actor: Actor, form: Any) -> str:
        def number(key: str, label: str) -> float:
            try:
                return float(str(form.get(key, "0")).strip() or 0)
            except ValueError:
                raise ValidationFailed(f"{label} must be a number of seconds", field=key) from None

        def json_field(key: str, label: str, default: Any) -> Any:
            raw = str(form.get(key, "")).strip()
            if not raw:
                return default
            try:
                return json.loads(raw)
            except ValueError:
                raise ValidationFailed(f"{label} must be JSON", field=key) from None

        routing = {"offer_timeout_seconds": number("offer_timeout_seconds", "Offer timeout"),
                   "wrap_up_seconds": number("wrap_up_seconds", "Wrap-up"),
                   "sticky_seconds": number("sticky_seconds", "Sticky agent time"),
                   "sticky_only": "sticky_only" in form, "language_required": "language_required" in form,
                   "steps": json_field("steps", "Escalation steps", [])}
        hours = json_field("hours", "Business hours", {"timezone": "UTC"})
        warnings = await routing_actions.set_queue_routing(session, actor, queue_id, routing,
                                                           settings={"hours": hours}, force="force" in form)
        return "Routing saved" + (f" ({'; '.join(warnings)})" if warnings else "")
    return await _post(request, services, "/admin/queues", run)


RECORD_CHOICES = [("channel", "As the phone line says"), ("always", "Always"),
                  ("on_demand", "On demand (the agent starts it)"), ("never", "Never")]
CALLBACK_CHOICES = [("customer_first", "Ring the customer first"), ("agent_first", "Ring the agent first")]


def queue_voice_from_form(form: Any) -> dict[str, Any]:
    """A queue's call settings from the admin form (codes one per line); ValidationFailed saying which."""
    codes = [line.strip() for line in str(form.get("dispositions", "")).splitlines() if line.strip()]
    for code in codes:
        if len(code) > 60:
            raise ValidationFailed(f"Disposition codes: {code[:30]!r}… is longer than 60 characters",
                                   field="dispositions")
    record = str(form.get("record", "channel"))
    if record not in dict(RECORD_CHOICES):
        raise ValidationFailed(f"Recording: {record[:30]!r} is not a recording policy; pick one of the list",
                               field="record")
    order = str(form.get("callback_order", "customer_first"))
    if order not in dict(CALLBACK_CHOICES):
        raise ValidationFailed(f"Callbacks: {order[:30]!r} is not an order; pick one of the list", field="callback_order")
    try:
        voice = QueueVoice.model_validate({"record": record, "dispositions": codes, "callback_order": order,
                                           "verified_for_sensitive": "verified_for_sensitive" in form})
    except ValidationError as exc:
        err = exc.errors()[0]
        label = {"dispositions": "Disposition codes", "record": "Recording"}.get(str(err["loc"][0]), "Calls")
        raise ValidationFailed(f"{label}: {err['msg'].removeprefix('Value error, ')}", field="voice") from None
    return voice.model_dump(mode="json")


@router.post("/queues/{queue_id}/voice")
async def queue_voice(queue_id: Id, request: Request, services: ServicesDep) -> Response:
    """A queue's call settings: when its calls are recorded, its disposition codes, and whether sensitive
    actions wait for a caller the IVR verified. A bad value comes back as the page's error, with the reason."""
    async def run(session: Session, actor: Actor, form: Any) -> str:
        queue = await user_actions.update_queue(session, queue_id, settings={"voice": queue_voice_from_form(form)})
        return f"Call settings of {queue.name} saved"
    return await _post(request, services, "/admin/queues", run)


# --- channels ---------------------------------------------------------------------------------------------

def _field_type(ann: Any) -> tuple[str, list[str]]:
    """How a Config field is edited: (input kind, choices)."""
    args = [a for a in get_args(ann) if a is not type(None)]
    origin = get_origin(ann)
    if origin in (Union, UnionType) and len(args) == 1:
        return _field_type(args[0])
    if ann is SecretStr:
        return "password", []
    if ann is bool:
        return "checkbox", []
    if ann is int:
        return "int", []
    if ann is float:
        return "float", []
    if origin is Literal:
        return "select", [str(a) for a in args]
    if origin is list and args and get_origin(args[0]) is Literal:
        return "multi", [str(a) for a in get_args(args[0])]
    if origin is list and args and args[0] is str:
        return "lines", []
    if origin in (list, dict):
        return "json", []
    return "text", []


def _fields(kind: str) -> list[dict[str, Any]]:
    """Form fields from the adapter's Config: name, label, input kind, choices, required, default, help."""
    cls = get_adapter_class(kind)
    if cls is None:
        return []
    out = []
    for name, info in cls.Config.model_fields.items():
        kind_, choices = _field_type(info.annotation)
        default = None if info.is_required() else info.get_default(call_default_factory=True)
        if isinstance(default, SecretStr):
            default = None  # generated secrets stay generated unless the admin types one
        out.append({"name": name, "label": name.replace("_", " ").capitalize(), "type": kind_, "choices": choices,
                    "required": info.is_required(), "default": default, "help": info.description or "",
                    "advanced": not info.is_required() and not info.description})
    return out


def _config_from_form(kind: str, form: Any) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for f in _fields(kind):
        key = f"config.{f['name']}"
        if f["type"] == "checkbox":
            config[f["name"]] = key in form
            continue
        if f["type"] == "multi":  # the form marks which lists it showed, so an unticked list means []
            if f["name"] in form.getlist("multi"):
                config[f["name"]] = [str(v) for v in form.getlist(key)]
            continue
        raw = form.get(key)
        if raw is None or str(raw).strip() == "":
            continue
        value: Any = str(raw).strip()
        if f["type"] in ("int", "float"):
            try:
                value = float(value) if f["type"] == "float" else int(value)
            except ValueError:
                raise ValidationFailed(f"{f['label']} must be a number", field=key) from None
        elif f["type"] == "lines":
            value = [v.strip() for v in value.replace(",", "\n").splitlines() if v.strip()]
        elif f["type"] == "json":
            try:
                value = json.loads(value)
            except ValueError:
                raise ValidationFailed(f"{f['label']} must be JSON (a list or an object)", field=key) from None
        config[f["name"]] = value
    return config


def _connect_hint(kind: str, base_url: str, key: str) -> ConnectHint:
    """What the adapter tells an admin to do to connect an instance (the hook URL, a site snippet…)."""
    cls = get_adapter_class(kind)
    return cls.connect_hint(base_url, key) if cls else ChannelAdapter.connect_hint(base_url, key)


@router.get("/channels")
async def channels_page(request: Request, services: ServicesDep) -> Response:
    kind = request.query_params.get("kind", "")

    async def build(session: Session, actor: Actor) -> dict[str, Any]:
        rows = await channels_repo.list_channels(session)
        installed = {k: cls.title for k, cls in sorted(adapters().items())}
        admin = actor.role is Role.ADMIN
        configs = {}
        if admin:
            for r in rows:
                try:
                    configs[r.id] = channel_actions.public_config(channel_actions.load_config(services.box, r))
                except Exception:  # noqa: BLE001 - an uninstalled kind or an old config: show the row anyway
                    configs[r.id] = None
        base = services.settings.public_base_url
        return {"channels": rows, "installed": installed, "configs": configs,
                "queues": {q.id: q for q in await users_repo.list_queues(session)},
                "kind": kind if kind in installed else "", "fields": _fields(kind) if kind in installed else [],
                "connect": {r.id: _connect_hint(r.kind, base, r.key) for r in rows}}
    return await _page(request, services, "channels", build)


@router.post("/channels")
async def channel_create(request: Request, services: ServicesDep) -> Response:
    async def run(session: Session, actor: Actor, form: Any) -> str:
        kind = str(form.get("kind", ""))
        queue = str(form.get("default_queue_id", ""))
        row = await channel_actions.create_channel(
            session, services.box, kind=kind, name=str(form.get("name", "")), config=_config_from_form(kind, form),
            default_queue_id=parse_id(queue))
        return f"Channel {row.name} created"

    async def destinations(form: Any) -> None:  # provider URLs and mail hosts must be public (SSRF)
        kind = str(form.get("kind", ""))
        cls = get_adapter_class(kind)
        if cls is not None:
            await check_destinations(services, cls, channel_actions.validate_config(cls, _config_from_form(kind, form)))
    return await _post(request, services, "/admin/channels", run, destinations)


@router.post("/channels/test")
async def channel_test(request: Request, services: ServicesDep) -> Response:
    """The "Test connection" button: try the form's settings against the provider before saving them."""
    actor, csrf = await actor_or_none(request, services)
    form = await request.form()
    if actor is None or actor.role is not Role.ADMIN or not csrf or form.get("csrf_token") != csrf:
        return HTMLResponse('<p class="test-result bad" role="status">Only admins can test channels; reload the '
                            "page if your session expired.</p>", status_code=403)
    kind = str(form.get("kind", ""))
    try:
        result = await check_channel_settings(services, kind, _config_from_form(kind, form))
    except DomainError as exc:
        return HTMLResponse(f'<p class="test-result bad" role="status">{escape(exc.message)}</p>')
    if not result.ok:
        return HTMLResponse(f'<p class="test-result bad" role="status">Refused: {escape(result.error or "")}</p>')
    done = "".join(f"<li>{escape(c)}</li>" for c in result.checks) or "<li>settings are valid</li>"
    return HTMLResponse(f'<div class="test-result ok" role="status"><p>Connection works</p><ul>{done}</ul></div>')


@router.post("/channels/{channel_id}/toggle")
async def channel_toggle(channel_id: Id, request: Request, services: ServicesDep) -> Response:
    async def run(session: Session, actor: Actor, form: Any) -> str:
        row = await channels_repo.get_channel(session, channel_id)
        if row is None:
            raise NotFound(f"channel {channel_id} does not exist")
        row = await channel_actions.update_channel(session, services.box, channel_id, enabled=not row.enabled)
        return f"Channel {row.name} {'enabled' if row.enabled else 'disabled'}"
    return await _post(request, services, "/admin/channels", run)


# --- canned responses ------------------------------------------------------------------------------------

async def _canned_ctx(session: Session, actor: Actor) -> dict[str, Any]:
    return {"canned": await desk_repo.list_canned(session),
            "users": {u.id: u for u in await users_repo.list_users(session)}}


@router.get("/canned")
async def canned_page(request: Request, services: ServicesDep) -> Response:
    return await _page(request, services, "canned", _canned_ctx)


@router.post("/canned")
async def canned_create(request: Request, services: ServicesDep) -> Response:
    async def run(session: Session, actor: Actor, form: Any) -> str:
        row = await canned_actions.create_canned(session, actor, shortcut=str(form.get("shortcut", "")),
                                                 title=str(form.get("title", "")), text=str(form.get("text", "")))
        return f"/{row.shortcut} saved"
    return await _post(request, services, "/admin/canned", run)


@router.post("/canned/{canned_id}")
async def canned_update(canned_id: Id, request: Request, services: ServicesDep) -> Response:
    async def run(session: Session, actor: Actor, form: Any) -> str:
        if form.get("delete"):
            await canned_actions.delete_canned(session, actor, canned_id)
            return "Canned response deleted"
        row = await canned_actions.update_canned(session, actor, canned_id, shortcut=str(form.get("shortcut", "")),
                                                 title=str(form.get("title", "")), text=str(form.get("text", "")))
        return f"/{row.shortcut} saved"
    return await _post(request, services, "/admin/canned", run)


# --- outgoing webhooks (admins only: URLs may carry credentials) ------------------------------------------

async def _admin_only(request: Request, services: ServicesDep, what: str = "webhooks") -> tuple[Actor, str]:
    actor, csrf = await _guard(request, services)
    if actor.role is not Role.ADMIN:
        raise _Denied(render(request, "error.html", {"title": "Admins only", "message":
                                                     f"Only admins manage {what}.", "back": "/admin", "csrf": ""}, 403))
    return actor, csrf


async def _admin_form(request: Request, services: ServicesDep, back: str, what: str = "webhooks") -> tuple[Actor, Any]:
    """An admin's form post with a valid CSRF token, or _Denied with the page to show."""
    actor, csrf = await _admin_only(request, services, what)
    form = await request.form(max_fields=FLOW_FORM_FIELDS)
    if not csrf or form.get("csrf_token") != csrf:
        raise _Denied(render(request, "error.html", {"title": "Form expired", "message":
                                                     "The form's security token did not match: reload and try again.",
                                                     "back": back, "csrf": ""}, 403))
    return actor, form


def _webhook_events(form: Any) -> list[str]:
    names = [str(v) for v in form.getlist("events")]
    names += [n.strip() for n in str(form.get("events_extra", "")).replace(",", " ").split() if n.strip()]
    return names


async def _webhooks_page(request: Request, services: ServicesDep, *, endpoint_id: int | None = None,
                         extra: dict[str, Any] | None = None, status_code: int = 200) -> Response:
    """The list (``endpoint_id`` None) or one endpoint with its recent deliveries; ``extra`` may hold a
    secret to show this once."""
    try:
        actor, csrf = await _admin_only(request, services)
    except _Denied as denied:
        return denied.response
    status = request.query_params.get("status", "")
    status = status if status in ("pending", "delivered", "failed") else ""
    async with services.db.transaction(write=False) as session:
        me = await users_repo.get_user(session, actor.user_id)
        counts = await webhooks_repo.delivery_counts(session, utcnow() - timedelta(days=7))
        ctx: dict[str, Any] = {"endpoints": await webhooks_repo.list_endpoints(session), "counts": counts,
                               "event_names": EVENT_NAMES, "not_in_wildcard": NOT_IN_WILDCARD, "endpoint": None,
                               "deliveries": [], "status": status, "now": utcnow()}
        if endpoint_id is not None:
            ctx["endpoint"] = await webhooks_repo.get_endpoint(session, endpoint_id)
            if ctx["endpoint"] is None:
                return render(request, "error.html", {"title": "Not found", "message":
                                                      f"webhook endpoint {endpoint_id} does not exist",
                                                      "back": "/admin/webhooks", "csrf": ""}, 404)
            ctx["deliveries"] = await webhooks_repo.list_deliveries(session, endpoint_id, status=status or None,
                                                                    before_id=None, limit=50)
    ctx.update(extra or {})
    ctx.update(actor=actor, me=me, csrf=csrf, section="webhooks", sections=SECTIONS, is_admin=True,
               flash=ctx.get("flash") or request.query_params.get("ok", ""),
               flash_error=ctx.get("flash_error") or request.query_params.get("error", ""))
    return render(request, "admin/webhook.html" if endpoint_id is not None else "admin/webhooks.html", ctx,
                  status_code)


@router.get("/webhooks")
async def webhooks_page(request: Request, services: ServicesDep) -> Response:
    return await _webhooks_page(request, services)


@router.post("/webhooks")
async def webhook_create(request: Request, services: ServicesDep) -> Response:
    """Create an endpoint and show its signing secret on the answer page (this once; never in a URL)."""
    try:
        actor, form = await _admin_form(request, services, "/admin/webhooks")
    except _Denied as denied:
        return denied.response
    url = str(form.get("url", "")).strip()
    try:
        assert services.webhooks is not None
        await services.webhooks.check_destination(url)
        async with services.db.transaction(write=True) as session:
            row, secret = await webhook_actions.create_endpoint(
                session, services.box, url=url, events=_webhook_events(form),
                description=str(form.get("description", "")), created_by=actor.user_id, now=utcnow())
    except DomainError as exc:
        return await _webhooks_page(request, services, extra={"flash_error": exc.message, "form": form},
                                    status_code=422)
    return await _webhooks_page(request, services, endpoint_id=row.id,
                                extra={"secret": secret, "flash": f"Webhook {row.url} created"})


@router.get("/webhooks/{endpoint_id}")
async def webhook_page(endpoint_id: Id, request: Request, services: ServicesDep) -> Response:
    return await _webhooks_page(request, services, endpoint_id=endpoint_id)


async def _webhook_post(request: Request, services: ServicesDep, back: str,
                        run: Callable[[Session, Any], Awaitable[str]], check_url: bool = False,
                        section: str = "webhooks") -> Response:
    try:
        _, form = await _admin_form(request, services, back, section)
    except _Denied as denied:
        return denied.response
    try:
        if check_url and services.webhooks is not None:
            await services.webhooks.check_destination(str(form.get("url", "")))
        async with services.db.transaction(write=True) as session:
            message = await run(session, form)
    except DomainError as exc:
        return RedirectResponse(f"{back}?{urlencode({'error': exc.message})}", status_code=303)
    return RedirectResponse(f"{back}?{urlencode({'ok': message})}", status_code=303)


@router.post("/webhooks/{endpoint_id}")
async def webhook_update(endpoint_id: Id, request: Request, services: ServicesDep) -> Response:
    async def run(session: Session, form: Any) -> str:
        row = await webhook_actions.update_endpoint(session, endpoint_id, url=str(form.get("url", "")),
                                                    events=_webhook_events(form),
                                                    description=str(form.get("description", "")))
        return f"Webhook {row.url} saved"
    return await _webhook_post(request, services, f"/admin/webhooks/{endpoint_id}", run, check_url=True)


@router.post("/webhooks/{endpoint_id}/toggle")
async def webhook_toggle(endpoint_id: Id, request: Request, services: ServicesDep) -> Response:
    async def run(session: Session, form: Any) -> str:
        row = await webhooks_repo.get_endpoint(session, endpoint_id)
        if row is None:
            raise NotFound(f"webhook endpoint {endpoint_id} does not exist")
        row = await webhook_actions.update_endpoint(session, endpoint_id, active=not row.active)
        return f"Webhook {row.url} {'enabled' if row.active else 'disabled'}"
    back = str(request.query_params.get("back", "")) == "list"
    return await _webhook_post(request, services, "/admin/webhooks" if back else f"/admin/webhooks/{endpoint_id}", run)


@router.post("/webhooks/{endpoint_id}/delete")
async def webhook_delete(endpoint_id: Id, request: Request, services: ServicesDep) -> Response:
    async def run(session: Session, form: Any) -> str:
        await webhook_actions.delete_endpoint(session, endpoint_id)
        return "Webhook deleted"
    return await _webhook_post(request, services, "/admin/webhooks", run)


@router.post("/webhooks/{endpoint_id}/roll-secret")
async def webhook_roll_secret(endpoint_id: Id, request: Request, services: ServicesDep) -> Response:

    try:
        _, form = await _admin_form(request, services, f"/admin/webhooks/{endpoint_id}")
    except _Denied as denied:
        return denied.response
    keep = 86_400 if form.get("keep_previous") else 0
    try:
        async with services.db.transaction(write=True) as session:
            _, secret = await webhook_actions.roll_secret(session, services.box, endpoint_id,
                                                          keep_previous_seconds=keep, now=utcnow())
    except DomainError as exc:
        return await _webhooks_page(request, services, extra={"flash_error": exc.message}, status_code=exc.status)
    return await _webhooks_page(request, services, endpoint_id=endpoint_id, extra={
        "secret": secret, "flash": "New signing secret" + (" (the old one signs too for 24 hours)" if keep else "")})


@router.post("/webhooks/{endpoint_id}/ping")
async def webhook_ping(endpoint_id: Id, request: Request, services: ServicesDep) -> Response:
    """The "Send a ping" button (HTMX): what the receiver answered."""
    try:
        await _admin_form(request, services, f"/admin/webhooks/{endpoint_id}")
    except _Denied:
        return HTMLResponse('<p class="test-result bad" role="status">Only admins can ping webhooks; reload the '
                            "page if your session expired.</p>", status_code=403)
    assert services.webhooks is not None
    try:
        result = await services.webhooks.ping(endpoint_id)
    except DomainError as exc:
        return HTMLResponse(f'<p class="test-result bad" role="status">{escape(exc.message)}</p>')
    answer = escape((result.response or "")[:300])
    if result.ok:
        return HTMLResponse(f'<div class="test-result ok" role="status"><p>The receiver answered {result.status_code} '
                            f'in {result.duration_ms} ms</p>{f"<pre>{answer}</pre>" if answer else ""}</div>')
    return HTMLResponse(f'<div class="test-result bad" role="status"><p>Failed: {escape(result.error or "")}</p>'
                        f'{f"<pre>{answer}</pre>" if answer else ""}</div>')


@router.post("/webhooks/deliveries/{delivery_id}/redeliver")
async def webhook_redeliver(delivery_id: Id, request: Request, services: ServicesDep) -> Response:

    endpoint = str(request.query_params.get("endpoint", ""))
    back = f"/admin/webhooks/{endpoint}" if endpoint.isdigit() else "/admin/webhooks"

    async def run(session: Session, form: Any) -> str:
        row = await webhook_actions.redeliver(session, delivery_id, now=utcnow())
        return f"Delivery {row.id} queued again"
    return await _webhook_post(request, services, back, run)


# --- flows: the IVR / bot builder (admins only, like webhooks) ---------------------------------------------

@functools.cache
def _timezones() -> list[str]:
    """The IANA zones this system knows, for the hours node's time zone field."""
    return sorted(zoneinfo.available_timezones())


def _flow_problems(problems: list[Any], notes: list[str]) -> tuple[dict[str, list[str]], list[str]]:
    """Problems by the node they name (shown in its card), and the rest (shown above the form)."""
    by_node: dict[str, list[str]] = {}
    general = list(notes)
    for p in problems:
        if p.node:
            by_node.setdefault(p.node, []).append(p.message)
        else:
            general.append(p.message)
    return by_node, general


async def _flows_page(request: Request, services: ServicesDep, actor: Actor, csrf: str, template: str,
                      ctx: dict[str, Any], status_code: int = 200) -> Response:
    async with services.db.transaction(write=False) as session:
        me = await users_repo.get_user(session, actor.user_id)
    ctx.update(actor=actor, me=me, csrf=csrf, section="flows", sections=SECTIONS, is_admin=True,
               flash=ctx.get("flash") or request.query_params.get("ok", ""),
               flash_error=ctx.get("flash_error") or request.query_params.get("error", ""))
    return render(request, template, ctx, status_code)


@router.get("/flows")
async def flows_page(request: Request, services: ServicesDep) -> Response:
    try:
        actor, csrf = await _admin_only(request, services, "flows")
    except _Denied as denied:
        return denied.response
    async with services.db.transaction(write=False) as session:
        flows = await flows_repo.list_flows(session)
    return await _flows_page(request, services, actor, csrf, "admin/flows.html",
                             {"flows": flows, "kinds": flow_actions.KINDS})


@router.post("/flows")
async def flow_create(request: Request, services: ServicesDep) -> Response:
    """A new flow (no version yet): on to its builder, in the locales asked for."""
    try:
        actor, form = await _admin_form(request, services, "/admin/flows", "flows")
    except _Denied as denied:
        return denied.response
    try:
        async with services.db.transaction(write=True) as session:
            row, _ = await flow_actions.create_flow(session, name=str(form.get("name", "")),
                                                    kind=str(form.get("kind", "any")),
                                                    description=str(form.get("description", "")),
                                                    created_by=actor.user_id, now=utcnow())
            flow_id, name = row.id, row.name
    except DomainError as exc:
        return RedirectResponse(f"/admin/flows?{urlencode({'error': exc.message})}", status_code=303)
    locales = ",".join(flowform.parse_locales(str(form.get("locales", ""))))
    query = {"ok": f"Flow {name} created: build it, then save its first version",
             **({"locales": locales} if locales else {})}
    return RedirectResponse(f"/admin/flows/{flow_id}?{urlencode(query)}", status_code=303)


async def _builder(request: Request, services: ServicesDep, actor: Actor, csrf: str, flow_id: int, *,
                   draft: dict[str, Any] | None = None, version: int | None = None, problems: list[Any] | None = None,
                   notes: list[str] | None = None, checked: bool = False, extra: dict[str, Any] | None = None,
                   status_code: int = 200) -> Response:
    """The builder page: the draft (the current version when none is given) as a form, its outline, the
    versions. ``version``: show that version read-only instead, with "restore"."""
    async with services.db.transaction(write=False) as session:
        row = await flows_repo.get_flow(session, flow_id)
        if row is None:
            return render(request, "error.html", {"title": "Not found", "message": f"flow {flow_id} does not exist",
                                                  "back": "/admin/flows", "csrf": ""}, 404)
        versions = await flows_repo.list_versions(session, flow_id)
        queues = await users_repo.list_queues(session)
        users = {u.id: u for u in await users_repo.list_users(session)}
        if version is not None:
            shown = await flows_repo.get_version(session, flow_id, version)
            if shown is None:
                return render(request, "error.html", {"title": "Not found", "message":
                                                      f"flow {flow_id} has no version {version}",
                                                      "back": f"/admin/flows/{flow_id}", "csrf": ""}, 404)
            draft = shown.definition
        elif draft is None:
            if row.current_version:
                draft = (await flow_actions.get_version(session, flow_id, row.current_version)).model_dump(mode="json")
            else:
                draft = flowform.starter(flowform.parse_locales(request.query_params.get("locales", "")))
    queue_names = {q.id: q.name for q in queues}
    if problems is None and version is None and row.current_version == 0 and not checked:
        problems = []  # a new flow's starter: no red before the admin has done anything
    if problems is None:
        problems = flow_domain.problems_in(draft)[1]
    by_node, general = _flow_problems(problems, notes or [])
    ctx: dict[str, Any] = {
        "flow": row, "versions": versions, "users": users, "queues": queues, "draft": draft,
        "node_types": flowform.TYPE_ORDER, "days": flow_domain.DAYS, "spans": range(flowform.HOUR_SPANS),
        "outline": flow_domain.outline(draft, queue_names), "problems_by_node": by_node,
        "general_problems": general, "problem_count": len(problems) + len(notes or []), "checked": checked,
        "viewing": version, "readonly": version is not None, "kinds": flow_actions.KINDS,
        "draft_json": json.dumps(draft, indent=2, ensure_ascii=False, default=str),
        "next_version": max([row.current_version, *(v.version for v in versions)]) + 1,
        "timezones": _timezones(),
    }
    ctx.update(extra or {})
    return await _flows_page(request, services, actor, csrf, "admin/flow.html", ctx, status_code)


@router.get("/flows/{flow_id}")
async def flow_page(flow_id: Id, request: Request, services: ServicesDep) -> Response:
    try:
        actor, csrf = await _admin_only(request, services, "flows")
    except _Denied as denied:
        return denied.response
    version = parse_id(request.query_params.get("version", ""))
    return await _builder(request, services, actor, csrf, flow_id, version=version)


@router.post("/flows/{flow_id}")
async def flow_edit(flow_id: Id, request: Request, services: ServicesDep) -> Response:
    """Every button of the builder posts the whole form here with its ``op``: ``save`` (the next
    version, or the page again with each problem beside its node and the input kept), ``validate``
    (the problems, nothing saved) or an edit (add a node, an option, a locale…; the page again)."""
    back = f"/admin/flows/{flow_id}"
    try:
        actor, form = await _admin_form(request, services, back, "flows")
    except _Denied as denied:
        return denied.response
    _, csrf = await actor_or_none(request, services)
    draft, order, notes = flowform.read_form(form)
    op = str(form.get("op") or "refresh")
    if op == "save":
        flow, problems = flow_domain.problems_in(draft)
        if flow is not None and not problems and not notes:
            try:
                async with services.db.transaction(write=True) as session:
                    saved = await flow_actions.save_version(session, flow_id, flow,
                                                            note=str(form.get("note", ""))[:500],
                                                            created_by=actor.user_id, now=utcnow())
            except DomainError as exc:
                return await _builder(request, services, actor, csrf or "", flow_id, draft=draft,
                                      notes=[exc.message], checked=True, status_code=exc.status)
            target = f"{back}?{urlencode({'ok': f'Version {saved.version} saved'})}"
            if is_htmx(request):
                return Response(status_code=200, headers={"HX-Redirect": target})
            return RedirectResponse(target, status_code=303)
        return await _builder(request, services, actor, csrf or "", flow_id, draft=draft, problems=problems,
                              notes=notes, checked=True, status_code=422,
                              extra={"flash_error": "Not saved: fix the problems shown beside the nodes"})
    flash = ""
    if op == "validate":
        problems = flow_domain.problems_in(draft)[1]
        flash = "" if problems or notes else "No problems: this flow can be saved"
        return await _builder(request, services, actor, csrf or "", flow_id, draft=draft, problems=problems,
                              notes=notes, checked=True, extra={"flash": flash})
    async with services.db.transaction(write=False) as session:
        queue_ids = [q.id for q in await users_repo.list_queues(session)]
    flash = flowform.apply(op, draft, order, form, queue_ids)
    return await _builder(request, services, actor, csrf or "", flow_id, draft=draft, notes=notes,
                          checked=bool(form.get("checked")), extra={"flash": flash})


@router.post("/flows/{flow_id}/restore")
async def flow_restore(flow_id: Id, request: Request, services: ServicesDep) -> Response:
    """An older version saved again as the newest (versions are never changed)."""
    back = f"/admin/flows/{flow_id}"

    async def run(session: Session, form: Any) -> str:
        number = parse_id(str(form.get("version", "")))
        if number is None:
            raise ValidationFailed("pick a version to restore", field="version")
        definition = await flow_actions.get_version(session, flow_id, number)
        saved = await flow_actions.save_version(session, flow_id, definition, note=f"restored from version {number}",
                                                created_by=actor.user_id, now=utcnow())
        return f"Version {number} restored as version {saved.version}"
    try:
        actor, _ = await _admin_only(request, services, "flows")
    except _Denied as denied:
        return denied.response
    return await _webhook_post(request, services, back, run, section="flows")


@router.post("/flows/{flow_id}/settings")
async def flow_settings(flow_id: Id, request: Request, services: ServicesDep) -> Response:
    async def run(session: Session, form: Any) -> str:
        row = await flow_actions.update_flow(session, flow_id, name=str(form.get("name", "")),
                                             kind=str(form.get("kind", "any")),
                                             description=str(form.get("description", "")), now=utcnow())
        return f"Flow {row.name} saved"
    return await _webhook_post(request, services, f"/admin/flows/{flow_id}", run, section="flows")


# --- knowledge base (supervisors and admins write; the REST API has the rest: docs/self-service.md) -----------

async def _kb_ctx(session: Session, actor: Actor, request: Request, locales: tuple[str, ...]) -> dict[str, Any]:
    articles = await kb_repo.list_articles(session, limit=500)
    translations = await kb_repo.translations_of(session, [a.id for a in articles])
    rows = []
    for a in articles:
        versions = []
        for t in translations[a.id]:
            status = kb_domain.status_of(t.published_at, t.title, t.body, t.summary,
                                         (t.published_title, t.published_body, t.published_summary))
            versions.append({"locale": t.locale, "title": t.title, "status": status, "slug": t.slug})
        rows.append({"id": a.id, "visibility": a.visibility, "category_id": a.category_id, "versions": versions})
    ctx: dict[str, Any] = {"articles": rows, "categories": await kb_repo.list_categories(session), "locales": locales,
                           "can_write": actor.sees_everything}
    article_id = parse_id(request.query_params.get("article"))
    locale = request.query_params.get("locale", locales[0])
    if article_id is not None and locale in locales:
        article = await kb_repo.get_article(session, article_id)
        if article is not None:
            ctx["editing"] = {"article": article, "locale": locale,
                              "version": await kb_repo.translation(session, article_id, locale)}
    return ctx


@router.get("/kb")
async def kb_page(request: Request, services: ServicesDep) -> Response:
    locales = kb_domain.parse_locales(services.settings.kb_locales)
    return await _page(request, services, "kb", lambda session, actor: _kb_ctx(session, actor, request, locales))


@router.post("/kb")
async def kb_create(request: Request, services: ServicesDep) -> Response:
    locales = kb_domain.parse_locales(services.settings.kb_locales)

    async def run(session: Session, actor: Actor, form: Any) -> str:
        row, tr = await kb_actions.create_article(
            session, locale=str(form.get("locale", "")), title=str(form.get("title", "")),
            body=str(form.get("body", "")), summary=str(form.get("summary", "")),
            category_id=parse_id(form.get("category_id")), visibility=str(form.get("visibility", "public")),
            created_by=actor.user_id, locales=locales, now=utcnow())
        return f"Article {row.id} saved as a draft in {tr.locale}"
    return await _post(request, services, "/admin/kb", run, role=Role.SUPERVISOR)


@router.post("/kb/{article_id}/{locale}")
async def kb_save(article_id: Id, locale: str, request: Request, services: ServicesDep) -> Response:
    """Save the draft of one locale, and publish or unpublish it (the button pressed), or delete it."""
    locales = kb_domain.parse_locales(services.settings.kb_locales)
    loc = locale if locale in locales else locales[0]
    back = f"/admin/kb?{urlencode({'article': article_id, 'locale': loc})}"

    async def run(session: Session, actor: Actor, form: Any) -> str:
        kb_domain.check_locale(locale, locales)
        now = utcnow()
        if form.get("delete"):
            await kb_actions.delete_translation(session, article_id, loc)
            return f"The {loc} version was deleted"
        await kb_actions.save_translation(
            session, article_id, loc, title=str(form.get("title", "")), summary=str(form.get("summary", "")),
            body=str(form.get("body", "")), slug=str(form.get("slug", "")) or None, updated_by=actor.user_id,
            locales=locales, now=now)
        await kb_actions.update_article(session, article_id, visibility=str(form.get("visibility", "public")),
                                        category_id=parse_id(form.get("category_id")), now=now)
        if form.get("publish"):
            await kb_actions.publish(session, article_id, loc, now=now)
            return f"Published in {loc}"
        if form.get("unpublish"):
            await kb_actions.unpublish(session, article_id, loc, now=now)
            return f"Unpublished in {loc}"
        return f"Draft saved in {loc}"

    async def redirect(response: Response) -> Response:
        location = response.headers.get("location", "")
        if location.startswith(back + "?"):  # keep the article open: one query string, not two
            response.headers["location"] = location.replace("?", "&").replace("&", "?", 1)
        return response
    return await redirect(await _post(request, services, back, run, role=Role.SUPERVISOR))
