"""``checkoutlab experiments ...``: create, start, stop, ship, list, results, simulate.

Registered by the top-level CLI with ``app.add_typer(experiments_app, name="experiments")``.
Admin commands work on the configured database directly; ``simulate`` drives synthetic shoppers
through the real HTTP API (in-process by default, or a running server with ``--base-url``).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from checkoutlab.db import open_database

app = typer.Typer(help="A/B experiments on generated checkout forms.", no_args_is_help=True)
console = Console()
err_console = Console(stderr=True)

MerchantOption = Annotated[
    str | None,
    typer.Option("--merchant", help="Merchant id (mer_...); needed when keys repeat."),
]


@app.callback()
def _experiments() -> None:
    """A/B experiments on generated checkout forms."""


def _fail(message: str) -> None:
    err_console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(1)


def _run(action: Callable[[Any], Any]) -> Any:
    from checkoutlab.errors import CheckoutLabError

    database = open_database()
    try:
        with database.session() as db:
            return action(db)
    except CheckoutLabError as exc:
        _fail(exc.message)
    finally:
        database.dispose()


def _print_experiment(read: Any) -> None:
    weights = ", ".join(f"{v.key}={v.weight:g}" for v in read.variants)
    console.print(f"[bold]{read.key}[/bold] {read.status.value} ({read.id}) variants: {weights}")


@app.command("create")
def create_command(
    file: Annotated[Path, typer.Option(exists=True, dir_okay=False, help="exp.yaml or .json")],
    merchant: Annotated[str, typer.Option(help="Merchant id (mer_...).")],
) -> None:
    """Create a draft experiment from a YAML (or JSON) definition."""
    import yaml

    from checkoutlab.experiments import service
    from checkoutlab.experiments.schemas import ExperimentCreate
    from checkoutlab.merchants import service as merchants

    try:
        data = ExperimentCreate.model_validate(yaml.safe_load(file.read_text()))
    except yaml.YAMLError as exc:
        _fail(f"{file} is not valid YAML: {exc}")
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "definition"
        _fail(f"{file}: {where}: {first['msg'].removeprefix('Value error, ')}")

    def action(db: Any) -> Any:
        merchants.get(db=db, merchant_id=merchant)
        return service.read(service.create(db=db, merchant_id=merchant, data=data))

    _print_experiment(_run(action))


def _lifecycle(name: str, key: str, merchant: str | None, **kwargs: Any) -> None:
    from checkoutlab.experiments import service

    def action(db: Any) -> Any:
        experiment = service.find(db=db, key=key, merchant_id=merchant)
        return service.read(getattr(service, name)(db=db, experiment=experiment, **kwargs))

    _print_experiment(_run(action))


@app.command("start")
def start_command(key: str, merchant: MerchantOption = None) -> None:
    """Start assigning shoppers to the experiment's variants."""
    _lifecycle("start", key, merchant)


@app.command("stop")
def stop_command(key: str, merchant: MerchantOption = None) -> None:
    """Stop the experiment: nobody new is assigned; results stay readable."""
    _lifecycle("stop", key, merchant)


@app.command("ship")
def ship_command(
    key: str,
    variant: Annotated[str, typer.Option(help="The winning variant.")],
    merchant: MerchantOption = None,
) -> None:
    """Make the winning variant's form the merchant's default."""
    _lifecycle("ship", key, merchant, variant=variant)


@app.command("list")
def list_command(merchant: Annotated[str, typer.Option(help="Merchant id (mer_...).")]) -> None:
    """List a merchant's experiments."""
    from checkoutlab.experiments import service

    for read in _run(
        lambda db: [service.read(e) for e in service.list_(db=db, merchant_id=merchant)]
    ):
        _print_experiment(read)


def _fmt(value: float | None, pct: bool = False) -> str:
    if value is None:
        return "—"
    return f"{value:+.2%}" if pct else f"{value:.4g}"


