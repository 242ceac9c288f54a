"""Generated typed clients of the protocol canisters and the management canister."""
