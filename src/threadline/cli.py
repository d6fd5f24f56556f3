"""The ``threadline`` command: serve, migrate, demo, user, token, jobs, check."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click

from threadline.config import Settings, get_settings
from threadline.domain.errors import DomainError

T = TypeVar("T")


def _services(settings: Settings):  # type: ignore[no-untyped-def]
    from threadline.services import Services

    return Services.build(settings.model_copy(update={"run_workers": False}))


def run_with_services(fn: Callable[[Any], Awaitable[T]]) -> T:
    """Run ``fn(services)`` with the bus and database, without background workers."""
    settings = get_settings()

    async def main() -> T:
        services = _services(settings)
        try:
            return await fn(services)
        finally:
            await services.stop()

    try:
        return asyncio.run(main())
    except DomainError as exc:
        raise click.ClickException(exc.message) from None


@click.group()
@click.version_option(package_name="threadline")
def main() -> None:
    """Threadline: an omnichannel contact center. Configure with THREADLINE_* environment variables."""


def default_workers() -> int:
    """Every core this process may run on (a container's CPU set, not the whole machine's)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@click.option("--workers", default=None, type=click.IntRange(min=1),
              help="Processes (default: one per core). On one host they share live events through the database "
                   "(or Redis, when THREADLINE_REDIS_URL is set).")
@click.option("--reload", is_flag=True, help="Restart on code changes (development; one process).")
def serve(host: str, port: int, workers: int | None, reload: bool) -> None:
    """Serve the agent desk, the API and the channel hooks."""
    import uvicorn

    if workers is None:
        workers = 1 if reload else default_workers()
    if reload and workers > 1:
        raise click.ClickException("--reload runs one process: leave out --workers or give --workers 1")
    # The processes learn how many they are (Settings.processes): above one, without Redis, they follow the
    # outbox for their live events (bus/tail.py) and hand relayed browser calls to one of them (web/forward.py).
    os.environ["THREADLINE_PROCESSES"] = str(workers)
    settings = get_settings()
    click.echo(f"Threadline is serving on http://{host}:{port} with {workers} process{'es' if workers > 1 else ''}"
               f"  (API docs: http://{host}:{port}/api/docs)")
    uvicorn.run("threadline.web.app:app_factory", factory=True, host=host, port=port, workers=workers,
                reload=reload, log_level=settings.log_level, access_log=False, proxy_headers=True,
                h11_max_incomplete_event_size=settings.max_header_bytes + 4096)


@main.command()
def migrate() -> None:
    """Create or upgrade the database schema."""
    from threadline.db.migrate import upgrade

    settings = get_settings()
    upgrade(settings.resolved_database_url)
    click.echo(f"database is up to date ({_safe_url(settings.resolved_database_url)})")


@main.command()
def demo() -> None:
    """Seed the demo workspace (once; running it again changes nothing)."""
    from threadline.demo import seed

    result = run_with_services(seed)
    click.echo("demo workspace created" if result.created else "demo workspace already present")
    click.echo("demo logins (password for all: threadline-demo):")
    for email, role, _ in result.logins:
        click.echo(f"  {role:<11} {email}")
    if result.api_channel_url:
        click.echo(f"generic API channel inbound URL: {result.api_channel_url}")
    if getattr(result, "demo_url", None):
        click.echo(f"demo shop with the web chat widget (play the visitor there): {result.demo_url}")
    if getattr(result, "pbx_url", None):
        from threadline.demo import PBX_TOKEN

        click.echo(f"demo phone system (CTI) events URL: {result.pbx_url}  (Authorization: Bearer {PBX_TOKEN};"
                   " see README for a call in three curl lines)")


@main.group()
def user() -> None:
    """Manage users."""


