// Wasm uploads, scoped to a namespace: the same wasm may be uploaded under several namespaces and nobody can
// hold another namespace's upload hostage. An incomplete upload expires a day after it began and counts
// against its uploader's quota; a complete one counts against its namespace's. The module hash is recomputed
// here, each byte hashed once: the digest runs over the in-order prefix of chunks as they arrive (a chunk up to
// MAX_CHUNKS_AHEAD past the prefix waits for the gap), so no message hashes more than a few MiB and a 64 MiB
// wasm costs no more per chunk than a 1 MiB one. A chunk's own `chunk_hash` is the client's claim and is not
// recomputed (that would hash every byte twice): a wrong chunk fails the module hash and drops the upload.
// A complete upload's chunks move out of the heap into stable memory (`Bytes`, lib/BlobStore.mo): the collector
// never copies a module, and a registry of many large wasms keeps a small heap.
// Principals are free, so per-principal and per-namespace quotas do not bound what uploads hold in all: a
// global `Budget` (governance sets it) does. A chunk that would take incomplete uploads past their heap budget,
// or the stored modules past their stable-memory budget, is refused (`#QuotaExceeded`), so the heap never
// fills with incomplete uploads and a completion always finds room in stable memory. Expired incomplete uploads
// are dropped oldest first (an index of incomplete uploads by creation time; the upload TTL is the same for
// all) as chunks arrive.
// This module is the only writer of upload records, of `Bytes` and of `Budget`.
import Array "mo:core/Array";
import Blob "mo:core/Blob";
import List "mo:core/List";
import Int "mo:core/Int";
import Map "mo:core/Map";
import Nat "mo:core/Nat";
import Nat64 "mo:core/Nat64";
import Principal "mo:core/Principal";
import Runtime "mo:core/Runtime";
import Text "mo:core/Text";

