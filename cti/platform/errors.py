"""Our own typed exceptions. Adapters translate vendor errors into these; the API maps them."""

from __future__ import annotations


class CtiError(Exception):
    """Base of every error the service raises on purpose. `error_id` is stable for clients."""

    error_id = "cti_error"
    http_status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(CtiError):
    """A configuration or rule file is wrong; the message names file, line, column and reason."""

    error_id = "config_invalid"
    http_status = 422


class NotFound(CtiError):
    error_id = "not_found"
    http_status = 404


class Conflict(CtiError):
    error_id = "conflict"
    http_status = 409


class Forbidden(CtiError):
    error_id = "forbidden"
    http_status = 403


class Unauthorized(CtiError):
    error_id = "unauthorized"
    http_status = 401


class TelephonyError(CtiError):
    """The PBX refused or failed an operation."""

    error_id = "telephony_error"
    http_status = 502


class TelephonyUnavailable(TelephonyError):
    """The PBX cannot be reached (connection refused, DNS, socket dropped)."""

    error_id = "telephony_unavailable"
    http_status = 503


class TelephonyTimeout(TelephonyError):
    """A PBX request did not answer in time."""

    error_id = "telephony_timeout"
    http_status = 504


class TelephonyAuthError(TelephonyError):
    """The PBX rejected our credentials."""

    error_id = "telephony_auth"
    http_status = 502


class ChannelGone(TelephonyError):
    """The channel or bridge no longer exists on the PBX (ARI 404)."""

    error_id = "channel_gone"
    http_status = 404


class IllegalTransition(CtiError):
    """A state machine was asked for a transition its current state does not allow."""

    error_id = "illegal_transition"
    http_status = 409

    def __init__(self, machine: str, state: str, event: str) -> None:
        super().__init__(f"{machine}: cannot handle {event} in state {state}")
        self.machine = machine
        self.state = state
        self.event = event


class DatabaseUnavailable(CtiError):
    """The database (the record) cannot be reached now: a restart, a failover. Retry."""

    error_id = "database_unavailable"
    http_status = 503


class ClusterUnavailable(CtiError):
    """The cluster's shared store (Redis) cannot be reached: this node goes on alone."""

    error_id = "cluster_unavailable"
    http_status = 503
