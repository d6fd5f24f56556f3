"""Telegram Bot API channel."""

from threadline.channels.telegram.adapter import TelegramChannel, TelegramConfig

ADAPTER = TelegramChannel
__all__ = ["ADAPTER", "TelegramChannel", "TelegramConfig"]