import BlobStore "../lib/BlobStore";
import MapSlots "../lib/MapSlots";
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

  // What uploads may hold in all, and what they hold now. A stable value of its own (added after `Store` and
  // `Bytes`, whose types an upgrade must keep); `recount` rebuilds the running figures at every upgrade.
  public type Budget = {
    var maxIncomplete : Nat; // heap bytes all incomplete uploads may hold
    var maxStored : Nat; // stable-memory bytes complete uploads may hold
    var incomplete : Nat; // chunk bytes incomplete uploads hold now (expired ones not yet dropped included)
    expiring : Map.Map<(Int, Text), ()>; // every incomplete upload, by (created_at, key): oldest first
  };

  public type UploadBudget = { max_incomplete_bytes : Nat; max_stored_bytes : Nat; incomplete_bytes : Nat; stored_bytes : Nat };

  public func emptyBudget() : Budget {
    {
      var maxIncomplete = Limits.DEFAULT_INCOMPLETE_UPLOAD_BYTES;
      var maxStored = Limits.DEFAULT_STORED_WASM_BYTES;
      var incomplete = 0;
      expiring = Map.empty();
    };
  };

  func byAge(x : (Int, Text), y : (Int, Text)) : { #less; #equal; #greater } {
    switch (Int.compare(x.0, y.0)) { case (#equal) Text.compare(x.1, y.1); case order order };
  };

  let SWEEP = 8; // expired uploads dropped with every chunk
  let SWEEP_WHEN_FULL = 64; // and before a chunk is refused for want of room

  // What the budget allows and holds; incomplete bytes leave out expired uploads the next chunk would drop (what
  // a client checks before it creates a namespace).
  public func usage(s : Store, b : Bytes, budget : Budget, now : Int) : UploadBudget {
    var reclaimable = 0;
    var seen = 0;
    label scan for (((_, k), _) in Map.entries(budget.expiring)) {
      if (seen >= SWEEP + SWEEP_WHEN_FULL) break scan;
      seen += 1;
      switch (Map.get(s.wasms, Text.compare, k)) {
        case (?r) if (expired(r, now)) reclaimable += heldBytes(r) else break scan;
        case null {};
      };
    };
    {
      max_incomplete_bytes = budget.maxIncomplete;
      max_stored_bytes = budget.maxStored;
      incomplete_bytes = if (reclaimable >= budget.incomplete) 0 else budget.incomplete - reclaimable;
      stored_bytes = Nat64.toNat(BlobStore.next(b.store));
    };
  };

  // Governance: new limits apply to chunks from now on (a limit below what is held refuses new bytes until
  // enough uploads complete or expire; nothing held is dropped).
  public func setBudget(budget : Budget, maxIncomplete : Nat, maxStored : Nat) : { #ok; #err : T.Error } {
    if (maxIncomplete > Limits.MAX_INCOMPLETE_UPLOAD_BYTES) return #err(#InvalidArgument("max_incomplete_bytes is at most " # Nat.toText(Limits.MAX_INCOMPLETE_UPLOAD_BYTES)));
    if (maxStored > Limits.MAX_STORED_WASM_BYTES) return #err(#InvalidArgument("max_stored_bytes is at most " # Nat.toText(Limits.MAX_STORED_WASM_BYTES) # " (moc caps stable memory at 4 GiB)"));
    budget.maxIncomplete := maxIncomplete;
    budget.maxStored := maxStored;
    #ok;
  };

  // The heap bytes an upload's chunk map holds.
  func heldBytes(r : WasmRec) : Nat {
    var n = 0;
    for (c in Map.values(r.chunks)) n += c.size();
    n;
  };

  // Remove an upload's record; an incomplete one gives its bytes back and leaves the expiry index.
  func drop(s : Store, budget : Budget, k : Text, r : WasmRec) {
    Map.remove(s.wasms, Text.compare, k);
    if (not r.complete) {
      release(budget, heldBytes(r));
      Map.remove(budget.expiring, byAge, (r.created_at, k));
    };
  };

  // Saturating: a miscount must not trap every later upload (`recount` at the next upgrade corrects it).
  func release(budget : Budget, n : Nat) {
    budget.incomplete := if (n >= budget.incomplete) 0 else budget.incomplete - n;
  };

  // Drop up to `max` expired uploads, oldest first (the index holds only incomplete uploads, so its front is
  // the next to expire).
  func sweep(s : Store, budget : Budget, now : Int, max : Nat) {
    var n = 0;
    label dropping while (n < max) {
      let (created, k) = switch (Map.minEntry(budget.expiring)) { case (?(key, _)) key; case null break dropping };
      switch (Map.get(s.wasms, Text.compare, k)) {
        case (?r) {
          if (r.complete or r.created_at != created) Map.remove(budget.expiring, byAge, (created, k)) // not kept up to date
          else if (expired(r, now)) drop(s, budget, k, r)
          else break dropping;
        };
        case null Map.remove(budget.expiring, byAge, (created, k));
      };
      n += 1;
    };
  };

  // Whether `more` heap bytes fit both budgets (a completion moves incomplete bytes to stable memory, so they
  // count against the stored budget already).
  func fits(b : Bytes, budget : Budget, more : Nat) : Bool {
    budget.incomplete + more <= budget.maxIncomplete and Nat64.toNat(BlobStore.next(b.store)) + budget.incomplete + more <= budget.maxStored;
  };

  func room(s : Store, b : Bytes, budget : Budget, now : Int, more : Nat) : ?T.Error {
    if (fits(b, budget, more)) return null;
    sweep(s, budget, now, SWEEP_WHEN_FULL);
    if (fits(b, budget, more)) return null;
    ?#QuotaExceeded("the registry's upload budget is full (" # Nat.toText(budget.incomplete) # " bytes in incomplete uploads of at most " # Nat.toText(budget.maxIncomplete) # ", " # Nat.toText(Nat64.toNat(BlobStore.next(b.store))) # " bytes stored of at most " # Nat.toText(budget.maxStored) # "); try again once uploads complete or expire");
  };

  // At an upgrade: the running figures again from the records (the release before this kept none).
  public func recount(s : Store, budget : Budget) {
    budget.incomplete := 0;
    Map.clear(budget.expiring);
    for ((k, r) in Map.entries(s.wasms)) {
      if (not r.complete) {
        budget.incomplete += heldBytes(r);
        Map.add(budget.expiring, byAge, (r.created_at, k), ());
      };
    };
  };

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
  // garbage once), and the map keeps one slot of its 31 (lib/MapSlots.mo).
  func keep(b : Bytes, k : Text, r : WasmRec) {
    let offset = BlobStore.next(b.store);
    let sizes = Array.tabulate<Nat>(r.total_chunks, func i = switch (Map.take(r.chunks, Nat.compare, i)) {
      case (?c) { ignore BlobStore.put(b.store, c); c.size() };
      case null Runtime.trap("a complete upload misses chunk " # Nat.toText(i));
    });
    Map.add(b.chunks, Text.compare, k, { offset; sizes });
    r.chunks.root := MapSlots.oneSlot(); // nothing writes to a complete upload's chunk map again
  };

  // At an upgrade, complete uploads of earlier releases: chunks a release before stable chunks kept in the heap move
  // to stable memory, and an emptied chunk map that still holds its 31 slots (a release before `MapSlots`) keeps one.
  public func keepAll(s : Store, b : Bytes) {
    for ((k, r) in Map.entries(s.wasms)) {
      if (r.complete) {
        if (not Map.isEmpty(r.chunks) and Map.get(b.chunks, Text.compare, k) == null) keep(b, k, r)
        else if (Map.isEmpty(r.chunks) and MapSlots.hasSpareSlots(r.chunks)) r.chunks.root := MapSlots.oneSlot();
      };
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
  func liveIncomplete(s : Store, budget : Budget, uploader : Principal, now : Int) : Nat {
    switch (Map.get(s.incomplete, Principal.compare, uploader)) {
      case (?l) {
        List.retain<Text>(l, func k = switch (Map.get(s.wasms, Text.compare, k)) {
          case (?r) {
            if (not Principal.equal(r.uploaded_by, uploader)) false // replaced after it expired
            else if (expired(r, now)) { drop(s, budget, k, r); false } else not r.complete;
          };
          case null false;
        });
        List.size(l);
      };
      case null 0;
    };
  };

  // How many live incomplete uploads `uploader` holds (they count against its quota).
  public func incompleteCount(s : Store, budget : Budget, uploader : Principal, now : Int) : Nat { liveIncomplete(s, budget, uploader, now) };

  // Store one chunk (the caller has checked namespace control) and advance the module digest over the chunks
  // now in order. Once every chunk is absorbed the digest must equal `wasm_hash`, or the upload is dropped whole.
  // A chunk not hashed yet may be replaced; a different chunk where one was already hashed, or another
  // `total_chunks`, starts the upload over with this chunk (a controller's newest intent wins; nothing else
  // refers to an incomplete upload).
  public func put(s : Store, b : Bytes, budget : Budget, caller : Principal, c : Chunk, now : Int) : { #ok : { complete : Bool; missing : [Nat] }; #err : T.Error } {
    if (c.wasm_hash.size() != 32 or c.chunk_hash.size() != 32) return #err(#InvalidArgument("hashes are 32 bytes"));
    if (c.total_chunks == 0 or c.total_chunks > Limits.MAX_CHUNKS) return #err(#InvalidArgument("1.." # Nat.toText(Limits.MAX_CHUNKS) # " chunks of at most 1 MiB"));
    if (c.chunk_index >= c.total_chunks) return #err(#InvalidArgument("chunk_index out of range"));
    if (c.chunk.size() == 0 or c.chunk.size() > Limits.MAX_CHUNK_BYTES) return #err(#InvalidArgument("a chunk is 1 byte to 1 MiB"));
    let wasm_id = Sha256.toHex(c.wasm_hash);
    let k = key(c.namespace, wasm_id);
    sweep(s, budget, now, SWEEP);
    let rec = switch (get(s, c.namespace, wasm_id, now)) {
      case (?r) {
        if (r.complete and r.total_chunks != c.total_chunks) return #err(#InvalidArgument("total_chunks differs from the complete upload's (" # Nat.toText(r.total_chunks) # ")"));
        if (r.complete) return #ok({ complete = true; missing = [] });
        if (r.total_chunks != c.total_chunks) return startOver(s, b, budget, caller, c, now, k, r);
        r;
      };
      case null {
        if (c.chunk_index > Limits.MAX_CHUNKS_AHEAD) return #err(tooFarAhead(c.chunk_index, 0));
        if (liveIncomplete(s, budget, caller, now) >= Limits.MAX_INCOMPLETE_PER_PRINCIPAL) return #err(tooManyIncomplete());
        let held = switch (Map.get(s.perNamespace, Text.compare, c.namespace)) { case (?n) n; case null 0 };
        if (held >= Limits.MAX_WASMS_PER_NAMESPACE) return #err(#QuotaExceeded("a namespace holds at most " # Nat.toText(Limits.MAX_WASMS_PER_NAMESPACE) # " wasm modules"));
        switch (Map.get(s.wasms, Text.compare, k)) { case (?old) drop(s, budget, k, old); case null {} }; // expired
        switch (room(s, b, budget, now, c.chunk.size())) { case (?e) return #err(e); case null {} };
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
        Map.add(budget.expiring, byAge, (now, k), ());
        let l = switch (Map.get(s.incomplete, Principal.compare, caller)) {
          case (?l) l;
          case null { let l = List.empty<Text>(); Map.add(s.incomplete, Principal.compare, caller, l); l };
        };
        List.add(l, k);
        r;
      };
    };
    let replaced = switch (Map.get(rec.chunks, Nat.compare, c.chunk_index)) {
      case (?stored) {
        if (stored == c.chunk) return #ok({ complete = false; missing = missing(rec) });
        if (c.chunk_index < rec.absorbed) return startOver(s, b, budget, caller, c, now, k, rec);
        stored.size(); // not hashed yet: replaced below
      };
      case null 0;
    };
    if (c.chunk_index > rec.absorbed + Limits.MAX_CHUNKS_AHEAD) return #err(tooFarAhead(c.chunk_index, rec.absorbed));
    if (c.chunk.size() > replaced) {
      switch (room(s, b, budget, now, c.chunk.size() - replaced)) { case (?e) return #err(e); case null {} };
    };
    Map.add(rec.chunks, Nat.compare, c.chunk_index, c.chunk);
    budget.incomplete := budget.incomplete + c.chunk.size() - replaced;
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
      drop(s, budget, k, rec); // only this namespace's upload; nothing refers to it yet
      return #err(#WasmHashMismatch({ computed = Sha256.toHex(computed) }));
    };
    release(budget, heldBytes(rec)); // the bytes move to stable memory: `fits` counted them there already
    rec.complete := true;
    Map.remove(budget.expiring, byAge, (rec.created_at, k));
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

  // Everything the new upload could be refused for is checked before the old one is dropped: a refused chunk
  // changes nothing.
  func startOver(s : Store, b : Bytes, budget : Budget, caller : Principal, c : Chunk, now : Int, k : Text, r : WasmRec) : { #ok : { complete : Bool; missing : [Nat] }; #err : T.Error } {
    if (c.chunk_index > Limits.MAX_CHUNKS_AHEAD) return #err(tooFarAhead(c.chunk_index, 0));
    let mine = if (Principal.equal(r.uploaded_by, caller)) 1 else 0; // r is live: counted for its uploader
    if (liveIncomplete(s, budget, caller, now) >= Limits.MAX_INCOMPLETE_PER_PRINCIPAL + mine) return #err(tooManyIncomplete());
    let freed = heldBytes(r);
    if (c.chunk.size() > freed) {
      switch (room(s, b, budget, now, c.chunk.size() - freed)) { case (?e) return #err(e); case null {} };
    };
    drop(s, budget, k, r); // the uploaders' quota lists drop the key when they are next counted
    put(s, b, budget, caller, c, now);
  };

  func tooManyIncomplete() : T.Error {
    #QuotaExceeded("at most " # Nat.toText(Limits.MAX_INCOMPLETE_PER_PRINCIPAL) # " incomplete uploads per principal; finish one or wait a day for it to expire");
  };

  func tooFarAhead(index : Nat, absorbed : Nat) : T.Error {
    #InvalidArgument("chunk " # Nat.toText(index) # " is too far ahead: send chunks in order, at most " # Nat.toText(Limits.MAX_CHUNKS_AHEAD) # " past the first missing one (" # Nat.toText(absorbed) # ")");
  };
};
