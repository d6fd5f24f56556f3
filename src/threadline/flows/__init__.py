"""Flows, a feature package (docs/feature-packages.md, docs/flows.md): a flow is versioned data (nodes
that say, ask, branch, capture, verify and end in a queue, voicemail, a hand-off or a hang-up), refused
when saved if it has a dead end, an endless loop or an unknown target. The engine is pure and
channel-neutral: the same definition runs as an IVR on voice and as a button bot in chat; the voice and
chat packages render its instructions.

Layered inside, top to bottom: ``api`` (REST routes) → ``actions`` (the only writes) → ``repo``
(queries) → ``models`` (its tables) → ``domain`` (the definition, its validation and the engine).

This file imports nothing, so importing one layer does not drag in the ones above it.
"""
