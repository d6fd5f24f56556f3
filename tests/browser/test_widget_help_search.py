"""The widget's help search in Chromium: on a customer's site (another origin) whose snippet opts in
(data-help-search="true"), a Spanish visitor types a question without accents before writing, and the
published public articles show with the words marked, as text; an internal article never shows."""

from __future__ import annotations

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from tests.browser.conftest import SCREENSHOTS
from tests.conftest import login, run_server, seed_basics
from threadline.actions import channels as channel_actions

W = "#threadline-chat"
PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>Tienda</title></head>
<body><h1>Tienda</h1><script src="{base}/widget.js" data-channel="{key}" data-help-search="true" async></script>
</body></html>"""


async def test_a_visitor_finds_an_article_before_writing(sqlite_server, browser) -> None:
    ids = await seed_basics(sqlite_server.services)
    async with httpx.AsyncClient(base_url=sqlite_server.url) as c:
        await login(c, "admin@example.com")
        for title, body, visibility in (
                ("Restablecer la contraseña", "Pulsa «¿Olvidaste la <contraseña>?» en la página de acceso.", "public"),
                ("Contraseña maestra del equipo", "Solo agentes: la contraseña maestra está en el gestor.", "internal")):
            r = await c.post("/api/v1/kb/articles", json={"locale": "es", "title": title, "body": body,
                                                          "visibility": visibility, "publish": True})
            assert r.status_code == 201, r.text
    state: dict[str, str] = {}

    async def page(request: Request) -> HTMLResponse:
        return HTMLResponse(PAGE.format(base=sqlite_server.url, key=state["key"]))

    async with run_server(Starlette(routes=[Route("/", page)])) as site:
        async with sqlite_server.services.db.transaction() as s:
            row = await channel_actions.create_channel(
                s, sqlite_server.services.box, kind="webchat", name="Chat", default_queue_id=ids["general"],
                config={"allowed_origins": [site.url], "languages": ["es", "en"], "title": "Tienda"})
        state["key"] = row.key
        context = await browser.new_context(locale="es-ES")
        p = await context.new_page()
        try:
            await p.goto(site.url + "/")
            await p.click(f"{W} .tl-bubble")
            search = p.locator(f"{W} .tl-help input")
            assert await search.get_attribute("placeholder") == "Busca en los artículos de ayuda"
            await search.fill("contrasena olvidada")
            first = p.locator(f"{W} .tl-help-list li").first
            await first.locator("a").wait_for()
            assert await first.locator("a").inner_text() == "Restablecer la contraseña"
            assert await first.locator("a").get_attribute("href") == \
                f"{sqlite_server.services.settings.public_base_url}/help/es/articles/restablecer-la-contrasena"
            assert await first.locator("mark").count() >= 1
            assert "<contraseña>" in await first.locator("p").inner_text()  # text, never HTML
            assert await p.locator(f"{W} .tl-help-list li").count() == 1  # the internal article stays inside
            await p.screenshot(path=str(SCREENSHOTS / "widget-help-search-es.png"))
            await search.fill("zzzz qqqq")
            await p.locator(f"{W} .tl-help-none").wait_for()
        finally:
            await context.close()
