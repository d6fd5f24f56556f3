"""Create and configure channel instances. Credentials are validated by the adapter's Config and
encrypted at rest; they are never returned by the API."""

from __future__ import annotations

import secrets
from types import UnionType
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, SecretStr, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from threadline.actions.events import emit
from threadline.channels.base import ChannelAdapter
from threadline.channels.registry import adapters, get_adapter_class
from threadline.db.models import ChannelInstanceRow
from threadline.db.repos import channels as repo
from threadline.db.repos import users as users_repo
from threadline.domain.errors import Conflict, NotFound, ValidationFailed
from threadline.domain.events import Audience, ChannelChanged
from threadline.security import SecretBox


def _adapter_cls(kind: str) -> type[ChannelAdapter]:
    cls = get_adapter_class(kind)
    if cls is None:
        raise ValidationFailed(f"unknown channel kind {kind!r}; installed: {', '.join(sorted(adapters()))}",
                               field="kind")
    return cls


def validate_config(cls: type[ChannelAdapter], config: dict[str, Any]) -> BaseModel:
    try:
        return cls.Config.model_validate(config)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise ValidationFailed(f"config.{loc}: {err['msg']}", field=f"config.{loc}") from None


MASK = "********"  # how secrets are shown; sent back unchanged, it means "keep the saved value"
# Settings that say where (and how) a secret is sent: a base URL, a host, its port and TLS settings.
DESTINATION_SUFFIXES = ("_url", "_host", "_port", "_security", "_verify_tls")


def _is_secret(annotation: Any) -> bool:
    if annotation is SecretStr:
        return True
    return get_origin(annotation) in (Union, UnionType) and SecretStr in get_args(annotation)


def secret_destinations(cls: type[ChannelAdapter]) -> dict[str, tuple[str, ...]]:
    """Per secret field of a channel's config, the settings that say where it is sent. An adapter may say
    it (``secret_destinations``; ``()`` for a secret that only signs or checks); otherwise a secret goes
    to the destination settings sharing its prefix (``smtp_password`` → ``smtp_host``, ``smtp_port``…),
    or to every destination setting when none does (``auth_token`` → ``api_base_url``)."""
    fields = cls.Config.model_fields
    names = [n for n, f in fields.items() if _is_secret(f.annotation)]
    places = [n for n in fields if n not in names and n.endswith(DESTINATION_SUFFIXES)]
    out: dict[str, tuple[str, ...]] = {}
    for name in names:
        if name in cls.secret_destinations:
            out[name] = tuple(cls.secret_destinations[name])
            continue
        prefix = name.split("_", 1)[0] + "_"
        out[name] = tuple(p for p in places if p.startswith(prefix)) or tuple(places)
    return out


def with_saved_secrets(cls: type[ChannelAdapter], saved: dict[str, Any], submitted: dict[str, Any]) -> BaseModel:
    """``submitted`` over the ``saved`` config (revealed): a secret left out or masked keeps its saved
    value, but only while the settings that say where it is sent are unchanged. A saved Twilio token or
    SMTP password is never sent to a host the admin types without typing the secret again."""
    model = validate_config(cls, {**saved, **{k: v for k, v in submitted.items() if v != MASK}})
    new = dump_config(model)
    for secret, places in secret_destinations(cls).items():
        kept = secret not in submitted or submitted[secret] == MASK
        moved = [p for p in places if new.get(p) != saved.get(p)]
        if kept and saved.get(secret) is not None and moved:
            raise ValidationFailed(f"config.{secret}: type it again to use it with the new {moved[0]}; a saved "
                                   "secret is only sent where it was saved for", field=f"config.{secret}")
    return model


def dump_config(model: BaseModel) -> dict[str, Any]:
    """The config with secrets revealed, for encryption only."""
    out: dict[str, Any] = {}
    for key, value in model:
        out[key] = value.get_secret_value() if isinstance(value, SecretStr) else value
    return out


def public_config(model: BaseModel) -> dict[str, Any]:
    """The config with secrets masked, for the API and admin pages."""
    return {k: (MASK if isinstance(v, SecretStr) else v) for k, v in model}


def load_config(box: SecretBox, row: ChannelInstanceRow) -> BaseModel:
    cls = _adapter_cls(row.kind)
    return cls.Config.model_validate(box.decrypt(row.config_encrypted))


async def create_channel(session: AsyncSession, box: SecretBox, *, kind: str, name: str,
                         config: dict[str, Any], default_queue_id: int | None = None,
                         enabled: bool = True) -> ChannelInstanceRow:
    cls = _adapter_cls(kind)
    name = name.strip()
    if not name or len(name) > 100:
        raise ValidationFailed("a channel name is 1-100 characters", field="name")
    if await repo.get_channel_by_name(session, name) is not None:
        raise Conflict(f"a channel named {name!r} already exists", field="name")
    if default_queue_id is not None and await users_repo.get_queue(session, default_queue_id) is None:
        raise ValidationFailed(f"queue {default_queue_id} does not exist", field="default_queue_id")
    model = validate_config(cls, config)
    row = ChannelInstanceRow(kind=kind, name=name, key=secrets.token_urlsafe(18),
                             config_encrypted=box.encrypt(dump_config(model)), enabled=enabled,
                             default_queue_id=default_queue_id)
    session.add(row)
    await session.flush()
    _changed(session, row)
    return row


async def update_channel(session: AsyncSession, box: SecretBox, channel_id: int, *, name: str | None = None,
                         config: dict[str, Any] | None = None, default_queue_id: int | None = None,
                         enabled: bool | None = None) -> ChannelInstanceRow:
    row = await repo.get_channel(session, channel_id)
    if row is None:
        raise NotFound(f"channel {channel_id} does not exist")
    if name is not None and name.strip() != row.name:
        if await repo.get_channel_by_name(session, name.strip()) is not None:
            raise Conflict(f"a channel named {name!r} already exists", field="name")
        row.name = name.strip()
    if config is not None:
        model = with_saved_secrets(_adapter_cls(row.kind), dump_config(load_config(box, row)), config)
        row.config_encrypted = box.encrypt(dump_config(model))
    if default_queue_id is not None:
        if await users_repo.get_queue(session, default_queue_id) is None:
            raise ValidationFailed(f"queue {default_queue_id} does not exist", field="default_queue_id")
        row.default_queue_id = default_queue_id
    if enabled is not None:
        row.enabled = enabled
    await session.flush()
    _changed(session, row)
    return row


def _changed(session: AsyncSession, row: ChannelInstanceRow) -> None:
    emit(session, ChannelChanged(channel_id=row.id, kind=row.kind, enabled=row.enabled), Audience(supervisors=False))
