"""Download stored files: only people who may see the file's conversation get it."""

from __future__ import annotations

from fastapi import APIRouter, Response

from threadline.db.repos import conversations as conv_repo
from threadline.db.repos import files as repo
from threadline.domain.errors import NotFound
from threadline.files.names import content_disposition
from threadline.web.deps import CurrentActor, ServicesDep

router = APIRouter(tags=["attachments"])
# Shown in the browser; anything else (HTML, SVG, scripts…) is always a download, never rendered.
INLINE_TYPES = {"image/png", "image/jpeg", "image/gif", "image/webp", "application/pdf", "text/plain",
                "audio/mpeg", "audio/ogg", "video/mp4"}


@router.get("/attachments/{attachment_id}", summary="Download an attachment", response_class=Response)
async def download(attachment_id: str, actor: CurrentActor, services: ServicesDep) -> Response:
    async with services.db.transaction(write=False) as session:
        row = await repo.get_attachment(session, attachment_id)
        if row is None:
            raise NotFound(f"attachment {attachment_id} does not exist")
        if row.conversation_id is None:
            if not actor.sees_everything:
                raise NotFound(f"attachment {attachment_id} does not exist")
        else:
            actor.check_can_see(await conv_repo.get_conversation(session, row.conversation_id), row.conversation_id)
    if not services.files.exists(row.sha256):
        raise NotFound(f"attachment {attachment_id} is missing from the file store")
    disposition = "inline" if row.content_type in INLINE_TYPES else "attachment"
    return Response(services.files.read(row.sha256), media_type=row.content_type,
                    headers={"Content-Disposition": content_disposition(disposition, row.name),
                             "Cache-Control": "private, max-age=3600"})
