"""REST API v1: one router per resource."""

from fastapi import APIRouter

from threadline.web.api import attachments, auth, canned, channels, contacts, conversations, users
from threadline.web.api import continuity as continuity_api
from threadline.web.api import csat as csat_api
from threadline.web.api import messaging as messaging_api
from threadline.web.api import routing as routing_api
from threadline.web.api import webhooks as webhooks_api

router = APIRouter(prefix="/api/v1")
for module in (auth, users, channels, contacts, conversations, attachments, canned):
    router.include_router(module.router)
router.include_router(routing_api.router)
router.include_router(continuity_api.router)
router.include_router(messaging_api.router)
router.include_router(webhooks_api.router)
router.include_router(csat_api.router)
