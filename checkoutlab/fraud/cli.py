"""``checkoutlab fraud ...``: the learned fraud scorer's commands (data simulation for now).

Registered by the top-level CLI with ``app.add_typer(fraud_app, name="fraud")``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from checkoutlab.fraud.data import DataContractError, file_format, save_transactions

app = typer.Typer(
    help="Learned fraud scorer: simulate transaction data, train, evaluate, promote.",
    no_args_is_help=True,
)
console = Console()
err_console = Console(stderr=True)

SCENARIOS = {
    1: "amount over 220",
    2: "compromised terminal (28 days)",
    3: "compromised customer (14 days, x5)",
}


@app.callback()
def _fraud() -> None:
    """Learned fraud scorer: simulate transaction data, train, evaluate, promote."""


@app.command("simulate")
def simulate_command(
    customers: Annotated[int, typer.Option(min=1, help="Number of customers.")] = 5000,
    terminals: Annotated[int, typer.Option(min=1, help="Number of terminals.")] = 10000,
    days: Annotated[int, typer.Option(min=1, help="Number of days to simulate.")] = 183,
    start: Annotated[str, typer.Option(help="First day, YYYY-MM-DD.")] = "2018-04-01",
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same data.")] = 0,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Where to write: .parquet or .csv.")
    ] = Path("tx.parquet"),
) -> None:
    """Simulate labelled card transactions (Fraud Detection Handbook simulator)."""
    from checkoutlab.fraud.simulate import simulate

    try:
        file_format(output)  # refuse a bad file type before minutes of work, not after
    except DataContractError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--output'") from exc

    began = time.perf_counter()
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    ) as bar:
        task = bar.add_task("simulating days", total=days)
        try:
            tx = simulate(
                n_customers=customers,
                n_terminals=terminals,
                n_days=days,
                start=start,
                seed=seed,
                progress=lambda done: bar.update(task, completed=done),
            )
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from exc
        bar.update(task, description="writing file")
        save_transactions(tx, output)
    seconds = time.perf_counter() - began

    n = len(tx)
    frauds = int(tx["TX_FRAUD"].sum())
    table = Table(title=f"Simulated transactions → {output}", show_header=False)
    table.add_column(justify="left")
    table.add_column(justify="right")
    table.add_row("transactions", f"{n:,}")
    table.add_row("fraud", f"{frauds:,} ({frauds / n:.3%})" if n else "0")
    counts = tx["TX_FRAUD_SCENARIO"].value_counts()
    for scenario, label in SCENARIOS.items():
        table.add_row(f"  scenario {scenario}: {label}", f"{int(counts.get(scenario, 0)):,}")
    table.add_row("customers / terminals / days", f"{customers:,} / {terminals:,} / {days}")
    table.add_row("seconds", f"{seconds:.1f}")
    console.print(table)


# --------------------------------------------------------------------------------------------
# train / evaluate / promote

_METRIC_LABELS = {
    "auc_roc": "AUC ROC",
    "average_precision": "average precision",
    "card_precision_at_100": "card precision@100",
    "brier": "Brier score",
    "calibration_error": "calibration error (ECE, 10 bins)",
}
_DATA_HELP = "Labelled transactions (.csv or .parquet) with the Handbook's columns."
_URI_HELP = (
    "MLflow tracking URI (default: CHECKOUTLAB_MLFLOW_TRACKING_URI or sqlite:///var/mlflow.db)."
)


def _fail(exc: Exception) -> typer.Exit:
    err_console.print(f"[red]error:[/red] {exc}", highlight=False)
    return typer.Exit(1)


def _expected_errors() -> tuple[type[Exception], ...]:
    from checkoutlab.fraud.evaluate import SplitError
    from checkoutlab.fraud.registry import RegistryError
    from checkoutlab.fraud.specs import SpecError

    return (DataContractError, SpecError, SplitError, RegistryError, ValueError)


def _parse_day(value: str | None, option: str) -> Any:
    if value is None:
        return None
    from datetime import date

    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise typer.BadParameter(
            f"{value!r} is not a date like 2018-07-25", param_hint=option
        ) from exc


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


@app.command("train")
def train_command(
    spec: Annotated[Path, typer.Option("--spec", help="Model spec YAML, e.g. models/rf.yaml.")],
    data: Annotated[Path, typer.Option("--data", help=_DATA_HELP)],
    tracking_uri: Annotated[str | None, typer.Option("--tracking-uri", help=_URI_HELP)] = None,
    register: Annotated[
        bool,
        typer.Option(
            "--register/--no-register",
            help="Register the model as a new version of fraud-scorer (the run is logged anyway).",
        ),
    ] = True,
    log: Annotated[
        bool, typer.Option("--log/--no-log", help="Log the run to MLflow at all.")
    ] = True,
    train_start: Annotated[
        str | None, typer.Option("--train-start", help="Override the spec's split.train_start.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Train a spec: features, time split, calibration; holdout metrics; log to MLflow."""
    import json

    from checkoutlab.fraud.evaluate import METRICS
    from checkoutlab.fraud.registry import register as register_run
    from checkoutlab.fraud.specs import load_spec
    from checkoutlab.fraud.train import train_from_spec

    start = _parse_day(train_start, "'--train-start'")
    try:
        model_spec = load_spec(spec)
        with err_console.status(f"training {model_spec.name} on {data} ..."):
            result = train_from_spec(model_spec, data, train_start=start)
        registered = None
        if log:
            with err_console.status("logging to MLflow ..."):
                registered = register_run(
                    result, tracking_uri=tracking_uri, create_version=register
                )
    except _expected_errors() as exc:
        raise _fail(exc) from exc

    out = {m: result.metrics[m] for m in METRICS}
    if as_json:
        extra = {
            "spec": model_spec.name,
            "split": result.split.as_dict(),
            "rows": result.rows,
            "run_id": registered.run_id if registered else None,
            "version": registered.version if registered else None,
        }
        typer.echo(json.dumps({**out, **extra}))
        return
    table = Table(title=f"{model_spec.name}: holdout metrics", show_header=True)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for m in METRICS:
        table.add_row(_METRIC_LABELS[m], _fmt(out[m]))
    console.print(table)
    console.print(f"split: {result.split.describe()}", highlight=False)
    console.print(
        "rows: "
        + ", ".join(
            f"{k} {result.rows[k]:,} ({result.fraud_rate[k]:.2%} fraud)" for k in result.rows
        )
        + " (known-compromised cards removed from test)",
        highlight=False,
    )
    console.print(
        f"data sha256 {result.data_sha256[:16]}…, {result.seconds:.1f} s", highlight=False
    )
    if registered is None:
        console.print("not logged to MLflow (--no-log)")
    elif registered.version is None:
        console.print(f"MLflow run {registered.run_id} (not registered: --no-register)")
    else:
        console.print(
            f"MLflow run {registered.run_id}; registered [bold]{registered.model_name}[/bold] "
            f"version [bold]{registered.version}[/bold] ({registered.tracking_uri}). "
            f"Promote it with `checkoutlab fraud promote --version {registered.version} "
            f"--data {data}`."
        )


