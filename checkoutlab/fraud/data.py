"""The fraud data contract: labelled transactions in the Fraud Detection Handbook's format.

Training and evaluation accept any CSV or Parquet file with the columns
:data:`REQUIRED_COLUMNS`, so a merchant's own labelled history can be used as well as
simulated data. Extra columns (platform context: device, country, method, ...) are kept.

:func:`load_transactions` checks the file and raises :class:`DataContractError` with a message
that names the column and the first offending row, counted from 1 over the data rows in file
order (in a CSV file, row ``n`` is on line ``n + 1``, after the header).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

__all__ = [
    "REQUIRED_COLUMNS",
    "SUPPORTED_SUFFIXES",
    "DataContractError",
    "file_format",
    "load_transactions",
    "save_transactions",
]

REQUIRED_COLUMNS = (
    "TRANSACTION_ID",
    "TX_DATETIME",
    "CUSTOMER_ID",
    "TERMINAL_ID",
    "TX_AMOUNT",
    "TX_FRAUD",
)
SUPPORTED_SUFFIXES = (".csv", ".parquet", ".pq")
_SECONDS_PER_DAY = 86_400


class DataContractError(ValueError):
    """A transactions file does not follow the data contract; the message says what to fix."""


def file_format(path: str | Path) -> Literal["csv", "parquet"]:
    """``"csv"`` or ``"parquet"`` by the file's suffix; any other suffix is refused."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".parquet", ".pq"):
        return "parquet"
    raise DataContractError(
        f"{path}: unsupported file type {path.suffix or '(no extension)'!r}; "
        "use a .csv or .parquet file"
    )


def _read(path: Path) -> pd.DataFrame:
    kind = file_format(path)
    if not path.is_file():
        raise DataContractError(f"{path}: file not found")
    try:
        if kind == "csv":
            return pd.read_csv(path)
        return pd.read_parquet(path)
    except pd.errors.EmptyDataError as exc:
        raise DataContractError(f"{path}: the file is empty; expected a header row") from exc
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError) as exc:
        raise DataContractError(f"{path}: cannot read it as {kind.upper()}: {exc}") from exc


def _where(path: Path, position: int) -> str:
    row = position + 1
    if path.suffix.lower() == ".csv":
        return f"row {row} (line {row + 1} of the CSV file)"
    return f"row {row}"


def _first_bad(
    path: Path, column: str, values: pd.Series, bad: np.ndarray, problem: str
) -> DataContractError:
    positions = np.flatnonzero(bad)
    first = int(positions[0])
    more = len(positions) - 1
    tail = f"; {more} more row{'s' if more != 1 else ''} have the same problem" if more else ""
    value = values.iloc[first]
    shown = "an empty value" if pd.isna(value) else repr(_plain(value))
    return DataContractError(
        f"{path}: column {column}: {_where(path, first)} has {shown}, {problem}{tail}"
    )


def _plain(value: object) -> object:
    return value.item() if isinstance(value, np.generic) else value


def _check_columns(path: Path, df: pd.DataFrame) -> None:
    present = {str(c) for c in df.columns}
    missing = [c for c in REQUIRED_COLUMNS if c not in present]
    if not missing:
        return
    by_folded = {str(c).strip().upper(): str(c) for c in df.columns}
    hints = [
        f"{by_folded[c]!r} looks like {c}" for c in missing if c in by_folded and by_folded[c] != c
    ]
    message = (
        f"{path}: missing required column{'s' if len(missing) > 1 else ''} "
        f"{', '.join(missing)}; a transactions file needs the columns "
        f"{', '.join(REQUIRED_COLUMNS)} (names are case-sensitive)"
    )
    if hints:
        message += f"; found {', '.join(hints)}: rename it"
    raise DataContractError(message)


def _check_ids(path: Path, df: pd.DataFrame) -> None:
    for column in ("TRANSACTION_ID", "CUSTOMER_ID", "TERMINAL_ID"):
        values = df[column]
        missing = values.isna().to_numpy()
        if missing.any():
            raise _first_bad(path, column, values, missing, "every row needs an id")
    duplicated = df["TRANSACTION_ID"].duplicated().to_numpy()
    if duplicated.any():
        raise _first_bad(
            path,
            "TRANSACTION_ID",
            df["TRANSACTION_ID"],
            duplicated,
            "which an earlier row already uses; transaction ids must be unique",
        )


