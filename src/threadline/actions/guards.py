"""Guards: checks a feature package adds to a core action, for a state only the package knows.

The core never names a feature package (pyproject.toml, "The core names no feature package"), and a
package consumes the core through events; but some rules must stop an action before it happens, which
an event (after the commit) cannot. Such a rule registers here under a name, from the package's wiring
point (``services.py`` builds the package's loops, which register it); the core action calls
``check_sensitive`` and any guard may refuse by raising a ``DomainError`` (a 409 ``Conflict``, say).

Sensitive actions on a contact (``SENSITIVE``): changing its identities or attributes, and merging it
with another. Voice registers the rule that a caller on a live call whose queue asks for it must be
verified first (docs/channels/voice.md). Only people are guarded: the system (inbound messages, the
CRM, automatic merges) passes no actor and is not checked.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from sqlalchemy.ext.asyncio import AsyncSession

# (session, the contacts the action touches, what it does, as in "before {what}") → None, or raise
SensitiveGuard = Callable[[AsyncSession, Sequence[int], str], Awaitable[None]]

_sensitive: dict[str, SensitiveGuard] = {}


def register_sensitive(name: str, guard: SensitiveGuard) -> None:
    """Add (or, under the same name, replace) a guard of sensitive contact actions: registering twice,
    as every ``Services.build`` of a process does, keeps one."""
    _sensitive[name] = guard


def sensitive_guards() -> dict[str, SensitiveGuard]:
    return dict(_sensitive)


async def check_sensitive(session: AsyncSession, contact_ids: Sequence[int], what: str) -> None:
    """Run every guard of sensitive contact actions; the first that refuses raises."""
    ids = sorted({i for i in contact_ids if i is not None})
    if not ids:
        return
    for guard in list(_sensitive.values()):
        await guard(session, ids, what)
