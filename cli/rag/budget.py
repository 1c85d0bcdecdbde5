"""Budgets: caps on spend, checked before a priced call is sent, and the spend ledger that persists it.

    budget.per_run   this process (one rag index / ask / eval run, one rag serve or rag mcp process)
    budget.per_day   one window of ``budget.window_hours`` (24: a UTC day), summed over every run that shares the ledger
    gateway.tokens.<team>.per_day   one gateway team's spend per window

A call is priced before it is sent from its tokens counted with tiktoken (a
chat call counts its ``max_tokens`` as output), and refused with
:class:`~rag.errors.BudgetExceeded` when that estimate would take any cap past
its limit; nothing is sent. Estimates in flight are reserved, so concurrent
calls cannot pass a cap together. Once answered, the call's real usage is
priced and written to the ledger: SQLite beside the index
(``<store>/spend.sqlite``, or ``budget.path``), or in the gateway's state.
Prices are the profile's (``embedding.price_per_1m_tokens`` and the like, or
``gateway.prices`` per model); a call priced at zero is neither capped nor
recorded.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rag.errors import BudgetExceeded
from rag.profile import BudgetConfig, Profile
from rag.tokens import count_tokens
from rag.usage import Usage

FILE_NAME = "spend.sqlite"
Clock = Callable[[], float]

_SCHEMA = """CREATE TABLE IF NOT EXISTS spend (
    at REAL, window INTEGER, team TEXT, stage TEXT, model TEXT, tags TEXT,
    input_tokens INTEGER, output_tokens INTEGER, calls INTEGER, cost REAL, cached INTEGER DEFAULT 0)"""


def spend_path(profile: Profile) -> Path:
    return profile.resolve_path(profile.budget.path) if profile.budget.path else profile.store_path / FILE_NAME


class SpendLedger:
    """Priced calls, one row each, in SQLite: several processes may write it at once. Thread-safe."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(str(path), timeout=30, check_same_thread=False)
        self._lock = threading.Lock()
        with self._lock, self._db:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(_SCHEMA)

    def add(self, entry: Entry) -> None:
        row = (
            entry.at,
            entry.window,
            entry.team,
            entry.stage,
            entry.model,
            json.dumps(entry.tags),
            *entry.tokens(),
            entry.cost,
            entry.cached,
        )
        with self._lock, self._db:
            self._db.execute("INSERT INTO spend VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)

    def spent(self, window: int, team: str | None = None) -> float:
        sql = "SELECT COALESCE(SUM(cost), 0) FROM spend WHERE window = ?"
        args: list[Any] = [window]
        if team is not None:
            sql, args = sql + " AND team = ?", [window, team]
        with self._lock:
            return float(self._db.execute(sql, args).fetchone()[0])

    def summary(self, window: int | None = None, team: str | None = None) -> dict[str, Any]:
        """Spend grouped by stage, model, tag and team (a call with two tags counts under both)."""
        where, args = _filters(window, team)
        out: dict[str, Any] = {}
        columns = {"stage": "stage", "model": "model", "team": "team"}
        with self._lock:
            for name, column in columns.items():
                rows = self._db.execute(f"SELECT {column}, {_SUMS} FROM spend{where} GROUP BY {column} ORDER BY {column}", args)
                out[f"by_{name}"] = {str(r[0]): _sums(r[1:]) for r in rows}
            rows = self._db.execute(
                f"SELECT j.value, {_SUMS} FROM spend, json_each(spend.tags) AS j{where} GROUP BY j.value ORDER BY j.value", args
            )
            out["by_tag"] = {str(r[0]): _sums(r[1:]) for r in rows}
            out["total"] = _sums(self._db.execute(f"SELECT {_SUMS} FROM spend{where}", args).fetchone())
        return out

    def close(self) -> None:
        with self._lock:
            self._db.close()


_SUMS = "COALESCE(SUM(cost), 0), COALESCE(SUM(input_tokens), 0), COALESCE(SUM(output_tokens), 0), COALESCE(SUM(calls), 0), COALESCE(SUM(cached), 0)"


def _sums(row: Any) -> dict[str, Any]:
    cost, tokens_in, tokens_out, calls, cached = row
    return {"cost": round(float(cost), 8), "input_tokens": tokens_in, "output_tokens": tokens_out, "calls": calls, "cache_hits": cached}


def _filters(window: int | None, team: str | None) -> tuple[str, list[Any]]:
    parts: list[str] = []
    args: list[Any] = []
    if window is not None:
        parts.append("spend.window = ?")
        args.append(window)
    if team is not None:
        parts.append("spend.team = ?")
        args.append(team)
    return (" WHERE " + " AND ".join(parts) if parts else ""), args


@dataclass
class Entry:
    stage: str
    model: str
    usage: Usage
    cost: float
    team: str = ""
    tags: list[str] = field(default_factory=list)
    cached: int = 0  # 1: answered from the cache (cost 0), counted to show what the cache saved
    at: float = 0.0
    window: int = 0

    def tokens(self) -> tuple[int, int, int]:
        return self.usage.input_tokens, self.usage.output_tokens, self.usage.calls


@dataclass
class Cap:
    """One limit: ``per_run`` is the process's own sum; the others are the ledger's, this window."""

    name: str  # the profile key, for the message
    limit: float
    team: str | None = None  # None: every row of the window; a team: its rows only
    per_run: bool = False


class Budget:
    """The caps of one ledger, with the estimates in flight reserved. Thread-safe; share one per ledger."""

    def __init__(self, cfg: BudgetConfig, ledger: SpendLedger, *, clock: Clock = time.time) -> None:
        self.cfg = cfg
        self.ledger = ledger
        self.clock = clock
        self.run_spent = 0.0
        self._pending: dict[str, float] = {}
        self._lock = threading.Lock()

    @property
    def window_seconds(self) -> float:
        return self.cfg.window_hours * 3600

    def window(self) -> int:
        return int(self.clock() // self.window_seconds)

    def caps(self, team: str = "", team_cap: float | None = None) -> list[Cap]:
        caps = []
        if self.cfg.per_run is not None:
            caps.append(Cap("budget.per_run", self.cfg.per_run, per_run=True))
        if self.cfg.per_day is not None:
            caps.append(Cap("budget.per_day", self.cfg.per_day))
        if team and team_cap is not None:
            caps.append(Cap(f"gateway.tokens.{team}.per_day", team_cap, team=team))
        return caps

    @contextlib.contextmanager
    def reserve(self, what: str, estimate: float, *, team: str = "", team_cap: float | None = None) -> Iterator[None]:
        """Hold ``estimate`` against every cap while the call runs; raises BudgetExceeded before it when a cap would pass."""
        caps = self.caps(team, team_cap)
        with self._lock:
            window = self.window()
            for cap in caps:
                spent = self._spent(cap, window)
                if spent + estimate > cap.limit + 1e-12:
                    raise BudgetExceeded(self._refusal(what, estimate, cap, spent))
            keys = [self._key(cap) for cap in caps]
            for key in keys:
                self._pending[key] = self._pending.get(key, 0.0) + estimate
        try:
            yield
        finally:
            with self._lock:
                for key in keys:
                    self._pending[key] -= estimate

    def record(self, entry: Entry) -> None:
        entry.at = self.clock()
        entry.window = self.window()
        if entry.cost <= 0 and not entry.cached:
            return
        self.ledger.add(entry)
        with self._lock:
            self.run_spent += entry.cost

    def status(self, team: str | None = None) -> dict[str, Any]:
        """What ``rag status`` and ``/v1/usage`` show: this window's spend against the caps."""
        window = self.window()
        return {
            "currency": self.cfg.currency,
            "window_start": _utc(window * self.window_seconds),
            "window_end": _utc((window + 1) * self.window_seconds),
            "spent": round(self.ledger.spent(window, team), 8),
            "per_day": self.cfg.per_day,
            "per_run": self.cfg.per_run,
            "ledger": str(self.ledger.path),
        }

    def _spent(self, cap: Cap, window: int) -> float:
        done = self.run_spent if cap.per_run else self.ledger.spent(window, cap.team)
        return done + self._pending.get(self._key(cap), 0.0)

    def _key(self, cap: Cap) -> str:
        return cap.name

    def _refusal(self, what: str, estimate: float, cap: Cap, spent: float) -> str:
        c = self.cfg.currency
        scope = "this run" if cap.per_run else f"this window (until {_utc((self.window() + 1) * self.window_seconds)})"
        return (
            f"budget: {what} would cost about {estimate:.6g} {c}, and {spent:.6g} {c} is spent {scope} against {cap.name} "
            f"({cap.limit:g} {c}); nothing was sent. Raise {cap.name} or wait for the next window"
        )


def _utc(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


# --------------------------------------------------------------------------- estimates (before a call) and prices


def price(profile: Profile, stage: str, model: str | None = None) -> tuple[float, float]:
    """(input, output) per 1M tokens: ``gateway.prices[model]`` when listed, else the stage's configured price."""
    from rag.usage import prices

    listed = profile.gateway.prices.get(model or "")
    if listed is not None:
        return listed.input_per_1m_tokens, listed.output_per_1m_tokens
    return prices(profile, stage)


def priced(rates: tuple[float, float], usage: Usage) -> float:
    return (usage.input_tokens * rates[0] + usage.output_tokens * rates[1]) / 1_000_000


def embed_tokens(texts: list[str]) -> Usage:
    return Usage(input_tokens=sum(count_tokens(t) for t in texts))


def rerank_tokens(query: str, documents: list[str]) -> Usage:
    q = count_tokens(query)
    return Usage(input_tokens=sum(q + count_tokens(d) for d in documents))


def chat_tokens(messages: list[dict[str, Any]], max_tokens: int) -> Usage:
    prompt = sum(count_tokens(str(m.get("content", ""))) + 4 for m in messages)
    return Usage(input_tokens=prompt, output_tokens=max_tokens)


# --------------------------------------------------------------------------- one budget per ledger in this process

_BUDGETS: dict[Path, Budget] = {}
_BUDGETS_LOCK = threading.Lock()


def budget_for(profile: Profile, path: Path | None = None) -> Budget:
    """The process's budget for ``profile``'s ledger: every stage of a run counts against one per_run total."""
    path = (path or spend_path(profile)).absolute()
    with _BUDGETS_LOCK:
        if path not in _BUDGETS:
            _BUDGETS[path] = Budget(profile.budget, SpendLedger(path))
        return _BUDGETS[path]


def spend_status(profile: Profile) -> dict[str, Any] | None:
    """This window's spend for ``rag status``; None when nothing was ever priced here (no ledger file)."""
    path = spend_path(profile)
    if not path.exists():
        return None
    try:
        ledger = SpendLedger(path)
    except (OSError, sqlite3.Error) as exc:  # status is read-only: say so, never fail it
        return {"error": f"cannot read the spend ledger {path}: {exc}"}
    try:
        budget = Budget(profile.budget, ledger)
        return {**budget.status(), "by_stage": ledger.summary(budget.window())["by_stage"]}
    except sqlite3.Error as exc:
        return {"error": f"cannot read the spend ledger {path}: {exc}"}
    finally:
        ledger.close()
