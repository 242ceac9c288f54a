// An independent client (the DFINITY JS agent, certificate and query-signature verification on) driving
// a replica: query, update, read_state. Prints one JSON line; exits 1 with the error on any failure.
// Usage: node conformance.mjs <url> <canister_id> <expected_module_hash_hex>
import { HttpAgent, Actor, CanisterStatus } from '@dfinity/agent';
import { Ed25519KeyIdentity } from '@dfinity/identity';
import { Principal } from '@dfinity/principal';

const [url, canisterText, expectedHash] = process.argv.slice(2);
const idlFactory = ({ IDL }) => IDL.Service({
  inc: IDL.Func([], [IDL.Nat], []),
  get: IDL.Func([], [IDL.Nat], ['query']),
  whoami: IDL.Func([], [IDL.Principal], []),
});

try {
  const identity = Ed25519KeyIdentity.generate();
  const agent = await HttpAgent.create({ host: url, identity, shouldFetchRootKey: true, verifyQuerySignatures: true });
  const canisterId = Principal.fromText(canisterText);
  const actor = Actor.createActor(idlFactory, { agent, canisterId });
  const before = await actor.get();
  const incremented = await actor.inc();
  const after = await actor.get();
  const caller = await actor.whoami();
  const status = await CanisterStatus.request({ canisterId, agent, paths: ['module_hash', 'controllers', 'time'] });
  const moduleHash = status.get('module_hash');
  const result = {
    before: before.toString(), incremented: incremented.toString(), after: after.toString(),
    caller_matches: caller.toText() === identity.getPrincipal().toText(),
    module_hash_matches: moduleHash === expectedHash,
    controllers: (status.get('controllers') || []).map((p) => p.toText()),
    time_ok: status.get('time') instanceof Date,
  };
  console.log(JSON.stringify(result));
} catch (err) {
  console.error(`conformance client failed: ${err && err.message ? err.message : err}`);
  process.exit(1);
}
