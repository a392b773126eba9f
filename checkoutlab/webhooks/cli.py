"""``checkoutlab webhooks ...``: list merchant webhook deliveries and replay them.

Registered by the top-level CLI with ``app.add_typer(webhooks_app, name="webhooks")``.
These are admin commands on the configured database (no API key): an operator replays
what a merchant's receiver missed during an outage.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.console import Console

from checkoutlab.db import open_database

app = typer.Typer(help="Merchant webhooks: deliveries and replay.", no_args_is_help=True)
console = Console()
err_console = Console(stderr=True)


@app.callback()
def _webhooks() -> None:
    """Merchant webhooks: deliveries and replay."""


def _when(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        err_console.print(f"[red]error:[/red] {option} must be an ISO 8601 time, got {value!r}")
        raise typer.Exit(2) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@app.command("list")
def list_command(
    merchant: Annotated[str | None, typer.Option(help="Only this merchant (mer_...).")] = None,
    endpoint: Annotated[str | None, typer.Option(help="Only this endpoint (we_...).")] = None,
    event: Annotated[str | None, typer.Option(help="Only this event (evt_...).")] = None,
    status: Annotated[
        list[str] | None,
        typer.Option(help="pending, succeeded, failed or canceled; repeat for several."),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """Recent deliveries, newest first."""
    from checkoutlab.webhooks import outbound

    database = open_database()
    try:
        with database.session() as db:
            rows = outbound.list_deliveries(
                db=db,
                merchant_id=merchant,
                endpoint_id=endpoint,
                event_id=event,
                statuses=status,
                limit=limit,
            )
    finally:
        database.dispose()
    for row in rows:
        if as_json:
            typer.echo(json.dumps(row.model_dump(mode="json")))
        else:
            nxt = f" next {row.next_attempt_at:%Y-%m-%d %H:%M:%S}" if row.next_attempt_at else ""
            code = row.last_status_code if row.last_status_code is not None else "-"
            typer.echo(
                f"{row.id}  {row.event_id}  {row.event_type:18} {row.endpoint_id}  "
                f"{row.status:9} attempts={row.attempts} last={code}{nxt}"
            )
    if not rows and not as_json:
        err_console.print("no deliveries")


@app.command("replay")
def replay_command(
    event: Annotated[str | None, typer.Option(help="Re-send this event (evt_...).")] = None,
    endpoint: Annotated[
        str | None, typer.Option(help="Only to this endpoint (we_...); with --since/--until.")
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="Events created at or after (ISO 8601).")
    ] = None,
    until: Annotated[str | None, typer.Option(help="Events created before (ISO 8601).")] = None,
    deliver: Annotated[
        bool,
        typer.Option(
            "--deliver/--schedule",
            help="Send now from this process (default), or leave it to the worker.",
        ),
    ] = True,
) -> None:
    """Re-send deliveries, by event id or by endpoint and time range, with fresh retries."""
    from checkoutlab.config import get_settings
    from checkoutlab.errors import CheckoutLabError
    from checkoutlab.webhooks import outbound
    from checkoutlab.webhooks.dispatcher import Dispatcher

    if event is None and endpoint is None:
        err_console.print("[red]error:[/red] pass --event, or --endpoint with --since/--until.")
        raise typer.Exit(2)
    start, end = _when(since, "--since"), _when(until, "--until")
    database = open_database()
    try:
        with database.session() as db:
            try:
                ids = outbound.replay(
                    db=db, event_id=event, endpoint_id=endpoint, since=start, until=end
                )
            except CheckoutLabError as exc:
                err_console.print(f"[red]error:[/red] {exc.message}")
                raise typer.Exit(1) from None
        if not deliver:
            typer.echo(f"scheduled {len(ids)} deliveries")
            return
        dispatcher = Dispatcher(database, get_settings())
        attempts = []
        try:
            for offset in range(0, len(ids), dispatcher.batch_size):
                attempts += dispatcher.deliver_due(
                    only=ids[offset : offset + dispatcher.batch_size]
                )
        finally:
            dispatcher.stop()
        for attempt in attempts:
            code = attempt.status_code if attempt.status_code is not None else "-"
            detail = f" ({attempt.error})" if attempt.error else ""
            typer.echo(f"{attempt.delivery_id}  {attempt.status}  {code}{detail}")
        delivered = sum(a.status == "succeeded" for a in attempts)
        typer.echo(f"replayed {len(ids)} deliveries: {delivered} delivered")
    finally:
        database.dispose()
