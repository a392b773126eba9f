"""Benchmark: payment-method ordering bandits side by side on one simulated checkout stream.

Runs random order, the merchant's static order, the context rules, every river policy and
(when ``vowpalwabbit`` is installed) Vowpal Wabbit ``--cb_explore_adf`` on the same stream,
then measures the serving path (``rank``: ordering + propensity for one context) of each
trained policy over 10,000 calls with fresh contexts. Writes the "## Bandit ordering" section
of ``benchmarks/RESULTS.md`` and the regret plot next to it.

    .venv/bin/python benchmarks/bandit_simulation.py --rounds 50000 --seed 0
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import river

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import write_section

from checkoutlab.bandits.simulate import (
    VowpalWabbitPolicy,
    baseline_policies,
    default_policies,
    generate_stream,
    plot_regret,
    simulate,
    vowpalwabbit_available,
)

HERE = Path(__file__).resolve().parent
SECTION = "## Bandit ordering"
VW_VARIANTS = {
    "vw_cb_explore_adf": "--cb_explore_adf --epsilon 0.05 -q sa",
    "vw_squarecb": "--cb_explore_adf --squarecb -q sa",
}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def serving_latency(policy, stream, calls: int) -> tuple[float, float]:
    """p50 and p99 microseconds of ``rank`` (order + propensity) over ``calls`` contexts."""
    clock = time.perf_counter_ns
    samples = np.empty(calls)
    for i in range(calls):
        t = i % len(stream)
        context, methods = stream.contexts[t], stream.methods[t]
        began = clock()
        policy.rank(methods, context)
        samples[i] = clock() - began
        pending = getattr(policy, "_pending", None)
        if pending is not None:  # VW keeps the last decision for its update; drop it
            policy._pending = None
    p50, p99 = np.percentile(samples, [50, 99]) / 1000.0
    return float(p50), float(p99)


def thompson_cold_latency(policy, stream, calls: int) -> tuple[float, float]:
    """Thompson sampling with its Monte-Carlo cache emptied before every call."""
    clock = time.perf_counter_ns
    samples = np.empty(calls)
    for i in range(calls):
        t = i % len(stream)
        policy._mc_cache.clear()
        began = clock()
        policy.rank(stream.methods[t], stream.contexts[t])
        samples[i] = clock() - began
    p50, p99 = np.percentile(samples, [50, 99]) / 1000.0
    return float(p50), float(p99)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--latency-calls", type=int, default=10_000)
    parser.add_argument("--results", type=Path, default=HERE / "RESULTS.md")
    parser.add_argument("--plot", type=Path, default=HERE / "bandit_regret.png")
    args = parser.parse_args()

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    policies = default_policies(args.seed)
    vw_note = ""
    if vowpalwabbit_available():
        import vowpalwabbit

        for name, vw_args in VW_VARIANTS.items():
            policies[name] = VowpalWabbitPolicy(vw_args, seed=args.seed)
        vw_note = f"vowpalwabbit {getattr(vowpalwabbit, '__version__', '?')}"
    else:
        print(
            "Vowpal Wabbit skipped: `pip install vowpalwabbit` to compare with it", file=sys.stderr
        )
        vw_note = "Vowpal Wabbit not installed: skipped"

    def progress(done: int) -> None:
        if done % 5000 == 0:
            print(f"\r{done:,} rounds", end="", file=sys.stderr)

    began = time.perf_counter()
    result = simulate(policies, n_rounds=args.rounds, seed=args.seed, vw=False, progress=progress)
    print(file=sys.stderr)
    wall = time.perf_counter() - began
    plot_regret(result, str(args.plot))

    # Serving latency of the trained policies (state after the run), fresh shoppers.
    latency_stream = generate_stream(min(args.latency_calls, 10_000), seed=args.seed + 1)
    everyone = {**baseline_policies(args.seed), **policies}
    latency = {
        name: serving_latency(policy, latency_stream, args.latency_calls)
        for name, policy in everyone.items()
    }
    cold = thompson_cold_latency(policies["thompson"], latency_stream, args.latency_calls)
    for policy in policies.values():
        if hasattr(policy, "close"):
            policy.close()

    table = result.summary.sort_values("cumulative_regret").reset_index(drop=True)
    rows = [
        "| policy | conversion | cumulative regret | regret before / after shift "
        "| decisions+updates/s | rank p50 µs | rank p99 µs |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in table.itertuples():
        p50, p99 = latency[row.policy]
        rows.append(
            f"| {row.policy} | {row.conversion:.2%} | {row.cumulative_regret:,.0f} "
            f"| {row.regret_before_shift:,.0f} / {row.regret_after_shift:,.0f} "
            f"| {row.decisions_per_s:,.0f} | {p50:.0f} | {p99:.0f} |"
        )

    contextual = table[table.policy.isin(["linucb", "logistic_softmax"])].iloc[0]
    vw_rows = table[table.policy.str.startswith("vw_")]
    if len(vw_rows):
        best_vw = vw_rows.iloc[0]
        beats_vw = contextual.cumulative_regret < best_vw.cumulative_regret
        verdict = (
            f"Best contextual policy **{contextual.policy}**: cumulative regret "
            f"{contextual.cumulative_regret:,.0f} vs best VW variant **{best_vw.policy}** "
            f"{best_vw.cumulative_regret:,.0f} "
            f"({'lower: target met' if beats_vw else 'higher: target missed'})."
        )
    else:
        verdict = f"Best contextual policy **{contextual.policy}**; VW not run ({vw_note})."
    over = [n for n, (_, p99) in latency.items() if p99 >= 200 and not n.startswith("vw")]
    latency_verdict = (
        "Serving target (rank + propensity < 200 µs p99): met by every river policy."
        if not over
        else "Serving target (rank + propensity < 200 µs p99): met by all river policies "
        f"except {', '.join(over)}."
    )
    if cold[1] >= 200:
        latency_verdict += " Thompson sampling meets it only with its per-snapshot cache."
    settings = "\n".join(
        f"- `{name}`: " + ", ".join(f"{k}={v}" for k, v in policy.params().items())
        for name, policy in policies.items()
        if hasattr(policy, "params")
    )
    settings += "".join(f"\n- `{name}`: `{vw}`" for name, vw in VW_VARIANTS.items() if vw_rows.size)
    best = result.best_conversion
    body = f"""
