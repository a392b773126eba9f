"""``checkoutlab merchants users add|list``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from checkoutlab.cli import app
from checkoutlab.config import get_settings
from checkoutlab.dashboard import auth
from checkoutlab.db import Database
from checkoutlab.merchants import service

runner = CliRunner()


@pytest.fixture
def merchant_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, str]]:
    url = f"sqlite:///{tmp_path}/cli.db"
    monkeypatch.setenv("CHECKOUTLAB_DATABASE_URL", url)
    get_settings.cache_clear()
    database = Database(url)
    database.upgrade()
    with database.session() as db:
        created = service.create(db=db, name="Shop")
    database.dispose()
    yield created.merchant_id, url
    get_settings.cache_clear()


def test_add_with_password_on_stdin_then_sign_in(merchant_id: tuple[str, str]) -> None:
    mid, url = merchant_id
    args = [
        "merchants",
        "users",
        "add",
        "--merchant",
        mid,
        "--email",
        "Ana@Shop.example",
        "--password-stdin",
    ]
    result = runner.invoke(app, args, input="a long enough password\n")
    assert result.exit_code == 0, result.output
    assert "added ana@shop.example" in result.stdout
    assert "a long enough password" not in result.output
    database = Database(url)
    with database.session() as db:
        user = auth.authenticate(
            db=db, merchant_id=mid, email="ana@shop.example", password="a long enough password"
        )
        assert user is not None and user.last_login_at is not None
    database.dispose()
    listed = runner.invoke(app, ["merchants", "users", "list", "--merchant", mid])
    assert "ana@shop.example" in listed.stdout

    again = runner.invoke(app, args, input="a long enough password\n")
    assert again.exit_code == 1 and "already a dashboard user" in again.output


def test_add_with_prompt_refuses_a_short_password(merchant_id: tuple[str, str]) -> None:
    mid, _ = merchant_id
    result = runner.invoke(
        app,
        ["merchants", "users", "add", "--merchant", mid, "--email", "b@shop.example"],
        input="short\nshort\n",
    )
    assert result.exit_code == 1 and "at least 12 characters" in result.output


def test_add_to_unknown_merchant_fails(merchant_id: tuple[str, str]) -> None:
    result = runner.invoke(
        app,
        [
            "merchants",
            "users",
            "add",
            "--merchant",
            "mer_nope",
            "--email",
            "c@shop.example",
            "--password-stdin",
        ],
        input="a long enough password\n",
    )
    assert result.exit_code == 1 and "No such merchant" in result.output


def _sessions(url: str) -> int:
    from sqlalchemy import func, select

    from checkoutlab.dashboard.models import DashboardSession

    database = Database(url)
    with database.session() as db:
        count = db.scalar(select(func.count()).select_from(DashboardSession))
    database.dispose()
    return count or 0


def _signed_in_member(url: str, mid: str, email: str, password: str) -> str:
    database = Database(url)
    with database.session() as db:
        user = auth.add_user(db=db, merchant_id=mid, email=email, password=password)
        token = auth.start_session(db=db, user=user)
        auth.start_session(db=db, user=user)  # signed in on a second device too
    database.dispose()
    return token


def test_set_password_ends_every_session_of_the_member(merchant_id: tuple[str, str]) -> None:
    mid, url = merchant_id
    token = _signed_in_member(url, mid, "ana@shop.example", "the old long password")
    other = _signed_in_member(url, mid, "bo@shop.example", "bo's long password!")
    args = ["merchants", "users", "set-password", "--merchant", mid]
    result = runner.invoke(
        app, [*args, "--email", "Ana@Shop.example", "--password-stdin"], input="a new password!!\n"
    )
    assert result.exit_code == 0, result.output
    assert "2 session(s) ended" in result.stdout and "a new password" not in result.output
    database = Database(url)
    with database.session() as db:
        assert auth.session_for(db=db, token=token) is None
        assert auth.session_for(db=db, token=other) is not None  # another member's stays
        for password, works in (("the old long password", False), ("a new password!!", True)):
            user = auth.authenticate(
                db=db, merchant_id=mid, email="ana@shop.example", password=password
            )
            assert (user is not None) is works
    database.dispose()
    short = runner.invoke(
        app, [*args, "--email", "ana@shop.example", "--password-stdin"], input="short\n"
    )
    assert short.exit_code == 1 and "at least 12 characters" in short.output
    unknown = runner.invoke(
        app, [*args, "--email", "nobody@shop.example", "--password-stdin"], input="x" * 20 + "\n"
    )
    assert unknown.exit_code == 1 and "not a dashboard user" in unknown.output


def test_remove_deletes_the_member_and_their_sessions(merchant_id: tuple[str, str]) -> None:
    mid, url = merchant_id
    _signed_in_member(url, mid, "ana@shop.example", "the old long password")
    other = _signed_in_member(url, mid, "bo@shop.example", "bo's long password!")
    result = runner.invoke(
        app, ["merchants", "users", "remove", "--merchant", mid, "--email", "ana@shop.example"]
    )
    assert result.exit_code == 0, result.output
    assert "removed ana@shop.example" in result.stdout and "2 session(s) ended" in result.stdout
    assert _sessions(url) == 2  # the other member's two
    listed = runner.invoke(app, ["merchants", "users", "list", "--merchant", mid])
    assert "ana@shop.example" not in listed.stdout and "bo@shop.example" in listed.stdout
    database = Database(url)
    with database.session() as db:
        assert auth.session_for(db=db, token=other) is not None
    database.dispose()
    again = runner.invoke(
        app, ["merchants", "users", "remove", "--merchant", mid, "--email", "ana@shop.example"]
    )
    assert again.exit_code == 1 and "not a dashboard user" in again.output


def test_remove_does_not_rely_on_on_delete_cascade(database: Database, make_merchant) -> None:
    """SQLite ignores ON DELETE CASCADE on a connection without PRAGMA foreign_keys."""
    from sqlalchemy import func, select, text

    from checkoutlab.dashboard.models import DashboardSession

    mid = make_merchant().id
    with database.session() as db:
        user = auth.add_user(db=db, merchant_id=mid, email="a@shop.example", password="p" * 12)
        auth.start_session(db=db, user=user)
    with database.session() as db:
        if database.engine.dialect.name == "sqlite":
            db.execute(text("PRAGMA foreign_keys=OFF"))  # as a connection made elsewhere
        assert auth.remove_user(db=db, merchant_id=mid, email="a@shop.example") == 1
        if database.engine.dialect.name == "sqlite":
            db.execute(text("PRAGMA foreign_keys=ON"))
        assert db.scalar(select(func.count()).select_from(DashboardSession)) == 0
