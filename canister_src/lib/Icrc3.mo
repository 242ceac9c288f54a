// An ICRC-3 block log (the registry's and the auth server's): blocks chained by `phash` (the
// representation-independent hash of the previous block),
// the tip certificate (certified data = root of { last_block_hash; last_block_index }), and replies that stay
// under the IC's reply limit by construction. Blocks are kept Candid-encoded (`to_candid`): a third of the memory
// of the value tree, one object instead of dozens for the collector, and the encoded size is the blob's size.
import Array "mo:core/Array";
import Blob "mo:core/Blob";
import CertifiedData "mo:core/CertifiedData";
import Int "mo:core/Int";
import Iter "mo:core/Iter";
import List "mo:core/List";
import Nat "mo:core/Nat";
import Nat8 "mo:core/Nat8";
import Runtime "mo:core/Runtime";
import Text "mo:core/Text";

import Sha256 "Sha256";

module {

  // ICRC-3's generic value.
  public type Value = { #Blob : Blob; #Text : Text; #Nat : Nat; #Int : Int; #Array : [Value]; #Map : [(Text, Value)] };

  public let MAX_REPLY_BYTES = 1_048_576; // a reply stays under the IC's 2 MiB limit with room for its envelope
  public let MAX_BLOCK_RANGES = 16;

  public type Store = {
    blocks : List.List<Blob>; // each block as `to_candid (block : Value)`
    var lastHash : ?Blob;
  };

  public type BlockRange = { start : Nat; length : Nat };
  public type Blocks = { log_length : Nat; blocks : [{ id : Nat; block : Value }] };

  public func empty() : Store { { blocks = List.empty(); var lastHash = null } };

  public func length(s : Store) : Nat { List.size(s.blocks) };

  // Blocks kept elsewhere before (see Legacy), appended as they are, with the hash of the last one. The
  // certified tip is unchanged: it already names that hash and index.
  public func adopt(s : Store, blocks : Iter.Iter<Value>, lastHash : ?Blob) {
    for (block in blocks) List.add(s.blocks, to_candid (block));
    s.lastHash := lastHash;
  };

  public func append(s : Store, now : Int, btype : Text, tx : [(Text, Value)]) : Nat {
    let fields = List.fromArray<(Text, Value)>([("btype", #Text(btype)), ("ts", #Nat(Int.toNat(now))), ("tx", #Map(tx))]);
    switch (s.lastHash) { case (?h) List.add(fields, ("phash", #Blob(h))); case null {} };
    let block = #Map(List.toArray(fields));
    let st = Sha256.init();
    let blockHash = hashWith(st, block);
    s.lastHash := ?blockHash;
    let index = List.size(s.blocks);
    List.add(s.blocks, to_candid (block));
    CertifiedData.set(tipTreeRoot(st, index, blockHash));
    index;
  };

  // Blocks of the requested ranges, in order, until the reply budget is spent (at most 16 ranges are read;
  // a client asks again from where the reply stopped). The first block is always served, so a reader always
  // makes progress (a block is far smaller than the budget: Limits bounds every field it holds).
  public func get(s : Store, ranges : [BlockRange]) : Blocks {
    let out = List.empty<{ id : Nat; block : Value }>();
    let total = List.size(s.blocks);
    var budget = MAX_REPLY_BYTES;
    var read = 0;
    label all for (r in ranges.vals()) {
      if (read >= MAX_BLOCK_RANGES) break all;
      read += 1;
      var i = r.start;
      let end = if (r.start >= total) r.start else Nat.min(total, r.start + r.length);
      while (i < end) {
        let encoded = List.at(s.blocks, i);
        if (encoded.size() > budget and List.size(out) > 0) break all;
        budget -= Nat.min(encoded.size(), budget);
        let ?block : ?Value = from_candid (encoded) else Runtime.trap("a stored block does not decode");
        List.add(out, { id = i; block });
        i += 1;
      };
    };
    { log_length = total; blocks = List.toArray(out) };
  };

  // ---------------------------------------------------------------- ICRC-3 hashing
  // One digest state serves a whole block: a node's children are hashed (each into a 32-byte blob) before the
  // node's own digest starts, so the state is free whenever it is reset. No byte arrays are built on the way.

  public func hashValue(v : Value) : Blob { hashWith(Sha256.init(), v) };

  func hashWith(st : Sha256.State, v : Value) : Blob {
    switch (v) {
      case (#Blob(b)) { Sha256.reset(st); Sha256.write(st, b) };
      case (#Text(t)) { Sha256.reset(st); Sha256.writeText(st, t) };
      case (#Nat(n)) { Sha256.reset(st); writeLeb(st, n) };
      case (#Int(i)) { Sha256.reset(st); writeSleb(st, i) };
      case (#Array(items)) {
        let hashes = Array.map<Value, Blob>(items, func x = hashWith(st, x));
        Sha256.reset(st);
        for (h in hashes.vals()) Sha256.write(st, h);
      };
      case (#Map(entries)) {
        let pairs = Array.map<(Text, Value), (Blob, Blob)>(entries, func((k, x)) = (hashWith(st, #Text(k)), hashWith(st, x)));
        // Sorting the pairs by key hash, then value hash, sorts their 64-byte concatenations.
        let sorted = Array.sort<(Blob, Blob)>(pairs, func((k1, v1), (k2, v2)) = switch (Blob.compare(k1, k2)) { case (#equal) Blob.compare(v1, v2); case o o });
        Sha256.reset(st);
        for ((k, x) in sorted.vals()) { Sha256.write(st, k); Sha256.write(st, x) };
      };
    };
    Sha256.finish(st);
  };

  func writeLeb(st : Sha256.State, n : Nat) {
    var x = n;
    loop {
      let byte = x % 128;
      x /= 128;
      if (x == 0) return Sha256.writeByte(st, Nat8.fromNat(byte));
      Sha256.writeByte(st, Nat8.fromNat(byte + 128));
    };
  };

  func writeSleb(st : Sha256.State, i : Int) {
    var x = i;
    loop {
      let byte = Int.abs(x % 128);
      let b = if (x < 0 and byte != 0) 128 - byte else byte;
      x := (x - b) / 128;
      if ((x == 0 and b < 64) or (x == -1 and b >= 64)) return Sha256.writeByte(st, Nat8.fromNat(b));
      Sha256.writeByte(st, Nat8.fromNat(b + 128));
    };
  };

  public func leb(n : Nat) : [Nat8] {
    let out = List.empty<Nat8>();
    var x = n;
    loop {
      let byte = x % 128;
      x /= 128;
      if (x == 0) { List.add(out, Nat8.fromNat(byte)); return List.toArray(out) };
      List.add(out, Nat8.fromNat(byte + 128));
    };
  };

  // ---------------------------------------------------------------- tip certificate

  func writeDomain(st : Sha256.State, d : Text) {
    Sha256.writeByte(st, Nat8.fromNat(d.size()));
    Sha256.writeText(st, d);
  };

  func leafHash(st : Sha256.State, write : () -> ()) : Blob {
    Sha256.reset(st);
    writeDomain(st, "ic-hashtree-leaf");
    write();
    Sha256.finish(st);
  };

  func labeledHash(st : Sha256.State, l : Text, sub : Blob) : Blob {
    Sha256.reset(st);
    writeDomain(st, "ic-hashtree-labeled");
    Sha256.writeText(st, l);
    Sha256.write(st, sub);
    Sha256.finish(st);
  };

  func tipTreeRoot(st : Sha256.State, index : Nat, blockHash : Blob) : Blob {
    let left = labeledHash(st, "last_block_hash", leafHash(st, func() = Sha256.write(st, blockHash)));
    let right = labeledHash(st, "last_block_index", leafHash(st, func() = writeLeb(st, index)));
    Sha256.reset(st);
    writeDomain(st, "ic-hashtree-fork");
    Sha256.write(st, left);
    Sha256.write(st, right);
    Sha256.finish(st);
  };

  // CBOR of the same tree: [1, [2, "last_block_hash", [3, hash]], [2, "last_block_index", [3, leb]]]
  func cborHead(major : Nat, n : Nat) : [Nat8] {
    let m = major * 32;
    if (n < 24) [Nat8.fromNat(m + n)] else if (n < 256) [Nat8.fromNat(m + 24), Nat8.fromNat(n)] else [
      Nat8.fromNat(m + 25), Nat8.fromNat(n / 256), Nat8.fromNat(n % 256),
    ];
  };

  func cborBytes(b : [Nat8]) : [Nat8] { Array.concat(cborHead(2, b.size()), b) };

  func cborLeafNode(label_ : Text, value : [Nat8]) : [Nat8] {
    Array.flatten<Nat8>([cborHead(4, 3), cborHead(0, 2), cborBytes(Blob.toArray(Text.encodeUtf8(label_))), cborHead(4, 2), cborHead(0, 3), cborBytes(value)]);
  };

  public func tipCertificate(s : Store) : ?{ certificate : Blob; hash_tree : Blob } {
    let certificate = switch (CertifiedData.getCertificate()) { case (?c) c; case null return null };
    let tree = switch (tipTree(s)) { case (?t) t; case null return null };
    ?{ certificate; hash_tree = Blob.fromArray(Array.concat<Nat8>([0xd9, 0xd9, 0xf7], tree)) }; // CBOR self-describe tag
  };

  // The tip's hash tree as CBOR (no tag): for a canister that certifies more beside it (the registry).
  public func tipTree(s : Store) : ?[Nat8] {
    let hash = switch (s.lastHash) { case (?h) h; case null return null };
    let index : Nat = List.size(s.blocks) - 1;
    ?Array.flatten<Nat8>([
      cborHead(4, 3), cborHead(0, 1),
      cborLeafNode("last_block_hash", Blob.toArray(hash)),
      cborLeafNode("last_block_index", leb(index)),
    ]);
  };

  // The tip tree's root hash (what `append` certifies), null before the first block.
  public func tipRoot(s : Store) : ?Blob {
    switch (s.lastHash) { case (?h) ?tipTreeRoot(Sha256.init(), List.size(s.blocks) - 1, h); case null null };
  };
};
