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
import CertifiedData "mo:core/CertifiedData";
import Cycles "mo:core/Cycles";
import Error "mo:core/Error";
import InternetComputer "mo:core/InternetComputer";
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
import Timer "mo:core/Timer";

import Sha256 "../lib/Sha256";
import Log "../mcp_registry/Log";
import T "../mcp_registry/Types";
import Events "Events";
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
    #NoUpgradePath : { running : Version; requested : Version }; // ICRC-118 `previous` links lead elsewhere
    #InstanceNotFound;
    #Busy;
    #InsufficientCycles : { balance : Nat; needed : Nat };
    #InvalidArgument : Text;
    #ManagementFailed : Text; // the management canister refused a step; the event says what was undone
    #RegistryUnavailable : Text; // the registry did not answer; nothing was changed, or the event says what was undone
    #StoppedByGovernance; // governance stopped the instance: nothing else starts or changes it until governance starts it
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
    var snapshot : ?Saved; // taken before the last upgrade: what `revert` loads back
    var top_up : ?TopUp; // set by governance
  };

  // Keep an instance's balance above `threshold` by adding `amount` from the orchestrator's own cycles.
  public type TopUp = { threshold : Nat; amount : Nat };

  // A snapshot the orchestrator took, and the version the canister ran when it was taken.
  type Saved = { id : Blob; version : Version; wasm_id : Text; taken_at : Int };

  // Which version to install: the newest usable one, a version, or the version whose module has this hash.
  type Wanted = { #newest; #version : Version; #wasm : Text };

  // The registry's answers (subsets of its records: Candid ignores the fields left out).
  type RegistryVersion = { version : Version; wasm_id : Text; deprecated : ?Text; previous : ?Text };
  type RegistryError = { #WasmNotFound; #InvalidArgument : Text };
  type Registry = actor {
    icrc118_get_wasms : shared query Text -> async [RegistryVersion];
    icrc118_get_canister_type : shared query Text -> async ?{ controllers : [Principal] };
    get_wasm_status : shared query (Text, ?Text) -> async ?{
      namespace : Text;
      complete : Bool;
      outcome : ?{ #Verified; #Rejected };
      request : ?{ metadata : [(Text, T.ICRC16)] };
    };
    icrc118_get_upgrade_path : shared query { namespace : Text; current_version : Blob; target_version : Blob } -> async [RegistryVersion];
    icrc118_get_wasm_chunk : shared query { namespace : Text; wasm_hash : Blob; chunk_id : Nat } -> async {
      #ok : { chunk : Blob; total_chunks : Nat };
      #err : RegistryError;
    };
  };

  type RegistryV1 = actor {
    icrc118_get_wasms : shared query Text -> async [{ version : Version; wasm_id : Text; deprecated : ?Text }];
    icrc118_get_canister_type : shared query Text -> async ?{ controllers : [Principal] };
    get_wasm_status : shared query (Text, ?Text) -> async ?{
      namespace : Text;
      complete : Bool;
      outcome : ?{ #Verified; #Rejected };
      request : ?{ metadata : [(Text, T.ICRC16)] };
    };
    icrc118_get_wasm_chunk : shared query { namespace : Text; wasm_hash : Blob; chunk_id : Nat } -> async {
      #ok : { chunk : Blob; total_chunks : Nat };
      #err : RegistryError;
    };
  };

  type UpgradeMode = ?{ skip_pre_upgrade : ?Bool; wasm_memory_persistence : ?{ #keep; #replace } };
  // The settings `icrc120_config_canister` may change (never the controllers: the orchestrator stays the only one).
  type Settings = {
    compute_allocation : ?Nat;
    memory_allocation : ?Nat;
    freezing_threshold : ?Nat;
    reserved_cycles_limit : ?Nat;
    wasm_memory_limit : ?Nat;
    log_visibility : ?{ #controllers; #public_ };
  };
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
    delete_canister_snapshot : shared { canister_id : Principal; snapshot_id : Blob } -> async ();
    update_settings : shared { canister_id : Principal; settings : Settings; sender_canister_version : ?Nat64 } -> async ();
    canister_status : shared { canister_id : Principal } -> async { cycles : Nat; module_hash : ?Blob };
    uninstall_code : shared { canister_id : Principal; sender_canister_version : ?Nat64 } -> async ();
    deposit_cycles : shared { canister_id : Principal } -> async ();
  };

  let MAX_ARG_BYTES = 1_048_576;
  let MAX_INSTANCES_PER_NAMESPACE = 20; // deploys by namespace controllers; governance is not limited
  let MAX_PAGE = 100;
  let DEFAULT_CYCLES = 2_000_000_000_000; // for a new instance; the caller may ask for more, up to the reserve
  let CYCLES_RESERVE = 1_000_000_000_000; // never spent on instances

  // ---------------------------------------------------------------- state

  var governance : Principal = init.governance;
  // Set at install (an upgrade's argument does not rebind it). This stable field keeps the type the release of
  // 2026-12-01 (525a825) gave it: an actor type that gains methods is not an upgrade-compatible change. Calls
  // go through `reg`, of today's type, rebuilt from the same principal on every upgrade.
  let registry : RegistryV1 = actor (Principal.toText(init.registry));
  transient let reg : Registry = actor (Principal.toText(Principal.fromActor(registry)));
  transient let ic : Management = actor ("aaaaa-aa");
  let instances = Map.empty<Principal, InstanceRec>();
  let spares = List.empty<Principal>(); // empty canisters of failed deploys, used by the next deploy
  let kept = Map.empty<Principal, List.List<Saved>>(); // snapshots taken by `icrc120_create_snapshot`, per instance
  let heldStopped = Map.empty<Principal, ()>(); // instances governance stopped (`icrc120_stop_canister`)
  let blockLog = Log.empty();
  let events = Events.empty(); // which blocks are ICRC-120 events on which canister

  func now() : Int { Time.now() };

  func isGovernance(p : Principal) : Bool { not Principal.isAnonymous(p) and Principal.equal(p, governance) };

  func instancesOf(namespace : Text) : Nat {
    var n = 0;
    for (r in Map.values(instances)) { if (r.namespace == namespace) n += 1 };
    n;
  };

  transient let hasher = Log.hasher(); // block hashing scratch: no garbage per block
  // Append a block and certify the new tip (the only writer of the certified data).
  func block(btype : Text, tx : [(Text, T.Value)]) : Nat {
    let index = Log.append(blockLog, hasher, now(), btype, tx);
    switch (Log.tipRoot(blockLog, hasher)) { case (?root) CertifiedData.set(root); case null {} };
    index;
  };

  // A block that is also an ICRC-120 event on `canister`.
  func event(btype : Text, canister : Principal, kind : Events.EventType, tx : [(Text, T.Value)]) : Nat {
    let index = block(btype, tx);
    Events.add(events, { block = index; time = now(); canister; kind });
    index;
  };

  func principalValue(p : Principal) : T.Value { #Blob(Principal.toBlob(p)) };

  func versionValue((a, b, c) : Version) : T.Value { #Array([#Nat(a), #Nat(b), #Nat(c)]) };

  func versionText((a, b, c) : Version) : Text { Nat.toText(a) # "." # Nat.toText(b) # "." # Nat.toText(c) };

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

  func reason(e : Error.Error) : Text { clip(Error.message(e)) };

  // Text from a callee (a reject message, a health check's err) is cut before it reaches a reply or a block.
  let MAX_REASON_CHARS = 256;
  func clip(t : Text) : Text {
    if (t.size() <= MAX_REASON_CHARS) return t;
    var out = "";
    var n = 0;
    label chars for (c in t.chars()) { if (n >= MAX_REASON_CHARS) break chars; out #= Text.fromChar(c); n += 1 };
    out # "...";
  };

  func errorText(e : Error) : Text {
    switch e {
      case (#ManagementFailed(t) or #InvalidArgument(t) or #WasmUnavailable(t) or #NotVerified(t) or #Deprecated(t)) t;
      case (#HashMismatch(m)) "the chunks hash to " # m.computed # ", not " # m.expected;
      case (#Downgrade(d) or #NoUpgradePath(d)) "no way from " # versionText(d.running) # " to " # versionText(d.requested);
      case (#NotAuthorized) "not authorized";
      case (#NamespaceNotFound) "namespace not found";
      case (#VersionNotFound) "version not found";
      case (#InstanceNotFound) "not an instance of this orchestrator";
      case (#Busy) "another operation on this canister is in progress";
      case (#InsufficientCycles(c)) "insufficient cycles: " # Nat.toText(c.balance) # " of " # Nat.toText(c.needed);
      case (#RegistryUnavailable(t)) "the registry did not answer: " # t;
      case (#StoppedByGovernance) "governance stopped this canister; only governance starts it";
    };
  };

  // ---------------------------------------------------------------- what may be installed

  // `health_check`: a query method named in the verification request's metadata (key `health_check`).
  type Target = { version : Version; wasm_id : Text; hash : Blob; deprecated : ?Text; health_check : ?Text };

  // Every registry call answers `#err` instead of throwing: a registry that rejects (stopped for its own
  // upgrade, out of cycles) fails the operation cleanly, undoing what it had done, never as a trap.
  func registryFailed(e : Error.Error) : Error { #RegistryUnavailable(reason(e)) };

  func controllersOf(namespace : Text) : async* { #ok : [Principal]; #err : Error } {
    let found = try { await reg.icrc118_get_canister_type(namespace) } catch (e) { return #err(registryFailed(e)) };
    switch found {
      case (?t) #ok(t.controllers);
      case null #err(#NamespaceNotFound);
    };
  };

  // The version to install (the highest published one that is not deprecated when none is named), checked
  // against the registry's verification record. Deprecated versions come back only when `allowDeprecated` (a
  // controller's explicit override).
  func resolve(namespace : Text, wanted : Wanted, allowDeprecated : Bool) : async* { #ok : Target; #err : Error } {
    let versions = try { await reg.icrc118_get_wasms(namespace) } catch (e) { return #err(registryFailed(e)) };
    let chosen = switch wanted {
      case (#version(w)) {
        switch (Array.find<RegistryVersion>(versions, func v = compareVersions(v.version, w) == #equal)) {
          case (?v) v;
          case null return #err(#VersionNotFound);
        };
      };
      case (#wasm(id)) {
        // One module may be published as several versions: the highest usable one, else the highest.
        switch (highest(versions, func v = v.wasm_id == id and v.deprecated == null)) {
          case (?v) v;
          case null switch (highest(versions, func v = v.wasm_id == id)) { case (?v) v; case null return #err(#VersionNotFound) };
        };
      };
      case (#newest) {
        switch (highest(versions, func v = v.deprecated == null)) { case (?b) b; case null return #err(#VersionNotFound) };
      };
    };
    await* checked(namespace, chosen, allowDeprecated);
  };

  func highest(versions : [RegistryVersion], keep : RegistryVersion -> Bool) : ?RegistryVersion {
    var best : ?RegistryVersion = null;
    for (v in versions.vals()) {
      if (keep(v)) switch best { case (?b) if (compareVersions(v.version, b.version) == #greater) best := ?v; case null best := ?v };
    };
    best;
  };

  // A published version is installable when its wasm is complete in this namespace and its round is verified.
  func checked(namespace : Text, chosen : RegistryVersion, allowDeprecated : Bool) : async* { #ok : Target; #err : Error } {
    switch (chosen.deprecated) {
      case (?why) if (not allowDeprecated) return #err(#Deprecated(why));
      case null {};
    };
    let status = try { await reg.get_wasm_status(chosen.wasm_id, ?namespace) } catch (e) { return #err(registryFailed(e)) };
    let healthCheck = switch status {
      case (?s) {
        if (s.namespace != namespace or not s.complete) return #err(#NotVerified("the wasm is not uploaded in this namespace"));
        switch (s.outcome) {
          case (?#Verified) {};
          case (?#Rejected) return #err(#NotVerified("its verification was rejected"));
          case null return #err(#NotVerified("its verification is pending"));
        };
        switch (s.request) { case (?r) healthMethod(r.metadata); case null null };
      };
      case null return #err(#NotVerified("the registry has no record of this wasm"));
    };
    let hash = switch (hexToBlob(chosen.wasm_id)) { case (?h) h; case null return #err(#WasmUnavailable("bad wasm id")) };
    #ok({ version = chosen.version; wasm_id = chosen.wasm_id; hash; deprecated = chosen.deprecated; health_check = healthCheck });
  };

  // The chunks of `t`'s module, hashed here: a module that does not hash to the version's id is never installed.
  func fetchChunks(namespace : Text, t : Target) : async* { #ok : [Blob]; #err : Error } {
    let chunks = List.empty<Blob>();
    let digest = Sha256.init();
    var total = 1;
    var index = 0;
    while (index < total) {
      let answer = try { await reg.icrc118_get_wasm_chunk({ namespace; wasm_hash = t.hash; chunk_id = index }) } catch (e) {
        return #err(registryFailed(e));
      };
      switch answer {
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
    if (computed != t.wasm_id) return #err(#HashMismatch({ expected = t.wasm_id; computed }));
    #ok(List.toArray(chunks));
  };

  func healthMethod(metadata : [(Text, T.ICRC16)]) : ?Text {
    for ((k, v) in metadata.vals()) {
      switch (k, v) { case ("health_check", #Text(m)) if (m.size() > 0 and m.size() <= 100) return ?m; case _ {} };
    };
    null;
  };

  // Healthy: the method answers `variant { ok }` (any payload) or `true`. A trap, a reject or anything else
  // is not, and says why.
  func healthy(canister : Principal, method : Text) : async* ?Text {
    let reply = try { await InternetComputer.call(canister, method, to_candid ()) } catch (e) {
      return ?("the health check " # method # " failed: " # reason(e));
    };
    if (reply.size() < 4 or Blob.toArray(reply)[0] != 0x44 or reply.size() > 1024) return ?("the health check " # method # " did not answer ok");
    let asResult : ?{ #ok : ?Null; #err : ?Text } = from_candid (reply);
    switch asResult {
      case (?#ok(_)) return null;
      case (?#err(why)) return ?("the health check " # method # " answered err" # (switch why { case (?t) ": " # clip(t); case null "" }));
      case null {};
    };
    let asBool : ?Bool = from_candid (reply);
    if (asBool == ?true) null else ?("the health check " # method # " did not answer ok");
  };

  func hexToBlob(hex : Text) : ?Blob {
    switch (Sha256.fromHex(hex)) { case (?h) if (h.size() == 32) ?h else null; case null null };
  };

  // Upload the chunks to the target's chunk store and install them (the management canister checks the
  // module hash again against the chunks it holds).
  func install(target : Principal, t : Target, chunks : [Blob], mode : { #install; #upgrade : UpgradeMode }, arg : Blob) : async () {
    let hashes = List.empty<{ hash : Blob }>();
    for (chunk in chunks.vals()) List.add(hashes, await ic.upload_chunk({ canister_id = target; chunk }));
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
    let controllers = switch (await* controllersOf(arg.namespace)) { case (#ok(c)) c; case (#err(e)) return #err(e) };
    if (not Principal.equal(caller, governance) and Array.find<Principal>(controllers, func p = Principal.equal(p, caller)) == null) {
      return #err(#NotAuthorized);
    };
    let wanted = switch (arg.version) { case (?v) #version(v); case null #newest };
    let target = switch (await* resolve(arg.namespace, wanted, false)) { case (#ok(t)) t; case (#err(e)) return #err(e) };
    let chunks = switch (await* fetchChunks(arg.namespace, target)) { case (#ok(c)) c; case (#err(e)) return #err(e) };
    if (not isGovernance(caller) and instancesOf(arg.namespace) >= MAX_INSTANCES_PER_NAMESPACE) {
      return #err(#InvalidArgument("a namespace has at most " # Nat.toText(MAX_INSTANCES_PER_NAMESPACE) # " instances unless governance deploys"));
    };
    // A spare (the canister of a failed deploy, emptied) is used before a new one is paid for.
    let spare = List.removeLast(spares);
    let created : { canister_id : Principal } = switch spare {
      case (?id) { Map.remove(kept, Principal.compare, id); Map.remove(heldStopped, Principal.compare, id); { canister_id = id } };
      case null {
        let balance = Cycles.balance();
        if (balance < cycles + CYCLES_RESERVE) return #err(#InsufficientCycles({ balance; needed = cycles + CYCLES_RESERVE }));
        try {
          await (with cycles) ic.create_canister({ settings = ?{ controllers = ?[Principal.fromActor(self)] }; sender_canister_version = null });
        } catch (e) {
          return #err(#ManagementFailed("create_canister: " # reason(e)));
        };
      };
    };
    let owner = switch (arg.owner) { case (?o) o; case null caller };
    let rec : InstanceRec = {
      canister_id = created.canister_id; namespace = arg.namespace; owner; created_at = now();
      var version = target.version; var wasm_id = target.wasm_id; var state = #Deploying; var snapshot = null;
      var top_up = null;
    };
    Map.add(instances, Principal.compare, created.canister_id, rec);
    try {
      try {
        await install(created.canister_id, target, chunks, #install, arg.arg);
      } catch (e) {
        // Nothing was installed (a failed install leaves the canister empty): it waits for the next deploy.
        Map.remove(instances, Principal.compare, created.canister_id);
        List.add(spares, created.canister_id);
        ignore event("121deploy_failed", created.canister_id, #upgrade_finished, [("canister_id", principalValue(created.canister_id)), ("namespace", #Text(arg.namespace)),
                                           ("wasm_id", #Text(target.wasm_id)), ("reason", #Text(reason(e))), ("caller", principalValue(caller))]);
        return #err(#ManagementFailed("install: " # reason(e)));
      };
      // A spare may have been left stopped by an interrupted operation before it was emptied.
      if (spare != null) { try { await ic.start_canister({ canister_id = created.canister_id }) } catch (_) {} };
    } finally { interrupted(rec) };
    rec.state := #Running;
    ignore event("121deploy", created.canister_id, #upgrade_finished, [("canister_id", principalValue(created.canister_id)), ("namespace", #Text(arg.namespace)),
                               ("version", versionValue(target.version)), ("wasm_id", #Text(target.wasm_id)),
                               ("owner", principalValue(owner)), ("caller", principalValue(caller))]);
    #ok(view(rec));
  };

  // ---------------------------------------------------------------- upgrade

  public type UpgradeRequest = {
    canister_id : Principal;
    version : ?Version; // the newest published, verified, non-deprecated one when null
    arg : Blob;
    snapshot : ?Bool; // default true: taken before, loaded back if the install fails, kept for `revert`
    force_downgrade : ?Bool;
    allow_deprecated : ?Bool; // namespace controllers only; recorded in the block
  };

  type Steps = {
    snapshot : Bool;
    stop : Bool;
    restart : Bool;
    forceDowngrade : Bool;
    allowDeprecated : Bool;
    skipPreUpgrade : ?Bool;
    settings : ?Settings; // ICRC-120 `parameters`, applied before the first step
    parameters : [(Text, T.Value)]; // the same, as recorded
    timeout : Nat; // ICRC-120's, in ns (0: none): an upgrade that took longer is undone and declared failed
  };

  let MAX_PATH = 10; // versions installed by one upgrade

  // Who may change an instance: its owner or a namespace controller (`#ok(isController)`); marks it busy.
  // Marks the instance busy (`#Upgrading`) before its first await; on `#err` it is `#Running` again.
  func claim(caller : Principal, rec : InstanceRec) : async* { #ok : Bool; #err : Error } {
    if (Principal.isAnonymous(caller)) return #err(#NotAuthorized);
    if (rec.state != #Running) return #err(#Busy);
    if (Map.containsKey(heldStopped, Principal.compare, rec.canister_id)) return #err(#StoppedByGovernance);
    rec.state := #Upgrading;
    let controllers = await* controllersOf(rec.namespace);
    let isController = switch controllers {
      case (#ok(c)) Array.find<Principal>(c, func p = Principal.equal(p, caller)) != null;
      case (#err(e)) { rec.state := #Running; return #err(e) };
    };
    if (not isController and not Principal.equal(caller, rec.owner)) { rec.state := #Running; return #err(#NotAuthorized) };
    #ok(isController);
  };

  // After a trap behind an await the rest of the message is undone but the busy mark stays: a `finally`
  // (run even then) marks the instance `#Failed` so governance can `recover` it.
  func interrupted(rec : InstanceRec) {
    if (rec.state == #Upgrading or rec.state == #Deploying) rec.state := #Failed("interrupted: the orchestrator trapped; governance can recover it");
  };

  // The one upgrade path (`upgrade` and ICRC-120's batch both come here); returns the instance and its block.
  func upgradeInstance(caller : Principal, canisterId : Principal, wanted : Wanted, arg : Blob, steps : Steps) : async* {
    #ok : (Instance, Nat);
    #err : Error;
  } {
    if (arg.size() > MAX_ARG_BYTES) return #err(#InvalidArgument("an upgrade argument of at most 1 MiB"));
    let rec = switch (Map.get(instances, Principal.compare, canisterId)) { case (?r) r; case null return #err(#InstanceNotFound) };
    let isController = switch (await* claim(caller, rec)) { case (#ok(c)) c; case (#err(e)) return #err(e) };
    if (steps.allowDeprecated and not isController) { rec.state := #Running; return #err(#NotAuthorized) };
    try { await* upgradeClaimed(caller, rec, wanted, arg, steps) } finally { interrupted(rec) };
  };

  // The versions to install, in order, to reach `target` from what `rec` runs: the ICRC-118 `previous` links
  // when going forward (each step verified and usable, checked before anything changes), just the target
  // for a forced downgrade or a reinstall of the same version.
  func pathTo(rec : InstanceRec, target : Target, allowDeprecated : Bool) : async* { #ok : [Target]; #err : Error } {
    if (compareVersions(target.version, rec.version) != #greater or target.wasm_id == rec.wasm_id) return #ok([target]);
    let current = switch (hexToBlob(rec.wasm_id)) { case (?h) h; case null return #err(#WasmUnavailable("bad wasm id")) };
    let path = try {
      await reg.icrc118_get_upgrade_path({ namespace = rec.namespace; current_version = current; target_version = target.hash });
    } catch (e) { return #err(registryFailed(e)) };
    let refused = #err(#NoUpgradePath({ running = rec.version; requested = target.version }));
    if (path.size() == 0 or path[path.size() - 1].wasm_id != target.wasm_id) return refused;
    if (path.size() > MAX_PATH) return #err(#InvalidArgument("an upgrade path of at most " # Nat.toText(MAX_PATH) # " versions"));
    let steps = List.empty<Target>();
    for (i in Nat.range(0, path.size() - 1)) {
      let v = path[i];
      if (compareVersions(v.version, rec.version) != #greater or compareVersions(v.version, target.version) != #less) return refused;
      switch (await* checked(rec.namespace, v, allowDeprecated)) { case (#ok(t)) List.add(steps, t); case (#err(e)) return #err(e) };
    };
    List.add(steps, target);
    #ok(List.toArray(steps));
  };

  func upgradeClaimed(caller : Principal, rec : InstanceRec, wanted : Wanted, arg : Blob, steps : Steps) : async* {
    #ok : (Instance, Nat);
    #err : Error;
  } {
    if (steps.timeout > 0 and not steps.snapshot) {
      rec.state := #Running;
      return #err(#InvalidArgument("a timeout needs a snapshot: without one an overdue upgrade could not be undone"));
    };
    let target = switch (await* resolve(rec.namespace, wanted, steps.allowDeprecated)) {
      case (#ok(t)) t;
      case (#err(e)) { rec.state := #Running; return #err(e) };
    };
    if (target.health_check != null and not steps.restart) {
      rec.state := #Running;
      return #err(#InvalidArgument("this version has a health check: the canister must be restarted after the upgrade"));
    };
    if (compareVersions(target.version, rec.version) != #greater and not steps.forceDowngrade) {
      rec.state := #Running;
      return #err(#Downgrade({ running = rec.version; requested = target.version }));
    };
    let path = switch (await* pathTo(rec, target, steps.allowDeprecated)) {
      case (#ok(p)) p;
      case (#err(e)) { rec.state := #Running; return #err(e) };
    };
    // Settings are not part of a snapshot: once applied they stay, whatever happens to the upgrade.
    let nothingChanged = switch (steps.settings) {
      case (?settings) {
        try { await ic.update_settings({ canister_id = rec.canister_id; settings; sender_canister_version = null }) } catch (e) {
          rec.state := #Running;
          return #err(#ManagementFailed("settings: " # reason(e)));
        };
        ignore event("121config_canister", rec.canister_id, #configuration_changed, [
          ("canister_id", principalValue(rec.canister_id)), ("caller", principalValue(caller)), ("configs", #Map(steps.parameters)),
        ]);
        "only the settings (parameters) were applied";
      };
      case null "nothing was changed";
    };
    let deprecatedOverride = steps.allowDeprecated and Array.any<Target>(path, func t = t.deprecated != null);
    let fields = [("canister_id", principalValue(rec.canister_id)), ("namespace", #Text(rec.namespace)),
                  ("from", versionValue(rec.version)), ("to", versionValue(target.version)), ("wasm_id", #Text(target.wasm_id)),
                  ("path", #Array(Array.map<Target, T.Value>(path, func t = versionValue(t.version)))),
                  ("caller", principalValue(caller)), ("deprecated_override", #Nat(if deprecatedOverride 1 else 0))];
    ignore event("121upgrade_to", rec.canister_id, #upgrade_initiated, Array.concat(fields, [("timeout", #Nat(steps.timeout))]));
    let started = now(); // ICRC-120's timeout counts from here: stop, snapshot, every step
    let before : Saved = { id = ""; version = rec.version; wasm_id = rec.wasm_id; taken_at = now() };
    let taken : ?Saved = if (not steps.snapshot) null else {
      try {
        await ic.stop_canister({ canister_id = rec.canister_id });
        let replace = switch (rec.snapshot) { case (?s) ?s.id; case null null };
        let id = (await ic.take_canister_snapshot({ canister_id = rec.canister_id; replace_snapshot = replace })).id;
        rec.snapshot := ?{ before with id };
        rec.snapshot;
      } catch (e) {
        try { await ic.start_canister({ canister_id = rec.canister_id }) } catch (_) {};
        rec.state := #Running;
        ignore event("121upgrade_reverted", rec.canister_id, #upgrade_finished, Array.concat(fields, [("reason", #Text("snapshot: " # reason(e))), ("undone", #Text(nothingChanged))]));
        return #err(#ManagementFailed("snapshot: " # reason(e)));
      };
    };
    if (steps.stop and taken == null) {
      try { await ic.stop_canister({ canister_id = rec.canister_id }) } catch (e) {
        rec.state := #Running;
        ignore event("121upgrade_reverted", rec.canister_id, #upgrade_finished, Array.concat(fields, [("reason", #Text("stop: " # reason(e))), ("undone", #Text(nothingChanged))]));
        return #err(#ManagementFailed("stop: " # reason(e)));
      };
    };
    // Each step in turn; the instance records each version as soon as the canister runs it, so a failure
    // without a snapshot leaves it truthfully at the last step installed.
    for (i in path.keys()) {
      let step = path[i];
      // `skip_pre_upgrade` is about the module running now: the first step's.
      let skip = if (i == 0) steps.skipPreUpgrade else null;
      let failure : ?Text = switch (await* fetchChunks(rec.namespace, step)) {
        case (#err(e)) ?("chunks of " # versionText(step.version) # ": " # errorText(e));
        case (#ok(chunks)) {
          let persistence = if (Wasm.declaresEop(chunks)) ?#keep else null;
          try {
            await install(rec.canister_id, step, chunks, #upgrade(?{ skip_pre_upgrade = skip; wasm_memory_persistence = persistence }), arg);
            rec.version := step.version;
            rec.wasm_id := step.wasm_id;
            null;
          } catch (e) { ?("install of " # versionText(step.version) # ": " # reason(e)) };
        };
      };
      switch failure {
        case (?why) {
          let undone = switch (await* undoUpgrade(rec, taken)) {
            case (?done) done;
            case null {
              try { await ic.start_canister({ canister_id = rec.canister_id }) } catch (_) {};
              rec.state := #Running;
              "no snapshot was taken: the canister runs " # versionText(rec.version);
            };
          };
          ignore event("121upgrade_reverted", rec.canister_id, #upgrade_finished, Array.concat(fields, [("reason", #Text(why)), ("undone", #Text(undone))]));
          return #err(#ManagementFailed(why # "; " # undone));
        };
        case null {};
      };
    };
    // ICRC-120's timeout: an upgrade whose steps took longer is declared failed and undone before the new
    // version serves a single call.
    let overdue : ?Text = if (steps.timeout > 0 and now() - started > steps.timeout) {
      ?("the upgrade took " # Int.toText(now() - started) # " ns, over its timeout of " # Nat.toText(steps.timeout) # " ns");
    } else null;
    if (overdue == null and steps.restart) { try { await ic.start_canister({ canister_id = rec.canister_id }) } catch (_) {} };
    switch (target.health_check, steps.restart, overdue) {
      case (_, _, ?why) {
        let undone = switch (await* undoUpgrade(rec, taken)) {
          case (?done) done;
          case null { rec.state := #Running; "no snapshot was taken: the new version stays" };
        };
        ignore event("121upgrade_reverted", rec.canister_id, #upgrade_finished, Array.concat(fields, [("reason", #Text(why)), ("undone", #Text(undone))]));
        return #err(#ManagementFailed(why # "; " # undone));
      };
      case (?method, true, null) {
        switch (await* healthy(rec.canister_id, method)) {
          case (?why) {
            let undone = switch (await* undoUpgrade(rec, taken)) {
              case (?done) done;
              case null { rec.state := #Running; "no snapshot was taken: the new version stays" };
            };
            ignore event("121upgrade_reverted", rec.canister_id, #upgrade_finished, Array.concat(fields, [("reason", #Text(why)), ("undone", #Text(undone))]));
            return #err(#ManagementFailed(why # "; " # undone));
          };
          case null {};
        };
      };
      case _ {};
    };
    rec.state := #Running;
    let index = event("121upgrade", rec.canister_id, #upgrade_finished, fields);
    #ok((view(rec), index));
  };

  public shared ({ caller }) func upgrade(req : UpgradeRequest) : async { #ok : Instance; #err : Error } {
    let wanted = switch (req.version) { case (?v) #version(v); case null #newest };
    let steps = { snapshot = req.snapshot != ?false; stop = true; restart = true; forceDowngrade = req.force_downgrade == ?true;
                  allowDeprecated = req.allow_deprecated == ?true; skipPreUpgrade = null; settings = null; parameters = []; timeout = 0 };
    switch (await* upgradeInstance(caller, req.canister_id, wanted, req.arg, steps)) {
      case (#ok((instance, _))) #ok(instance);
      case (#err(e)) #err(e);
    };
  };

  // Load back the snapshot taken before the last upgrade (the module and state it had then), and restart.
  public shared ({ caller }) func revert(canister_id : Principal) : async { #ok : Instance; #err : Error } {
    let rec = switch (Map.get(instances, Principal.compare, canister_id)) { case (?r) r; case null return #err(#InstanceNotFound) };
    let saved = switch (rec.snapshot) { case (?s) s; case null return #err(#InvalidArgument("no snapshot to revert to")) };
    switch (await* revertClaimed(caller, rec, saved, true)) { case (#ok(_)) #ok(view(rec)); case (#err(e)) #err(e) };
  };

  // Load `saved` back for the owner or a namespace controller. The snapshot's version must still be published
  // in the namespace; a deprecated one only for a namespace controller (recorded), as for an upgrade.
  func revertClaimed(caller : Principal, rec : InstanceRec, saved : Saved, restart : Bool) : async* { #ok : Nat; #err : Error } {
    let isController = switch (await* claim(caller, rec)) { case (#ok(c)) c; case (#err(e)) return #err(e) };
    try {
      let versions = try { await reg.icrc118_get_wasms(rec.namespace) } catch (e) {
        rec.state := #Running;
        return #err(#ManagementFailed("registry: " # reason(e)));
      };
      let deprecated = switch (Array.find<RegistryVersion>(versions, func v = v.wasm_id == saved.wasm_id and compareVersions(v.version, saved.version) == #equal)) {
        case (?v) v.deprecated;
        case null { rec.state := #Running; return #err(#VersionNotFound) };
      };
      switch deprecated {
        case (?why) if (not isController) { rec.state := #Running; return #err(#Deprecated(why)) };
        case null {};
      };
      switch (await* loadBack(rec, saved, restart)) { case (?e) return #err(e); case null {} };
      #ok(event("121revert_snapshot", rec.canister_id, #snapshot_reverted, [
        ("canister_id", principalValue(rec.canister_id)), ("to", versionValue(saved.version)), ("wasm_id", #Text(saved.wasm_id)),
        ("snapshot_id", #Blob(saved.id)), ("caller", principalValue(caller)), ("deprecated_override", #Nat(if (deprecated != null) 1 else 0)),
      ]));
    } finally { interrupted(rec) };
  };

  // Governance brings a `#Failed` instance back. When the canister runs the module the instance records, only
  // an operation's busy mark was left behind: the canister is started and keeps its state. Otherwise the
  // snapshot taken before its last upgrade is loaded; with none, the canister is emptied (its kept snapshots
  // deleted) and kept as a spare.
  public shared ({ caller }) func recover(canister_id : Principal) : async { #ok : ?Instance; #err : Error } {
    if (not isGovernance(caller)) return #err(#NotAuthorized);
    let rec = switch (Map.get(instances, Principal.compare, canister_id)) { case (?r) r; case null return #err(#InstanceNotFound) };
    let failure = switch (rec.state) { case (#Failed(why)) why; case _ return #err(#InvalidArgument("only a failed instance is recovered")) };
    rec.state := #Upgrading;
    try {
      let running = try { (await ic.canister_status({ canister_id })).module_hash } catch (e) {
        rec.state := #Failed(failure);
        return #err(#ManagementFailed("canister_status: " # reason(e)));
      };
      if (running == hexToBlob(rec.wasm_id)) {
        try { await ic.start_canister({ canister_id }) } catch (e) {
          rec.state := #Failed(failure);
          return #err(#ManagementFailed("start: " # reason(e)));
        };
        Map.remove(heldStopped, Principal.compare, canister_id);
        rec.state := #Running;
        ignore event("121recover", canister_id, #canister_started, [("canister_id", principalValue(canister_id)), ("restarted", versionValue(rec.version)), ("caller", principalValue(caller))]);
        return #ok(?view(rec));
      };
      switch (rec.snapshot) {
        case (?saved) {
          switch (await* loadBack(rec, saved, true)) { case (?e) return #err(e); case null {} };
          Map.remove(heldStopped, Principal.compare, canister_id);
          ignore event("121recover", canister_id, #snapshot_reverted, [("canister_id", principalValue(canister_id)), ("to", versionValue(saved.version)), ("caller", principalValue(caller))]);
          #ok(?view(rec));
        };
        case null {
          try {
            await ic.uninstall_code({ canister_id; sender_canister_version = null });
            for (s in List.values(keptOf(canister_id))) await ic.delete_canister_snapshot({ canister_id; snapshot_id = s.id });
            await ic.start_canister({ canister_id });
          } catch (e) {
            rec.state := #Failed(failure);
            return #err(#ManagementFailed("emptying the canister: " # reason(e)));
          };
          Map.remove(kept, Principal.compare, canister_id);
          Map.remove(heldStopped, Principal.compare, canister_id);
          Map.remove(instances, Principal.compare, canister_id);
          List.add(spares, canister_id);
          ignore block("121recover", [("canister_id", principalValue(canister_id)), ("caller", principalValue(caller))]);
          #ok(null);
        };
      };
    } finally { interrupted(rec) };
  };

  // Undo an upgrade with the snapshot it took, if any (null: none was taken); says what happened.
  func undoUpgrade(rec : InstanceRec, taken : ?Saved) : async* ?Text {
    switch taken {
      case (?saved) ?(switch (await* loadBack(rec, saved, true)) { case (?e) "loading the snapshot failed: " # errorText(e); case null "the snapshot was loaded back" });
      case null null;
    };
  };

  // Stop, load `saved`, record its version, start if asked; on failure the instance is marked `#Failed`.
  func loadBack(rec : InstanceRec, saved : Saved, restart : Bool) : async* ?Error {
    try {
      await ic.stop_canister({ canister_id = rec.canister_id });
      await ic.load_canister_snapshot({ canister_id = rec.canister_id; snapshot_id = saved.id; sender_canister_version = null });
    } catch (e) {
      try { await ic.start_canister({ canister_id = rec.canister_id }) } catch (_) {};
      rec.state := #Failed("revert: " # reason(e));
      return ?#ManagementFailed("revert: " # reason(e));
    };
    if (restart) { try { await ic.start_canister({ canister_id = rec.canister_id }) } catch (_) {} };
    rec.version := saved.version;
    rec.wasm_id := saved.wasm_id;
    rec.state := #Running;
    null;
  };

  // ---------------------------------------------------------------- ICRC-120, as its draft types it

  public type InstallMode = { #install; #reinstall; #upgrade : UpgradeMode };
  public type Icrc120UpgradeToRequest = {
    canister_id : Principal;
    hash : Blob; // the module: a version of the instance's namespace
    args : Blob;
    mode : InstallMode; // only #upgrade: new instances come from `deploy`
    stop : Bool;
    snapshot : Bool;
    restart : Bool;
    timeout : Nat; // ns (0: none): an upgrade that took longer is undone (its snapshot loaded back) and fails
    parameters : ?[(Text, T.ICRC16)]; // `sys:` settings applied before the upgrade (as `icrc120_config_canister`)
  };
  public type Icrc120Error = { #Generic : Text; #InvalidPayment; #Unauthorized; #WasmUnavailable };
  public type Icrc120MaintenanceError = { #Generic : Text; #NotFound; #Unauthorized };
  public type Icrc120ConfigError = { #Generic : Text; #InvalidConfig : Text; #Unauthorized };
  public type Icrc120Result = { #Ok : Nat; #Err : Icrc120MaintenanceError };
  public type OrchestrationEvent = { id : Nat; canister_id : Principal; timestamp : Nat; event_type : Events.EventType; details : T.ICRC16 };

  func icrc120Error(e : Error) : Icrc120Error {
    switch e {
      case (#NotAuthorized) #Unauthorized;
      case (#VersionNotFound or #NotVerified(_) or #Deprecated(_) or #WasmUnavailable(_) or #HashMismatch(_)) #WasmUnavailable;
      case _ #Generic(errorText(e));
    };
  };

  func maintenanceError(e : Error) : Icrc120MaintenanceError {
    switch e { case (#NotAuthorized) #Unauthorized; case (#InstanceNotFound) #NotFound; case _ #Generic(errorText(e)) };
  };

  let MAX_BATCH = 10;
  let MAX_NAT64 = 18_446_744_073_709_551_615;

  // ICRC-120 `sys:` settings, checked here and applied with `update_settings`. `sys:controllers` is refused
  // (the orchestrator stays the only controller of what it deploys, so every change goes through these
  // checks); allocations reserve capacity paid from the cycles governance funds, so only governance sets them.
  func parseSettings(configs : [(Text, T.ICRC16)], byGovernance : Bool) : { #ok : Settings; #err : Text } {
    if (configs.size() == 0 or configs.size() > 10) return #err("1 to 10 settings");
    var compute : ?Nat = null;
    var memory : ?Nat = null;
    var freezing : ?Nat = null;
    var reserved : ?Nat = null;
    var wasmLimit : ?Nat = null;
    var logs : ?{ #controllers; #public_ } = null;
    for ((key, value) in configs.vals()) {
      switch (key, value) {
        case ("sys:controllers", _) return #err("sys:controllers cannot be set: the orchestrator stays the only controller");
        case ("sys:compute_allocation" or "sys:memory_allocation", #Nat(_)) if (not byGovernance) return #err("only governance sets " # key);
        case ("sys:log_visibility", #Text("controllers")) logs := ?#controllers;
        case ("sys:log_visibility", #Text("public")) logs := ?#public_;
        case (_, #Nat(n)) if (n > MAX_NAT64) return #err(key # " is at most 2^64-1");
        case _ return #err("unsupported setting or value type: " # clip(key));
      };
      switch (key, value) {
        case ("sys:compute_allocation", #Nat(n)) { if (n > 100) return #err("sys:compute_allocation is 0..100"); compute := ?n };
        case ("sys:memory_allocation", #Nat(n)) memory := ?n;
        case ("sys:freezing_threshold", #Nat(n)) freezing := ?n;
        case ("sys:reserved_cycles_limit", #Nat(n)) reserved := ?n;
        case ("sys:wasm_memory_limit", #Nat(n)) wasmLimit := ?n;
        case ("sys:log_visibility", _) {};
        case _ return #err("unsupported setting or value type: " # clip(key));
      };
    };
    #ok({ compute_allocation = compute; memory_allocation = memory; freezing_threshold = freezing; reserved_cycles_limit = reserved;
          wasm_memory_limit = wasmLimit; log_visibility = logs });
  };

  public shared ({ caller }) func icrc120_upgrade_to(requests : [Icrc120UpgradeToRequest]) : async [{ #Ok : Nat; #Err : Icrc120Error }] {
    if (requests.size() > MAX_BATCH) return Array.map<Icrc120UpgradeToRequest, { #Ok : Nat; #Err : Icrc120Error }>(requests, func _ = #Err(#Generic("at most 10 requests per call")));
    let out = List.empty<{ #Ok : Nat; #Err : Icrc120Error }>();
    for (r in requests.vals()) {
      let settings : { #ok : ?Settings; #err : Text } = switch (r.parameters) {
        case (?ps) if (ps.size() == 0) #ok(null) else switch (parseSettings(ps, false)) { case (#ok(s)) #ok(?s); case (#err(e)) #err(e) };
        case null #ok(null);
      };
      let result = switch (settings, r.mode) {
        case (#err(why), _) #Err(#Generic("parameters: " # why));
        case (#ok(settings), #upgrade(opts)) {
          let skip = switch opts { case (?o) o.skip_pre_upgrade; case null null };
          let parameters = switch (r.parameters) { case (?ps) Log.fromMap(ps); case null [] };
          let steps = { snapshot = r.snapshot; stop = r.stop; restart = r.restart; forceDowngrade = false; allowDeprecated = false;
                        skipPreUpgrade = skip; settings; parameters; timeout = r.timeout };
          switch (await* upgradeInstance(caller, r.canister_id, #wasm(Sha256.toHex(r.hash)), r.args, steps)) {
            case (#ok((_, index))) #Ok(index);
            case (#err(e)) #Err(icrc120Error(e));
          };
        };
        case _ #Err(#Generic("only #upgrade: new instances come from deploy"));
      };
      List.add(out, result);
    };
    List.toArray(out);
  };

  // Settings of an instance, for its owner, a namespace controller or governance (allocations: governance only).
  public shared ({ caller }) func icrc120_config_canister(requests : [{ canister_id : Principal; configs : [(Text, T.ICRC16)] }]) : async [{
    #Ok : Nat;
    #Err : Icrc120ConfigError;
  }] {
    if (requests.size() > MAX_BATCH) return Array.map<{ canister_id : Principal; configs : [(Text, T.ICRC16)] }, { #Ok : Nat; #Err : Icrc120ConfigError }>(requests, func _ = #Err(#Generic("at most 10 requests per call")));
    let out = List.empty<{ #Ok : Nat; #Err : Icrc120ConfigError }>();
    for (r in requests.vals()) {
      List.add(out, switch (await* configure(caller, r.canister_id, r.configs)) { case (#ok(i)) #Ok(i); case (#err(e)) #Err(e) });
    };
    List.toArray(out);
  };

  func configure(caller : Principal, canisterId : Principal, configs : [(Text, T.ICRC16)]) : async* { #ok : Nat; #err : Icrc120ConfigError } {
    let rec = switch (Map.get(instances, Principal.compare, canisterId)) { case (?r) r; case null return #err(#Generic("not an instance of this orchestrator")) };
    let settings = switch (parseSettings(configs, isGovernance(caller))) { case (#ok(s)) s; case (#err(why)) return #err(#InvalidConfig(why)) };
    if (isGovernance(caller)) {
      if (rec.state != #Running) return #err(#Generic("another operation on this canister is in progress"));
      rec.state := #Upgrading;
    } else {
      switch (await* claim(caller, rec)) { case (#ok(_)) {}; case (#err(#NotAuthorized)) return #err(#Unauthorized); case (#err(e)) return #err(#Generic(errorText(e))) };
    };
    try {
      try { await ic.update_settings({ canister_id = canisterId; settings; sender_canister_version = null }) } catch (e) {
        rec.state := #Running;
        return #err(#Generic("update_settings: " # reason(e)));
      };
      rec.state := #Running;
      #ok(event("121config_canister", canisterId, #configuration_changed, [
        ("canister_id", principalValue(canisterId)), ("caller", principalValue(caller)),
        ("configs", #Map(Log.fromMap(configs))),
      ]));
    } finally { interrupted(rec) };
  };

  // ---------------------------------------------------------------- ICRC-120 snapshots

  // Snapshots the owner or a namespace controller asks for, besides the one every upgrade takes (at most
  // this many per instance, so the IC's limit of 10 per canister is never what refuses an upgrade).
  let MAX_KEPT_SNAPSHOTS = 3;

  func keptOf(id : Principal) : List.List<Saved> {
    switch (Map.get(kept, Principal.compare, id)) {
      case (?l) l;
      case null { let l = List.empty<Saved>(); Map.add(kept, Principal.compare, id, l); l };
    };
  };

  // A snapshot the orchestrator took of this instance (the upgrade one or a kept one).
  func findSnapshot(rec : InstanceRec, id : Blob) : ?Saved {
    switch (rec.snapshot) { case (?s) if (s.id == id) return ?s; case null {} };
    List.find<Saved>(keptOf(rec.canister_id), func s = s.id == id);
  };

  public type SnapshotInfo = { snapshot_id : Blob; version : Version; wasm_id : Text; taken_at : Int; before_upgrade : Bool };

  public query func list_snapshots(canister_id : Principal) : async [SnapshotInfo] {
    let rec = switch (Map.get(instances, Principal.compare, canister_id)) { case (?r) r; case null return [] };
    let out = List.empty<SnapshotInfo>();
    switch (rec.snapshot) {
      case (?s) List.add(out, { snapshot_id = s.id; version = s.version; wasm_id = s.wasm_id; taken_at = s.taken_at; before_upgrade = true });
      case null {};
    };
    switch (Map.get(kept, Principal.compare, canister_id)) {
      case (?l) for (s in List.values(l)) List.add(out, { snapshot_id = s.id; version = s.version; wasm_id = s.wasm_id; taken_at = s.taken_at; before_upgrade = false });
      case null {};
    };
    List.toArray(out);
  };

  // The canister is stopped for the snapshot (the IC requires it) and started again when `restart`.
  public shared ({ caller }) func icrc120_create_snapshot(requests : [{ canister_id : Principal; restart : Bool }]) : async [Icrc120Result] {
    if (requests.size() > MAX_BATCH) return Array.map<{ canister_id : Principal; restart : Bool }, Icrc120Result>(requests, func _ = #Err(#Generic("at most 10 requests per call")));
    let out = List.empty<Icrc120Result>();
    for (r in requests.vals()) List.add(out, switch (await* snapshot(caller, r.canister_id, r.restart)) { case (#ok(i)) #Ok(i); case (#err(e)) #Err(maintenanceError(e)) });
    List.toArray(out);
  };

  func snapshot(caller : Principal, canisterId : Principal, restart : Bool) : async* { #ok : Nat; #err : Error } {
    let rec = switch (Map.get(instances, Principal.compare, canisterId)) { case (?r) r; case null return #err(#InstanceNotFound) };
    switch (await* claim(caller, rec)) { case (#ok(_)) {}; case (#err(e)) return #err(e) };
    try {
      let list = keptOf(canisterId);
      if (List.size(list) >= MAX_KEPT_SNAPSHOTS) {
        rec.state := #Running;
        return #err(#InvalidArgument("at most " # Nat.toText(MAX_KEPT_SNAPSHOTS) # " snapshots per instance: clean one first"));
      };
      let id = try {
        await ic.stop_canister({ canister_id = canisterId });
        (await ic.take_canister_snapshot({ canister_id = canisterId; replace_snapshot = null })).id;
      } catch (e) {
        try { await ic.start_canister({ canister_id = canisterId }) } catch (_) {};
        rec.state := #Running;
        return #err(#ManagementFailed("snapshot: " # reason(e)));
      };
      List.add(list, { id; version = rec.version; wasm_id = rec.wasm_id; taken_at = now() });
      if (restart) { try { await ic.start_canister({ canister_id = canisterId }) } catch (_) {} };
      rec.state := #Running;
      #ok(event("121create_snapshot", canisterId, #snapshot_created, [
        ("canister_id", principalValue(canisterId)), ("snapshot_id", #Blob(id)), ("version", versionValue(rec.version)),
        ("caller", principalValue(caller)),
      ]));
    } finally { interrupted(rec) };
  };

  public shared ({ caller }) func icrc120_clean_snapshot(requests : [{ canister_id : Principal; snapshot_id : Blob }]) : async [Icrc120Result] {
    if (requests.size() > MAX_BATCH) return Array.map<{ canister_id : Principal; snapshot_id : Blob }, Icrc120Result>(requests, func _ = #Err(#Generic("at most 10 requests per call")));
    let out = List.empty<Icrc120Result>();
    for (r in requests.vals()) List.add(out, switch (await* clean(caller, r.canister_id, r.snapshot_id)) { case (#ok(i)) #Ok(i); case (#err(e)) #Err(e) });
    List.toArray(out);
  };

  func clean(caller : Principal, canisterId : Principal, snapshotId : Blob) : async* { #ok : Nat; #err : Icrc120MaintenanceError } {
    let rec = switch (Map.get(instances, Principal.compare, canisterId)) { case (?r) r; case null return #err(#NotFound) };
    if (findSnapshot(rec, snapshotId) == null) return #err(#NotFound);
    switch (await* claim(caller, rec)) { case (#ok(_)) {}; case (#err(e)) return #err(maintenanceError(e)) };
    try {
      try { await ic.delete_canister_snapshot({ canister_id = canisterId; snapshot_id = snapshotId }) } catch (e) {
        rec.state := #Running;
        return #err(#Generic("delete_canister_snapshot: " # reason(e)));
      };
      switch (rec.snapshot) { case (?s) if (s.id == snapshotId) rec.snapshot := null; case null {} };
      let list = keptOf(canisterId);
      let rest = List.filter<Saved>(list, func s = s.id != snapshotId);
      List.clear(list);
      List.addAll(list, List.values(rest));
      rec.state := #Running;
      #ok(event("121clean_snapshot", canisterId, #snapshot_cleaned, [
        ("canister_id", principalValue(canisterId)), ("snapshot_id", #Blob(snapshotId)), ("caller", principalValue(caller)),
      ]));
    } finally { interrupted(rec) };
  };

  public shared ({ caller }) func icrc120_revert_snapshot(requests : [{ canister_id : Principal; snapshot_id : Blob; restart : Bool }]) : async [Icrc120Result] {
    if (requests.size() > MAX_BATCH) return Array.map<{ canister_id : Principal; snapshot_id : Blob; restart : Bool }, Icrc120Result>(requests, func _ = #Err(#Generic("at most 10 requests per call")));
    let out = List.empty<Icrc120Result>();
    for (r in requests.vals()) {
      let result = switch (Map.get(instances, Principal.compare, r.canister_id)) {
        case null #Err(#NotFound);
        case (?rec) switch (findSnapshot(rec, r.snapshot_id)) {
          case null #Err(#NotFound);
          case (?saved) switch (await* revertClaimed(caller, rec, saved, r.restart)) { case (#ok(i)) #Ok(i); case (#err(e)) #Err(maintenanceError(e)) };
        };
      };
      List.add(out, result);
    };
    List.toArray(out);
  };

  // ---------------------------------------------------------------- ICRC-120 events and metadata

  // The release before the event index (525a825) logged the same blocks without indexing them: index them once.
  system func postupgrade() {
    if (List.size(events.all) > 0) return;
    var start = 0;
    let length = Log.length(blockLog);
    while (start < length) {
      let got = Log.get(blockLog, [{ start; length = length - start }]);
      for (b in got.blocks.vals()) {
        switch (eventOf(b.block)) { case (?(canister, kind, time)) Events.add(events, { block = b.id; time; canister; kind }); case null {} };
        start := b.id + 1;
      };
      if (got.blocks.size() == 0) return;
    };
  };

  func eventOf(block : T.Value) : ?(Principal, Events.EventType, Int) {
    let fields = switch block { case (#Map(m)) m; case _ return null };
    var btype = "";
    var time : Int = 0;
    var canister : ?Principal = null;
    for ((k, v) in fields.vals()) {
      switch (k, v) {
        case ("btype", #Text(t)) btype := t;
        case ("ts", #Nat(n)) time := n;
        case ("tx", #Map(tx)) for ((f, x) in tx.vals()) { switch (f, x) { case ("canister_id", #Blob(b)) canister := ?Principal.fromBlob(b); case _ {} } };
        case _ {};
      };
    };
    let kind : Events.EventType = switch btype {
      case ("121deploy" or "121deploy_failed" or "121upgrade" or "121upgrade_reverted") #upgrade_finished;
      case ("121revert_snapshot" or "121recover") #snapshot_reverted;
      case ("121stop_canister") #canister_stopped;
      case ("121start_canister") #canister_started;
      case ("121top_up_policy") #configuration_changed;
      case _ return null;
    };
    switch canister { case (?c) ?(c, kind, time); case null null };
  };

  // Events after `prev` (an event id, as big-endian bytes), oldest first, at most `take` (default 20, at most
  // 100). A page costs a binary search and a merge of one list per requested type, whatever the log's size.
  public query func icrc120_get_events(arg : { filter : ?Events.Filter; prev : ?Blob; take : ?Nat }) : async [OrchestrationEvent] {
    let after : ?Nat = switch (arg.prev) {
      case (?b) {
        if (b.size() > 16) return [];
        var n = 0;
        for (byte in b.vals()) n := n * 256 + Nat8.toNat(byte);
        ?n;
      };
      case null null;
    };
    let take = switch (arg.take) { case (?t) Nat.min(t, MAX_PAGE); case null 20 };
    Array.map<Events.Ref, OrchestrationEvent>(Events.page(events, arg.filter, after, take), func r {
      let got = Log.get(blockLog, [{ start = r.block; length = 1 }]);
      let details : T.ICRC16 = if (got.blocks.size() == 1) Log.toIcrc16(got.blocks[0].block) else #Map([]);
      { id = r.block; canister_id = r.canister; timestamp = Int.abs(r.time); event_type = r.kind; details };
    });
  };

  public query func icrc120_metadata() : async [(Text, T.ICRC16)] {
    [("icrc120:canister_type", #Text("orchestrator"))];
  };

  // Maintenance (governance only): stop or start an instance; each records a block.
  public shared ({ caller }) func icrc120_stop_canister(requests : [{ canister_id : Principal; timeout : Nat }]) : async [{ #Ok : Nat; #Err : Icrc120MaintenanceError }] {
    await* maintain(caller, Array.map<{ canister_id : Principal; timeout : Nat }, Principal>(requests, func r = r.canister_id), false);
  };

  public shared ({ caller }) func icrc120_start_canister(requests : [{ canister_id : Principal; timeout : Nat }]) : async [{ #Ok : Nat; #Err : Icrc120MaintenanceError }] {
    await* maintain(caller, Array.map<{ canister_id : Principal; timeout : Nat }, Principal>(requests, func r = r.canister_id), true);
  };

  func maintain(caller : Principal, ids : [Principal], start : Bool) : async* [{ #Ok : Nat; #Err : Icrc120MaintenanceError }] {
    let refusal : ?Icrc120MaintenanceError = if (not isGovernance(caller)) ?#Unauthorized
      else if (ids.size() > MAX_BATCH) ?#Generic("at most 10 requests per call") else null;
    switch refusal {
      case (?e) return Array.map<Principal, { #Ok : Nat; #Err : Icrc120MaintenanceError }>(ids, func _ = #Err(e));
      case null {};
    };
    let out = List.empty<{ #Ok : Nat; #Err : Icrc120MaintenanceError }>();
    for (id in ids.vals()) {
      let result = do {
        switch (Map.get(instances, Principal.compare, id)) {
          case null #Err(#NotFound);
          case (?rec) if (rec.state != #Running) #Err(#Generic("another operation on this canister is in progress")) else {
            rec.state := #Upgrading;
            let r = try {
              if (start) await ic.start_canister({ canister_id = id }) else await ic.stop_canister({ canister_id = id });
              if (start) Map.remove(heldStopped, Principal.compare, id) else Map.add(heldStopped, Principal.compare, id, ());
              #Ok(event(if start "121start_canister" else "121stop_canister", id, if start #canister_started else #canister_stopped,
                        [("canister_id", principalValue(id)), ("caller", principalValue(caller))]));
            } catch (e) { #Err(#Generic(reason(e))) };
            rec.state := #Running;
            r;
          };
        };
      };
      List.add(out, result);
    };
    List.toArray(out);
  };

  // ---------------------------------------------------------------- cycles

  let MAX_TOP_UP = 10_000_000_000_000;
  transient let toppingUp = Map.empty<Principal, ()>();
  let TOP_UP_EVERY_S = 3600;

  public shared ({ caller }) func set_top_up(canister_id : Principal, policy : ?TopUp) : async { #ok; #err : Error } {
    if (not isGovernance(caller)) return #err(#NotAuthorized);
    let rec = switch (Map.get(instances, Principal.compare, canister_id)) { case (?r) r; case null return #err(#InstanceNotFound) };
    switch policy {
      case (?p) if (p.amount == 0 or p.amount > MAX_TOP_UP) return #err(#InvalidArgument("an amount of 1..10 T cycles"));
      case null {};
    };
    rec.top_up := policy;
    ignore event("121top_up_policy", canister_id, #configuration_changed, [("canister_id", principalValue(canister_id)), ("caller", principalValue(caller)),
                                       ("threshold", #Nat(switch policy { case (?p) p.threshold; case null 0 })),
                                       ("amount", #Nat(switch policy { case (?p) p.amount; case null 0 }))]);
    #ok;
  };

  // Top up, by their policies, the instances of one page (anyone may ask; an hourly timer does it too). An
  // instance is topped up only below its threshold, and never below the orchestrator's reserve.
  public func top_up_instances(arg : { after : ?Principal; limit : Nat }) : async [{ canister_id : Principal; cycles : Nat; added : Nat }] {
    await* topUpPage(arg.after, Nat.min(arg.limit, MAX_PAGE));
  };

  func topUpPage(after : ?Principal, limit : Nat) : async* [{ canister_id : Principal; cycles : Nat; added : Nat }] {
    let due = List.empty<(InstanceRec, TopUp)>();
    let entries = switch after { case (?a) Map.entriesFrom(instances, Principal.compare, a); case null Map.entries(instances) };
    label scan for ((id, r) in entries) {
      if (List.size(due) >= limit) break scan;
      switch (after) { case (?a) if (Principal.equal(id, a)) continue scan; case null {} };
      switch (r.top_up) { case (?p) List.add(due, (r, p)); case null {} };
    };
    let out = List.empty<{ canister_id : Principal; cycles : Nat; added : Nat }>();
    for ((r, p) in List.values(due)) {
      if (Map.get(toppingUp, Principal.compare, r.canister_id) == null) { // one top-up per instance at a time
        Map.add(toppingUp, Principal.compare, r.canister_id, ());
        let cycles = try { (await ic.canister_status({ canister_id = r.canister_id })).cycles } catch (_) { p.threshold };
        var added = 0;
        if (cycles < p.threshold and Cycles.balance() >= p.amount + CYCLES_RESERVE) {
          try {
            await (with cycles = p.amount) ic.deposit_cycles({ canister_id = r.canister_id });
            added := p.amount;
            ignore block("121top_up", [("canister_id", principalValue(r.canister_id)), ("cycles", #Nat(cycles)), ("added", #Nat(added))]);
          } catch (_) {};
        };
        Map.remove(toppingUp, Principal.compare, r.canister_id);
        List.add(out, { canister_id = r.canister_id; cycles; added });
      };
    };
    List.toArray(out);
  };

  transient let _topUpTimer = Timer.recurringTimer<system>(#seconds(TOP_UP_EVERY_S), func() : async () {
    ignore await* topUpPage(null, MAX_PAGE);
  });

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
