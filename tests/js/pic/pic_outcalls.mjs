// PicJS (@dfinity/pic, unmodified) mocking a canister's HTTPS outcall, as PocketIC test suites do:
// submit a call that makes an outcall, tick, list the pending outcalls, answer one, await the call.
// usage: node pic_outcalls.mjs <outcall.wasm>   prints one JSON line; tests/test_pocket_ic_server.py checks it
import { readFileSync } from 'node:fs';
import { PocketIc, PocketIcServer } from '@dfinity/pic';
import { IDL } from '@icp-sdk/core/candid';

const Header = IDL.Record({ name: IDL.Text, value: IDL.Text });
const Result = IDL.Record({ status: IDL.Nat, headers: IDL.Vec(Header), body: IDL.Vec(IDL.Nat8) });
const TransformArgs = IDL.Record({ response: Result, context: IDL.Vec(IDL.Nat8) });
const Args = IDL.Record({
  url: IDL.Text,
  max_response_bytes: IDL.Opt(IDL.Nat64),
  method: IDL.Variant({ get: IDL.Null, head: IDL.Null, post: IDL.Null }),
  headers: IDL.Vec(Header),
  body: IDL.Opt(IDL.Vec(IDL.Nat8)),
  transform: IDL.Opt(IDL.Record({ function: IDL.Func([TransformArgs], [Result], ['query']), context: IDL.Vec(IDL.Nat8) })),
  is_replicated: IDL.Opt(IDL.Bool),
});
const FetchResult = IDL.Variant({ ok: Result, err: IDL.Tuple(IDL.Text, IDL.Text) });
const idlFactory = () => IDL.Service({ fetch: IDL.Func([Args, IDL.Nat], [FetchResult], []) });

const out = {};
const server = await PocketIcServer.start();
try {
  const pic = await PocketIc.create(server.getUrl());
  const canisterId = await pic.createCanister();
  await pic.installCode({ canisterId, wasm: readFileSync(process.argv[2]) });
  const actor = pic.createDeferredActor(idlFactory, canisterId);
  const call = (url, transform) => actor.fetch({
    url, max_response_bytes: [4096n], method: { post: null }, headers: [{ name: 'Accept', value: 'text/plain' }],
    body: [new TextEncoder().encode('question')], is_replicated: [],
    transform: transform ? [{ function: [canisterId, 'transform'], context: new TextEncoder().encode(transform) }] : [],
  }, 30_000_000_000n);
  const first = await call('https://example.com/answer', 'strip');
  const second = await call('https://example.com/other');
  await pic.tick();
  await pic.tick();
  const pending = await pic.getPendingHttpsOutcalls();
  out.pending = pending.map(p => ({ url: p.url, method: p.httpMethod, body: new TextDecoder().decode(p.body),
    headers: p.headers, max: Number(p.maxResponseBytes) }));
  await pic.mockPendingHttpsOutcall({ subnetId: pending[0].subnetId, requestId: pending[0].requestId,
    response: { type: 'success', statusCode: 200, headers: [['X-Dropped', 'yes']], body: new TextEncoder().encode('42') } });
  await pic.mockPendingHttpsOutcall({ subnetId: pending[1].subnetId, requestId: pending[1].requestId,
    response: { type: 'reject', statusCode: 2, message: 'unreachable host' } });
  const ok = await first();
  out.ok = { status: Number(ok.ok.status), headers: ok.ok.headers, body: new TextDecoder().decode(new Uint8Array(ok.ok.body)) };
  out.rejected = (await second()).err;
  out.afterwards = (await pic.getPendingHttpsOutcalls()).length;
  try {
    await pic.mockPendingHttpsOutcall({ subnetId: pending[0].subnetId, requestId: pending[0].requestId,
      response: { type: 'success', statusCode: 200, headers: [], body: new Uint8Array() } });
    out.again = 'accepted';
  } catch (e) { out.again = String(e.message).slice(0, 200); }
  await pic.tearDown();
} finally {
  await server.stop();
}
console.log(JSON.stringify(out, (k, v) => (typeof v === 'bigint' ? v.toString() : v)));
