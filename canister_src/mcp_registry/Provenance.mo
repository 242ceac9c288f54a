// Signed statements filed with attestations and divergences, and the certified tree that lets anyone prove
// them on chain offline (docs/provenance.md). This module is the only writer of both.
//
// At filing the registry checks what it can without parsing JSON: the envelope's key hashes to the filer's
// principal (self-authenticating: SHA-224 of the DER key, then 0x02), and the statement -- canonical JSON
// (RFC 8785), so every field sits at a known place -- is an in-toto v1 statement whose last member is one
// subject, the wasm being filed on, right after the predicate type the verdict calls for. Signatures are
// checked by whoever reads the statement (`prometheus verify --offline`, `prometheus status`).
//
// The certified tree: `provenance` -> one byte (the wasm hash's first) -> the wasm hash followed by the
// namespace (UTF-8) -> a leaf, the representation-independent hash (ICRC-3's) of every filing on that wasm in
// that namespace (signed or not: the registry saw who filed it; a signature makes it portable). Each level is
// a balanced fork tree over sorted labels, so a witness for one wasm holds about log2(wasms) hashes and a
// filing rehashes one bucket and the 256 bucket roots.
import Array "mo:core/Array";
import Blob "mo:core/Blob";
import List "mo:core/List";
import Map "mo:core/Map";
import Nat "mo:core/Nat";
import Nat8 "mo:core/Nat8";
import Principal "mo:core/Principal";
import Text "mo:core/Text";
import VarArray "mo:core/VarArray";

import Sha256 "../lib/Sha256";
import Log "Log";
import T "Types";

