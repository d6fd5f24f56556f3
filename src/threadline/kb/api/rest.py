"""The knowledge base's REST API (``/api/v1/kb``). Agents read everything, internal articles included;
supervisors and admins write (categories, articles, drafts, publishing, images) and read the reports
(feedback, searches without results). Visitors reach only ``/kb/public/…``: published public articles,
searched with the same index, CORS-readable by the web chat widget's sites. Guide: docs/self-service.md."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from threadline.db.types import utcnow
from threadline.domain.errors import DomainError, NotFound, PermissionDenied, RateLimited
from threadline.domain.ratelimit import RateLimiter
from threadline.kb import actions as kb_actions
from threadline.kb import domain, repo
from threadline.kb.models import KbArticleRow, KbCategoryRow, KbTranslationRow
from threadline.services import Services
from threadline.web.api.schemas import Id, In
from threadline.web.deps import CurrentActor, ServicesDep, SupervisorActor, client_ip

router = APIRouter(tags=["knowledge base"])
Position = Annotated[int, Field(ge=-1_000_000, le=1_000_000)]
Locale = Annotated[str, Field(min_length=2, max_length=16)]
LocaleQuery = Annotated[str | None, Query(max_length=16, description="en, es, it… (the configured locales)")]
SearchText = Annotated[str, Query(max_length=domain.MAX_QUERY, description="The visitor's words")]
LIMITER = RateLimiter()  # per process: visitors' searches and votes
PUBLIC_SEARCHES_PER_MINUTE = 60
FEEDBACK_PER_MINUTE = 20


def locales(services: Services) -> tuple[str, ...]:
    return domain.parse_locales(services.settings.kb_locales)


def help_url(services: Services, locale: str, slug: str) -> str:
    return f"{services.settings.public_base_url}/help/{locale}/articles/{slug}"


# ---------------------------------------------------------------------------------------------------
# Bodies


class CategoryIn(In):
    slug: str = Field(min_length=1, max_length=domain.MAX_SLUG, description="In the help center's URLs")
    names: dict[str, Annotated[str, Field(max_length=domain.MAX_CATEGORY_NAME)]] = Field(
        max_length=50, description="Locale → name, e.g. {\"en\": \"Billing\", \"es\": \"Facturación\"}")
    descriptions: dict[str, Annotated[str, Field(max_length=domain.MAX_CATEGORY_DESCRIPTION)]] = Field(
        default_factory=dict, max_length=50)
    position: Position = 0


class CategoryUpdate(In):
    slug: str | None = Field(default=None, min_length=1, max_length=domain.MAX_SLUG)
    names: dict[str, Annotated[str, Field(max_length=domain.MAX_CATEGORY_NAME)]] | None = Field(default=None,
                                                                                               max_length=50)
    descriptions: dict[str, Annotated[str, Field(max_length=domain.MAX_CATEGORY_DESCRIPTION)]] | None = Field(
        default=None, max_length=50)
    position: Position | None = None


class CategoryOut(BaseModel):
    id: int
    slug: str
    names: dict[str, str]
    descriptions: dict[str, str]
    position: int
    created_at: datetime
    updated_at: datetime


class TranslationIn(In):
    title: str | None = Field(default=None, min_length=1, max_length=domain.MAX_TITLE)
    summary: str | None = Field(default=None, max_length=domain.MAX_SUMMARY,
                                description="One or two sentences: search results and the meta description")
    body: str | None = Field(default=None, max_length=domain.MAX_BODY, description="Markdown (raw HTML is shown as "
                             "text); images: upload with POST /api/v1/kb/images and use the URL it answers")
    slug: str | None = Field(default=None, min_length=1, max_length=domain.MAX_SLUG,
                             description="Default: made from the title")


class ArticleIn(In):
    locale: Locale
    title: str = Field(min_length=1, max_length=domain.MAX_TITLE)
    summary: str = Field(default="", max_length=domain.MAX_SUMMARY)
    body: str = Field(default="", max_length=domain.MAX_BODY)
    slug: str | None = Field(default=None, min_length=1, max_length=domain.MAX_SLUG)
    category_id: Id | None = None
    visibility: Literal["public", "internal"] = Field(default="public", description="internal: agents only, never "
                                                      "on the help center or the widget")
    position: Position = 0
    publish: bool = Field(default=False, description="Publish the first version at once")


class ArticleUpdate(In):
    category_id: Id | None = Field(default=None, description="null: no category")
    visibility: Literal["public", "internal"] | None = None
    position: Position | None = None


class TranslationOut(BaseModel):
    locale: str
    slug: str
    status: Literal["draft", "published", "changed"] = Field(
        description="draft: not published; changed: published, with draft edits not published yet")
    title: str
    summary: str
    body: str
    published_title: str | None
    published_summary: str | None
    published_body: str | None
    published_at: datetime | None
    updated_at: datetime
    url: str | None = Field(description="On the help center (published public articles)")


class ArticleOut(BaseModel):
    id: int
    category_id: int | None
    visibility: str
    position: int
    created_at: datetime
    updated_at: datetime
    translations: list[TranslationOut]


class PreviewOut(BaseModel):
    locale: str
    title: str
    html: str = Field(description="The draft's body rendered and sanitised, as it will be published")


class HitOut(BaseModel):
    article_id: int
    locale: str
    slug: str
    title: str
    title_html: str = Field(description="Escaped HTML, the words found in <mark>")
    snippet_html: str = Field(description="Escaped HTML, the words found in <mark>")
    category_id: int | None
    url: str | None = Field(description="On the help center (public articles)")
    internal: bool


class SearchOut(BaseModel):
    query: str
    locale: str
    results: list[HitOut]


class FeedbackIn(In):
    article_id: Id
    locale: Locale
    helpful: bool


class FeedbackOut(BaseModel):
    article_id: int
    locale: str
    slug: str
    title: str
    helpful: int
    not_helpful: int


class MissOut(BaseModel):
    locale: str
    query: str = Field(description="The words searched, lower case and without accents")
    count: int
    first_at: datetime
    last_at: datetime


class ImageOut(BaseModel):
    sha256: str
    content_type: str
    size: int
    url: str
    markdown: str


def category_out(row: KbCategoryRow) -> CategoryOut:
    return CategoryOut(id=row.id, slug=row.slug, names=row.names or {}, descriptions=row.descriptions or {},
                       position=row.position, created_at=row.created_at, updated_at=row.updated_at)


def translation_out(services: Services, article: KbArticleRow, row: KbTranslationRow) -> TranslationOut:
    published = (row.published_title, row.published_body, row.published_summary)
    status = domain.status_of(row.published_at, row.title, row.body, row.summary, published)
    public = row.published_at is not None and article.visibility == "public"
    return TranslationOut(locale=row.locale, slug=row.slug, status=status, title=row.title, summary=row.summary,
                          body=row.body, published_title=row.published_title, published_summary=row.published_summary,
                          published_body=row.published_body, published_at=row.published_at,
                          updated_at=row.updated_at, url=help_url(services, row.locale, row.slug) if public else None)


def article_out(services: Services, row: KbArticleRow, translations: list[KbTranslationRow]) -> ArticleOut:
    return ArticleOut(id=row.id, category_id=row.category_id, visibility=row.visibility, position=row.position,
                      created_at=row.created_at, updated_at=row.updated_at,
                      translations=[translation_out(services, row, t) for t in translations])


async def _article(services: Services, article_id: int) -> ArticleOut:
    async with services.db.transaction(write=False) as session:
        row = await repo.get_article(session, article_id)
        if row is None:
            raise NotFound(f"article {article_id} does not exist")
        return article_out(services, row, (await repo.translations_of(session, [row.id]))[row.id])


# ---------------------------------------------------------------------------------------------------
# Categories


@router.get("/kb/categories", response_model=list[CategoryOut])
async def list_categories(actor: CurrentActor, services: ServicesDep) -> list[CategoryOut]:
    async with services.db.transaction(write=False) as session:
        return [category_out(r) for r in await repo.list_categories(session)]


@router.post("/kb/categories", response_model=CategoryOut, status_code=201)
async def create_category(body: CategoryIn, actor: SupervisorActor, services: ServicesDep) -> CategoryOut:
    async with services.db.transaction(write=True) as session:
        row = await kb_actions.create_category(session, slug=body.slug, names=body.names,
                                               descriptions=body.descriptions, position=body.position,
                                               locales=locales(services), now=utcnow())
        return category_out(row)


@router.patch("/kb/categories/{category_id}", response_model=CategoryOut)
async def update_category(category_id: Id, body: CategoryUpdate, actor: SupervisorActor,
                          services: ServicesDep) -> CategoryOut:
    async with services.db.transaction(write=True) as session:
        row = await kb_actions.update_category(session, category_id, **body.model_dump(exclude_unset=True),
                                               locales=locales(services), now=utcnow())
        return category_out(row)


@router.delete("/kb/categories/{category_id}", status_code=204, summary="Delete a category (its articles stay)")
async def delete_category(category_id: Id, actor: SupervisorActor, services: ServicesDep) -> Response:
    async with services.db.transaction(write=True) as session:
        await kb_actions.delete_category(session, category_id)
    return Response(status_code=204)


# ---------------------------------------------------------------------------------------------------
# Articles


@router.get("/kb/articles", response_model=list[ArticleOut], summary="Articles with every locale (drafts too)")
async def list_articles(actor: CurrentActor, services: ServicesDep, category_id: Id | None = None,
                        visibility: Literal["public", "internal"] | None = None,
                        after_id: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
                        limit: Annotated[int, Query(ge=1, le=500)] = 100) -> list[ArticleOut]:
    async with services.db.transaction(write=False) as session:
        rows = await repo.list_articles(session, category_id=category_id, visibility=visibility, limit=limit,
                                        after_id=after_id)
        trs = await repo.translations_of(session, [r.id for r in rows])
        return [article_out(services, r, trs[r.id]) for r in rows]


@router.post("/kb/articles", response_model=ArticleOut, status_code=201,
             summary="Create an article with its first locale (a draft, unless publish is true)")
async def create_article(body: ArticleIn, actor: SupervisorActor, services: ServicesDep) -> ArticleOut:
    async with services.db.transaction(write=True) as session:
        now = utcnow()
        row, tr = await kb_actions.create_article(
            session, locale=body.locale, title=body.title, body=body.body, summary=body.summary, slug=body.slug,
            category_id=body.category_id, visibility=body.visibility, position=body.position,
            created_by=actor.user_id, locales=locales(services), now=now)
        if body.publish:
            await kb_actions.publish(session, row.id, tr.locale, now=now)
        article_id = row.id
    return await _article(services, article_id)


@router.get("/kb/articles/{article_id}", response_model=ArticleOut)
async def get_article(article_id: Id, actor: CurrentActor, services: ServicesDep) -> ArticleOut:
    return await _article(services, article_id)


@router.patch("/kb/articles/{article_id}", response_model=ArticleOut,
              summary="Move to a category, change who may read it (public / internal), or its position")
async def update_article(article_id: Id, body: ArticleUpdate, actor: SupervisorActor,
                         services: ServicesDep) -> ArticleOut:
    fields: dict[str, Any] = body.model_dump(exclude_unset=True)
    async with services.db.transaction(write=True) as session:
        await kb_actions.update_article(session, article_id, **fields, now=utcnow())
    return await _article(services, article_id)


@router.delete("/kb/articles/{article_id}", status_code=204, summary="Delete an article and all its locales")
async def delete_article(article_id: Id, actor: SupervisorActor, services: ServicesDep) -> Response:
    async with services.db.transaction(write=True) as session:
        await kb_actions.delete_article(session, article_id)
    return Response(status_code=204)


@router.put("/kb/articles/{article_id}/translations/{locale}", response_model=ArticleOut,
            summary="Save the draft of a locale (created if new); what is published stays until published again")
async def save_translation(article_id: Id, locale: Locale, body: TranslationIn, actor: SupervisorActor,
                           services: ServicesDep) -> ArticleOut:
    async with services.db.transaction(write=True) as session:
        await kb_actions.save_translation(session, article_id, locale, **body.model_dump(exclude_unset=True),
                                          updated_by=actor.user_id, locales=locales(services), now=utcnow())
    return await _article(services, article_id)


@router.delete("/kb/articles/{article_id}/translations/{locale}", status_code=204)
async def delete_translation(article_id: Id, locale: Locale, actor: SupervisorActor, services: ServicesDep) -> Response:
    loc = domain.check_locale(locale, locales(services))
    async with services.db.transaction(write=True) as session:
        await kb_actions.delete_translation(session, article_id, loc)
    return Response(status_code=204)


@router.post("/kb/articles/{article_id}/translations/{locale}/publish", response_model=ArticleOut,
             summary="Publish the draft: shown on the help center (public articles), in the widget and in search")
async def publish(article_id: Id, locale: Locale, actor: SupervisorActor, services: ServicesDep) -> ArticleOut:
    loc = domain.check_locale(locale, locales(services))
    async with services.db.transaction(write=True) as session:
        await kb_actions.publish(session, article_id, loc, now=utcnow())
    return await _article(services, article_id)


@router.post("/kb/articles/{article_id}/translations/{locale}/unpublish", response_model=ArticleOut)
async def unpublish(article_id: Id, locale: Locale, actor: SupervisorActor, services: ServicesDep) -> ArticleOut:
    loc = domain.check_locale(locale, locales(services))
    async with services.db.transaction(write=True) as session:
        await kb_actions.unpublish(session, article_id, loc, now=utcnow())
    return await _article(services, article_id)


@router.get("/kb/articles/{article_id}/translations/{locale}/preview", response_model=PreviewOut,
            summary="The draft rendered and sanitised, as it would be published")
async def preview(article_id: Id, locale: Locale, actor: CurrentActor, services: ServicesDep) -> PreviewOut:
    loc = domain.check_locale(locale, locales(services))
    async with services.db.transaction(write=False) as session:
        row = await repo.translation(session, article_id, loc)
        if row is None:
            raise NotFound(f"article {article_id} has no {loc} version")
        return PreviewOut(locale=loc, title=row.title, html=domain.render(row.body))


# ---------------------------------------------------------------------------------------------------
# Search


async def run_search(services: Services, q: str, locale: str | None, visibilities: tuple[str, ...], limit: int,
                     *, record_miss: bool) -> SearchOut:
    allowed = locales(services)
    loc = domain.check_locale(locale, allowed) if locale else allowed[0]
    query = domain.parse_query(q, loc)
    async with services.db.transaction(write=False) as session:
        hits = await repo.search(session, query, loc, visibilities, limit)
    if not hits and record_miss and not query.empty:
        async with services.db.transaction(write=True) as session:
            await kb_actions.record_miss(session, loc, query, now=utcnow())
    return SearchOut(query=query.text, locale=loc, results=[
        HitOut(article_id=h.article_id, locale=h.locale, slug=h.slug, title=h.title, title_html=h.title_html,
               snippet_html=h.snippet_html, category_id=h.category_id, internal=h.visibility == "internal",
               url=help_url(services, h.locale, h.slug) if h.visibility == "public" else None) for h in hits])


@router.get("/kb/search", response_model=SearchOut,
            summary="Search published articles, internal ones included (agents); ranked, with highlighted snippets")
async def search(actor: CurrentActor, services: ServicesDep, q: SearchText, locale: LocaleQuery = None,
                 limit: Annotated[int, Query(ge=1, le=50)] = 10) -> SearchOut:
    return await run_search(services, q, locale, domain.VISIBILITIES, limit, record_miss=False)


# ---------------------------------------------------------------------------------------------------
# Public: the web chat widget (and anyone) searches published public articles, and votes


async def _visitor_origin(request: Request, services: Services) -> str | None:
    """The Origin allowed to read the answer (CORS), as the widget's endpoints decide: a browser on another
    site names a web chat channel (``?channel=<key>``) whose allowed origins include that site."""
    origin = request.headers.get("origin")
    own = services.settings.public_base_url.rstrip("/")
    if not origin or origin.rstrip("/") in (own, f"{request.url.scheme}://{request.headers.get('host', '')}"):
        return None
    key = request.query_params.get("channel") or ""
    channel = await services.channels.by_key(key[:100]) if key.isprintable() and key.isascii() and key else None
    if channel is None or channel.kind != "webchat" or not channel.enabled:
        raise PermissionDenied(f"This website ({origin[:200]}) must name a web chat channel that allows it "
                               "(?channel=<key>)")
    adapter: Any = services.factory.for_row(channel)
    if not adapter.origin_allowed(origin):
        raise PermissionDenied(f"This website ({origin[:200]}) may not use this channel's help search.")
    return origin


def _cors(origin: str | None) -> dict[str, str]:
    headers = {"Vary": "Origin", "Cache-Control": "no-store"}
    if origin:
        headers["Access-Control-Allow-Origin"] = origin
    return headers


def _problem(exc: DomainError, origin: str | None) -> JSONResponse:
    body = {"type": f"/problems/{exc.code}", "title": "Error", "status": exc.status, "detail": exc.message}
    if exc.field:
        body["field"] = exc.field
    return JSONResponse(body, status_code=exc.status, media_type="application/problem+json",
                        headers=_cors(origin or None))


def limit_visitor(request: Request, what: str, per_minute: int) -> None:
    if not LIMITER.allow((what, client_ip(request)), per_minute, now=time.monotonic()):
        raise RateLimited("Too many requests; please wait a moment.")


VISITOR_ERRORS: dict[int | str, dict[str, Any]] = {
    403: {"description": "A browser on another site that names no web chat channel allowing it"},
    429: {"description": "Too many requests from this address; wait a moment"}}


@router.get("/kb/public/search", response_model=SearchOut, responses=VISITOR_ERRORS,
            summary="Published public articles matching a visitor's words (no sign-in; CORS for the widget's sites)")
async def public_search(request: Request, services: ServicesDep, q: SearchText, locale: LocaleQuery = None,
                        limit: Annotated[int, Query(ge=1, le=20)] = 5,
                        channel: Annotated[str | None, Query(max_length=100)] = None) -> Response:
    origin: str | None = None
    try:
        origin = await _visitor_origin(request, services)
        limit_visitor(request, "search", PUBLIC_SEARCHES_PER_MINUTE)
        out = await run_search(services, q, locale, ("public",), limit, record_miss=True)
    except DomainError as exc:
        return _problem(exc, origin or request.headers.get("origin"))
    return JSONResponse(out.model_dump(mode="json"), headers=_cors(origin))


async def record_vote(request: Request, services: Services, article_id: int, locale: str, helpful: bool) -> None:
    """A visitor's vote on a published public article (one per visitor and article, rate limited)."""
    limit_visitor(request, "feedback", FEEDBACK_PER_MINUTE)
    loc = domain.check_locale(locale, locales(services))
    visitor = domain.visitor_key(services.settings.resolved_secret_key, client_ip(request),
                                 request.headers.get("user-agent", ""))
    async with services.db.transaction(write=True) as session:
        found = await repo.published(session, visibilities=("public",), locale=loc, article_id=article_id, limit=1)
        if not found:
            raise NotFound(f"article {article_id} is not published in {loc}")
        await kb_actions.record_feedback(session, found[0].translation.id, visitor=visitor, helpful=helpful,
                                         now=utcnow())


