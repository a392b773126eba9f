"""The admin CLI through typer's runner, on a throw-away SQLite database."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from checkoutlab.cli import app
from checkoutlab.config import get_settings
from checkoutlab.db import Database
from checkoutlab.merchants import service

runner = CliRunner()


@pytest.fixture
def db_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path}/cli.db"
    monkeypatch.setenv("CHECKOUTLAB_DATABASE_URL", url)
    get_settings.cache_clear()
    yield url
    get_settings.cache_clear()


def test_db_upgrade_is_idempotent(db_url: str) -> None:
    for _ in range(2):
        result = runner.invoke(app, ["db", "upgrade"])
        assert result.exit_code == 0, result.output


def test_merchants_create_json_shows_secret_once_and_stores_hash(db_url: str) -> None:
    result = runner.invoke(app, ["merchants", "create", "--name", "Shop", "--json"])
    assert result.exit_code == 0, result.output
    keys = json.loads(result.stdout)
    assert set(keys) == {"merchant_id", "publishable_key", "secret_key"}
    assert keys["publishable_key"].startswith("pk_") and keys["secret_key"].startswith("sk_")
    database = Database(db_url)
    with database.session() as session:
        merchant = service.get(db=session, merchant_id=keys["merchant_id"])
        assert keys["secret_key"] not in json.dumps(
            {c: str(getattr(merchant, c)) for c in ("secret_key_hash", "publishable_key", "name")}
        )
        found = service.by_secret_key(db=session, secret_key=keys["secret_key"])
        assert found is not None and found.id == keys["merchant_id"]
    database.dispose()


def test_config_set_validates_and_saves(db_url: str, tmp_path: Path) -> None:
    keys = json.loads(runner.invoke(app, ["merchants", "create", "--name", "S", "--json"]).stdout)
    good = tmp_path / "good.json"
    good.write_text(
        json.dumps(
            {
                "default_order": ["klarna", "card"],
                "rules": [{"when": "amount.value < 1000", "then": {"hide": "bank_transfer"}}],
            }
        )
    )
    result = runner.invoke(
        app, ["merchants", "config", "set", "--merchant", keys["merchant_id"], "--file", str(good)]
    )
    assert result.exit_code == 0, result.output
    database = Database(db_url)
    with database.session() as session:
        config = service.config_of(service.get(db=session, merchant_id=keys["merchant_id"]))
    database.dispose()
    assert [m.value for m in config.ordered_methods()][:2] == ["klarna", "card"]

    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps({"rules": [{"when": "risk.risk_score >= ", "then": {"require": ["cvv"]}}]})
    )
    result = runner.invoke(
        app, ["merchants", "config", "set", "--merchant", keys["merchant_id"], "--file", str(bad)]
    )
    assert result.exit_code == 2
    assert "rules.0.when" in result.output and "line 1, column 17" in result.output


def test_config_set_unknown_merchant(db_url: str, tmp_path: Path) -> None:
    file = tmp_path / "c.json"
    file.write_text("{}")
    result = runner.invoke(
        app, ["merchants", "config", "set", "--merchant", "mer_x", "--file", str(file)]
    )
    assert result.exit_code == 1
    assert "No such merchant" in result.output


def test_help_lists_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("serve", "demo", "db", "merchants"):
        assert command in result.output


def test_keys_roll_list_and_audit(db_url: str) -> None:
    keys = json.loads(runner.invoke(app, ["merchants", "create", "--name", "S", "--json"]).stdout)
    rolled = runner.invoke(app, ["merchants", "keys", "roll", "--merchant", keys["merchant_id"]])
    assert rolled.exit_code == 0, rolled.output
    assert "secret_key: sk_" in rolled.output and keys["secret_key"] not in rolled.output
    listed = runner.invoke(app, ["merchants", "keys", "list", "--merchant", keys["merchant_id"]])
    assert listed.exit_code == 0, listed.output
    assert keys["secret_key"][-4:] in listed.output
    audit = runner.invoke(app, ["merchants", "audit", "--merchant", keys["merchant_id"], "--json"])
    assert audit.exit_code == 0, audit.output
    unknown = runner.invoke(app, ["merchants", "keys", "roll", "--merchant", "mer_nope"])
    assert unknown.exit_code == 1


def test_demo_serves_the_store_against_its_own_port(db_url: str, tmp_path, monkeypatch) -> None:
    """The demo's merchant backend must call the port it serves, not a default or the Host."""
    import uvicorn

    captured = {}
    monkeypatch.setenv("CHECKOUTLAB_RISK_SCORER", "rules")
    monkeypatch.chdir(tmp_path)  # var/demo_keys.json goes here
    get_settings.cache_clear()
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: captured.update(app=app, **kwargs))
    result = runner.invoke(app, ["demo", "--port", "8123"])
    get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert captured["port"] == 8123
    assert captured["app"].state.demo_api_base == "http://127.0.0.1:8123"
    assert "Demo store:         http://127.0.0.1:8123/demo" in result.output


