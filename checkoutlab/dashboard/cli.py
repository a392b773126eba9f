"""``checkoutlab merchants users add|set-password|remove|list``: the growth team's dashboard
accounts.

The password is read from a hidden prompt (asked twice) or, for scripts, from standard input
with ``--password-stdin``; never from an option, which would land in shell history and ``ps``.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.console import Console

app = typer.Typer(help="A merchant's dashboard users (growth team).", no_args_is_help=True)
console = Console(stderr=True)


@app.command("add")
def add_command(
    merchant: Annotated[str, typer.Option(help="Merchant id (mer_...).")],
    email: Annotated[str, typer.Option(help="The team member's e-mail (their login).")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
) -> None:
    """Add a team member who can sign in at /dashboard."""
    from checkoutlab.dashboard import auth
    from checkoutlab.db import open_database
    from checkoutlab.errors import CheckoutLabError

    password = _read_password(password_stdin)
    database = open_database()
    try:
        with database.session() as db:
            user = auth.add_user(db=db, merchant_id=merchant, email=email, password=password)
    except CheckoutLabError as exc:
        console.print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(1) from None
    finally:
        database.dispose()
    typer.echo(f"added {user.email} ({user.id}) to {merchant}")
    console.print(f"sign in at /dashboard/login?merchant={merchant}")


def _read_password(password_stdin: bool) -> str:
    if password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return typer.prompt("Password", hide_input=True, confirmation_prompt=True)


@app.command("remove")
def remove_command(
    merchant: Annotated[str, typer.Option(help="Merchant id (mer_...).")],
    email: Annotated[str, typer.Option(help="The team member's e-mail.")],
) -> None:
    """Remove a team member; their sessions end at once, on every worker."""
    from checkoutlab.config import get_settings
    from checkoutlab.dashboard import auth
    from checkoutlab.db import Database
    from checkoutlab.errors import CheckoutLabError

    database = Database(get_settings().database_url)
    try:
        with database.session() as db:
            ended = auth.remove_user(db=db, merchant_id=merchant, email=email)
    except CheckoutLabError as exc:
        console.print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(1) from None
    finally:
        database.dispose()
    typer.echo(f"removed {auth.normalize_email(email)} from {merchant}; {ended} session(s) ended")


@app.command("set-password")
def set_password_command(
    merchant: Annotated[str, typer.Option(help="Merchant id (mer_...).")],
    email: Annotated[str, typer.Option(help="The team member's e-mail.")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
) -> None:
    """Set a team member's password; every session of theirs ends (sign in again)."""
    from checkoutlab.config import get_settings
    from checkoutlab.dashboard import auth
    from checkoutlab.db import Database
    from checkoutlab.errors import CheckoutLabError

    password = _read_password(password_stdin)
    database = Database(get_settings().database_url)
    try:
        with database.session() as db:
            ended = auth.set_password(db=db, merchant_id=merchant, email=email, password=password)
    except CheckoutLabError as exc:
        console.print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(1) from None
    finally:
        database.dispose()
    typer.echo(f"password set for {auth.normalize_email(email)}; {ended} session(s) ended")


@app.command("list")
def list_command(merchant: Annotated[str, typer.Option(help="Merchant id (mer_...).")]) -> None:
    """The merchant's dashboard users and when they last signed in."""
    from sqlalchemy import select

    from checkoutlab.config import get_settings
    from checkoutlab.dashboard.models import DashboardUser
    from checkoutlab.db import Database

    database = Database(get_settings().database_url)
    try:
        with database.session() as db:
            users = db.scalars(
                select(DashboardUser)
                .where(DashboardUser.merchant_id == merchant)
                .order_by(DashboardUser.email)
            ).all()
            for user in users:
                last = f"{user.last_login_at:%Y-%m-%d %H:%M}" if user.last_login_at else "never"
                typer.echo(f"{user.email}  {user.id}  last sign-in {last}")
    finally:
        database.dispose()
