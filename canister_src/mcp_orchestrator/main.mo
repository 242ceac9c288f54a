// mcp_orchestrator (ICRC-120, first part): deploys and upgrades canisters only from a version the registry
// publishes as verified for the namespace and not deprecated, installing the registry's chunks with
// `install_chunked_code` after hashing them itself; every upgrade is preceded by a snapshot that is loaded
// back if the install fails. Every action is an ICRC-3 block.
//
// Fail closed: the decision to install is taken from the registry's answers alone (versions, the round's
// outcome, the namespace's controllers); no argument or metadata field can skip a check. The orchestrator is
// the only controller of the canisters it deploys, so nothing reaches them except through these checks. An
// instance is marked busy before its first await, so two operations on one canister never interleave.
import Array "mo:core/Array";
import Blob "mo:core/Blob";
import Cycles "mo:core/Cycles";
import Error "mo:core/Error";
import Int "mo:core/Int";
import List "mo:core/List";
import Map "mo:core/Map";
import Nat "mo:core/Nat";
import Nat64 "mo:core/Nat64";
import Nat8 "mo:core/Nat8";
import Order "mo:core/Order";
import Principal "mo:core/Principal";
import Text "mo:core/Text";
import Time "mo:core/Time";

import Sha256 "../lib/Sha256";
import Log "../mcp_registry/Log";
import T "../mcp_registry/Types";
import Wasm "Wasm";