def _stamp_unknown_revision(url: str) -> None:
    """The database as a newer release leaves it: migrated to a revision this code lacks."""
    from sqlalchemy import text

    database = Database(url)
    database.upgrade()
    with database.engine.begin() as conn:
        conn.execute(text("DELETE FROM alembic_version"))
        conn.execute(text("INSERT INTO alembic_version (version_num) VALUES ('9999_future')"))
    database.dispose()


@pytest.fixture
def no_uvicorn(monkeypatch: pytest.MonkeyPatch) -> dict:
    import uvicorn

    from checkoutlab.observability import logging as logs

    captured: dict = {}
    monkeypatch.setattr(uvicorn, "run", lambda *a, **kw: captured.update(kw))
    monkeypatch.setattr(logs, "configure_logging", lambda *a, **kw: None)  # keep caplog's
    return captured


def test_serve_starts_when_the_schema_is_ahead_of_this_release(
    db_url: str, no_uvicorn: dict, caplog: pytest.LogCaptureFixture
) -> None:
    """Rolling deploy: the new release migrated first; the old one must still restart."""
    from checkoutlab.observability.health import schema_status

    _stamp_unknown_revision(db_url)
    result = runner.invoke(app, ["serve", "--port", "8124"])
    assert result.exit_code == 0, result.output
    assert no_uvicorn["port"] == 8124
    assert "ahead of this release" in caplog.text
    database = Database(db_url)
    assert schema_status(database.engine) == "ahead"  # untouched
    database.dispose()


def test_serve_upgrades_a_schema_that_is_behind(db_url: str, no_uvicorn: dict) -> None:
    from alembic import command

    from checkoutlab.db import alembic_config
    from checkoutlab.observability.health import schema_status

    database = Database(db_url)
    command.upgrade(alembic_config(database.engine), "0001")
    assert schema_status(database.engine) == "behind"
    result = runner.invoke(app, ["serve"])
    assert result.exit_code == 0, result.output
    assert schema_status(database.engine) == "at_head"
    database.dispose()


def test_worker_prepares_the_schema_the_same_way(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker does not call upgrade() blindly either (it would fail when ahead)."""
    import checkoutlab.cli as cli
    from checkoutlab.observability import logging as logs

    class Started(Exception):
        pass

    def prepared(database: Database) -> str:
        raise Started(database.migrate())

    _stamp_unknown_revision(db_url)
    monkeypatch.setattr(logs, "configure_logging", lambda *a, **kw: None)
    monkeypatch.setattr(cli, "_prepare_schema", prepared)
    result = runner.invoke(app, ["worker"])
    assert isinstance(result.exception, Started) and result.exception.args == ("ahead",)


def test_postgresql_migrations_wait_for_the_advisory_lock(_databases: dict) -> None:
    """serve and worker starting together: the second waits, then finds the schema at head."""
    import threading

    from sqlalchemy import text

    from checkoutlab.db import MIGRATION_LOCK_KEY

    database = _databases.get("postgresql")
    if database is None:
        pytest.skip("needs PostgreSQL (CHECKOUTLAB_TEST_DATABASE_URL)")
    results: list[str] = []
    with database.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as holder:
        holder.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
        thread = threading.Thread(target=lambda: results.append(database.migrate()))
        thread.start()
        thread.join(1.0)
        assert thread.is_alive() and results == []  # blocked by the other process's lock
        holder.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK_KEY})
    thread.join(30)
    assert results == ["at_head"]
