"""The knowledge base, a feature package (docs/feature-packages.md, docs/self-service.md): articles in
categories, one version per locale with a draft and a published text, internal-only articles for agents,
full-text search (SQLite FTS5 or PostgreSQL text search) with accent folding, stemming and highlighted
snippets, article feedback and the searches that found nothing, and the public help center at ``/help``.

Layered inside, top to bottom: ``api`` (REST routes and the help center's pages) → ``actions`` (the only
writes, the search index kept in step in the same transaction) → ``repo`` (queries, the search SQL of each
database) → ``models`` (its tables) → ``domain`` (locales, slugs, Markdown rendering and sanitising,
query terms and stems, the help center's words).

This file imports nothing, so importing one layer does not drag in the ones above it.
"""
