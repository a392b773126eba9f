"""The demo seed gives the demo merchant a dashboard login that works."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from checkoutlab.demo import seed

from .conftest import Dashboard, Member


def test_demo_keys_sign_in_to_the_dashboard(database: Any, dash: Dashboard, tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.json"
    with database.session() as db:
        keys = seed(db=db, keys_file=keys_file)
    assert json.loads(keys_file.read_text()) == keys
    member = Member(keys["merchant_id"], keys["dashboard_email"], keys["dashboard_password"])
    assert dash.login(member).status_code == 303
    page = dash.get("/dashboard")
    assert 'data-key="list_vs_tabs"' in page.text and "running" in page.text


def test_an_older_demo_gets_its_dashboard_login_on_the_next_start(
    database: Any, tmp_path: Path
) -> None:
    keys_file = tmp_path / "keys.json"
    with database.session() as db:
        keys = seed(db=db, keys_file=keys_file)
    older = {k: v for k, v in keys.items() if not k.startswith("dashboard_")}
    keys_file.write_text(json.dumps(older))
    with database.session() as db:
        from sqlalchemy import delete

        from checkoutlab.dashboard.models import DashboardUser

        db.execute(delete(DashboardUser))
        db.commit()
        again = seed(db=db, keys_file=keys_file)
    assert again["merchant_id"] == keys["merchant_id"] and "dashboard_password" in again
    assert json.loads(keys_file.read_text()) == again
