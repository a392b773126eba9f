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
