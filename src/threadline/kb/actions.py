"""The knowledge base's writes: categories, articles, their translations (a draft saved, published,
unpublished), feedback and searches without results, images.

Publishing copies the draft to the published fields, renders its Markdown to sanitised HTML once, and
puts it in the search index in the same transaction; unpublishing and deleting take it out in the same
transaction too. An edit of a published translation changes only the draft: the help center, the widget
and search keep showing the published text until the draft is published."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from threadline.domain.errors import Conflict, NotFound, ValidationFailed
from threadline.files.store import FileStore
from threadline.kb import domain, repo
from threadline.kb.models import (
    KbArticleRow,
    KbCategoryRow,
    KbFeedbackRow,
    KbImageRow,
    KbSearchMissRow,
    KbTranslationRow,
)

IMAGE_TYPES = {"image/png", "image/jpeg", "image/gif", "image/webp"}
MAX_IMAGE_BYTES = 5_000_000
UNSET: Any = object()


# ---------------------------------------------------------------------------------------------------
# Categories


def _names(values: Mapping[str, str] | None, locales: Sequence[str], field: str, maximum: int) -> dict[str, str]:
    out: dict[str, str] = {}
    for loc, value in (values or {}).items():
        loc = domain.check_locale(loc, locales)
        value = domain.check_text(value, field, maximum)
        if value:
            out[loc] = value
    return out


async def create_category(session: AsyncSession, *, slug: str, names: Mapping[str, str],
                          descriptions: Mapping[str, str] | None = None, position: int = 0,
                          locales: Sequence[str], now: datetime) -> KbCategoryRow:
    slug = domain.check_slug(slug)
    named = _names(names, locales, "names", domain.MAX_CATEGORY_NAME)
    if not named:
        raise ValidationFailed("a category needs a name in at least one locale", field="names")
    if await repo.category_by_slug(session, slug) is not None:
        raise Conflict(f"a category with the slug '{slug}' exists already", field="slug")
    row = KbCategoryRow(slug=slug, names=named, position=position, created_at=now, updated_at=now,
                        descriptions=_names(descriptions, locales, "descriptions", domain.MAX_CATEGORY_DESCRIPTION))
    session.add(row)
    await session.flush()
    return row


async def update_category(session: AsyncSession, category_id: int, *, slug: str | None = None,
                          names: Mapping[str, str] | None = None, descriptions: Mapping[str, str] | None = None,
                          position: int | None = None, locales: Sequence[str], now: datetime) -> KbCategoryRow:
    row = await _category(session, category_id)
    if slug is not None and domain.check_slug(slug) != row.slug:
        if await repo.category_by_slug(session, domain.check_slug(slug)) is not None:
            raise Conflict(f"a category with the slug '{slug}' exists already", field="slug")
        row.slug = domain.check_slug(slug)
    if names is not None:
        named = _names(names, locales, "names", domain.MAX_CATEGORY_NAME)
        if not named:
            raise ValidationFailed("a category needs a name in at least one locale", field="names")
        row.names = named
    if descriptions is not None:
        row.descriptions = _names(descriptions, locales, "descriptions", domain.MAX_CATEGORY_DESCRIPTION)
    if position is not None:
        row.position = position
    row.updated_at = now
    await session.flush()
    return row


async def delete_category(session: AsyncSession, category_id: int) -> None:
    """The category goes; its articles stay, without a category."""
    row = await _category(session, category_id)
    for article in await repo.list_articles(session, category_id=category_id, limit=1_000_000):
        article.category_id = None
    await session.delete(row)
    await session.flush()


async def _category(session: AsyncSession, category_id: int) -> KbCategoryRow:
    row = await repo.get_category(session, category_id)
    if row is None:
        raise NotFound(f"category {category_id} does not exist")
    return row


# ---------------------------------------------------------------------------------------------------
# Articles


async def _article(session: AsyncSession, article_id: int) -> KbArticleRow:
    row = await repo.get_article(session, article_id)
    if row is None:
        raise NotFound(f"article {article_id} does not exist")
    return row


async def _check_category(session: AsyncSession, category_id: int | None) -> int | None:
    if category_id is not None and await repo.get_category(session, category_id) is None:
        raise ValidationFailed(f"category {category_id} does not exist", field="category_id")
    return category_id


async def create_article(session: AsyncSession, *, locale: str, title: str, body: str = "", summary: str = "",
                         slug: str | None = None, category_id: int | None = None, visibility: str = "public",
                         position: int = 0, created_by: int | None = None, locales: Sequence[str],
                         now: datetime) -> tuple[KbArticleRow, KbTranslationRow]:
    """A new article with its first translation, as a draft."""
    locale = domain.check_locale(locale, locales)
    domain.check_text(title, "title", domain.MAX_TITLE, required=True)
    row = KbArticleRow(category_id=await _check_category(session, category_id),
                       visibility=domain.check_visibility(visibility), position=position, created_by=created_by,
                       created_at=now, updated_at=now)
    session.add(row)
    await session.flush()
    tr = await save_translation(session, row.id, locale, title=title, body=body, summary=summary, slug=slug,
                                updated_by=created_by, locales=locales, now=now)
    return row, tr


async def update_article(session: AsyncSession, article_id: int, *, category_id: Any = UNSET,
                         visibility: str | None = None, position: int | None = None, now: datetime) -> KbArticleRow:
    row = await _article(session, article_id)
    if category_id is not UNSET:
        row.category_id = await _check_category(session, category_id)
    if visibility is not None and domain.check_visibility(visibility) != row.visibility:
        row.visibility = visibility
        for tr in (await repo.translations_of(session, [row.id]))[row.id]:  # the index knows who may see it
            if tr.published_at is not None:
                await repo.index_translation(session, tr, visibility)
    if position is not None:
        row.position = position
    row.updated_at = now
    await session.flush()
    return row


async def delete_article(session: AsyncSession, article_id: int) -> None:
    row = await _article(session, article_id)
    for tr in (await repo.translations_of(session, [row.id]))[row.id]:
        await _delete_translation(session, tr)
    await session.delete(row)
    await session.flush()


# ---------------------------------------------------------------------------------------------------
# Translations: the draft, publishing


async def _unique_slug(session: AsyncSession, locale: str, base: str, article_id: int) -> str:
    slug, n = base, 1
    while (owner := await repo.slug_owner(session, locale, slug)) is not None and owner != article_id:
        n += 1
        suffix = f"-{n}"
        slug = base[: domain.MAX_SLUG - len(suffix)].rstrip("-") + suffix
    return slug


async def save_translation(session: AsyncSession, article_id: int, locale: str, *, title: str | None = None,
                           body: str | None = None, summary: str | None = None, slug: str | None = None,
                           updated_by: int | None = None, locales: Sequence[str], now: datetime) -> KbTranslationRow:
    """Create or change the draft of an article in a locale. The published text, if any, stays as it is
    until ``publish``; a new slug applies at once (it is the address)."""
    article = await _article(session, article_id)
    locale = domain.check_locale(locale, locales)
    row = await repo.translation(session, article.id, locale)
    if row is None:
        clean_title = domain.check_text(title or "", "title", domain.MAX_TITLE, required=True)
        base = domain.check_slug(slug) if slug else domain.slugify(clean_title)
        if slug and (owner := await repo.slug_owner(session, locale, base)) is not None and owner != article.id:
            raise Conflict(f"the slug '{base}' is taken in {locale}", field="slug")
        row = KbTranslationRow(article_id=article.id, locale=locale, title=clean_title,
                               slug=await _unique_slug(session, locale, base, article.id), summary="", body="",
                               updated_by=updated_by, created_at=now, updated_at=now)
        session.add(row)
    if title is not None:
        row.title = domain.check_text(title, "title", domain.MAX_TITLE, required=True)
    if summary is not None:
        row.summary = domain.check_text(summary, "summary", domain.MAX_SUMMARY)
    if body is not None:
        if len(body) > domain.MAX_BODY:
            raise ValidationFailed(f"body is at most {domain.MAX_BODY} characters", field="body")
        row.body = domain.clean_body(body)
    if slug is not None and domain.check_slug(slug) != row.slug:
        new = domain.check_slug(slug)
        if (owner := await repo.slug_owner(session, locale, new)) is not None and owner != article.id:
            raise Conflict(f"the slug '{new}' is taken in {locale}", field="slug")
        row.slug = new
    row.updated_by = updated_by
    row.updated_at = now
    article.updated_at = now
    await session.flush()
    return row


async def _translation(session: AsyncSession, article_id: int, locale: str) -> tuple[KbArticleRow, KbTranslationRow]:
    article = await _article(session, article_id)
    row = await repo.translation(session, article.id, locale)
    if row is None:
        raise NotFound(f"article {article_id} has no {locale[:20]} version")
    return article, row


async def publish(session: AsyncSession, article_id: int, locale: str, *, now: datetime) -> KbTranslationRow:
    """The draft becomes what visitors and agents read, rendered and sanitised, and searchable."""
    article, row = await _translation(session, article_id, locale)
    row.published_title, row.published_summary, row.published_body = row.title, row.summary, row.body
    row.published_html = domain.render(row.body)
    row.published_text = domain.plain_text(row.body)
    row.published_at = now
    row.updated_at = now
    await session.flush()
    await repo.index_translation(session, row, article.visibility)
    return row


async def unpublish(session: AsyncSession, article_id: int, locale: str, *, now: datetime) -> KbTranslationRow:
    """Off the help center, the widget and search; the draft stays (with the text that was published when
    it had no changes)."""
    _, row = await _translation(session, article_id, locale)
    if row.published_at is None:
        return row
    row.published_title = row.published_summary = row.published_body = None
    row.published_html = row.published_text = None
    row.published_at = None
    row.updated_at = now
    await session.flush()
    await repo.unindex_translation(session, row.id)
    return row


async def delete_translation(session: AsyncSession, article_id: int, locale: str) -> None:
    _, row = await _translation(session, article_id, locale)
    await _delete_translation(session, row)


async def _delete_translation(session: AsyncSession, row: KbTranslationRow) -> None:
    await repo.unindex_translation(session, row.id)
    await session.execute(delete(KbFeedbackRow).where(KbFeedbackRow.translation_id == row.id))
    await session.delete(row)
    await session.flush()


# ---------------------------------------------------------------------------------------------------
# What visitors leave: feedback, searches without results


async def record_feedback(session: AsyncSession, translation_id: int, *, visitor: str, helpful: bool,
                          now: datetime) -> None:
    """One vote per visitor and translation (a second one replaces the first)."""
    await repo.upsert_feedback(session, translation_id, visitor, helpful, now)


async def record_miss(session: AsyncSession, locale: str, query: domain.Query, *, now: datetime) -> None:
    """A search that found nothing, counted under its folded words (``Contraseña  olvidada`` and
    ``contrasena olvidada`` are one line of the report)."""
    words = " ".join(domain.fold(w) for w in query.words)[:200]
    if words:
        await repo.upsert_miss(session, locale, words, now)


async def forget_miss(session: AsyncSession, locale: str, query: str) -> None:
    """An admin wrote the article: the line leaves the report."""
    if not await repo.delete_misses(session, locale, query):
        raise NotFound("no such search in the report")


async def clear_misses(session: AsyncSession) -> None:
    await session.execute(delete(KbSearchMissRow))


# ---------------------------------------------------------------------------------------------------
# Images


async def store_image(session: AsyncSession, files: FileStore, data: bytes, content_type: str, *,
                      created_by: int | None, now: datetime) -> KbImageRow:
    ctype = (content_type or "").split(";")[0].strip().lower()
    if ctype not in IMAGE_TYPES:
        raise ValidationFailed(f"an image is one of {', '.join(sorted(IMAGE_TYPES))}", field="content-type")
    if not data:
        raise ValidationFailed("the image is empty")
    if len(data) > MAX_IMAGE_BYTES:
        raise ValidationFailed(f"an image is at most {MAX_IMAGE_BYTES} bytes")
    if not _looks_like(ctype, data):
        raise ValidationFailed(f"the bytes are not a {ctype} image", field="content-type")
    sha = files.put(data)
    row = await repo.get_image(session, sha)
    if row is None:
        row = KbImageRow(sha256=sha, content_type=ctype, size=len(data), created_by=created_by, created_at=now)
        session.add(row)
        await session.flush()
    return row


def _looks_like(ctype: str, data: bytes) -> bool:
    """The magic numbers of the image types served (an SVG or HTML file is never served as an image)."""
    return {"image/png": data.startswith(b"\x89PNG\r\n\x1a\n"), "image/jpeg": data.startswith(b"\xff\xd8\xff"),
            "image/gif": data[:6] in (b"GIF87a", b"GIF89a"),
            "image/webp": data[:4] == b"RIFF" and data[8:12] == b"WEBP"}[ctype]
