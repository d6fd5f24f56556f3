"""Web chat, the visitor side: the widget script, its endpoints and websocket, the demo shop page."""

from threadline.web.webchat.agent_api import router as agent_router
from threadline.web.webchat.routes import router

__all__ = ["agent_router", "router"]
