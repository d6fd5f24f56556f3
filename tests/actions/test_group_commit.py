"""actions/group_commit.py: writes that arrive together share one transaction (SQLite), each in a savepoint;
one that fails is rolled back alone with its events and its caller gets its own error."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select

from threadline.actions.events import emit
from threadline.actions.group_commit import GroupCommit
from threadline.actions.views import contact_view
from threadline.db.models import ContactRow, OutboxEventRow
from threadline.domain.events import Audience, ContactCreated
from threadline.services import Services


async def test_writes_that_arrive_together_share_a_transaction_and_fail_alone(services: Services) -> None:
    writes = GroupCommit(services.db)

    def create(name: str, fail: bool = False):  # type: ignore[no-untyped-def]
        async def work(session):  # type: ignore[no-untyped-def]
            row = ContactRow(name=name, attributes={})
            session.add(row)
            await session.flush()
            emit(session, ContactCreated(contact=contact_view(row, [])), Audience())
            if fail:
                raise ValueError(f"{name} refused")
            return row.id
        return work

    results = await asyncio.gather(*(writes.run(create(f"c{i}", fail=i == 3)) for i in range(8)),
                                   return_exceptions=True)
    assert isinstance(results[3], ValueError) and str(results[3]) == "c3 refused"
    ids = [r for i, r in enumerate(results) if i != 3]
    assert all(isinstance(i, int) for i in ids) and len(set(ids)) == 7
    async with services.db.transaction(write=False) as s:
        names = set((await s.execute(select(ContactRow.name))).scalars())
        events = (await s.execute(select(func.count()).select_from(OutboxEventRow)
                                  .where(OutboxEventRow.name == "contact.created"))).scalar_one()
    assert names >= {f"c{i}" for i in range(8) if i != 3} and "c3" not in names
    assert events == 7  # the refused one's event went with its savepoint
    if services.db.is_sqlite:
        assert writes.batches < 8  # the first alone, the rest together
    # one alone: no savepoint, its error is its caller's
    with pytest.raises(ValueError, match="alone refused"):
        await writes.run(create("alone", fail=True))
