"""Telegram Bot API channel."""

from threadline.channels.telegram.adapter import TelegramChannel, TelegramConfig
from threadline.plugins import Integration, PluginType

ADAPTER = TelegramChannel
integration = Integration(name="telegram", type=PluginType.CHANNEL, title="Telegram bot",
                          adapters=(TelegramChannel,))
__all__ = ["ADAPTER", "integration", "TelegramChannel", "TelegramConfig"]
