// Wasm uploads, scoped to a namespace: the same wasm may be uploaded under several namespaces and nobody can
// hold another namespace's upload hostage. An incomplete upload expires a day after it began and counts
// against its uploader's quota; a complete one counts against its namespace's. The module hash is recomputed
// here, each byte hashed once: the digest runs over the in-order prefix of chunks as they arrive (a chunk up to
// MAX_CHUNKS_AHEAD past the prefix waits for the gap), so no message hashes more than a few MiB and a 64 MiB
// wasm costs no more per chunk than a 1 MiB one. A chunk's own `chunk_hash` is the client's claim and is not
// recomputed (that would hash every byte twice): a wrong chunk fails the module hash and drops the upload.
// A complete upload's chunks move out of the heap into stable memory (`Bytes`, lib/BlobStore.mo): the collector
// never copies a module, and a registry of many large wasms keeps a small heap.
// This module is the only writer of upload records and of `Bytes`.
import Array "mo:core/Array";
import Blob "mo:core/Blob";
import List "mo:core/List";
import Map "mo:core/Map";
import Nat "mo:core/Nat";
import Nat64 "mo:core/Nat64";
import Principal "mo:core/Principal";
import Runtime "mo:core/Runtime";
import Text "mo:core/Text";

import BlobStore "../lib/BlobStore";
import Sha256 "../lib/Sha256";
import Limits "Limits";
import T "Types";

