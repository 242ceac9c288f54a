"""The verifier worker: fetch a developer's source safely, rebuild it in a sandbox, attest or diverge."""
