"""Real ``patron serve`` and ``patron worker`` processes for the trust tests.

Each process is started in a session of its own, so a SIGKILL of its process group takes
uvicorn's worker children with it, and ``Fleet`` kills every group it started when the
test ends -- whether it passed or failed -- so no server outlives its test.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def patron_env(database_url: str, log_dir: Path, *, smtp_port: int | None = None
               ) -> dict[str, str]:
    """Environment of the processes: the test database, e-mail to the loopback SMTP server
    (or no channels at all), a short worker lease so a killed worker's messages come back
    quickly, and a short Idempotency-Key lease so a call whose server was killed after
    claiming its key is taken over by its retry within seconds, not after the default
    minute (PostgreSQL; a live attempt that outlasts it is fenced off, see
    core.idempotency, so the books stay exact either way)."""
    env = os.environ | {
        "PATRON_DATABASE_URL": database_url, "PATRON_ENVIRONMENT": "test",
        "PATRON_SMS_PROVIDER": "none", "PATRON_WEBHOOK_PROVIDER": "none",
        "PATRON_MESSAGE_LOG_PATH": str(log_dir / "messages.log"),
        "PATRON_WORKER_LEASE_SECONDS": "2", "PATRON_IDEMPOTENCY_LEASE_SECONDS": "5"}
    if smtp_port is None:
        env["PATRON_EMAIL_PROVIDER"] = "none"
    else:
        env |= {"PATRON_EMAIL_PROVIDER": "smtp", "PATRON_SMTP_HOST": "127.0.0.1",
                "PATRON_SMTP_PORT": str(smtp_port), "PATRON_SMTP_SECURITY": "none",
                "PATRON_SMTP_FROM_ADDRESS": "shop@example.com"}
    return env


class Proc:
    """One started command, killable as a group."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.log = log
        with log.open("ab") as out:
            self.popen = subprocess.Popen([sys.executable, "-m", "patron.cli", *args], cwd=ROOT,
                                          env=env, stdout=out, stderr=subprocess.STDOUT,
                                          start_new_session=True)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self, sig: signal.Signals = signal.SIGKILL) -> None:
        """Signal the whole group (uvicorn's children too) and reap the leader."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, sig)
        try:
            self.popen.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=30)
        if sig is signal.SIGKILL:
            return
        with contextlib.suppress(ProcessLookupError):  # children outliving a graceful stop
            os.killpg(self.popen.pid, signal.SIGKILL)


class Fleet:
    """Servers and workers of one test; ``close`` kills whatever is still running."""

    def __init__(self, env: dict[str, str], log_dir: Path, key: str) -> None:
        self.env = env
        self.log_dir = log_dir
        self.key = key
        self.procs: list[Proc] = []

    def serve(self, port: int, *, workers: int = 1, wait_s: float = 300) -> Proc:
        proc = Proc("serve", ["serve", "--host", "127.0.0.1", "--port", str(port),
                              "--workers", str(workers)], self.env,
                    self.log_dir / "serve.log")
        self.procs.append(proc)
        self._wait_ready(proc, f"http://127.0.0.1:{port}", wait_s)
        return proc

    def worker(self) -> Proc:
        proc = Proc("worker", ["worker", "--poll", "0.05"], self.env,
                    self.log_dir / "worker.log")
        self.procs.append(proc)
        return proc

    def _wait_ready(self, proc: Proc, base: str, wait_s: float) -> None:
        """Until an authenticated call that reads the database answers."""
        deadline = time.monotonic() + wait_s
        headers = {"Authorization": f"Bearer {self.key}"}
        while time.monotonic() < deadline:
            if not proc.alive():
                raise RuntimeError(f"patron serve exited: see {proc.log}")
            try:
                if httpx.get(f"{base}/api/v1/wallet/bonus-rules", headers=headers,
                             timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"patron serve not ready after {wait_s} s: see {proc.log}")

    def doctor(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "patron.cli", "doctor"], cwd=ROOT,
                              env=self.env, capture_output=True, text=True, timeout=900)

    def close(self) -> None:
        for proc in self.procs:
            proc.kill()
