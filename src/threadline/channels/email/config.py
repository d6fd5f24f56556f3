"""The configuration of one email channel (one support address). Secrets are SecretStr: encrypted at rest,
masked in the API."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from threadline.domain.contacts import normalise_email
from threadline.domain.errors import ValidationFailed


class EmailChannelConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    address: str = Field(description="The support address customers write to, e.g. support@example.com")
    from_name: str = Field(default="", max_length=200,
                           description='Display name of replies; "{agent}" is replaced by the agent\'s name')
    signature: str = Field(default="", max_length=5000, description="Appended to every reply (plain text)")
    inbound: Literal["smtp", "imap", "sendgrid", "mailgun"] = Field(
        default="smtp", description="How mail arrives: the embedded SMTP receiver, an IMAP mailbox, or a "
                                    "SendGrid Inbound Parse / Mailgun route posting to the channel's hook URL")
    plus_addressing: bool = Field(default=True, description="Reply-To: support+c<conversation>@… as a thread token")
    subject_tag: bool = Field(default=False, description="Add [#<conversation>] to reply subjects")
    reply_all: bool = Field(default=True, description="Keep the customer's CC recipients on replies")
    max_attachment_bytes: int = Field(default=10 * 1024 * 1024, ge=0, le=100 * 1024 * 1024)
    # Outbound SMTP (replies)
    smtp_host: str | None = Field(default=None, max_length=255)
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_security: Literal["starttls", "tls", "none"] = "starttls"
    smtp_username: str = Field(default="", max_length=320)
    smtp_password: SecretStr | None = None
    smtp_verify_tls: bool = True
    smtp_timeout_seconds: float = Field(default=30.0, gt=0, le=300)
    # Inbound IMAP
    imap_host: str | None = Field(default=None, max_length=255)
    imap_port: int = Field(default=993, ge=1, le=65535)
    imap_security: Literal["tls", "none"] = "tls"
    imap_verify_tls: bool = True
    imap_username: str = Field(default="", max_length=320)
    imap_password: SecretStr | None = None
    imap_folder: str = Field(default="INBOX", min_length=1, max_length=200)
    imap_after: Literal["seen", "move"] = Field(default="seen", description="Once stored: mark \\Seen, or move")
    imap_move_to: str = Field(default="Threadline", max_length=200)
    imap_poll_seconds: float = Field(default=60.0, ge=1, le=3600, description="Without IDLE: poll this often")
    # Inbound webhooks
    mailgun_signing_key: SecretStr | None = None
    sendgrid_basic_auth: SecretStr | None = Field(
        default=None, description='Optional "user:password" that SendGrid must send (put it in the hook URL)')

    @field_validator("address")
    @classmethod
    def _address(cls, v: str) -> str:
        try:
            return normalise_email(v)
        except ValidationFailed as exc:
            raise ValueError(exc.message) from None

    @property
    def local_part(self) -> str:
        return self.address.split("@", 1)[0]

    @property
    def domain(self) -> str:
        return self.address.split("@", 1)[1]
