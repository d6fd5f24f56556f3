"""The golden set (tests/kb/golden/): 20 articles in en, es and it, 46 visitors' queries (accents left out,
plurals, other inflections) with the article that must come in the first three. Precision@3 (the share of
queries whose expected article is among the first three results) is printed and must stay above the
threshold, on SQLite (FTS5 with Snowball stems) and PostgreSQL (text search configurations)."""

from __future__ import annotations

import json
from pathlib import Path

from threadline.db.types import utcnow
from threadline.kb import actions, domain, repo

GOLDEN = Path(__file__).parent / "golden"
THRESHOLD = 0.9
LOCALES = ("en", "es", "it")


async def load_golden(services) -> dict[int, str]:  # type: ignore[no-untyped-def]
    """Create and publish the golden articles; article id → key."""
    keys: dict[int, str] = {}
    now = utcnow()
    async with services.db.transaction() as s:
        cats: dict[str, int] = {}
        for item in json.loads((GOLDEN / "articles.json").read_text()):
            if item["category"] not in cats:
                cat = await actions.create_category(s, slug=item["category"], names={"en": item["category"]},
                                                    locales=LOCALES, now=now)
                cats[item["category"]] = cat.id
            row, _ = await actions.create_article(s, locale="en", title=item["en"][0], body=item["en"][1],
                                                  category_id=cats[item["category"]], locales=LOCALES, now=now)
            for loc in LOCALES:
                await actions.save_translation(s, row.id, loc, title=item[loc][0], body=item[loc][1],
                                               locales=LOCALES, now=now)
                await actions.publish(s, row.id, loc, now=now)
            keys[row.id] = item["key"]
    return keys


async def test_golden_precision_at_3(services, capsys) -> None:  # SQLite and PostgreSQL
    keys = await load_golden(services)
    queries = json.loads((GOLDEN / "queries.json").read_text())
    found, first, misses = 0, 0, []
    async with services.db.transaction(write=False) as s:
        for locale, text, expected in queries:
            hits = await repo.search(s, domain.parse_query(text, locale), locale, ("public",), 3)
            got = [keys[h.article_id] for h in hits]
            found += expected in got
            first += bool(got) and got[0] == expected
            if expected not in got:
                misses.append(f"{locale} {text!r}: expected {expected}, got {got}")
    dialect = services.settings.resolved_database_url.split(":")[0]
    precision = found / len(queries)
    with capsys.disabled():
        print(f"\nkb golden set on {dialect}: precision@3 {precision:.3f} ({found}/{len(queries)}), "
              f"top-1 {first / len(queries):.3f}; missed: {misses}")
    assert precision >= THRESHOLD, misses
