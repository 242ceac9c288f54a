// The consent page's script (served by the auth_server canister as a certified response, /consent.js): the user
// approves or declines an authorization request with a signed IC call made by this browser (and, on /grants,
// revokes what this browser approved). The identity is an
// ECDSA P-256 key made with WebCrypto and kept, not extractable, in this browser's IndexedDB: the grant is bound
// to its self-authenticating principal. The call goes to the IC HTTP interface of the page's own origin
// (/api/v3/canister/<id>/call, then read_state polling when the answer is not ready); the reply's certificate is
// not checked here (a browser trusts the origin that served this script). Against clickjacking, the buttons work
// only once the page has been visible for a moment and the pointer or keyboard has been used on it. After a
// decline the page offers the way back to the client (it may be anyone's site) instead of going there.
// Written for this page, not a general agent: CBOR, the request id, the principal and the few Candid values
// `approve` / `deny` take and give.
'use strict';
(() => {
  const box = document.getElementById('consent');
  if (!box) return;
  const requestId = box.dataset.requestId;
  const canisterText = box.dataset.canister;
  const status = document.getElementById('consent-status');
  const who = document.getElementById('consent-principal');
  const say = (text) => { status.textContent = text; };
  const enc = new TextEncoder();
  const concat = (...parts) => {
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) { out.set(p, at); at += p.length; }
    return out;
  };
  const sha256 = async (bytes) => new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));

  // ---- SHA-224 (WebCrypto has none; a principal is SHA-224 of the public key)
  const K = new Uint32Array([
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98,
    0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
    0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8,
    0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
    0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819,
    0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
    0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
    0xc67178f2]);
  const sha224 = (msg) => {
    const h = new Uint32Array([0xc1059ed8, 0x367cd507, 0x3070dd17, 0xf70e5939, 0xffc00b31, 0x68581511, 0x64f98fa7,
      0xbefa4fa4]);
    const len = msg.length;
    const padded = new Uint8Array(((len + 9 + 63) >> 6) << 6);
    padded.set(msg);
    padded[len] = 0x80;
    new DataView(padded.buffer).setUint32(padded.length - 4, len * 8);
    const w = new Uint32Array(64);
    const rotr = (x, n) => (x >>> n) | (x << (32 - n));
    for (let off = 0; off < padded.length; off += 64) {
      const view = new DataView(padded.buffer, off, 64);
      for (let i = 0; i < 16; i++) w[i] = view.getUint32(i * 4);
      for (let i = 16; i < 64; i++) {
        const s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >>> 3);
        const s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >>> 10);
        w[i] = (w[i - 16] + s0 + w[i - 7] + s1) >>> 0;
      }
      let [a, b, c, d, e, f, g, k] = h;
      for (let i = 0; i < 64; i++) {
        const t1 = (k + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i]) >>> 0;
        const t2 = ((rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c))) >>> 0;
        k = g; g = f; f = e; e = (d + t1) >>> 0; d = c; c = b; b = a; a = (t1 + t2) >>> 0;
      }
      const add = [a, b, c, d, e, f, g, k];
      for (let i = 0; i < 8; i++) h[i] = (h[i] + add[i]) >>> 0;
    }
    const out = new Uint8Array(28);
    for (let i = 0; i < 7; i++) new DataView(out.buffer).setUint32(i * 4, h[i]);
    return out;
  };

  // ---- principals (textual form: base32 of CRC-32 then the bytes, in groups of 5)
  const crc32 = (bytes) => {
    let c = 0xffffffff;
    for (const b of bytes) {
      c ^= b;
      for (let i = 0; i < 8; i++) c = (c >>> 1) ^ (0xedb88320 & -(c & 1));
    }
    return (c ^ 0xffffffff) >>> 0;
  };
  const principalText = (bytes) => {
    const crc = new Uint8Array(4);
    new DataView(crc.buffer).setUint32(0, crc32(bytes));
    const data = concat(crc, bytes);
    const alphabet = 'abcdefghijklmnopqrstuvwxyz234567';
    let bits = 0; let value = 0; let out = '';
    for (const b of data) {
      value = (value << 8) | b; bits += 8;
      while (bits >= 5) { out += alphabet[(value >>> (bits - 5)) & 31]; bits -= 5; }
    }
    if (bits > 0) out += alphabet[(value << (5 - bits)) & 31];
    return out.match(/.{1,5}/g).join('-');
  };
  const principalBytes = (text) => {
    const alphabet = 'abcdefghijklmnopqrstuvwxyz234567';
    let bits = 0; let value = 0; const out = [];
    for (const ch of text.replace(/-/g, '')) {
      value = (value << 5) | alphabet.indexOf(ch); bits += 5;
      if (bits >= 8) { out.push((value >>> (bits - 8)) & 255); bits -= 8; }
    }
    return new Uint8Array(out.slice(4));
  };

  // ---- CBOR (the subset envelopes and certificates use)
  const cborHead = (major, n) => {
    const big = BigInt(n);
    if (big < 24n) return new Uint8Array([(major << 5) | Number(big)]);
    const sizes = [[256n, 24, 1], [65536n, 25, 2], [4294967296n, 26, 4], [1n << 64n, 27, 8]];
    for (const [limit, info, len] of sizes) {
      if (big < limit) {
        const out = new Uint8Array(1 + len);
        out[0] = (major << 5) | info;
        for (let i = 0; i < len; i++) out[len - i] = Number((big >> BigInt(8 * i)) & 255n);
        return out;
      }
    }
    throw new Error('number too large');
  };
  const cborEncode = (v) => {
    if (v instanceof Uint8Array) return concat(cborHead(2, v.length), v);
    if (typeof v === 'string') { const b = enc.encode(v); return concat(cborHead(3, b.length), b); }
    if (typeof v === 'bigint' || typeof v === 'number') return cborHead(0, v);
    if (Array.isArray(v)) return concat(cborHead(4, v.length), ...v.map(cborEncode));
    const keys = Object.keys(v);
    return concat(cborHead(5, keys.length), ...keys.flatMap((k) => [cborEncode(k), cborEncode(v[k])]));
  };
  const cborDecode = (bytes) => {
    let at = 0;
    const item = (depth) => {
      if (depth > 64 || at >= bytes.length) throw new Error('malformed CBOR');
      const first = bytes[at++]; const major = first >> 5; const info = first & 31;
      let n = 0n;
      if (info < 24) n = BigInt(info);
      else if (info <= 27) { const len = 1 << (info - 24); for (let i = 0; i < len; i++) n = (n << 8n) | BigInt(bytes[at++]); }
      else throw new Error('unsupported CBOR');
      const count = Number(n);
      switch (major) {
        case 0: return n;
        case 2: { const b = bytes.slice(at, at + count); at += count; return b; }
        case 3: { const b = bytes.slice(at, at + count); at += count; return new TextDecoder().decode(b); }
        case 4: { const a = []; for (let i = 0; i < count; i++) a.push(item(depth + 1)); return a; }
        case 5: { const m = {}; for (let i = 0; i < count; i++) { const k = item(depth + 1); m[k] = item(depth + 1); } return m; }
        case 6: return item(depth + 1);
        default: throw new Error('unsupported CBOR');
      }
    };
    return item(0);
  };

  // ---- the request id (the representation-independent hash of the content map)
  const leb = (n) => {
    let x = BigInt(n); const out = [];
    do { let b = Number(x & 127n); x >>= 7n; if (x > 0n) b |= 128; out.push(b); } while (x > 0n);
    return new Uint8Array(out);
  };
  const hashValue = async (v) => {
    if (v instanceof Uint8Array) return sha256(v);
    if (typeof v === 'string') return sha256(enc.encode(v));
    if (typeof v === 'bigint') return sha256(leb(v));
    if (Array.isArray(v)) return sha256(concat(...(await Promise.all(v.map(hashValue)))));
    throw new Error('cannot hash this value');
  };
  const requestIdOf = async (content) => {
    const pairs = await Promise.all(Object.keys(content).map(async (k) => concat(await sha256(enc.encode(k)), await hashValue(content[k]))));
    pairs.sort((a, b) => { for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i] - b[i]; return 0; });
    return sha256(concat(...pairs));
  };

  // ---- the identity: a P-256 key this browser keeps (IndexedDB), never exported
  const db = () => new Promise((resolve, reject) => {
    const open = indexedDB.open('prometheus-auth', 1);
    open.onupgradeneeded = () => open.result.createObjectStore('keys');
    open.onsuccess = () => resolve(open.result);
    open.onerror = () => reject(open.error);
  });
  const stored = async (store, op) => new Promise((resolve, reject) => {
    const r = op(store);
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
  const identity = async () => {
    const d = await db();
    const keys = () => d.transaction('keys', 'readwrite').objectStore('keys');
    let pair = await stored(keys(), (s) => s.get('identity'));
    if (!pair) {
      const made = await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign', 'verify']);
      try { await stored(keys(), (s) => s.add(made, 'identity')); } catch (e) { /* another tab stored one first */ }
      pair = await stored(keys(), (s) => s.get('identity')); // whichever was stored is the identity
    }
    const der = new Uint8Array(await crypto.subtle.exportKey('spki', pair.publicKey));
    return { pair, der, principal: concat(sha224(der), new Uint8Array([2])) };
  };

  // ---- Candid: `(text)` in, `variant { ok : record { redirect_to : text }; err : AuthError }` out
  const idlHash = (name) => { let h = 0; for (const b of enc.encode(name)) h = (h * 223 + b) >>> 0; return h; };
  const textArg = (t) => { const b = enc.encode(t); return concat(enc.encode('DIDL'), new Uint8Array([0, 1, 0x71]), leb(b.length), b); };
  const noArg = () => concat(enc.encode('DIDL'), new Uint8Array([0, 0]));
  const decodeNat = (bytes) => { // `(nat)`: no type table, one argument of type nat (0x7d)
    if (bytes.length < 7 || bytes[4] !== 0 || bytes[5] !== 1 || bytes[6] !== 0x7d) throw new Error('unexpected reply');
    let r = 0n; let s = 0n; let at = 7; let b;
    do { b = bytes[at++]; r |= BigInt(b & 127) << s; s += 7n; } while (b & 128);
    return r;
  };
  const decodeResult = (bytes) => {
    let at = 4;
    const uleb = () => { let r = 0n; let s = 0n; let b; do { b = bytes[at++]; r |= BigInt(b & 127) << s; s += 7n; } while (b & 128); return r; };
    const sleb = () => { let r = 0n; let s = 0n; let b; do { b = bytes[at++]; r |= BigInt(b & 127) << s; s += 7n; } while (b & 128); if (b & 64) r -= 1n << s; return r; };
    const types = [];
    for (let n = Number(uleb()); n > 0; n--) {
      const op = Number(sleb());
      if (op === -20 || op === -21) {
        const fields = [];
        for (let m = Number(uleb()); m > 0; m--) fields.push([Number(uleb()), Number(sleb())]);
        types.push({ op, fields });
      } else if (op === -18 || op === -19) types.push({ op, inner: Number(sleb()) });
      else throw new Error('unexpected Candid type');
    }
    if (Number(uleb()) !== 1) throw new Error('unexpected reply');
    const root = types[Number(sleb())];
    const tag = Number(uleb());
    const [hash, fieldType] = root.fields[tag];
    if (hash === idlHash('ok')) {
      const record = types[fieldType];
      if (record.fields.length !== 1 || record.fields[0][0] !== idlHash('redirect_to')) throw new Error('unexpected reply');
      const len = Number(uleb());
      return { ok: new TextDecoder().decode(bytes.slice(at, at + len)) };
    }
    const reasons = ['NotAuthorized', 'NotFound', 'InvalidArgument', 'Unavailable'];
    const inner = types[fieldType];
    const which = inner && inner.fields ? inner.fields[Number(uleb())][0] : -1;
    return { err: reasons.find((r) => idlHash(r) === which) || 'refused' };
  };

  // ---- hash tree lookup in a certificate
  const lookup = (tree, path) => {
    const flatten = (t) => (t[0] === 1n ? [...flatten(t[1]), ...flatten(t[2])] : [t]);
    let node = tree;
    for (const label of path) {
      const found = flatten(node).find((t) => t[0] === 2n && t[1].length === label.length && t[1].every((b, i) => b === label[i]));
      if (!found) return null;
      node = found[2];
    }
    return node[0] === 3n ? node[1] : null;
  };

  // ---- one signed call
  const signed = async (id, content) => {
    const rid = await requestIdOf(content);
    const sig = new Uint8Array(await crypto.subtle.sign({ name: 'ECDSA', hash: 'SHA-256' }, id.pair.privateKey,
      concat(new Uint8Array([10]), enc.encode('ic-request'), rid)));
    const envelope = concat(new Uint8Array([0xd9, 0xd9, 0xf7]), cborEncode({ content, sender_pubkey: id.der, sender_sig: sig }));
    return { rid, envelope };
  };
  const post = async (url, body) => {
    const r = await fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/cbor' }, body });
    return { status: r.status, body: new Uint8Array(await r.arrayBuffer()) };
  };
  const outcome = (certificate, rid) => {
    const tree = cborDecode(certificate).tree;
    const state = lookup(tree, [enc.encode('request_status'), rid, enc.encode('status')]);
    const stateText = state ? new TextDecoder().decode(state) : '';
    if (stateText === 'replied') return { reply: lookup(tree, [enc.encode('request_status'), rid, enc.encode('reply')]) };
    if (stateText === 'rejected') return { reject: new TextDecoder().decode(lookup(tree, [enc.encode('request_status'), rid, enc.encode('reject_message')])) };
    return null;
  };
  const call = async (id, method, arg) => {
    const canister = principalBytes(canisterText);
    const expiry = (BigInt(Date.now()) + 240000n) * 1000000n;
    const content = { request_type: 'call', canister_id: canister, method_name: method, arg,
      sender: id.principal, ingress_expiry: expiry, nonce: crypto.getRandomValues(new Uint8Array(16)) };
    const { rid, envelope } = await signed(id, content);
    const sent = await post(`/api/v3/canister/${canisterText}/call`, envelope);
    if (sent.status === 200) {
      const answer = cborDecode(sent.body);
      if (answer.status === 'replied') { const got = outcome(answer.certificate, rid); if (got) return got; }
      if (answer.reject_message) return { reject: answer.reject_message };
    } else if (sent.status !== 202) {
      const why = new TextDecoder().decode(sent.body).slice(0, 300);
      return { reject: `the IC refused the call (HTTP ${sent.status}${why ? `: ${why}` : ''}; is this computer's clock right?)` };
    }
    for (let i = 0; i < 60; i++) { // not answered yet: read its status (signed by the same key), at most a minute
      await new Promise((r) => setTimeout(r, 1000));
      const read = { request_type: 'read_state', paths: [[enc.encode('request_status'), rid]], sender: id.principal,
        ingress_expiry: (BigInt(Date.now()) + 240000n) * 1000000n };
      const asked = await signed(id, read);
      const state = await post(`/api/v2/canister/${canisterText}/read_state`, asked.envelope);
      if (state.status === 200) { const got = outcome(cborDecode(state.body).certificate, rid); if (got) return got; }
    }
    return { reject: 'no answer within a minute' };
  };

  const buttons = [...box.querySelectorAll('button')];
  let me = null; // the identity shown is the one that signs
  let busy = false;
  let moved = false;
  let shownAt = performance.now();
  const ready = () => me && moved && document.visibilityState === 'visible' && performance.now() - shownAt >= 800;
  const update = () => { for (const b of buttons) b.disabled = busy || !ready(); };
  document.addEventListener('visibilitychange', () => { shownAt = performance.now(); moved = false; update(); });
  window.addEventListener('blur', () => { moved = false; update(); });
  window.addEventListener('focus', () => { shownAt = performance.now(); update(); });
  for (const kind of ['pointermove', 'keydown']) {
    window.addEventListener(kind, () => { moved = true; update(); setTimeout(update, 900); }, { passive: true });
  }

  const act = async (method) => {
    if (!ready() || busy) return;
    busy = true;
    update();
    say(method === 'approve' ? 'Approving…' : 'Declining…');
    try {
      const done = await call(me, method, textArg(requestId));
      if (done.reject) { say(`The call was rejected: ${done.reject}`); busy = false; update(); return; }
      const result = decodeResult(done.reply);
      if (result.err) { say(`Refused: ${result.err} (the request may have expired or been answered already).`); return; }
      const back = document.getElementById('consent-return');
      back.href = result.ok;
      back.textContent = `Return to the application (${new URL(result.ok).host || result.ok})`;
      back.hidden = false;
      if (method === 'approve') {
        say('Approved. Returning to the application…');
        window.location.assign(result.ok); // the user chose to go to this client: the code goes with them
      } else {
        say('Declined. The application has not been told; follow the link to tell it.');
      }
    } catch (e) {
      say(`Something went wrong: ${e.message}`);
      busy = false;
      update();
    }
  };

  const revokeAll = async () => {
    if (!ready() || busy) return;
    busy = true;
    update();
    say('Revoking…');
    try {
      const done = await call(me, 'revoke_my_grants', noArg());
      say(done.reject ? `The call was rejected: ${done.reject}` : `Revoked ${decodeNat(done.reply)} grant(s).`);
    } catch (e) {
      say(`Something went wrong: ${e.message}`);
    }
    busy = false;
    update();
  };

  identity().then((id) => {
    me = id;
    who.textContent = principalText(id.principal);
    if (box.dataset.mode === 'grants') {
      document.getElementById('consent-revoke-all').addEventListener('click', revokeAll);
    } else {
      document.getElementById('consent-approve').addEventListener('click', () => act('approve'));
      document.getElementById('consent-deny').addEventListener('click', () => act('deny'));
    }
    update();
  }).catch((e) => say(`This browser cannot hold an IC identity: ${e.message}`));
})();
