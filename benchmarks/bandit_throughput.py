"""Bandit decisions+updates per second: river contextual policies vs Vowpal Wabbit, one stream.

Runs the contextual river policies (``logistic_softmax``, ``linucb``) and Vowpal Wabbit's
``--cb_explore_adf`` (the optional ``vowpalwabbit`` package, ``pip install -e '.[bench]'``) on
the same simulated checkout stream (``checkoutlab.bandits.simulate``: same shoppers, same
outcome draw per round and first method, a preference shift half-way). Each round every
policy ranks the eligible methods (order + propensity) and then learns from the outcome; the
clock covers only ``rank`` + ``update``. The average reward (conversion) on that stream is
reported next to the speed, so speed is not bought with quality. The full comparison of every
policy, with regret curves, is ``benchmarks/bandit_simulation.py`` ("Bandit ordering").

    .venv/bin/python benchmarks/bandit_throughput.py                 # make bench: 20,000 rounds
    .venv/bin/python benchmarks/bandit_throughput.py --rounds 100000
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import write_section
from _setup import load_now, machine_facts, machine_line

HERE = Path(__file__).resolve().parent
RIVER = ("logistic_softmax", "linucb")


def plot(table, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for row in table.itertuples():
        vw = row.policy.startswith("vw")
        ax.scatter(row.decisions_per_s, row.conversion, marker="s" if vw else "o", s=60)
        ax.annotate(row.policy, (row.decisions_per_s, row.conversion),
                    textcoords="offset points", xytext=(6, 4))  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("decisions + updates per second (one core, log scale)")
    ax.set_ylabel("average reward (conversion) on the stream")
    ax.set_title("Bandit speed vs quality, same simulated stream")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--vw-args", default="--cb_explore_adf --epsilon 0.05 -q sa")
    parser.add_argument("--results", type=Path, default=HERE / "RESULTS.md")
    parser.add_argument("--plot", type=Path, default=HERE / "bandit_throughput.png")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()

    import river

    from checkoutlab.bandits.simulate import (
        VowpalWabbitPolicy,
        default_policies,
        generate_stream,
        simulate,
        vowpalwabbit_available,
    )

    facts = machine_facts()
    river_policies = {k: v for k, v in default_policies(args.seed).items() if k in RIVER}
    policies = dict(river_policies)
    if vowpalwabbit_available():
        import vowpalwabbit

        policies["vw_cb_explore_adf"] = VowpalWabbitPolicy(args.vw_args, seed=args.seed)
        vw_note = f"vowpalwabbit {getattr(vowpalwabbit, '__version__', '?')}"
    else:
        vw_note = "vowpalwabbit NOT installed (`pip install -e '.[bench]'`): VW skipped"
        print(vw_note, file=sys.stderr)
    began = time.perf_counter()
    stream = generate_stream(args.rounds, args.seed)
    result = simulate(policies, args.rounds, args.seed, baselines=False, vw=False, stream=stream)
    wall = time.perf_counter() - began
    for policy in policies.values():
        if hasattr(policy, "close"):
            policy.close()

    table = result.summary.sort_values("decisions_per_s", ascending=False).reset_index(drop=True)
    rows = [
        f"| {r.policy} | {r.decisions_per_s:,.0f} | {1e6 / r.decisions_per_s:.0f} "
        f"| {r.conversion:.2%} | {r.expected_conversion:.2%} | {r.cumulative_regret:,.0f} |"
        for r in table.itertuples()
    ]
    verdicts = []
    vw = table[table.policy.str.startswith("vw")]
    if len(vw):
        v = vw.iloc[0]
        for name in RIVER:
            r = table[table.policy == name].iloc[0]
            verdicts.append(
                f"- `{name}`: {r.decisions_per_s / v.decisions_per_s:.2f}x VW's decisions+updates/s "
                f"({'faster' if r.decisions_per_s > v.decisions_per_s else 'slower'}), expected "
                f"conversion {r.expected_conversion:.2%} vs {v.expected_conversion:.2%} "
                f"({'higher' if r.expected_conversion > v.expected_conversion else 'lower'})."
            )
    settings = "\n".join(
        f"- `{name}`: " + ", ".join(f"{k}={v}" for k, v in p.params().items())
        for name, p in river_policies.items()
    )
    command = "`.venv/bin/python benchmarks/bandit_throughput.py " + " ".join(
        a for a in sys.argv[1:] if a != "--no-write"
    )
    body = f"""Command: {command.rstrip()}`

Machine: {machine_line(facts)}; {load_now():.2f} at the end (wall {wall:.0f} s); river
{river.__version__}, {vw_note}.

Stream: {args.rounds:,} simulated checkouts (seed {args.seed}), preferences shift at round
{result.shift_round:,}; best achievable conversion {result.best_conversion:.2%}. All policies
see the same shoppers and the same outcome draw per (round, first method) and learn online after
every round. "decisions+updates/s" = rounds / time inside `rank` + `update` (one core, Python
calls in both cases: VW through its Python bindings with text examples); average reward is
the realised conversion, expected conversion is P(convert | order shown) averaged (less noisy).

| policy | decisions+updates/s | µs per round | average reward | expected conversion | cumulative regret |
|---|---:|---:|---:|---:|---:|
{chr(10).join(rows)}

**River vs Vowpal Wabbit** (no numeric target in issue #8; the comparison is the point):
{chr(10).join(verdicts) if verdicts else "- VW not run: " + vw_note}

Settings: VW `{args.vw_args}` (shared features = the same `context_features`, one action
namespace per method, cost = -reward);
{settings}

![bandit speed vs quality]({args.plot.name})
"""
    print(body)
    if not args.no_write:
        plot(table, args.plot)
        write_section("Bandit throughput vs Vowpal Wabbit", body, args.results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
