"""Web chat, the visitor side: the widget script, its endpoints and websocket, the demo shop page."""

from threadline.channels.webchat.web.agent_api import router as agent_router
from threadline.channels.webchat.web.routes import router

__all__ = ["agent_router", "router"]
