"""Users, presence, teams and queues."""

from __future__ import annotations

from fastapi import APIRouter, Response

from threadline.actions import users as user_actions
from threadline.db.repos import users as repo
from threadline.domain.errors import NotFound, PermissionDenied
from threadline.queries.users import queue_out, queues_out, team_out, user_out, users_out
from threadline.web.api.schemas import (
    Id,
    PasswordIn,
    PresenceIn,
    QueueIn,
    QueueOut,
    QueueUpdate,
    TeamIn,
    TeamOut,
    UserCreate,
    UserOut,
    UserUpdate,
)
from threadline.web.deps import AdminActor, CurrentActor, ServicesDep

router = APIRouter()


@router.get("/users", response_model=list[UserOut], tags=["users"])
async def list_users(actor: CurrentActor, services: ServicesDep) -> list[UserOut]:
    async with services.db.transaction(write=False) as session:
        return await users_out(session)


@router.post("/users", response_model=UserOut, status_code=201, tags=["users"])
async def create_user(body: UserCreate, actor: AdminActor, services: ServicesDep) -> UserOut:
    async with services.db.transaction(write=True) as session:
        row = await user_actions.create_user(session, **body.model_dump())
        return await user_out(session, row.id)


@router.get("/users/{user_id}", response_model=UserOut, tags=["users"])
async def get_user(user_id: Id, actor: CurrentActor, services: ServicesDep) -> UserOut:
    async with services.db.transaction(write=False) as session:
        return await user_out(session, user_id)


@router.patch("/users/{user_id}", response_model=UserOut, tags=["users"])
async def update_user(user_id: Id, body: UserUpdate, actor: AdminActor, services: ServicesDep) -> UserOut:
    async with services.db.transaction(write=True) as session:
        await user_actions.update_user(session, user_id, **body.model_dump(exclude_unset=True))
        return await user_out(session, user_id)


@router.put("/users/{user_id}/password", status_code=204, tags=["users"],
            summary="Set a password (admins for anyone, users for themselves); ends that user's sessions")
async def set_password(user_id: Id, body: PasswordIn, actor: CurrentActor, services: ServicesDep) -> Response:
    if user_id != actor.user_id and actor.role.value != "admin":
        raise PermissionDenied("only an admin may set another user's password")
    async with services.db.transaction(write=True) as session:
        await user_actions.set_password(session, user_id, body.password)
    return Response(status_code=204)


@router.put("/me/presence", response_model=UserOut, tags=["users"],
            summary="Set your presence: available, away, break (with a reason) or offline")
async def set_presence(body: PresenceIn, actor: CurrentActor, services: ServicesDep) -> UserOut:
    async with services.db.transaction(write=True) as session:
        await user_actions.set_presence(session, actor.user_id, body.status, body.reason)
        return await user_out(session, actor.user_id)


@router.get("/teams", response_model=list[TeamOut], tags=["teams"])
async def list_teams(actor: CurrentActor, services: ServicesDep) -> list[TeamOut]:
    async with services.db.transaction(write=False) as session:
        return [await team_out(session, t)
                for t in await repo.list_teams(session)]


@router.post("/teams", response_model=TeamOut, status_code=201, tags=["teams"])
async def create_team(body: TeamIn, actor: AdminActor, services: ServicesDep) -> TeamOut:
    async with services.db.transaction(write=True) as session:
        team = await user_actions.create_team(session, body.name)
        return TeamOut(id=team.id, name=team.name, member_ids=[])


@router.get("/teams/{team_id}", response_model=TeamOut, tags=["teams"])
async def get_team(team_id: Id, actor: CurrentActor, services: ServicesDep) -> TeamOut:
    async with services.db.transaction(write=False) as session:
        team = await repo.get_team(session, team_id)
        if team is None:
            raise NotFound(f"team {team_id} does not exist")
        return await team_out(session, team)


@router.get("/queues", response_model=list[QueueOut], tags=["queues"],
            summary="Queues (agents see the queues they serve; supervisors all)")
async def list_queues(actor: CurrentActor, services: ServicesDep) -> list[QueueOut]:
    async with services.db.transaction(write=False) as session:
        return await queues_out(session, actor.visibility)


@router.post("/queues", response_model=QueueOut, status_code=201, tags=["queues"])
async def create_queue(body: QueueIn, actor: AdminActor, services: ServicesDep) -> QueueOut:
    async with services.db.transaction(write=True) as session:
        q = await user_actions.create_queue(session, body.name, body.settings, body.team_id)
        return await queue_out(session, q)


@router.get("/queues/{queue_id}", response_model=QueueOut, tags=["queues"])
async def get_queue(queue_id: Id, actor: CurrentActor, services: ServicesDep) -> QueueOut:
    async with services.db.transaction(write=False) as session:
        q = await repo.get_queue(session, queue_id)
        if q is None or not actor.visibility.serves(q.id):
            raise NotFound(f"queue {queue_id} does not exist")
        return await queue_out(session, q)


@router.patch("/queues/{queue_id}", response_model=QueueOut, tags=["queues"])
async def update_queue(queue_id: Id, body: QueueUpdate, actor: AdminActor, services: ServicesDep) -> QueueOut:
    async with services.db.transaction(write=True) as session:
        q = await user_actions.update_queue(session, queue_id, **body.model_dump(exclude_unset=True))
        return await queue_out(session, q)
