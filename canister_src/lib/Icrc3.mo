// An ICRC-3 block log (the registry's and the auth server's): blocks chained by `phash` (the
// representation-independent hash of the previous block),
// the tip certificate (certified data = root of { last_block_hash; last_block_index }), and replies that stay
// under the IC's reply limit by construction. Blocks are kept Candid-encoded (`to_candid`): a third of the memory
// of the value tree, one object instead of dozens for the collector, and the encoded size is the blob's size.
import Array "mo:core/Array";
import Blob "mo:core/Blob";
import CertifiedData "mo:core/CertifiedData";
import Int "mo:core/Int";
import Int64 "mo:core/Int64";
import Iter "mo:core/Iter";
import List "mo:core/List";
import Nat "mo:core/Nat";
import Nat64 "mo:core/Nat64";
import Nat8 "mo:core/Nat8";
import Runtime "mo:core/Runtime";
import Text "mo:core/Text";
import VarArray "mo:core/VarArray";

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

  // Append a block; the caller certifies the new tip (`tipRoot`), alone or under a root of its own.
  public func append(s : Store, h : Hasher, now : Int, btype : Text, tx : [(Text, Value)]) : Nat {
    let block = #Map(switch (s.lastHash) {
      case (?p) [("btype", #Text(btype)), ("ts", #Nat(Int.toNat(now))), ("tx", #Map(tx)), ("phash", #Blob(p))];
      case null [("btype", #Text(btype)), ("ts", #Nat(Int.toNat(now))), ("tx", #Map(tx))];
    });
    s.lastHash := ?hash(h, block);
    let index = List.size(s.blocks);
    List.add(s.blocks, to_candid (block));
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
  // A hasher is one digest state and a stack of digests kept as 32-bit words (`Sha256.finishInto`): a node's
  // children are hashed into slots above it, a map's (key, value) digest pairs are sorted in place, and the node's
  // own digest is written over its slot. Hashing a block allocates nothing once the stack is as deep as the
  // deepest block needs (it grows, and stays grown). A canister keeps one (`transient`) for all its blocks.

  public type Hasher = { st : Sha256.State; var words : [var Nat64] };

  public func hasher() : Hasher { { st = Sha256.init(); var words = VarArray.repeat<Nat64>(0, 256) } };

  // The hash of `v` with a kept hasher: the 32-byte result is all it allocates once the hasher has grown.
  public func hash(h : Hasher, v : Value) : Blob {
    hashInto(h, v, 0, 8);
    Sha256.digestBlob(h.st, h.words, 0);
  };

  func reserve(h : Hasher, end : Nat) {
    let old = h.words;
    if (end <= old.size()) return;
    let bigger = VarArray.repeat<Nat64>(0, Nat.max(end, 2 * old.size()));
    var i = 0;
    while (i < old.size()) { bigger[i] := old[i]; i += 1 };
    h.words := bigger;
  };

  // The digest of `v` into words[at ..< at + 8]; words from `free` up are scratch for its children.
  func hashInto(h : Hasher, v : Value, at : Nat, free : Nat) {
    let st = h.st;
    switch (v) {
      case (#Blob(b)) { Sha256.reset(st); Sha256.write(st, b) };
      case (#Text(t)) { Sha256.reset(st); Sha256.writeText(st, t) };
      case (#Nat(n)) { Sha256.reset(st); writeLeb(st, n) };
      case (#Int(i)) { Sha256.reset(st); writeSleb(st, i) };
      case (#Array(items)) {
        let n = items.size();
        let above = free + 8 * n;
        reserve(h, above);
        var i = 0;
        while (i < n) { hashInto(h, items[i], free + 8 * i, above); i += 1 };
        Sha256.reset(st);
        i := 0;
        while (i < n) { Sha256.writeDigest(st, h.words, free + 8 * i); i += 1 };
      };
      case (#Map(entries)) {
        let n = entries.size();
        let above = free + 16 * n + 16; // the last 16 words: the sort's spare slot
        reserve(h, above);
        var i = 0;
        while (i < n) {
          let (k, x) = entries[i];
          Sha256.reset(st);
          Sha256.writeText(st, k);
          Sha256.finishInto(st, h.words, free + 16 * i);
          hashInto(h, x, free + 16 * i + 8, above);
          i += 1;
        };
        sortPairs(h.words, free, n);
        Sha256.reset(st);
        i := 0;
        while (i < 2 * n) { Sha256.writeDigest(st, h.words, free + 8 * i); i += 1 };
      };
    };
    Sha256.finishInto(st, h.words, at);
  };

  // Sort n (key digest, value digest) pairs of 16 words at w[from ..], by their 64 bytes (a word is 32 bits, so
  // comparing words compares bytes). Insertion sort: a map has few entries (callers bound them), and it moves
  // words, never allocates. w[from + 16 n ..< from + 16 n + 16] is the spare slot.
  func sortPairs(w : [var Nat64], from : Nat, n : Nat) {
    let spare = from + 16 * n;
    var i = 1;
    while (i < n) {
      var j = i;
      if (less(w, from + 16 * j, from + 16 * (j - 1))) {
        copyPair(w, from + 16 * j, spare);
        while (j > 0 and less(w, spare, from + 16 * (j - 1))) {
          copyPair(w, from + 16 * (j - 1), from + 16 * j);
          j -= 1;
        };
        copyPair(w, spare, from + 16 * j);
      };
      i += 1;
    };
  };

  func less(w : [var Nat64], a : Nat, b : Nat) : Bool {
    var k = 0;
    while (k < 16) {
      let x = w[a + k];
      let y = w[b + k];
      if (x != y) return x < y;
      k += 1;
    };
    false;
  };

  func copyPair(w : [var Nat64], src : Nat, dst : Nat) {
    var k = 0;
    while (k < 16) { w[dst + k] := w[src + k]; k += 1 };
  };

  // LEB128 and SLEB128 straight into the digest. Values within 64 bits (timestamps, amounts, ids) take 64-bit
  // arithmetic, which allocates nothing; larger ones take Nat and Int arithmetic.
  func writeLeb(st : Sha256.State, n : Nat) {
    if (n < COMPACT or n < NAT64) {
      var x = Nat64.fromNat(n);
      loop {
        let byte = x & 0x7f;
        x >>= 7;
        if (x == 0) return Sha256.writeByte(st, Nat8.fromNat(Nat64.toNat(byte)));
        Sha256.writeByte(st, Nat8.fromNat(Nat64.toNat(byte | 0x80)));
      };
    };
    var x = n;
    loop {
      let byte = x % 128;
      x /= 128;
      if (x == 0) return Sha256.writeByte(st, Nat8.fromNat(byte));
      Sha256.writeByte(st, Nat8.fromNat(byte + 128));
    };
  };

  func writeSleb(st : Sha256.State, i : Int) {
    if ((i < COMPACT and i >= -COMPACT) or (i < INT64_END and i >= INT64_MIN)) {
      var x = Int64.fromInt(i);
      loop {
        let b = x & 0x7f;
        x >>= 7; // arithmetic shift
        if ((x == 0 and b < 64) or (x == -1 and b >= 64)) return Sha256.writeByte(st, Nat8.fromNat(Int.abs(Int64.toInt(b))));
        Sha256.writeByte(st, Nat8.fromNat(Int.abs(Int64.toInt(b | 0x80))));
      };
    };
    var x = i;
    loop {
      let byte = Int.abs(x % 128);
      let b = if (x < 0 and byte != 0) 128 - byte else byte;
      x := (x - b) / 128;
      if ((x == 0 and b < 64) or (x == -1 and b >= 64)) return Sha256.writeByte(st, Nat8.fromNat(b));
      Sha256.writeByte(st, Nat8.fromNat(b + 128));
    };
  };

  // Motoko keeps a Nat or Int below about 2 ** 30 unboxed: comparing one with a larger constant would box it,
  // so the range test is split in two (both comparisons allocate nothing).
  let COMPACT = 1_073_741_824; // 2 ** 30
  let NAT64 = 18_446_744_073_709_551_616; // 2 ** 64
  let INT64_END = 9_223_372_036_854_775_808; // 2 ** 63
  let INT64_MIN = -9_223_372_036_854_775_808;

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

  // The tip tree's root: fork(labeled("last_block_hash", leaf(hash)), labeled("last_block_index", leaf(leb))),
  // for the block hash kept at words[at ..< at + 8]; the nodes are hashed in the words after it.
  func tipTreeRoot(h : Hasher, index : Nat, at : Nat) : Blob {
    reserve(h, at + 24);
    let st = h.st;
    let w = h.words;
    Sha256.reset(st);
    writeDomain(st, "ic-hashtree-leaf");
    Sha256.writeDigest(st, w, at);
    Sha256.finishInto(st, w, at + 8);
    labeledInto(st, w, "last_block_hash", at + 8);
    Sha256.reset(st);
    writeDomain(st, "ic-hashtree-leaf");
    writeLeb(st, index);
    Sha256.finishInto(st, w, at + 16);
    labeledInto(st, w, "last_block_index", at + 16);
    Sha256.reset(st);
    writeDomain(st, "ic-hashtree-fork");
    Sha256.writeDigest(st, w, at + 8);
    Sha256.writeDigest(st, w, at + 16);
    Sha256.finish(st);
  };

  // labeled(l, words[at ..< at + 8]) over that same slot.
  func labeledInto(st : Sha256.State, w : [var Nat64], l : Text, at : Nat) {
    Sha256.reset(st);
    writeDomain(st, "ic-hashtree-labeled");
    Sha256.writeText(st, l);
    Sha256.writeDigest(st, w, at);
    Sha256.finishInto(st, w, at);
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

  // The tip tree's root hash (what a canister certifies after `append`), null before the first block.
  public func tipRoot(s : Store, h : Hasher) : ?Blob {
    switch (s.lastHash) {
      case (?last) {
        copyHash(h, last, 0);
        ?tipTreeRoot(h, List.size(s.blocks) - 1, 0);
      };
      case null null;
    };
  };

  // A 32-byte hash into words[at ..< at + 8].
  func copyHash(h : Hasher, b : Blob, at : Nat) {
    reserve(h, at + 8);
    var i = 0;
    while (i < 8) {
      h.words[at + i] := (n64(b[4 * i]) << 24) | (n64(b[4 * i + 1]) << 16) | (n64(b[4 * i + 2]) << 8) | n64(b[4 * i + 3]);
      i += 1;
    };
  };

  func n64(x : Nat8) : Nat64 { Nat64.fromNat(Nat8.toNat(x)) };
};
