"""Fraud features: hand-computed expectations, and no train/serve skew (batch == online)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from checkoutlab.fraud.features import (
    CONTEXT_COLUMNS,
    FEATURE_COLUMNS,
    METHODS,
    FeatureSpec,
    add_features,
    datetime_ns,
    feature_columns,
    ratio,
    to_ns,
)
from checkoutlab.fraud.online import OnlineFeatureStore

D = datetime  # short for the tiny table

# 2018-04-01 is a Sunday. Customer A: exact 1, 7 and 30-day boundaries. Customer B: weekend and
# night edges and two simultaneous transactions (rows 6 and 9). Terminals T1 (two frauds) and
# T2: exact delay boundary (row 8 sees row 5 at exactly t - 7 days), zero counts.
TINY = [
    # id, time, customer, terminal, amount, fraud
    (0, D(2018, 4, 2, 10), "A", "T1", 10.0, 1),  # Mon
    (1, D(2018, 4, 3, 10), "A", "T1", 20.0, 0),  # exactly 1 day after row 0
    (2, D(2018, 4, 9, 10), "A", "T2", 30.0, 0),  # exactly 7 days after row 0
    (3, D(2018, 5, 2, 10), "A", "T1", 40.0, 0),  # exactly 30 days after row 0 (Wed)
    (4, D(2018, 4, 7, 5, 59, 59), "B", "T1", 100.0, 1),  # Sat, last second of the night
    (5, D(2018, 4, 8, 6), "B", "T2", 50.0, 0),  # Sun 06:00, not night
    (6, D(2018, 4, 9, 0), "B", "T1", 70.0, 0),  # Mon 00:00, night, not weekend
    (7, D(2018, 4, 10, 10), "B", "T1", 60.0, 0),  # terminal window ends exactly at row 1
    (8, D(2018, 4, 15, 6), "A", "T2", 80.0, 0),  # Sun; terminal window ends exactly at row 5
    (9, D(2018, 4, 9, 0), "B", "T2", 30.0, 0),  # same time as row 6, after it in input order
]

# Per row: weekend, night, customer (nb, avg) for 1/7/30 days, terminal (nb, risk) for 1/7/30.
EXPECTED = {
    0: (0, 0, (1, 10), (1, 10), (1, 10), (0, 0), (0, 0), (0, 0)),
    1: (0, 0, (1, 20), (2, 15), (2, 15), (0, 0), (0, 0), (0, 0)),
    2: (0, 0, (1, 30), (2, 25), (3, 20), (0, 0), (0, 0), (0, 0)),
    # 30-day window (04-02 10:00, 05-02 10:00]: rows 1, 2, 8 and itself (row 0 exactly on the
    # open end); terminal window (t-37d, t-7d] = (03-26, 04-25]: T1 rows 0, 1, 4, 6, 7 (2 frauds).
    3: (0, 0, (1, 40), (1, 40), (4, 42.5), (0, 0), (0, 0), (5, 0.4)),
    4: (1, 1, (1, 100), (1, 100), (1, 100), (0, 0), (0, 0), (0, 0)),
    5: (1, 0, (1, 50), (2, 75), (2, 75), (0, 0), (0, 0), (0, 0)),
    6: (0, 1, (2, 60), (3, 220 / 3), (3, 220 / 3), (0, 0), (0, 0), (0, 0)),
    # Window end t - 7d = 04-03 10:00 = row 1 (included); row 0 is exactly 1 day before it.
    7: (0, 0, (1, 60), (5, 62), (5, 62), (1, 0), (2, 0.5), (2, 0.5)),
    # Window end t - 7d = 04-08 06:00 = row 5 (included); row 2 (04-09) is within the delay.
    8: (1, 0, (1, 80), (2, 55), (4, 35), (1, 0), (1, 0), (1, 0)),
    9: (0, 1, (3, 50), (4, 62.5), (4, 62.5), (0, 0), (0, 0), (0, 0)),
}


def tiny_frame() -> pd.DataFrame:
    return pd.DataFrame(
        TINY,
        columns=[
            "TRANSACTION_ID",
            "TX_DATETIME",
            "CUSTOMER_ID",
            "TERMINAL_ID",
            "TX_AMOUNT",
            "TX_FRAUD",
        ],
    )


def expected_frame() -> pd.DataFrame:
    spec = FeatureSpec()
    rows = []
    for tx_id, (weekend, night, *windows) in EXPECTED.items():
        amount = TINY[tx_id][4]
        row = [amount, weekend, night]
        for nb, avg in windows[:3]:
            row += [nb, avg]
        for nb, risk in windows[3:]:
            row += [nb, risk]
        rows.append(row)
    return pd.DataFrame(rows, columns=spec.columns, dtype=float)


def replay(
    df: pd.DataFrame, store: OnlineFeatureStore, *, label_lag: timedelta | None = None
) -> pd.DataFrame:
    """Score each transaction in time order, then register it; labels now or after a lag."""
    ordered = df.sort_values("TX_DATETIME", kind="stable")
    pending: list[tuple[pd.Timestamp, object, int]] = []
    rows = {}
    for tx in ordered.to_dict("records"):
        if label_lag is not None:
            while pending and pending[0][0] <= tx["TX_DATETIME"] - label_lag:
                _, tx_id, label = pending.pop(0)
                assert store.add_label(tx_id, label)
        features = store.features(tx)
        assert list(features) == store.columns
        rows[tx["TRANSACTION_ID"]] = features
        if label_lag is None:
            store.update(tx, label=tx["TX_FRAUD"])
        else:
            store.update(tx, label=None)
            pending.append((tx["TX_DATETIME"], tx["TRANSACTION_ID"], tx["TX_FRAUD"]))
    online = pd.DataFrame.from_dict(rows, orient="index")
    return online.loc[df["TRANSACTION_ID"]].reset_index(drop=True)


# --------------------------------------------------------------------------------------------
# Definitions


def test_feature_columns_are_the_handbook_baseline_in_order():
    assert len(FEATURE_COLUMNS) == 15
    assert FEATURE_COLUMNS[:5] == [
        "TX_AMOUNT",
        "TX_DURING_WEEKEND",
        "TX_DURING_NIGHT",
        "CUSTOMER_ID_NB_TX_1DAY_WINDOW",
        "CUSTOMER_ID_AVG_AMOUNT_1DAY_WINDOW",
    ]
    assert FEATURE_COLUMNS[-2:] == [
        "TERMINAL_ID_NB_TX_30DAY_WINDOW",
        "TERMINAL_ID_RISK_30DAY_WINDOW",
    ]
    assert feature_columns(windows=(2,), context_columns=["METHOD"])[-1] == "METHOD_KLARNA"


def test_method_vocabulary_matches_the_platform():
    from checkoutlab.merchants.schemas import MethodType

    assert set(METHODS) == {m.value for m in MethodType}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"windows": ()},
        {"windows": (1, 1)},
        {"windows": (0,)},
        {"windows": (1.5,)},
        {"delay_days": 0},
    ],
)
def test_spec_rejects_bad_windows_and_delay(kwargs):
    with pytest.raises(ValueError):
        FeatureSpec(**kwargs)


def test_ratio_is_zero_for_zero_count_scalar_and_vector():
    assert ratio(3, 0) == 0.0
    assert ratio(1, 4) == 0.25
    np.testing.assert_array_equal(ratio(np.array([1, 0, 2]), np.array([2, 0, 0])), [0.5, 0, 0])


def test_times_are_wall_clock_nanoseconds_in_both_paths():
    naive = datetime(2018, 4, 7, 5, 59, 59, 123456)
    expected = int(pd.Timestamp(naive).value)
    aware = naive.replace(tzinfo=timezone(timedelta(hours=2)))
    for value in (naive, aware, pd.Timestamp(naive), np.datetime64(naive), naive.isoformat()):
        assert to_ns(value) == expected
    series = pd.Series([pd.Timestamp(aware)], name="TX_DATETIME")
    assert datetime_ns(series).tolist() == [expected]
    assert to_ns(datetime(1970, 1, 1, tzinfo=UTC)) == 0
    with pytest.raises(ValueError, match="missing"):
        to_ns(pd.NaT)


# --------------------------------------------------------------------------------------------
# Hand-computed expectations


def test_batch_features_match_hand_computed_values():
    df = tiny_frame()
    out = add_features(df)
    pd.testing.assert_frame_equal(out[df.columns], df)  # input columns and row order kept
    assert list(out.columns) == list(df.columns) + FEATURE_COLUMNS[1:]
    got = out[FEATURE_COLUMNS].reset_index(drop=True)
    pd.testing.assert_frame_equal(got, expected_frame(), check_exact=False, rtol=1e-12)


def test_online_features_match_hand_computed_values():
    online = replay(tiny_frame(), OnlineFeatureStore())
    pd.testing.assert_frame_equal(online, expected_frame(), check_exact=False, rtol=1e-12)


def test_batch_keeps_the_index_and_needs_the_contract_columns():
    df = tiny_frame().set_index(pd.Index(list("abcdefghij")))
    assert list(add_features(df).index) == list("abcdefghij")
    with pytest.raises(ValueError, match="TX_FRAUD"):
        add_features(df.drop(columns="TX_FRAUD"))
    with pytest.raises(ValueError, match="TX_DATETIME must be datetime64"):
        add_features(df.assign(TX_DATETIME=df["TX_DATETIME"].astype(str)))
    with pytest.raises(ValueError, match=r"TX_AMOUNT .* row 'c'"):
        add_features(df.assign(TX_AMOUNT=[1, 2, None, 4, 5, 6, 7, 8, 9, 10]))
    with pytest.raises(ValueError, match="COUNTRY"):
        add_features(df, context_columns=["COUNTRY"])


def test_missing_labels_count_as_not_fraud():
    df = tiny_frame().astype({"TX_FRAUD": float})
    df.loc[4, "TX_FRAUD"] = np.nan  # row 4 was one of the two frauds seen by row 3
    out = add_features(df)
    assert out.loc[3, "TERMINAL_ID_RISK_30DAY_WINDOW"] == pytest.approx(0.2)


def test_context_encodings():
    df = tiny_frame().assign(
        DEVICE_TYPE=["mobile", "Desktop", None, "tablet", "fridge", "mobile", "mobile"]
        + ["desktop"] * 3,
        METHOD=["card", "klarna", "CARD", None, "cash", "ideal", "card", "card", "card", "card"],
        VERIFICATION_PASSED=[True, False, None, "true", "no", 1, 0, True, True, True],
        COUNTRY=["NL", "nl", "DE", "NL", "FR", None, "FR", "BE", "NL", "FR"],
    )
    out = add_features(df)  # context columns found automatically
    spec = FeatureSpec(context_columns=CONTEXT_COLUMNS)
    assert list(out.columns[-len(spec.columns) + 1 :]) == spec.columns[1:]
    assert out["DEVICE_TYPE_MOBILE"].tolist() == [1, 0, 0, 0, 0, 1, 1, 0, 0, 0]
    assert out["DEVICE_TYPE_DESKTOP"].tolist() == [0, 1, 0, 0, 0, 0, 0, 1, 1, 1]
    assert (
        out[["DEVICE_TYPE_DESKTOP", "DEVICE_TYPE_MOBILE", "DEVICE_TYPE_TABLET"]].loc[4].sum() == 0
    )
    assert out["METHOD_CARD"].tolist() == [1, 0, 1, 0, 0, 0, 1, 1, 1, 1]
    assert out["METHOD_KLARNA"].tolist() == [0, 1, 0, 0, 0, 0, 0, 0, 0, 0]
    assert out["TX_VERIFICATION_PASSED"].tolist() == [1, 0, 0, 1, 0, 1, 0, 1, 1, 1]
    # A: NL (new), nl (seen 1 day ago), DE (new), NL 05-02 (last NL 04-15: seen), NL 04-15
    #    (last NL 04-03: seen). B: FR (new), missing (0), FR at 04-09 00:00 row 6 (seen),
    #    BE (new), FR row 9 (seen: row 6 at the same time comes first).
    assert out["CUSTOMER_ID_NEW_COUNTRY_30DAY_WINDOW"].tolist() == [1, 0, 1, 0, 1, 0, 0, 1, 0, 0]
    store = OnlineFeatureStore(context_columns=CONTEXT_COLUMNS)
    pd.testing.assert_frame_equal(
        replay(df, store), out[spec.columns].reset_index(drop=True), check_exact=False, rtol=1e-12
    )


# --------------------------------------------------------------------------------------------
# Train/serve skew: the online store reproduces the batch features for the same history


def random_history(seed: int = 7, n: int = 4000) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    start = np.datetime64("2018-04-01T00:00:00", "ns")
    seconds = rng.integers(0, 60 * 86_400, size=n)
    # Stress the boundaries: copies of earlier times shifted by exactly 1, 7, 8, 30 or 37
    # days (window and delay ends) and exact duplicates (ties).
    k = n // 5
    base = rng.choice(n - k, size=k)
    shift = rng.choice([0, 1, 7, 8, 30, 37], size=k) * 86_400
    seconds[n - k :] = np.minimum(seconds[base] + shift, 60 * 86_400)
    customers = rng.integers(0, 50, size=n)
    terminals = rng.integers(0, 30, size=n)
    customers[n - k :] = np.where(rng.random(k) < 0.5, customers[base], customers[n - k :])
    terminals[n - k :] = np.where(rng.random(k) < 0.5, terminals[base], terminals[n - k :])
    return pd.DataFrame(
        {
            "TRANSACTION_ID": rng.permutation(n),
            "TX_DATETIME": start + seconds.astype("timedelta64[s]"),
            "CUSTOMER_ID": customers,
            "TERMINAL_ID": [f"T{t}" for t in terminals],
            "TX_AMOUNT": np.round(rng.gamma(2.0, 30.0, size=n), 2),
            "TX_FRAUD": (rng.random(n) < 0.08).astype(int),
            "DEVICE_TYPE": rng.choice(["desktop", "mobile", "tablet", "tv", None], size=n),
            "METHOD": rng.choice([*METHODS, None], size=n),
            "VERIFICATION_PASSED": rng.choice([True, False, None], size=n),
            "COUNTRY": rng.choice(["NL", "DE", "be", "FR", None], size=n),
        }
    )


@pytest.mark.parametrize("windows,delay_days", [((1, 7, 30), 7), ((2, 5), 3)])
def test_online_features_equal_batch_features(windows, delay_days):
    df = random_history()
    assert df["TX_DATETIME"].duplicated().any()  # ties are exercised
    batch = add_features(df, windows=windows, delay_days=delay_days)
    store = OnlineFeatureStore(
        windows=windows, delay_days=delay_days, context_columns=CONTEXT_COLUMNS
    )
    online = replay(df, store)
    assert list(online.columns) == store.columns
    assert (batch[store.spec.terminal_risk(windows[-1])] > 0).mean() > 0.3  # risk is exercised
    for column in store.columns:
        np.testing.assert_allclose(
            online[column].to_numpy(), batch[column].to_numpy(), rtol=1e-9, err_msg=column
        )


def test_online_features_equal_batch_when_labels_arrive_later():
    df = random_history(seed=11, n=2000)[
        ["TRANSACTION_ID", "TX_DATETIME", "CUSTOMER_ID", "TERMINAL_ID", "TX_AMOUNT", "TX_FRAUD"]
    ]
    batch = add_features(df)[FEATURE_COLUMNS].reset_index(drop=True)
    online = replay(df, OnlineFeatureStore(), label_lag=timedelta(days=3))  # < 7-day delay
    np.testing.assert_allclose(online.to_numpy(), batch.to_numpy(), rtol=1e-9)


def test_online_store_forgets_what_no_window_can_reach():
    df = random_history(seed=3, n=3000)
    store = OnlineFeatureStore()
    replay(df, store)
    stats = store.stats()
    retained = 0
    for _, times in df.groupby("CUSTOMER_ID")["TX_DATETIME"]:
        retained += int((times > times.max() - pd.Timedelta(days=30)).sum())
    assert stats["customer_transactions"] == retained < len(df)
    assert stats["terminal_transactions"] < len(df)

    # An entity idle for longer than every window is dropped, with its labels index.
    store = OnlineFeatureStore()
    store.update(
        {"TRANSACTION_ID": "old", "TX_DATETIME": datetime(2018, 1, 1), "CUSTOMER_ID": "gone"}
        | {"TERMINAL_ID": "gone", "TX_AMOUNT": 1.0},
        label=0,
    )
    later = datetime(2018, 4, 1)
    for i in range(2100):
        store.update(
            {"TRANSACTION_ID": i, "TX_DATETIME": later + timedelta(seconds=i), "CUSTOMER_ID": i % 7}
            | {"TERMINAL_ID": i % 5, "TX_AMOUNT": 1.0},
            label=0,
        )
    assert store.stats()["customers"] == 7
    assert store.stats()["terminals"] == 5
    assert store.add_label("old", 1) is False
    assert store.add_label(2000, 1) is True


def test_windows_match_pandas_time_based_rolling():
    """Same numbers as pandas' time-based ``rolling("{w}D")`` (the Handbook's formulation)."""
    df = random_history(seed=5, n=3000).drop_duplicates("TX_DATETIME")
    df = df.sort_values("TX_DATETIME").reset_index(drop=True)
    ours = add_features(df, context_columns=[])
    indexed = df.set_index("TX_DATETIME")
    for w in (1, 7, 30):
        by_customer = indexed.groupby("CUSTOMER_ID")["TX_AMOUNT"].rolling(f"{w}D")
        expected = pd.DataFrame({"nb": by_customer.count(), "avg": by_customer.mean()})
        expected = expected.reset_index().set_index(["CUSTOMER_ID", "TX_DATETIME"])
        got = ours.set_index(["CUSTOMER_ID", "TX_DATETIME"]).loc[expected.index]
        np.testing.assert_allclose(got[f"CUSTOMER_ID_NB_TX_{w}DAY_WINDOW"], expected["nb"])
        np.testing.assert_allclose(got[f"CUSTOMER_ID_AVG_AMOUNT_{w}DAY_WINDOW"], expected["avg"])

        # (t - 7 - w, t - 7] = (t - 7 - w, t] minus (t - 7, t]
        by_terminal = indexed.groupby("TERMINAL_ID")["TX_FRAUD"]
        long, short = by_terminal.rolling(f"{7 + w}D"), by_terminal.rolling("7D")
        nb = long.count() - short.count()
        frauds = long.sum() - short.sum()
        risk = (frauds / nb.where(nb > 0)).fillna(0.0)
        got = ours.set_index(["TERMINAL_ID", "TX_DATETIME"]).loc[nb.index]
        np.testing.assert_allclose(got[f"TERMINAL_ID_NB_TX_{w}DAY_WINDOW"], nb)
        np.testing.assert_allclose(got[f"TERMINAL_ID_RISK_{w}DAY_WINDOW"], risk, atol=1e-12)


def test_empty_frame_gets_empty_feature_columns():
    out = add_features(tiny_frame().iloc[:0])
    assert out.empty
    assert set(FEATURE_COLUMNS) <= set(out.columns)
