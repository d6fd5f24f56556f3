"""The comparison points: bare Starlette endpoints that only parse the body (JSON for the ingest benches,
a Twilio form for the voice bench, which gets a fixed TwiML answer)."""

import json
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

TWIML = (b'<?xml version="1.0" encoding="UTF-8"?><Response><Gather action="/wait-key" numDigits="1" timeout="1">'
         b'<Say language="en-US">You are number 3 in the queue.</Say></Gather><Pause length="30" /></Response>')


async def ingest(request: Request) -> Response:
    json.loads(await request.body())
    return Response(b'{"ok":true}', media_type="application/json")


async def voice(request: Request) -> Response:
    dict(parse_qsl((await request.body()).decode("utf-8"), keep_blank_values=True))
    return Response(TWIML, media_type="text/xml")


app = Starlette(routes=[Route("/hooks/{key}", ingest, methods=["POST"]),
                        Route("/hooks/{key}/voice/{step}", voice, methods=["POST"])])
