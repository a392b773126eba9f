"""Metrics on hand-made arrays, split boundaries, the Handbook protocols on small data."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from checkoutlab.fraud.cli import app
from checkoutlab.fraud.data import save_transactions
from checkoutlab.fraud.evaluate import (
    METRICS,
    SplitError,
    TimeSplit,
    card_precision_at_k,
    compute_metrics,
    evaluate_spec,
    expected_calibration_error,
    handbook_split,
    known_compromised_mask,
    prequential_splits,
)
from checkoutlab.fraud.simulate import simulate
from checkoutlab.fraud.specs import parse_spec

runner = CliRunner()
LOGREG = parse_spec({"name": "lr", "estimator": "logistic_regression"})


@pytest.fixture(scope="module")
def tx() -> pd.DataFrame:
    return simulate(n_customers=300, n_terminals=600, n_days=90, start="2018-06-01")


# ---------------------------------------------------------------------------- card precision


def test_card_precision_hand_example_blocks_cards_found_on_earlier_days() -> None:
    # day 1: a (max 0.2, fraud), b (0.9, genuine), c (0.3, genuine)
    # day 2: a (0.5, fraud), b (0.4, genuine), c (0.1, fraud)
    days = [1, 1, 1, 1, 2, 2, 2]
    cards = ["a", "a", "b", "c", "a", "b", "c"]
    y = [0, 1, 0, 0, 1, 0, 1]
    p = [0.1, 0.2, 0.9, 0.3, 0.5, 0.4, 0.1]
    # k=2, day 1: top b, c -> 0/2; day 2: top a, b -> 1/2
    assert card_precision_at_k(days, cards, y, p, k=2) == pytest.approx(0.25)
    # k=3, day 1: b, c, a -> 1/3 and a is blocked; day 2: b, c -> 1/3 (a not counted)
    assert card_precision_at_k(days, cards, y, p, k=3) == pytest.approx(1 / 3)
    # without blocking, day 2 counts a and c: 2/3
    assert card_precision_at_k(days, cards, y, p, k=3, remove_detected=False) == pytest.approx(
        (1 / 3 + 2 / 3) / 2
    )


def test_card_precision_divides_by_k_even_with_fewer_cards() -> None:
    assert card_precision_at_k([1, 1], ["a", "b"], [1, 0], [0.9, 0.1], k=100) == 0.01


def test_card_precision_uses_the_cards_max_score_and_max_label() -> None:
    # card a: one low-scored fraud and one high-scored genuine transaction -> score 0.9, label 1
    days, cards = [1, 1, 1], ["a", "a", "b"]
    assert card_precision_at_k(days, cards, [1, 0, 0], [0.1, 0.9, 0.5], k=1) == 1.0


# ---------------------------------------------------------------------------- calibration error


def test_ece_hand_example() -> None:
    y = [0, 0, 0, 1]
    p = [0.05, 0.05, 0.15, 0.95]
    # bins [0, .1): |0.05 - 0| x 2; [.1, .2): |0.15 - 0| x 1; [.9, 1]: |0.95 - 1| x 1
    assert expected_calibration_error(y, p) == pytest.approx((0.1 + 0.15 + 0.05) / 4)


def test_ece_is_zero_when_calibrated_and_handles_p_equal_one() -> None:
    y = np.array([0] * 9 + [1] + [1, 1])
    p = np.array([0.1] * 10 + [1.0, 1.0])  # bin [.1, .2) has 10% frauds, p = 1 in the last bin
    assert expected_calibration_error(y, p) == pytest.approx(0.0)
    with pytest.raises(ValueError):
        expected_calibration_error([], [])


def test_compute_metrics_keys_and_single_class_error() -> None:
    y = np.array([0, 0, 1, 1, 0])
    p = np.array([0.1, 0.2, 0.8, 0.7, 0.3])
    metrics = compute_metrics(y, p, days=np.ones(5), cards=np.arange(5))
    assert tuple(metrics) == METRICS
    assert metrics["auc_roc"] == 1.0 and metrics["average_precision"] == 1.0
    assert metrics["brier"] == pytest.approx(np.mean((p - y) ** 2))
    with pytest.raises(SplitError):
        compute_metrics(np.zeros(3), np.ones(3) / 2, days=np.ones(3), cards=np.arange(3))


# ---------------------------------------------------------------------------- splits


def _frame(rows: list[tuple[str, int, int]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "TX_DATETIME": pd.to_datetime([r[0] for r in rows]),
            "CUSTOMER_ID": [r[1] for r in rows],
            "TX_FRAUD": [r[2] for r in rows],
        }
    )


def test_split_boundaries_are_calendar_days() -> None:
    split = TimeSplit(
        date(2018, 7, 25), train_days=7, delay_days=7, test_days=7, calibration_days=2
    )
    frame = _frame(
        [
            ("2018-07-24 23:59:59", 1, 0),  # before training
            ("2018-07-25 00:00:00", 1, 0),  # fit
            ("2018-07-29 23:59:59", 1, 0),  # fit (last fit day)
            ("2018-07-30 00:00:00", 1, 0),  # calibration
            ("2018-07-31 23:59:59", 1, 0),  # calibration (last training day)
            ("2018-08-01 00:00:00", 1, 0),  # delay
            ("2018-08-07 23:59:59", 1, 0),  # delay
            ("2018-08-08 00:00:00", 1, 0),  # test
            ("2018-08-14 23:59:59", 1, 0),  # test (last day)
            ("2018-08-15 00:00:00", 1, 0),  # after
        ]
    )
    masks = split.masks(frame)
    assert masks["fit"].tolist() == [0, 1, 1, 0, 0, 0, 0, 0, 0, 0]
    assert masks["calibration"].tolist() == [0, 0, 0, 1, 1, 0, 0, 0, 0, 0]
    assert masks["test"].tolist() == [0, 0, 0, 0, 0, 0, 0, 1, 1, 0]
    assert split.describe() == (
        "fit 2018-07-25..2018-07-29, calibration 2018-07-30..2018-07-31, "
        "delay 7 d, test 2018-08-08..2018-08-14"
    )


def test_known_compromised_cards_follow_the_handbook_definition() -> None:
    frame = _frame(
        [
            ("2018-07-20 10:00", 3, 1),  # C: fraud before the training start: never "known"
            ("2018-07-26 10:00", 1, 1),  # A: fraud in the training window
            ("2018-08-01 10:00", 2, 1),  # B: fraud on the first delay day
            ("2018-08-08 09:00", 1, 0),  # A on test day 1: known -> removed
            ("2018-08-08 09:00", 2, 0),  # B on 08-08: 08-01 is not < 08-08 - 7 d -> kept
            ("2018-08-09 09:00", 2, 0),  # B on 08-09: 08-01 < 08-02 -> removed
            ("2018-08-09 09:00", 3, 1),  # C: kept (and its test fraud does not count as known)
            ("2018-08-14 09:00", 4, 0),  # D: clean -> kept
        ]
    )
    known = known_compromised_mask(frame, since=date(2018, 7, 25), delay_days=7)
    assert known.tolist() == [False, False, False, True, False, True, False, False]
    split = handbook_split(LOGREG)
    assert split.masks(frame)["test"].tolist() == [0, 0, 0, 0, 1, 0, 1, 1]


def test_handbook_and_prequential_windows() -> None:
    hb = handbook_split(LOGREG)
    assert (hb.train_start, hb.train_end, hb.test_start, hb.test_end) == (
        date(2018, 7, 25),
        date(2018, 8, 1),
        date(2018, 8, 8),
        date(2018, 8, 15),
    )
    folds = prequential_splits(LOGREG)
    assert [f.train_start for f in folds] == [
        date(2018, 8, 15),
        date(2018, 8, 8),
        date(2018, 8, 1),
        date(2018, 7, 25),
    ]
    assert folds[0].test_start == date(2018, 8, 29) and folds[-1] == hb


# ---------------------------------------------------------------------------- protocols


def test_handbook_protocol_on_small_data(tx: pd.DataFrame) -> None:
    result = evaluate_spec(LOGREG, tx, protocol="handbook")
    out = result.to_json()
    assert list(out) == list(METRICS)
    assert 0.5 < out["auc_roc"] <= 1 and 0 <= out["calibration_error"] < 0.1
    assert out["average_precision"] > 2 * tx["TX_FRAUD"].mean()


def test_prequential_protocol_with_custom_folds(tx: pd.DataFrame) -> None:
    splits = prequential_splits(LOGREG, start=date(2018, 7, 25), n_folds=2)
    result = evaluate_spec(LOGREG, tx, protocol="prequential", splits=splits)
    out = result.to_json()
    assert list(out) == [*METRICS, "folds"]
    assert [f["train_start"] for f in out["folds"]] == ["2018-07-25", "2018-07-18"]
    assert out["average_precision"] == pytest.approx(
        np.mean([f["average_precision"] for f in out["folds"]])
    )


def test_protocol_needs_the_data_to_cover_its_windows(tx: pd.DataFrame) -> None:
    with pytest.raises(SplitError, match=r"covers 2018-06-01\.\.2018-08-29"):
        evaluate_spec(LOGREG, tx, protocol="prequential")  # fold 0 tests until 2018-09-04


def test_cli_evaluate_json_and_table(tx: pd.DataFrame, tmp_path: Path) -> None:
    data = save_transactions(tx, tmp_path / "tx.parquet")
    spec = tmp_path / "lr.yaml"
    spec.write_text("name: lr\nestimator: logistic_regression\n")
    result = runner.invoke(
        app,
        ["evaluate", "--spec", str(spec), "--data", str(data), "--protocol", "handbook", "--json"],
    )
    assert result.exit_code == 0, result.output
    assert list(json.loads(result.stdout)) == list(METRICS)

    result = runner.invoke(app, ["evaluate", "--spec", str(spec), "--data", str(data)])
    assert result.exit_code == 0, result.output
    assert "Handbook logistic" in result.stdout and "Handbook random" in result.stdout
    assert "0.6060" in result.stdout  # the published AP beside ours

    result = runner.invoke(
        app, ["evaluate", "--spec", str(spec), "--data", str(data), "--protocol", "prequential"]
    )
    assert result.exit_code == 1
    assert "the split needs" in result.stderr


def test_protocol_refuses_features_with_a_shorter_label_delay(tx: pd.DataFrame) -> None:
    short = parse_spec(
        {"name": "peek", "estimator": "logistic_regression", "split": {"delay_days": 3}}
    )
    with pytest.raises(ValueError, match="labels that are not known yet"):
        evaluate_spec(short, tx, protocol="handbook")