Command:
`.venv/bin/python benchmarks/bandit_simulation.py --rounds {args.rounds} --seed {args.seed}`
(`checkoutlab bandits simulate --rounds {args.rounds} --seed {args.seed} --plot FILE` prints the
same table without the latency columns.)

Machine: {os.cpu_count()} CPUs (`nproc`), {cpu_model()}, Python {platform.python_version()},
river {river.__version__}, numpy {np.__version__}, {vw_note}.
Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.
Load average at start {load:.2f} (a shared machine: latency percentiles are noisy). Simulation wall
time {wall:,.0f} s.

Stream: {args.rounds:,} simulated checkouts (7 countries, mobile/desktop/tablet, iOS/Android/
macOS/Windows, wallets, basket size, returning customers), preferences shift at round
{result.shift_round:,}; all policies see the same shoppers and the same outcome draw per
(round, first method). Best achievable conversion {best:.2%}. Regret is expected regret
(best - P(convert | order shown)), summed. Policies learn online after every checkout.

{chr(10).join(rows)}

{verdict}

{latency_verdict} Latency: `rank()` of the trained policy, in-process, {args.latency_calls:,}
calls over fresh simulated shoppers (varying contexts and method sets). Thompson sampling
reuses its Monte-Carlo propensity (200 posterior draws) until the next update, as a serving
snapshot does; recomputed on every call (cache emptied) it takes p50 {cold[0]:.0f} µs /
p99 {cold[1]:.0f} µs. `decisions+updates/s` times rank + update inside the simulation (Thompson
recomputes its estimate after every update there). LinUCB is river's `LinUCBDisjoint`, whose
per-arm `BayesianLinearRegression.predict_one(with_dist=True)` dominates its latency.

Settings (VW gets the same `context_features` as shared features, one action namespace per
method, `-q sa` interactions, cost = -reward):

{settings}

![cumulative regret]({args.plot.name})
"""
    write_section(SECTION.removeprefix("## "), body, args.results)
    print(table.to_string(), file=sys.stderr)
    print(f"wrote {args.results} and {args.plot}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
