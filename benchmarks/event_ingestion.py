"""Event ingestion rate into SQLite and PostgreSQL: the service function and POST /v1/events.

Browser events (exposure / interaction / abandon, each naming a checkout session and the
payment profile served for it, with a few properties) are written in batches:

* **service**: ``events.service.add_client_events`` in-process, one database session and one
  commit per batch, as the route does after validation;
* **HTTP**: ``POST /v1/events`` (publishable key, pydantic validation, session and decision
  ownership checks, insert, commit, 202) served by ``uvicorn --factory
  checkoutlab.api.app:create_app`` and loaded by ``wrk`` (closed loop).

Target: 10,000 events/s batched.

    .venv/bin/python benchmarks/event_ingestion.py                       # make bench defaults
    .venv/bin/python benchmarks/event_ingestion.py --events 200000 --http-seconds 20
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _http import Server, run_wrk, write_bodies, wrk_version
from _results import write_section
from _setup import (
    CONTEXTS,
    PG_DEFAULT,
    SECRET,
    database_url,
    load_now,
    machine_facts,
    machine_line,
    seed_database,
    server_env,
)

HERE = Path(__file__).resolve().parent
TARGET = 10_000
TYPES = ("exposure", "interaction", "abandon")


def decisions_for(url: str, seeded: Any, n: int) -> list[tuple[str, str]]:
    """(session id, decision id) pairs: profiles built in-process with the rules scorer."""
    from checkoutlab.db import Database
    from checkoutlab.merchants.models import Merchant
    from checkoutlab.payments.models import CheckoutSession
    from checkoutlab.profile import builder
    from checkoutlab.profile.context import ContextIn

    database = Database(url)
    services = builder.default_services()
    pairs = []
    with database.session() as db:
        merchant = db.get(Merchant, seeded.merchant_id)
        for i, sid in enumerate(seeded.session_ids[:n]):
            profile = builder.build(
                db=db,
                merchant=merchant,
                checkout=db.get(CheckoutSession, sid),
                context_in=ContextIn.model_validate(CONTEXTS[i % len(CONTEXTS)]),
                headers={},
                secret=SECRET,
                services=services,
            )
            pairs.append((sid, profile.id))
    database.dispose()
    return pairs


def make_events(pairs: list[tuple[str, str]], n: int, offset: int = 0) -> list[dict[str, Any]]:
    events = []
    for i in range(offset, offset + n):
        sid, did = pairs[i % len(pairs)]
        kind = TYPES[i % len(TYPES)]
        props: dict[str, Any] = {"element": ("card", "paypal", "apple_pay")[i % 3], "seq": i}
        if kind == "interaction":
            props["action"] = "focus"
        events.append({"type": kind, "session_id": sid, "decision_id": did, "properties": props})
    return events


def service_rate(url: str, merchant_id: str, pairs: list, batch: int, events: int,
                 max_seconds: float) -> dict[str, float]:  # fmt: skip
    from checkoutlab.db import Database
    from checkoutlab.events.service import add_client_events

    database = Database(url)
    payload = make_events(pairs, max(batch, min(events, 5000)))
    written, batches = 0, 0
    began = time.perf_counter()
    while written < events and time.perf_counter() - began < max_seconds:
        start = (batches * batch) % max(1, len(payload) - batch + 1)
        chunk = [dict(e, occurred_at=None) for e in payload[start : start + batch]]
        with database.session() as db:
            written += add_client_events(db=db, merchant_id=merchant_id, events=chunk)
        batches += 1
    elapsed = time.perf_counter() - began
    database.dispose()
    return {"events": written, "seconds": elapsed, "rate": written / elapsed}


def plot(service: dict, http: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for kind, marker, color in (("sqlite", "o", "C0"), ("postgresql", "s", "C1")):
        pts = sorted((b, r["rate"]) for (k, b), r in service.items() if k == kind)
        if pts:
            ax.plot([b for b, _ in pts], [x for _, x in pts], marker=marker, color=color,
                    label=f"{kind}, service function")  # fmt: skip
        pts = sorted((b, r["events_per_s"]) for (k, b), r in http.items() if k == kind)
        if pts:
            ax.plot([b for b, _ in pts], [x for _, x in pts], marker=marker, ls="--", color=color,
                    label=f"{kind}, POST /v1/events")  # fmt: skip
    ax.axhline(TARGET, color="r", ls=":", label=f"target {TARGET:,} events/s")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("events per batch")
    ax.set_ylabel("events/s")
    ax.set_title("Event ingestion rate")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--batches", default="1,10,100,500", help="service batch sizes")
    parser.add_argument("--events", type=int, default=50_000, help="per service measurement")
    parser.add_argument("--max-seconds", type=float, default=6, help="cap per measurement")
    parser.add_argument("--http-batches", default="100,500", help="POST /v1/events sizes")
    parser.add_argument("--http-seconds", type=float, default=6)
    parser.add_argument("--http-workers", type=int, default=2, help="uvicorn workers")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--pg-url", default=PG_DEFAULT)
    parser.add_argument("--results", type=Path, default=HERE / "RESULTS.md")
    parser.add_argument("--plot", type=Path, default=HERE / "event_ingestion.png")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    kinds = [k.strip() for k in args.databases.split(",") if k.strip()]
    batches = [int(b) for b in args.batches.split(",") if b.strip()]
    http_batches = [int(b) for b in args.http_batches.split(",") if b.strip()]

    facts = machine_facts()
    wrk = wrk_version() if http_batches else "-"
    service: dict[tuple[str, int], dict[str, float]] = {}
    http: dict[tuple[str, int], dict[str, Any]] = {}
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-events-") as tmp:
        workdir = Path(tmp)
        for kind in kinds:
            url = database_url(kind, workdir, args.pg_url)
            seeded = seed_database(url, sessions=50, history=0, policy_rounds=100)
            pairs = decisions_for(url, seeded, 50)
            for batch in batches:
                service[kind, batch] = service_rate(
                    url, seeded.merchant_id, pairs, batch, args.events, args.max_seconds
                )
                print(f"{kind} service batch {batch}: {service[kind, batch]['rate']:,.0f}/s",
                      file=sys.stderr)  # fmt: skip
            if http_batches:
                env = server_env(url, "sqlite:///" + str(workdir / "none.db"),
                                 CHECKOUTLAB_RISK_SCORER="rules")  # fmt: skip
                with Server("checkoutlab.api.app:create_app", workers=args.http_workers,
                            env=env) as server:  # fmt: skip
                    for batch in http_batches:
                        bodies = write_bodies(
                            [{"events": make_events(pairs, batch, offset=j * batch)}
                             for j in range(20)],
                            workdir / f"events-{batch}.jsonl",
                        )  # fmt: skip
                        common = {"path": "/v1/events", "bodies": bodies,
                                  "auth": seeded.publishable_key}  # fmt: skip
                        run_wrk(server.base + "/v1/events", connections=args.connections,
                                seconds=2, **common)  # fmt: skip
                        r = run_wrk(server.base + "/v1/events", connections=args.connections,
                                    seconds=args.http_seconds, **common)  # fmt: skip
                        r["events_per_s"] = r["rps"] * batch
                        http[kind, batch] = r
                        print(f"{kind} http batch {batch}: {r['events_per_s']:,.0f}/s "
                              f"errors {r['errors_total']}", file=sys.stderr)  # fmt: skip
    wall = time.perf_counter() - began

    rows = []
    for kind in kinds:
        cells = [f"{service[kind, b]['rate']:,.0f}" for b in batches]
        hcells = [
            f"{http[kind, b]['events_per_s']:,.0f} ({http[kind, b]['p50_ms']:.0f} / "
            f"{http[kind, b]['p99_ms']:.0f} ms{', ERRORS ' + str(http[kind, b]['errors_total']) if http[kind, b]['errors_total'] else ''})"
            for b in http_batches
        ]
        rows.append(f"| {kind} | " + " | ".join(cells + hcells) + " |")
    header = (
        "| database | "
        + " | ".join(
            [f"service, batch {b}" for b in batches]
            + [f"HTTP, batch {b} (p50 / p99)" for b in http_batches]
        )
        + " |"
    )
    verdicts = []
    for kind in kinds:
        best_service = max(r["rate"] for (k, b), r in service.items() if k == kind and b > 1)
        line = (
            f"- {kind}: service function up to {best_service:,.0f} events/s "
            f"({'met' if best_service >= TARGET else 'missed'})"
        )
        if http_batches:
            best_http = max(r["events_per_s"] for (k, _), r in http.items() if k == kind)
            line += (
                f"; POST /v1/events ({args.http_workers} uvicorn workers) up to {best_http:,.0f} events/s "
                f"({'met' if best_http >= TARGET else 'missed'})"
            )
        verdicts.append(line + ".")
    command = "`.venv/bin/python benchmarks/event_ingestion.py " + " ".join(
        a for a in sys.argv[1:] if a != "--no-write"
    )
    body = f"""Command: {command.rstrip()}` (service: up to {args.events:,} events or
{args.max_seconds:.0f} s per cell; HTTP: {wrk}, `-t1 -c{args.connections}`,
{args.http_seconds:.0f} s after a 2 s warm-up, {args.http_workers} uvicorn workers).

Machine: {machine_line(facts)}; {load_now():.2f} at the end (wall {wall:.0f} s). Shared machine:
other engineers' tests ran at the same time.

Events/s. Each event names its checkout session and served profile (`decision_id`) and has
2-3 properties; types cycle exposure / interaction / abandon. **Service**:
`add_client_events` (one executemany `INSERT` of the batch, card-number redaction of
properties, one commit per batch). **HTTP**: `POST /v1/events` with the same events (at most
500 per batch by the API's contract): key lookup, pydantic validation, one query each for the
sessions and decisions named, insert, commit, then 202; wrk keeps {args.connections} requests
in flight. SQLite is a file in WAL mode with `synchronous=NORMAL` (the embedded default);
PostgreSQL 15 is the local server with its default `synchronous_commit=on`.

{header}
|---|{"---:|" * (len(batches) + len(http_batches))}
{chr(10).join(rows)}

**Target** ({TARGET:,} events/s batched):
{chr(10).join(verdicts)}

![event ingestion]({args.plot.name})
"""
    print(body)
    if not args.no_write:
        plot(service, http, args.plot)
        write_section("Event ingestion", body, args.results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
