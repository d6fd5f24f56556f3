"""REST API v1: one router per resource."""

from fastapi import APIRouter

from threadline.web.api import attachments, auth, channels, contacts, conversations, users

router = APIRouter(prefix="/api/v1")
for module in (auth, users, channels, contacts, conversations, attachments):
    router.include_router(module.router)
