"""One exception hierarchy: every error sidechat raises on purpose is a `SidechatError`.

`message` is always safe to show a visitor; `detail` is for the server log only.
"""

from __future__ import annotations

__all__ = [
    "BadRequest",
    "Busy",
    "ConfigError",
    "Forbidden",
    "NotFound",
    "PayloadTooLarge",
    "ProviderError",
    "Restarting",
    "SidechatError",
]


class SidechatError(Exception):
    status_code: int = 500
    code: str = "internal_error"

    def __init__(self, message: str, *, detail: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail if detail is not None else message


class BadRequest(SidechatError):
    status_code = 400
    code = "bad_request"


class Forbidden(SidechatError):
    status_code = 403
    code = "forbidden"


class NotFound(SidechatError):
    status_code = 404
    code = "not_found"


class Busy(SidechatError):
    """Too much is going on; the client should retry later."""

    status_code = 429
    code = "busy"


class Restarting(SidechatError):
    """The server is stopping (a restart or a deploy): it takes no new turns."""

    status_code = 503
    code = "restarting"


class PayloadTooLarge(SidechatError):
    status_code = 413
    code = "payload_too_large"


class ConfigError(SidechatError):
    code = "config_error"


class ProviderError(SidechatError):
    """The model upstream failed. `retryable` is true for faults worth another try
    (connection errors, 429, 5xx); `retry_after` is the upstream's own hint in seconds."""

    status_code = 502
    code = "provider_error"

    def __init__(
        self,
        message: str,
        *,
        detail: str | None = None,
        retryable: bool = False,
        upstream_status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, detail=detail)
        self.retryable = retryable
        self.upstream_status = upstream_status
        self.retry_after = retry_after
