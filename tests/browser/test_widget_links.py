"""Issue 12, item 7: the widget builds attachment links with the URL parser, and the visitor's token only
ever goes to our own /widget/attachments/ paths: an attachment URL like ``@evil.example/x`` (which string
concatenation turned into ``https://our-host@evil.example/x?token=…``) never carries it anywhere."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from tests.browser.test_widget_chat import W, agent, host_site
from tests.conftest import seed_basics


async def test_the_visitor_token_never_leaves_our_origin(sqlite_server, browser) -> None:
    server = sqlite_server
    ids = await seed_basics(server.services)
    alice = await agent(server)
    async with host_site(server, ids, prechat_fields=[], prechat_required=[]) as (url, _key):
        page = await browser.new_page()
        await page.goto(url)
        await page.click(f"{W} .tl-bubble")
        await page.fill(f"{W} textarea", "Can you send me the manual?")
        await page.press(f"{W} textarea", "Enter")
        await page.locator(f"{W} .tl-me .tl-msg").last.wait_for()
        conv_id = (await alice.get("/api/v1/conversations")).json()["items"][0]["id"]
        tricks = ["@evil.example/x", "//evil.example/widget/attachments/a", "/widget/attachments/../../x",
                  "javascript:alert(1)", "https://cdn.example/manual.pdf", "/api/v1/attachments/ours-1"]
        sent = await alice.post(f"/api/v1/conversations/{conv_id}/messages", json={
            "text": "Here you are", "attachments": [{"url": u, "name": f"f{i}.pdf", "content_type": "application/pdf"}
                                                    for i, u in enumerate(tricks)]})
        assert sent.status_code == 201, sent.text
        await page.locator(f"{W} .tl-them .tl-msg", has_text="Here you are").wait_for()
        links = page.locator(f"{W} .tl-them a")
        await links.nth(len(tricks) - 1).wait_for()
        hrefs = await links.evaluate_all("els => els.map(e => e.getAttribute('href'))")
        assert len(hrefs) == len(tricks), hrefs
        ours = urlsplit(server.url)
        for href in hrefs:
            parts = urlsplit(href)
            if "token=" in href:  # only ever our own attachment path, on our own host
                assert (parts.scheme, parts.netloc) == (ours.scheme, ours.netloc) and not parts.username, href
                assert parts.path.startswith("/widget/attachments/"), href
        by_trick = dict(zip(tricks, hrefs, strict=True))
        assert by_trick["@evil.example/x"] == "#" and by_trick["javascript:alert(1)"] == "#"
        assert by_trick["//evil.example/widget/attachments/a"] == "#"
        assert by_trick["/widget/attachments/../../x"] == "#"
        assert by_trick["https://cdn.example/manual.pdf"] == "https://cdn.example/manual.pdf"  # as given, no token
        own = urlsplit(by_trick["/api/v1/attachments/ours-1"])
        assert own.path == "/widget/attachments/ours-1" and parse_qs(own.query)["token"][0]
    await alice.aclose()
