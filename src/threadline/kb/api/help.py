"""The public help center, served by Threadline at ``/help``: a home with the categories, a page per
category and per article, search with highlighted snippets, a vote on each article, and a sitemap.

Pages are server-rendered HTML with no script (fast, indexable, within the desk's strict CSP: one
stylesheet from this origin, images from this origin only). The locale comes from the URL
(``/help/es/…``); ``/help`` picks one from Accept-Language. Each page has its <title>, a meta description,
a canonical link and hreflang alternates to the same page in the other locales. Only published public
articles appear; internal ones answer 404 here as if they did not exist."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote
from xml.sax.saxutils import escape

from fastapi import APIRouter, Form, Query, Request, Response
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from markupsafe import Markup

from threadline.domain.errors import DomainError
from threadline.kb import domain, repo
from threadline.kb.api.rest import locales, record_vote, run_search
from threadline.kb.models import KbCategoryRow
from threadline.services import Services
from threadline.web.deps import ServicesDep

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=str(HERE / "templates"))
help_router = APIRouter(prefix="/help", include_in_schema=False)
PUBLIC = ("public",)
PAGE_CACHE = {"Cache-Control": "public, max-age=60"}


def category_name(row: KbCategoryRow, locale: str, default: str) -> str:
    names = row.names or {}
    return names.get(locale) or names.get(default) or next(iter(names.values()), row.slug)


class Page:
    """What every help center page is rendered with."""

    def __init__(self, request: Request, services: Services, locale: str) -> None:
        self.request, self.services, self.locale = request, services, locale
        self.locales = locales(services)
        self.base = services.settings.public_base_url.rstrip("/")
        self.t = domain.words_for(locale)

    def url(self, path: str) -> str:
        return f"{self.base}/help/{path}".rstrip("/")

    def render(self, template: str, *, title: str, description: str, path: str,
               alternates: dict[str, str] | None = None, status: int = 200, **values: Any) -> HTMLResponse:
        alts = alternates if alternates is not None else {loc: self.url(f"{loc}/{path}".rstrip("/"))
                                                          for loc in self.locales}
        site = self.t["help_center"]
        context = {"request": self.request, "locale": self.locale, "t": self.t, "site": site,
                   "page_title": f"{title} · {site}" if title != site else site,
                   "description": description, "canonical": self.url(f"{self.locale}/{path}".rstrip("/")),
                   "alternates": alts, "default_alternate": alts.get(self.locales[0]),
                   "languages": [(loc, domain.language_name(loc), alts.get(loc, self.url(loc))) for loc in self.locales],
                   **values}
        headers = PAGE_CACHE if status == 200 else {"Cache-Control": "no-store"}
        return templates.TemplateResponse(self.request, template, context, status_code=status, headers=headers)

    def not_found(self) -> HTMLResponse:
        return self.render("notfound.html", title=self.t["not_found"], description="", path="", status=404,
                           alternates={})


def _locale_or_none(services: Services, locale: str) -> str | None:
    loc = locale.lower()
    return loc if loc in locales(services) else None


async def _not_found(request: Request, services: Services, locale: str | None = None) -> HTMLResponse:
    loc = locale or domain.pick_locale(request.headers.get("accept-language"), locales(services))
    return Page(request, services, loc).not_found()


# ---------------------------------------------------------------------------------------------------
# Files first (their paths would otherwise be read as locales)


@help_router.get("/static/help.css")
async def stylesheet() -> Response:
    return FileResponse(HERE / "static" / "help.css", media_type="text/css",
                        headers={"Cache-Control": "public, max-age=3600"})


@help_router.get("/images/{sha256}")
async def image(sha256: str, services: ServicesDep) -> Response:
    if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
        return Response(status_code=404)
    async with services.db.transaction(write=False) as session:
        row = await repo.get_image(session, sha256)
    if row is None or not services.files.exists(sha256):
        return Response(status_code=404)
    return FileResponse(services.files.path(sha256), media_type=row.content_type,
                        headers={"Cache-Control": "public, max-age=31536000, immutable",
                                 "Content-Security-Policy": "default-src 'none'"})


@help_router.get("/sitemap.xml")
async def sitemap(services: ServicesDep) -> Response:
    """Every published public article in every locale, with its alternates (hreflang), and each locale's home."""
    base = services.settings.public_base_url.rstrip("/")
    async with services.db.transaction(write=False) as session:
        rows = await repo.published(session, visibilities=PUBLIC, limit=50_000)
    by_article: dict[int, dict[str, str]] = {}
    for p in rows:
        by_article.setdefault(p.article.id, {})[p.translation.locale] = f"{base}/help/{p.translation.locale}/articles/" \
                                                                          f"{quote(p.translation.slug)}"
    out = ['<?xml version="1.0" encoding="UTF-8"?>',
           '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9" xmlns:xhtml="http://www.w3.org/1999/xhtml">']
    for loc in locales(services):
        out.append(f"<url><loc>{escape(f'{base}/help/{loc}')}</loc></url>")
    for p in rows:
        alts = by_article[p.article.id]
        links = "".join(f'<xhtml:link rel="alternate" hreflang="{escape(loc)}" href="{escape(url)}"/>'
                        for loc, url in sorted(alts.items()))
        when = p.translation.published_at.date().isoformat() if p.translation.published_at else ""
        out.append(f"<url><loc>{escape(alts[p.translation.locale])}</loc><lastmod>{when}</lastmod>{links}</url>")
    out.append("</urlset>")
    return Response("\n".join(out), media_type="application/xml", headers=PAGE_CACHE)


# ---------------------------------------------------------------------------------------------------
# Pages


