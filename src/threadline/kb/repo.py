"""The knowledge base's queries, and the statements of its search index on each database.

SQLite: the FTS5 table ``kb_fts(title, body, stems, facets)`` (``unicode61 remove_diacritics 2``: accents
folded), rowid = the translation's id; ranked with ``bm25`` (title 10, body 1, stems 4), highlighted with
``highlight()`` and ``snippet()``. PostgreSQL: ``kb_translations.search_vector`` written with the locale's
text search configuration (english, spanish, italian… ``simple`` otherwise), its accent-folding copy
``kb_<name>`` (unaccent, then the stemmer) when the migration could make one; ranked with ``ts_rank``,
highlighted with ``ts_headline``.

The index statements (``index_translation``, ``unindex_translation``) are called by ``actions`` in the
transaction that publishes, unpublishes or deletes, so the index never disagrees with what is published."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, bindparam, case, delete, func, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from threadline.kb import domain
from threadline.kb.models import (
    KbArticleRow,
    KbCategoryRow,
    KbFeedbackRow,
    KbImageRow,
    KbSearchMissRow,
    KbTranslationRow,
)


def dialect(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


# ---------------------------------------------------------------------------------------------------
# Categories


async def list_categories(session: AsyncSession) -> Sequence[KbCategoryRow]:
    stmt = select(KbCategoryRow).order_by(KbCategoryRow.position, KbCategoryRow.id)
    return (await session.execute(stmt)).scalars().all()


async def get_category(session: AsyncSession, category_id: int) -> KbCategoryRow | None:
    return await session.get(KbCategoryRow, category_id)


async def category_by_slug(session: AsyncSession, slug: str) -> KbCategoryRow | None:
    return (await session.execute(select(KbCategoryRow).where(KbCategoryRow.slug == slug))).scalar_one_or_none()


# ---------------------------------------------------------------------------------------------------
# Articles and translations


async def get_article(session: AsyncSession, article_id: int) -> KbArticleRow | None:
    return await session.get(KbArticleRow, article_id)


async def list_articles(session: AsyncSession, *, category_id: int | None = None, visibility: str | None = None,
                        limit: int = 200, after_id: int = 0) -> Sequence[KbArticleRow]:
    stmt = select(KbArticleRow).where(KbArticleRow.id > after_id)
    if category_id is not None:
        stmt = stmt.where(KbArticleRow.category_id == category_id)
    if visibility is not None:
        stmt = stmt.where(KbArticleRow.visibility == visibility)
    return (await session.execute(stmt.order_by(KbArticleRow.id).limit(limit))).scalars().all()


async def translations_of(session: AsyncSession, article_ids: Sequence[int]) -> dict[int, list[KbTranslationRow]]:
    out: dict[int, list[KbTranslationRow]] = {i: [] for i in article_ids}
    if not article_ids:
        return out
    stmt = (select(KbTranslationRow).where(KbTranslationRow.article_id.in_(list(article_ids)))
            .order_by(KbTranslationRow.article_id, KbTranslationRow.locale))
    for row in (await session.execute(stmt)).scalars():
        out[row.article_id].append(row)
    return out


async def translation(session: AsyncSession, article_id: int, locale: str) -> KbTranslationRow | None:
    stmt = select(KbTranslationRow).where(KbTranslationRow.article_id == article_id,
                                          KbTranslationRow.locale == locale)
    return (await session.execute(stmt)).scalar_one_or_none()


async def slug_owner(session: AsyncSession, locale: str, slug: str) -> int | None:
    """The article whose translation in ``locale`` has this slug."""
    stmt = select(KbTranslationRow.article_id).where(KbTranslationRow.locale == locale, KbTranslationRow.slug == slug)
    return (await session.execute(stmt)).scalar_one_or_none()


@dataclass(frozen=True)
class Published:
    """A published translation with what the help center needs of its article."""

    translation: KbTranslationRow
    article: KbArticleRow


async def published(session: AsyncSession, *, visibilities: Sequence[str], locale: str | None = None,
                    slug: str | None = None, category_id: int | None = None, article_id: int | None = None,
                    limit: int = 1000) -> list[Published]:
    stmt = (select(KbTranslationRow, KbArticleRow).join(KbArticleRow, KbArticleRow.id == KbTranslationRow.article_id)
            .where(KbTranslationRow.published_at.is_not(None), KbArticleRow.visibility.in_(list(visibilities))))
    if locale is not None:
        stmt = stmt.where(KbTranslationRow.locale == locale)
    if slug is not None:
        stmt = stmt.where(KbTranslationRow.slug == slug)
    if category_id is not None:
        stmt = stmt.where(KbArticleRow.category_id == category_id)
    if article_id is not None:
        stmt = stmt.where(KbTranslationRow.article_id == article_id)
    stmt = stmt.order_by(KbArticleRow.position, KbTranslationRow.published_title, KbTranslationRow.id).limit(limit)
    return [Published(t, a) for t, a in (await session.execute(stmt)).all()]


async def published_counts(session: AsyncSession, locale: str, visibilities: Sequence[str]) -> dict[int | None, int]:
    """Published articles per category in a locale (the help center's home)."""
    stmt = (select(KbArticleRow.category_id, func.count())
            .join(KbTranslationRow, KbTranslationRow.article_id == KbArticleRow.id)
            .where(KbTranslationRow.locale == locale, KbTranslationRow.published_at.is_not(None),
                   KbArticleRow.visibility.in_(list(visibilities)))
            .group_by(KbArticleRow.category_id))
    return {c: n for c, n in (await session.execute(stmt)).all()}


# ---------------------------------------------------------------------------------------------------
# The search index


async def _pg_config(session: AsyncSession, locale: str) -> str:
    """The text search configuration of a locale: the accent-folding copy ``kb_<name>`` made by the
    migration when PostgreSQL has the unaccent extension, else the server's own (accents then matter)."""
    name = domain.pg_config(locale)
    key = str(session.get_bind().url)
    if key not in _FOLDING:
        rows = await session.execute(text("SELECT cfgname FROM pg_ts_config WHERE cfgname LIKE 'kb\\_%'"))
        _FOLDING[key] = {r[0][3:] for r in rows}
    return f"kb_{name}" if name in _FOLDING[key] else name


_FOLDING: dict[str, set[str]] = {}  # database URL → the configurations with an accent-folding copy


async def index_translation(session: AsyncSession, row: KbTranslationRow, visibility: str) -> None:
    """Put a published translation in the index (replacing what was there)."""
    body = f"{row.published_summary or ''} {row.published_text or ''}".strip()
    if dialect(session) == "postgresql":
        await session.execute(text(
            "UPDATE kb_translations SET search_vector = "
            "setweight(to_tsvector(CAST(:cfg AS regconfig), :title), 'A') || "
            "setweight(to_tsvector(CAST(:cfg AS regconfig), :body), 'B') WHERE id = :id"),
            {"cfg": await _pg_config(session, row.locale), "title": row.published_title or "", "body": body,
             "id": row.id})
        return
    await session.execute(text("DELETE FROM kb_fts WHERE rowid = :id"), {"id": row.id})
    await session.execute(text(
        "INSERT INTO kb_fts(rowid, title, body, stems, facets) VALUES (:id, :title, :body, :stems, :facets)"),
        {"id": row.id, "title": row.published_title or "", "body": body,
         "stems": domain.stem_text(row.locale, f"{row.published_title or ''} {body}"),
         "facets": domain.facet_tokens(row.locale, visibility)})


async def unindex_translation(session: AsyncSession, translation_id: int) -> None:
    if dialect(session) == "postgresql":
        await session.execute(text("UPDATE kb_translations SET search_vector = NULL WHERE id = :id"),
                              {"id": translation_id})
        return
    await session.execute(text("DELETE FROM kb_fts WHERE rowid = :id"), {"id": translation_id})


@dataclass(frozen=True)
class Hit:
    translation_id: int
    article_id: int
    locale: str
    slug: str
    title: str
    title_html: str  # escaped, the words found in <mark>
    snippet_html: str
    category_id: int | None
    visibility: str
    score: float  # higher is better


_SQLITE_SEARCH = text(
    "SELECT t.id, t.article_id, t.locale, t.slug, t.published_title, a.category_id, a.visibility, "
    "highlight(kb_fts, 0, :ms, :me) AS title_h, snippet(kb_fts, 1, :ms, :me, '…', 24) AS snip, "
    "bm25(kb_fts, 10.0, 1.0, 4.0, 0.0) AS rank "
    "FROM kb_fts JOIN kb_translations t ON t.id = kb_fts.rowid JOIN kb_articles a ON a.id = t.article_id "
    "WHERE kb_fts MATCH :q ORDER BY rank LIMIT :n")


_PG_SEARCH = text(
        "WITH q AS (SELECT to_tsquery(CAST(:cfg AS regconfig), :tsq) AS q), "
        "best AS (SELECT t.id, ts_rank(t.search_vector, q.q) AS rank FROM kb_translations t "
        "JOIN kb_articles a ON a.id = t.article_id, q "
        "WHERE t.locale = :loc AND t.search_vector @@ q.q AND a.visibility IN :vis "
        "ORDER BY rank DESC, t.id LIMIT :n) "
        "SELECT t.id, t.article_id, t.locale, t.slug, t.published_title, a.category_id, a.visibility, "
        "ts_headline(CAST(:cfg AS regconfig), t.published_title, q.q, :topts) AS title_h, "
        "ts_headline(CAST(:cfg AS regconfig), coalesce(t.published_summary, '') || ' ' || "
        "coalesce(t.published_text, ''), q.q, :sopts) AS snip, best.rank "
        "FROM best JOIN kb_translations t ON t.id = best.id JOIN kb_articles a ON a.id = t.article_id, q "
        "ORDER BY best.rank DESC, t.id").bindparams(bindparam("vis", expanding=True))


async def search(session: AsyncSession, query: domain.Query, locale: str, visibilities: Sequence[str],
                 limit: int = 10) -> list[Hit]:
    """Published translations in ``locale`` matching the query, best first: every word first, and when
    that finds nothing, any of them."""
    if query.empty:
        return []
    for any_word in (False, True):
        if any_word and len(query.words) < 2:
            break
        hits = await _search(session, query, locale, visibilities, limit, any_word)
        if hits:
            return hits
    return []


async def _search(session: AsyncSession, query: domain.Query, locale: str, visibilities: Sequence[str], limit: int,
                  any_word: bool) -> list[Hit]:
    if dialect(session) == "postgresql":
        tsq = domain.pg_tsquery(query, any_word=any_word)
        if not tsq:
            return []
        marks = f"StartSel={domain.MARK_START}, StopSel={domain.MARK_END}, HighlightAll=true"
        rows = (await session.execute(_PG_SEARCH, {
            "cfg": await _pg_config(session, locale), "tsq": tsq, "loc": locale, "vis": list(visibilities), "n": limit,
            "topts": marks,
            "sopts": f"StartSel={domain.MARK_START}, StopSel={domain.MARK_END}, MaxWords=30, MinWords=12, "
                     "MaxFragments=2, FragmentDelimiter=\" … \""})).all()
        return [Hit(r[0], r[1], r[2], r[3], r[4] or "", domain.safe_snippet(r[7]), domain.safe_snippet(r[8]), r[5],
                    r[6], float(r[9])) for r in rows]
    match = domain.fts5_match(query, locale, visibilities, any_word=any_word)
    rows = (await session.execute(_SQLITE_SEARCH, {"ms": domain.MARK_START, "me": domain.MARK_END, "q": match,
                                                   "n": limit})).all()
    return [Hit(r[0], r[1], r[2], r[3], r[4] or "", domain.safe_snippet(r[7]), domain.safe_snippet(r[8]), r[5], r[6],
                -float(r[9])) for r in rows]


# ---------------------------------------------------------------------------------------------------
# Feedback and searches without results


async def upsert_feedback(session: AsyncSession, translation_id: int, visitor: str, helpful: bool,
                          now: datetime) -> None:
    insert = pg_insert if dialect(session) == "postgresql" else sqlite_insert
    stmt = insert(KbFeedbackRow).values(translation_id=translation_id, visitor=visitor, helpful=helpful,
                                        created_at=now)
    stmt = stmt.on_conflict_do_update(index_elements=["translation_id", "visitor"],
                                      set_={"helpful": helpful, "created_at": now})
    await session.execute(stmt)


async def upsert_miss(session: AsyncSession, locale: str, query: str, now: datetime) -> None:
    insert = pg_insert if dialect(session) == "postgresql" else sqlite_insert
    stmt = insert(KbSearchMissRow).values(locale=locale, query=query, count=1, first_at=now, last_at=now)
    stmt = stmt.on_conflict_do_update(index_elements=["locale", "query"],
                                      set_={"count": KbSearchMissRow.count + 1, "last_at": now})
    await session.execute(stmt)


@dataclass(frozen=True)
class FeedbackSummary:
    article_id: int
    locale: str
    slug: str
    title: str
    helpful: int
    not_helpful: int


async def feedback_summary(session: AsyncSession, limit: int = 100) -> list[FeedbackSummary]:
    """Votes per translation, the most 'not helpful' first."""
    yes = func.sum(case((KbFeedbackRow.helpful.is_(True), 1), else_=0))
    stmt = (select(KbTranslationRow.article_id, KbTranslationRow.locale, KbTranslationRow.slug,
                   KbTranslationRow.title, func.count(), yes)
            .join(KbFeedbackRow, KbFeedbackRow.translation_id == KbTranslationRow.id)
            .group_by(KbTranslationRow.id, KbTranslationRow.article_id, KbTranslationRow.locale,
                      KbTranslationRow.slug, KbTranslationRow.title))
    rows = (await session.execute(stmt)).all()
    out = [FeedbackSummary(a, loc, s, t, int(y or 0), int(n) - int(y or 0)) for a, loc, s, t, n, y in rows]
    out.sort(key=lambda f: (-f.not_helpful, f.helpful, f.article_id))
    return out[:limit]


async def misses(session: AsyncSession, *, locale: str | None = None, limit: int = 100) -> Sequence[KbSearchMissRow]:
    stmt = select(KbSearchMissRow)
    if locale is not None:
        stmt = stmt.where(KbSearchMissRow.locale == locale)
    stmt = stmt.order_by(KbSearchMissRow.count.desc(), KbSearchMissRow.last_at.desc()).limit(limit)
    return (await session.execute(stmt)).scalars().all()


async def delete_misses(session: AsyncSession, locale: str, query: str) -> int:
    result = await session.execute(delete(KbSearchMissRow).where(and_(KbSearchMissRow.locale == locale,
                                                                      KbSearchMissRow.query == query)))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------------------------------
# Images


async def get_image(session: AsyncSession, sha256: str) -> KbImageRow | None:
    return await session.get(KbImageRow, sha256)
