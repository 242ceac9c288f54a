"""Signed, offline-verifiable provenance: in-toto statements in DSSE envelopes signed by a verifier's IC
identity (`statements`, `envelopes`), and bundles that prove them on chain with only the IC root key
(`bundles`). docs/provenance.md describes the formats."""
