// mcp_registry: namespaces and their wasm (ICRC-118), verification requests, attestations and divergences
// (ICRC-126), bounties with ICRC-2 escrow (ICRC-127), finalization, settlement, and an ICRC-3 block log.
//
// Invariants (each has a test): only namespace controllers manage a namespace; a filing counts only from
// the claimant of an unexpired lock on a bounty for that wasm and audit type, once per verifier; a final
// outcome never changes; a bounty pays at most once, to the claimant recorded on the lock; every state
// change that guards money happens before the await that moves it.
import Array "mo:core/Array";
import Blob "mo:core/Blob";
import CertifiedData "mo:core/CertifiedData";
import Error "mo:core/Error";
import Int "mo:core/Int";
import List "mo:core/List";
import Map "mo:core/Map";
import Nat "mo:core/Nat";
import Nat8 "mo:core/Nat8";
import Nat64 "mo:core/Nat64";
import Principal "mo:core/Principal";
import Text "mo:core/Text";
import Time "mo:core/Time";

import Sha256 "../lib/Sha256";

persistent actor class Registry(init : { governance : Principal; audit_hub : Principal; ledgers : [Principal] }) = self {

  // ---------------------------------------------------------------- types

  public type ICRC16 = {
    #Array : [ICRC16];
    #Blob : Blob;
    #Bool : Bool;
    #Bytes : [Nat8];
    #Class : [ICRC16Property];
    #Float : Float;
    #Floats : [Float];
    #Int : Int;
    #Int16 : Int16;
    #Int32 : Int32;
    #Int64 : Int64;
    #Int8 : Int8;
    #Ints : [Int];
    #Map : ICRC16Map;
    #Nat : Nat;
    #Nat16 : Nat16;
    #Nat32 : Nat32;
    #Nat64 : Nat64;
    #Nat8 : Nat8;
    #Nats : [Nat];
    #Option : ?ICRC16;
    #Principal : Principal;
    #Set : [ICRC16];
    #Text : Text;
    #ValueMap : [(ICRC16, ICRC16)];
  };
  public type ICRC16Property = { name : Text; value : ICRC16; immutable : Bool };
  public type ICRC16Map = [(Text, ICRC16)];
  public type Value = { #Blob : Blob; #Text : Text; #Nat : Nat; #Int : Int; #Array : [Value]; #Map : [(Text, Value)] };
  public type Account = { owner : Principal; subaccount : ?Blob };

  public type Error = {
    #NotAuthorized;
    #InvalidNamespace : Text;
    #NamespaceExists;
    #NamespaceNotFound;
    #InvalidArgument : Text;
    #ChunkHashMismatch : { index : Nat };
    #WasmNotFound;
    #WasmIncomplete : { missing : [Nat] };
    #WasmHashMismatch : { computed : Text };
    #RequestNotFound;
    #BountyNotFound;
    #BountyNotOpen;
    #LedgerNotAllowed;
    #TransferFailed : Text;
    #LockInvalid : Text;
    #AlreadyFiled;
    #AlreadyFinalized;
    #NotFinalizable : Text;
    #NotVerified;
    #WasmRejected;
    #VersionExists;
    #VersionNotFound;
    #TimeoutNotReached : { timeout_date : Int };
    #AuditHubUnavailable : Text;
  };

  public type Outcome = { #Verified; #Rejected };
  public type FinalizationMode = { #Auto; #Governance };
  public type Policy = { quorum : Nat; mode : FinalizationMode; required_audit_types : [Text] };

  public type VerificationRequest = {
    id : Nat;
    wasm_id : Text;
    namespace : Text;
    repo : Text;
    commit_hash : Text;
    metadata : ICRC16Map;
    requester : Principal;
    timestamp : Int;
    amends : ?Nat;
  };

  public type BountyState = {
    #Funding;
    #Open;
    #Claimed : { claimant : Principal };
    #Paying : { claimant : Principal };
    #Paid : { claimant : Principal; block : Nat };
    #Refunding;
    #Refunded : { block : Nat };
    #Cancelled;
  };

  public type Bounty = {
    bounty_id : Nat;
    creator : Principal;
    wasm_id : Text;
    audit_type : Text;
    reward_canister : Principal;
    reward_amount : Nat;
    fee : Nat;
    timeout_date : Int;
    created_at : Int;
    state : BountyState;
  };

  public type Filing = {
    verifier : Principal;
    bounty_id : Nat;
    wasm_id : Text;
    audit_type : Text;
    attested : Bool;
    report : ?Text;
    metadata : ICRC16Map;
    timestamp : Int;
  };

  public type AuditSummary = {
    audit_type : Text;
    attestations : Nat;
    divergences : Nat;
    outcome : ?Outcome;
    finalized_at : ?Int;
  };

  public type Version = { version : (Nat, Nat, Nat); wasm_id : Text; published_at : Int; publisher : Principal; deprecated : ?Text };

  public type WasmStatus = {
    wasm_id : Text;
    namespace : Text;
    size : Nat;
    complete : Bool;
    request : ?VerificationRequest;
    audits : [AuditSummary];
    outcome : ?Outcome;
    bounties : [Bounty];
    filings : [Filing];
    versions : [Version];
  };

  public type PendingVerification = {
    wasm_id : Text;
    repo : Text;
    commit_hash : Text;
    namespace : Text;
    open_bounties : Nat;
    audit_types : [Text];
  };

  public type BountyView = { wasm_id : Text; audit_type : Text; open : Bool };

  type TransferResult = { #Ok : Nat; #Err : Any };
  type Ledger = actor {
    icrc1_fee : () -> async Nat;
    icrc2_transfer_from : ({
      spender_subaccount : ?Blob;
      from : Account;
      to : Account;
      amount : Nat;
      fee : ?Nat;
      memo : ?Blob;
      created_at_time : ?Nat64;
    }) -> async { #Ok : Nat; #Err : TransferFromError };
    icrc1_transfer : ({
      from_subaccount : ?Blob;
      to : Account;
      amount : Nat;
      fee : ?Nat;
      memo : ?Blob;
      created_at_time : ?Nat64;
    }) -> async { #Ok : Nat; #Err : TransferError };
  };
  type TransferFromError = {
    #BadFee : { expected_fee : Nat };
    #BadBurn : { min_burn_amount : Nat };
    #InsufficientFunds : { balance : Nat };
    #InsufficientAllowance : { allowance : Nat };
    #TooOld;
    #CreatedInFuture : { ledger_time : Nat64 };
    #Duplicate : { duplicate_of : Nat };
    #TemporarilyUnavailable;
    #GenericError : { error_code : Nat; message : Text };
  };
  type TransferError = {
    #BadFee : { expected_fee : Nat };
    #BadBurn : { min_burn_amount : Nat };
    #InsufficientFunds : { balance : Nat };
    #TooOld;
    #CreatedInFuture : { ledger_time : Nat64 };
    #Duplicate : { duplicate_of : Nat };
    #TemporarilyUnavailable;
    #GenericError : { error_code : Nat; message : Text };
  };
  type HubLock = {
    bounty_id : Nat;
    claimant : Principal;
    wasm_id : Text;
    audit_type : Text;
    stake : Nat;
    reserved_at : Int;
    expires_at : Int;
  };
  type Hub = actor {
    get_lock : (Nat) -> async ?HubLock;
    settle_lock : (Nat, Bool, Nat) -> async { #ok : HubLock; #err : Any };
  };

  type NamespaceRec = { var controllers : [Principal]; var description : Text; created_at : Int; created_by : Principal };
  type WasmRec = {
    wasm_id : Text;
    hash : Blob;
    namespace : Text;
    total_chunks : Nat;
    chunks : Map.Map<Nat, Blob>;
    var size : Nat;
    var complete : Bool;
    uploaded_by : Principal;
    created_at : Int;
  };
  type BountyRec = {
    bounty_id : Nat;
    creator : Principal;
    wasm_id : Text;
    audit_type : Text;
    reward_canister : Principal;
    reward_amount : Nat;
    fee : Nat;
    timeout_date : Int;
    created_at : Int;
    var state : BountyState;
  };
  type AuditRec = {
    var attestations : Nat;
    var divergences : Nat;
    var outcome : ?Outcome;
    var finalized_at : ?Int;
    filings : List.List<Filing>;
  };
  type VersionRec = { version : (Nat, Nat, Nat); wasm_id : Text; published_at : Int; publisher : Principal; var deprecated : ?Text };

  let MAX_CHUNK = 1024 * 1024;
  let MAX_CHUNKS = 100;
  let MAX_PAGE = 100;
  let MAX_TEXT = 1024;
  let DEFAULT_AUDIT_TYPE = "build_reproducibility_v1";

  // ---------------------------------------------------------------- state

  var policy : Policy = { quorum = 1; mode = #Auto; required_audit_types = [DEFAULT_AUDIT_TYPE] };
  var allowedLedgers : [Principal] = init.ledgers;
  let namespaces = Map.empty<Text, NamespaceRec>();
  let wasms = Map.empty<Text, WasmRec>();
  let requests = List.empty<VerificationRequest>();
  let latestRequest = Map.empty<Text, Nat>(); // wasm_id -> index in requests
  let bounties = Map.empty<Nat, BountyRec>();
  let bountiesByWasm = Map.empty<Text, List.List<Nat>>();
  var nextBountyId = 0;
  let audits = Map.empty<Text, AuditRec>(); // "<wasm_id>|<audit type>"
  let filed = Map.empty<Text, Nat>(); // "<wasm_id>|<audit type>|<verifier>" -> bounty id
  let pending = Map.empty<Text, Nat>(); // wasm_id -> number of open bounties (only while not final)
  let versions = Map.empty<Text, List.List<VersionRec>>(); // namespace -> versions
  let blocks = List.empty<Value>();
  var lastBlockHash : ?Blob = null;

  // ---------------------------------------------------------------- helpers

  func now() : Int { Time.now() };

  func isGovernance(p : Principal) : Bool { Principal.equal(p, init.governance) };

  func validNamespace(ns : Text) : Bool {
    // reverse-DNS: two or more dot-separated labels of [a-z0-9-], 1..63 chars each, no leading/trailing '-'
    if (Text.size(ns) == 0 or Text.size(ns) > 253) return false;
    let labels = Iter_toArray(Text.split(ns, #char '.'));
    if (labels.size() < 2) return false;
    for (l in labels.vals()) {
      let n = Text.size(l);
      if (n == 0 or n > 63 or Text.startsWith(l, #char '-') or Text.endsWith(l, #char '-')) return false;
      for (c in l.chars()) {
        if (not ((c >= 'a' and c <= 'z') or (c >= '0' and c <= '9') or c == '-')) return false;
      };
    };
    true;
  };

  func Iter_toArray(it : { next : () -> ?Text }) : [Text] {
    let out = List.empty<Text>();
    label items loop {
      switch (it.next()) { case (?x) List.add(out, x); case null break items };
    };
    List.toArray(out);
  };

  func hasNamespace(ns : Text) : Bool { Map.containsKey(namespaces, Text.compare, ns) };

  func isController(ns : Text, p : Principal) : Bool {
    switch (Map.get(namespaces, Text.compare, ns)) {
      case (?n) Array.any<Principal>(n.controllers, func c = Principal.equal(c, p));
      case null false;
    };
  };

  func isLowerHex(t : Text) : Bool {
    for (c in t.chars()) { if (not ((c >= '0' and c <= '9') or (c >= 'a' and c <= 'f'))) return false };
    true;
  };

  func validText(t : Text) : Bool { Text.size(t) > 0 and Text.size(t) <= MAX_TEXT };

  func auditKey(wasmId : Text, auditType : Text) : Text { wasmId # "|" # auditType };

  func audit(wasmId : Text, auditType : Text) : AuditRec {
    let k = auditKey(wasmId, auditType);
    switch (Map.get(audits, Text.compare, k)) {
      case (?a) a;
      case null {
        let a : AuditRec = { var attestations = 0; var divergences = 0; var outcome = null; var finalized_at = null; filings = List.empty() };
        Map.add(audits, Text.compare, k, a);
        a;
      };
    };
  };

  func lookupText(m : ICRC16Map, key : Text) : ?Text {
    for ((k, v) in m.vals()) { if (k == key) { switch (v) { case (#Text(t)) return ?t; case _ return null } } };
    null;
  };

  func lookupNat(m : ICRC16Map, key : Text) : ?Nat {
    for ((k, v) in m.vals()) { if (k == key) { switch (v) { case (#Nat(n)) return ?n; case _ return null } } };
    null;
  };

  func lookupPrincipal(m : ICRC16Map, key : Text) : ?Principal {
    for ((k, v) in m.vals()) { if (k == key) { switch (v) { case (#Principal(p)) return ?p; case _ return null } } };
    null;
  };

  func ledgerAllowed(p : Principal) : Bool { Array.any<Principal>(allowedLedgers, func l = Principal.equal(l, p)) };

  func bountyView(b : BountyRec) : Bounty {
    {
      bounty_id = b.bounty_id;
      creator = b.creator;
      wasm_id = b.wasm_id;
      audit_type = b.audit_type;
      reward_canister = b.reward_canister;
      reward_amount = b.reward_amount;
      fee = b.fee;
      timeout_date = b.timeout_date;
      created_at = b.created_at;
      state = b.state;
    };
  };

  func overallOutcome(wasmId : Text) : ?Outcome {
    var all = true;
    for (t in policy.required_audit_types.vals()) {
      switch (Map.get(audits, Text.compare, auditKey(wasmId, t))) {
        case (?a) {
          switch (a.outcome) { case (?#Rejected) return ?#Rejected; case (?#Verified) {}; case null all := false };
        };
        case null all := false;
      };
    };
    if (all) ?#Verified else null;
  };

  func escrowed(b : BountyRec) : Bool {
    switch (b.state) { case (#Open or #Claimed _ or #Paying _ or #Refunding) true; case _ false };
  };

  func isOpen(b : BountyRec) : Bool { switch (b.state) { case (#Open) true; case _ false } };

  func adjustPending(wasmId : Text, delta : Int) {
    let current : Int = switch (Map.get(pending, Text.compare, wasmId)) { case (?n) n; case null 0 };
    let next = current + delta;
    if (next <= 0 or overallOutcome(wasmId) != null) { Map.remove(pending, Text.compare, wasmId) } else {
      Map.add(pending, Text.compare, wasmId, Int.toNat(next));
    };
  };

  func setBountyState(b : BountyRec, s : BountyState) {
    let wasOpen = isOpen(b);
    b.state := s;
    let nowOpen = isOpen(b);
    if (wasOpen and not nowOpen) adjustPending(b.wasm_id, -1);
    if (not wasOpen and nowOpen) adjustPending(b.wasm_id, 1);
  };

  // ---------------------------------------------------------------- ICRC-3 log

  func hashValue(v : Value) : Blob {
    switch (v) {
      case (#Blob(b)) Sha256.hash(b);
      case (#Text(t)) Sha256.hash(Text.encodeUtf8(t));
      case (#Nat(n)) Sha256.hash(Blob.fromArray(leb(n)));
      case (#Int(i)) Sha256.hash(Blob.fromArray(sleb(i)));
      case (#Array(items)) {
        let d = Sha256.Digest();
        for (x in items.vals()) d.writeBlob(hashValue(x));
        d.sum();
      };
      case (#Map(entries)) {
        let parts = Array.map<(Text, Value), Blob>(entries, func((k, x)) = Blob.fromArray(Array.concat(Blob.toArray(Sha256.hash(Text.encodeUtf8(k))), Blob.toArray(hashValue(x)))));
        let sorted = Array.sort<Blob>(parts, Blob.compare);
        let d = Sha256.Digest();
        for (p in sorted.vals()) d.writeBlob(p);
        d.sum();
      };
    };
  };

  func leb(n : Nat) : [Nat8] {
    let out = List.empty<Nat8>();
    var x = n;
    loop {
      let byte = x % 128;
      x /= 128;
      if (x == 0) { List.add(out, Nat8.fromNat(byte)); return List.toArray(out) };
      List.add(out, Nat8.fromNat(byte + 128));
    };
  };

  func sleb(i : Int) : [Nat8] {
    let out = List.empty<Nat8>();
    var x = i;
    loop {
      let byte = Int.abs(x % 128);
      let b = if (x < 0 and byte != 0) 128 - byte else byte;
      x := (x - b) / 128;
      let done = (x == 0 and b < 64) or (x == -1 and b >= 64);
      if (done) { List.add(out, Nat8.fromNat(b)); return List.toArray(out) };
      List.add(out, Nat8.fromNat(b + 128));
    };
  };

  func appendBlock(btype : Text, tx : [(Text, Value)]) : Nat {
    let fields = List.fromArray<(Text, Value)>([("btype", #Text(btype)), ("ts", #Nat(Int.toNat(now()))), ("tx", #Map(tx))]);
    switch (lastBlockHash) { case (?h) List.add(fields, ("phash", #Blob(h))); case null {} };
    let block = #Map(List.toArray(fields));
    let blockHash = hashValue(block);
    lastBlockHash := ?blockHash;
    let index = List.size(blocks);
    List.add(blocks, block);
    CertifiedData.set(tipTreeRoot(index, blockHash));
    index;
  };

  // ICRC-3 tip certification: certified data is the root of the hash tree
  // { last_block_hash -> hash; last_block_index -> leb128(index) } (labels in order).
  func domain(s : Text) : [Nat8] {
    let b = Blob.toArray(Text.encodeUtf8(s));
    Array.concat([Nat8.fromNat(b.size())], b);
  };

  func leafHash(v : [Nat8]) : Blob { Sha256.hash(Blob.fromArray(Array.concat(domain("ic-hashtree-leaf"), v))) };

  func labeledHash(l : Text, sub : Blob) : Blob {
    Sha256.hash(Blob.fromArray(Array.concat(Array.concat(domain("ic-hashtree-labeled"), Blob.toArray(Text.encodeUtf8(l))), Blob.toArray(sub))));
  };

  func tipTreeRoot(index : Nat, blockHash : Blob) : Blob {
    let left = labeledHash("last_block_hash", leafHash(Blob.toArray(blockHash)));
    let right = labeledHash("last_block_index", leafHash(leb(index)));
    Sha256.hash(Blob.fromArray(Array.concat(Array.concat(domain("ic-hashtree-fork"), Blob.toArray(left)), Blob.toArray(right))));
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

  public query func icrc3_get_tip_certificate() : async ?{ certificate : Blob; hash_tree : Blob } {
    let hash = switch (lastBlockHash) { case (?h) h; case null return null };
    let certificate = switch (CertifiedData.getCertificate()) { case (?c) c; case null return null };
    let index : Nat = List.size(blocks) - 1;
    let tree = Array.flatten<Nat8>([
      [0xd9, 0xd9, 0xf7], // CBOR self-describe tag
      cborHead(4, 3), cborHead(0, 1),
      cborLeafNode("last_block_hash", Blob.toArray(hash)),
      cborLeafNode("last_block_index", leb(index)),
    ]);
    ?{ certificate; hash_tree = Blob.fromArray(tree) };
  };

  func icrc16ToValue(v : ICRC16) : Value {
    switch (v) {
      case (#Text(t)) #Text(t);
      case (#Nat(n)) #Nat(n);
      case (#Int(i)) #Int(i);
      case (#Blob(b)) #Blob(b);
      case (#Principal(p)) #Blob(Principal.toBlob(p));
      case (#Bool(b)) #Nat(if b 1 else 0);
      case (#Array(a)) #Array(Array.map<ICRC16, Value>(a, icrc16ToValue));
      case (#Map(m)) #Map(mapToValue(m));
      case _ #Text("(unsupported ICRC-16 value)");
    };
  };

  func mapToValue(m : ICRC16Map) : [(Text, Value)] {
    Array.map<(Text, ICRC16), (Text, Value)>(m, func((k, v)) = (k, icrc16ToValue(v)));
  };

  // ---------------------------------------------------------------- governance

  public shared ({ caller }) func set_policy(p : Policy) : async { #ok; #err : Error } {
    if (not isGovernance(caller)) return #err(#NotAuthorized);
    if (p.quorum == 0 or p.quorum > 100) return #err(#InvalidArgument("quorum must be 1..100"));
    if (p.required_audit_types.size() == 0) return #err(#InvalidArgument("at least one required audit type"));
    policy := p;
    #ok;
  };

  public shared ({ caller }) func set_allowed_ledgers(ledgers : [Principal]) : async { #ok; #err : Error } {
    if (not isGovernance(caller)) return #err(#NotAuthorized);
    allowedLedgers := ledgers;
    #ok;
  };

  public query func get_policy() : async Policy { policy };

  // ---------------------------------------------------------------- ICRC-118: namespaces, wasm, versions

  public shared ({ caller }) func icrc118_create_canister_type(arg : { namespace : Text; description : Text }) : async {
    #ok : Text;
    #err : Error;
  } {
    if (Principal.isAnonymous(caller)) return #err(#NotAuthorized);
    if (not validNamespace(arg.namespace)) return #err(#InvalidNamespace("use reverse-DNS, e.g. com.example.app"));
    if (Text.size(arg.description) > MAX_TEXT) return #err(#InvalidArgument("description is too long"));
    if (hasNamespace(arg.namespace)) return #err(#NamespaceExists);
    Map.add(namespaces, Text.compare, arg.namespace, {
      var controllers = [caller];
      var description = arg.description;
      created_at = now();
      created_by = caller;
    });
    #ok(arg.namespace);
  };

  public shared ({ caller }) func icrc118_manage_controller(arg : { namespace : Text; principal : Principal; add : Bool }) : async {
    #ok : [Principal];
    #err : Error;
  } {
    let ns = switch (Map.get(namespaces, Text.compare, arg.namespace)) { case (?n) n; case null return #err(#NamespaceNotFound) };
    if (not isController(arg.namespace, caller)) return #err(#NotAuthorized);
    if (arg.add) {
      if (not Array.any<Principal>(ns.controllers, func c = Principal.equal(c, arg.principal))) {
        if (ns.controllers.size() >= 10) return #err(#InvalidArgument("at most 10 controllers"));
        ns.controllers := Array.concat(ns.controllers, [arg.principal]);
      };
    } else {
      let rest = Array.filter<Principal>(ns.controllers, func c = not Principal.equal(c, arg.principal));
      if (rest.size() == 0) return #err(#InvalidArgument("a namespace keeps at least one controller"));
      ns.controllers := rest;
    };
    #ok(ns.controllers);
  };

  public query func icrc118_get_canister_type(namespace : Text) : async ?{ namespace : Text; controllers : [Principal]; description : Text; created_at : Int } {
    switch (Map.get(namespaces, Text.compare, namespace)) {
      case (?n) ?{ namespace; controllers = n.controllers; description = n.description; created_at = n.created_at };
      case null null;
    };
  };

  // Upload one chunk (at most 1 MiB) of a wasm; the chunk's sha256 is recomputed here, and once every chunk is
  // present the whole module's sha256 is recomputed and must equal `wasm_hash`.
  public shared ({ caller }) func icrc118_upload_wasm_chunk(arg : {
    namespace : Text;
    wasm_hash : Blob;
    total_chunks : Nat;
    chunk_index : Nat;
    chunk : Blob;
    chunk_hash : Blob;
  }) : async { #ok : { complete : Bool; missing : [Nat] }; #err : Error } {
    if (not hasNamespace(arg.namespace)) return #err(#NamespaceNotFound);
    if (not isController(arg.namespace, caller)) return #err(#NotAuthorized);
    if (arg.wasm_hash.size() != 32 or arg.chunk_hash.size() != 32) return #err(#InvalidArgument("hashes are 32 bytes"));
    if (arg.total_chunks == 0 or arg.total_chunks > MAX_CHUNKS) return #err(#InvalidArgument("1.." # Nat.toText(MAX_CHUNKS) # " chunks"));
    if (arg.chunk_index >= arg.total_chunks) return #err(#InvalidArgument("chunk_index out of range"));
    if (arg.chunk.size() == 0 or arg.chunk.size() > MAX_CHUNK) return #err(#InvalidArgument("a chunk is 1 byte to 1 MiB"));
    if (not Blob.equal(Sha256.hash(arg.chunk), arg.chunk_hash)) return #err(#ChunkHashMismatch({ index = arg.chunk_index }));
    let wasmId = Sha256.toHex(arg.wasm_hash);
    let rec = switch (Map.get(wasms, Text.compare, wasmId)) {
      case (?r) {
        if (r.namespace != arg.namespace) return #err(#InvalidArgument("this wasm belongs to another namespace"));
        if (r.total_chunks != arg.total_chunks) return #err(#InvalidArgument("total_chunks differs from the first upload"));
        if (r.complete) return #ok({ complete = true; missing = [] });
        r;
      };
      case null {
        let r : WasmRec = {
          wasm_id = wasmId;
          hash = arg.wasm_hash;
          namespace = arg.namespace;
          total_chunks = arg.total_chunks;
          chunks = Map.empty();
          var size = 0;
          var complete = false;
          uploaded_by = caller;
          created_at = now();
        };
        Map.add(wasms, Text.compare, wasmId, r);
        r;
      };
    };
    Map.add(rec.chunks, Nat.compare, arg.chunk_index, arg.chunk);
    let missing = Array.filter<Nat>(Array.tabulate<Nat>(rec.total_chunks, func i = i), func i = Map.get(rec.chunks, Nat.compare, i) == null);
    if (missing.size() > 0) return #ok({ complete = false; missing });
    let digest = Sha256.Digest();
    var size = 0;
    for ((_, c) in Map.entries(rec.chunks)) { digest.writeBlob(c); size += c.size() };
    let computed = digest.sum();
    if (not Blob.equal(computed, rec.hash)) {
      Map.remove(wasms, Text.compare, wasmId); // a wrong upload is dropped whole; nothing else refers to it yet
      return #err(#WasmHashMismatch({ computed = Sha256.toHex(computed) }));
    };
    rec.size := size;
    rec.complete := true;
    #ok({ complete = true; missing = [] });
  };

  public shared ({ caller }) func icrc118_update_wasm(arg : {
    namespace : Text;
    version : (Nat, Nat, Nat);
    wasm_hash : Blob;
  }) : async { #ok : Nat; #err : Error } {
    if (not hasNamespace(arg.namespace)) return #err(#NamespaceNotFound);
    if (not isController(arg.namespace, caller)) return #err(#NotAuthorized);
    if (arg.wasm_hash.size() != 32) return #err(#InvalidArgument("wasm_hash is 32 bytes"));
    let wasmId = Sha256.toHex(arg.wasm_hash);
    let rec = switch (Map.get(wasms, Text.compare, wasmId)) { case (?r) r; case null return #err(#WasmNotFound) };
    if (rec.namespace != arg.namespace) return #err(#WasmNotFound);
    switch (overallOutcome(wasmId)) {
      case (?#Verified) {};
      case (?#Rejected) return #err(#WasmRejected);
      case null return #err(#NotVerified);
    };
    let list = switch (Map.get(versions, Text.compare, arg.namespace)) {
      case (?l) l;
      case null { let l = List.empty<VersionRec>(); Map.add(versions, Text.compare, arg.namespace, l); l };
    };
    for (v in List.values(list)) { if (v.version == arg.version) return #err(#VersionExists) };
    List.add(list, { version = arg.version; wasm_id = wasmId; published_at = now(); publisher = caller; var deprecated : ?Text = null });
    let (ma, mi, pa) = arg.version;
    let index = appendBlock("118version", [
      ("namespace", #Text(arg.namespace)), ("wasm_id", #Text(wasmId)),
      ("version", #Array([#Nat(ma), #Nat(mi), #Nat(pa)])), ("caller", #Blob(Principal.toBlob(caller))),
    ]);
    #ok(index);
  };

  public shared ({ caller }) func icrc118_deprecate(arg : { namespace : Text; version : (Nat, Nat, Nat); reason : Text }) : async {
    #ok;
    #err : Error;
  } {
    if (not isController(arg.namespace, caller)) return #err(if (not hasNamespace(arg.namespace)) #NamespaceNotFound else #NotAuthorized);
    if (not validText(arg.reason)) return #err(#InvalidArgument("a reason of 1..1024 characters"));
    let list = switch (Map.get(versions, Text.compare, arg.namespace)) { case (?l) l; case null return #err(#VersionNotFound) };
    for (v in List.values(list)) {
      if (v.version == arg.version) { v.deprecated := ?arg.reason; return #ok };
    };
    #err(#VersionNotFound);
  };

  public query func icrc118_get_wasms(namespace : Text) : async [Version] {
    switch (Map.get(versions, Text.compare, namespace)) {
      case (?l) List.toArray(List.map<VersionRec, Version>(l, func v = {
        version = v.version; wasm_id = v.wasm_id; published_at = v.published_at; publisher = v.publisher; deprecated = v.deprecated;
      }));
      case null [];
    };
  };

  // ---------------------------------------------------------------- ICRC-126: requests and filings

  public shared ({ caller }) func icrc126_verification_request(arg : {
    wasm_hash : Blob;
    repo : Text;
    commit_hash : Text;
    metadata : ICRC16Map;
  }) : async { #ok : Nat; #err : Error } {
    if (arg.wasm_hash.size() != 32) return #err(#InvalidArgument("wasm_hash is 32 bytes"));
    let wasmId = Sha256.toHex(arg.wasm_hash);
    let rec = switch (Map.get(wasms, Text.compare, wasmId)) { case (?r) r; case null return #err(#WasmNotFound) };
    if (not isController(rec.namespace, caller)) return #err(#NotAuthorized);
    if (not rec.complete) {
      let missing = Array.filter<Nat>(Array.tabulate<Nat>(rec.total_chunks, func i = i), func i = Map.get(rec.chunks, Nat.compare, i) == null);
      return #err(#WasmIncomplete({ missing }));
    };
    if (not (Text.startsWith(arg.repo, #text "https://") or Text.startsWith(arg.repo, #text "http://")) or Text.size(arg.repo) > MAX_TEXT) {
      return #err(#InvalidArgument("repo must be an http(s) URL"));
    };
    if (Text.size(arg.commit_hash) != 40 or not isLowerHex(arg.commit_hash)) {
      return #err(#InvalidArgument("commit_hash must be a full 40-character lowercase hex SHA"));
    };
    if (overallOutcome(wasmId) != null) return #err(#AlreadyFinalized);
    let id = List.size(requests);
    let amends = Map.get(latestRequest, Text.compare, wasmId);
    List.add(requests, {
      id;
      wasm_id = wasmId;
      namespace = rec.namespace;
      repo = arg.repo;
      commit_hash = arg.commit_hash;
      metadata = arg.metadata;
      requester = caller;
      timestamp = now();
      amends;
    });
    Map.add(latestRequest, Text.compare, wasmId, id);
    ignore appendBlock("126request", [
      ("wasm_id", #Text(wasmId)), ("repo", #Text(arg.repo)), ("commit_hash", #Text(arg.commit_hash)),
      ("requester", #Blob(Principal.toBlob(caller))), ("metadata", #Map(mapToValue(arg.metadata))),
    ]);
    #ok(id);
  };

  public query func get_verification_request(wasm_id : Text) : async ?VerificationRequest {
    switch (Map.get(latestRequest, Text.compare, wasm_id)) { case (?i) List.get(requests, i); case null null };
  };

  // Attestation and divergence share one path: checks, a lock check with the hub, then record and settle.
  func file(caller : Principal, wasmId : Text, attested : Bool, report : ?Text, metadata : ICRC16Map) : async* {
    #ok : Nat;
    #err : Error;
  } {
    let bountyId = switch (lookupNat(metadata, "bounty_id")) { case (?b) b; case null return #err(#InvalidArgument("metadata needs bounty_id (Nat)")) };
    let auditType = switch (lookupText(metadata, "126:audit_type")) { case (?t) t; case null return #err(#InvalidArgument("metadata needs 126:audit_type (Text)")) };
    let b = switch (Map.get(bounties, Nat.compare, bountyId)) { case (?b) b; case null return #err(#BountyNotFound) };
    if (b.wasm_id != wasmId or b.audit_type != auditType) return #err(#LockInvalid("the bounty is for another wasm or audit type"));
    if (not isOpen(b)) return #err(#BountyNotOpen);
    let filingKey = auditKey(wasmId, auditType) # "|" # Principal.toText(caller);
    if (Map.get(filed, Text.compare, filingKey) != null) return #err(#AlreadyFiled);
    let hub : Hub = actor (Principal.toText(init.audit_hub));
    let lock = try { await hub.get_lock(bountyId) } catch (e) { return #err(#AuditHubUnavailable(Error.message(e))) };
    switch (lock) {
      case null return #err(#LockInvalid("no lock on this bounty"));
      case (?l) {
        if (not Principal.equal(l.claimant, caller)) return #err(#LockInvalid("the lock belongs to another verifier"));
        if (l.wasm_id != wasmId or l.audit_type != auditType) return #err(#LockInvalid("the lock is for another wasm or audit type"));
        if (l.expires_at <= now()) return #err(#LockInvalid("the lock has expired"));
      };
    };
    // Re-check after the await: another message may have filed or claimed meanwhile.
    if (not isOpen(b)) return #err(#BountyNotOpen);
    if (Map.get(filed, Text.compare, filingKey) != null) return #err(#AlreadyFiled);
    Map.add(filed, Text.compare, filingKey, bountyId);
    setBountyState(b, #Claimed({ claimant = caller }));
    let a = audit(wasmId, auditType);
    List.add(a.filings, { verifier = caller; bounty_id = bountyId; wasm_id = wasmId; audit_type = auditType; attested; report; metadata; timestamp = now() });
    if (attested) a.attestations += 1 else a.divergences += 1;
    let index = appendBlock(if attested "126attest" else "126divergence", [
      ("wasm_id", #Text(wasmId)), ("audit_type", #Text(auditType)), ("bounty_id", #Nat(bountyId)),
      ("verifier", #Blob(Principal.toBlob(caller))), ("metadata", #Map(mapToValue(metadata))),
    ]);
    if (a.outcome == null and policy.mode == #Auto) {
      if (a.attestations >= policy.quorum) finalize(wasmId, auditType, #Verified)
      else if (a.divergences >= policy.quorum) finalize(wasmId, auditType, #Rejected);
    };
    await* settleAudit(wasmId, auditType);
    #ok(index);
  };

  func finalize(wasmId : Text, auditType : Text, outcome : Outcome) {
    let a = audit(wasmId, auditType);
    if (a.outcome != null) return; // final outcomes never change
    a.outcome := ?outcome;
    a.finalized_at := ?now();
    ignore appendBlock(switch outcome { case (#Verified) "126verified"; case (#Rejected) "126rejected" }, [
      ("wasm_id", #Text(wasmId)), ("audit_type", #Text(auditType)),
      ("attestations", #Nat(a.attestations)), ("divergences", #Nat(a.divergences)),
    ]);
    if (overallOutcome(wasmId) != null) Map.remove(pending, Text.compare, wasmId);
  };

  public shared ({ caller }) func icrc126_file_attestation(arg : { wasm_id : Text; metadata : ICRC16Map }) : async {
    #ok : Nat;
    #err : Error;
  } {
    await* file(caller, arg.wasm_id, true, null, arg.metadata);
  };

  public shared ({ caller }) func icrc126_file_divergence(arg : { wasm_id : Text; divergence_report : Text; metadata : ICRC16Map }) : async {
    #ok : Nat;
    #err : Error;
  } {
    if (not validText(arg.divergence_report)) return #err(#InvalidArgument("a divergence report of 1..1024 characters"));
    await* file(caller, arg.wasm_id, false, ?arg.divergence_report, arg.metadata);
  };

  // Governance finalization (policy mode #Governance): allowed once the quorum for that outcome is reached.
  public shared ({ caller }) func finalize_verification(wasm_id : Text, audit_type : Text, outcome : Outcome) : async {
    #ok;
    #err : Error;
  } {
    if (not isGovernance(caller)) return #err(#NotAuthorized);
    let a = switch (Map.get(audits, Text.compare, auditKey(wasm_id, audit_type))) { case (?a) a; case null return #err(#NotFinalizable("no filings")) };
    if (a.outcome != null) return #err(#AlreadyFinalized);
    let votes = switch outcome { case (#Verified) a.attestations; case (#Rejected) a.divergences };
    if (votes < policy.quorum) return #err(#NotFinalizable("the quorum for that outcome is not reached"));
    finalize(wasm_id, audit_type, outcome);
    await* settleAudit(wasm_id, audit_type);
    #ok;
  };

  // ---------------------------------------------------------------- settlement

  // Pay or refund every claimed bounty of a final audit. Each bounty leaves #Claimed before any await,
  // so concurrent settlements cannot pay it twice.
  func settleAudit(wasmId : Text, auditType : Text) : async* () {
    let a = audit(wasmId, auditType);
    let outcome = switch (a.outcome) { case (?o) o; case null return };
    let ids = switch (Map.get(bountiesByWasm, Text.compare, wasmId)) { case (?l) List.toArray(l); case null [] };
    for (id in ids.vals()) {
      switch (Map.get(bounties, Nat.compare, id)) {
        case (?b) { if (b.audit_type == auditType) await* settleBounty(b, outcome, a) };
        case null {};
      };
    };
  };

  func settleBounty(b : BountyRec, outcome : Outcome, a : AuditRec) : async* () {
    let claimant = switch (b.state) { case (#Claimed({ claimant })) claimant; case _ return };
    let agreed = switch (List.find<Filing>(a.filings, func f = Principal.equal(f.verifier, claimant) and f.bounty_id == b.bounty_id)) {
      case (?f) (f.attested and outcome == #Verified) or (not f.attested and outcome == #Rejected);
      case null false;
    };
    let hub : Hub = actor (Principal.toText(init.audit_hub));
    let ledger : Ledger = actor (Principal.toText(b.reward_canister));
    if (agreed) {
      setBountyState(b, #Paying({ claimant }));
      try { ignore await hub.settle_lock(b.bounty_id, true, b.reward_amount) } catch (_) {};
      let result = try {
        await ledger.icrc1_transfer({ from_subaccount = null; to = { owner = claimant; subaccount = null }; amount = b.reward_amount; fee = ?b.fee; memo = null; created_at_time = null });
      } catch (e) { #Err(#GenericError({ error_code = 0; message = Error.message(e) })) };
      switch (result) {
        case (#Ok(block)) {
          setBountyState(b, #Paid({ claimant; block }));
          ignore appendBlock("127payout", [("bounty_id", #Nat(b.bounty_id)), ("claimant", #Blob(Principal.toBlob(claimant))), ("amount", #Nat(b.reward_amount)), ("ledger_block", #Nat(block))]);
        };
        case (#Err(_)) { setBountyState(b, #Claimed({ claimant })) }; // retried by settle_bounty
      };
    } else {
      setBountyState(b, #Refunding);
      try { ignore await hub.settle_lock(b.bounty_id, false, 0) } catch (_) {};
      await* refund(b, ledger);
    };
  };

  func refund(b : BountyRec, ledger : Ledger) : async* () {
    let result = try {
      await ledger.icrc1_transfer({ from_subaccount = null; to = { owner = b.creator; subaccount = null }; amount = b.reward_amount; fee = ?b.fee; memo = null; created_at_time = null });
    } catch (e) { #Err(#GenericError({ error_code = 0; message = Error.message(e) })) };
    switch (result) {
      case (#Ok(block)) {
        setBountyState(b, #Refunded({ block }));
        ignore appendBlock("127refund", [("bounty_id", #Nat(b.bounty_id)), ("creator", #Blob(Principal.toBlob(b.creator))), ("amount", #Nat(b.reward_amount)), ("ledger_block", #Nat(block))]);
      };
      case (#Err(_)) { b.state := #Refunding }; // stays escrowed; settle_bounty retries
    };
  };

  // Retry a payout or refund that failed at the ledger (anyone may call; the recipient is fixed).
  public shared func settle_bounty(bounty_id : Nat) : async { #ok : BountyState; #err : Error } {
    let b = switch (Map.get(bounties, Nat.compare, bounty_id)) { case (?b) b; case null return #err(#BountyNotFound) };
    switch (b.state) {
      case (#Claimed(_)) {
        let a = audit(b.wasm_id, b.audit_type);
        switch (a.outcome) { case (?o) await* settleBounty(b, o, a); case null return #err(#NotFinalizable("the audit is not final")) };
      };
      case (#Refunding) {
        b.state := #Cancelled; // guard against a concurrent retry; refund() sets the final state
        let ledger : Ledger = actor (Principal.toText(b.reward_canister));
        await* refund(b, ledger);
      };
      case _ {};
    };
    #ok(b.state);
  };

  // ---------------------------------------------------------------- ICRC-127: bounties

  public shared ({ caller }) func icrc127_create_bounty(arg : {
    challenge_parameters : ICRC16;
    bounty_metadata : ICRC16Map;
    timeout_date : Int;
  }) : async { #ok : Nat; #err : Error } {
    if (Principal.isAnonymous(caller)) return #err(#NotAuthorized);
    let challenge = switch (arg.challenge_parameters) { case (#Map(m)) m; case _ return #err(#InvalidArgument("challenge_parameters must be a Map")) };
    let wasmHash = switch (challenge.vals().next()) { case _ {
      var found : ?Blob = null;
      for ((k, v) in challenge.vals()) { if (k == "wasm_hash") { switch v { case (#Blob(b)) found := ?b; case _ {} } } };
      found;
    } };
    let hash = switch (wasmHash) { case (?h) h; case null return #err(#InvalidArgument("challenge_parameters needs wasm_hash (Blob)")) };
    if (hash.size() != 32) return #err(#InvalidArgument("wasm_hash is 32 bytes"));
    let auditType = switch (lookupText(challenge, "audit_type")) { case (?t) t; case null return #err(#InvalidArgument("challenge_parameters needs audit_type (Text)")) };
    if (Text.size(auditType) == 0 or Text.size(auditType) > 64) return #err(#InvalidArgument("audit_type is 1..64 characters"));
    let ledgerId = switch (lookupPrincipal(arg.bounty_metadata, "icrc127:reward_canister")) { case (?p) p; case null return #err(#InvalidArgument("bounty_metadata needs icrc127:reward_canister")) };
    let amount = switch (lookupNat(arg.bounty_metadata, "icrc127:reward_amount")) { case (?n) n; case null return #err(#InvalidArgument("bounty_metadata needs icrc127:reward_amount")) };
    if (amount == 0) return #err(#InvalidArgument("the reward must be positive"));
    if (not ledgerAllowed(ledgerId)) return #err(#LedgerNotAllowed);
    if (arg.timeout_date <= now()) return #err(#InvalidArgument("timeout_date is in the past"));
    let wasmId = Sha256.toHex(hash);
    if (Map.get(latestRequest, Text.compare, wasmId) == null) return #err(#RequestNotFound);
    switch (Map.get(audits, Text.compare, auditKey(wasmId, auditType))) {
      case (?a) { if (a.outcome != null) return #err(#AlreadyFinalized) };
      case null {};
    };
    let ledger : Ledger = actor (Principal.toText(ledgerId));
    let fee = try { await ledger.icrc1_fee() } catch (e) { return #err(#TransferFailed(Error.message(e))) };
    let id = nextBountyId;
    nextBountyId += 1;
    let b : BountyRec = {
      bounty_id = id;
      creator = caller;
      wasm_id = wasmId;
      audit_type = auditType;
      reward_canister = ledgerId;
      reward_amount = amount;
      fee;
      timeout_date = arg.timeout_date;
      created_at = now();
      var state = #Funding;
    };
    Map.add(bounties, Nat.compare, id, b);
    let result = try {
      await ledger.icrc2_transfer_from({
        spender_subaccount = null;
        from = { owner = caller; subaccount = null };
        to = { owner = Principal.fromActor(self); subaccount = null };
        amount = amount + fee;
        fee = null;
        memo = null;
        created_at_time = null;
      });
    } catch (e) { #Err(#GenericError({ error_code = 0; message = Error.message(e) })) };
    switch (result) {
      case (#Ok(_)) {
        let list = switch (Map.get(bountiesByWasm, Text.compare, wasmId)) {
          case (?l) l;
          case null { let l = List.empty<Nat>(); Map.add(bountiesByWasm, Text.compare, wasmId, l); l };
        };
        List.add(list, id);
        setBountyState(b, #Open);
        ignore appendBlock("127bounty", [("bounty_id", #Nat(id)), ("wasm_id", #Text(wasmId)), ("audit_type", #Text(auditType)), ("amount", #Nat(amount)), ("creator", #Blob(Principal.toBlob(caller)))]);
        #ok(id);
      };
      case (#Err(e)) {
        b.state := #Cancelled;
        #err(#TransferFailed(switch e {
          case (#InsufficientAllowance({ allowance })) "insufficient allowance: " # Nat.toText(allowance) # " (approve reward + 2 x fee: escrow holds reward + fee, and the escrow transfer costs a fee)";
          case (#InsufficientFunds({ balance })) "insufficient funds: " # Nat.toText(balance);
          case (#GenericError({ message })) message;
          case _ "the ledger refused the escrow transfer";
        }));
      };
    };
  };

  // After its timeout an unclaimed bounty goes back to its creator (anyone may trigger it).
  public shared func icrc127_refund_bounty(bounty_id : Nat) : async { #ok : BountyState; #err : Error } {
    let b = switch (Map.get(bounties, Nat.compare, bounty_id)) { case (?b) b; case null return #err(#BountyNotFound) };
    if (not isOpen(b)) return #err(#BountyNotOpen);
    if (now() < b.timeout_date) return #err(#TimeoutNotReached({ timeout_date = b.timeout_date }));
    setBountyState(b, #Refunding);
    let ledger : Ledger = actor (Principal.toText(b.reward_canister));
    await* refund(b, ledger);
    #ok(b.state);
  };

  public query func icrc127_get_bounty(bounty_id : Nat) : async ?Bounty {
    switch (Map.get(bounties, Nat.compare, bounty_id)) { case (?b) ?bountyView(b); case null null };
  };

  public query func get_bounties_for_wasm(wasm_id : Text) : async [Bounty] {
    switch (Map.get(bountiesByWasm, Text.compare, wasm_id)) {
      case (?l) List.toArray(List.filterMap<Nat, Bounty>(l, func id = switch (Map.get(bounties, Nat.compare, id)) { case (?b) ?bountyView(b); case null null }));
      case null [];
    };
  };

  // What the audit hub needs to accept a reservation.
  public query func bounty_for_lock(bounty_id : Nat) : async ?BountyView {
    switch (Map.get(bounties, Nat.compare, bounty_id)) {
      case (?b) ?{ wasm_id = b.wasm_id; audit_type = b.audit_type; open = isOpen(b) and now() < b.timeout_date };
      case null null;
    };
  };

  // Escrow accounting: per ledger, the funds held for bounties that are not yet paid or refunded.
  public query func escrow_summary() : async [(Principal, Nat)] {
    let totals = Map.empty<Principal, Nat>();
    for ((_, b) in Map.entries(bounties)) {
      if (escrowed(b)) {
        let t = switch (Map.get(totals, Principal.compare, b.reward_canister)) { case (?t) t; case null 0 };
        Map.add(totals, Principal.compare, b.reward_canister, t + b.reward_amount + b.fee);
      };
    };
    Map.toArray(totals);
  };

  // ---------------------------------------------------------------- queries for clients

  // Pending = has at least one open bounty and no final overall outcome. Paginated by wasm id (`after`).
  public query func list_pending_verifications(arg : { after : ?Text; limit : Nat }) : async [PendingVerification] {
    let out = List.empty<PendingVerification>();
    let limit = Nat.min(arg.limit, MAX_PAGE);
    let iter = switch (arg.after) { case (?a) Map.entriesFrom(pending, Text.compare, a # "\u{0}"); case null Map.entries(pending) };
    label scan for ((wasmId, open) in iter) {
      if (List.size(out) >= limit) break scan;
      switch (Map.get(latestRequest, Text.compare, wasmId)) {
        case (?i) {
          let r = List.at(requests, i);
          let types = List.empty<Text>();
          switch (Map.get(bountiesByWasm, Text.compare, wasmId)) {
            case (?ids) for (id in List.values(ids)) {
              switch (Map.get(bounties, Nat.compare, id)) {
                case (?b) { if (isOpen(b) and not List.contains(types, Text.equal, b.audit_type)) List.add(types, b.audit_type) };
                case null {};
              };
            };
            case null {};
          };
          List.add(out, { wasm_id = wasmId; repo = r.repo; commit_hash = r.commit_hash; namespace = r.namespace; open_bounties = open; audit_types = List.toArray(types) });
        };
        case null {};
      };
    };
    List.toArray(out);
  };

  public query func get_audit_records(wasm_id : Text) : async [Filing] {
    let out = List.empty<Filing>();
    for ((k, a) in Map.entries(audits)) {
      if (Text.startsWith(k, #text (wasm_id # "|"))) { for (f in List.values(a.filings)) List.add(out, f) };
    };
    List.toArray(out);
  };

  // Everything `prometheus status` shows, in one query.
  public query func get_wasm_status(wasm_id : Text) : async ?WasmStatus {
    let rec = switch (Map.get(wasms, Text.compare, wasm_id)) { case (?r) r; case null return null };
    let summaries = List.empty<AuditSummary>();
    let filings = List.empty<Filing>();
    for ((k, a) in Map.entries(audits)) {
      if (Text.startsWith(k, #text (wasm_id # "|"))) {
        let auditType = Text.trimStart(k, #text (wasm_id # "|"));
        List.add(summaries, { audit_type = auditType; attestations = a.attestations; divergences = a.divergences; outcome = a.outcome; finalized_at = a.finalized_at });
        for (f in List.values(a.filings)) List.add(filings, f);
      };
    };
    let linked = switch (Map.get(versions, Text.compare, rec.namespace)) {
      case (?l) List.toArray(List.filterMap<VersionRec, Version>(l, func v = if (v.wasm_id == wasm_id) ?{ version = v.version; wasm_id = v.wasm_id; published_at = v.published_at; publisher = v.publisher; deprecated = v.deprecated } else null));
      case null [];
    };
    let bountyList = switch (Map.get(bountiesByWasm, Text.compare, wasm_id)) {
      case (?l) List.toArray(List.filterMap<Nat, Bounty>(l, func id = switch (Map.get(bounties, Nat.compare, id)) { case (?b) ?bountyView(b); case null null }));
      case null [];
    };
    ?{
      wasm_id;
      namespace = rec.namespace;
      size = rec.size;
      complete = rec.complete;
      request = switch (Map.get(latestRequest, Text.compare, wasm_id)) { case (?i) List.get(requests, i); case null null };
      audits = List.toArray(summaries);
      outcome = overallOutcome(wasm_id);
      bounties = bountyList;
      filings = List.toArray(filings);
      versions = linked;
    };
  };

  // ---------------------------------------------------------------- ICRC-3, ICRC-10

  public query func icrc3_get_blocks(args : [{ start : Nat; length : Nat }]) : async {
    log_length : Nat;
    blocks : [{ id : Nat; block : Value }];
    archived_blocks : [{ args : [{ start : Nat; length : Nat }]; callback : shared query ([{ start : Nat; length : Nat }]) -> async { blocks : [{ id : Nat; block : Value }] } }];
  } {
    let out = List.empty<{ id : Nat; block : Value }>();
    let total = List.size(blocks);
    label ranges for (r in args.vals()) {
      var i = r.start;
      let end = Nat.min(total, r.start + Nat.min(r.length, 1000));
      while (i < end) {
        List.add(out, { id = i; block = List.at(blocks, i) });
        i += 1;
        if (List.size(out) >= 2000) break ranges;
      };
    };
    { log_length = total; blocks = List.toArray(out); archived_blocks = [] };
  };

  public query func icrc3_supported_block_types() : async [{ block_type : Text; url : Text }] {
    let url = "https://github.com/dfinity/ICRC/blob/main/ICRCs/ICRC-126/ICRC-126.md";
    [
      { block_type = "126request"; url },
      { block_type = "126attest"; url },
      { block_type = "126divergence"; url },
      { block_type = "126verified"; url },
      { block_type = "126rejected"; url },
      { block_type = "127bounty"; url = "https://github.com/dfinity/ICRC/blob/main/ICRCs/ICRC-127/ICRC-127.md" },
      { block_type = "127payout"; url = "https://github.com/dfinity/ICRC/blob/main/ICRCs/ICRC-127/ICRC-127.md" },
      { block_type = "127refund"; url = "https://github.com/dfinity/ICRC/blob/main/ICRCs/ICRC-127/ICRC-127.md" },
      { block_type = "118version"; url = "https://github.com/dfinity/ICRC/blob/main/ICRCs/ICRC-118/ICRC-118.md" },
    ];
  };

  public query func icrc3_get_archives(_ : { from : ?Principal }) : async [{ canister_id : Principal; start : Nat; end : Nat }] { [] };

  public query func icrc10_supported_standards() : async [{ name : Text; url : Text }] {
    [
      { name = "ICRC-3"; url = "https://github.com/dfinity/ICRC-1/tree/main/standards/ICRC-3" },
      { name = "ICRC-10"; url = "https://github.com/dfinity/ICRC/blob/main/ICRCs/ICRC-10/ICRC-10.md" },
      { name = "ICRC-118"; url = "https://github.com/dfinity/ICRC/blob/main/ICRCs/ICRC-118/ICRC-118.md" },
      { name = "ICRC-126"; url = "https://github.com/dfinity/ICRC/blob/main/ICRCs/ICRC-126/ICRC-126.md" },
      { name = "ICRC-127"; url = "https://github.com/dfinity/ICRC/blob/main/ICRCs/ICRC-127/ICRC-127.md" },
    ];
  };
};
