"""``checkoutlab bandits ...``: simulate, evaluate offline (OPE), run the learner.

Registered by the top-level CLI with ``app.add_typer(bandits_app, name="bandits")``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from checkoutlab.db import open_database

app = typer.Typer(
    help="Payment-method ordering bandits: simulate, compare, evaluate offline.",
    no_args_is_help=True,
)
console = Console()
err_console = Console(stderr=True)


@app.callback()
def _bandits() -> None:
    """Payment-method ordering bandits: simulate, compare, evaluate offline."""


@app.command("simulate")
def simulate_command(
    rounds: Annotated[int, typer.Option(min=1, help="Checkouts to simulate.")] = 20_000,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same run.")] = 0,
    shift_at: Annotated[
        float,
        typer.Option(min=0.0, max=1.0, help="Fraction of rounds after which preferences shift."),
    ] = 0.5,
    vw: Annotated[
        bool | None,
        typer.Option(
            "--vw/--no-vw",
            help="Include Vowpal Wabbit --cb_explore_adf (default: if vowpalwabbit is installed).",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
    plot: Annotated[
        Path | None, typer.Option(help="Write the cumulative-regret plot to this image file.")
    ] = None,
) -> None:
    """Run every ordering policy side by side on one simulated checkout stream."""
    from checkoutlab.bandits.simulate import plot_regret, simulate

    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
        disable=as_json,
    ) as bar:
        task = bar.add_task("simulating checkouts", total=rounds)
        try:
            result = simulate(
                n_rounds=rounds,
                seed=seed,
                shift_at=shift_at,
                vw=vw,
                progress=lambda done: bar.update(task, completed=done),
            )
        except (ValueError, RuntimeError) as exc:
            raise typer.BadParameter(str(exc)) from exc
    if plot is not None:
        plot_regret(result, str(plot))

    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    table = Table(
        title=f"Method ordering: {rounds:,} checkouts, seed {seed}, "
        f"shift at round {result.shift_round:,} (best achievable conversion "
        f"{result.best_conversion:.2%})"
    )
    table.add_column("policy")
    table.add_column("conversion", justify="right")
    table.add_column("cumulative regret", justify="right")
    table.add_column("regret after shift", justify="right")
    table.add_column("decisions/s", justify="right")
    for row in result.summary.sort_values("cumulative_regret").itertuples():
        table.add_row(
            row.policy,
            f"{row.conversion:.2%}",
            f"{row.cumulative_regret:,.1f}",
            f"{row.regret_after_shift:,.1f}",
            f"{row.decisions_per_s:,.0f}",
        )
    console.print(table)
    for note in result.notes:
        err_console.print(f"[dim]{note}[/dim]")
    if plot is not None:
        err_console.print(f"[green]regret plot written[/green]: {plot}")


# -- evaluate: off-policy evaluation of candidates on the decision log --------------------------


def _value(text: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_spec(spec: str) -> tuple[str, dict[str, object]]:
    """``"epsilon_greedy:epsilon=0.2,decay=0.01"`` → ``("epsilon_greedy", {...})``."""
    name, _, rest = spec.strip().partition(":")
    params: dict[str, object] = {}
    for part in filter(None, (p.strip() for p in rest.split(","))):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"policy spec {spec!r}: write parameters as key=value, got {part!r}")
        params[key.strip()] = _value(value.strip())
    return name.strip(), params


def build_candidate(spec: str) -> object:
    """A policy from a SPEC: a bandit with parameters, or merchant_order / context_rules."""
    from checkoutlab.bandits.policies import POLICY_CLASSES, make_policy
    from checkoutlab.bandits.policy import POLICIES, get_policy

    name, params = parse_spec(spec)
    if name in POLICIES:
        if params:
            raise ValueError(f"policy spec {spec!r}: '{name}' takes no parameters")
        return get_policy(name)
    if name not in POLICY_CLASSES:
        known = ", ".join([*POLICIES, *sorted(POLICY_CLASSES)])
        raise ValueError(f"policy spec {spec!r}: unknown policy '{name}'; known: {known}")
    try:
        return make_policy(name, **params)
    except TypeError as exc:
        accepted = ", ".join(POLICY_CLASSES[name]().params())
        raise ValueError(f"policy spec {spec!r}: {exc}; '{name}' accepts {accepted}") from None
    except ValueError as exc:
        raise ValueError(f"policy spec {spec!r}: {exc}") from None


def _day(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is not a date: use YYYY-MM-DD or an ISO 8601 time"
        ) from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


@app.command("evaluate")
def evaluate_command(
    policy: Annotated[
        list[str],
        typer.Option(
            "--policy",
            help="Candidate policy SPEC, repeatable: a name (logistic_softmax, merchant_order) "
            "or name:key=value,... (epsilon_greedy:epsilon=0.2).",
        ),
    ],
    since: Annotated[
        str, typer.Option(help="Evaluate decisions made at or after this date (UTC if naive).")
    ],
    until: Annotated[str | None, typer.Option(help="...and before this date.")] = None,
    merchant: Annotated[str | None, typer.Option(help="Only this merchant's decisions.")] = None,
    reward: Annotated[
        str, typer.Option(help="conversion (1/0) or revenue (major currency units).")
    ] = "conversion",
    warm_start: Annotated[
        bool,
        typer.Option(
            "--warm-start/--no-warm-start",
            help="First train the candidates on the logged rewards before --since.",
        ),
    ] = False,
    alpha: Annotated[float, typer.Option(min=0.001, max=0.5, help="1 - interval level.")] = 0.05,
    n_boot: Annotated[int, typer.Option(min=10, help="Bootstrap resamples.")] = 1000,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap and reward-model folds.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
) -> None:
    """Estimate candidate policies' value from the logged decisions (IPW, SNIPW, DM, DR)."""
    from checkoutlab.bandits.learner import decision_log
    from checkoutlab.bandits.ope import evaluate

    if reward not in ("conversion", "revenue"):
        raise typer.BadParameter("--reward must be conversion or revenue")
    start, end = _day(since), _day(until) if until else None
    try:
        candidates = [(spec, build_candidate(spec)) for spec in policy]
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--policy") from None

    database = open_database()
    try:
        with database.session() as session:
            log = decision_log(session, since=start, until=end, merchant_id=merchant, reward=reward)
            history = (
                decision_log(session, until=start, merchant_id=merchant, reward=reward)
                if warm_start
                else None
            )
    finally:
        database.dispose()
    if log.empty:
        err_console.print(
            f"[red]No rewarded decisions since {start.isoformat()}"
            + (f" for merchant {merchant}" if merchant else "")
            + ".[/red] Rewards appear once `checkoutlab bandits learn` has closed their "
            "attribution windows."
        )
        raise typer.Exit(1)
    if history is not None and not history.empty:
        for _, candidate in candidates:
            update = getattr(candidate, "update", None)
            if update is None:
                continue
            for row in history.itertuples():
                try:
                    update(row.context, row.first_method, row.reward)
                except ValueError:  # e.g. a revenue reward for a 0/1 policy
                    update(row.context, row.first_method, float(row.converted))

    results = []
    logged_row = None
    for spec, candidate in candidates:
        table = evaluate(log, candidate, alpha=alpha, n_boot=n_boot, seed=seed)
        logged_row = table[table["estimator"] == "logged"].iloc[0]
        results.append((spec, table[table["estimator"] != "logged"]))
    logging_policies = log["policy"].value_counts().to_dict()

    if as_json:
        payload = {
            "decisions": len(log),
            "since": start.isoformat(),
            "until": end.isoformat() if end else None,
            "merchant": merchant,
            "reward": reward,
            "alpha": alpha,
            "logged": {
                "policies": logging_policies,
                "estimate": float(logged_row["estimate"]),
                "low": float(logged_row["low"]),
                "high": float(logged_row["high"]),
                "ess": float(logged_row["ess"]),
            },
            "candidates": [
                {"policy": spec, "estimates": table.to_dict(orient="records")}
                for spec, table in results
            ],
        }
        typer.echo(json.dumps(payload, indent=2, default=str))
        return

    level = f"{1 - alpha:.0%}"
    table = Table(
        title=f"Off-policy evaluation: {len(log):,} decisions since {start.date()}, "
        f"reward = {reward}"
    )
    table.add_column("policy")
    table.add_column("estimator")
    table.add_column("estimate", justify="right")
    table.add_column(f"{level} interval", justify="right")
    table.add_column("ESS", justify="right")
    logged_name = ", ".join(f"{name}: {n}" for name, n in logging_policies.items())
    table.add_row(
        f"logged ({logged_name})",
        "mean reward",
        f"{logged_row['estimate']:.4f}",
        f"[{logged_row['low']:.4f}, {logged_row['high']:.4f}]",
        f"{logged_row['ess']:,.0f}",
        end_section=True,
    )
    for spec, rows in results:
        for i, row in enumerate(rows.itertuples()):
            table.add_row(
                spec if i == 0 else "",
                row.estimator,
                f"{row.estimate:.4f}",
                f"[{row.low:.4f}, {row.high:.4f}]",
                f"{row.ess:,.1f}",
                end_section=i == len(rows) - 1,
            )
    console.print(table)


