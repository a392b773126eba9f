"""Stats engine time for a 10-million-exposure experiment: aggregation, then the statistics.

The analysis is two steps (``checkoutlab.experiments.analysis``): the database reduces the
exposures to per-variant sufficient statistics (``variant_sums``: per unit, then per variant,
``n`` and the sums, sums of squares and cross products of each metric's numerator and
denominator), and the stats engine (``checkoutlab.experiments.stats``) turns those into lifts,
intervals, p-values, chances to win, multiple-testing corrections and the SRM check. The two
are timed separately.

Stand-ins for the aggregation (inserting 10 million real decisions, events and payments would
take far longer than the aggregation itself): the same two-level reduction over 10 million
synthetic exposures (a unit = a customer with about 2.5 sessions; each session with the
outcomes the real query derives: converted, revenue, declines, attempts, frauds, seconds),
(a) in PostgreSQL from ``generate_series`` and (b) as a pandas groupby. Both produce exactly the
dict ``variant_sums`` returns, which the stats step then consumes as ``analyze_experiment`` does
(every metric of ``METRIC_PARTS``: ``metric_aggregate`` → ``frequentist`` + ``bayesian``; Holm
adjustment; SRM).

    .venv/bin/python benchmarks/stats_engine.py                       # 10 million exposures
    .venv/bin/python benchmarks/stats_engine.py --exposures 1000000 --skip postgresql
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import write_section
from _setup import PG_DEFAULT, load_now, machine_facts, machine_line

HERE = Path(__file__).resolve().parent
SESSIONS_PER_UNIT = 2.5
RATES = {"control": 0.300, "treatment": 0.309}  # conversion per session (+3% relative)


def _columns() -> tuple[list[str], list[tuple[str, str]]]:
    from checkoutlab.experiments.analysis import METRIC_PARTS, UNIT_COLUMNS

    crosses = sorted({(num, den) for num, den in METRIC_PARTS.values()})
    return list(UNIT_COLUMNS), crosses


def postgres_sums(url: str, n: int, seed: float) -> tuple[dict[str, dict[str, float]], float]:
    import psycopg

    cols, crosses = _columns()
    units = max(2, int(n / SESSIONS_PER_UNIT))
    final = ["variant", "count(*)::float AS n"]
    for c in cols:
        final += [f"sum({c}) AS sum_{c}", f"sum({c} * {c}) AS sq_{c}"]
    final += [f"sum({a} * {b}) AS cross_{a}_{b}" for a, b in crosses]
    sql = f"""
    WITH units AS (
      SELECT unit, variant,
             count(*)::float AS sessions, sum(converted)::float AS conversions,
             sum(revenue)::float AS revenue, sum(declines)::float AS declines,
             sum(attempts)::float AS attempts, sum(frauds)::float AS frauds,
             sum(seconds)::float AS seconds
      FROM (
        SELECT unit, variant, converted,
               converted * (500 + floor(r2 * 9500)) AS revenue,
               retry AS declines, converted + retry AS attempts,
               converted * (r3 < 0.005)::int AS frauds,
               converted * (20 + r4 * 280) AS seconds
        FROM (
          SELECT unit, variant,
                 (r1 < CASE variant WHEN 'control' THEN {RATES["control"]}
                                    ELSE {RATES["treatment"]} END)::int AS converted,
                 (r5 < 0.08)::int AS retry, r2, r3, r4
          FROM (
            SELECT u AS unit, CASE WHEN u % 2 = 0 THEN 'control' ELSE 'treatment' END AS variant,
                   r1, r2, r3, r4, r5
            FROM (
              SELECT floor(random() * {units})::bigint AS u, random() AS r1, random() AS r2,
                     random() AS r3, random() AS r4, random() AS r5
              FROM generate_series(1, {n})
            ) draws
          ) assigned
        ) outcomes
      ) sessions
      GROUP BY unit, variant
    )
    SELECT {", ".join(final)} FROM units GROUP BY variant
    """  # noqa: S608 - numbers and column names only
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn) as conn:
        conn.execute("SET work_mem = '1GB'")
        conn.execute("SELECT setseed(%s)", (seed,))
        began = time.perf_counter()
        cur = conn.execute(sql)
        names = [d.name for d in cur.description]
        rows = cur.fetchall()
        seconds = time.perf_counter() - began
    sums = {
        row[0]: {k: float(v or 0) for k, v in zip(names[1:], row[1:], strict=True)} for row in rows
    }
    return sums, seconds


def pandas_sums(n: int, seed: int) -> tuple[dict[str, dict[str, float]], float, float]:
    import pandas as pd

    cols, crosses = _columns()
    began = time.perf_counter()
    rng = np.random.default_rng(seed)
    units = max(2, int(n / SESSIONS_PER_UNIT))
    unit = rng.integers(0, units, n)
    treated = (unit % 2).astype(bool)
    rate = np.where(treated, RATES["treatment"], RATES["control"])
    converted = (rng.random(n) < rate).astype(np.int64)
    retry = (rng.random(n) < 0.08).astype(np.int64)
    frame = pd.DataFrame(
        {
            "unit": unit,
            "sessions": np.ones(n),
            "conversions": converted.astype(float),
            "revenue": converted * (500 + np.floor(rng.random(n) * 9500)),
            "declines": retry.astype(float),
            "attempts": (converted + retry).astype(float),
            "frauds": (converted * (rng.random(n) < 0.005)).astype(float),
            "seconds": converted * (20 + rng.random(n) * 280),
        }
    )
    generated = time.perf_counter() - began
    began = time.perf_counter()
    per_unit = frame.groupby("unit", sort=False)[cols].sum()
    per_unit["variant"] = np.where(per_unit.index.to_numpy() % 2, "treatment", "control")
    for c in cols:
        per_unit[f"sq_{c}"] = per_unit[c] * per_unit[c]
    for a, b in crosses:
        per_unit[f"cross_{a}_{b}"] = per_unit[a] * per_unit[b]
    per_unit = per_unit.rename(columns={c: f"sum_{c}" for c in cols})
    grouped = per_unit.groupby("variant").sum()
    grouped["n"] = per_unit.groupby("variant").size().astype(float)
    sums = {v: {k: float(x) for k, x in row.items()} for v, row in grouped.iterrows()}
    return sums, generated, time.perf_counter() - began


def analyse(sums: dict[str, dict[str, float]]) -> dict[str, Any]:
    """What ``analyze_experiment`` does with the sums (no SQL, no time series)."""
    from checkoutlab.experiments import stats
    from checkoutlab.experiments.analysis import METRIC_PARTS, metric_aggregate
    from checkoutlab.experiments.schemas import INVERSE_METRICS

    out: dict[str, Any] = {}
    family = []
    for metric in METRIC_PARTS:
        control = metric_aggregate(sums["control"], metric)
        treatment = metric_aggregate(sums["treatment"], metric)
        freq = stats.frequentist(control, treatment, alpha=0.05)
        seq = stats.frequentist(control, treatment, alpha=0.05, sequential=True)
        bayes = stats.bayesian(control, treatment, alpha=0.05, inverse=metric in INVERSE_METRICS)
        out[metric] = (freq, seq, bayes)
        family.append(freq)
    out["adjusted"] = stats.adjust_results(family, method="holm")
    out["srm"] = stats.srm_check([sums["control"]["n"], sums["treatment"]["n"]], [1.0, 1.0])
    return out


def time_stats(sums: dict[str, dict[str, float]], repeats: int) -> tuple[float, dict[str, Any]]:
    analyse(sums)
    samples = []
    for _ in range(repeats):
        began = time.perf_counter_ns()
        result = analyse(sums)
        samples.append(time.perf_counter_ns() - began)
    return float(np.median(samples)) / 1e3, result


def plot(parts: list[tuple[str, float]], path: Path, exposures: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 0.6 * len(parts) + 1.8))
    ax.barh([p for p, _ in parts], [s for _, s in parts], left=1e-4)
    for i, (_, s) in enumerate(parts):
        ax.text(s, i, f" {s:.3g} s", va="center")
    ax.set_xscale("log")
    ax.set_xlabel("seconds (log scale)")
    ax.set_xlim(1e-4, max(s for _, s in parts) * 5)
    ax.set_title(f"{exposures:,} exposures: aggregation vs stats engine (one analysis)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exposures", type=int, default=10_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=200, help="stats-engine repetitions")
    parser.add_argument("--skip", action="append", default=[], choices=["postgresql", "pandas"])
    parser.add_argument("--pg-url", default=PG_DEFAULT)
    parser.add_argument("--results", type=Path, default=HERE / "RESULTS.md")
    parser.add_argument("--plot", type=Path, default=HERE / "stats_engine.png")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()

    from _setup import _ensure_pg_database

    facts = machine_facts()
    began = time.perf_counter()
    runs: dict[str, dict[str, Any]] = {}
    if "postgresql" not in args.skip:
        _ensure_pg_database(args.pg_url)
        sums, agg = postgres_sums(args.pg_url, args.exposures, seed=0.5)
        runs["PostgreSQL generate_series"] = {"sums": sums, "agg": agg, "gen": None}
        print(f"postgresql aggregation {agg:.1f} s", file=sys.stderr)
    if "pandas" not in args.skip:
        sums, gen, agg = pandas_sums(args.exposures, args.seed)
        runs["pandas groupby"] = {"sums": sums, "agg": agg, "gen": gen}
        print(f"pandas generation {gen:.1f} s, aggregation {agg:.1f} s", file=sys.stderr)
    rows, parts = [], []
    for name, run in runs.items():
        us, result = time_stats(run["sums"], args.repeats)
        run["stats_us"] = us
        freq, _seq, bayes = result["conversion"]
        units = sum(v["n"] for v in run["sums"].values())
        exposures = sum(v["sum_sessions"] for v in run["sums"].values())
        gen = f"{run['gen']:.1f} s (numpy) + " if run["gen"] is not None else "in the query: "
        rows.append(
            f"| {name} | {exposures:,.0f} / {units:,.0f} | {gen}{run['agg']:.1f} s "
            f"| {us / 1000:.2f} ms | {freq.lift:+.2%} [{freq.ci[0]:+.2%}, {freq.ci[1]:+.2%}], "
            f"p={freq.p_value:.2g}, P(win)={bayes.chance_to_win:.3f}, "
            f"SRM p={result['srm'].p_value:.2f} |"
        )
        parts += [(f"{name}: aggregation", run["agg"]), (f"{name}: stats engine", us / 1e6)]
    wall = time.perf_counter() - began
    command = "`.venv/bin/python benchmarks/stats_engine.py " + " ".join(
        a for a in sys.argv[1:] if a != "--no-write"
    )
    from checkoutlab.experiments.analysis import METRIC_PARTS

    body = f"""Command: {command.rstrip()}`

Machine: {machine_line(facts)}; {load_now():.2f} at the end (wall {wall:.0f} s). PostgreSQL 15
(local server, database `bench_tmp`, `work_mem` 1 GB for the query's hash aggregates).

{args.exposures:,} exposures (sessions), each drawn uniformly from {args.exposures / SESSIONS_PER_UNIT:,.0f}
customers (the units: {SESSIONS_PER_UNIT} sessions per customer on average; those drawn at least once
are the units below), assigned 50/50 by unit; conversion
{RATES["control"]:.1%} vs {RATES["treatment"]:.1%} per session, with revenue, declines,
attempts, frauds and time to pay per session. Aggregation: sessions → per-unit sums → per
variant `n`, sums, sums of squares and cross products (the shape `variant_sums` returns),
timed from query start to rows fetched (PostgreSQL) or over the two groupbys (pandas; the
numpy draw of the synthetic sessions is shown separately). Stats engine: median over
{args.repeats} repetitions of one full analysis of those sums: {len(METRIC_PARTS)} metrics
(`metric_aggregate` → `frequentist` fixed-horizon and sequential + `bayesian`), Holm
adjustment and the SRM check. Stand-ins are documented in the script's docstring.

| aggregation | exposures / units | aggregation time | stats engine (one analysis) | conversion lift [95% CI], p, chance to win, SRM |
|---|---:|---:|---:|---|
{chr(10).join(rows)}

No numeric target in issue #8: the stats engine's cost does not depend on the number of
exposures (it reads sufficient statistics), so the aggregation is what grows with them.

![stats engine time]({args.plot.name})
"""
    print(body)
    if not args.no_write:
        plot(parts, args.plot, args.exposures)
        write_section("Stats engine, 10 million exposures", body, args.results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
