"""The ``checkoutlab`` command line (typer): serve, demo, database and merchant admin."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console

from checkoutlab.bandits.cli import app as bandits_app
from checkoutlab.config import get_settings
from checkoutlab.dashboard.cli import app as users_app
from checkoutlab.db import Database, open_database
from checkoutlab.experiments.cli import app as experiments_app
from checkoutlab.fraud.cli import app as fraud_app
from checkoutlab.webhooks.cli import app as webhooks_app

app = typer.Typer(
    help="Checkout Lab: payment profiles, generated checkout forms, payments.", no_args_is_help=True
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
merchants_app = typer.Typer(help="Merchants and their API keys.", no_args_is_help=True)
config_app = typer.Typer(help="A merchant's configuration.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(fraud_app, name="fraud")
app.add_typer(bandits_app, name="bandits")
app.add_typer(experiments_app, name="experiments")
app.add_typer(webhooks_app, name="webhooks")
app.add_typer(merchants_app, name="merchants")
merchants_app.add_typer(config_app, name="config")
merchants_app.add_typer(users_app, name="users")
console = Console(stderr=True)


def _database() -> Database:
    return Database(get_settings().database_url)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create the schema or upgrade it to the newest migration."""
    from checkoutlab.db import migration_lock

    database = _database()
    with migration_lock(database.engine):  # not at the same time as a starting serve/worker
        database.upgrade()
    console.print(f"[green]database at head[/green]: {database.engine.url.render_as_string()}")


@merchants_app.command("create")
def merchants_create(
    name: Annotated[str, typer.Option(help="Merchant display name.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the keys as JSON.")] = False,
) -> None:
    """Create a merchant. The secret key is printed once and stored only as a hash."""
    from checkoutlab.merchants import service

    database = open_database()
    with database.session() as session:
        created = service.create(db=session, name=name)
    result = {
        "merchant_id": created.merchant_id,
        "publishable_key": created.publishable_key,
        "secret_key": created.secret_key,
    }
    if as_json:
        typer.echo(json.dumps(result))
    else:
        for key, value in result.items():
            typer.echo(f"{key}: {value}")
        console.print("[yellow]Store the secret key now: it cannot be shown again.[/yellow]")


@config_app.command("set")
def merchants_config_set(
    merchant: Annotated[str, typer.Option(help="Merchant id (mer_...).")],
    file: Annotated[Path, typer.Option(exists=True, dir_okay=False, help="config.json")],
) -> None:
    """Validate and save a merchant's configuration (rules are compiled, errors located)."""
    from checkoutlab.errors import NotFound
    from checkoutlab.merchants import service
    from checkoutlab.merchants.schemas import MerchantConfig

    try:
        config = MerchantConfig.model_validate_json(file.read_text())
    except ValidationError as exc:
        console.print(f"[red]{file} is not a valid merchant configuration:[/red]")
        for error in exc.errors():
            where = ".".join(str(p) for p in error["loc"]) or "(root)"
            console.print(f"  {where}: {error['msg']}")
        raise typer.Exit(2) from None
    database = open_database()
    with database.session() as session:
        try:
            service.set_config(db=session, merchant_id=merchant, config=config)
        except NotFound as exc:
            console.print(f"[red]{exc.message}[/red]")
            raise typer.Exit(1) from None
    console.print(f"[green]configuration saved for {merchant}[/green]")


# --- in checkoutlab/cli.py, next to the other sub-apps:
keys_app = typer.Typer(help="A merchant's secret keys: roll, revoke, list.", no_args_is_help=True)
merchants_app.add_typer(keys_app, name="keys")


@keys_app.command("roll")
def merchants_keys_roll(
    merchant: Annotated[str, typer.Option(help="Merchant id (mer_...).")],
    grace_hours: Annotated[
        float | None, typer.Option(help="How long the old key keeps working (default: setting).")
    ] = None,
) -> None:
    """Issue a new secret key; the old one stays valid for the grace period."""
    from datetime import timedelta

    from checkoutlab.errors import NotFound
    from checkoutlab.merchants import service

    hours = get_settings().key_grace_hours if grace_hours is None else grace_hours
    database = open_database()
    with database.session() as session:
        try:
            secret, new, old = service.roll_secret_key(
                db=session, merchant_id=merchant, grace=timedelta(hours=hours)
            )
        except NotFound as exc:
            console.print(f"[red]{exc.message}[/red]")
            raise typer.Exit(1) from None
    typer.echo(f"secret_key: {secret}")
    console.print(
        f"new key {new.key_id}; old key {old.key_id} (…{old.last4}) valid until "
        f"{old.expires_at:%Y-%m-%d %H:%M} UTC"
    )
    console.print("[yellow]Store the secret key now: it cannot be shown again.[/yellow]")