module {

  public let PAYLOAD_TYPE = "application/vnd.in-toto+json";
  public let MAX_PAYLOAD_BYTES = 16_384;
  public let MAX_PUBLIC_KEY_BYTES = 100;
  public let MAX_SIGNED_PER_WASM = 100; // per namespace: what one `get_provenance` reply carries
  let PREFIX = "{\"_type\":\"https://in-toto.io/Statement/v1\",\"predicate\":{";
  let PROVENANCE = "https://slsa.dev/provenance/v1";
  let VSA = "https://slsa.dev/verification_summary/v1";

  // What a verifier files: a DSSE envelope's parts (one signature) and the key that made it.
  public type SignedStatement = { payload_type : Text; payload : Blob; signature : Blob; public_key : Blob };

  public type Filed = {
    index : Nat; // the filing's
    request_id : Nat;
    namespace : Text;
    verifier : Principal;
    attested : Bool;
    time : Nat;
    envelope_hash : ?Blob; // null: filed without a signed statement
    statement : ?SignedStatement;
  };

  // `key`: the wasm hash followed by the namespace; `node`: labeled(key, leaf(..)).
  type Entry = { key : Blob; filed : List.List<Filed>; var signed : Nat; var leaf : Blob; var node : Blob };

  public type Store = {
    buckets : Map.Map<Nat8, Map.Map<Blob, Entry>>;
    bucketNodes : Map.Map<Nat8, Blob>; // labeled(bucket, fork tree of its entries)
    var root : ?Blob; // the `provenance` subtree's hash
  };

  public func empty() : Store { { buckets = Map.empty(); bucketNodes = Map.empty(); var root = null } };

  public func root(s : Store) : ?Blob { s.root };

  // ---------------------------------------------------------------- checks at filing

  // Why `e` cannot be filed by `caller` on `wasmId` (null: it can).
  public func refusal(e : SignedStatement, caller : Principal, wasmId : Text, attested : Bool) : ?Text {
    if (e.payload_type != PAYLOAD_TYPE) return ?("payload_type is " # PAYLOAD_TYPE);
    if (e.payload.size() > MAX_PAYLOAD_BYTES) return ?"a statement of at most 16 KiB";
    if (e.signature.size() != 64) return ?"a signature is 64 bytes";
    if (e.public_key.size() == 0 or e.public_key.size() > MAX_PUBLIC_KEY_BYTES) return ?"a public key of 1..100 bytes";
    let principal = Principal.fromBlob(Blob.fromArray(List.toArray(do {
      let l = List.fromArray<Nat8>(Blob.toArray(Sha256.sha224(e.public_key)));
      List.add<Nat8>(l, 0x02);
      l;
    })));
    if (not Principal.equal(principal, caller)) return ?"the statement's key is not the filer's (its principal is not the caller)";
    let p = Blob.toArray(e.payload);
    let prefix = Blob.toArray(Text.encodeUtf8(PREFIX));
    if (p.size() < prefix.size() + 4) return ?"not an in-toto v1 statement in canonical JSON";
    var i = 0;
    while (i < prefix.size()) { if (p[i] != prefix[i]) return ?"not an in-toto v1 statement in canonical JSON"; i += 1 };
    // The end: ,"predicateType":"<type>","subject":[{"digest":{"sha256":"<wasm>"},"name":"<name>"}]}
    let close = Blob.toArray(Text.encodeUtf8("\"}]}"));
    var end = p.size() - close.size();
    i := 0;
    while (i < close.size()) { if (p[end + i] != close[i]) return ?"the statement's last member is not its subject"; i += 1 };
    var nameStart = end;
    while (nameStart > 0 and end - nameStart < 65 and nameChar(p[nameStart - 1])) nameStart -= 1;
    let nameLength : Nat = end - nameStart;
    if (nameLength == 0 or nameLength > 64) return ?"the subject's name is 1..64 of A-Z a-z 0-9 . _ -";
    let expected = Blob.toArray(Text.encodeUtf8(",\"predicateType\":\"" # (if attested PROVENANCE else VSA) # "\",\"subject\":[{\"digest\":{\"sha256\":\"" # wasmId # "\"},\"name\":\""));
    if (nameStart < expected.size() + prefix.size()) return ?"the statement's subject is not this wasm";
    let from : Nat = nameStart - expected.size();
    i := 0;
    while (i < expected.size()) {
      if (p[from + i] != expected[i]) return ?(if attested "an attestation signs SLSA provenance v1 whose one subject is this wasm" else "a divergence signs a verification summary v1 whose one subject is this wasm");
      i += 1;
    };
    null;
  };

  func nameChar(c : Nat8) : Bool {
    (c >= 0x30 and c <= 0x39) or (c >= 0x41 and c <= 0x5a) or (c >= 0x61 and c <= 0x7a) or c == 0x2e or c == 0x5f or c == 0x2d;
  };

  // The envelope hash: sha256 of the envelope's canonical JSON,
  // {"payload":"<b64>","payloadType":"application/vnd.in-toto+json","signatures":[{"keyid":"<principal>","sig":"<b64>"}]}
  public func envelopeHash(e : SignedStatement, signer : Principal) : Blob {
    let st = Sha256.init();
    Sha256.writeText(st, "{\"payload\":\"");
    writeBase64(st, e.payload);
    Sha256.writeText(st, "\",\"payloadType\":\"" # e.payload_type # "\",\"signatures\":[{\"keyid\":\"" # Principal.toText(signer) # "\",\"sig\":\"");
    writeBase64(st, e.signature);
    Sha256.writeText(st, "\"}]}");
    Sha256.finish(st);
  };

  let B64 : Blob = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

  // Standard base64 with padding, written straight into the digest (the text is never built).
  func writeBase64(st : Sha256.State, data : Blob) {
    let n = data.size();
    let out = VarArray.repeat<Nat8>(0, 4 * ((n + 2) / 3));
    var i = 0;
    var o = 0;
    while (i < n) {
      let b0 = Nat8.toNat(data[i]);
      let b1 = if (i + 1 < n) Nat8.toNat(data[i + 1]) else 0;
      let b2 = if (i + 2 < n) Nat8.toNat(data[i + 2]) else 0;
      out[o] := B64[b0 / 4];
      out[o + 1] := B64[(b0 % 4) * 16 + b1 / 16];
      out[o + 2] := if (i + 1 < n) B64[(b1 % 16) * 4 + b2 / 64] else 0x3d;
      out[o + 3] := if (i + 2 < n) B64[b2 % 64] else 0x3d;
      i += 3;
      o += 4;
    };
    Sha256.write(st, Blob.fromVarArray(out));
  };

  // ---------------------------------------------------------------- the certified tree

  public func keyOf(wasm : Blob, namespace : Text) : Blob {
    Blob.fromArray(Array.concat(Blob.toArray(wasm), Blob.toArray(Text.encodeUtf8(namespace))));
  };

  public func signedCount(s : Store, key : Blob) : Nat {
    switch (entryOf(s, key)) { case (?e) e.signed; case null 0 };
  };

  func entryOf(s : Store, key : Blob) : ?Entry {
    switch (Map.get(s.buckets, Nat8.compare, key[0])) { case (?b) Map.get(b, Blob.compare, key); case null null };
  };

  public func filings(s : Store, key : Blob) : [Filed] {
    switch (entryOf(s, key)) { case (?e) List.toArray(e.filed); case null [] };
  };

  // The key of the wasm's filings in `namespace`, or in the only namespace that has any when none is named.
  public func find(s : Store, wasm : Blob, namespace : ?Text) : ?Blob {
    switch namespace { case (?ns) return ?keyOf(wasm, ns); case null {} };
    let bucket = switch (Map.get(s.buckets, Nat8.compare, wasm[0])) { case (?b) b; case null return null };
    var found : ?Blob = null;
    label scan for ((k, _) in Map.entriesFrom(bucket, Blob.compare, wasm)) {
      if (k.size() < 32 or Blob.fromArray(Array.sliceToArray(Blob.toArray(k), 0, 32)) != wasm) break scan;
      if (found != null) return null; // several namespaces: the caller names one
      found := ?k;
    };
    found;
  };

  // What the leaf commits to, per filing (the statement through its envelope hash).
  func value(f : Filed) : T.Value {
    let fields = [
      ("index", #Nat(f.index)), ("request_id", #Nat(f.request_id)), ("namespace", #Text(f.namespace)),
      ("verifier", #Blob(Principal.toBlob(f.verifier))), ("verdict", #Text(if (f.attested) "attested" else "diverged")),
      ("time", #Nat(f.time)),
    ];
    #Map(switch (f.envelope_hash) { case (?h) Array.concat(fields, [("envelope", #Blob(h))]); case null fields });
  };

  public func isEmpty(s : Store) : Bool { Map.isEmpty(s.buckets) };

  // The fork tree over the bucket nodes, kept between filings so that a filing rehashes the path from its
  // bucket to the root (8 forks once all 256 buckets exist) instead of all of them (255 digests and their
  // garbage). Transient: after an upgrade it is empty and the next filing rebuilds it whole. Node `id`'s
  // children are 2*id+1 and 2*id+2 in `forkOf`'s split.
  // `hasher`: the canister's hashing scratch (one digest state for every node hashed on a filing's path).
  public type RootMemo = { var forks : [var ?Blob]; var width : Nat; hasher : Log.Hasher };

  public func emptyMemo(hasher : Log.Hasher) : RootMemo { { var forks = [var]; var width = 0; hasher } };

  // Record a filing on `wasm` (in `f.namespace`) and rehash its path to the root.
  public func add(s : Store, memo : RootMemo, wasm : Blob, f : Filed) {
    let entry = append(s, wasm, f);
    rehashEntry(memo.hasher, entry);
    rehashBucket(memo.hasher.st, s, wasm[0]);
    rehashRoot(s, memo, ?wasm[0]);
  };

  // Many filings at once (an upgrade from a release without this tree): each entry and bucket rehashed once.
  public func addAll(s : Store, memo : RootMemo, items : [(Blob, Filed)]) {
    let touched = Map.empty<Blob, Entry>();
    for ((wasm, f) in items.vals()) { let e = append(s, wasm, f); Map.add(touched, Blob.compare, e.key, e) };
    let buckets = Map.empty<Nat8, ()>();
    for (e in Map.values(touched)) { rehashEntry(memo.hasher, e); Map.add(buckets, Nat8.compare, e.key[0], ()) };
    for (b in Map.keys(buckets)) rehashBucket(memo.hasher.st, s, b);
    rehashRoot(s, memo, null);
  };

  func append(s : Store, wasm : Blob, f : Filed) : Entry {
    let key = keyOf(wasm, f.namespace);
    let bucket = switch (Map.get(s.buckets, Nat8.compare, wasm[0])) {
      case (?b) b;
      case null { let b = Map.empty<Blob, Entry>(); Map.add(s.buckets, Nat8.compare, wasm[0], b); b };
    };
    let entry = switch (Map.get(bucket, Blob.compare, key)) {
      case (?e) e;
      case null {
        let e = { key; filed = List.empty<Filed>(); var signed = 0; var leaf : Blob = ""; var node : Blob = "" };
        Map.add(bucket, Blob.compare, key, e);
        e;
      };
    };
    List.add(entry.filed, f);
    if (f.statement != null) entry.signed += 1;
    entry;
  };

  func rehashEntry(h : Log.Hasher, entry : Entry) {
    entry.leaf := Log.hash(h, #Array(List.toArray(List.map<Filed, T.Value>(entry.filed, value))));
    entry.node := labeled(h.st, entry.key, leafHash(h.st, entry.leaf));
  };

  func rehashBucket(st : Sha256.State, s : Store, b : Nat8) {
    let bucket = switch (Map.get(s.buckets, Nat8.compare, b)) { case (?x) x; case null return };
    let nodes = List.toArray(List.map<Entry, Blob>(List.fromIter<Entry>(Map.values(bucket)), func e = e.node));
    Map.add(s.bucketNodes, Nat8.compare, b, labeled(st, Blob.fromArray([b]), forkOf(st, nodes, 0, nodes.size())));
  };

  // `changed`: the one bucket whose node changed since the memo was made (null: rebuild it whole).
  func rehashRoot(s : Store, memo : RootMemo, changed : ?Nat8) {
    let buckets = List.toArray(List.fromIter<Blob>(Map.values(s.bucketNodes)));
    let n = buckets.size();
    let at : ?Nat = switch (changed) {
      case (?b) if (n == memo.width) {
        var i = 0;
        label find for (k in Map.keys(s.bucketNodes)) { if (k == b) break find; i += 1 };
        ?i;
      } else null;
      case null null;
    };
    if (at == null) { memo.forks := VarArray.repeat<?Blob>(null, 4 * n + 4); memo.width := n };
    s.root := ?memoFork(memo, buckets, 0, n, 0, at);
  };

  // `forkOf` over `nodes[from..to)`, reusing the memo's subtrees that do not hold index `changed`.
  func memoFork(memo : RootMemo, nodes : [Blob], from : Nat, to : Nat, id : Nat, changed : ?Nat) : Blob {
    let n : Nat = to - from;
    if (n == 0) return emptyHash(memo.hasher.st);
    if (n == 1) return nodes[from];
    switch (memo.forks[id], changed) {
      case (?h, ?i) if (i < from or i >= to) return h;
      case _ {};
    };
    let mid = from + (n + 1) / 2;
    let h = fork(memo.hasher.st, memoFork(memo, nodes, from, mid, 2 * id + 1, changed), memoFork(memo, nodes, mid, to, 2 * id + 2, changed));
    memo.forks[id] := ?h;
    h;
  };

  // ---- IC hash tree hashing (interface spec, "Certification"): domain-separated sha256

  func domain(st : Sha256.State, d : Text) { Sha256.writeByte(st, Nat8.fromNat(d.size())); Sha256.writeText(st, d) };

  // Each takes the digest state to use (reset first), so that hashing a path allocates only the digests.
  func leafHash(st : Sha256.State, v : Blob) : Blob { Sha256.reset(st); domain(st, "ic-hashtree-leaf"); Sha256.write(st, v); Sha256.finish(st) };

  func labeled(st : Sha256.State, l : Blob, sub : Blob) : Blob {
    Sha256.reset(st);
    domain(st, "ic-hashtree-labeled");
    Sha256.write(st, l);
    Sha256.write(st, sub);
    Sha256.finish(st);
  };

  func fork(st : Sha256.State, l : Blob, r : Blob) : Blob {
    Sha256.reset(st);
    domain(st, "ic-hashtree-fork");
    Sha256.write(st, l);
    Sha256.write(st, r);
    Sha256.finish(st);
  };

  func emptyHash(st : Sha256.State) : Blob { Sha256.reset(st); domain(st, "ic-hashtree-empty"); Sha256.finish(st) };

  // The balanced fork tree over nodes[from..to) (left half: the first ceil(n/2)).
  func forkOf(st : Sha256.State, nodes : [Blob], from : Nat, to : Nat) : Blob {
    let n : Nat = to - from;
    if (n == 0) return emptyHash(st);
    if (n == 1) return nodes[from];
    let mid = from + (n + 1) / 2;
    fork(st, forkOf(st, nodes, from, mid), forkOf(st, nodes, mid, to));
  };

  // What the registry certifies: the ICRC-3 tip tree and, once the tree has been built (a filing, or an
  // upgrade), `provenance` beside it.
  // `st`: the caller's digest state, reused (this runs after every block).
  public func certifiedRoot(s : Store, st : Sha256.State, tip : Blob) : Blob {
    switch (s.root) { case (?r) fork(st, tip, labeled(st, Text.encodeUtf8("provenance"), r)); case null tip };
  };

  // The whole certified tree as CBOR (tagged) revealing the leaf at `key`, the tip pruned; null without one.
  public func proof(s : Store, tip : Blob, key : Blob) : ?Blob {
    let out = List.fromArray<Nat8>([0xd9, 0xd9, 0xf7, 0x83, 1]);
    pruned(out, tip);
    List.add<Nat8>(out, 0x83);
    List.add<Nat8>(out, 2);
    bytes(out, Text.encodeUtf8("provenance"));
    if (not witness(s, out, key)) return null;
    ?Blob.fromArray(List.toArray(out));
  };

  // The ICRC-3 tip tree with the `provenance` subtree pruned beside it (when there is one).
  public func withTip(s : Store, tipTree : [Nat8]) : Blob {
    let out = List.fromArray<Nat8>([0xd9, 0xd9, 0xf7]);
    switch (s.root) {
      case (?r) {
        List.add<Nat8>(out, 0x83);
        List.add<Nat8>(out, 1);
        for (x in tipTree.vals()) List.add(out, x);
        pruned(out, labeled(Sha256.init(), Text.encodeUtf8("provenance"), r));
      };
      case null for (x in tipTree.vals()) List.add(out, x);
    };
    Blob.fromArray(List.toArray(out));
  };

  // ---- witnesses (CBOR): [0] empty, [1, l, r] fork, [2, label, t] labeled, [3, v] leaf, [4, hash] pruned

  func head(major : Nat, n : Nat) : [Nat8] {
    let m = major * 32;
    if (n < 24) [Nat8.fromNat(m + n)] else if (n < 256) [Nat8.fromNat(m + 24), Nat8.fromNat(n)] else [
      Nat8.fromNat(m + 25), Nat8.fromNat(n / 256), Nat8.fromNat(n % 256),
    ];
  };

  func bytes(out : List.List<Nat8>, b : Blob) {
    for (x in head(2, b.size()).vals()) List.add(out, x);
    for (x in b.vals()) List.add(out, x);
  };

  func pruned(out : List.List<Nat8>, h : Blob) { List.add<Nat8>(out, 0x82); List.add<Nat8>(out, 4); bytes(out, h) };

  // The fork tree over nodes[from..to) with only `keep` revealed (by `reveal`), the rest pruned.
  func witnessFork(out : List.List<Nat8>, nodes : [Blob], from : Nat, to : Nat, keep : Nat, reveal : () -> ()) {
    let n : Nat = to - from;
    if (n == 1) { if (from == keep) reveal() else pruned(out, nodes[from]); return };
    let mid = from + (n + 1) / 2;
    List.add<Nat8>(out, 0x83);
    List.add<Nat8>(out, 1);
    if (keep < mid) { witnessFork(out, nodes, from, mid, keep, reveal); pruned(out, forkOf(Sha256.init(), nodes, mid, to)) } else {
      pruned(out, forkOf(Sha256.init(), nodes, from, mid));
      witnessFork(out, nodes, mid, to, keep, reveal);
    };
  };

  // The `provenance` subtree revealing only the leaf at `key` (false when there is none).
  func witness(s : Store, out : List.List<Nat8>, key : Blob) : Bool {
    let bucket = switch (Map.get(s.buckets, Nat8.compare, key[0])) { case (?b) b; case null return false };
    let entries = List.toArray(List.fromIter<Entry>(Map.values(bucket)));
    var at = 0;
    label find while (at < entries.size()) { if (entries[at].key == key) break find; at += 1 };
    if (at == entries.size()) return false;
    let bucketKeys = List.toArray(List.fromIter<Nat8>(Map.keys(s.bucketNodes)));
    let bucketHashes = List.toArray(List.fromIter<Blob>(Map.values(s.bucketNodes)));
    var b = 0;
    while (bucketKeys[b] != key[0]) b += 1;
    let entryNodes = List.toArray(List.map<Entry, Blob>(List.fromArray(entries), func e = e.node));
    witnessFork(out, bucketHashes, 0, bucketHashes.size(), b, func() {
      List.add<Nat8>(out, 0x83);
      List.add<Nat8>(out, 2);
      bytes(out, Blob.fromArray([key[0]]));
      witnessFork(out, entryNodes, 0, entryNodes.size(), at, func() {
        List.add<Nat8>(out, 0x83);
        List.add<Nat8>(out, 2);
        bytes(out, key);
        List.add<Nat8>(out, 0x82);
        List.add<Nat8>(out, 3);
        bytes(out, entries[at].leaf);
      });
    });
    true;
  };
};