def _parse_ids(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


@user.command("create")
@click.option("--email", required=True)
@click.option("--name", required=True)
@click.option("--role", type=click.Choice(["admin", "supervisor", "agent"]), default="agent", show_default=True)
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
@click.option("--skills", default="", help="e.g. billing:4,spanish:5 (levels 1-5)")
@click.option("--languages", default="", help="e.g. en,es")
@click.option("--teams", default="", help="team names, comma-separated (created if missing)")
@click.option("--queues", default="", help="queue names the user serves, comma-separated")
def user_create(email: str, name: str, role: str, password: str, skills: str, languages: str, teams: str,
                queues: str) -> None:
    """Create a user."""
    from threadline.actions import users as actions
    from threadline.db.repos import users as repo
    from threadline.domain.users import parse_skill_spec

    async def run(services):  # type: ignore[no-untyped-def]
        async with services.db.transaction(write=True) as session:
            team_ids = []
            for team_name in _parse_ids(teams):
                team = await repo.get_team_by_name(session, team_name) or await actions.create_team(session, team_name)
                team_ids.append(team.id)
            queue_ids = []
            for queue_name in _parse_ids(queues):
                queue = await repo.get_queue_by_name(session, queue_name)
                if queue is None:
                    raise click.ClickException(f"no queue named {queue_name!r}")
                queue_ids.append(queue.id)
            row = await actions.create_user(session, email=email, name=name, role=role, password=password,
                                            skills=parse_skill_spec(skills), languages=_parse_ids(languages),
                                            team_ids=team_ids, queue_ids=queue_ids)
            return row.id

    click.echo(f"created user {run_with_services(run)}")


@user.command("list")
@click.option("--json", "as_json", is_flag=True)
def user_list(as_json: bool) -> None:
    """List users."""
    from threadline.queries.users import users_out

    async def run(services):  # type: ignore[no-untyped-def]
        async with services.db.transaction(write=False) as session:  # what GET /api/v1/users answers
            return [u.model_dump(include={"id", "email", "name", "role", "skills", "presence", "active"})
                    for u in await users_out(session)]

    rows = run_with_services(run)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        skills = ",".join(f"{k}:{v}" for k, v in sorted(r["skills"].items()))
        click.echo(f"{r['id']:>4}  {r['role']:<10} {r['email']:<36} {r['name']:<24} {skills}")


@user.command("set-password")
@click.argument("email")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
def user_set_password(email: str, password: str) -> None:
    """Set a user's password (ends their sessions)."""
    from threadline.actions import users as actions
    from threadline.db.repos import users as repo

    async def run(services):  # type: ignore[no-untyped-def]
        async with services.db.transaction(write=True) as session:
            row = await repo.get_user_by_email(session, email)
            if row is None:
                raise click.ClickException(f"no user with email {email}")
            await actions.set_password(session, row.id, password)

    run_with_services(run)
    click.echo("password changed")


@main.group()
def token() -> None:
    """Manage API tokens."""


@token.command("create")
@click.option("--user", "email", required=True, help="the owner's email; the token has their permissions")
@click.option("--name", required=True)
def token_create(email: str, name: str) -> None:
    """Create an API token (printed once)."""
    from threadline.actions import auth as actions
    from threadline.db.repos import users as repo

    async def run(services):  # type: ignore[no-untyped-def]
        async with services.db.transaction(write=True) as session:
            row = await repo.get_user_by_email(session, email)
            if row is None:
                raise click.ClickException(f"no user with email {email}")
            tok_row, tok = await actions.create_token(session, row.id, name)
            return tok_row.id, tok

    token_id, tok = run_with_services(run)
    click.echo(f"token {token_id} (shown once, keep it safe):")
    click.echo(tok)


@token.command("revoke")
@click.argument("token_id", type=int)
def token_revoke(token_id: int) -> None:
    """Revoke an API token by id."""
    from threadline.actions import auth as actions

    async def run(services):  # type: ignore[no-untyped-def]
        async with services.db.transaction(write=True) as session:
            await actions.revoke_token(session, token_id)

    run_with_services(run)
    click.echo(f"token {token_id} revoked")


@main.group(invoke_without_command=True)
@click.option("--failed", "state", flag_value="failed", help="only jobs kept as failed")
@click.option("--pending", "state", flag_value="pending", help="only jobs waiting to run")
@click.option("--kind", default=None, help="only jobs of this kind, e.g. conversation.wake")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def jobs(ctx: click.Context, state: str | None, kind: str | None, limit: int, as_json: bool) -> None:
    """Scheduled jobs (durable timers): waiting and failed ones, with their last error."""
    if ctx.invoked_subcommand is not None:
        return
    from threadline.db.repos import scheduler as repo

    async def run(services):  # type: ignore[no-untyped-def]
        async with services.db.transaction(write=False) as session:
            rows = await repo.list_jobs(session, failed=None if state is None else state == "failed", kind=kind,
                                        limit=limit)
            return await repo.counts(session), [
                {"id": r.id, "kind": r.kind, "key": r.key, "state": "failed" if r.failed_at else "pending",
                 "due_at": r.due_at.isoformat(), "attempts": r.attempts, "last_error": r.last_error,
                 "failed_at": r.failed_at.isoformat() if r.failed_at else None, "payload": r.payload}
                for r in rows]

    counts, rows = run_with_services(run)
    if as_json:
        click.echo(json.dumps({"counts": counts, "jobs": rows}, indent=2))
        return
    click.echo(f"{counts['pending']} pending, {counts['failed']} failed")
    for r in rows:
        error = f"  {r['last_error']}" if r["last_error"] else ""
        click.echo(f"{r['id']:>6}  {r['state']:<7} {r['kind']:<24} {r['key']:<12} due {r['due_at'][:19]}  "
                   f"attempts {r['attempts']}{error}")


@jobs.command("retry")
@click.argument("job_id", type=int)
def jobs_retry(job_id: int) -> None:
    """Run a job again now with a fresh count of attempts (once its cause is fixed)."""
    from threadline.actions import scheduler as actions

    async def run(services):  # type: ignore[no-untyped-def]
        async with services.db.transaction(write=True) as session:
            row = await actions.run_again(session, job_id)
            return row.kind, row.key

    kind, key = run_with_services(run)
    click.echo(f"job {job_id} ({kind} {key}) runs again now")


def _safe_url(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        return f"{scheme}://{creds.split(':')[0]}:***@{host}"
    return url


@main.command()
def check() -> None:
    """Report the configuration and whether the database and Redis answer."""
    from sqlalchemy import text

    settings = get_settings()
    click.echo(f"data folder      {settings.data_dir.resolve()}")
    click.echo(f"database         {_safe_url(settings.resolved_database_url)}")
    click.echo(f"redis            {_safe_url(settings.redis_url) if settings.redis_url else '(none: in-process bus)'}")
    click.echo(f"public base URL  {settings.public_base_url}")
    click.echo(f"secret key       {'from THREADLINE_SECRET_KEY' if settings.secret_key else 'generated, in data folder'}")

    async def probe() -> list[tuple[str, bool, str]]:
        from alembic.runtime.migration import MigrationContext
        from alembic.script import ScriptDirectory

        from threadline.db.migrate import alembic_config
        from threadline.db.session import Database

        out = []
        db = Database(settings.resolved_database_url)
        try:
            async with db.write_engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
                # one head since 0010_one_head (an integration package may add its own branch)
                current_heads = await conn.run_sync(lambda c: MigrationContext.configure(c).get_current_heads())
            heads = ScriptDirectory.from_config(alembic_config(settings.resolved_database_url)).get_heads()
            current, head = ", ".join(sorted(current_heads)), ", ".join(sorted(heads))
            out.append(("database", True, "reachable"))
            out.append(("schema", current == head, f"at {current or 'nothing'}, latest {head}"
                        + ("" if current == head else " (run: threadline migrate)")))
        except Exception as exc:
            out.append(("database", False, f"{exc.__class__.__name__}: {exc}"[:200]))
        finally:
            await db.dispose()
        if settings.redis_url:
            import redis.asyncio as aioredis

            try:
                r = aioredis.from_url(settings.redis_url)
                await r.ping()
                await r.aclose()
                out.append(("redis", True, "reachable"))
            except Exception as exc:
                out.append(("redis", False, f"{exc.__class__.__name__}: {exc}"[:200]))
        return out

    results = asyncio.run(probe())
    for name, ok, detail in results:
        click.echo(f"{name:<16} {'ok' if ok else 'FAIL'}  {detail}")
    if not all(ok for _, ok, _ in results):
        sys.exit(1)


@main.command()
@click.option("--agents", type=int, required=True, help="agents logged in")
@click.option("--arrival-rate", type=float, required=True, help="contacts per hour")
@click.option("--aht", type=float, required=True, help="mean handle time in seconds (talk + wrap-up)")
@click.option("--patience", type=float, default=None, help="mean patience in seconds (default: nobody abandons)")
@click.option("--duration", type=float, default=8 * 3600, show_default=True, help="seconds of arrivals")
@click.option("--warmup", type=float, default=0.0, show_default=True, help="seconds ignored in the figures")
@click.option("--sl-threshold", type=float, default=20.0, show_default=True, help="service-level threshold, s")
@click.option("--channel", type=click.Choice(["voice", "chat", "messaging", "email"]), default="voice",
              show_default=True)
@click.option("--capacity", type=int, default=1, show_default=True, help="contacts per agent at once")
@click.option("--handle-time", type=click.Choice(["exponential", "fixed", "lognormal"]), default="exponential",
              show_default=True)
@click.option("--wrap-up", type=float, default=0.0, show_default=True, help="seconds of after-contact work")
@click.option("--seed", type=int, default=0, show_default=True)
def simulate(agents: int, arrival_rate: float, aht: float, patience: float | None, duration: float, warmup: float,
             sl_threshold: float, channel: str, capacity: int, handle_time: str, wrap_up: float, seed: int) -> None:
    """Discrete-event simulation through the routing code production runs, next to the Erlang prediction."""
    from pydantic import ValidationError

    from threadline.sim import SimulationParams, format_report, run_simulation

    try:
        params = SimulationParams(agents=agents, arrival_rate=arrival_rate / 3600.0, aht=aht, patience=patience,
                                  duration=duration, warmup=warmup, sl_threshold=sl_threshold, channel=channel,
                                  capacity=capacity, handle_time=handle_time, wrap_up=wrap_up, seed=seed)
    except ValidationError as exc:
        raise click.ClickException("; ".join(e["msg"] for e in exc.errors())) from None
    click.echo(format_report(run_simulation(params)))


if __name__ == "__main__":
    main()
