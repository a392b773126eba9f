"""The demo seed: a merchant with stock, history and one running experiment; idempotent."""

from __future__ import annotations

from checkoutlab.demo import seed
from checkoutlab.experiments import service as experiments


def test_seed_is_idempotent_and_starts_an_experiment(database, tmp_path) -> None:
    keys_file = tmp_path / "keys.json"
    with database.session() as db:
        first = seed(db=db, keys_file=keys_file)
        second = seed(db=db, keys_file=keys_file)
        assert first == second
        running = experiments.list_(db=db, merchant_id=first["merchant_id"], status="running")
    assert [e.key for e in running] == ["list_vs_tabs"]
