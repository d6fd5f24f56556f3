"""Password hashing (argon2id), opaque tokens (stored as SHA-256), secrets encrypted at rest (Fernet),
HMAC signatures for channel and webhook payloads."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters
# A valid hash of a random password: verifying against it costs the same time as a real check,
# so a login for an unknown user takes as long as one with a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))

MIN_PASSWORD = 10


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def password_problem(password: str) -> str | None:
    """Why a password is not acceptable, or None."""
    if len(password) < MIN_PASSWORD:
        return f"a password needs at least {MIN_PASSWORD} characters"
    if len(password) > 1024:
        return "a password is at most 1024 characters"
    return None


def new_token(prefix: str = "tl") -> str:
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def hash_token(token: str) -> str:
    """Tokens are 256 random bits, so a fast hash is enough (and lets us look them up)."""
    return hashlib.sha256(token.encode()).hexdigest()


def sign(secret: str, body: bytes, timestamp: str | None = None) -> str:
    """HMAC-SHA256 over ``"{timestamp}.{body}"`` (or just the body), as ``sha256=<hex>``."""
    msg = (timestamp.encode() + b"." + body) if timestamp is not None else body
    return "sha256=" + hmac.new(secret.encode(), msg, hashlib.sha256).hexdigest()


def signature_matches(secret: str, body: bytes, signature: str, timestamp: str | None = None) -> bool:
    return hmac.compare_digest(sign(secret, body, timestamp), signature.strip())


class SecretBox:
    """Encrypts JSON-able config (channel credentials) with a key derived from the instance secret."""

    def __init__(self, secret_key: str) -> None:
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"threadline", info=b"config-at-rest").derive(
            secret_key.encode()
        )
        self._fernet = Fernet(base64.urlsafe_b64encode(key))

    def encrypt(self, data: dict[str, Any]) -> str:
        return self._fernet.encrypt(json.dumps(data, separators=(",", ":")).encode()).decode()

    def decrypt(self, token: str) -> dict[str, Any]:
        try:
            return json.loads(self._fernet.decrypt(token.encode()))
        except InvalidToken:
            raise ValueError(
                "cannot decrypt channel config: THREADLINE_SECRET_KEY differs from the one it was saved with"
            ) from None
