"""The agent desk (server-rendered). Issue 3 grows it into the full HTMX desk."""

from threadline.web.desk.routes import router

__all__ = ["router"]
