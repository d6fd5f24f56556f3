from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import ColumnElement, case, exists, func, not_, or_, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from threadline.db.models import ContactRow, ConversationRow, IdentityRow
from threadline.db.repos.access import conversation_where
from threadline.db.repos.common import decode_cursor, encode_cursor
from threadline.domain.access import Visibility
from threadline.domain.contacts import IdentityValue
from threadline.domain.errors import ValidationFailed


async def get_contact(session: AsyncSession, contact_id: int) -> ContactRow | None:
    return await session.get(ContactRow, contact_id)


async def find_identity(session: AsyncSession, ident: IdentityValue) -> IdentityRow | None:
    stmt = select(IdentityRow).where(
        IdentityRow.kind == ident.kind.value, IdentityRow.scope == ident.scope, IdentityRow.value == ident.value
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def find_identities(session: AsyncSession, idents: Sequence[IdentityValue]) -> dict[IdentityValue, IdentityRow]:
    """The stored rows of these identities (one query; absent ones are left out)."""
    return (await find_identities_and_owners(session, idents))[0]


async def find_identities_and_owners(session: AsyncSession, idents: Sequence[IdentityValue]
                                     ) -> tuple[dict[IdentityValue, IdentityRow], dict[int, ContactRow]]:
    """The stored rows of these identities and the contacts that own them, in one query."""
    wanted = {(i.kind.value, i.scope, i.value): i for i in idents}
    if not wanted:
        return {}, {}
    stmt = (select(IdentityRow, ContactRow).join(ContactRow, ContactRow.id == IdentityRow.contact_id)
            .where(  # all three, so that the (kind, scope, value) index is used
                IdentityRow.kind.in_({k for k, _, _ in wanted}), IdentityRow.scope.in_({s for _, s, _ in wanted}),
                IdentityRow.value.in_({v for _, _, v in wanted})))
    out: dict[IdentityValue, IdentityRow] = {}
    owners: dict[int, ContactRow] = {}
    for row, contact in (await session.execute(stmt)).all():
        ident = wanted.get((row.kind, row.scope, row.value))
        if ident is not None:
            out[ident] = row
            owners[contact.id] = contact
    return out, owners


async def get_contacts(session: AsyncSession, contact_ids: Sequence[int]) -> dict[int, ContactRow]:
    if not contact_ids:
        return {}
    rows = await session.execute(select(ContactRow).where(ContactRow.id.in_(set(contact_ids))))
    return {row.id: row for row in rows.scalars()}


async def get_identity(session: AsyncSession, identity_id: int) -> IdentityRow | None:
    return await session.get(IdentityRow, identity_id)


async def get_identities(session: AsyncSession, ids: set[int]) -> dict[int, IdentityRow]:
    if not ids:
        return {}
    return {i.id: i for i in (await session.execute(select(IdentityRow).where(IdentityRow.id.in_(ids)))).scalars()}


async def identities_of(session: AsyncSession, contact_ids: Sequence[int]) -> dict[int, list[IdentityRow]]:
    out: dict[int, list[IdentityRow]] = {cid: [] for cid in contact_ids}
    if not contact_ids:
        return out
    stmt = select(IdentityRow).where(IdentityRow.contact_id.in_(contact_ids)).order_by(IdentityRow.id)
    for row in (await session.execute(stmt)).scalars():
        out[row.contact_id].append(row)
    return out


async def names_of(session: AsyncSession, contact_ids: Sequence[int]) -> dict[int, str]:
    if not contact_ids:
        return {}
    rows = await session.execute(select(ContactRow.id, ContactRow.name).where(ContactRow.id.in_(set(contact_ids))))
    return {cid: name for cid, name in rows.all()}


def _sees(viewer: Visibility) -> ColumnElement[bool]:
    """The actor sees this conversation (the rule of domain/access.py, in SQL)."""
    seen = conversation_where(viewer)
    return true() if seen is None else seen


async def conversation_visibility(session: AsyncSession, contact_ids: Sequence[int], viewer: Visibility
                                  ) -> dict[int, tuple[int, int]]:
    """Per contact: (its conversations, those the actor sees); contacts without any are (0, 0)."""
    out = {cid: (0, 0) for cid in contact_ids}
    if not contact_ids:
        return out
    c = ConversationRow
    stmt = (select(c.contact_id, func.count(), func.sum(case((_sees(viewer), 1), else_=0)))
            .where(c.contact_id.in_(set(contact_ids))).group_by(c.contact_id))
    for cid, total, seen in (await session.execute(stmt)).all():
        out[cid] = (int(total), int(seen or 0))
    return out


async def search_contacts(
    session: AsyncSession, q: str | None, cursor: str | None, limit: int, viewer: Visibility | None = None
) -> tuple[Sequence[ContactRow], str | None]:
    """Contacts by name or identity, newest first; for an agent (``viewer``) only those they may see: one
    of their conversations is visible to them, or they have none yet."""
    stmt = (select(ContactRow).where(ContactRow.merged_into_id.is_(None))  # merged ones live on in their target
            .order_by(ContactRow.id.desc()).limit(limit + 1))
    if viewer is not None and viewer.limited:
        c = ConversationRow
        stmt = stmt.where(or_(exists().where(c.contact_id == ContactRow.id, _sees(viewer)),
                              not_(exists().where(c.contact_id == ContactRow.id))))
    if q:
        needle = f"%{q.strip().lower()}%"
        stmt = stmt.where(or_(ContactRow.search_text.like(needle)))
    if cursor:
        (last_id,) = decode_cursor(cursor, 1)
        if not isinstance(last_id, int):
            raise ValidationFailed("cursor is not one this API gave out", field="cursor")
        stmt = stmt.where(ContactRow.id < last_id)
    rows = (await session.execute(stmt)).scalars().all()
    next_cursor = encode_cursor(rows[limit - 1].id) if len(rows) > limit else None
    return rows[:limit], next_cursor
