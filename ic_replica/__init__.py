"""An embedded Internet Computer replica that runs real moc-compiled canisters under wasmtime.

Start with `Replica` (see docs/replica.md): create canisters, install code, make update and query calls,
advance time, tick rounds, and persist everything to a state directory.
"""

from ic_replica import candid
from ic_replica.errors import CallRejected, Reject, RejectCode, ReplicaError
from ic_replica.principal import ANONYMOUS, MANAGEMENT, Principal
from ic_replica.replica import Limits, Replica

__all__ = ["ANONYMOUS", "MANAGEMENT", "CallRejected", "Limits", "Principal", "Reject", "RejectCode", "Replica",
           "ReplicaError", "candid"]
