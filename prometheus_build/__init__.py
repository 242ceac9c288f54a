"""The one reproducible canister build recipe (used by `make build`, the verifier and `prometheus verify`)."""

from prometheus_build.recipe import BuildError, BuildResult, build_canister, discover_canisters

__all__ = ["BuildError", "BuildResult", "build_canister", "discover_canisters"]