@keys_app.command("revoke")
def merchants_keys_revoke(
    merchant: Annotated[str, typer.Option(help="Merchant id (mer_...).")],
    key_id: Annotated[str | None, typer.Option(help="A rolled-out key's id (key_...).")] = None,
    all_previous: Annotated[
        bool, typer.Option("--all", help="Revoke every rolled-out key.")
    ] = False,
) -> None:
    """Revoke a rolled-out secret key, or all of them; they answer 401 afterwards."""
    from checkoutlab.errors import CheckoutLabError
    from checkoutlab.merchants import service

    if (key_id is None) == (not all_previous):
        console.print("[red]Pass either --key-id or --all.[/red]")
        raise typer.Exit(2)
    database = open_database()
    with database.session() as session:
        try:
            revoked = service.revoke_secret_keys(db=session, merchant_id=merchant, key_id=key_id)
        except CheckoutLabError as exc:
            console.print(f"[red]{exc.message}[/red]")
            raise typer.Exit(1) from None
    for key in revoked:
        typer.echo(f"revoked {key.key_id} (…{key.last4})")
    if not revoked:
        console.print("no rolled-out key was active")


@keys_app.command("list")
def merchants_keys_list(merchant: Annotated[str, typer.Option(help="Merchant id.")]) -> None:
    """The current secret key and the rolled-out ones (ids and last four only)."""
    from checkoutlab.merchants import service

    with _database().session() as session:
        for key in service.list_secret_keys(db=session, merchant_id=merchant):
            until = f" until {key.expires_at:%Y-%m-%d %H:%M}" if key.expires_at else ""
            typer.echo(f"{key.key_id}  …{key.last4}  {key.status}{until}")


@merchants_app.command("audit")
def merchants_audit(
    merchant: Annotated[str, typer.Option(help="Merchant id (mer_...).")],
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """Recent requests made with the merchant's secret keys, newest first."""
    from checkoutlab.merchants import audit

    with _database().session() as session:
        entries = audit.recent(db=session, merchant_id=merchant, limit=limit)
    for entry in entries:
        row = audit.as_dict(entry)
        if as_json:
            typer.echo(json.dumps(row))
        else:
            typer.echo(
                f"{row['created_at']}  {row['key_last4']}  {row['method']:6} "
                f"{row['status_code']}  {row['path']}  {row['client_ip']}"
            )


def _prepare_schema(database: Database) -> str:
    """Migrate when the schema is behind this release; start anyway when it is ahead.

    During a rolling deploy the new release migrates first; the old release's processes
    must still restart (Alembic cannot upgrade from a revision it does not know).
    """
    import logging

    log = logging.getLogger("checkoutlab.cli")
    status = database.migrate()
    if status == "ahead":
        log.warning(
            "database schema is ahead of this release (a newer release migrated it); "
            "starting without migrating"
        )
    elif status in ("missing", "behind"):
        log.info("database schema was %s; migrated to this release's head(s)", status)
    return status


class LogFormatOption(StrEnum):
    text = "text"
    json = "json"


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1, max=256, help="API worker processes (default: CHECKOUTLAB_API_WORKERS)"
        ),
    ] = None,
    log_format: Annotated[
        LogFormatOption | None,
        typer.Option(help="Log lines as text or JSON (default: CHECKOUTLAB_LOG_FORMAT)"),
    ] = None,
    graceful_timeout: Annotated[
        float | None,
        typer.Option(
            min=0.1,
            help="Seconds in-flight requests may take to finish after SIGTERM "
            "(default: CHECKOUTLAB_SHUTDOWN_GRACE_SECONDS)",
        ),
    ] = None,
) -> None:
    """Run the API: migrate the database once, then start the worker processes.

    Several workers run under uvicorn's own supervisor (it restarts a worker that dies or
    hangs, SIGHUP replaces them one by one); SIGTERM drains in-flight requests for the grace
    period before the workers stop. With more than one worker, Prometheus metrics are
    shared through PROMETHEUS_MULTIPROC_DIR (a fresh temporary directory unless set).
    """
    import math
    import os

    import uvicorn

    from checkoutlab.observability import metrics
    from checkoutlab.observability.logging import configure_logging, logging_config

    settings = get_settings()
    count = workers or settings.api_workers
    try:
        settings.check_shared_rate_limit_storage(count)
    except ValueError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    fmt = log_format.value if log_format is not None else settings.log_format
    grace = graceful_timeout if graceful_timeout is not None else settings.shutdown_grace_seconds
    # Workers are fresh processes that read their settings from the environment.
    os.environ["CHECKOUTLAB_LOG_FORMAT"] = fmt
    configure_logging(fmt, settings.log_level)

    database = _database()
    _prepare_schema(database)  # here, once: workers never race each other on migrations
    database.dispose()  # no connection is shared with the workers

    created_dir = None
    if count > 1 or metrics.multiprocess_dir() is not None:
        path, created = metrics.prepare_multiprocess_dir(metrics.multiprocess_dir())
        created_dir = path if created else None
    try:
        uvicorn.run(
            "checkoutlab.api.app:create_app",
            factory=True,
            host=host,
            port=port,
            workers=count,
            log_config=logging_config(fmt, settings.log_level),
            access_log=False,  # checkoutlab.access logs each request with its id and route
            timeout_graceful_shutdown=max(1, math.ceil(grace)),
            # spawned workers import the whole platform before they can answer the supervisor
            timeout_worker_healthcheck=settings.worker_healthcheck_seconds,
        )
    finally:
        if created_dir is not None:
            metrics.remove_multiprocess_dir(created_dir)


