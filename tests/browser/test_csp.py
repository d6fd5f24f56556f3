"""Issue 12, item 5: every HTML page has a strict Content-Security-Policy and cannot be framed; the desk,
the admin pages, the API docs and the demo shop (with the widget) work under it without a single
violation in Chromium."""

from __future__ import annotations

import httpx

from tests.browser.test_desk_live import WAIT, open_desk
from tests.conftest import login, seed_basics
from tests.web.test_desk_pages import inbound

# Listens before any page script runs: every CSP violation the page reports, with what was blocked.
WATCH = """window.__csp = [];
document.addEventListener('securitypolicyviolation', function (e) {
  window.__csp.push(e.violatedDirective + ' ' + (e.blockedURI || '') + ' ' + (e.sourceFile || '') + ':' + e.lineNumber);
});"""


async def _violations(page) -> list[str]:  # type: ignore[no-untyped-def]
    return await page.evaluate("window.__csp || []")


async def test_pages_carry_the_policy_and_refuse_framing(sqlite_server) -> None:
    await seed_basics(sqlite_server.services)
    async with httpx.AsyncClient(base_url=sqlite_server.url) as c:
        for path in ("/login", "/api/docs"):
            r = await c.get(path)
            policy = r.headers["content-security-policy"]
            assert "frame-ancestors 'none'" in policy and "script-src 'self'" in policy
            assert "'unsafe-eval'" not in policy and r.headers["x-frame-options"] == "DENY"
        assert "style-src 'self';" in (await c.get("/login")).headers["content-security-policy"]
        await login(c, "alice@example.com")
        desk = await c.get("/")
        assert "style=" not in desk.text and " on" + "change=" not in desk.text
        assert "'unsafe-inline'" not in desk.headers["content-security-policy"]
        # JSON and scripts get no page policy: the widget's script loads into customers' sites.
        assert "x-frame-options" not in (await c.get("/widget.js")).headers
        assert "x-frame-options" not in (await c.get("/api/v1/me")).headers


async def test_the_desk_admin_docs_and_demo_run_without_a_violation(sqlite_server, browser) -> None:
    ids = await seed_basics(sqlite_server.services)
    from tests.channels.webchat.test_webchat import make_channel

    await make_channel(sqlite_server, ids, allowed_origins=[sqlite_server.url])  # the demo page shows it
    conv_id = await inbound(sqlite_server.services, ids["channel"], "Hello from a customer", name="Zoë Ünal")
    page = await open_desk(browser, sqlite_server, "admin@example.com")
    await page.context.add_init_script(WATCH)
    seen: list[str] = []
    page.on("console", lambda m: seen.append(m.text) if "Content Security Policy" in m.text else None)
    await page.goto(sqlite_server.url + "/?view=all")
    await page.wait_for_function("() => document.body.dataset.live === 'on'", timeout=WAIT)
    await page.click(f"#row-{conv_id}")  # htmx swaps the conversation in: avatars, sidebar, composer
    await page.wait_for_selector("#conversation #timeline .msg.in", timeout=WAIT)
    await page.fill("#composer-text", "Hi!")
    await page.press("#composer-text", "Control+Enter")
    await page.locator("#timeline .msg.out", has_text="Hi!").wait_for(timeout=WAIT)
    assert await _violations(page) == []
    for path in ("/admin/live", "/admin/users", "/admin/teams", "/admin/queues", "/admin/channels",
                 "/admin/canned", "/admin/webhooks", "/admin/flows", "/api/docs", "/demo"):
        await page.goto(sqlite_server.url + path)
        await page.wait_for_load_state("networkidle")
        assert await _violations(page) == [], path
    # The admin pages' inline handlers became data attributes: choosing a kind still opens its form.
    await page.goto(sqlite_server.url + "/admin/channels")
    await page.select_option("#kind", "email")
    await page.wait_for_url("**/admin/channels?kind=email**", timeout=WAIT)
    # Swagger UI built itself from its files; the demo shop shows the widget (its Shadow DOM styles).
    await page.goto(sqlite_server.url + "/api/docs")
    await page.locator(".swagger-ui .info").wait_for(timeout=4 * WAIT)  # a big document to render
    await page.goto(sqlite_server.url + "/demo")
    await page.wait_for_function("() => !!document.querySelector('threadline-chat')?.shadowRoot?.querySelector('style')",
                                 timeout=WAIT)
    assert await _violations(page) == [] and seen == []
    # An inline script someone managed to inject would not run.
    await page.goto(sqlite_server.url + "/login")
    await page.evaluate("""() => { const s = document.createElement('script'); s.textContent = 'window.__ran = 1';
                                   document.body.appendChild(s); }""")
    assert await page.evaluate("window.__ran === undefined")
    assert any("script-src" in v for v in await _violations(page))
