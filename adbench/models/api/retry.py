"""When to ask an API again, and how long to wait first; the asking again is tenacity's.

The adapter's one request (`openai_chat`) raises `AskAgain` for a fault worth another
try: 429, 408, 5xx, a connection error, a timeout, a malformed body, or (under
`-M mmad=true`) a reply that reads like a refusal. `RetryPolicy.retrying` gives the
`tenacity.Retrying` that repeats it:

- at most `max_retries` more requests after the first;
- waits of exponential backoff with "equal jitter" (base * 2**(n-1), capped at
  `backoff_max`, times a random factor in [0.5, 1], so concurrent workers that failed
  together do not retry together), and at least as long as the server's `Retry-After`;
- a server that asks for longer than `backoff_max` is not waited for: the last fault is
  raised at once, and the sample is recorded as a transient failure that a later run of
  the same command asks again;
- a wait ends early when the run stops (Ctrl-C, `close`): `Stopped` is raised.

The openai client's own retries stay off (`max_retries=0`): they would not retry
malformed bodies or refusals, cap `Retry-After` at a minute and then retry anyway, and
send requests that the adapter could not count and the run's cost would not include.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

from adbench.args import ArgumentError

if TYPE_CHECKING:  # tenacity comes with the `api` extra; imported when an adapter asks (a missing one is named)
    from tenacity import RetryCallState, Retrying

#: HTTP statuses worth asking again: timeout, rate limit, server faults.
TRANSIENT_STATUSES = frozenset({408, 429})


def is_transient_status(status: int) -> bool:
    """429 (rate limit), 408 (request timeout) and every 5xx; any other 4xx is the request's fault."""
    return status in TRANSIENT_STATUSES or status >= 500


#: Refusals of the credentials, not of the request: not worth retrying now, but the
#: same request may well succeed once the key or its permissions are fixed.
CREDENTIAL_STATUSES = frozenset({401, 403})


def ask_again_on_resume(status: int) -> bool:
    """Whether a failure with this HTTP status is asked again when the run is resumed."""
    return is_transient_status(status) or status in CREDENTIAL_STATUSES


def parse_retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds the server asks us to wait: `retry-after-ms` (OpenAI's), else `Retry-After`.

    `Retry-After` may be seconds (fractions accepted) or an HTTP date. Unparsable or
    negative values are ignored (None), so a broken header falls back to backoff.
    """
    if not headers:
        return None
    lowered = {k.lower(): v for k, v in headers.items()}
    ms = lowered.get("retry-after-ms")
    if ms is not None:
        try:
            value = float(ms) / 1000
            return value if value >= 0 else None
        except ValueError:
            pass
    raw = lowered.get("retry-after")
    if raw is None:
        return None
    try:
        value = float(raw)
        return value if value >= 0 else None
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


class AskAgain(Exception):
    """A fault worth another request; `retry_after`: the seconds the server asked to wait, if it did."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Stopped(Exception):
    """The run is stopping: no more waiting to retry."""


def _asked_wait(state: RetryCallState) -> float | None:
    """The Retry-After of the failed request `state` ended with, if any."""
    error = state.outcome.exception() if state.outcome is not None else None
    return getattr(error, "retry_after", None)


@dataclass(frozen=True)
class RetryPolicy:
    """max_retries: requests after the first (0 = ask once). Delays in seconds."""

    max_retries: int = 5
    backoff_base: float = 1.0
    backoff_max: float = 60.0

    def __post_init__(self) -> None:
        if int(self.max_retries) < 0:
            raise ArgumentError(f"-M max_retries must be >= 0, got {self.max_retries!r}")
        if float(self.backoff_base) < 0 or float(self.backoff_max) < 0:
            raise ArgumentError(f"-M backoff_base / backoff_max must be >= 0, got {self.backoff_base!r}, {self.backoff_max!r}")

    def wait(self, state: RetryCallState) -> float:
        """Seconds before the next request: equal-jitter backoff (tenacity's exponential wait plus its
        random exponential wait, each half the backoff), or the server's Retry-After when that is longer."""
        from tenacity import wait_exponential, wait_random_exponential

        half, cap = float(self.backoff_base) / 2, float(self.backoff_max) / 2
        backoff = wait_exponential(multiplier=half, max=cap) + wait_random_exponential(multiplier=half, max=cap)
        return max(backoff(state), _asked_wait(state) or 0.0)

    def too_long(self, state: RetryCallState) -> bool:
        """The server asked to wait longer than backoff_max: give up now (a later run asks again)."""
        asked = _asked_wait(state)
        return asked is not None and asked > float(self.backoff_max)

    def retrying(self, stop_event: threading.Event) -> Retrying:
        """tenacity's loop for one query: AskAgain is retried; anything else ends it at once."""
        from tenacity import Retrying, retry_if_exception_type, stop_after_attempt

        def sleep(seconds: float) -> None:
            if stop_event.wait(seconds):
                raise Stopped

        return Retrying(retry=retry_if_exception_type(AskAgain), wait=self.wait, sleep=sleep, reraise=True,
                        stop=stop_after_attempt(int(self.max_retries) + 1) | self.too_long)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
