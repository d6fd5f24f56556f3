"""Outgoing webhooks, a feature package (docs/feature-packages.md, docs/webhooks.md): admins subscribe URLs
to events; the dispatcher turns outbox events into deliveries, the sender posts them signed, retries and
disables failing endpoints.

Layered inside, top to bottom: ``api`` (REST routes) → ``worker`` (dispatcher and sender loops) →
``actions`` (the only writes) → ``repo`` (queries) → ``models`` (its tables) → ``domain`` (pure rules).
Destinations are checked by the shared guarded client, ``threadline/net.py``.

This file imports nothing, so importing one layer does not drag in the ones above it.
"""