def _parse_datetime(path: Path, values: pd.Series) -> pd.Series:
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        raise DataContractError(
            f"{path}: column TX_DATETIME holds numbers ({values.dtype}); write date-times "
            "as ISO 8601 text such as 2018-04-01 07:19:05, or as a timestamp column"
        )
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        parsed = values.dt.tz_convert("UTC").dt.tz_localize(None)
    elif pd.api.types.is_datetime64_dtype(values):
        parsed = values
    else:
        parsed = pd.to_datetime(values, errors="coerce", utc=True, format="ISO8601")
        parsed = parsed.dt.tz_localize(None)
    bad = parsed.isna().to_numpy()
    if bad.any():
        raise _first_bad(
            path,
            "TX_DATETIME",
            values,
            bad,
            "not a date-time; use ISO 8601 such as 2018-04-01 07:19:05 "
            "(an offset like +02:00 is converted to UTC)",
        )
    return parsed.astype("datetime64[ns]")


def _parse_amount(path: Path, values: pd.Series) -> pd.Series:
    if pd.api.types.is_bool_dtype(values):
        raise DataContractError(f"{path}: column TX_AMOUNT holds true/false values, not amounts")
    amount = pd.to_numeric(values, errors="coerce").astype("float64")
    bad = amount.isna().to_numpy()
    if bad.any():
        raise _first_bad(
            path,
            "TX_AMOUNT",
            values,
            bad,
            "not a number; write amounts as plain decimals in major units, e.g. 57.16 "
            "(no currency symbol or thousands separator)",
        )
    infinite = ~np.isfinite(amount.to_numpy())
    if infinite.any():
        raise _first_bad(path, "TX_AMOUNT", values, infinite, "not a finite amount")
    negative = (amount < 0).to_numpy()
    if negative.any():
        raise _first_bad(
            path,
            "TX_AMOUNT",
            values,
            negative,
            "a negative amount; refunds and reversals are not transactions, drop those rows",
        )
    return amount


def _parse_label(path: Path, values: pd.Series) -> pd.Series:
    if pd.api.types.is_bool_dtype(values):
        numbers = values.astype("float64")
    else:
        numbers = pd.to_numeric(values, errors="coerce")
    bad = ~numbers.isin([0, 1]).to_numpy()
    if bad.any():
        raise _first_bad(
            path, "TX_FRAUD", values, bad, "but the fraud label must be 0 (genuine) or 1 (fraud)"
        )
    return numbers.astype("int64")


def load_transactions(path: str | Path) -> pd.DataFrame:
    """Read and check a labelled transactions file (``.csv`` or ``.parquet``).

    Returns the transactions sorted by ``TX_DATETIME`` (ties keep file order) with a fresh
    index: ``TX_DATETIME`` as ``datetime64[ns]`` (UTC when the file had offsets),
    ``TX_AMOUNT`` as float and ``TX_FRAUD`` as 0/1 integers. ``TX_TIME_SECONDS`` and
    ``TX_TIME_DAYS`` (time since midnight of the first day, as in the Handbook) are added when
    the file lacks them. All other columns are kept as they are.

    Raises
    ------
    DataContractError
        If the file type is not supported, the file cannot be read, a required column is
        missing, or a value is invalid; the message names the column and the first bad row.
    """
    path = Path(path)
    df = _read(path)
    _check_columns(path, df)
    if df.empty:
        raise DataContractError(f"{path}: the file has a header but no transactions")
    df = df.reset_index(drop=True)
    _check_ids(path, df)
    df["TX_DATETIME"] = _parse_datetime(path, df["TX_DATETIME"])
    df["TX_AMOUNT"] = _parse_amount(path, df["TX_AMOUNT"])
    df["TX_FRAUD"] = _parse_label(path, df["TX_FRAUD"])

    df = df.sort_values("TX_DATETIME", kind="stable").reset_index(drop=True)
    if "TX_TIME_SECONDS" not in df.columns or "TX_TIME_DAYS" not in df.columns:
        origin = df["TX_DATETIME"].iloc[0].normalize()
        seconds = (df["TX_DATETIME"] - origin) // pd.Timedelta(seconds=1)
        if "TX_TIME_SECONDS" not in df.columns:
            df["TX_TIME_SECONDS"] = seconds.astype("int64")
        if "TX_TIME_DAYS" not in df.columns:
            df["TX_TIME_DAYS"] = (seconds // _SECONDS_PER_DAY).astype("int64")
    return df


def save_transactions(df: pd.DataFrame, path: str | Path) -> Path:
    """Write transactions to ``.parquet`` or ``.csv`` (by suffix); returns the path written.

    Parent folders are created. The written file loads back with :func:`load_transactions`.
    """
    path = Path(path)
    kind = file_format(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "csv":
        df.to_csv(path, index=False)
    else:
        df.to_parquet(path, index=False)
    return path