def print_results(result: Any) -> None:
    table = Table(title=f"{result.key} ({result.status}): variants")
    for column in ("variant", "units", "sessions", "conversion", "rev/session", "AOV"):
        table.add_column(column, justify="right" if column != "variant" else "left")
    for v in result.variants:
        table.add_row(
            v.key + (" (control)" if v.control else ""),
            str(v.units),
            str(v.sessions),
            _fmt(v.metrics["conversion"]),
            _fmt(v.metrics["revenue_per_session"]),
            _fmt(v.metrics["average_order_value"]),
        )
    console.print(table)
    comparisons = Table(title="lift vs control")
    for column in ("metric", "variant", "lift", "interval", "p", "adj. p", "chance to win"):
        comparisons.add_column(column)
    for c in result.comparisons:
        interval = f"[{c.ci[0]:+.2%}, {c.ci[1]:+.2%}]" if c.ci else (c.error or "")[:40]
        comparisons.add_row(
            f"{c.metric} ({c.kind})",
            c.variant,
            _fmt(c.lift, pct=True),
            interval,
            _fmt(c.p_value),
            _fmt(c.adjusted_p_value),
            _fmt(c.chance_to_win),
        )
    console.print(comparisons)
    srm = result.srm
    colour = "red" if srm.mismatch else "green"
    console.print(
        f"[{colour}]SRM p = {srm.p_value:.4g}{' — sample ratio mismatch!' if srm.mismatch else ''}"
        f"[/{colour}] observed {srm.observed}" + (f" ({srm.note})" if srm.note else "")
    )
    for g in result.guardrails:
        if g.status in ("failing", "warning"):
            console.print(f"[red]guardrail {g.status}[/red]: {g.message}")
    if result.cuped:
        adjusted = Table(title="conversion per unit, CUPED (pre-experiment conversion)")
        for column in ("variant", "lift", "interval", "p", "unadjusted interval", "var. red."):
            adjusted.add_column(column)
        for c in result.cuped:
            adjusted.add_row(
                c.variant,
                _fmt(c.lift, pct=True),
                f"[{c.ci[0]:+.2%}, {c.ci[1]:+.2%}]" if c.ci else (c.error or "")[:40],
                _fmt(c.p_value),
                f"[{c.unadjusted_ci[0]:+.2%}, {c.unadjusted_ci[1]:+.2%}]"
                if c.unadjusted_ci
                else "",
                _fmt(c.variance_reduction, pct=True),
            )
        console.print(adjusted)


@app.command("results")
def results_command(
    key: str,
    merchant: MerchantOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
    sequential: Annotated[
        bool, typer.Option(help="Always-valid intervals (for teams that peek).")
    ] = False,
    cuped: Annotated[
        bool, typer.Option(help="Add conversion adjusted by pre-experiment conversion.")
    ] = False,
) -> None:
    """Per-variant metrics, lifts, intervals, p-values, SRM and guardrails."""
    from checkoutlab.experiments import service
    from checkoutlab.experiments.analysis import analyze_experiment

    result = _run(
        lambda db: analyze_experiment(
            db=db,
            experiment=service.find(db=db, key=key, merchant_id=merchant),
            sequential=sequential,
            cuped=cuped,
        )
    )
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
    else:
        print_results(result)


# --------------------------------------------------------------------------------------------
# simulate
# --------------------------------------------------------------------------------------------


def parse_effects(effects: list[str]) -> dict[str, float]:
    parsed = {}
    for item in effects:
        name, _, value = item.partition("=")
        try:
            parsed[name.strip()] = float(value)
        except ValueError:
            raise typer.BadParameter(f"--effect takes variant=0.05, got {item!r}") from None
    return parsed


