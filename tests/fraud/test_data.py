"""The data contract: reading, checking and writing labelled transaction files."""

from __future__ import annotations

import pandas as pd
import pytest

from checkoutlab.fraud.data import (
    REQUIRED_COLUMNS,
    DataContractError,
    load_transactions,
    save_transactions,
)
from checkoutlab.fraud.simulate import simulate


@pytest.fixture(scope="module")
def tx() -> pd.DataFrame:
    return simulate(n_customers=60, n_terminals=120, n_days=10, seed=2)


def _rows() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "TRANSACTION_ID": [10, 11, 12],
            "TX_DATETIME": ["2024-05-02 09:00:00", "2024-05-01 23:30:00", "2024-05-02 08:00:00"],
            "CUSTOMER_ID": ["cus_a", "cus_b", "cus_a"],
            "TERMINAL_ID": [1, 2, 1],
            "TX_AMOUNT": [10.5, 99.0, 7.25],
            "TX_FRAUD": [0, 1, 0],
            "DEVICE": ["ios", "web", "android"],
        }
    )


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_round_trip(tx: pd.DataFrame, tmp_path, suffix: str) -> None:
    path = save_transactions(tx, tmp_path / f"tx{suffix}")
    pd.testing.assert_frame_equal(load_transactions(path), tx)
    pd.testing.assert_frame_equal(load_transactions(str(path)), tx)


def test_sorts_keeps_extra_columns_and_derives_times(tmp_path) -> None:
    path = tmp_path / "mine.csv"
    _rows().to_csv(path, index=False)
    df = load_transactions(path)
    assert list(df["TRANSACTION_ID"]) == [11, 12, 10]
    assert list(df["DEVICE"]) == ["web", "android", "ios"]
    assert df["TX_DATETIME"].dtype == "datetime64[ns]"
    assert list(df["TX_TIME_DAYS"]) == [0, 1, 1]
    assert list(df["TX_TIME_SECONDS"]) == [84600, 86400 + 8 * 3600, 86400 + 9 * 3600]
    assert df["TX_FRAUD"].dtype == "int64"


def test_offsets_are_converted_to_utc(tmp_path) -> None:
    rows = _rows()
    rows["TX_DATETIME"] = ["2024-05-02T09:00:00+02:00", "2024-05-02T06:00:00Z", "2024-05-02"]
    path = tmp_path / "tz.csv"
    rows.to_csv(path, index=False)
    df = load_transactions(path)
    assert list(df["TX_DATETIME"].astype(str)) == [
        "2024-05-02 00:00:00",
        "2024-05-02 06:00:00",
        "2024-05-02 07:00:00",
    ]


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_missing_columns_are_named(tmp_path, suffix: str) -> None:
    path = tmp_path / f"tx{suffix}"
    save_transactions(_rows().drop(columns=["TX_FRAUD", "TERMINAL_ID"]), path)
    with pytest.raises(DataContractError) as err:
        load_transactions(path)
    message = str(err.value)
    assert "TERMINAL_ID, TX_FRAUD" in message
    assert "TX_AMOUNT" not in message.split(";")[0]


def test_a_miscased_column_gets_a_hint(tmp_path) -> None:
    path = tmp_path / "tx.csv"
    _rows().rename(columns={"TX_FRAUD": "tx_fraud"}).to_csv(path, index=False)
    with pytest.raises(DataContractError, match="'tx_fraud' looks like TX_FRAUD"):
        load_transactions(path)


def test_non_numeric_amount_names_column_and_row(tmp_path) -> None:
    rows = _rows()
    rows["TX_AMOUNT"] = ["10.5", "$99.00", "oops"]
    path = tmp_path / "tx.csv"
    rows.to_csv(path, index=False)
    with pytest.raises(DataContractError) as err:
        load_transactions(path)
    message = str(err.value)
    assert "TX_AMOUNT" in message
    assert "row 2 (line 3 of the CSV file)" in message
    assert "'$99.00'" in message
    assert "1 more row" in message


def test_negative_amount_refused_with_row(tmp_path) -> None:
    rows = _rows()
    rows.loc[2, "TX_AMOUNT"] = -5.0
    path = tmp_path / "tx.parquet"
    save_transactions(rows, path)
    with pytest.raises(DataContractError, match=r"TX_AMOUNT: row 3 has -5\.0, a negative"):
        load_transactions(path)


@pytest.mark.parametrize("label", [2, "yes", None])
def test_label_must_be_0_or_1(tmp_path, label) -> None:
    rows = _rows().astype({"TX_FRAUD": object})
    rows.loc[1, "TX_FRAUD"] = label
    path = tmp_path / "tx.csv"
    rows.to_csv(path, index=False)
    with pytest.raises(DataContractError, match=r"TX_FRAUD: row 2 .* must be 0 \(genuine\) or 1"):
        load_transactions(path)


def test_bool_and_float_labels_are_accepted(tmp_path) -> None:
    rows = _rows()
    rows["TX_FRAUD"] = [False, True, False]
    path = tmp_path / "b.parquet"
    save_transactions(rows, path)
    assert load_transactions(path)["TX_FRAUD"].tolist() == [1, 0, 0]
    rows["TX_FRAUD"] = [0.0, 1.0, 0.0]
    save_transactions(rows, path)
    assert load_transactions(path)["TX_FRAUD"].tolist() == [1, 0, 0]


def test_bad_datetime_names_row(tmp_path) -> None:
    rows = _rows()
    rows.loc[2, "TX_DATETIME"] = "yesterday"
    path = tmp_path / "tx.csv"
    rows.to_csv(path, index=False)
    with pytest.raises(DataContractError, match=r"TX_DATETIME: row 3 .*'yesterday'.*ISO 8601"):
        load_transactions(path)


def test_missing_and_duplicate_ids(tmp_path) -> None:
    path = tmp_path / "tx.csv"
    rows = _rows()
    rows.loc[1, "CUSTOMER_ID"] = None
    rows.to_csv(path, index=False)
    with pytest.raises(DataContractError, match=r"CUSTOMER_ID: row 2 .*empty value"):
        load_transactions(path)
    rows = _rows()
    rows.loc[2, "TRANSACTION_ID"] = 10
    rows.to_csv(path, index=False)
    with pytest.raises(DataContractError, match=r"TRANSACTION_ID: row 3 .*unique"):
        load_transactions(path)


@pytest.mark.parametrize("name", ["tx.xlsx", "tx.json", "tx"])
def test_unsupported_suffix_refused(tmp_path, name: str) -> None:
    path = tmp_path / name
    path.write_text("x")
    with pytest.raises(DataContractError, match=r"unsupported file type.*\.csv or \.parquet"):
        load_transactions(path)
    with pytest.raises(DataContractError, match="unsupported file type"):
        save_transactions(_rows(), path)


def test_unreadable_empty_and_absent_files(tmp_path) -> None:
    with pytest.raises(DataContractError, match="file not found"):
        load_transactions(tmp_path / "absent.csv")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataContractError, match="empty"):
        load_transactions(empty)
    header_only = tmp_path / "header.csv"
    header_only.write_text(",".join(REQUIRED_COLUMNS) + "\n")
    with pytest.raises(DataContractError, match="no transactions"):
        load_transactions(header_only)
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not parquet at all")
    with pytest.raises(DataContractError, match="cannot read it as PARQUET"):
        load_transactions(broken)


def test_contract_error_is_a_value_error() -> None:
    assert issubclass(DataContractError, ValueError)
