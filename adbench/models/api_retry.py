"""When to ask an API again, and how long to wait first.

Exponential backoff with jitter (so concurrent workers that failed together do not
retry together), at least as long as the server's `Retry-After` asks. A server that
asks for longer than `backoff_max` is not waited for: the sample is recorded as a
transient failure and a later run of the same command asks again.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any

from adbench.args import ArgumentError

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


@dataclass(frozen=True)
class RetryPolicy:
    """max_retries: asks after the first (0 = ask once). Delays in seconds."""

    max_retries: int = 5
    backoff_base: float = 1.0
    backoff_max: float = 60.0

    def __post_init__(self) -> None:
        if int(self.max_retries) < 0:
            raise ArgumentError(f"-M max_retries must be >= 0, got {self.max_retries!r}")
        if float(self.backoff_base) < 0 or float(self.backoff_max) < 0:
            raise ArgumentError(f"-M backoff_base / backoff_max must be >= 0, got {self.backoff_base!r}, {self.backoff_max!r}")

    def delay(self, retry: int, retry_after: float | None = None, rng: random.Random | None = None) -> float | None:
        """Seconds to wait before retry number `retry` (1-based); None when the server asks for too long.

        Backoff is base * 2**(retry-1), capped at backoff_max, scaled by a random factor
        in [0.5, 1] ("equal jitter"); a Retry-After longer than that wins.
        """
        rng = rng or random
        backoff = min(float(self.backoff_max), float(self.backoff_base) * 2 ** max(0, retry - 1))
        wait = backoff * rng.uniform(0.5, 1.0)
        if retry_after is not None:
            if retry_after > float(self.backoff_max):
                return None
            wait = max(wait, retry_after)
        return wait

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
