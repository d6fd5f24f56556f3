"""The comparison point: a bare Starlette endpoint that only parses the JSON body."""

import json

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


async def ingest(request: Request) -> Response:
    json.loads(await request.body())
    return Response(b'{"ok":true}', media_type="application/json")


app = Starlette(routes=[Route("/hooks/{key}", ingest, methods=["POST"])])
