"""Shared by the HTTP benchmarks: a uvicorn server in a subprocess and wrk runs against it.

The load generator is ``wrk`` (Debian package ``wrk``; ``make bench`` installs it when it can):
a C event loop in one thread that keeps ``-c`` connections busy (a closed loop), so it takes
far less of the 2 shared cores than a Python generator would. ``wrk_post.lua`` sends POST
bodies round-robin from a file, can pace each connection with a think time (``WRK_DELAY_MS``,
used to hold a chosen fraction of saturation) and writes the latency percentiles as JSON.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
LUA = HERE / "wrk_post.lua"


def require_wrk() -> str:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit(
            "wrk not found: `apt-get install wrk` (make bench does it when run as root)"
        )
    return wrk


def wrk_version() -> str:
    out = subprocess.run(  # noqa: S603
        [require_wrk(), "--version"], capture_output=True, text=True, check=False
    )
    return (out.stdout or out.stderr).splitlines()[0].split(" Copyright")[0].strip()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def uvicorn_command(target: str, port: int, workers: int, app_dir: Path | None = None) -> list[str]:
    cmd = [
        str(BIN / "uvicorn"),
        "--factory",
        target,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    if app_dir is not None:
        cmd += ["--app-dir", str(app_dir)]
    return cmd


class Server:
    """``uvicorn --factory TARGET`` in its own process group, stopped by that group's id."""

    def __init__(
        self,
        target: str,
        *,
        workers: int,
        env: dict[str, str],
        app_dir: Path | None = None,
        log_path: Path | None = None,
    ) -> None:
        self.port = free_port()
        self.cmd = uvicorn_command(target, self.port, workers, app_dir)
        self.env = env
        self.workers = workers
        self.log_path = log_path or Path(
            tempfile.mkstemp(prefix="bench-uvicorn-", suffix=".log")[1]
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Server:
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(  # noqa: S603
            self.cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"server exited ({self.proc.returncode}): {self.log_path.read_text()[-3000:]}"
                )
            try:
                if httpx.get(f"{self.base}/healthz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.__exit__()
        raise RuntimeError(f"server did not start: {self.log_path.read_text()[-3000:]}")

    def __exit__(self, *_: Any) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)  # our own group: uvicorn and its workers
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


def write_bodies(bodies: list[dict[str, Any]], path: Path) -> Path:
    path.write_text("".join(json.dumps(b, separators=(",", ":")) + "\n" for b in bodies))
    return path


def run_wrk(
    url: str,
    *,
    path: str,
    bodies: Path,
    connections: int,
    seconds: float,
    auth: str = "",
    delay_ms: int = 0,
    timeout_s: int = 10,
) -> dict[str, Any]:
    """One wrk run (one thread); returns its JSON summary plus ``rps``, ``p50_ms``, ``p99_ms``."""
    with tempfile.NamedTemporaryFile(prefix="wrk-", suffix=".json", delete=False) as out:
        out_path = Path(out.name)
    env = dict(os.environ)
    env.update(
        {
            "WRK_BODIES": str(bodies),
            "WRK_PATH": path,
            "WRK_AUTH": auth,
            "WRK_DELAY_MS": str(int(delay_ms)),
            "WRK_OUT": str(out_path),
        }
    )
    cmd = [
        require_wrk(),
        "-t1",
        f"-c{connections}",
        f"-d{max(1, math.ceil(seconds))}s",
        f"--timeout={timeout_s}s",
        "-s",
        str(LUA),
        url,
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)  # noqa: S603
    if done.returncode != 0 or not out_path.stat().st_size:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout}\n{done.stderr}")
    summary = json.loads(out_path.read_text())
    out_path.unlink(missing_ok=True)
    duration = summary["duration_us"] / 1e6
    summary["rps"] = summary["requests"] / duration if duration else 0.0
    summary["p50_ms"] = summary["percentiles"]["50"] / 1000
    summary["p99_ms"] = summary["percentiles"]["99"] / 1000
    summary["connections"] = connections
    summary["delay_ms"] = int(delay_ms)
    summary["errors_total"] = sum(summary["errors"].values())
    return summary


def paced_run(
    url: str,
    *,
    rate: float,
    mean_latency_ms: float,
    seconds: float,
    calibrate_seconds: float = 3.0,
    probes: int = 3,
    **kwargs: Any,
) -> dict[str, Any]:
    """Hold about ``rate`` requests/s with ``c`` connections, each waiting a think time after
    every response: rate ~ c / (think + latency). ``probes`` short runs measure the latency at
    that load and correct ``c`` (at least 5 ms of think time) and the think time."""
    latency = max(0.5, mean_latency_ms)
    connections, delay = 2, 1.0
    for i in range(probes + 1):
        connections = max(connections, 2, math.ceil(rate * (latency + 5.0) / 1000))
        delay = max(1.0, 1000 * connections / rate - latency)
        last = i == probes
        result = run_wrk(
            url,
            connections=connections,
            seconds=seconds if last else calibrate_seconds,
            delay_ms=round(delay),
            **kwargs,
        )
        if last or result["rps"] <= 0:
            break
        # the latency the paced connections saw, from the achieved rate (includes wrk's timer)
        latency = max(0.5, 1000 * connections / result["rps"] - round(delay))
    result["target_rps"] = rate
    return result
