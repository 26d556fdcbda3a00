"""Wrong tokens per client address: `per_minute` in any minute, then lock-outs that double.

The 1st to `per_minute`-th wrong token within a minute are answered as usual (401);
the last of them locks the address out for a minute, the next lock-out for two, then
four, up to an hour; while locked out no token from that address is even compared (429
with Retry-After). A right token clears the address's record; so does an hour without a
wrong one. The address is the request's remote address, which waitress takes from
`X-Forwarded-For` only when it comes from `[server] trusted_proxy`. State is per
process and bounded (the oldest addresses are forgotten first).
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field

WINDOW = 60.0
FIRST_LOCKOUT = 60.0
MAX_LOCKOUT = 3600.0
FORGET_AFTER = 3600.0  # without a wrong token, an address starts afresh
MAX_ADDRESSES = 10_000


@dataclass
class _Record:
    failures: deque[float] = field(default_factory=deque)
    lockouts: int = 0
    locked_until: float = 0.0
    last_failure: float = 0.0


class LoginLimiter:
    """The per-address record of wrong tokens (thread-safe)."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._records: OrderedDict[str, _Record] = OrderedDict()
        self._lock = threading.Lock()

    def retry_after(self, address: str) -> int:
        """Seconds until `address` may try again; 0 when it may now."""
        now = time.monotonic()
        with self._lock:
            record = self._records.get(address)
            if record is None or record.locked_until <= now:
                return 0
            return max(1, math.ceil(record.locked_until - now))

    def failed(self, address: str) -> None:
        """Count a wrong token; the `per_minute`-th within a minute locks the address out."""
        now = time.monotonic()
        with self._lock:
            record = self._records.pop(address, None)
            if record is None or now - record.last_failure > FORGET_AFTER:
                record = _Record()
            self._records[address] = record  # most recent last
            while len(self._records) > MAX_ADDRESSES:
                self._records.popitem(last=False)
            record.last_failure = now
            while record.failures and record.failures[0] <= now - WINDOW:
                record.failures.popleft()
            record.failures.append(now)
            if len(record.failures) >= self.per_minute:
                record.locked_until = now + min(MAX_LOCKOUT, FIRST_LOCKOUT * 2**record.lockouts)
                record.lockouts += 1
                record.failures.clear()

    def succeeded(self, address: str) -> None:
        """A right token: forget the address's wrong ones."""
        with self._lock:
            self._records.pop(address, None)
