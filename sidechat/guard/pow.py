"""ALTCHA proof of work (`--pow`): a conversation's first turn needs a solved challenge, made and
checked here with the `altcha` package (v1: find n <= maxnumber with SHA-256(salt + n) equal to
the challenge), HMAC-signed so that nothing is kept per challenge; each solution is accepted
once (in Redis with `--redis-url`, so no replica takes it again). No third-party call."""

from __future__ import annotations

import datetime
import secrets
import time
from typing import TYPE_CHECKING, Any

from altcha import v1

from sidechat.errors import SidechatError

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["PowRefused", "PowRequired", "ProofOfWork"]


class PowRequired(SidechatError):
    """No solution sent: `challenge` (in the JSON error) is one to solve."""

    status_code = 428
    code = "pow_required"

    def __init__(self, challenge: dict[str, Any]) -> None:
        super().__init__("Solve the proof-of-work challenge to start a conversation.")
        self.extra = {"challenge": challenge}


class PowRefused(SidechatError):
    """A solution that is wrong, expired, or already used."""

    status_code = 403
    code = "pow_invalid"


class ProofOfWork:
    """`challenge()` makes one; `await check(solution)` accepts a solution once or raises."""

    def __init__(self, max_number: int, key: bytes | None = None, expires: float = 600.0) -> None:
        self.max_number = max_number
        self.expires = expires
        self._key = key or secrets.token_bytes(32)
        self._used: dict[str, float] = {}  # signature -> when it may be forgotten
        self._sweep_at = 1024
        self._redis: Redis | None = None
        self._prefix = ""

    async def share(self, redis: Redis, prefix: str, configured: bool) -> None:
        """Used solutions are kept in Redis; without a configured key, the first replica's
        generated key is every replica's (a challenge from one is solved on another)."""
        self._redis, self._prefix = redis, f"{prefix}pow:"
        if not configured:
            await redis.set(self._prefix + "key", self._key.hex(), nx=True)
            stored = await redis.get(self._prefix + "key")
            if stored:
                self._key = bytes.fromhex(stored.decode() if isinstance(stored, bytes) else stored)

    def challenge(self) -> dict[str, Any]:
        expires = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=self.expires)
        options = v1.ChallengeOptions(
            max_number=self.max_number, hmac_key=self._key, expires=expires
        )
        made = v1.create_challenge(options)
        body: dict[str, Any] = made.to_dict()
        body["maxnumber"] = self.max_number  # ALTCHA's own widget reads this spelling
        return body

    async def check(self, solution: object) -> None:
        if solution is None or solution == "":
            raise PowRequired(self.challenge())
        if not isinstance(solution, str) or len(solution) > 2048:
            raise PowRefused("The proof-of-work solution must be a short string.")
        try:
            ok, why = v1.verify_solution(solution, self._key, check_expires=True)
        except Exception as exc:  # any malformed payload is a refusal, never a 500
            ok, why = False, f"malformed: {type(exc).__name__}"
        if not ok:
            raise PowRefused(
                "The proof-of-work solution is not valid. Solve a new challenge.",
                detail=f"pow refused: {why}",
            )
        signature = str(v1.Payload.from_base64(solution).signature)
        if not await self._first_use(signature):
            raise PowRefused(
                "This proof-of-work solution was already used. Solve a new challenge.",
                detail="pow replayed",
            )

    async def _first_use(self, signature: str) -> bool:
        keep = int(self.expires) + 1  # past it the challenge has expired anyway
        if self._redis is not None:
            return bool(await self._redis.set(self._prefix + signature, 1, nx=True, ex=keep))
        now = time.monotonic()
        if len(self._used) > self._sweep_at:
            self._used = {s: t for s, t in self._used.items() if t > now}
            self._sweep_at = max(1024, 2 * len(self._used))
        if self._used.get(signature, 0.0) > now:
            return False
        self._used[signature] = now + keep
        return True