@router.post("/kb/public/feedback", status_code=204, responses=VISITOR_ERRORS,
             summary="A visitor says whether an article helped (one vote per visitor and article)")
async def public_feedback(request: Request, body: FeedbackIn, services: ServicesDep) -> Response:
    origin: str | None = None
    try:
        origin = await _visitor_origin(request, services)
        await record_vote(request, services, body.article_id, body.locale, body.helpful)
    except DomainError as exc:
        return _problem(exc, origin or request.headers.get("origin"))
    return Response(status_code=204, headers=_cors(origin))


# ---------------------------------------------------------------------------------------------------
# Reports: what to write next


@router.get("/kb/reports/feedback", response_model=list[FeedbackOut],
            summary="Votes per article and locale, the most 'not helpful' first")
async def feedback_report(actor: SupervisorActor, services: ServicesDep,
                          limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[FeedbackOut]:
    async with services.db.transaction(write=False) as session:
        return [FeedbackOut(**f.__dict__) for f in await repo.feedback_summary(session, limit)]


@router.get("/kb/reports/searches-without-results", response_model=list[MissOut],
            summary="Searches of visitors that found nothing, the most frequent first")
async def misses_report(actor: SupervisorActor, services: ServicesDep, locale: LocaleQuery = None,
                        limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[MissOut]:
    loc = domain.check_locale(locale, locales(services)) if locale else None
    async with services.db.transaction(write=False) as session:
        return [MissOut(locale=m.locale, query=m.query, count=m.count, first_at=m.first_at, last_at=m.last_at)
                for m in await repo.misses(session, locale=loc, limit=limit)]


@router.delete("/kb/reports/searches-without-results", status_code=204,
               summary="Take a search off the report (an article now answers it)")
async def forget_miss(actor: SupervisorActor, services: ServicesDep, locale: Annotated[str, Query(max_length=16)],
                      query: Annotated[str, Query(max_length=200)]) -> Response:
    loc = domain.check_locale(locale, locales(services))
    async with services.db.transaction(write=True) as session:
        await kb_actions.forget_miss(session, loc, query if query.isprintable() else "")
    return Response(status_code=204)


# ---------------------------------------------------------------------------------------------------
# Images


@router.post("/kb/images", response_model=ImageOut, status_code=201,
             responses={413: {"description": "The image is larger than the request body limit"}},
             summary="Upload an image for articles (the body is the image; Content-Type image/png, jpeg, gif or "
                     "webp); use the Markdown it answers")
async def upload_image(request: Request, actor: SupervisorActor, services: ServicesDep) -> ImageOut:
    data = await request.body()
    async with services.db.transaction(write=True) as session:
        row = await kb_actions.store_image(session, services.files, data, request.headers.get("content-type", ""),
                                           created_by=actor.user_id, now=utcnow())
        url = f"/help/images/{row.sha256}"
        return ImageOut(sha256=row.sha256, content_type=row.content_type, size=row.size, url=url,
                        markdown=f"![]({url})")
