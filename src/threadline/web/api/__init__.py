"""REST API v1: one router per resource of the core. Feature packages' routers are included by the app
(``web/app.py``): they import this package's schemas, so including them here would be an import cycle."""

from fastapi import APIRouter

from threadline.web.api import attachments, auth, canned, channels, contacts, conversations, users
from threadline.web.api import continuity as continuity_api
from threadline.web.api import csat as csat_api
from threadline.web.api import messaging as messaging_api
from threadline.web.api import routing as routing_api

router = APIRouter(prefix="/api/v1")
for module in (auth, users, channels, contacts, conversations, attachments, canned):
    router.include_router(module.router)
router.include_router(routing_api.router)
router.include_router(continuity_api.router)
router.include_router(messaging_api.router)
router.include_router(csat_api.router)
