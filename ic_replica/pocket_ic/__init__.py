"""A PocketIC-compatible server over the embedded replica (`prometheus-pocket-ic`).

It accepts PocketIC's command line and serves PocketIC's REST API, so the `pocket-ic` Python client and PicJS
run unmodified against it (`POCKET_IC_BIN=$(which prometheus-pocket-ic)`). One module per job:

| module | holds |
|---|---|
| `cli.py` | the command line (`--port-file`, `--ttl`, `--ip-addr`, `--port`), the port file, TTL exit |
| `server.py` | HTTP routing: `/status`, `/instances`, `/blobstore`, `/http_gateway`, every instance endpoint |
| `instance.py` | one instance: its subnets (a `Replica` each), shared clock, call routing, auto progress |
| `topology.py` | subnet kinds, canister id ranges, subnet ids and seeds, the topology JSON |
| `rest.py` | the JSON shapes: base64 fields, effective principals, reject responses and their code names |
| `gateway.py` | the IC HTTP interface of an instance (`/instances/<id>/api/...`) and the HTTP gateway |

See docs/pocket-ic.md for what is supported.
"""
