"""The threadline command, run as a user would, against a fresh data folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXE = str(Path(sys.executable).with_name("threadline"))


def run(tmp_path: Path, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "THREADLINE_DATA_DIR": str(tmp_path / "data")}
    env.pop("THREADLINE_DATABASE_URL", None)
    env.pop("THREADLINE_REDIS_URL", None)
    proc = subprocess.run([EXE, *args], cwd=tmp_path, env=env, input=input, capture_output=True, text=True,
                          timeout=120)
    if check and proc.returncode != 0:
        pytest.fail(f"threadline {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def test_migrate_demo_users_tokens_and_check(tmp_path: Path) -> None:
    assert "up to date" in run(tmp_path, "migrate").stdout
    out = run(tmp_path, "demo").stdout
    assert "demo workspace created" in out and "supervisor@demo.threadline.dev" in out
    assert "already present" in run(tmp_path, "demo").stdout  # idempotent
    run(tmp_path, "user", "create", "--email", "dana@example.com", "--name", "Dana", "--role", "agent",
        "--skills", "billing:4,spanish:5", "--languages", "es,en", "--teams", "Night shift",
        "--queues", "billing", "--password", "a-long-password")
    listing = run(tmp_path, "user", "list").stdout
    assert "dana@example.com" in listing and "billing:4,spanish:5" in listing
    bad = run(tmp_path, "user", "create", "--email", "e@example.com", "--name", "E", "--skills", "x:9",
              "--password", "a-long-password", check=False)
    assert bad.returncode != 0 and "level from 1 to 5" in bad.stderr
    run(tmp_path, "user", "set-password", "dana@example.com", input="another-long-pw\nanother-long-pw\n")
    created = run(tmp_path, "token", "create", "--user", "dana@example.com", "--name", "ci").stdout
    token = created.strip().splitlines()[-1]
    assert token.startswith("tl_")
    token_id = created.split()[1]
    assert "revoked" in run(tmp_path, "token", "revoke", token_id).stdout
    check = run(tmp_path, "check").stdout
    assert "database         ok" in check and "schema           ok" in check


def test_check_fails_clearly_on_an_unreachable_database(tmp_path: Path) -> None:
    env_url = "postgresql://nobody@127.0.0.1:1/none"
    proc = subprocess.run([EXE, "check"], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "THREADLINE_DATABASE_URL": env_url})
    assert proc.returncode == 1 and "database         FAIL" in proc.stdout


def test_simulate_prints_simulated_and_erlang_figures(tmp_path: Path) -> None:
    out = run(tmp_path, "simulate", "--agents", "5", "--arrival-rate", "60", "--aht", "240",
              "--duration", "7200", "--seed", "3").stdout
    assert "Service level" in out and "Erlang C" in out
    bad = run(tmp_path, "simulate", "--agents", "5", "--arrival-rate", "60", "--aht", "240", "--wrap-up", "300",
              check=False)
    assert bad.returncode != 0 and "wrap-up" in bad.stderr
