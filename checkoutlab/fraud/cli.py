"""``checkoutlab fraud ...``: the learned fraud scorer's commands (data simulation for now).

Registered by the top-level CLI with ``app.add_typer(fraud_app, name="fraud")``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

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
