"""The transaction simulator: determinism, format, geography and the three fraud scenarios."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from checkoutlab.fraud.cli import app
from checkoutlab.fraud.data import load_transactions
from checkoutlab.fraud.simulate import (
    TRANSACTION_COLUMNS,
    add_frauds,
    available_terminals,
    draw_compromises,
    generate_customer_profiles,
    generate_terminal_profiles,
    generate_transactions,
    simulate,
    simulate_dataset,
)

SMALL = {"n_customers": 200, "n_terminals": 400, "n_days": 30}


@pytest.fixture(scope="module")
def small():
    return simulate_dataset(**SMALL, seed=7)


def test_same_seed_same_data_other_seed_other_data(small) -> None:
    assert simulate(**SMALL, seed=7).equals(small.transactions)
    assert not simulate(**SMALL, seed=8).equals(small.transactions)


def test_columns_dtypes_and_order(small) -> None:
    tx = small.transactions
    assert tuple(tx.columns) == TRANSACTION_COLUMNS
    for column in TRANSACTION_COLUMNS:
        if column == "TX_DATETIME":
            assert tx[column].dtype == "datetime64[ns]"
        elif column == "TX_AMOUNT":
            assert tx[column].dtype == np.float64
        else:
            assert tx[column].dtype == np.int64, column
    assert (tx["TRANSACTION_ID"].to_numpy() == np.arange(len(tx))).all()
    assert tx["TX_DATETIME"].is_monotonic_increasing
    assert tx["TX_DATETIME"].min() >= pd.Timestamp("2018-04-01")
    assert tx["TX_DATETIME"].max() < pd.Timestamp("2018-04-01") + pd.Timedelta(days=30)
    elapsed = (tx["TX_DATETIME"] - pd.Timestamp("2018-04-01")).dt.total_seconds()
    assert (elapsed.to_numpy() == tx["TX_TIME_SECONDS"].to_numpy()).all()
    assert (tx["TX_TIME_DAYS"] == tx["TX_TIME_SECONDS"] // 86400).all()
    assert (tx["TX_AMOUNT"] >= 0).all()
    assert np.allclose(tx["TX_AMOUNT"], tx["TX_AMOUNT"].round(2))
    assert (tx["TX_FRAUD"] == (tx["TX_FRAUD_SCENARIO"] > 0)).all()
    assert set(tx["TX_FRAUD_SCENARIO"].unique()) <= {0, 1, 2, 3}


def test_profiles_follow_the_handbook_distributions() -> None:
    rng = np.random.default_rng(0)
    customers = generate_customer_profiles(4000, rng=rng)
    terminals = generate_terminal_profiles(4000, rng=rng)
    for column in ("x_customer_id", "y_customer_id"):
        assert customers[column].between(0, 100).all()
    assert terminals[["x_terminal_id", "y_terminal_id"]].stack().between(0, 100).all()
    assert customers["mean_amount"].between(5, 100).all()
    assert np.allclose(customers["std_amount"], customers["mean_amount"] / 2)
    assert customers["mean_nb_tx_per_day"].between(0, 4).all()
    assert customers["mean_nb_tx_per_day"].mean() == pytest.approx(2, abs=0.1)


def test_every_transaction_uses_a_terminal_within_the_radius(small) -> None:
    tx = small.transactions
    c = small.customers.set_index("CUSTOMER_ID").loc[tx["CUSTOMER_ID"]]
    t = small.terminals.set_index("TERMINAL_ID").loc[tx["TERMINAL_ID"]]
    dx = c["x_customer_id"].to_numpy() - t["x_terminal_id"].to_numpy()
    dy = c["y_customer_id"].to_numpy() - t["y_terminal_id"].to_numpy()
    assert (np.hypot(dx, dy) <= 5.0 + 1e-9).all()
    # and the neighbour lists are exactly the terminals within the radius
    for _, customer in small.customers.head(20).iterrows():
        d = np.hypot(
            small.terminals["x_terminal_id"] - customer["x_customer_id"],
            small.terminals["y_terminal_id"] - customer["y_customer_id"],
        )
        expected = small.terminals.loc[d <= 5.0, "TERMINAL_ID"].to_numpy()
        assert (customer["available_terminals"] == expected).all()


def test_customers_without_terminals_have_no_transactions(small) -> None:
    lonely = small.customers.loc[small.customers["nb_terminals"] == 0, "CUSTOMER_ID"]
    assert not small.transactions["CUSTOMER_ID"].isin(lonely).any()


def test_scenario_1_is_exactly_the_large_amounts(small) -> None:
    tx = small.transactions
    large = tx["TX_AMOUNT"] > 220
    assert (tx.loc[tx["TX_FRAUD_SCENARIO"] == 1, "TX_AMOUNT"] > 220).all()
    # a large amount is always fraud; only another scenario can take over its label
    assert (tx.loc[large, "TX_FRAUD"] == 1).all()


def test_scenario_2_is_every_transaction_at_a_compromised_terminal_for_28_days(small) -> None:
    tx = small.transactions
    events = small.compromised_terminals
    assert len(events) == 2 * SMALL["n_days"]
    assert (events.groupby("DAY")["TERMINAL_ID"].nunique() == 2).all()
    in_window = np.zeros(len(tx), dtype=bool)
    for day, terminal in events[["DAY", "TERMINAL_ID"]].itertuples(index=False):
        in_window |= (
            (tx["TERMINAL_ID"] == terminal)
            & (tx["TX_TIME_DAYS"] >= day)
            & (tx["TX_TIME_DAYS"] < day + 28)
        ).to_numpy()
    scenario = tx["TX_FRAUD_SCENARIO"].to_numpy()
    # within a window every transaction is fraud, as scenario 2 unless scenario 3 took it
    assert (scenario[in_window] >= 2).all()
    assert (scenario[in_window & (scenario != 3)] == 2).all()
    # outside every window there is no scenario-2 fraud
    assert not (scenario[~in_window] == 2).any()
    assert (scenario == 2).sum() > 0
    # seen from the frame alone: a terminal's scenario-2 frauds span less than 28 days
    # for terminals compromised only once
    once = events["TERMINAL_ID"].value_counts()
    once = once[once == 1].index
    s2 = tx[(tx["TX_FRAUD_SCENARIO"] == 2) & tx["TERMINAL_ID"].isin(once)]
    span = s2.groupby("TERMINAL_ID")["TX_TIME_DAYS"].agg(lambda d: d.max() - d.min())
    assert (span < 28).all()


def test_scenario_3_multiplies_a_third_of_compromised_customers_amounts_by_5() -> None:
    rng = np.random.default_rng(3)
    customers = generate_customer_profiles(150, rng=rng)
    terminals = generate_terminal_profiles(300, rng=rng)
    per_customer = available_terminals(customers, terminals, radius=5.0)
    genuine = generate_transactions(customers, per_customer, n_days=40, rng=rng)
    comp_t = draw_compromises(
        n_days=40, ids=terminals["TERMINAL_ID"], per_day=2, id_column="TERMINAL_ID", rng=rng
    )
    comp_c = draw_compromises(
        n_days=40, ids=customers["CUSTOMER_ID"], per_day=3, id_column="CUSTOMER_ID", rng=rng
    )
    before = genuine.copy()
    tx = add_frauds(genuine, compromised_terminals=comp_t, compromised_customers=comp_c, rng=rng)
    assert genuine.equals(before)  # the input is not modified

    s3 = tx["TX_FRAUD_SCENARIO"] == 3
    assert s3.sum() > 0
    assert np.allclose(tx.loc[s3, "TX_AMOUNT"], (genuine.loc[s3, "TX_AMOUNT"] * 5).round(2))
    assert (tx.loc[~s3, "TX_AMOUNT"] == genuine.loc[~s3, "TX_AMOUNT"]).all()
    # each scenario-3 fraud is a compromised customer's, inside its 14-day window
    for row in tx[s3].itertuples():
        mine = comp_c[comp_c["CUSTOMER_ID"] == row.CUSTOMER_ID]
        assert ((mine["DAY"] <= row.TX_TIME_DAYS) & (row.TX_TIME_DAYS - mine["DAY"] < 14)).any()
    # about a third of the windowed transactions of compromised customers
    windowed = np.zeros(len(tx), dtype=bool)
    for day, customer in comp_c[["DAY", "CUSTOMER_ID"]].itertuples(index=False):
        windowed |= (
            (tx["CUSTOMER_ID"] == customer)
            & (tx["TX_TIME_DAYS"] >= day)
            & (tx["TX_TIME_DAYS"] < day + 14)
        ).to_numpy()
    assert 0.2 < s3.sum() / windowed.sum() < 0.45


def test_progress_is_reported_per_day() -> None:
    seen: list[int] = []
    simulate(n_customers=20, n_terminals=40, n_days=5, progress=seen.append)
    assert seen == [1, 2, 3, 4, 5]


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        simulate(n_customers=0)
    with pytest.raises(ValueError, match="start"):
        simulate(n_customers=5, n_terminals=5, n_days=2, start="not a date")


def test_medium_run_has_a_plausible_volume_and_fraud_rate() -> None:
    # the Handbook's population (fraud rates depend on it: 2 terminals a day out of 10,000),
    # over 60 days instead of 183; the scenario-2 windows fill up during the first 28 days,
    # so the rate sits a little below the full run's 0.8-0.9 %
    tx = simulate(n_days=60, seed=0)
    # about 2 transactions a day per customer, minus times outside the day and edge customers
    assert 560_000 < len(tx) < 610_000
    assert 0.005 < tx["TX_FRAUD"].mean() < 0.01
    counts = tx["TX_FRAUD_SCENARIO"].value_counts(normalize=True)
    assert 0.0003 < counts[1] < 0.001
    assert 0.003 < counts[2] < 0.007
    assert 0.001 < counts[3] < 0.004


def test_cli_simulate_writes_a_parquet(tmp_path) -> None:
    out = tmp_path / "sim" / "tx.parquet"
    args = ["simulate", "--customers", "50", "--terminals", "100", "--days", "7", "-o", str(out)]
    result = CliRunner().invoke(app, [*args, "--seed", "3", "--start", "2020-01-01"])
    assert result.exit_code == 0, result.output
    assert "transactions" in result.output and "scenario 2" in result.output
    tx = load_transactions(out)
    expected = simulate(n_customers=50, n_terminals=100, n_days=7, seed=3, start="2020-01-01")
    pd.testing.assert_frame_equal(tx, expected)


def test_cli_refuses_an_unsupported_output_before_simulating(tmp_path) -> None:
    result = CliRunner().invoke(app, ["simulate", "--days", "1", "-o", str(tmp_path / "tx.xlsx")])
    assert result.exit_code != 0
    assert ".xlsx" in result.output
    assert not (tmp_path / "tx.xlsx").exists()
