// PicJS (@dfinity/pic, unmodified) against the server named by POCKET_IC_BIN (prometheus-pocket-ic in the tests).
// usage: node pic_probe.mjs <counter.wasm>   prints one JSON line of observations; tests/test_pocket_ic_server.py
// checks them
import { readFileSync } from 'node:fs';
import { PocketIc, PocketIcServer, SubnetStateType } from '@dfinity/pic';
import { IDL } from '@icp-sdk/core/candid';
import { HttpAgent, Actor } from '@icp-sdk/core/agent';

const idlFactory = ({ IDL }) => IDL.Service({
  get: IDL.Func([], [IDL.Nat], ['query']),
  inc: IDL.Func([], [IDL.Nat], []),
  incThenTrap: IDL.Func([], [], []),
  now: IDL.Func([], [IDL.Int], ['query']),
  whoami: IDL.Func([], [IDL.Principal], []),
});

const out = {};
const server = await PocketIcServer.start();
try {
  const pic = await PocketIc.create(server.getUrl(), {
    nns: { state: { type: SubnetStateType.New } },
    application: [{ state: { type: SubnetStateType.New } }, { state: { type: SubnetStateType.New } }],
  });
  const topology = await pic.getTopology();
  out.kinds = Object.values(topology).map(s => s.type).sort();
  const nns = await pic.getNnsSubnet();
  const apps = await pic.getApplicationSubnets();
  out.apps = apps.length;
  const wasm = readFileSync(process.argv[2]);
  const arg = IDL.encode([IDL.Nat], [5n]);
  const { actor, canisterId } = await pic.setupCanister({ idlFactory, wasm, arg });
  out.get = Number(await actor.get());
  out.inc = Number(await actor.inc());
  out.onApp = (await pic.getCanisterSubnetId(canisterId)).toText() === apps[0].id.toText();
  const onNns = await pic.setupCanister({ idlFactory, wasm, arg, targetSubnetId: nns.id });
  out.onNns = (await pic.getCanisterSubnetId(onNns.canisterId)).toText() === nns.id.toText();
  out.nnsInc = Number(await onNns.actor.inc());
  try { await actor.incThenTrap(); out.trap = 'no error'; } catch (e) { out.trap = String(e.message).slice(0, 300); }
  const t0 = await pic.getTime();
  await pic.advanceTime(60_000);
  await pic.tick();
  out.advanced = (await pic.getTime()) - t0;
  out.nowMatches = Number((await actor.now()) / 1_000_000n) === Math.floor(await pic.getTime());
  try { await pic.setTime(t0); out.backwards = 'allowed'; } catch (e) { out.backwards = String(e.message).slice(0, 200); }
  const cycles = await pic.getCyclesBalance(canisterId);
  out.addCycles = (await pic.addCycles(canisterId, 1000)) - cycles;
  await pic.setStableMemory(canisterId, new TextEncoder().encode('from picjs'));
  out.stable = new TextDecoder().decode((await pic.getStableMemory(canisterId)).slice(0, 10));
  out.controllers = (await pic.getControllers(canisterId)).map(p => p.toText());
  out.rootKey = (await pic.getPubKey(nns.id)).length;
  const port = await pic.makeLive();
  const agent = await HttpAgent.create({ host: `http://127.0.0.1:${port}`, shouldFetchRootKey: true });
  const live = Actor.createActor(idlFactory, { agent, canisterId });
  out.liveInc = Number(await live.inc());
  out.liveGet = Number(await live.get());
  await pic.stopLive();
  await pic.tearDown();
  out.ok = true;
} finally {
  await server.stop();
}
console.log(JSON.stringify(out, (k, v) => (typeof v === "bigint" ? v.toString() : v)));