def simulate_shoppers(
    client: Any,
    *,
    secret_headers: dict[str, str],
    public_headers: dict[str, str],
    sessions: int,
    effects: dict[str, float],
    base_rate: float = 0.3,
    seed: int = 0,
    key: str | None = None,
    on_step: Callable[[], None] | None = None,
    customers: int | None = None,
) -> dict[str, Any]:
    """Drive ``sessions`` synthetic shoppers through the HTTP API with ``client`` (a
    ``TestClient`` or an ``httpx.Client`` with a base URL): create a checkout session (secret
    key), get a profile, render the elements, then pay with probability ``base_rate`` plus the
    true absolute effect of the shopper's variant, or abandon. Returns counts per variant.

    ``customers``: shoppers come back, as real ones do. Each session belongs to one of this
    many customers (``sim-cus-0`` ...), and each customer has a stable propensity to pay drawn
    from Beta with mean ``base_rate`` (the same customer gets the same one in every call), so
    history before an experiment predicts conversion in it (what CUPED uses). ``None``: every
    shopper is new and converts with ``base_rate`` exactly.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    exposed: Counter[str] = Counter()
    paid: Counter[str] = Counter()
    for i in range(sessions):
        amount = int(rng.integers(1000, 12000))
        customer, propensity = f"sim-{seed}-{i}", base_rate
        if customers is not None:
            number = int(rng.integers(customers))
            customer, propensity = f"sim-cus-{number}", customer_propensity(number, base_rate)
        created = client.post(
            "/v1/checkout_sessions",
            json={"amount": amount, "currency": "EUR", "customer": customer},
            headers=secret_headers,
        )
        created.raise_for_status()
        checkout = created.json()
        device = "mobile" if rng.random() < 0.5 else "desktop"
        profile = client.post(
            "/v1/payment_profile",
            json={
                "client_secret": checkout["client_secret"],
                "context": {"device": {"type": device}},
            },
            headers=public_headers,
        )
        profile.raise_for_status()
        body = profile.json()
        experiment = body.get("experiment")
        variant = (
            experiment["variant"]
            if experiment and (key is None or experiment["key"] == key)
            else None
        )
        client.post(
            "/v1/elements", json={"token": body["token"]}, headers=public_headers
        ).raise_for_status()
        label = variant or "(not enrolled)"
        exposed[label] += 1
        rate = min(max(propensity + effects.get(variant or "", 0.0), 0.0), 1.0)
        if rng.random() < rate:
            response = _pay(client, checkout, body, public_headers, f"sim-{seed}-{i}")
            if response.status_code == 200 and response.json().get("status") == "succeeded":
                paid[label] += 1
        else:
            client.post(
                "/v1/events",
                json={
                    "events": [
                        {"type": "abandon", "session_id": checkout["id"], "decision_id": body["id"]}
                    ]
                },
                headers=public_headers,
            )
        if on_step is not None:
            on_step()
    return {
        label: {
            "sessions": exposed[label],
            "payments": paid[label],
            "conversion": paid[label] / exposed[label],
        }
        for label in sorted(exposed)
    }


def customer_propensity(number: int, base_rate: float, concentration: float = 1.5) -> float:
    """Customer ``number``'s own probability to pay: Beta(concentration * base_rate,
    concentration * (1 - base_rate)), seeded by the number alone so every call agrees."""
    import numpy as np

    if base_rate <= 0 or base_rate >= 1:
        return base_rate
    rng = np.random.default_rng([number, 20261126])
    return float(rng.beta(concentration * base_rate, concentration * (1 - base_rate)))


def _pay(
    client: Any, checkout: dict[str, Any], profile: dict[str, Any], headers: Any, key: str
) -> Any:
    verification = profile["verification"]
    body: dict[str, Any] = {
        "client_secret": checkout["client_secret"],
        "profile_token": profile["token"],
        "payment_method": {
            "type": "card",
            "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"},
        },
        "verification": {},
    }
    if verification.get("cvv"):
        body["verification"]["cvv"] = "123"
    if verification.get("avs"):
        body["verification"]["billing_address"] = {
            "line1": "1 Main St",
            "postal_code": "10115",
            "country": "DE",
        }
    if verification.get("biometric"):
        body["verification"]["biometric_assertion"] = "simulated-assertion"
    response = client.post(
        f"/v1/checkout_sessions/{checkout['id']}/confirm",
        json=body,
        headers=headers | {"Idempotency-Key": key},
    )
    if response.status_code == 200 and response.json().get("status") == "requires_action":
        payment = response.json()
        response = client.post(
            f"/v1/checkout_sessions/{checkout['id']}/payments/{payment['id']}/challenge",
            json={"client_secret": checkout["client_secret"], "outcome": "succeeded"},
            headers=headers,
        )
    return response


@app.command("simulate")
def simulate_command(
    key: str,
    sessions: Annotated[int, typer.Option(min=1, help="Synthetic shoppers to send.")] = 1000,
    effect: Annotated[
        list[str] | None,
        typer.Option(help="True absolute conversion effect per variant, e.g. treatment=0.05."),
    ] = None,
    base_rate: Annotated[float, typer.Option(min=0.0, max=1.0, help="Control conversion.")] = 0.3,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    merchant: MerchantOption = None,
    base_url: Annotated[
        str | None, typer.Option(help="A running server; in-process app when omitted.")
    ] = None,
    secret_key: Annotated[
        str | None,
        typer.Option(envvar="CHECKOUTLAB_SIM_SECRET_KEY", help="Needed with --base-url."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the counts as JSON.")] = False,
    customers: Annotated[
        int | None,
        typer.Option(min=1, help="Returning customers (stable propensity each); new if omitted."),
    ] = None,
) -> None:
    """Drive synthetic shoppers through the real HTTP API with a known effect per variant."""
    from checkoutlab.experiments import service
    from checkoutlab.merchants import service as merchants

    effects = parse_effects(effect or [])

    def lookup(db: Any) -> tuple[Any, Any]:
        experiment = service.find(db=db, key=key, merchant_id=merchant)
        return experiment, merchants.get(db=db, merchant_id=experiment.merchant_id)

    experiment, owner = _run(lookup)
    if experiment.status != "running":
        _fail(f"experiment '{key}' is {experiment.status}; start it first")
    unknown = set(effects) - {v["key"] for v in experiment.variants}
    if unknown:
        _fail(f"--effect names unknown variants {sorted(unknown)}")
    public = {"Authorization": f"Bearer {owner.publishable_key}"}

    from rich.progress import Progress

    with Progress(console=err_console, transient=True) as progress:
        task = progress.add_task("shoppers", total=sessions)
        step = lambda: progress.advance(task)  # noqa: E731
        if base_url is not None:
            import httpx

            if not secret_key:
                _fail("--base-url needs --secret-key (or CHECKOUTLAB_SIM_SECRET_KEY)")
            with httpx.Client(base_url=base_url, timeout=30) as client:
                counts = simulate_shoppers(
                    client,
                    secret_headers={"Authorization": f"Bearer {secret_key}"},
                    public_headers=public,
                    sessions=sessions,
                    effects=effects,
                    base_rate=base_rate,
                    seed=seed,
                    key=key,
                    on_step=step,
                    customers=customers,
                )
        else:
            counts = _simulate_in_process(
                owner, public, sessions, effects, base_rate, seed, key, step, customers
            )
    if as_json:
        typer.echo(json.dumps(counts, indent=2))
    else:
        for label, row in counts.items():
            console.print(
                f"{label}: {row['sessions']} sessions, {row['payments']} payments "
                f"({row['conversion']:.1%})"
            )


def _simulate_in_process(
    owner: Any,
    public: dict[str, str],
    sessions: int,
    effects: dict[str, float],
    base_rate: float,
    seed: int,
    key: str,
    step: Callable[[], None],
    customers: int | None = None,
) -> dict[str, Any]:
    """The real app in-process; the secret-key check is replaced by the merchant (admin)."""
    from fastapi.testclient import TestClient

    from checkoutlab.api.app import create_app
    from checkoutlab.config import get_settings
    from checkoutlab.deps import secret_merchant

    # one local client plays every shopper: rate limits per IP would throttle the simulation
    application = create_app(get_settings().model_copy(update={"rate_limit_enabled": False}))
    application.dependency_overrides[secret_merchant] = lambda: owner
    with TestClient(application) as client:
        return simulate_shoppers(
            client,
            secret_headers={"Authorization": "Bearer sk_simulated"},
            public_headers=public,
            sessions=sessions,
            effects=effects,
            base_rate=base_rate,
            seed=seed,
            key=key,
            on_step=step,
            customers=customers,
        )
