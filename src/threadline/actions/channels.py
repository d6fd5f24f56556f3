"""Create and configure channel instances. Credentials are validated by the adapter's Config and
encrypted at rest; they are never returned by the API."""

from __future__ import annotations

import secrets
from typing import Any

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


def _validate_config(cls: type[ChannelAdapter], config: dict[str, Any]) -> BaseModel:
    try:
        return cls.Config.model_validate(config)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise ValidationFailed(f"config.{loc}: {err['msg']}", field=f"config.{loc}") from None


def dump_config(model: BaseModel) -> dict[str, Any]:
    """The config with secrets revealed, for encryption only."""
    out: dict[str, Any] = {}
    for key, value in model:
        out[key] = value.get_secret_value() if isinstance(value, SecretStr) else value
    return out


def public_config(model: BaseModel) -> dict[str, Any]:
    """The config with secrets masked, for the API and admin pages."""
    return {k: ("********" if isinstance(v, SecretStr) else v) for k, v in model}


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
    model = _validate_config(cls, config)
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
        current = dump_config(load_config(box, row))
        merged = {**current, **{k: v for k, v in config.items() if v != "********"}}
        row.config_encrypted = box.encrypt(dump_config(_validate_config(_adapter_cls(row.kind), merged)))
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
