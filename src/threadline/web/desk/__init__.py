"""The agent desk (server-rendered with HTMX) and the admin pages."""

from threadline.web.desk.admin import router as admin_router
from threadline.web.desk.routes import router

router.include_router(admin_router)

__all__ = ["router"]
