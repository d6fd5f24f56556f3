"""REST API v1 additions for web chat, used by the agent desk: agent typing and read receipts. Routes the
web chat package contributes through its host, authenticated with the host's dependency."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict

from threadline.channels.webchat import actions
from threadline.domain.access import Actor
from threadline.domain.ids import Id
from threadline.plugins.host import Host


class TypingIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    typing: bool


class ReadIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    up_to: Id | None = None


class ReadOut(BaseModel):
    marked: list[int]


def router(host: Host) -> APIRouter:
    api = APIRouter(prefix="/api/v1", tags=["web chat"])

    @api.post("/conversations/{conversation_id}/typing", status_code=204,
              summary="The agent started or stopped typing (the visitor's widget shows it)")
    async def agent_typing(conversation_id: Id, body: TypingIn, actor: Actor = Depends(host.current_actor)) -> None:
        await host.write(actions.agent_typing, actor, conversation_id, body.typing)

    @api.post("/conversations/{conversation_id}/read", response_model=ReadOut,
              summary="The agent has seen the customer's messages (web chat shows 'Seen')")
    async def mark_read(conversation_id: Id, body: ReadIn, actor: Actor = Depends(host.current_actor)) -> ReadOut:
        return ReadOut(marked=await host.write(actions.mark_read, actor, conversation_id, body.up_to))

    return api
