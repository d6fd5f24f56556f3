"""Domain errors. Each maps to one HTTP status in the web layer (see web/errors.py)."""

from __future__ import annotations


class DomainError(Exception):
    """A rule of the domain was broken; the message says which, in words a user understands."""

    status = 400
    code = "invalid"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class ValidationFailed(DomainError):
    status = 422
    code = "validation_failed"


class NotFound(DomainError):
    status = 404
    code = "not_found"


class Conflict(DomainError):
    status = 409
    code = "conflict"


class PermissionDenied(DomainError):
    status = 403
    code = "forbidden"


class InvalidTransition(Conflict):
    code = "invalid_transition"


class RateLimited(DomainError):
    """Too many attempts in too short a time; the message says when to try again."""

    status = 429
    code = "rate_limited"


class ProviderFailed(DomainError):
    """An outside system (a phone provider) refused or failed a command Threadline gave it; the message
    carries its reason. Nothing changed on our side."""

    status = 502
    code = "provider_failed"
