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
  type RegistryVersion = { version : Version; wasm_id : Text; deprecated : ?Text };
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
    canister_status : shared { canister_id : Principal } -> async { cycles : Nat };
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
  let registry : Registry = actor (Principal.toText(init.registry));
  transient let ic : Management = actor ("aaaaa-aa");
  let instances = Map.empty<Principal, InstanceRec>();
  let spares = List.empty<Principal>(); // empty canisters of failed deploys, used by the next deploy
  let blockLog = Log.empty();

  func now() : Int { Time.now() };

  func isGovernance(p : Principal) : Bool { not Principal.isAnonymous(p) and Principal.equal(p, governance) };

  func instancesOf(namespace : Text) : Nat {
    var n = 0;
    for (r in Map.values(instances)) { if (r.namespace == namespace) n += 1 };
    n;
  };

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

  func errorText(e : Error) : Text { switch e { case (#ManagementFailed(t)) t; case _ "failed" } };

  // ---------------------------------------------------------------- what may be installed

  // `health_check`: a query method named in the verification request's metadata (key `health_check`).
  type Target = { version : Version; wasm_id : Text; hash : Blob; chunks : [Blob]; deprecated : ?Text; health_check : ?Text };

  func controllersOf(namespace : Text) : async { #ok : [Principal]; #err : Error } {
    switch (await registry.icrc118_get_canister_type(namespace)) {
      case (?t) #ok(t.controllers);
      case null #err(#NamespaceNotFound);
    };
  };

  // The version to install (the highest published one that is not deprecated when none is named), checked
  // against the registry's verification record, and its chunks, hashed here. Deprecated versions come back
  // only when `allowDeprecated` (a controller's explicit override).
  func resolve(namespace : Text, wanted : Wanted, allowDeprecated : Bool) : async* { #ok : Target; #err : Error } {
    let versions = await registry.icrc118_get_wasms(namespace);
    let chosen = switch wanted {
      case (#version(w)) {
        switch (Array.find<RegistryVersion>(versions, func v = compareVersions(v.version, w) == #equal)) {
          case (?v) v;
          case null return #err(#VersionNotFound);
        };
      };
      case (#wasm(id)) {
        switch (Array.find<RegistryVersion>(versions, func v = v.wasm_id == id)) {
          case (?v) v;
          case null return #err(#VersionNotFound);
        };
      };
      case (#newest) {
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
    let healthCheck = switch (await registry.get_wasm_status(chosen.wasm_id, ?namespace)) {
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
    #ok({ version = chosen.version; wasm_id = chosen.wasm_id; hash; chunks = List.toArray(chunks); deprecated = chosen.deprecated;
          health_check = healthCheck });
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
    if (hex.size() != 64) return null;
    let digits = Blob.toArray(Text.encodeUtf8(hex));
    if (Array.any<Nat8>(digits, func d = hexDigit(d) == 16)) return null; // also every non-ASCII byte
    ?Blob.fromArray(Array.tabulate<Nat8>(32, func i = Nat8.fromNat(hexDigit(digits[2 * i]) * 16 + hexDigit(digits[2 * i + 1]))));
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
    let wanted = switch (arg.version) { case (?v) #version(v); case null #newest };
    let target = switch (await* resolve(arg.namespace, wanted, false)) { case (#ok(t)) t; case (#err(e)) return #err(e) };
    if (not isGovernance(caller) and instancesOf(arg.namespace) >= MAX_INSTANCES_PER_NAMESPACE) {
      return #err(#InvalidArgument("a namespace has at most " # Nat.toText(MAX_INSTANCES_PER_NAMESPACE) # " instances unless governance deploys"));
    };
    // A spare (the canister of a failed deploy, emptied) is used before a new one is paid for.
    let created : { canister_id : Principal } = switch (List.removeLast(spares)) {
      case (?id) ({ canister_id = id });
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
        await install(created.canister_id, target, #install, arg.arg);
      } catch (e) {
        // Nothing was installed (a failed install leaves the canister empty): it waits for the next deploy.
        Map.remove(instances, Principal.compare, created.canister_id);
        List.add(spares, created.canister_id);
        ignore block("121deploy_failed", [("canister_id", principalValue(created.canister_id)), ("namespace", #Text(arg.namespace)),
                                           ("wasm_id", #Text(target.wasm_id)), ("reason", #Text(reason(e))), ("caller", principalValue(caller))]);
        return #err(#ManagementFailed("install: " # reason(e)));
      };
    } finally { interrupted(rec) };
    rec.state := #Running;
    ignore block("121deploy", [("canister_id", principalValue(created.canister_id)), ("namespace", #Text(arg.namespace)),
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

  type Steps = { snapshot : Bool; stop : Bool; restart : Bool; forceDowngrade : Bool; allowDeprecated : Bool; skipPreUpgrade : ?Bool };

  // Who may change an instance: its owner or a namespace controller (`#ok(isController)`); marks it busy.
  // Marks the instance busy (`#Upgrading`) before its first await; on `#err` it is `#Running` again.
  func claim(caller : Principal, rec : InstanceRec) : async* { #ok : Bool; #err : Error } {
    if (Principal.isAnonymous(caller)) return #err(#NotAuthorized);
    if (rec.state != #Running) return #err(#Busy);
    rec.state := #Upgrading;
    let controllers = try { await controllersOf(rec.namespace) } catch (e) { #err(#ManagementFailed("registry: " # reason(e))) };
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

  func upgradeClaimed(caller : Principal, rec : InstanceRec, wanted : Wanted, arg : Blob, steps : Steps) : async* {
    #ok : (Instance, Nat);
    #err : Error;
  } {
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
    let fields = [("canister_id", principalValue(rec.canister_id)), ("namespace", #Text(rec.namespace)),
                  ("from", versionValue(rec.version)), ("to", versionValue(target.version)), ("wasm_id", #Text(target.wasm_id)),
                  ("caller", principalValue(caller)), ("deprecated_override", #Nat(if (steps.allowDeprecated and target.deprecated != null) 1 else 0))];
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
        return #err(#ManagementFailed("snapshot: " # reason(e)));
      };
    };
    if (steps.stop and taken == null) {
      try { await ic.stop_canister({ canister_id = rec.canister_id }) } catch (e) {
        rec.state := #Running;
        return #err(#ManagementFailed("stop: " # reason(e)));
      };
    };
    let persistence = if (Wasm.declaresEop(target.chunks)) ?#keep else null;
    try {
      await install(rec.canister_id, target, #upgrade(?{ skip_pre_upgrade = steps.skipPreUpgrade; wasm_memory_persistence = persistence }), arg);
    } catch (e) {
      let undone = switch (await* undoUpgrade(rec, taken)) {
        case (?done) done;
        case null {
          try { await ic.start_canister({ canister_id = rec.canister_id }) } catch (_) {};
          rec.state := #Running;
          "no snapshot was taken";
        };
      };
      ignore block("121upgrade_reverted", Array.concat(fields, [("reason", #Text(reason(e))), ("undone", #Text(undone))]));
      return #err(#ManagementFailed("install: " # reason(e) # "; " # undone));
    };
    if (steps.restart) { try { await ic.start_canister({ canister_id = rec.canister_id }) } catch (_) {} };
    switch (target.health_check, steps.restart) {
      case (?method, true) {
        switch (await* healthy(rec.canister_id, method)) {
          case (?why) {
            let undone = switch (await* undoUpgrade(rec, taken)) {
              case (?done) done;
              case null { rec.version := target.version; rec.wasm_id := target.wasm_id; rec.state := #Running; "no snapshot was taken: the new version stays" };
            };
            ignore block("121upgrade_reverted", Array.concat(fields, [("reason", #Text(why)), ("undone", #Text(undone))]));
            return #err(#ManagementFailed(why # "; " # undone));
          };
          case null {};
        };
      };
      case _ {};
    };
    rec.version := target.version;
    rec.wasm_id := target.wasm_id;
    rec.state := #Running;
    let index = block("121upgrade", fields);
    #ok((view(rec), index));
  };

  public shared ({ caller }) func upgrade(req : UpgradeRequest) : async { #ok : Instance; #err : Error } {
    let wanted = switch (req.version) { case (?v) #version(v); case null #newest };
    let steps = { snapshot = req.snapshot != ?false; stop = true; restart = true; forceDowngrade = req.force_downgrade == ?true;
                  allowDeprecated = req.allow_deprecated == ?true; skipPreUpgrade = null };
    switch (await* upgradeInstance(caller, req.canister_id, wanted, req.arg, steps)) {
      case (#ok((instance, _))) #ok(instance);
      case (#err(e)) #err(e);
    };
  };

  // Load back the snapshot taken before the last upgrade (the module and state it had then), and restart.
  // The snapshot's version must still be published in the namespace; a deprecated one only for a namespace
  // controller (recorded), as for an upgrade.
  public shared ({ caller }) func revert(canister_id : Principal) : async { #ok : Instance; #err : Error } {
    let rec = switch (Map.get(instances, Principal.compare, canister_id)) { case (?r) r; case null return #err(#InstanceNotFound) };
    let saved = switch (rec.snapshot) { case (?s) s; case null return #err(#InvalidArgument("no snapshot to revert to")) };
    let isController = switch (await* claim(caller, rec)) { case (#ok(c)) c; case (#err(e)) return #err(e) };
    try {
      let versions = try { await registry.icrc118_get_wasms(rec.namespace) } catch (e) {
        rec.state := #Running;
        return #err(#ManagementFailed("registry: " # reason(e)));
      };
      let deprecated = switch (Array.find<RegistryVersion>(versions, func v = v.wasm_id == saved.wasm_id)) {
        case (?v) v.deprecated;
        case null { rec.state := #Running; return #err(#VersionNotFound) };
      };
      switch deprecated {
        case (?why) if (not isController) { rec.state := #Running; return #err(#Deprecated(why)) };
        case null {};
      };
      switch (await* loadBack(rec, saved, true)) { case (?e) return #err(e); case null {} };
      ignore block("121revert_snapshot", [("canister_id", principalValue(canister_id)), ("to", versionValue(saved.version)),
                                           ("wasm_id", #Text(saved.wasm_id)), ("caller", principalValue(caller)),
                                           ("deprecated_override", #Nat(if (deprecated != null) 1 else 0))]);
      #ok(view(rec));
    } finally { interrupted(rec) };
  };

  // Governance brings a `#Failed` instance back: the snapshot taken before its last upgrade is loaded (the
  // module and state it had then); without one, the instance is forgotten and its canister kept as a spare.
  public shared ({ caller }) func recover(canister_id : Principal) : async { #ok : ?Instance; #err : Error } {
    if (not isGovernance(caller)) return #err(#NotAuthorized);
    let rec = switch (Map.get(instances, Principal.compare, canister_id)) { case (?r) r; case null return #err(#InstanceNotFound) };
    switch (rec.state) { case (#Failed(_)) {}; case _ return #err(#InvalidArgument("only a failed instance is recovered")) };
    rec.state := #Upgrading;
    try {
      switch (rec.snapshot) {
        case (?saved) {
          switch (await* loadBack(rec, saved, true)) { case (?e) return #err(e); case null {} };
          ignore block("121recover", [("canister_id", principalValue(canister_id)), ("to", versionValue(saved.version)), ("caller", principalValue(caller))]);
          #ok(?view(rec));
        };
        case null {
          try { await ic.uninstall_code({ canister_id; sender_canister_version = null }) } catch (e) {
            rec.state := #Failed("recover: " # reason(e));
            return #err(#ManagementFailed("uninstall: " # reason(e)));
          };
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
    timeout : Nat; // unused: the call returns when the upgrade is done
    parameters : ?[(Text, T.ICRC16)]; // none supported yet (refused, never ignored)
  };
  public type Icrc120Error = { #Generic : Text; #InvalidPayment; #Unauthorized; #WasmUnavailable };
  public type Icrc120MaintenanceError = { #Generic : Text; #NotFound; #Unauthorized };

  func icrc120Error(e : Error) : Icrc120Error {
    switch e {
      case (#NotAuthorized) #Unauthorized;
      case (#VersionNotFound or #NotVerified(_) or #Deprecated(_) or #WasmUnavailable(_) or #HashMismatch(_)) #WasmUnavailable;
      case (#InstanceNotFound) #Generic("not an instance of this orchestrator");
      case (#Busy) #Generic("another operation on this canister is in progress");
      case (#Downgrade(_)) #Generic("not newer than the running version");
      case (#ManagementFailed(t) or #InvalidArgument(t)) #Generic(t);
      case (#NamespaceNotFound) #Generic("namespace not found");
      case (#InsufficientCycles(_)) #Generic("insufficient cycles");
    };
  };

  let MAX_BATCH = 10;

  public shared ({ caller }) func icrc120_upgrade_to(requests : [Icrc120UpgradeToRequest]) : async [{ #Ok : Nat; #Err : Icrc120Error }] {
    if (requests.size() > MAX_BATCH) return Array.map<Icrc120UpgradeToRequest, { #Ok : Nat; #Err : Icrc120Error }>(requests, func _ = #Err(#Generic("at most 10 requests per call")));
    let out = List.empty<{ #Ok : Nat; #Err : Icrc120Error }>();
    for (r in requests.vals()) {
      let hasParameters = switch (r.parameters) { case (?ps) ps.size() > 0; case null false };
      let result = if (hasParameters) #Err(#Generic("parameters are not supported")) else switch (r.mode) {
        case (#upgrade(opts)) {
          let skip = switch opts { case (?o) o.skip_pre_upgrade; case null null };
          let steps = { snapshot = r.snapshot; stop = r.stop; restart = r.restart; forceDowngrade = false; allowDeprecated = false; skipPreUpgrade = skip };
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
              #Ok(block(if start "121start_canister" else "121stop_canister", [("canister_id", principalValue(id)), ("caller", principalValue(caller))]));
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
    ignore block("121top_up_policy", [("canister_id", principalValue(canister_id)), ("caller", principalValue(caller)),
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