@app.command("evaluate")
def evaluate_command(
    spec: Annotated[Path, typer.Option("--spec", help="Model spec YAML, e.g. models/rf.yaml.")],
    data: Annotated[Path, typer.Option("--data", help=_DATA_HELP)],
    protocol: Annotated[
        str,
        typer.Option(
            "--protocol",
            help="handbook: chapter 3 (train 2018-07-25..31, delay 7, test 08-08..14); "
            "prequential: chapter 5 (4 folds shifted back one week each).",
        ),
    ] = "handbook",
    as_json: Annotated[
        bool, typer.Option("--json", help="Print only the metrics as JSON.")
    ] = False,
) -> None:
    """Evaluate a spec with the Fraud Detection Handbook's protocols, beside its numbers."""
    import json

    from checkoutlab.fraud.data import load_transactions
    from checkoutlab.fraud.evaluate import METRICS, PUBLISHED, evaluate_spec
    from checkoutlab.fraud.specs import load_spec

    if protocol not in ("handbook", "prequential"):
        raise typer.BadParameter("use 'handbook' or 'prequential'", param_hint="'--protocol'")
    try:
        model_spec = load_spec(spec)
        transactions = load_transactions(data)
        with err_console.status("evaluating ...") as status:

            def progress(i: int, n: int, split: Any) -> None:
                status.update(f"fold {i + 1}/{n}: {split.describe()}")

            result = evaluate_spec(
                model_spec,
                transactions,
                protocol="prequential" if protocol == "prequential" else "handbook",
                progress=progress,
            )
    except _expected_errors() as exc:
        raise _fail(exc) from exc

    if as_json:
        typer.echo(json.dumps(result.to_json()))
        return
    published = PUBLISHED[protocol]
    title = (
        "Handbook chapter 3 protocol"
        if protocol == "handbook"
        else "Handbook chapter 5 prequential protocol (mean of 4 folds)"
    )
    table = Table(title=f"{title}: {model_spec.name}")
    table.add_column("metric")
    table.add_column(model_spec.name, justify="right", style="bold")
    for name in published:
        table.add_column(f"Handbook {name}", justify="right")
    for m in METRICS:
        table.add_row(
            _METRIC_LABELS[m],
            _fmt(result.metrics[m]),
            *(_fmt(p.get(m)) for p in published.values()),
        )
    console.print(table)
    if protocol == "prequential":
        folds = Table(title="folds")
        for column in ("train start", "test days", *(_METRIC_LABELS[m] for m in METRICS)):
            folds.add_column(column, justify="right")
        for f in result.folds:
            folds.add_row(
                f["train_start"],
                f"{f['test_start']}..{f['test_end']}",
                *(_fmt(f[m]) for m in METRICS),
            )
        console.print(folds)
    console.print(
        "Published numbers are the Handbook's, on its own simulated data; the test sets exclude "
        f"cards known to be compromised. {result.seconds:.0f} s.",
        highlight=False,
    )