module {

  public type WasmRec = {
    namespace : Text;
    wasm_id : Text;
    hash : Blob;
    total_chunks : Nat;
    chunks : Map.Map<Nat, Blob>;
    var digest : ?Sha256.State; // over chunks 0 ..< absorbed; dropped once complete
    var absorbed : Nat;
    var size : Nat; // bytes absorbed
    var complete : Bool;
    uploaded_by : Principal;
    created_at : Int;
  };

  public type Store = {
    wasms : Map.Map<Text, WasmRec>; // "<namespace>|<wasm>"
    byWasm : Map.Map<Text, List.List<Text>>; // wasm -> namespaces holding it complete
    incomplete : Map.Map<Principal, List.List<Text>>; // uploader -> its incomplete uploads' keys
    perNamespace : Map.Map<Text, Nat>; // complete wasms per namespace
  };

  // Complete uploads' chunks in stable memory, by upload key: where the first chunk starts and each chunk's
  // size (the chunks follow each other). A stable value of its own beside `Store` (whose type an upgrade must
  // keep); a complete upload's `chunks` map is then empty, except in uploads completed by a release before this
  // one until `keepAll` moves them at the upgrade.
  public type Stored = { offset : Nat64; sizes : [Nat] };
  public type Bytes = { store : BlobStore.Store; chunks : Map.Map<Text, Stored> };

  public func emptyBytes() : Bytes { { store = BlobStore.empty(); chunks = Map.empty() } };

  public type Chunk = { namespace : Text; wasm_hash : Blob; total_chunks : Nat; chunk_index : Nat; chunk : Blob; chunk_hash : Blob };

  public func empty() : Store {
    { wasms = Map.empty(); byWasm = Map.empty(); incomplete = Map.empty(); perNamespace = Map.empty() };
  };

  func key(namespace : Text, wasm_id : Text) : Text { namespace # "|" # wasm_id };

  func expired(r : WasmRec, now : Int) : Bool { not r.complete and now >= r.created_at + Limits.UPLOAD_TTL_NS };

  // A live upload record (an expired incomplete upload counts as absent).
  public func get(s : Store, namespace : Text, wasm_id : Text, now : Int) : ?WasmRec {
    switch (Map.get(s.wasms, Text.compare, key(namespace, wasm_id))) {
      case (?r) if (expired(r, now)) null else ?r;
      case null null;
    };
  };

  // One chunk of a complete upload (what an installer fetches; an incomplete upload serves nothing).
  public func chunkOf(s : Store, b : Bytes, namespace : Text, wasm_id : Text, index : Nat) : ?{ chunk : Blob; total_chunks : Nat } {
    let k = key(namespace, wasm_id);
    switch (Map.get(s.wasms, Text.compare, k)) {
      case (?r) {
        if (not r.complete or index >= r.total_chunks) return null;
        switch (Map.get(b.chunks, Text.compare, k)) {
          case (?stored) {
            var offset = stored.offset;
            var i = 0;
            while (i < index) { offset += Nat64.fromNat(stored.sizes[i]); i += 1 };
            ?{ chunk = BlobStore.get(b.store, offset, stored.sizes[index]); total_chunks = r.total_chunks };
          };
          case null switch (Map.get(r.chunks, Nat.compare, index)) {
            case (?c) ?{ chunk = c; total_chunks = r.total_chunks };
            case null null;
          };
        };
      };
      case null null;
    };
  };

  // A complete upload's chunks into stable memory, one after another; they leave the heap map (and become
  // garbage once).
  func keep(b : Bytes, k : Text, r : WasmRec) {
    let offset = BlobStore.next(b.store);
    let sizes = Array.tabulate<Nat>(r.total_chunks, func i = switch (Map.take(r.chunks, Nat.compare, i)) {
      case (?c) { ignore BlobStore.put(b.store, c); c.size() };
      case null Runtime.trap("a complete upload misses chunk " # Nat.toText(i));
    });
    Map.add(b.chunks, Text.compare, k, { offset; sizes });
  };

  // At an upgrade: complete uploads a release before stable chunks kept in the heap move to stable memory.
  public func keepAll(s : Store, b : Bytes) {
    for ((k, r) in Map.entries(s.wasms)) {
      if (r.complete and not Map.isEmpty(r.chunks) and Map.get(b.chunks, Text.compare, k) == null) keep(b, k, r);
    };
  };

  public func isComplete(s : Store, namespace : Text, wasm_id : Text) : Bool {
    switch (Map.get(s.wasms, Text.compare, key(namespace, wasm_id))) { case (?r) r.complete; case null false };
  };

  // The first `max` namespaces that hold a complete upload of this wasm, in the order they completed it
  // (anyone may upload a wasm into namespaces of their own: every scan of this list is bounded).
  public func namespacesOf(s : Store, wasm_id : Text, max : Nat) : [Text] {
    switch (Map.get(s.byWasm, Text.compare, wasm_id)) {
      case (?l) List.sliceToArray(l, 0, Nat.min(max, List.size(l)));
      case null [];
    };
  };

  public func holders(s : Store, wasm_id : Text) : Nat {
    switch (Map.get(s.byWasm, Text.compare, wasm_id)) { case (?l) List.size(l); case null 0 };
  };

  public func missing(r : WasmRec) : [Nat] {
    Array.filter<Nat>(Array.tabulate<Nat>(r.total_chunks, func i = i), func i = Map.get(r.chunks, Nat.compare, i) == null);
  };

  // Drop the uploader's expired or finished entries; returns how many live incomplete uploads remain.
  func liveIncomplete(s : Store, uploader : Principal, now : Int) : Nat {
    switch (Map.get(s.incomplete, Principal.compare, uploader)) {
      case (?l) {
        List.retain<Text>(l, func k = switch (Map.get(s.wasms, Text.compare, k)) {
          case (?r) {
            if (not Principal.equal(r.uploaded_by, uploader)) false // replaced after it expired
            else if (expired(r, now)) { Map.remove(s.wasms, Text.compare, k); false } else not r.complete;
          };
          case null false;
        });
        List.size(l);
      };
      case null 0;
    };
  };

  // How many live incomplete uploads `uploader` holds (they count against its quota).
  public func incompleteCount(s : Store, uploader : Principal, now : Int) : Nat { liveIncomplete(s, uploader, now) };

  // Store one chunk (the caller has checked namespace control) and advance the module digest over the chunks
  // now in order. Once every chunk is absorbed the digest must equal `wasm_hash`, or the upload is dropped whole.
  // A chunk not hashed yet may be replaced; a different chunk where one was already hashed, or another
  // `total_chunks`, starts the upload over with this chunk (a controller's newest intent wins; nothing else
  // refers to an incomplete upload).
  public func put(s : Store, b : Bytes, caller : Principal, c : Chunk, now : Int) : { #ok : { complete : Bool; missing : [Nat] }; #err : T.Error } {
    if (c.wasm_hash.size() != 32 or c.chunk_hash.size() != 32) return #err(#InvalidArgument("hashes are 32 bytes"));
    if (c.total_chunks == 0 or c.total_chunks > Limits.MAX_CHUNKS) return #err(#InvalidArgument("1.." # Nat.toText(Limits.MAX_CHUNKS) # " chunks of at most 1 MiB"));
    if (c.chunk_index >= c.total_chunks) return #err(#InvalidArgument("chunk_index out of range"));
    if (c.chunk.size() == 0 or c.chunk.size() > Limits.MAX_CHUNK_BYTES) return #err(#InvalidArgument("a chunk is 1 byte to 1 MiB"));
    let wasm_id = Sha256.toHex(c.wasm_hash);
    let k = key(c.namespace, wasm_id);
    let rec = switch (get(s, c.namespace, wasm_id, now)) {
      case (?r) {
        if (r.complete and r.total_chunks != c.total_chunks) return #err(#InvalidArgument("total_chunks differs from the complete upload's (" # Nat.toText(r.total_chunks) # ")"));
        if (r.complete) return #ok({ complete = true; missing = [] });
        if (r.total_chunks != c.total_chunks) return startOver(s, b, caller, c, now, k);
        r;
      };
      case null {
        if (c.chunk_index > Limits.MAX_CHUNKS_AHEAD) return #err(tooFarAhead(c.chunk_index, 0));
        if (liveIncomplete(s, caller, now) >= Limits.MAX_INCOMPLETE_PER_PRINCIPAL) {
          return #err(#QuotaExceeded("at most " # Nat.toText(Limits.MAX_INCOMPLETE_PER_PRINCIPAL) # " incomplete uploads per principal; finish one or wait a day for it to expire"));
        };
        let held = switch (Map.get(s.perNamespace, Text.compare, c.namespace)) { case (?n) n; case null 0 };
        if (held >= Limits.MAX_WASMS_PER_NAMESPACE) return #err(#QuotaExceeded("a namespace holds at most " # Nat.toText(Limits.MAX_WASMS_PER_NAMESPACE) # " wasm modules"));
        let r : WasmRec = {
          namespace = c.namespace;
          wasm_id;
          hash = c.wasm_hash;
          total_chunks = c.total_chunks;
          chunks = Map.empty();
          var digest = ?Sha256.init();
          var absorbed = 0;
          var size = 0;
          var complete = false;
          uploaded_by = caller;
          created_at = now;
        };
        Map.add(s.wasms, Text.compare, k, r);
        let l = switch (Map.get(s.incomplete, Principal.compare, caller)) {
          case (?l) l;
          case null { let l = List.empty<Text>(); Map.add(s.incomplete, Principal.compare, caller, l); l };
        };
        List.add(l, k);
        r;
      };
    };
    switch (Map.get(rec.chunks, Nat.compare, c.chunk_index)) {
      case (?stored) {
        if (stored == c.chunk) return #ok({ complete = false; missing = missing(rec) });
        if (c.chunk_index < rec.absorbed) return startOver(s, b, caller, c, now, k);
        // not hashed yet: replaced below
      };
      case null {};
    };
    if (c.chunk_index > rec.absorbed + Limits.MAX_CHUNKS_AHEAD) return #err(tooFarAhead(c.chunk_index, rec.absorbed));
    Map.add(rec.chunks, Nat.compare, c.chunk_index, c.chunk);
    let digest = switch (rec.digest) { case (?d) d; case null return #err(#InvalidArgument("upload already hashed")) };
    label absorb loop {
      switch (Map.get(rec.chunks, Nat.compare, rec.absorbed)) {
        case (?chunk) { Sha256.write(digest, chunk); rec.size += chunk.size(); rec.absorbed += 1 };
        case null break absorb;
      };
    };
    if (rec.absorbed < rec.total_chunks) return #ok({ complete = false; missing = missing(rec) });
    let computed = Sha256.finish(digest);
    rec.digest := null;
    if (not Blob.equal(computed, rec.hash)) {
      Map.remove(s.wasms, Text.compare, k); // only this namespace's upload; nothing refers to it yet
      return #err(#WasmHashMismatch({ computed = Sha256.toHex(computed) }));
    };
    rec.complete := true;
    keep(b, k, rec);
    let owners = switch (Map.get(s.byWasm, Text.compare, wasm_id)) {
      case (?l) l;
      case null { let l = List.empty<Text>(); Map.add(s.byWasm, Text.compare, wasm_id, l); l };
    };
    List.add(owners, c.namespace);
    let held = switch (Map.get(s.perNamespace, Text.compare, c.namespace)) { case (?n) n; case null 0 };
    Map.add(s.perNamespace, Text.compare, c.namespace, held + 1);
    #ok({ complete = true; missing = [] });
  };

  func startOver(s : Store, b : Bytes, caller : Principal, c : Chunk, now : Int, k : Text) : { #ok : { complete : Bool; missing : [Nat] }; #err : T.Error } {
    Map.remove(s.wasms, Text.compare, k); // the uploaders' quota lists drop the key when they are next counted
    put(s, b, caller, c, now);
  };

  func tooFarAhead(index : Nat, absorbed : Nat) : T.Error {
    #InvalidArgument("chunk " # Nat.toText(index) # " is too far ahead: send chunks in order, at most " # Nat.toText(Limits.MAX_CHUNKS_AHEAD) # " past the first missing one (" # Nat.toText(absorbed) # ")");
  };
};
