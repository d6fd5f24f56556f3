"""The knowledge base's web layer: the REST API (``rest``, under ``/api/v1/kb``) and the public help
center's pages (``help``, at ``/help``). ``web/app.py`` includes both routers (a wiring point)."""

from threadline.kb.api.help import help_router
from threadline.kb.api.rest import router

__all__ = ["help_router", "router"]