persistent actor class Orchestrator(init : { governance : Principal; registry : Principal }) = self {

  public type Version = (Nat, Nat, Nat);
  public type Value = T.Value;

  public type Error = {
    #NotAuthorized;
    #NamespaceNotFound;
    #VersionNotFound;
    #NotVerified : Text; // why: no round, pending, rejected
    #Deprecated : Text;
    #WasmUnavailable : Text;
    #HashMismatch : { expected : Text; computed : Text };
    #Downgrade : { running : Version; requested : Version };
    #InstanceNotFound;
    #Busy;
    #InsufficientCycles : { balance : Nat; needed : Nat };
    #InvalidArgument : Text;
    #ManagementFailed : Text; // the management canister refused a step; the event says what was undone
  };

  public type InstanceState = { #Deploying; #Running; #Upgrading; #Failed : Text };

  public type Instance = {
    canister_id : Principal;
    namespace : Text;
    owner : Principal;
    version : Version;
    wasm_id : Text;
    created_at : Int;
    state : InstanceState;
  };

  type InstanceRec = {
    canister_id : Principal;
    namespace : Text;
    owner : Principal;
    created_at : Int;
    var version : Version;
    var wasm_id : Text;
    var state : InstanceState;
  };

  // The registry's answers (subsets of its records: Candid ignores the fields left out).
  type RegistryVersion = { version : Version; wasm_id : Text; deprecated : ?Text };
  type RegistryError = { #WasmNotFound; #InvalidArgument : Text };
  type Registry = actor {
    icrc118_get_wasms : shared query Text -> async [RegistryVersion];
    icrc118_get_canister_type : shared query Text -> async ?{ controllers : [Principal] };
    get_wasm_status : shared query (Text, ?Text) -> async ?{ namespace : Text; complete : Bool; outcome : ?{ #Verified; #Rejected } };
    icrc118_get_wasm_chunk : shared query { namespace : Text; wasm_hash : Blob; chunk_id : Nat } -> async {
      #ok : { chunk : Blob; total_chunks : Nat };
      #err : RegistryError;
    };
  };

  type UpgradeMode = ?{ skip_pre_upgrade : ?Bool; wasm_memory_persistence : ?{ #keep; #replace } };
  type Management = actor {
    create_canister : shared { settings : ?{ controllers : ?[Principal] }; sender_canister_version : ?Nat64 } -> async { canister_id : Principal };
    upload_chunk : shared { canister_id : Principal; chunk : Blob } -> async { hash : Blob };
    clear_chunk_store : shared { canister_id : Principal } -> async ();
    install_chunked_code : shared {
      mode : { #install; #reinstall; #upgrade : UpgradeMode };
      target_canister : Principal;
      store_canister : ?Principal;
      chunk_hashes_list : [{ hash : Blob }];
      wasm_module_hash : Blob;
      arg : Blob;
      sender_canister_version : ?Nat64;
    } -> async ();
    stop_canister : shared { canister_id : Principal } -> async ();
    start_canister : shared { canister_id : Principal } -> async ();
    take_canister_snapshot : shared { canister_id : Principal; replace_snapshot : ?Blob } -> async { id : Blob; taken_at_timestamp : Nat64; total_size : Nat64 };
    load_canister_snapshot : shared { canister_id : Principal; snapshot_id : Blob; sender_canister_version : ?Nat64 } -> async ();
  };

  let MAX_ARG_BYTES = 1_048_576;
  let MAX_PAGE = 100;
  let DEFAULT_CYCLES = 2_000_000_000_000; // for a new instance; the caller may ask for more, up to the reserve
  let CYCLES_RESERVE = 1_000_000_000_000; // never spent on instances

  // ---------------------------------------------------------------- state

  var governance : Principal = init.governance;
  let registry : Registry = actor (Principal.toText(init.registry));
  transient let ic : Management = actor ("aaaaa-aa");
  let instances = Map.empty<Principal, InstanceRec>();
  let blockLog = Log.empty();

  func now() : Int { Time.now() };

  func block(btype : Text, tx : [(Text, T.Value)]) : Nat { Log.append(blockLog, now(), btype, tx) };

  func principalValue(p : Principal) : T.Value { #Blob(Principal.toBlob(p)) };

  func versionValue((a, b, c) : Version) : T.Value { #Array([#Nat(a), #Nat(b), #Nat(c)]) };

  func compareVersions(x : Version, y : Version) : Order.Order {
    switch (Nat.compare(x.0, y.0)) {
      case (#equal) switch (Nat.compare(x.1, y.1)) { case (#equal) Nat.compare(x.2, y.2); case o o };
      case o o;
    };
  };

  func view(r : InstanceRec) : Instance {
    { canister_id = r.canister_id; namespace = r.namespace; owner = r.owner; version = r.version; wasm_id = r.wasm_id;
      created_at = r.created_at; state = r.state };
  };

  func reason(e : Error.Error) : Text { Error.message(e) };

  // ---------------------------------------------------------------- what may be installed

  type Target = { version : Version; wasm_id : Text; hash : Blob; chunks : [Blob]; deprecated : ?Text };

  func controllersOf(namespace : Text) : async { #ok : [Principal]; #err : Error } {
    switch (await registry.icrc118_get_canister_type(namespace)) {
      case (?t) #ok(t.controllers);
      case null #err(#NamespaceNotFound);
    };
  };

  // The version to install (the highest published one that is not deprecated when none is named), checked
  // against the registry's verification record, and its chunks, hashed here. Deprecated versions come back
  // only when `allowDeprecated` (a controller's explicit override).
  func resolve(namespace : Text, wanted : ?Version, allowDeprecated : Bool) : async* { #ok : Target; #err : Error } {
    let versions = await registry.icrc118_get_wasms(namespace);
    let chosen = switch wanted {
      case (?w) {
        switch (Array.find<RegistryVersion>(versions, func v = compareVersions(v.version, w) == #equal)) {
          case (?v) v;
          case null return #err(#VersionNotFound);
        };
      };
      case null {
        var best : ?RegistryVersion = null;
        for (v in versions.vals()) {
          if (v.deprecated == null) {
            switch best { case (?b) if (compareVersions(v.version, b.version) == #greater) best := ?v; case null best := ?v };
          };
        };
        switch best { case (?b) b; case null return #err(#VersionNotFound) };
      };
    };
    switch (chosen.deprecated) {
      case (?why) if (not allowDeprecated) return #err(#Deprecated(why));
      case null {};
    };
    switch (await registry.get_wasm_status(chosen.wasm_id, ?namespace)) {
      case (?s) {
        if (s.namespace != namespace or not s.complete) return #err(#NotVerified("the wasm is not uploaded in this namespace"));
        switch (s.outcome) {
          case (?#Verified) {};
          case (?#Rejected) return #err(#NotVerified("its verification was rejected"));
          case null return #err(#NotVerified("its verification is pending"));
        };
      };
      case null return #err(#NotVerified("the registry has no record of this wasm"));
    };
    let hash = switch (hexToBlob(chosen.wasm_id)) { case (?h) h; case null return #err(#WasmUnavailable("bad wasm id")) };
    let chunks = List.empty<Blob>();
    let digest = Sha256.init();
    var total = 1;
    var index = 0;
    while (index < total) {
      switch (await registry.icrc118_get_wasm_chunk({ namespace; wasm_hash = hash; chunk_id = index })) {
        case (#ok(c)) {
          if (index == 0) total := c.total_chunks else if (c.total_chunks != total) return #err(#WasmUnavailable("the chunk count changed"));
          Sha256.write(digest, c.chunk);
          List.add(chunks, c.chunk);
        };
        case (#err(_)) return #err(#WasmUnavailable("chunk " # Nat.toText(index) # " is not available"));
      };
      index += 1;
    };
    let computed = Sha256.toHex(Sha256.finish(digest));
    if (computed != chosen.wasm_id) return #err(#HashMismatch({ expected = chosen.wasm_id; computed }));
    #ok({ version = chosen.version; wasm_id = chosen.wasm_id; hash; chunks = List.toArray(chunks); deprecated = chosen.deprecated });
  };

  func hexToBlob(hex : Text) : ?Blob {
    if (hex.size() != 64) return null;
    let digits = Blob.toArray(Text.encodeUtf8(hex));
    let out = Array.tabulate<Nat8>(32, func i {
      let hi = hexDigit(digits[2 * i]);
      let lo = hexDigit(digits[2 * i + 1]);
      Nat8.fromNat(hi * 16 + lo);
    });
    if (Array.any<Nat8>(digits, func d = hexDigit(d) == 16)) null else ?Blob.fromArray(out);
  };

  func hexDigit(d : Nat8) : Nat {
    if (d >= 48 and d <= 57) Nat8.toNat(d) - 48 else if (d >= 97 and d <= 102) Nat8.toNat(d) - 87 else 16;
  };

  // Upload the chunks to the target's chunk store and install them (the management canister checks the
  // module hash again against the chunks it holds).
  func install(target : Principal, t : Target, mode : { #install; #upgrade : UpgradeMode }, arg : Blob) : async () {
    let hashes = List.empty<{ hash : Blob }>();
    for (chunk in t.chunks.vals()) List.add(hashes, await ic.upload_chunk({ canister_id = target; chunk }));
    try {
      await ic.install_chunked_code({ mode; target_canister = target; store_canister = null; chunk_hashes_list = List.toArray(hashes);
                                      wasm_module_hash = t.hash; arg; sender_canister_version = null });
    } catch (e) {
      ignore ic.clear_chunk_store({ canister_id = target });
      throw e;
    };
    ignore ic.clear_chunk_store({ canister_id = target });
  };

  // ---------------------------------------------------------------- deploy

  // A new canister running a verified version of `namespace`, controlled by the orchestrator only, owned
  // (upgradable through the orchestrator) by `owner` or the caller. Namespace controllers and governance deploy.
  public shared ({ caller }) func deploy(arg : { namespace : Text; version : ?Version; owner : ?Principal; arg : Blob; cycles : ?Nat }) : async {
    #ok : Instance;
    #err : Error;
  } {
    if (Principal.isAnonymous(caller)) return #err(#NotAuthorized);
    if (arg.arg.size() > MAX_ARG_BYTES) return #err(#InvalidArgument("an init argument of at most 1 MiB"));
    let cycles = switch (arg.cycles) { case (?c) c; case null DEFAULT_CYCLES };
    if (cycles > DEFAULT_CYCLES and not Principal.equal(caller, governance)) {
      return #err(#InvalidArgument("only governance gives an instance more than the default cycles"));
    };
    let controllers = switch (await controllersOf(arg.namespace)) { case (#ok(c)) c; case (#err(e)) return #err(e) };
    if (not Principal.equal(caller, governance) and Array.find<Principal>(controllers, func p = Principal.equal(p, caller)) == null) {
      return #err(#NotAuthorized);
    };
    let target = switch (await* resolve(arg.namespace, arg.version, false)) { case (#ok(t)) t; case (#err(e)) return #err(e) };
    let balance = Cycles.balance();
    if (balance < cycles + CYCLES_RESERVE) return #err(#InsufficientCycles({ balance; needed = cycles + CYCLES_RESERVE }));
    let created = try {
      await (with cycles) ic.create_canister({ settings = ?{ controllers = ?[Principal.fromActor(self)] }; sender_canister_version = null });
    } catch (e) {
      return #err(#ManagementFailed("create_canister: " # reason(e)));
    };
    let owner = switch (arg.owner) { case (?o) o; case null caller };
    let rec : InstanceRec = {
      canister_id = created.canister_id; namespace = arg.namespace; owner; created_at = now();
      var version = target.version; var wasm_id = target.wasm_id; var state = #Deploying;
    };
    Map.add(instances, Principal.compare, created.canister_id, rec);
    try {
      await install(created.canister_id, target, #install, arg.arg);
    } catch (e) {
      rec.state := #Failed("install: " # reason(e));
      ignore block("121deploy_failed", [("canister_id", principalValue(created.canister_id)), ("namespace", #Text(arg.namespace)),
                                         ("wasm_id", #Text(target.wasm_id)), ("reason", #Text(reason(e))), ("caller", principalValue(caller))]);
      return #err(#ManagementFailed("install: " # reason(e)));
    };
    rec.state := #Running;
    ignore block("121deploy", [("canister_id", principalValue(created.canister_id)), ("namespace", #Text(arg.namespace)),
                               ("version", versionValue(target.version)), ("wasm_id", #Text(target.wasm_id)),
                               ("owner", principalValue(owner)), ("caller", principalValue(caller))]);
    #ok(view(rec));
  };

  // ---------------------------------------------------------------- upgrade (ICRC-120)

  public type UpgradeRequest = {
    canister_id : Principal;
    version : ?Version; // the newest published, verified, non-deprecated one when null
    arg : Blob;
    snapshot : ?Bool; // default true: taken before, loaded back if the install fails
    force_downgrade : ?Bool;
    allow_deprecated : ?Bool; // namespace controllers only; recorded in the block
  };

  public shared ({ caller }) func icrc120_upgrade_to(req : UpgradeRequest) : async { #ok : Instance; #err : Error } {
    if (Principal.isAnonymous(caller)) return #err(#NotAuthorized);
    if (req.arg.size() > MAX_ARG_BYTES) return #err(#InvalidArgument("an upgrade argument of at most 1 MiB"));
    let rec = switch (Map.get(instances, Principal.compare, req.canister_id)) { case (?r) r; case null return #err(#InstanceNotFound) };
    if (rec.state != #Running) return #err(#Busy);
    let controllers = switch (await controllersOf(rec.namespace)) { case (#ok(c)) c; case (#err(e)) return #err(e) };
    let isController = Array.find<Principal>(controllers, func p = Principal.equal(p, caller)) != null;
    if (not isController and not Principal.equal(caller, rec.owner)) return #err(#NotAuthorized);
    let allowDeprecated = req.allow_deprecated == ?true;
    if (allowDeprecated and not isController) return #err(#NotAuthorized);
    if (rec.state != #Running) return #err(#Busy); // another operation started during the await
    rec.state := #Upgrading;
    let target = switch (await* resolve(rec.namespace, req.version, allowDeprecated)) {
      case (#ok(t)) t;
      case (#err(e)) { rec.state := #Running; return #err(e) };
    };
    if (compareVersions(target.version, rec.version) != #greater and req.force_downgrade != ?true) {
      rec.state := #Running;
      return #err(#Downgrade({ running = rec.version; requested = target.version }));
    };
    let from = rec.version;
    let fields = [("canister_id", principalValue(rec.canister_id)), ("namespace", #Text(rec.namespace)),
                  ("from", versionValue(from)), ("to", versionValue(target.version)), ("wasm_id", #Text(target.wasm_id)),
                  ("caller", principalValue(caller)), ("deprecated_override", #Nat(if (allowDeprecated and target.deprecated != null) 1 else 0))];
    let snapshot = if (req.snapshot == ?false) null else {
      try {
        await ic.stop_canister({ canister_id = rec.canister_id });
        ?(await ic.take_canister_snapshot({ canister_id = rec.canister_id; replace_snapshot = null })).id;
      } catch (e) {
        ignore ic.start_canister({ canister_id = rec.canister_id });
        rec.state := #Running;
        return #err(#ManagementFailed("snapshot: " # reason(e)));
      };
    };
    let mode = #upgrade(?{ skip_pre_upgrade = null; wasm_memory_persistence = if (Wasm.declaresEop(target.chunks)) ?#keep else null });
    try {
      await install(rec.canister_id, target, mode, req.arg);
    } catch (e) {
      let undone = switch snapshot {
        case (?id) {
          try { await ic.load_canister_snapshot({ canister_id = rec.canister_id; snapshot_id = id; sender_canister_version = null }); "the snapshot was loaded back" } catch (e2) {
            "loading the snapshot failed too: " # reason(e2);
          };
        };
        case null "no snapshot was taken";
      };
      try { await ic.start_canister({ canister_id = rec.canister_id }) } catch (_) {};
      rec.state := #Running;
      ignore block("121upgrade_reverted", Array.concat(fields, [("reason", #Text(reason(e))), ("undone", #Text(undone))]));
      return #err(#ManagementFailed("install: " # reason(e) # "; " # undone));
    };
    try { await ic.start_canister({ canister_id = rec.canister_id }) } catch (_) {};
    rec.version := target.version;
    rec.wasm_id := target.wasm_id;
    rec.state := #Running;
    ignore block("121upgrade", fields);
    #ok(view(rec));
  };

  // ---------------------------------------------------------------- reads

  public query func get_instance(canister_id : Principal) : async ?Instance {
    switch (Map.get(instances, Principal.compare, canister_id)) { case (?r) ?view(r); case null null };
  };

  // Instances in canister id order after `after`, optionally of one namespace; at most 100 per page.
  public query func list_instances(arg : { namespace : ?Text; after : ?Principal; limit : Nat }) : async [Instance] {
    let out = List.empty<Instance>();
    let limit = Nat.min(arg.limit, MAX_PAGE);
    let entries = switch (arg.after) {
      case (?a) Map.entriesFrom(instances, Principal.compare, a);
      case null Map.entries(instances);
    };
    label scan for ((id, r) in entries) {
      if (List.size(out) >= limit) break scan;
      switch (arg.after) { case (?a) if (Principal.equal(id, a)) continue scan; case null {} };
      switch (arg.namespace) { case (?ns) if (ns != r.namespace) continue scan; case null {} };
      List.add(out, view(r));
    };
    List.toArray(out);
  };

  public query func get_governance() : async Principal { governance };

  public query func icrc3_get_blocks(args : [Log.BlockRange]) : async {
    log_length : Nat;
    blocks : [{ id : Nat; block : Value }];
    archived_blocks : [{ args : [Log.BlockRange]; callback : shared query ([Log.BlockRange]) -> async { blocks : [{ id : Nat; block : Value }] } }];
  } {
    let got = Log.get(blockLog, args);
    { log_length = got.log_length; blocks = got.blocks; archived_blocks = [] };
  };

  public query func icrc3_get_tip_certificate() : async ?{ certificate : Blob; hash_tree : Blob } { Log.tipCertificate(blockLog) };

  public query func icrc10_supported_standards() : async [{ name : Text; url : Text }] {
    [
      { name = "ICRC-3"; url = "https://github.com/dfinity/ICRC-1/tree/main/standards/ICRC-3" },
      { name = "ICRC-10"; url = "https://github.com/dfinity/ICRC/issues/10" },
      { name = "ICRC-120"; url = "https://github.com/dfinity/ICRC/issues/120" },
    ];
  };
};
