"""The SDK's exceptions: one type per thing a caller can act on."""

from __future__ import annotations


class SdkError(Exception):
    """Base class for every error the SDK raises."""


class CallRejectedError(SdkError):
    """The canister or the IC rejected the call (reject code, message, optional IC error code)."""

    def __init__(self, code: int, message: str, error_code: str | None = None) -> None:
        super().__init__(f"rejected (code {code}{', ' + error_code if error_code else ''}): {message}")
        self.code = code
        self.reject_message = message
        self.error_code = error_code


class TransportError(SdkError):
    """The network could not be reached or answered with an HTTP error; may be transient."""

    def __init__(self, message: str, *, transient: bool = True, status: int | None = None) -> None:
        super().__init__(message)
        self.transient = transient
        self.status = status


class CertificateError(SdkError):
    """A response's certificate or signature did not verify: never trust its content."""


class IdentityError(SdkError):
    """An identity could not be found, read, decrypted or created."""


class ConfigError(SdkError):
    """A network name, URL or canister id is not usable."""
