"""Settings of logins, tokens and the desk socket (`auth:` in the config file, CTI_AUTH__*)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from cti.features.auth.throttle import ThrottleLimits


class LoginThrottleSettings(BaseModel):
    """Failed logins allowed within `window_s`, per user name and per client address; past
    either limit the login answers 429 with Retry-After, without checking the password."""

    model_config = ConfigDict(extra="forbid")

    window_s: float = Field(default=300.0, gt=0)
    max_failures_per_user: int = Field(default=5, ge=1)
    max_failures_per_address: int = Field(default=20, ge=1)

    def limits(self) -> ThrottleLimits:
        return ThrottleLimits(
            self.window_s, self.max_failures_per_user, self.max_failures_per_address
        )


class AuthSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    login_throttle: LoginThrottleSettings = LoginThrottleSettings()
    # How long a process trusts what it last read about a token (logged out?) and its user
    # (deactivated?) before asking the database again: the delay before a logout or
    # deactivation made by another instance (or the CLI) takes effect here. This process's
    # own logouts and deactivations take effect at once.
    revocation_cache_s: float = Field(default=10.0, ge=0)
    # Largest desk-socket message accepted (bytes); bigger ones close the socket with 1009.
    ws_max_message_bytes: int = Field(default=64 * 1024, ge=1024)
    # Deepest JSON nesting accepted in a desk-socket message (the protocol needs 2).
    ws_max_json_depth: int = Field(default=32, ge=2, le=200)
