"""The one reproducible canister build recipe (used by `make build`, the verifier and `prometheus verify`).

Modules are imported where used (`prometheus_build.recipe`, `.sandbox`, ...): the CLI imports this package's
error types on every command, and the recipe's imports would cost each command ~20 ms for nothing."""
