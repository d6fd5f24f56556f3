"""Event bus: the outbox relay publishes committed events; the live stream and workers subscribe."""
