"""Instagram messaging (kind ``instagram``), through a Facebook Page linked to the Instagram professional
account (Facebook Login): the webhook is ``object: instagram`` with ``entry[].messaging[]`` shaped like
Messenger's (Instagram-scoped sender ids, ``mid``, ``is_echo``, ``is_deleted``, ``reply_to.story``), and
replies go to the Messenger Send API with the page token. Comments (``changes[field=comments]``) are
acknowledged and not turned into messages."""

from __future__ import annotations

from typing import ClassVar

from threadline.channels.base import Capabilities
from threadline.channels.messenger.adapter import MessengerChannel


class InstagramChannel(MessengerChannel):
    kind = "instagram"
    title = "Instagram messaging"
    capabilities = Capabilities(
        max_text_length=1000, attachments=True, max_attachment_bytes=8 * 1024 * 1024,
        allowed_content_types=("image/jpeg", "image/png", "video/mp4", "audio/mpeg"), identity_kinds=("handle",),
        read_receipts=True, reply_window_seconds=24 * 3600, work_class="messaging")
    object_name: ClassVar[str] = "instagram"
    product: ClassVar[str] = "Instagram"