@app.command()
def demo(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
) -> None:
    """Seed a demo merchant (catalogue, stock, returning customers) and serve it."""
    import uvicorn

    from checkoutlab.api.app import create_app
    from checkoutlab.demo import seed
    from checkoutlab.demo.seed import ensure_champion

    settings = get_settings()
    database = open_database()
    with database.session() as session:
        keys = seed(db=session)
    if settings.risk_scorer == "champion":
        with console.status("training a demo fraud model (first start only) ..."):
            version = ensure_champion(settings.mlflow_tracking_uri)
        console.print(f"  fraud champion:     fraud-scorer v{version}")
    base = f"http://{host}:{port}"
    console.print("[bold]Checkout Lab demo[/bold]")
    console.print(f"  Demo store:         {base}/demo")
    if "dashboard_email" in keys:
        login = f"{base}/dashboard/login?merchant={keys['merchant_id']}"
        console.print(f"  Growth dashboard:   {login}", soft_wrap=True)
        console.print(f"    e-mail:           {keys['dashboard_email']}")
        console.print(f"    password:         {keys['dashboard_password']}")
    console.print(f"  OpenAPI:            {base}/openapi.json")
    console.print(f"  Profile schema:     {base}/v1/schemas/payment_profile.json")
    console.print(f"  merchant_id:        {keys['merchant_id']}")
    console.print(f"  publishable_key:    {keys['publishable_key']}")
    console.print(f"  secret_key:         {keys['secret_key']}")
    uvicorn.run(
        create_app(demo_keys=keys, demo_api_base=base),
        host=host,
        port=port,
        log_level=get_settings().log_level.lower(),
    )


@app.command()
def worker(
    interval: Annotated[float, typer.Option(min=0.05, help="Seconds between idle polls.")] = 1.0,
    log_format: Annotated[
        LogFormatOption | None,
        typer.Option(help="Log lines as text or JSON (default: CHECKOUTLAB_LOG_FORMAT)"),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=65535,
            help="Serve Prometheus metrics (learner lag, rewards) on this port "
            "(default: CHECKOUTLAB_WORKER_METRICS_PORT, off)",
        ),
    ] = None,
    metrics_host: Annotated[str, typer.Option(help="Interface of the metrics port.")] = "127.0.0.1",
) -> None:
    """Run the background jobs: bandit learner, fraud retraining, merchant webhook deliveries,
    reconciliation of payments whose outcome is unknown.

    The learner turns the event log into rewards and policy snapshots; every
    CHECKOUTLAB_RETRAIN_INTERVAL_HOURS the fraud model is retrained on the platform's own
    outcomes and promoted if it beats the champion.
    """
    import signal
    import threading
    from datetime import timedelta

    from checkoutlab.bandits.learner import Learner
    from checkoutlab.fraud.retrain import NotEnoughData, retrain
    from checkoutlab.observability.logging import configure_logging

    settings = get_settings()
    configure_logging(log_format.value if log_format else settings.log_format, settings.log_level)
    database = _database()
    _prepare_schema(database)
    stop = threading.Event()
    # SIGTERM (docker stop, systemd, Kubernetes) ends the loop between batches: a batch is
    # one transaction, so stopping there leaves nothing half-applied.
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    port = metrics_port or settings.worker_metrics_port
    if port:
        from prometheus_client import start_http_server

        start_http_server(port, addr=metrics_host)

    def retrain_loop() -> None:
        period = settings.retrain_interval_hours * 3600
        while not stop.wait(period):
            try:
                outcome = retrain(database, spec=settings.retrain_spec)
                console.print(f"retrained fraud model v{outcome.version}: {outcome.reason}")
            except NotEnoughData as exc:
                console.print(f"[yellow]retraining skipped[/yellow]: {exc}")
            except Exception as exc:  # keep the worker alive; the next period tries again
                console.print(f"[red]retraining failed[/red]: {exc}")

    jobs = ["bandit learner"]
    if settings.retrain_interval_hours > 0:
        threading.Thread(target=retrain_loop, name="retrain", daemon=True).start()
        jobs.append(f"fraud retraining every {settings.retrain_interval_hours:g} h")
    learner = Learner(
        database, attribution_window=timedelta(minutes=settings.attribution_window_minutes)
    )
    from checkoutlab.webhooks.dispatcher import Dispatcher

    dispatcher = Dispatcher(database, settings)  # merchant webhooks, with retries
    dispatcher.start()
    jobs.append("webhook deliveries")
    from checkoutlab.payments.reconciler import Reconciler

    reconciler = Reconciler(database, settings)  # payments left with an unknown outcome
    reconciler.start()
    jobs.append("payment reconciliation")
    console.print(f"[green]worker running[/green]: {', '.join(jobs)}; Ctrl-C stops")
    try:
        learner.run(interval_seconds=interval, stop=stop)
    except KeyboardInterrupt:
        pass  # Ctrl-C ends like SIGTERM
    finally:
        stop.set()
        dispatcher.stop()
        reconciler.stop()
        database.dispose()
        console.print("worker stopped")
