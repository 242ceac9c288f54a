"""The Prometheus SDK shared by the CLI and the verifier: networks, identities, agents with verified
certificates, and typed errors."""

from prometheus_sdk.agent import Connection, connect
from prometheus_sdk.errors import (
           CallRejectedError,
           CertificateError,
           ConfigError,
           IdentityError,
           SdkError,
           TransportError,
)
from prometheus_sdk.network import Network, resolve
from prometheus_sdk.principal import Principal

__all__ = ["CallRejectedError", "CertificateError", "ConfigError", "Connection", "IdentityError", "Network",
           "Principal", "SdkError", "TransportError", "connect", "resolve"]
