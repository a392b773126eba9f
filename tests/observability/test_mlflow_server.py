"""The production model store: an MLflow tracking server with a database backend.

API workers and ``checkoutlab worker`` reach MLflow only over HTTP
(``CHECKOUTLAB_MLFLOW_TRACKING_URI=http://...``), and artifacts go through the server
(``--artifacts-destination``), so no process but the server needs the artifact store's
credentials. This test runs that setup for real: train, register and promote through the
server with the platform's own fraud code, then the API's ChampionWatcher loads the champion.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from checkoutlab.fraud import registry
from checkoutlab.fraud.data import save_transactions
from checkoutlab.fraud.serving import ChampionWatcher
from checkoutlab.fraud.simulate import simulate
from checkoutlab.fraud.train import train_from_spec
from checkoutlab.observability import metrics

SPEC = Path(__file__).resolve().parents[2] / "models" / "logreg.yaml"
MLFLOW = Path(sys.executable).with_name("mlflow")
STARTUP_SECONDS = 120


@pytest.fixture
def mlflow_server(tmp_path: Path):
    """Starts the server and yields (wait for it, artifacts folder): callers work meanwhile."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    artifacts = tmp_path / "artifacts"
    command = [
        str(MLFLOW), "server",
        "--backend-store-uri", f"sqlite:///{tmp_path}/mlflow-server.db",
        "--artifacts-destination", str(artifacts),
        "--serve-artifacts",
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PROMETHEUS_"))}
    log = tmp_path / "mlflow.log"
    with log.open("wb") as sink:
        # its own process group: `mlflow server` runs uvicorn as a child process
        process = subprocess.Popen(
            command, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )
    base = f"http://127.0.0.1:{port}"
    started = time.monotonic()

    def ready() -> str:
        while True:
            assert process.poll() is None, log.read_text()[-3000:]
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    return base
            except httpx.HTTPError:
                pass
            assert time.monotonic() - started < STARTUP_SECONDS, log.read_text()[-3000:]
            time.sleep(0.25)

    try:
        yield ready, artifacts
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_train_register_promote_and_serve_through_the_tracking_server(mlflow_server, tmp_path):
    ready, artifacts = mlflow_server
    data = save_transactions(  # while the server starts
        simulate(n_customers=300, n_terminals=600, n_days=90, start="2018-06-01"),
        tmp_path / "tx.parquet",
    )
    result = train_from_spec(SPEC, data)
    uri = ready()
    registered = registry.register(result, tracking_uri=uri)
    assert registered.version == "1"
    decision = registry.promote(data=data, force=True, tracking_uri=uri)
    assert decision.promoted

    # the model files went through the server into its artifact store
    stored = [p for p in artifacts.rglob("*") if p.is_file()]
    assert any(p.name == "MLmodel" for p in stored), stored

    watcher = ChampionWatcher(uri)  # what an API worker runs, with only the http URI
    watcher.tick()
    assert watcher.last_error is None
    assert watcher.current is not None and watcher.current.version == "1"
    assert metrics.sample("checkoutlab_fraud_model_version", {"model": "fraud-scorer"}) == 1
    assert watcher.check() is False  # unchanged alias: nothing reloaded