@help_router.get("", response_class=HTMLResponse)
@help_router.get("/", response_class=HTMLResponse)
async def choose_locale(request: Request, services: ServicesDep) -> Response:
    loc = domain.pick_locale(request.headers.get("accept-language"), locales(services))
    return RedirectResponse(f"/help/{loc}", status_code=302, headers={"Vary": "Accept-Language"})


@help_router.get("/{locale}", response_class=HTMLResponse)
async def home(request: Request, locale: str, services: ServicesDep) -> Response:
    loc = _locale_or_none(services, locale)
    if loc is None:
        return await _not_found(request, services)
    page = Page(request, services, loc)
    async with services.db.transaction(write=False) as session:
        categories = await repo.list_categories(session)
        articles = await repo.published(session, visibilities=PUBLIC, locale=loc, limit=500)
    by_cat: dict[int | None, list[Any]] = {}
    for p in articles:
        by_cat.setdefault(p.article.category_id, []).append(p.translation)
    sections = [{"slug": c.slug, "name": category_name(c, loc, page.locales[0]),
                 "description": (c.descriptions or {}).get(loc, ""), "articles": by_cat.get(c.id, [])[:6],
                 "count": len(by_cat.get(c.id, []))} for c in categories if by_cat.get(c.id)]
    return page.render("home.html", title=page.t["help_center"], description=page.t["search_placeholder"], path="",
                       sections=sections, loose=by_cat.get(None, []))


@help_router.get("/{locale}/categories/{slug}", response_class=HTMLResponse)
async def category(request: Request, locale: str, slug: str, services: ServicesDep) -> Response:
    loc = _locale_or_none(services, locale)
    if loc is None or not domain.is_slug(slug):
        return await _not_found(request, services, loc)
    page = Page(request, services, loc)
    async with services.db.transaction(write=False) as session:
        row = await repo.category_by_slug(session, slug)
        articles = await repo.published(session, visibilities=PUBLIC, locale=loc, category_id=row.id) if row else []
    if row is None or not articles:
        return page.not_found()
    name = category_name(row, loc, page.locales[0])
    desc = (row.descriptions or {}).get(loc, "") or name
    return page.render("category.html", title=name, description=desc, path=f"categories/{quote(slug)}",
                       name=name, category_description=(row.descriptions or {}).get(loc, ""),
                       articles=[p.translation for p in articles])


@help_router.get("/{locale}/articles/{slug}", response_class=HTMLResponse)
async def article(request: Request, locale: str, slug: str, services: ServicesDep,
                  voted: Annotated[str | None, Query(max_length=5)] = None) -> Response:
    loc = _locale_or_none(services, locale)
    if loc is None or not domain.is_slug(slug):
        return await _not_found(request, services, loc)
    page = Page(request, services, loc)
    async with services.db.transaction(write=False) as session:
        found = await repo.published(session, visibilities=PUBLIC, locale=loc, slug=slug, limit=1)
        if not found:
            return page.not_found()
        tr, art = found[0].translation, found[0].article
        others = await repo.published(session, visibilities=PUBLIC, article_id=art.id)
        cat = await repo.get_category(session, art.category_id) if art.category_id else None
        related = (await repo.published(session, visibilities=PUBLIC, locale=loc, category_id=cat.id, limit=8)
                   if cat else [])
    alternates = {p.translation.locale: page.url(f"{p.translation.locale}/articles/{quote(p.translation.slug)}")
                  for p in others}
    title = tr.published_title or tr.title
    return page.render(
        "article.html", title=title, path=f"articles/{quote(slug)}", alternates=alternates,
        description=domain.description(tr.published_summary or "", tr.published_text or ""),
        article=tr, article_id=art.id, body=Markup(tr.published_html or ""),  # sanitised when published (nh3)
        category=({"slug": cat.slug, "name": category_name(cat, loc, page.locales[0])} if cat else None),
        related=[p.translation for p in related if p.translation.id != tr.id][:6], voted=voted == "1")


@help_router.post("/{locale}/articles/{slug}/feedback")
async def feedback(request: Request, locale: str, slug: str, services: ServicesDep,
                   helpful: Annotated[str, Form(max_length=5)]) -> Response:
    loc = _locale_or_none(services, locale)
    if loc is None or not domain.is_slug(slug) or helpful not in ("yes", "no"):
        return await _not_found(request, services, loc)
    async with services.db.transaction(write=False) as session:
        found = await repo.published(session, visibilities=PUBLIC, locale=loc, slug=slug, limit=1)
    if not found:
        return await _not_found(request, services, loc)
    try:
        await record_vote(request, services, found[0].article.id, loc, helpful == "yes")
    except DomainError as exc:
        return Response(exc.message, status_code=exc.status, media_type="text/plain")
    return RedirectResponse(f"/help/{loc}/articles/{quote(slug)}?voted=1#feedback", status_code=303)


@help_router.get("/{locale}/search", response_class=HTMLResponse)
async def search_page(request: Request, locale: str, services: ServicesDep,
                      q: Annotated[str, Query(max_length=domain.MAX_QUERY)] = "") -> Response:
    loc = _locale_or_none(services, locale)
    if loc is None:
        return await _not_found(request, services)
    page = Page(request, services, loc)
    results = (await run_search(services, q, loc, PUBLIC, 20, record_miss=True)).results if q.strip() else []
    hits = [{"title": Markup(h.title_html), "snippet": Markup(h.snippet_html), "slug": h.slug} for h in results]
    title = f"{page.t['results_for']} “{q.strip()}”" if q.strip() else page.t["search"]
    response = page.render("search.html", title=title, description=page.t["search_placeholder"], path="search",
                           q=q.strip(), hits=hits, noindex=True)
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Robots-Tag"] = "noindex"
    return response
