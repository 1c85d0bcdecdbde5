"""A circuit breaker per model: after N failures in a row, skip it for a cool-down.

After the cool-down one call is let through (half-open); success closes the
circuit, another failure opens it for a new cool-down.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _State:
    failures: int = 0
    opened_at: float | None = None


class CircuitBreaker:
    """Thread-safe. ``failures=0`` disables it."""

    def __init__(self, failures: int, cooldown: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.failures = failures
        self.cooldown = cooldown
        self._clock = clock
        self._states: dict[str, _State] = {}
        self._lock = threading.Lock()

    def blocked_for(self, key: str) -> float:
        """Seconds until ``key`` may be tried again; 0 when it may be tried now."""
        with self._lock:
            state = self._states.get(key)
            if state is None or state.opened_at is None:
                return 0.0
            left = state.opened_at + self.cooldown - self._clock()
            if left > 0:
                return left
            state.opened_at = None  # half-open: one more failure re-opens it
            state.failures = max(0, self.failures - 1)
            return 0.0

    def record_success(self, key: str) -> None:
        with self._lock:
            self._states.pop(key, None)

    def record_failure(self, key: str) -> bool:
        """Count a failure; True when this failure opened the circuit."""
        if self.failures <= 0:
            return False
        with self._lock:
            state = self._states.setdefault(key, _State())
            state.failures += 1
            if state.failures >= self.failures and state.opened_at is None:
                state.opened_at = self._clock()
                return True
            return False

    def failures_of(self, key: str) -> int:
        with self._lock:
            state = self._states.get(key)
            return state.failures if state else 0
