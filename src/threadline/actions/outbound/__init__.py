"""Outbound use cases: an agent's reply or template is checked against the channel's rules and queued
for the sender worker; the sender's outcome and the provider's receipts are applied afterwards.

Inbound and outbound never import each other (an import-linter contract in pyproject.toml); what both
need sits below them (actions/consent.py, contacts, conversations, attachments, views).
"""

from threadline.actions.outbound.delivery import (
           apply_status,
           flag_undeliverable,
           record_failed,
           record_retry,
           record_sent,
)
from threadline.actions.outbound.replies import send_reply
from threadline.actions.outbound.rules import check_send_rules, composer_limits, media_problem
from threadline.actions.outbound.templates import (
           create_template,
           delete_template,
           send_template,
           template_view,
)

__all__ = ["apply_status", "check_send_rules", "composer_limits", "create_template", "delete_template",
           "flag_undeliverable", "media_problem", "record_failed", "record_retry", "record_sent",
           "send_reply", "send_template", "template_view"]