@app.command("promote")
def promote_command(
    data: Annotated[Path, typer.Option("--data", help=_DATA_HELP + " The holdout is cut from it.")],
    version: Annotated[
        int | None,
        typer.Option("--version", min=1, help="Version to promote (default: the latest)."),
    ] = None,
    margin: Annotated[
        float, typer.Option("--margin", min=0.0, help="Required improvement over the champion.")
    ] = 0.005,
    metric: Annotated[
        str,
        typer.Option(
            "--metric",
            help="auc_roc | average_precision | card_precision_at_100 | brier | calibration_error.",
        ),
    ] = "average_precision",
    force: Annotated[
        bool, typer.Option("--force", help="Promote even if it does not beat the champion.")
    ] = False,
    tracking_uri: Annotated[str | None, typer.Option("--tracking-uri", help=_URI_HELP)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the decision as JSON.")] = False,
) -> None:
    """Move the 'champion' alias to a version if it beats the champion on the same holdout."""
    import json

    from checkoutlab.fraud.evaluate import METRICS
    from checkoutlab.fraud.registry import promote

    if metric not in METRICS:
        raise typer.BadParameter(f"choose one of {', '.join(METRICS)}", param_hint="'--metric'")
    try:
        with err_console.status("re-scoring candidate and champion on the holdout ..."):
            decision = promote(
                data=data,
                version=version,
                margin=margin,
                metric=metric,
                force=force,
                tracking_uri=tracking_uri,
            )
    except _expected_errors() as exc:
        raise _fail(exc) from exc
    if as_json:
        typer.echo(json.dumps(decision.to_json()))
        return
    table = Table(title=f"{decision.model_name}: {decision.holdout}, {decision.holdout_rows:,} tx")
    table.add_column("metric")
    table.add_column(f"v{decision.candidate_version} (candidate)", justify="right")
    if decision.champion_metrics is not None:
        table.add_column(f"v{decision.champion_version} (champion)", justify="right")
    for m in METRICS:
        row = [_METRIC_LABELS[m], _fmt(decision.candidate_metrics.get(m))]
        if decision.champion_metrics is not None:
            row.append(_fmt(decision.champion_metrics.get(m)))
        table.add_row(*row)
    console.print(table)
    colour = "green" if decision.promoted else "yellow"
    console.print(f"[{colour}]{decision.reason}[/{colour}]", highlight=False)


@app.command("retrain")
def retrain_command(
    spec: Annotated[
        Path, typer.Option("--spec", exists=True, dir_okay=False, help="Model spec YAML.")
    ] = Path("models/rf.yaml"),
    margin: Annotated[
        float, typer.Option("--margin", min=0.0, help="Required improvement over the champion.")
    ] = 0.005,
    tracking_uri: Annotated[str | None, typer.Option("--tracking-uri", help=_URI_HELP)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the outcome as JSON.")] = False,
) -> None:
    """Retrain on the platform's own payments and labels; register; promote if it wins."""
    import json

    from checkoutlab.config import get_settings
    from checkoutlab.db import Database
    from checkoutlab.fraud.retrain import NotEnoughData, retrain

    database = Database(get_settings().database_url)
    try:
        with err_console.status("exporting platform data and training ..."):
            outcome = retrain(database, spec=spec, tracking_uri=tracking_uri, margin=margin)
    except (NotEnoughData, *_expected_errors()) as exc:
        raise _fail(exc) from exc
    finally:
        database.dispose()
    if as_json:
        typer.echo(json.dumps(outcome.to_json()))
        return
    console.print(
        f"trained version {outcome.version} on {outcome.rows:,} payments "
        f"({outcome.frauds} known frauds) from {outcome.train_start}"
    )
    colour = "green" if outcome.promoted else "yellow"
    console.print(f"[{colour}]{outcome.reason}[/{colour}]", highlight=False)


@app.command("export")
def export_command(
    output: Annotated[Path, typer.Option("-o", "--output", help="Output .parquet or .csv file.")],
    merchant: Annotated[
        str | None, typer.Option("--merchant", help="Only this merchant's payments.")
    ] = None,
) -> None:
    """Export the platform's payments and fraud labels in the Handbook's format (+ context)."""
    from checkoutlab.config import get_settings
    from checkoutlab.db import Database
    from checkoutlab.fraud.export import platform_transactions

    try:
        file_format(output)
    except DataContractError as exc:
        raise _fail(exc) from exc
    database = Database(get_settings().database_url)
    try:
        with database.session() as db:
            frame = platform_transactions(db=db, merchant_id=merchant)
    finally:
        database.dispose()
    path = save_transactions(frame, output)
    frauds = int(frame["TX_FRAUD"].sum()) if len(frame) else 0
    console.print(f"wrote {len(frame):,} payments ({frauds} labelled fraud) to {path}")