# -- learn: the feedback loop ---------------------------------------------------------------------


@app.command("learn")
def learn_command(
    once: Annotated[bool, typer.Option("--once", help="Run one batch and exit.")] = False,
    window_minutes: Annotated[
        float, typer.Option(min=0.01, help="Attribution window after a decision, in minutes.")
    ] = 30.0,
    reward: Annotated[
        str, typer.Option(help="conversion (1/0) or revenue (for bandits that accept it).")
    ] = "conversion",
    interval: Annotated[float, typer.Option(min=0.05, help="Seconds between idle polls.")] = 1.0,
    limit: Annotated[int, typer.Option(min=1, help="Events (and windows) per batch.")] = 1000,
    as_json: Annotated[bool, typer.Option("--json", help="Print batch stats as JSON.")] = False,
) -> None:
    """Apply rewards from the event log to the merchants' bandits and snapshot them."""
    from datetime import timedelta

    from checkoutlab.bandits.learner import Learner, LearnerStats

    if reward not in ("conversion", "revenue"):
        raise typer.BadParameter("--reward must be conversion or revenue")
    database = open_database()
    learner = Learner(
        database,
        attribution_window=timedelta(minutes=window_minutes),
        reward=reward,  # type: ignore[arg-type]
    )

    def report(stats: LearnerStats) -> None:
        if as_json:
            typer.echo(json.dumps(stats.as_dict()))
            return
        err_console.print(
            f"cursor {stats.cursor}: {stats.events} events, {stats.succeeded} conversions, "
            f"{stats.window_closed} closed windows, {stats.applied} bandit updates"
            + (f", snapshots {', '.join(stats.snapshots.values())}" if stats.snapshots else "")
        )

    try:
        if once:
            report(learner.run_once(limit=limit))
            return
        err_console.print(
            f"[green]learner running[/green] (window {window_minutes:g} min); Ctrl-C stops"
        )
        try:
            learner.run(interval_seconds=interval, limit=limit, on_batch=report)
        except KeyboardInterrupt:
            err_console.print("learner stopped")
    finally:
        database.dispose()
