"""Fraud training time on the default simulated dataset, for the shipped model specs.

Simulates the default data set (what ``checkoutlab fraud simulate`` writes: 5,000 customers,
10,000 terminals, 183 days from 2018-04-01, seed 0) unless ``--data`` names a file, then runs
the steps of ``train_from_spec`` (what ``checkoutlab fraud train`` and the worker's retraining
run) for each spec, timed separately: feature building over the spec's window (history +
train + delay + test days) and fitting (estimator on the fit days, calibration, test scoring).
No numeric target in issue #8: the time is reported, with the rows each step used.

    .venv/bin/python benchmarks/fraud_training.py                        # every models/*.yaml
    .venv/bin/python benchmarks/fraud_training.py --spec logreg --spec rf
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import write_section
from _setup import MODELS, load_now, machine_facts, machine_line

HERE = Path(__file__).resolve().parent


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 0.6 * len(rows) + 1.5))
    names = [r["spec"] for r in rows]
    feats = [r["features_s"] for r in rows]
    fits = [r["fit_s"] for r in rows]
    ax.barh(names, feats, label="feature building")
    ax.barh(names, fits, left=feats, label="fit + calibrate + test")
    for i, r in enumerate(rows):
        ax.text(r["features_s"] + r["fit_s"], i, f" {r['features_s'] + r['fit_s']:.1f} s",
                va="center")  # fmt: skip
    ax.set_xlabel("seconds")
    ax.set_title("Fraud training time, default simulated data set")
    ax.set_xlim(0, max(f + g for f, g in zip(feats, fits, strict=True)) * 1.25)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="transactions file [default: simulate]")
    parser.add_argument("--spec", action="append", help="spec name in models/ [default: all]")
    parser.add_argument("--results", type=Path, default=HERE / "RESULTS.md")
    parser.add_argument("--plot", type=Path, default=HERE / "fraud_training.png")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()

    import sklearn

    from checkoutlab.fraud.data import load_transactions
    from checkoutlab.fraud.evaluate import TimeSplit
    from checkoutlab.fraud.simulate import simulate
    from checkoutlab.fraud.specs import load_spec
    from checkoutlab.fraud.train import build_features, fit_split

    facts = machine_facts()
    began = time.perf_counter()
    if args.data is None:
        tx = simulate()
        source = "simulated in this run (default `checkoutlab fraud simulate`: seed 0)"
        sim_s = time.perf_counter() - began
    else:
        tx = load_transactions(args.data)
        source = f"`{args.data}`"
        sim_s = time.perf_counter() - began
    specs = (
        [MODELS / f"{name}.yaml" for name in args.spec]
        if args.spec
        else sorted(MODELS.glob("*.yaml"))
    )
    rows = []
    for path in specs:
        spec = load_spec(path)
        t0 = time.perf_counter()
        split = TimeSplit.from_spec(spec)
        split.check_coverage(tx)
        features = spec.resolve_features()
        frame = build_features(
            tx, features, start=split.history_start(max(features.windows)), end=split.test_end
        )
        t1 = time.perf_counter()
        fitted = fit_split(spec, frame, split, features=features)
        t2 = time.perf_counter()
        rows.append(
            {
                "spec": spec.name,
                "estimator": spec.estimator,
                "n_features": len(features.columns) if hasattr(features, "columns") else None,
                "window_rows": len(frame),
                "rows": fitted.rows,
                "features_s": t1 - t0,
                "fit_s": t2 - t1,
                "ap": fitted.metrics.get("average_precision"),
            }
        )
        print(f"{spec.name}: features {t1 - t0:.1f} s, fit {t2 - t1:.1f} s, rows {fitted.rows}",
              file=sys.stderr)  # fmt: skip
    wall = time.perf_counter() - began

    table = []
    for r in rows:
        rr = r["rows"]
        counts = " / ".join(f"{v:,}" for v in rr.values())
        table.append(
            f"| {r['spec']} | {r['estimator']} | {r['window_rows']:,} | {counts} "
            f"| {r['features_s']:.1f} | {r['fit_s']:.1f} | **{r['features_s'] + r['fit_s']:.1f}** "
            f"| {r['ap']:.3f} |"
        )
    row_keys = " / ".join(rows[0]["rows"]) if rows else ""
    command = "`.venv/bin/python benchmarks/fraud_training.py " + " ".join(
        a for a in sys.argv[1:] if a != "--no-write"
    )
    body = f"""Command: {command.rstrip()}`

Machine: {machine_line(facts)}; {load_now():.2f} at the end (wall {wall:.0f} s);
scikit-learn {sklearn.__version__} (random forests use `n_jobs: -1`, i.e. both cores).

Data: {len(tx):,} transactions, {int(tx["TX_FRAUD"].sum()):,} frauds; {source}
({sim_s:.1f} s to {"simulate" if args.data is None else "load"}). Each spec trains on its own
split (`split:` in its YAML: 7 training days from 2018-07-25, the last 2 for calibration, a
7-day label delay, 7 test days), so "window rows" is the slice whose features are built
(history for the longest window + train + delay + test days) and the fit / calibration / test
rows are what the estimator, the calibrator and the test metrics saw. Seconds, wall clock.

| spec | estimator | window rows | rows ({row_keys}) | features s | fit + calibrate + test s | total s | test AP |
|---|---|---:|---:|---:|---:|---:|---:|
{chr(10).join(table)}

No numeric target in issue #8 for training time; quality is in "Fraud model quality".

![fraud training time]({args.plot.name})
"""
    print(body)
    if not args.no_write:
        plot(rows, args.plot)
        write_section("Fraud training time", body, args.results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
