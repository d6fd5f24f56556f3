"""The public help center in Chromium, in Spanish: the browser's language picks /help/es, a search typed
without accents finds the article with the words marked, the article opens, the vote is taken, and no page
breaks the Content-Security-Policy (there is no script to break it)."""

from __future__ import annotations

import httpx

from tests.browser.conftest import SCREENSHOTS
from tests.browser.test_csp import WATCH
from tests.conftest import login, seed_basics


async def test_help_center_in_spanish_with_search(sqlite_server, browser) -> None:
    await seed_basics(sqlite_server.services)
    async with httpx.AsyncClient(base_url=sqlite_server.url) as c:
        await login(c, "admin@example.com")
        cat = (await c.post("/api/v1/kb/categories", json={"slug": "cuenta", "names": {"es": "Cuenta", "en": "Account"},
                                                           "descriptions": {"es": "Acceso y seguridad"}})).json()
        for title, body in (("Restablecer la contraseña", "Si olvidaste tu **contraseña**, pulsa «¿Olvidaste la "
                             "contraseña?» en la página de acceso.\n\n<script>window.__pwned = 1</script>"),
                            ("Cambiar el correo electrónico", "Abre *Perfil* y luego *Correo*.")):
            r = await c.post("/api/v1/kb/articles", json={"locale": "es", "title": title, "body": body,
                                                          "category_id": cat["id"], "publish": True})
            assert r.status_code == 201, r.text
    context = await browser.new_context(locale="es-ES", extra_http_headers={"Accept-Language": "es-ES,es;q=0.9"})
    await context.add_init_script(WATCH)
    page = await context.new_page()
    try:
        await page.goto(f"{sqlite_server.url}/help")
        assert page.url.endswith("/help/es")
        assert await page.title() == "Centro de ayuda"
        assert await page.locator(".help-card h2").first.inner_text() == "Cuenta"
        await page.fill("#help-q", "contrasena olvidada")
        await page.press("#help-q", "Enter")
        await page.wait_for_url("**/help/es/search?q=*")
        first = page.locator(".help-results li").first
        assert "Restablecer" in await first.inner_text()
        assert await first.locator("mark").count() >= 1
        await page.screenshot(path=str(SCREENSHOTS / "help-center-search-es.png"), full_page=True)
        await first.locator("a").click()
        await page.wait_for_url("**/help/es/articles/restablecer-la-contrasena")
        assert await page.title() == "Restablecer la contraseña · Centro de ayuda"
        assert await page.evaluate("window.__pwned === undefined")  # the article's script never ran
        await page.click("button[name=helpful][value=yes]")
        await page.wait_for_selector("#feedback .ok")
        assert "Gracias" in await page.inner_text("#feedback")
        await page.screenshot(path=str(SCREENSHOTS / "help-center-article-es.png"), full_page=True)
        assert await page.evaluate("window.__csp || []") == []
    finally:
        await context.close()
