"""Fraud model quality: every spec in models/ under the Handbook's chapter 3 and 5 protocols.

Usage (from the repository root)::

    .venv/bin/checkoutlab fraud simulate -o /tmp/tx.parquet      # default data: seed 0, 2018-04-01
    .venv/bin/python benchmarks/fraud_quality.py --data /tmp/tx.parquet
    .venv/bin/python benchmarks/fraud_quality.py --data /tmp/tx.parquet --markdown  # RESULTS.md

Without ``--data`` the default data set is simulated into a temporary file first. Targets (not a
test): average precision above 0.66 on the chapter 3 protocol and above 0.69 on the prequential
one, with calibration error (ECE, 10 equal-width bins) below 0.002.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from checkoutlab.fraud.data import load_transactions
from checkoutlab.fraud.evaluate import METRICS, PUBLISHED, evaluate_spec
from checkoutlab.fraud.specs import load_spec

TARGETS = {"handbook": 0.66, "prequential": 0.69}
ECE_TARGET = 0.002
SHORT = {
    "auc_roc": "AUC",
    "average_precision": "AP",
    "card_precision_at_100": "CP@100",
    "brier": "Brier",
    "calibration_error": "ECE",
}


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs (nproc), {cpu}, Python {platform.python_version()}"


def versions() -> str:
    from importlib.metadata import version

    return ", ".join(f"{p} {version(p)}" for p in ("scikit-learn", "numpy", "pandas"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="transactions file [default: simulate]")
    parser.add_argument(
        "--spec", type=Path, action="append", help="spec(s) [default: models/*.yaml]"
    )
    parser.add_argument(
        "--protocol",
        choices=["handbook", "prequential"],
        action="append",
        help="protocol(s) [default: both]",
    )
    parser.add_argument("--markdown", action="store_true", help="print a RESULTS.md section")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)

    specs = args.spec or sorted((ROOT / "models").glob("*.yaml"))
    protocols = args.protocol or ["handbook", "prequential"]
    data = args.data
    if data is None:
        from checkoutlab.fraud.data import save_transactions
        from checkoutlab.fraud.simulate import simulate

        data = Path(tempfile.mkdtemp()) / "tx.parquet"
        print(f"simulating the default data set into {data} ...", file=sys.stderr)
        save_transactions(simulate(), data)
    transactions = load_transactions(data)

    rows = []
    for path in specs:
        spec = load_spec(path)
        for protocol in protocols:
            began = time.perf_counter()
            result = evaluate_spec(spec, transactions, protocol=protocol)
            seconds = time.perf_counter() - began
            rows.append(
                {
                    "spec": spec.name,
                    "protocol": protocol,
                    **result.metrics,
                    "folds": result.folds,
                    "seconds": seconds,
                }
            )
            metrics = "  ".join(f"{SHORT[m]} {result.metrics[m]:.4f}" for m in METRICS)
            print(f"{spec.name:>10} {protocol:>11}  {metrics}  ({seconds:.0f} s)", file=sys.stderr)

    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    if args.markdown:
        print(markdown(rows, data=data, n=len(transactions)))
    return 0


def markdown(rows: list[dict], *, data: Path, n: int) -> str:
    head = "| spec | protocol | " + " | ".join(SHORT[m] for m in METRICS) + " | AP target | time |"
    lines = [
        "## Fraud model quality",
        "",
        f"Date: {datetime.now(UTC):%Y-%m-%d}. Machine: {machine()}; {versions()}.",
        f"Data: `{data.name}`, {n:,} transactions (default simulation, seed 0, from 2018-04-01).",
        "Command: `.venv/bin/checkoutlab fraud simulate -o /tmp/tx.parquet && "
        ".venv/bin/python benchmarks/fraud_quality.py --data /tmp/tx.parquet --markdown`",
        "",
        head,
        "|" + "---|" * (len(METRICS) + 4),
    ]
    for r in rows:
        target = TARGETS[r["protocol"]]
        met = r["average_precision"] > target and r["calibration_error"] < ECE_TARGET
        values = " | ".join(f"{r[m]:.4f}" for m in METRICS)
        lines.append(
            f"| {r['spec']} | {r['protocol']} | {values} | > {target} "
            f"{'met' if met else 'missed'} | {r['seconds']:.0f} s |"
        )
    for protocol, published in PUBLISHED.items():
        for name, numbers in published.items():
            values = " | ".join(f"{numbers[m]:.3f}" if m in numbers else "" for m in METRICS)
            lines.append(f"| Handbook {name} (published) | {protocol} | {values} | | |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
