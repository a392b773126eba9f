"""HTTP: POST /v1/payment_profile vs a bare FastAPI JSON endpoint, 1 and 2 uvicorn workers.

Both apps are served by the same command (``uvicorn --factory ... --workers N --loop uvloop
--http httptools --no-access-log``) on loopback, one after the other in the same run, and loaded
by ``wrk`` (closed loop, one thread). The platform runs with production settings from
``CHECKOUTLAB_*`` variables: PostgreSQL (database ``bench_tmp``), the MLflow champion fraud
model, a trained contextual bandit (``logistic_softmax``), rate limits off (one client IP).
For each worker count: saturation throughput (``--connections`` busy connections), then a
paced run at ``--load`` (80%) of that endpoint's own saturation for the latency percentiles.
Targets: profile throughput at least 60% of the bare endpoint's, and p99 under 25 ms at 80%.

    .venv/bin/python benchmarks/http_profile.py                 # make bench defaults
    .venv/bin/python benchmarks/http_profile.py --seconds 30    # longer runs
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _http import Server, paced_run, run_wrk, write_bodies, wrk_version
from _results import write_section
from _setup import (
    CONTEXTS,
    PG_DEFAULT,
    POLICY,
    database_url,
    load_now,
    machine_facts,
    machine_line,
    prepare_champion,
    seed_database,
    server_env,
)

HERE = Path(__file__).resolve().parent
PATH = "/v1/payment_profile"
TARGET_RATIO = 0.60
TARGET_P99_MS = 25.0


def warm_profile(server: Server, pk: str, body: dict[str, Any], needed: int = 30) -> dict[str, Any]:
    """Until ``needed`` profiles in a row (new connection each) are served non-degraded."""
    deadline = time.monotonic() + 180
    streak, last = 0, None
    while streak < needed:
        if time.monotonic() > deadline:
            raise RuntimeError(f"profiles still degraded: {last}")
        response = httpx.post(
            server.base + PATH, json=body, headers={"Authorization": f"Bearer {pk}"}, timeout=30
        )
        if response.status_code != 200:
            raise RuntimeError(f"{response.status_code}: {response.text[:500]}")
        last = response.json()
        streak = streak + 1 if not last["risk"]["degraded"] else 0
        if last["risk"]["degraded"]:
            time.sleep(0.2)
    return last


def measure_pair(
    servers: dict[str, Server],
    auths: dict[str, str],
    bodies: Path,
    args: argparse.Namespace,
    loads: list[float],
) -> dict[str, dict[str, Any]]:
    """Saturation runs alternating between the two servers (both up, the idle one costs
    nothing), so that a change in the machine's background load hits both; the median run of
    each is kept. Then a paced run of each at ``--load`` of its own median saturation."""
    common = {"path": PATH, "bodies": bodies}
    for app, server in servers.items():
        run_wrk(server.base + PATH, connections=args.connections, seconds=args.warmup_seconds,
                auth=auths[app], **common)  # fmt: skip
    runs: dict[str, list[dict[str, Any]]] = {app: [] for app in servers}
    order = list(servers)
    for i in range(args.rounds):
        for app in order if i % 2 == 0 else order[::-1]:
            loads.append(load_now())
            runs[app].append(
                run_wrk(
                    servers[app].base + PATH,
                    connections=args.connections,
                    seconds=args.seconds,
                    auth=auths[app],
                    **common,
                )
            )
    out = {}
    for app, server in servers.items():
        ordered = sorted(runs[app], key=lambda r: r["rps"])
        sat = ordered[len(ordered) // 2]
        sat["all_rps"] = [r["rps"] for r in runs[app]]
        loads.append(load_now())
        paced = paced_run(
            server.base + PATH,
            rate=args.load * sat["rps"],
            mean_latency_ms=sat["mean_us"] / 1000 * min(1.0, 2 / args.connections),
            seconds=args.paced_seconds,
            auth=auths[app],
            **common,
        )
        out[app] = {"saturation": sat, "paced": paced}
    return out


def plot_latency(results: dict[tuple[str, int], dict[str, Any]], load: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    styles = {"profile": "-", "bare": "--"}
    for (app, workers), r in sorted(results.items()):
        pcts = r["paced"]["percentiles"]
        ps = sorted(pcts, key=float)
        ax.plot(
            [pcts[p] / 1000 for p in ps],
            [float(p) for p in ps],
            styles[app],
            label=f"{app}, {workers} worker{'s' if workers > 1 else ''} "
            f"({r['paced']['rps']:,.0f} req/s)",
        )
    ax.axvline(TARGET_P99_MS, color="r", ls=":", label=f"target p99 {TARGET_P99_MS:.0f} ms")
    ax.axhline(99, color="grey", lw=0.5)
    ax.set_xscale("log")
    ax.set_xlabel("latency (ms, log scale)")
    ax.set_ylabel("percentile")
    ax.set_title(f"HTTP latency distribution at {load:.0%} of each endpoint's saturation (wrk)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_throughput(results: dict[tuple[str, int], dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for app, marker in (("profile", "o"), ("bare", "s")):
        points = sorted((w, r["saturation"]["rps"]) for (a, w), r in results.items() if a == app)
        ax.plot([w for w, _ in points], [x for _, x in points], marker=marker, label=app)
        for w, x in points:
            ax.annotate(f"{x:,.0f}", (w, x), textcoords="offset points", xytext=(5, 5))
    ax.set_xticks(sorted({w for _, w in results}))
    ax.set_xlabel("uvicorn workers")
    ax.set_ylabel("saturation throughput (req/s)")
    ax.set_yscale("log")
    ax.set_title("POST /v1/payment_profile vs bare FastAPI endpoint")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1,2", help="comma list of uvicorn worker counts")
    parser.add_argument("--seconds", type=float, default=5, help="each saturation run")
    parser.add_argument("--rounds", type=int, default=3, help="saturation runs per endpoint")
    parser.add_argument("--paced-seconds", type=float, default=10, help="the paced run")
    parser.add_argument("--warmup-seconds", type=float, default=3)
    parser.add_argument("--connections", type=int, default=16, help="for saturation")
    parser.add_argument("--load", type=float, default=0.8, help="fraction of saturation")
    parser.add_argument("--sessions", type=int, default=400, help="checkout sessions")
    parser.add_argument("--database", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument("--pg-url", default=PG_DEFAULT)
    parser.add_argument("--spec", default="rf", help="fraud spec made champion")
    parser.add_argument("--results", type=Path, default=HERE / "RESULTS.md")
    parser.add_argument("--plot-latency", type=Path, default=HERE / "http_latency.png")
    parser.add_argument("--plot-workers", type=Path, default=HERE / "http_throughput_workers.png")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    worker_counts = [int(w) for w in args.workers.split(",") if w.strip()]

    facts = machine_facts()
    wrk = wrk_version()
    results: dict[tuple[str, int], dict[str, Any]] = {}
    loads: list[float] = []
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-http-") as tmp:
        workdir = Path(tmp)
        champion = prepare_champion(workdir, spec=args.spec)
        url = database_url(args.database, workdir, args.pg_url)
        seeded = seed_database(url, sessions=args.sessions)
        bodies = write_bodies(
            [
                {"client_secret": secret, "context": CONTEXTS[i % len(CONTEXTS)]}
                for i, secret in enumerate(seeded.client_secrets)
            ],
            workdir / "bodies.jsonl",
        )
        env = server_env(url, champion["uri"])
        canned = workdir / "profile.json"
        bare_env = dict(env, BENCH_BARE_RESPONSE=str(canned))
        first_body = json.loads(bodies.read_text().splitlines()[0])
        auths = {"profile": seeded.publishable_key, "bare": ""}
        for workers in worker_counts:
            with Server("checkoutlab.api.app:create_app", workers=workers, env=env) as profile:
                sample = warm_profile(profile, seeded.publishable_key, first_body)
                canned.write_text(json.dumps(sample))
                with Server(
                    "bare_app:create_app", workers=workers, env=bare_env, app_dir=HERE
                ) as bare:
                    pair = measure_pair({"profile": profile, "bare": bare}, auths, bodies, args,
                                        loads)  # fmt: skip
            for app in ("profile", "bare"):
                r = results[app, workers] = pair[app]
                print(
                    f"{app} x{workers}: sat {r['saturation']['all_rps']} req/s, "
                    f"paced {r['paced']['rps']:.0f} req/s p50 {r['paced']['p50_ms']:.1f} "
                    f"p99 {r['paced']['p99_ms']:.1f} ms",
                    file=sys.stderr,
                )
    wall = time.perf_counter() - began

    rows, verdicts = [], []
    for workers in worker_counts:
        for app in ("profile", "bare"):
            r = results[app, workers]
            s, p = r["saturation"], r["paced"]
            errors = s["errors_total"] + p["errors_total"]
            rows.append(
                f"| {app} | {workers} | {s['rps']:,.0f} ({min(s['all_rps']):,.0f}-{max(s['all_rps']):,.0f}) "
                f"| {s['p50_ms']:.1f} / {s['p99_ms']:.1f} "
                f"| {p['rps']:,.0f} ({p['rps'] / s['rps']:.0%}; c={p['connections']}, "
                f"think {p['delay_ms']} ms) | {p['p50_ms']:.1f} / {p['p99_ms']:.1f} | {errors} |"
            )
        prof, bare = results["profile", workers], results["bare", workers]
        ratio = prof["saturation"]["rps"] / bare["saturation"]["rps"]
        p99 = prof["paced"]["p99_ms"]
        verdicts.append(
            f"- {workers} worker{'s' if workers > 1 else ''}: profile throughput "
            f"{ratio:.1%} of the bare endpoint's (target ≥ {TARGET_RATIO:.0%}: "
            f"{'met' if ratio >= TARGET_RATIO else 'missed'}); p99 {p99:.1f} ms at "
            f"{prof['paced']['rps'] / prof['saturation']['rps']:.0%} of its saturation "
            f"(target < {TARGET_P99_MS:.0f} ms: {'met' if p99 < TARGET_P99_MS else 'missed'})."
        )
    scaling = ""
    if 1 in worker_counts and 2 in worker_counts:
        scaling = (
            "Scaling 1 → 2 workers: profile x"
            f"{results['profile', 2]['saturation']['rps'] / results['profile', 1]['saturation']['rps']:.2f}"
            ", bare x"
            f"{results['bare', 2]['saturation']['rps'] / results['bare', 1]['saturation']['rps']:.2f}"
            " (the load generator and PostgreSQL share the same 2 cores)."
        )
    command = "`.venv/bin/python benchmarks/http_profile.py " + " ".join(
        a for a in sys.argv[1:] if a != "--no-write"
    )
    body = f"""Command: {command.rstrip()}` (load generator: {wrk}, `-t1`; per endpoint and worker
count: a {args.warmup_seconds:.0f} s warm-up, {args.rounds} saturation runs of {args.seconds:.0f} s
alternating with the other endpoint's, then one paced run of {args.paced_seconds:.0f} s).

Machine: {machine_line(facts)}; load average at each measured run:
{", ".join(f"{x:.1f}" for x in loads)}; {load_now():.2f} at the end (wall {wall:.0f} s).
Server, load generator and {args.database} all share the same 2 cores: read the ratios (same
run, same settings) rather than absolute numbers.

Served with `uvicorn --factory <app> --workers N --loop uvloop --http httptools
--no-access-log` for both apps. Platform: `checkoutlab.api.app:create_app`, settings
`CHECKOUTLAB_ENVIRONMENT=test` (production refuses the sandbox gateway; a real secret key, no default-secret shortcut), `DATABASE_URL` {args.database}, `RISK_SCORER=champion`
(`{args.spec}` from a temporary MLflow store), `RATE_LIMIT_ENABLED=false`; merchant ordering
policy `{POLICY}` (trained snapshot); {args.sessions} open checkout sessions and
{len(CONTEXTS)} browser contexts sent round-robin. Every request builds and logs a full
profile (no cache). Bare: `benchmarks/bare_app.py`, same path and body, pydantic parsing, a
plain `def` route like the platform's, returns a canned profile captured in this run.
Both servers are up together; saturation runs alternate between them ({args.connections}
connections as fast as they go) and the median run is reported. Paced: fewer connections with a
think time between response and next request, tuned so the achieved rate is about
{args.load:.0%} of that endpoint's own saturation (a paced closed loop: wrk from Debian is
not wrk2 and has no constant-rate mode, so queueing bursts are milder than with open-loop
arrivals). Latencies in ms (p50 / p99); "errors" counts socket errors and non-2xx responses.

| endpoint | workers | saturation req/s, median (range) | p50 / p99 at saturation (median run) | paced req/s | p50 / p99 paced | errors |
|---|---:|---:|---:|---:|---:|---:|
{chr(10).join(rows)}

**Targets:**
{chr(10).join(verdicts)}

{scaling}

![latency distribution]({args.plot_latency.name})
![throughput vs workers]({args.plot_workers.name})
"""
    print(body)
    if not args.no_write:
        plot_latency(results, args.load, args.plot_latency)
        plot_throughput(results, args.plot_workers)
        write_section("HTTP payment profile", body, args.results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
