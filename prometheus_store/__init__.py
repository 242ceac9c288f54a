"""The consumer side: an index of the registry's ICRC-3 log (`index`), verification tiers derived from it
(`tiers`), and what serves it: a web view and a registry-compatible REST API (`web`) and an MCP discovery
server (`discovery`). Reads the chain through the SDK only."""
