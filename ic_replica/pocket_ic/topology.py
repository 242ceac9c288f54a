"""Subnet kinds, canister id ranges and seeds, as PocketIC lays them out (subnet ids come from the subnets' keys).

Named subnets (NNS, SNS, II, Fiduciary, Bitcoin) host their mainnet canister ranges (so mainnet ids such as
the ledger's can be created with `specified_id` there) and allocate new canisters from a generated range;
system, application and verified-application subnets host one generated range each. Generated ranges are
2^20 canister ids taken from the top of the id space downwards, so the first one starts at
`lxzze-o7777-77777-aaaaa-cai` (PocketIC's default effective canister id with one application subnet).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from ic_replica.pocket_ic.rest import ApiError, b64
from ic_replica.principal import Principal, canister_id_from_index

CANISTER_IDS_PER_SUBNET = 1 << 20
NAMED_KINDS = (("nns", "NNS"), ("sns", "SNS"), ("ii", "II"), ("fiduciary", "Fiduciary"), ("bitcoin", "Bitcoin"))
LIST_KINDS = (("system", "System"), ("application", "Application"), ("verified_application", "VerifiedApplication"))
SUBNET_SIZES = {"Application": 13, "VerifiedApplication": 13, "Fiduciary": 28, "SNS": 34, "Bitcoin": 13, "II": 28,
                "NNS": 40, "System": 13}


def _index(text: str) -> int:
    return int.from_bytes(Principal.from_text(text).raw[:8], "big")


# The mainnet ranges of the named subnets (inclusive), as canister indices.
FIXED_RANGES: dict[str, list[tuple[int, int]]] = {
    "NNS": [(_index("rwlgt-iiaaa-aaaaa-aaaaa-cai"), _index("renrk-eyaaa-aaaaa-aaada-cai")),
            (_index("qoctq-giaaa-aaaaa-aaaea-cai"), _index("n5n4y-3aaaa-aaaaa-p777q-cai"))],
    "II": [(_index("rdmx6-jaaaa-aaaaa-aaadq-cai"), _index("rdmx6-jaaaa-aaaaa-aaadq-cai")),
           (_index("uc7f6-kaaaa-aaaaq-qaaaa-cai"), _index("ijz7v-ziaaa-aaaaq-7777q-cai"))],
    "Bitcoin": [(_index("g3wsl-eqaaa-aaaan-aaaaa-cai"), _index("2qqia-xyaaa-aaaan-p777q-cai"))],
    "Fiduciary": [(_index("mf7xa-laaaa-aaaar-qaaaa-cai"), _index("qoznl-yiaaa-aaaar-7777q-cai"))],
    "SNS": [(_index("ybpmr-kqaaa-aaaaq-aaaaa-cai"), _index("ekjw2-zyaaa-aaaaq-p777q-cai"))],
}


def generated_range(k: int) -> tuple[int, int]:
    """The k-th generated range (PocketIC's `RangeGen`): from the top of the 64-bit index space down."""
    offset = ((1 << 64) - 1) // CANISTER_IDS_PER_SUBNET - 1 - k
    return offset * CANISTER_IDS_PER_SUBNET, (offset + 1) * CANISTER_IDS_PER_SUBNET - 1


def canister_index(raw: bytes) -> int | None:
    """The index of an opaque canister id (8 bytes + 0x01 0x01), or None for any other principal."""
    if len(raw) == 10 and raw[8:] == b"\x01\x01":
        return int.from_bytes(raw[:8], "big")
    return None


@dataclass
class SubnetPlan:
    """One subnet of an instance: its kind, id, seed, the ranges it hosts and the range it allocates from."""

    kind: str
    seed: bytes
    subnet_id: bytes
    ranges: list[tuple[int, int]]
    allocation: tuple[int, int]
    benchmarking: bool = False
    node_ids: list[bytes] = field(default_factory=list)

    def hosts(self, canister_id: bytes) -> bool:
        index = canister_index(canister_id)
        return index is not None and any(lo <= index <= hi for lo, hi in self.ranges)

    def to_json(self) -> dict[str, Any]:
        def rid(i: int) -> dict[str, str]:
            return {"canister_id": b64(canister_id_from_index(i).raw)}

        return {"subnet_kind": self.kind, "subnet_seed": list(self.seed), "size": SUBNET_SIZES[self.kind],
                "node_ids": [{"node_id": b64(n)} for n in self.node_ids],
                "instruction_config": "Benchmarking" if self.benchmarking else "Production",
                "canister_ranges": [{"start": rid(lo), "end": rid(hi)} for lo, hi in self.ranges]}


def _spec(value: Any, where: str) -> bool:
    """Validate one `SubnetSpec`; returns whether it asks for benchmarking instruction limits."""
    if not isinstance(value, dict):
        raise ApiError(f"Failed to deserialize the JSON body: {where} must be a SubnetSpec object")
    state = value.get("state_config", "New")
    if state != "New":
        raise ApiError(f"{where}: only `state_config: \"New\"` is supported by this server (got {state!r}): "
                       "loading subnet state from a path or the blob store is not implemented")
    instructions = value.get("instruction_config", "Production")
    if instructions not in ("Production", "Benchmarking"):
        raise ApiError(f"Failed to deserialize the JSON body: {where}.instruction_config must be \"Production\" "
                       f"or \"Benchmarking\" (got {str(instructions)[:60]!r})")
    if value.get("dts_flag", "Enabled") not in ("Enabled", "Disabled"):
        raise ApiError(f"Failed to deserialize the JSON body: {where}.dts_flag must be \"Enabled\" or \"Disabled\"")
    return bool(instructions == "Benchmarking")


def requested(config: Any) -> list[tuple[str, bool]]:
    """The subnets an `ExtendedSubnetConfigSet` asks for, as (kind, benchmarking), in PocketIC's order: named
    subnets, then system, application and verified-application subnets. Raises ApiError for an empty or
    unsupported set."""
    if not isinstance(config, dict):
        raise ApiError("Failed to deserialize the JSON body: subnet_config_set must be an object")
    wanted: list[tuple[str, bool]] = []
    for key, kind in NAMED_KINDS:
        if config.get(key) is not None:
            wanted.append((kind, _spec(config[key], key)))
    for key, kind in LIST_KINDS:
        specs = config.get(key) or []
        if not isinstance(specs, list):
            raise ApiError(f"Failed to deserialize the JSON body: {key} must be a list")
        wanted.extend((kind, _spec(s, f"{key}[{i}]")) for i, s in enumerate(specs))
    if config.get("cloud_engine"):
        raise ApiError("cloud_engine subnets are not supported by this server")
    if not wanted:
        raise ApiError("ExtendedSubnetConfigSet must contain at least one subnet")
    return wanted


def subnet_plan(kind: str, k: int, instance_seed: bytes, subnet_id: bytes, benchmarking: bool = False,
                hosted: list[tuple[int, int]] | None = None) -> SubnetPlan:
    """The k-th subnet of an instance: it hosts `hosted` (by default its kind's mainnet ranges) and allocates
    new canisters from the k-th generated range."""
    seed = hashlib.sha256(instance_seed + k.to_bytes(4, "big") + kind.encode()).digest()
    allocation = generated_range(k)
    ranges = [*(FIXED_RANGES.get(kind, []) if hosted is None else hosted), allocation]
    return SubnetPlan(kind, seed, subnet_id, ranges, allocation, benchmarking)


def plan(wanted: list[tuple[str, bool]], instance_seed: bytes, subnet_ids: list[bytes]) -> list[SubnetPlan]:
    """The plans of the `requested` subnets, with their ids (derived from each subnet's key by the caller; the
    first subnet is the root subnet), seeds, hosted ranges and allocation ranges."""
    return [subnet_plan(kind, k, instance_seed, subnet_id, benchmarking)
            for k, ((kind, benchmarking), subnet_id) in enumerate(zip(wanted, subnet_ids, strict=True))]


def plan_for_canister(index: int, k: int, instance_seed: bytes, subnet_id: bytes,
                      taken: list[tuple[int, int]]) -> SubnetPlan:
    """The subnet PocketIC adds for a `specified_id` no subnet hosts: the named subnet whose mainnet ranges hold
    it (a Bitcoin canister id: a Bitcoin subnet), else an application subnet hosting the id's aligned block of
    2^20 ids less the ranges other subnets host (`taken`). PocketIC takes that range from the mainnet routing
    table, which this server does not carry."""
    kind = next((kind for kind, ranges in FIXED_RANGES.items() if any(lo <= index <= hi for lo, hi in ranges)), None)
    if kind is not None:
        return subnet_plan(kind, k, instance_seed, subnet_id)
    allocation = generated_range(k)
    if allocation[0] <= index <= allocation[1]:
        return subnet_plan("Application", k, instance_seed, subnet_id, hosted=[])
    lo = index - index % CANISTER_IDS_PER_SUBNET
    hi = lo + CANISTER_IDS_PER_SUBNET - 1
    for start, end in [*taken, allocation]:
        if end < index:
            lo = max(lo, end + 1)
        elif start > index:
            hi = min(hi, start - 1)
    return subnet_plan("Application", k, instance_seed, subnet_id, hosted=[(lo, hi)])


def default_effective_canister_id(plans: list[SubnetPlan]) -> bytes:
    """The first id of the first application subnet's allocation range (else of a system subnet, else of
    the first subnet): where agents create canisters by default."""
    for kinds in (("Application",), ("VerifiedApplication",), ("System",)):
        for p in plans:
            if p.kind in kinds:
                return canister_id_from_index(p.allocation[0]).raw
    return canister_id_from_index(plans[0].allocation[0]).raw


def topology_json(plans: list[SubnetPlan]) -> dict[str, Any]:
    return {"subnet_configs": {Principal(p.subnet_id).to_text(): p.to_json() for p in plans},
            "default_effective_canister_id": {"canister_id": b64(default_effective_canister_id(plans))}}
