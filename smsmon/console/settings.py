"""Console settings (pydantic-settings, prefix `SMSMON_`, shared names with the store)."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ConsoleSettings(BaseSettings):
    """What `smsmon console serve` reads from the environment."""

    model_config = SettingsConfigDict(env_prefix="SMSMON_", extra="ignore")

    alert_db_url: str = "sqlite:///./data/alerts.db"
    console_secret: SecretStr | None = None
    msisdn_secret: SecretStr | None = None
    msisdn_key_id: str = "k1"
    console_host: str = "127.0.0.1"
    console_port: int = Field(default=8088, ge=1, le=65535)
    # Set true behind TLS so browsers send the session cookie over HTTPS only.
    console_https_only: bool = False
    console_session_hours: float = Field(default=8.0, gt=0, le=24 * 7)
    console_max_query_bytes: int = Field(default=2048, ge=256, le=65536)
    console_login_attempts: int = Field(default=5, ge=1)
    console_login_window_seconds: float = Field(default=300.0, gt=0)
    console_export_max_rows: int = Field(default=1_000_000, ge=1)
    console_bulk_max_rows: int = Field(default=10_000, ge=1)

    def session_secret(self) -> str:
        """The session signing key, or an actionable error."""
        if self.console_secret is None or len(self.console_secret.get_secret_value()) < 16:
            raise SystemExit(
                "SMSMON_CONSOLE_SECRET is not set (or shorter than 16 characters): the console "
                "signs its session cookies with it. Set it to a long random string, e.g. "
                "`openssl rand -hex 32`, and keep it across restarts."
            )
        return self.console_secret.get_secret_value()

    def hashing_secret(self) -> bytes | None:
        """The msisdn HMAC secret, or None when number search is not configured."""
        if self.msisdn_secret is None or not self.msisdn_secret.get_secret_value():
            return None
        return self.msisdn_secret.get_secret_value().encode()
