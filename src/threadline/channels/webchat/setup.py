"""The web chat package's setup hook: the visitors' endpoints and websocket (with their live hub), the
agents' typing and read-receipt API, and the larger body the visitors' uploads need."""

from __future__ import annotations

from threadline.channels.webchat import verification
from threadline.channels.webchat.web import agent_api, routes
from threadline.channels.webchat.web.live import VisitorHub
from threadline.domain.ratelimit import RateLimiter
from threadline.plugins.host import Host

UPLOAD_BODY_BYTES = 26 * 1024 * 1024  # files up to the channel's limit (checked by the endpoint), at most 25 MB


def setup(host: Host) -> routes.WebChat:
    web = routes.WebChat(host, VisitorHub(host), RateLimiter())
    host.add_routes(routes.bound(web), body_limits={"/widget/attachments": UPLOAD_BODY_BYTES})
    host.add_routes(agent_api.router(host))
    host.on_job(verification.JOB, verification.send_handler(host))  # one-time codes (verification by code)
    return web
