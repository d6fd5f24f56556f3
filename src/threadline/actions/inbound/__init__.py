"""Inbound use cases: a customer's message arrives (recognise the sender, place it in a conversation,
store its files and linked media, record opt-out keywords).

Inbound and outbound never import each other (an import-linter contract in pyproject.toml); what both
need sits below them (actions/consent.py, contacts, conversations, attachments, views).
"""

from threadline.actions.inbound.consent import record_consent
from threadline.actions.inbound.files import receive_with_files
from threadline.actions.inbound.media import attach_media, media_failed, queue_media
from threadline.actions.inbound.receive import receive_inbound, receive_inbound_batch

__all__ = ["attach_media", "media_failed", "queue_media", "receive_inbound", "receive_inbound_batch",
           "receive_with_files", "record_consent"]
