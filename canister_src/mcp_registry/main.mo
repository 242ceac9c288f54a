// mcp_registry: namespaces and their wasm (ICRC-118), verification rounds (ICRC-126), bounties with ICRC-2
// escrow (ICRC-127), finalization, settlement, and an ICRC-3 block log.
//
// This file holds the public interface and the order of steps; each piece of state has one writer module:
// Namespaces (namespaces, versions), Uploads (wasm chunks), Rounds (requests, filings, outcomes), Bounties
// (bounty states, the transition table, escrow totals), Transfers (ledger transfers with deduplication keys),
// Log (ICRC-3). Every decision that guards money is taken, and written, before any await; an await's outcome
// only ever completes a step that is already recorded (docs/canisters.md lists each guarantee).
import Array "mo:core/Array";
import Blob "mo:core/Blob";
import Error "mo:core/Error";
import Int "mo:core/Int";
import List "mo:core/List";
import Nat "mo:core/Nat";
import Principal "mo:core/Principal";
import Text "mo:core/Text";
import Time "mo:core/Time";

import MemoryStats "../lib/MemoryStats";
import Sha256 "../lib/Sha256";
import CertifiedData "mo:core/CertifiedData";

import Bounties "Bounties";
import Legacy "Legacy";
import Limits "Limits";
import Log "Log";
import Namespaces "Namespaces";
import Provenance "Provenance";
import Rounds "Rounds";
import Transfers "Transfers";
import T "Types";
import Uploads "Uploads";

persistent actor class Registry(init : { governance : Principal; audit_hub : Principal; ledgers : [Principal] }) = self {

  public type ICRC16 = T.ICRC16;
  public type ICRC16Map = T.ICRC16Map;
  public type Value = T.Value;
  public type Account = T.Account;
  public type Error = T.Error;
  public type Outcome = T.Outcome;
  public type Policy = T.Policy;
  public type VerificationRequest = T.VerificationRequest;
  public type BountyState = T.BountyState;
  public type Bounty = T.Bounty;
  public type Transfer = T.Transfer;
  public type Filing = T.Filing;
  public type WasmStatus = T.WasmStatus;
  public type PendingVerification = T.PendingVerification;
  public type Version = T.Version;
  public type Grant = T.Grant;
  public type ReservationEnd = T.ReservationEnd;
  public type EscrowTotals = T.EscrowTotals;
  public type StakeVerdict = T.StakeVerdict;

  public type GrantError = {
    #NotAuthorized;
    #BountyNotFound;
    #BountyNotOpen : Text;
    #AuditTypeMismatch : { expected : Text };
    #AlreadyHolding : { bounty_id : Nat };
    #AlreadyFiled;
  };

  type HubError = { #LockNotFound; #NotAuthorized; #InvalidArgument : Text };
  type Hub = actor {
    settle_lock : (Nat, Principal, StakeVerdict, Nat) -> async { #ok; #err : HubError };
  };

  let DEFAULT_AUDIT_TYPE = "build_reproducibility_v1";
  // A reservation must leave the verifier this long before the bounty closes.
  let MIN_RESERVATION_NS : Int = 10 * 60 * 1_000_000_000;

  // ---------------------------------------------------------------- state (one writer module each)

  // Set once, at install: an upgrade's argument does not rebind them (governance hands over by `set_governance`).
  var governance : Principal = init.governance;
  let auditHub : Principal = init.audit_hub;
  var policy : T.Policy = { quorum = 1; mode = #Auto; required_audit_types = [DEFAULT_AUDIT_TYPE]; min_bounty_reward = 100_000 };
  var allowedLedgers : [Principal] = init.ledgers;
  let names = Namespaces.empty();
  let previousOf = Namespaces.emptyPrevious();
  let uploads = Legacy.emptyUploads(); // the previous release's shape: emptied into `wasmUploads` on upgrade
  let wasmUploads = Uploads.empty();
  let wasmBytes = Uploads.emptyBytes(); // complete uploads' chunks, in stable memory
  let uploadBudget = Uploads.emptyBudget(); // what all uploads may hold, and hold now
  let rounds = Rounds.empty();
  let bounties = Bounties.empty();
  let transfers = Transfers.empty();
  let log = Legacy.emptyLog(); // the previous release's shape: emptied into `blockLog` on upgrade
  let blockLog = Log.empty();
  let provenance = Provenance.empty(); // signed statements and the certified tree over them
  transient let hasher = Log.hasher(); // block and tree hashing scratch: no garbage per block
  transient let provenanceMemo = Provenance.emptyMemo(hasher); // the tree's upper forks, so a filing rehashes one path
  var requireSigned = false; // governance: refuse filings without a signed statement


  // ---------------------------------------------------------------- helpers

  func now() : Int { Time.now() };

  func selfAccount() : T.Account { { owner = Principal.fromActor(self); subaccount = null } };

  func isGovernance(p : Principal) : Bool { not Principal.isAnonymous(p) and Principal.equal(p, governance) };

  func isHub(p : Principal) : Bool { Principal.equal(p, auditHub) };

  func ledgerAllowed(p : Principal) : Bool { Array.any<Principal>(allowedLedgers, func l = Principal.equal(l, p)) };

  func lookup(m : T.ICRC16Map, key : Text) : ?T.ICRC16 {
    for ((k, v) in m.vals()) { if (k == key) return ?v };
    null;
  };

  func lookupText(m : T.ICRC16Map, key : Text) : ?Text { switch (lookup(m, key)) { case (?#Text(t)) ?t; case _ null } };
  func lookupNat(m : T.ICRC16Map, key : Text) : ?Nat { switch (lookup(m, key)) { case (?#Nat(n)) ?n; case _ null } };
  func lookupBlob(m : T.ICRC16Map, key : Text) : ?Blob { switch (lookup(m, key)) { case (?#Blob(b)) ?b; case _ null } };
  func lookupPrincipal(m : T.ICRC16Map, key : Text) : ?Principal {
    switch (lookup(m, key)) { case (?#Principal(p)) ?p; case _ null };
  };

  // Append a block and certify the tip beside the provenance tree (the only writer of the certified data).
  func block(btype : Text, tx : [(Text, T.Value)]) : Nat {
    let index = Log.append(blockLog, hasher, now(), btype, tx);
    certify();
    index;
  };

  func wasmHash(wasmId : Text) : ?Blob {
    switch (Sha256.fromHex(wasmId)) { case (?h) if (h.size() == 32) ?h else null; case null null };
  };

  func certify() {
    switch (Log.tipRoot(blockLog, hasher)) { case (?tip) CertifiedData.set(Provenance.certifiedRoot(provenance, hasher.st, tip)); case null {} };
  };

  system func postupgrade() {
    Legacy.moveUploads(uploads, wasmUploads);
    Uploads.keepAll(wasmUploads, wasmBytes);
    Uploads.recount(wasmUploads, uploadBudget);
    Legacy.moveLog(log, blockLog);
    if (Provenance.isEmpty(provenance)) { // a release before the provenance tree: its filings enter it once, unsigned
      Provenance.addAll(provenance, provenanceMemo, Array.filterMap<T.Filing, (Blob, Provenance.Filed)>(Rounds.allFilings(rounds), func f {
        switch (wasmHash(f.wasm_id), Rounds.get(rounds, f.request_id)) {
          case (?wasm, ?r) ?(wasm, { index = f.index; request_id = f.request_id; namespace = r.req.namespace; verifier = f.verifier;
                                     attested = f.attested; time = Int.abs(f.timestamp); envelope_hash = null; statement = null });
          case _ null;
        };
      }));
    };
    certify(); // the IC keeps certified data across an upgrade, but this release may certify a different tree
  };

  func principalValue(p : Principal) : T.Value { #Blob(Principal.toBlob(p)) };

  // A round's outcome as an update sees it: decided now by the current policy if it can be, then stored.
  func outcomeOf(r : Rounds.RequestRec) : ?T.Outcome {
    ignore Rounds.decide(rounds, r, policy.required_audit_types, now());
    Rounds.outcome(r);
  };

  // The round of a bounty is over when it is no longer the current one, or its audit or overall outcome is final.
  func roundOver(b : Bounties.Rec) : Bool {
    switch (Rounds.get(rounds, b.request_id)) {
      case (?r) {
        not Rounds.isCurrent(rounds, r) or Rounds.auditOutcome(rounds, r.req.id, b.audit_type) != null or outcomeOf(r) != null;
      };
      case null true;
    };
  };

  func refundDue(b : Bounties.Rec) : Bool { now() >= b.timeout_date or roundOver(b) };

  // ---------------------------------------------------------------- settlement: decisions (no awaits)

  func startRefund(b : Bounties.Rec) {
    let t = Transfers.create(transfers, b.id, #Refund, b.ledger, selfAccount(), { owner = b.creator; subaccount = null }, b.amount, ?b.fee, now());
    Bounties.setRelease(b, t.id);
    Bounties.transition(bounties, b, #Refunding);
  };

  func startPayout(b : Bounties.Rec, claimant : Principal) {
    let t = Transfers.create(transfers, b.id, #Payout, b.ledger, selfAccount(), { owner = claimant; subaccount = null }, b.amount, ?b.fee, now());
    Bounties.setRelease(b, t.id);
    Bounties.transition(bounties, b, #Paying({ claimant }));
  };

  // Whether the claimant's filing agrees with its audit's final outcome (null while the audit is open).
  func verdictOf(b : Bounties.Rec) : ?Bool {
    let outcome = switch (Rounds.auditOutcome(rounds, b.request_id, b.audit_type)) { case (?o) o; case null return null };
    let f = switch (b.filing) { case (?i) Rounds.filing(rounds, i); case null null };
    switch f {
      case (?f) ?((f.attested and outcome == #Verified) or (not f.attested and outcome == #Rejected));
      case null ?false;
    };
  };

  // Every transition that is due for this bounty now, taken synchronously; the transfers and the hub call they
  // imply are performed by `complete` afterwards.
  func decide(b : Bounties.Rec) {
    switch (b.state) {
      case (#Open) { if (refundDue(b)) startRefund(b) };
      case (#Reserved({ until })) {
        // An expired reservation the claimant did not use: the bounty is workable again (the hub slashes the
        // lock when it asks `end_reservation`), or goes back to its sponsor if it is due.
        if (until <= now()) { if (refundDue(b)) startRefund(b) else Bounties.transition(bounties, b, #Open) };
      };
      case (#Claimed({ claimant })) {
        switch (verdictOf(b)) {
          case (?true) { startPayout(b, claimant); Bounties.setStake(b, #Pending(#Reward)) };
          case (?false) { startRefund(b); Bounties.setStake(b, #Pending(#Slash)) };
          case null {
            // The claimant filed in time but the audit never reached its quorum: the sponsor gets the escrow
            // back and the claimant its stake, untouched.
            if (now() >= b.timeout_date) { startRefund(b); Bounties.setStake(b, #Pending(#Release)) };
          };
        };
      };
      case _ {};
    };
  };

  // ---------------------------------------------------------------- settlement: the awaits

  // Drive the bounty's pending ledger transfer and stake settlement one attempt further.
  func complete(b : Bounties.Rec) : async* () {
    switch (b.state) {
      case (#Funding) await* pull(b);
      case (#Paying(_) or #Refunding) await* release(b);
      case _ {};
    };
    await* deliverStake(b);
  };

  func pull(b : Bounties.Rec) : async* () {
    let t = switch (b.escrow) { case (?id) Transfers.get(transfers, id); case null null };
    let transfer = switch t { case (?t) t; case null return };
    if (Transfers.claim(transfer, now())) await* Transfers.send(transfer, now);
    if (b.state != #Funding) return; // another message completed it meanwhile
    switch (Transfers.isDone(transfer)) {
      case (?_) {
        Bounties.transition(bounties, b, #Open);
        ignore block("127bounty", [("bounty_id", #Nat(b.id)), ("request_id", #Nat(b.request_id)), ("wasm_id", #Text(b.wasm_id)), ("audit_type", #Text(b.audit_type)), ("amount", #Nat(b.amount)), ("creator", principalValue(b.creator))]);
        if (refundDue(b)) { startRefund(b); await* release(b) };
      };
      case null {
        if (Transfers.failedForSure(transfer)) {
          Bounties.transition(bounties, b, #Cancelled);
          // It takes no place in its round. Its record stays only if its id was handed out (a lost reply).
          let reported = transfer.attempts > 1;
          Bounties.forget(bounties, b, reported);
          if (not reported) Transfers.remove(transfers, transfer.id);
        };
      };
    };
  };

  func release(b : Bounties.Rec) : async* () {
    let transfer = switch (b.release) { case (?id) switch (Transfers.get(transfers, id)) { case (?t) t; case null return }; case null return };
    if (Transfers.claim(transfer, now())) await* Transfers.send(transfer, now);
    // Re-keyed under a changed ledger fee (nothing executed): send it again at once.
    if (transfer.state == #Ready and Transfers.claim(transfer, now())) await* Transfers.send(transfer, now);
    let blockIndex = switch (Transfers.isDone(transfer)) { case (?i) i; case null return };
    switch (b.state) {
      case (#Paying({ claimant })) {
        Bounties.transition(bounties, b, #Paid({ claimant; block = blockIndex }));
        ignore block("127payout", [("bounty_id", #Nat(b.id)), ("claimant", principalValue(claimant)), ("amount", #Nat(transfer.amount)), ("ledger_block", #Nat(blockIndex))]);
      };
      case (#Refunding) {
        Bounties.transition(bounties, b, #Refunded({ block = blockIndex }));
        ignore block("127refund", [("bounty_id", #Nat(b.id)), ("creator", principalValue(b.creator)), ("amount", #Nat(transfer.amount)), ("ledger_block", #Nat(blockIndex))]);
      };
      case _ {}; // another message recorded it meanwhile
    };
  };

  // Tell the hub how to settle the filer's stake; idempotent at the hub, so a retry is harmless.
  func deliverStake(b : Bounties.Rec) : async* () {
    let verdict = switch (b.stake) { case (#Pending(v)) v; case _ return };
    let filer = switch (b.filer) { case (?p) p; case null return };
    let hub : Hub = actor (Principal.toText(auditHub));
    let earned = if (verdict == #Reward) b.amount else 0;
    let delivered = try {
      switch (await hub.settle_lock(b.id, filer, verdict, earned)) { case (#ok or #err(#LockNotFound)) true; case (#err(_)) false };
    } catch (_) { false };
    if (delivered and b.stake == #Pending(verdict)) Bounties.setStake(b, #Done(verdict));
  };

  // Decide every bounty of a round, then complete them one by one.
  func settleRound(r : Rounds.RequestRec) : async* () {
    let list = Bounties.ofRequest(bounties, r.req.id);
    for (b in list.vals()) decide(b);
    for (b in list.vals()) await* complete(b);
  };

  // ---------------------------------------------------------------- governance

  public shared ({ caller }) func set_policy(p : T.Policy) : async { #ok; #err : T.Error } {
    if (not isGovernance(caller)) return #err(#NotAuthorized);
    if (p.quorum == 0 or p.quorum > 100) return #err(#InvalidArgument("quorum must be 1..100"));
    if (p.required_audit_types.size() == 0 or p.required_audit_types.size() > 8) return #err(#InvalidArgument("1..8 required audit types"));
    for (t in p.required_audit_types.vals()) { if (not Limits.auditType(t)) return #err(#InvalidArgument("audit types are 1..64 characters of [a-z0-9_.:-]")) };
    if (p.min_bounty_reward == 0) return #err(#InvalidArgument("the minimum bounty reward must be positive"));
    policy := p;
    #ok;
  };

  public shared ({ caller }) func set_allowed_ledgers(ledgers : [Principal]) : async { #ok; #err : T.Error } {
    if (not isGovernance(caller)) return #err(#NotAuthorized);
    if (ledgers.size() > 10) return #err(#InvalidArgument("at most 10 ledgers"));
    allowedLedgers := ledgers;
    #ok;
  };

  public query func get_policy() : async T.Policy { policy };

  // Hand governance to another principal (e.g. a DAO canister); never to the anonymous principal.
  public shared ({ caller }) func set_governance(next : Principal) : async { #ok; #err : T.Error } {
    if (not isGovernance(caller)) return #err(#NotAuthorized);
    if (Principal.isAnonymous(next)) return #err(#InvalidArgument("governance is never the anonymous principal"));
    governance := next;
    #ok;
  };

  // A transfer whose reply was lost and whose deduplication window has passed cannot be resent safely:
  // governance reads the ledger and says whether it executed (`?block`) or not (null: it is sent again).
  public shared ({ caller }) func resolve_transfer(transfer_id : Nat, executed_block : ?Nat) : async { #ok : T.BountyState; #err : T.Error } {
    if (not isGovernance(caller)) return #err(#NotAuthorized);
    let t = switch (Transfers.get(transfers, transfer_id)) { case (?t) t; case null return #err(#InvalidArgument("no such transfer")) };
    if (not Transfers.resolve(t, executed_block, now())) return #err(#InvalidArgument("the transfer is not in doubt"));
    let b = switch (Bounties.get(bounties, t.bounty_id)) { case (?b) b; case null return #err(#BountyNotFound) };
    await* complete(b);
    #ok(b.state);
  };

  // ---------------------------------------------------------------- ICRC-118: namespaces, wasm, versions

  public shared ({ caller }) func icrc118_create_canister_type(arg : { namespace : Text; description : Text }) : async {
    #ok : Text;
    #err : T.Error;
  } {
    Namespaces.create(names, caller, arg.namespace, arg.description, now());
  };

  public shared ({ caller }) func icrc118_manage_controller(arg : { namespace : Text; principal : Principal; add : Bool }) : async {
    #ok : [Principal];
    #err : T.Error;
  } {
    Namespaces.manageController(names, caller, arg.namespace, arg.principal, arg.add);
  };

  public query func icrc118_get_canister_type(namespace : Text) : async ?{ namespace : Text; controllers : [Principal]; description : Text; created_at : Int } {
    switch (Namespaces.get(names, namespace)) {
      case (?n) ?{ namespace; controllers = n.controllers; description = n.description; created_at = n.created_at };
      case null null;
    };
  };

  // Upload one chunk (at most 1 MiB) of a wasm into a namespace the caller controls.
  public shared ({ caller }) func icrc118_upload_wasm_chunk(arg : Uploads.Chunk) : async {
    #ok : { complete : Bool; missing : [Nat] };
    #err : T.Error;
  } {
    if (not Namespaces.exists(names, arg.namespace)) return #err(#NamespaceNotFound);
    if (not Namespaces.isController(names, arg.namespace, caller)) return #err(#NotAuthorized);
    Uploads.put(wasmUploads, wasmBytes, uploadBudget, caller, arg, now());
  };

  // What all uploads may hold (incomplete ones in the heap, complete ones in stable memory) and hold now.
  public query func upload_budget() : async Uploads.UploadBudget { Uploads.usage(wasmUploads, wasmBytes, uploadBudget, now()) };

  // Governance: the global upload budget (principals are free, so per-principal quotas do not bound it).
  public shared ({ caller }) func set_upload_budget(arg : { max_incomplete_bytes : Nat; max_stored_bytes : Nat }) : async { #ok; #err : T.Error } {
    if (not isGovernance(caller)) return #err(#NotAuthorized);
    Uploads.setBudget(uploadBudget, arg.max_incomplete_bytes, arg.max_stored_bytes);
  };

  // Publish a version: only a wasm whose current round in this namespace is verified. `previous` (ICRC-118):
  // the module of a lower published version this one must be installed over.
  public shared ({ caller }) func icrc118_update_wasm(arg : { namespace : Text; version : (Nat, Nat, Nat); wasm_hash : Blob; previous : ?Blob }) : async {
    #ok : Nat;
    #err : T.Error;
  } {
    if (not Namespaces.exists(names, arg.namespace)) return #err(#NamespaceNotFound);
    if (not Namespaces.isController(names, arg.namespace, caller)) return #err(#NotAuthorized);
    if (arg.wasm_hash.size() != 32) return #err(#InvalidArgument("wasm_hash is 32 bytes"));
    if (not Limits.version(arg.version)) return #err(#InvalidArgument("each part of a version is at most 4294967295"));
    let previous = switch (arg.previous) {
      case (?p) if (p.size() != 32) return #err(#InvalidArgument("previous is 32 bytes")) else ?Sha256.toHex(p);
      case null null;
    };
    let wasmId = Sha256.toHex(arg.wasm_hash);
    if (not Uploads.isComplete(wasmUploads, arg.namespace, wasmId)) return #err(#WasmNotFound);
    let r = switch (Rounds.current(rounds, arg.namespace, wasmId)) { case (?r) r; case null return #err(#NotVerified) };
    switch (outcomeOf(r)) {
      case (?#Verified) {};
      case (?#Rejected) return #err(#WasmRejected);
      case null return #err(#NotVerified);
    };
    switch (Namespaces.publish(names, previousOf, caller, arg.namespace, arg.version, wasmId, previous, now())) {
      case (#err(e)) return #err(e);
      case (#ok) {};
    };
    let (ma, mi, pa) = arg.version;
    let fields = [
      ("namespace", #Text(arg.namespace)), ("wasm_id", #Text(wasmId)), ("request_id", #Nat(r.req.id)),
      ("version", #Array([#Nat(ma), #Nat(mi), #Nat(pa)])), ("caller", principalValue(caller)),
    ];
    #ok(block("118version", switch previous { case (?p) Array.concat(fields, [("previous", #Text(p))]); case null fields }));
  };

  public shared ({ caller }) func icrc118_deprecate(arg : { namespace : Text; version : (Nat, Nat, Nat); reason : Text }) : async {
    #ok;
    #err : T.Error;
  } {
    if (not Namespaces.isController(names, arg.namespace, caller)) return #err(if (not Namespaces.exists(names, arg.namespace)) #NamespaceNotFound else #NotAuthorized);
    if (not Limits.text(arg.reason, Limits.MAX_TEXT_BYTES)) return #err(#InvalidArgument("a reason of 1..1024 bytes"));
    if (not Limits.version(arg.version)) return #err(#VersionNotFound);
    switch (Namespaces.deprecate(names, arg.namespace, arg.version, arg.reason)) {
      case (#err(e)) #err(e);
      case (#ok) {
        let (ma, mi, pa) = arg.version;
        ignore block("118deprecate", [("namespace", #Text(arg.namespace)), ("version", #Array([#Nat(ma), #Nat(mi), #Nat(pa)])),
                                      ("reason", #Text(arg.reason)), ("caller", principalValue(caller))]);
        #ok;
      };
    };
  };

  // A client checks this before creating a namespace, so a new namespace and its first upload either both
  // happen or neither does (the registry cannot delete a namespace).
  public query func upload_quota(uploader : Principal) : async { incomplete : Nat; max_incomplete : Nat } {
    { incomplete = Uploads.incompleteCount(wasmUploads, uploadBudget, uploader, now()); max_incomplete = Limits.MAX_INCOMPLETE_PER_PRINCIPAL };
  };

  public query func icrc118_get_wasms(namespace : Text) : async [T.Version] { Namespaces.versions(names, previousOf, namespace) };

  // The versions to install, in order (the target last), to go from the running module `current_version` to
  // `target_version` (both wasm hashes) along `previous` links; empty when there is no such path.
  public query func icrc118_get_upgrade_path(arg : { namespace : Text; current_version : Blob; target_version : Blob }) : async [T.Version] {
    if (arg.current_version.size() != 32 or arg.target_version.size() != 32) return [];
    Namespaces.upgradePath(names, previousOf, arg.namespace, Sha256.toHex(arg.current_version), Sha256.toHex(arg.target_version));
  };

  // One chunk of a complete upload: what an installer (the orchestrator) fetches, then hashes itself.
  public query func icrc118_get_wasm_chunk(arg : { namespace : Text; wasm_hash : Blob; chunk_id : Nat }) : async {
    #ok : { chunk : Blob; total_chunks : Nat };
    #err : T.Error;
  } {
    if (arg.wasm_hash.size() != 32) return #err(#InvalidArgument("wasm_hash is 32 bytes"));
    switch (Uploads.chunkOf(wasmUploads, wasmBytes, arg.namespace, Sha256.toHex(arg.wasm_hash), arg.chunk_id)) {
      case (?c) #ok(c);
      case null #err(#WasmNotFound);
    };
  };

  // ---------------------------------------------------------------- ICRC-126: rounds and filings

  // The namespace a wasm-only call means: the one given, or the only one that fits.
  func resolveNamespace(wasmId : Text, given : ?Text, fits : Text -> Bool) : { #ok : Text; #err : T.Error } {
    switch given {
      case (?ns) return #ok(ns);
      case null {};
    };
    // Stop at the first few that fit: one answers, more are ambiguous whatever their number.
    let candidates = List.empty<Text>();
    label scan for (ns in Uploads.namespacesOf(wasmUploads, wasmId, Limits.MAX_NAMESPACE_SCAN).vals()) {
      if (fits(ns)) {
        List.add(candidates, ns);
        if (List.size(candidates) > Limits.MAX_AMBIGUOUS_LISTED) break scan;
      };
    };
    let found = List.size(candidates);
    if (found == 1) return #ok(List.at(candidates, 0));
    if (found == 0 and Uploads.holders(wasmUploads, wasmId) > Limits.MAX_NAMESPACE_SCAN) {
      return #err(#Ambiguous("many namespaces hold this wasm: name yours"));
    };
    if (found == 0) return #err(#WasmNotFound);
    let listed = List.sliceToArray(candidates, 0, Nat.min(found, Limits.MAX_AMBIGUOUS_LISTED));
    let more = if (found > Limits.MAX_AMBIGUOUS_LISTED) ", ..." else "";
    #err(#Ambiguous("several namespaces hold this wasm: name one (" # Text.join(listed.vals(), ", ") # more # ")"));
  };

  // File a verification request: a new round for (namespace, wasm). A round with filings or live reservations
  // is never replaced; after a rejection a new round may correct the repository or commit.
  public shared ({ caller }) func icrc126_verification_request(arg : {
    wasm_hash : Blob;
    repo : Text;
    commit_hash : Text;
    metadata : T.ICRC16Map;
    namespace : ?Text;
  }) : async { #ok : Nat; #err : T.Error } {
    if (Principal.isAnonymous(caller)) return #err(#NotAuthorized);
    if (arg.wasm_hash.size() != 32) return #err(#InvalidArgument("wasm_hash is 32 bytes"));
    let wasmId = Sha256.toHex(arg.wasm_hash);
    let ns = switch (resolveNamespace(wasmId, arg.namespace, func n = Namespaces.isController(names, n, caller))) {
      case (#ok(n)) n;
      case (#err(#WasmNotFound)) return #err(if (Uploads.holders(wasmUploads, wasmId) > 0) #NotAuthorized else #WasmNotFound);
      case (#err(e)) return #err(e);
    };
    if (not Namespaces.exists(names, ns)) return #err(#NamespaceNotFound);
    if (not Namespaces.isController(names, ns, caller)) return #err(#NotAuthorized);
    let rec = switch (Uploads.get(wasmUploads, ns, wasmId, now())) { case (?r) r; case null return #err(#WasmNotFound) };
    if (not rec.complete) return #err(#WasmIncomplete({ missing = Uploads.missing(rec) }));
    if (not Limits.repo(arg.repo)) return #err(#InvalidArgument("repo must be an http(s) URL of at most 512 bytes"));
    if (not Limits.lowerHex(arg.commit_hash, 40)) return #err(#InvalidArgument("commit_hash must be a full 40-character lowercase hex SHA"));
    switch (Limits.metadata(arg.metadata)) { case (?why) return #err(#InvalidArgument(why)); case null {} };
    let previous = Rounds.current(rounds, ns, wasmId);
    switch previous {
      case (?r) {
        switch (outcomeOf(r)) {
          case (?#Verified) return #err(#AlreadyFinalized);
          case (?#Rejected) {}; // a correction opens a new round
          case null {
            if (r.req.repo == arg.repo and r.req.commit_hash == arg.commit_hash) return #ok(r.req.id); // a retry
            if (r.filings > 0) return #err(#RoundInProgress("the current round has filings; wait for its outcome"));
            for (b in Bounties.ofRequest(bounties, r.req.id).vals()) {
              switch (b.state) {
                case (#Reserved({ claimant; until })) {
                  if (until > now()) return #err(#RoundInProgress("verifier " # Principal.toText(claimant) # " holds a reservation until " # Int.toText(until)));
                };
                case _ {};
              };
            };
          };
        };
      };
      case null {};
    };
    if (Rounds.rejectedBefore(rounds, ns, wasmId, arg.repo, arg.commit_hash)) {
      return #err(#InvalidArgument("this repository and commit were already rejected for this wasm: a correction names another"));
    };
    if (Rounds.roundCount(rounds, ns, wasmId) >= Limits.MAX_ROUNDS_PER_WASM) return #err(#QuotaExceeded("at most " # Nat.toText(Limits.MAX_ROUNDS_PER_WASM) # " rounds per wasm and namespace"));
    // The upload's own texts (equal to `ns` and `wasmId`): a round shares them instead of keeping copies.
    let r = Rounds.open(rounds, rec.namespace, rec.wasm_id, arg.repo, arg.commit_hash, arg.metadata, caller, now());
    ignore block("126request", [
      ("request_id", #Nat(r.req.id)), ("namespace", #Text(ns)), ("wasm_id", #Text(wasmId)), ("repo", #Text(arg.repo)),
      ("commit_hash", #Text(arg.commit_hash)), ("requester", principalValue(caller)), ("metadata", #Map(Log.fromMap(arg.metadata))),
    ]);
    switch previous {
      case (?old) await* settleRound(old); // the superseded round's unclaimed bounties go back to their sponsors
      case null {};
    };
    #ok(r.req.id);
  };

  public query func get_verification_request(wasm_id : Text, namespace : ?Text) : async ?T.VerificationRequest {
    let ns = switch (resolveNamespace(wasm_id, namespace, func n = Rounds.hasCurrent(rounds, n, wasm_id))) { case (#ok(n)) n; case (#err(_)) return null };
    switch (Rounds.current(rounds, ns, wasm_id)) { case (?r) ?r.req; case null null };
  };

  // A filing that contradicts the wasm or the request it answers is refused.
  func contradiction(r : Rounds.RequestRec, wasmId : Text, attested : Bool, m : T.ICRC16Map) : ?Text {
    switch (lookupNat(m, "126:request_id")) { case (?i) { if (i != r.req.id) return ?"126:request_id names another round" }; case null {} };
    switch (lookupText(m, "126:repo")) { case (?t) { if (t != r.req.repo) return ?"126:repo is not the request's repository" }; case null {} };
    switch (lookupText(m, "126:commit_hash")) { case (?t) { if (t != r.req.commit_hash) return ?"126:commit_hash is not the request's commit" }; case null {} };
    for (k in ["126hash", "126:expected_hash"].vals()) {
      switch (lookupText(m, k)) { case (?t) { if (t != wasmId) return ?(k # " is not this wasm's hash") }; case null {} };
    };
    for (k in ["126found_hash", "126:found_hash"].vals()) {
      switch (lookupText(m, k)) {
        case (?t) {
          if (attested and t != wasmId) return ?(k # " differs from the wasm: that is a divergence, not an attestation");
          if (not attested and t == wasmId) return ?(k # " equals the wasm: that is an attestation, not a divergence");
        };
        case null {};
      };
    };
    null;
  };

  // Attestation and divergence share one path. No await before the filing is recorded: the registry itself
  // knows who holds the bounty's reservation and until when.
  func file(caller : Principal, wasmId : Text, attested : Bool, report : ?Text, metadata : T.ICRC16Map, signed : ?Provenance.SignedStatement) : async* {
    #ok : Nat;
    #err : T.Error;
  } {
    switch (Limits.metadata(metadata)) { case (?why) return #err(#InvalidArgument(why)); case null {} };
    switch signed {
      case (?e) {
        switch (Provenance.refusal(e, caller, wasmId, attested)) { case (?why) return #err(#FilingRefused(why)); case null {} };
      };
      case null if (requireSigned) return #err(#FilingRefused("this registry requires a signed statement with every filing (see docs/provenance.md)"));
    };
    let bountyId = switch (lookupNat(metadata, "bounty_id")) { case (?b) b; case null return #err(#InvalidArgument("metadata needs bounty_id (Nat)")) };
    let auditType = switch (lookupText(metadata, "126:audit_type")) { case (?t) t; case null return #err(#InvalidArgument("metadata needs 126:audit_type (Text)")) };
    let b = switch (Bounties.get(bounties, bountyId)) { case (?b) b; case null return #err(#BountyNotFound) };
    if (b.wasm_id != wasmId or b.audit_type != auditType) return #err(#LockInvalid("the bounty is for another wasm or audit type"));
    let r = switch (Rounds.get(rounds, b.request_id)) { case (?r) r; case null return #err(#RequestNotFound) };
    if (Rounds.hasFiled(rounds, r.req.id, auditType, caller)) return #err(#AlreadyFiled);
    let wasm = switch (wasmHash(wasmId)) { case (?h) h; case null return #err(#InvalidArgument("wasm_id is 64 hex digits")) };
    if (signed != null and Provenance.signedCount(provenance, Provenance.keyOf(wasm, r.req.namespace)) >= Provenance.MAX_SIGNED_PER_WASM) {
      return #err(#QuotaExceeded("at most 100 signed filings per wasm and namespace: file without a statement"));
    };
    switch (b.state) {
      case (#Reserved({ claimant; until })) {
        if (not Principal.equal(claimant, caller)) return #err(#LockInvalid("the reservation belongs to another verifier"));
        if (until <= now()) return #err(#LockInvalid("the reservation has expired"));
      };
      case (#Open) return #err(#LockInvalid("no reservation on this bounty"));
      case _ return #err(#BountyNotOpen);
    };
    switch (contradiction(r, wasmId, attested, metadata)) { case (?why) return #err(#FilingRefused(why)); case null {} };
    let (index, a) = Rounds.addFiling(rounds, r, auditType, caller, bountyId, attested, report, metadata, now());
    Bounties.setFiling(b, caller, index);
    Bounties.transition(bounties, b, #Claimed({ claimant = caller }));
    let base = [
      ("request_id", #Nat(r.req.id)), ("wasm_id", #Text(wasmId)), ("audit_type", #Text(auditType)), ("bounty_id", #Nat(bountyId)),
      ("verifier", principalValue(caller)), ("metadata", #Map(Log.fromMap(metadata))),
    ];
    let fields = switch report { case (?text) Array.concat(base, [("report", #Text(text))]); case null base };
    let envelope : ?Blob = switch signed { case (?e) ?Provenance.envelopeHash(e, caller); case null null };
    Provenance.add(provenance, provenanceMemo, wasm, { index; request_id = r.req.id; namespace = r.req.namespace; verifier = caller;
                                       attested; time = Int.abs(now()); envelope_hash = envelope; statement = signed });
    let blockIndex = block(if attested "126attest" else "126divergence", switch envelope {
      case (?h) Array.concat(fields, [("envelope_sha256", #Blob(h))]);
      case null fields;
    });
    if (a.outcome == null and policy.mode == #Auto) {
      if (a.attestations >= policy.quorum) finalize(r, auditType, #Verified)
      else if (a.divergences >= policy.quorum) finalize(r, auditType, #Rejected);
    };
    await* settleRound(r);
    #ok(blockIndex);
  };

  func finalize(r : Rounds.RequestRec, auditType : Text, outcome : T.Outcome) {
    if (not Rounds.finalizeAudit(rounds, r, auditType, outcome, now())) return; // final outcomes never change
    let a = switch (Rounds.findAudit(rounds, r.req.id, auditType)) { case (?a) a; case null return };
    ignore block(switch outcome { case (#Verified) "126verified"; case (#Rejected) "126rejected" }, [
      ("request_id", #Nat(r.req.id)), ("wasm_id", #Text(r.req.wasm_id)), ("audit_type", #Text(auditType)),
      ("attestations", #Nat(a.attestations)), ("divergences", #Nat(a.divergences)),
    ]);
    ignore Rounds.decide(rounds, r, policy.required_audit_types, now());
  };

  // `signed`: the verifier's in-toto statement in a DSSE envelope (docs/provenance.md); required when governance
  // says so (`set_require_signed`).
  public shared ({ caller }) func icrc126_file_attestation(arg : { wasm_id : Text; metadata : T.ICRC16Map; signed : ?Provenance.SignedStatement }) : async {
    #ok : Nat;
    #err : T.Error;
  } {
    await* file(caller, arg.wasm_id, true, null, arg.metadata, arg.signed);
  };

  public shared ({ caller }) func icrc126_file_divergence(arg : { wasm_id : Text; divergence_report : Text; metadata : T.ICRC16Map; signed : ?Provenance.SignedStatement }) : async {
    #ok : Nat;
    #err : T.Error;
  } {
    if (not Limits.text(arg.divergence_report, Limits.MAX_REPORT_BYTES)) return #err(#InvalidArgument("a divergence report of 1..4096 bytes"));
    await* file(caller, arg.wasm_id, false, ?arg.divergence_report, arg.metadata, arg.signed);
  };

  public shared ({ caller }) func set_require_signed(required : Bool) : async { #ok; #err : T.Error } {
    if (not isGovernance(caller)) return #err(#NotAuthorized);
    requireSigned := required;
    #ok;
  };

  public query func get_require_signed() : async Bool { requireSigned };

  // A wasm's filings in a namespace (the only one with filings when none is named), signed statements
  // included, with a certificate and a witness that they are in the registry's certified tree: everything
  // `prometheus attestation export` puts in a bundle. Null when there are none (or several namespaces and none named).
  public query func get_provenance(wasm_hash : Blob, namespace : ?Text) : async ?{
    namespace : Text;
    certificate : Blob;
    hash_tree : Blob;
    filings : [Provenance.Filed];
  } {
    if (wasm_hash.size() != 32) return null;
    let key = switch (Provenance.find(provenance, wasm_hash, namespace)) { case (?k) k; case null return null };
    let tip = switch (Log.tipRoot(blockLog, hasher)) { case (?t) t; case null return null };
    let certificate = switch (CertifiedData.getCertificate()) { case (?c) c; case null return null };
    let filings = Provenance.filings(provenance, key);
    if (filings.size() == 0) return null;
    switch (Provenance.proof(provenance, tip, key)) {
      case (?hash_tree) ?{ namespace = filings[0].namespace; certificate; hash_tree; filings };
      case null null;
    };
  };

  // Governance finalization (policy mode #Governance): allowed once the quorum for that outcome is reached.
  public shared ({ caller }) func finalize_verification(request_id : Nat, audit_type : Text, outcome : T.Outcome) : async {
    #ok;
    #err : T.Error;
  } {
    if (not isGovernance(caller)) return #err(#NotAuthorized);
    let r = switch (Rounds.get(rounds, request_id)) { case (?r) r; case null return #err(#RequestNotFound) };
    let a = switch (Rounds.findAudit(rounds, request_id, audit_type)) { case (?a) a; case null return #err(#NotFinalizable("no filings")) };
    if (a.outcome != null) return #err(#AlreadyFinalized);
    let votes = switch outcome { case (#Verified) a.attestations; case (#Rejected) a.divergences };
    if (votes < policy.quorum) return #err(#NotFinalizable("the quorum for that outcome is not reached"));
    finalize(r, audit_type, outcome);
    await* settleRound(r);
    #ok;
  };

  // ---------------------------------------------------------------- reservations (the audit hub only)

  // The hub asks before it locks a verifier's stake: the bounty must be open, of that audit type, in a live
  // round, and the verifier may hold only one reservation per (round, audit type). The reservation ends no
  // later than the bounty, so a bounty can always be refunded at its timeout.
  public shared ({ caller }) func grant_reservation(bounty_id : Nat, claimant : Principal, audit_type : Text, until : Int) : async {
    #ok : T.Grant;
    #err : GrantError;
  } {
    if (not isHub(caller) or Principal.isAnonymous(claimant)) return #err(#NotAuthorized);
    let b = switch (Bounties.get(bounties, bounty_id)) { case (?b) b; case null return #err(#BountyNotFound) };
    if (b.audit_type != audit_type) return #err(#AuditTypeMismatch({ expected = b.audit_type }));
    if (b.state != #Open) return #err(#BountyNotOpen("the bounty is " # Bounties.tag(b.state)));
    if (roundOver(b)) return #err(#BountyNotOpen("its round is over"));
    if (now() + MIN_RESERVATION_NS > b.timeout_date) return #err(#BountyNotOpen("it closes too soon"));
    if (Rounds.hasFiled(rounds, b.request_id, audit_type, claimant)) return #err(#AlreadyFiled);
    switch (Bounties.reservedBy(bounties, b.request_id, audit_type, claimant)) {
      case (?other) {
        switch (Bounties.get(bounties, other)) {
          case (?o) {
            switch (o.state) {
              case (#Reserved({ until })) {
                if (until > now()) return #err(#AlreadyHolding({ bounty_id = other }));
                decide(o); // the claimant's expired reservation ends before it takes another
              };
              case _ {};
            };
          };
          case null {};
        };
      };
      case null {};
    };
    let end = Int.min(until, b.timeout_date);
    Bounties.transition(bounties, b, #Reserved({ claimant; until = end }));
    #ok({ wasm_id = b.wasm_id; request_id = b.request_id; until = end });
  };

  // The hub asks before it slashes an expired lock: did the claimant file on this bounty?
  public shared ({ caller }) func end_reservation(bounty_id : Nat, claimant : Principal) : async { #ok : T.ReservationEnd; #err : GrantError } {
    if (not isHub(caller)) return #err(#NotAuthorized);
    let b = switch (Bounties.get(bounties, bounty_id)) { case (?b) b; case null return #ok(#NotFiled) };
    if (b.filer == ?claimant) return #ok(#Filed);
    switch (b.state) {
      case (#Reserved({ claimant = c; until })) {
        if (Principal.equal(c, claimant)) {
          if (until > now()) return #ok(#Live);
          if (refundDue(b)) startRefund(b) else Bounties.transition(bounties, b, #Open);
          await* complete(b);
        };
      };
      case _ {};
    };
    #ok(#NotFiled);
  };

  // ---------------------------------------------------------------- ICRC-127: bounties

  public shared ({ caller }) func icrc127_create_bounty(arg : {
    challenge_parameters : T.ICRC16;
    bounty_metadata : T.ICRC16Map;
    timeout_date : Int;
  }) : async { #ok : Nat; #err : T.Error } {
    if (Principal.isAnonymous(caller)) return #err(#NotAuthorized);
    let challenge = switch (arg.challenge_parameters) { case (#Map(m)) m; case _ return #err(#InvalidArgument("challenge_parameters must be a Map")) };
    switch (Limits.metadata(challenge)) { case (?why) return #err(#InvalidArgument(why)); case null {} };
    switch (Limits.metadata(arg.bounty_metadata)) { case (?why) return #err(#InvalidArgument(why)); case null {} };
    let hash = switch (lookupBlob(challenge, "wasm_hash")) { case (?h) h; case null return #err(#InvalidArgument("challenge_parameters needs wasm_hash (Blob)")) };
    if (hash.size() != 32) return #err(#InvalidArgument("wasm_hash is 32 bytes"));
    let auditType = switch (lookupText(challenge, "audit_type")) { case (?t) t; case null return #err(#InvalidArgument("challenge_parameters needs audit_type (Text)")) };
    if (not Limits.auditType(auditType)) return #err(#InvalidArgument("audit_type is 1..64 characters of [a-z0-9_.:-]"));
    if (not Array.any<Text>(policy.required_audit_types, func t = t == auditType)) {
      return #err(#InvalidArgument("bounties are taken for the audit types the policy requires: " # Text.join(policy.required_audit_types.vals(), ", ")));
    };
    let ledgerId = switch (lookupPrincipal(arg.bounty_metadata, "icrc127:reward_canister")) { case (?p) p; case null return #err(#InvalidArgument("bounty_metadata needs icrc127:reward_canister")) };
    let amount = switch (lookupNat(arg.bounty_metadata, "icrc127:reward_amount")) { case (?n) n; case null return #err(#InvalidArgument("bounty_metadata needs icrc127:reward_amount")) };
    if (amount < policy.min_bounty_reward) return #err(#InvalidArgument("the reward must be at least " # Nat.toText(policy.min_bounty_reward)));
    if (not ledgerAllowed(ledgerId)) return #err(#LedgerNotAllowed);
    if (arg.timeout_date < now() + Limits.MIN_BOUNTY_DURATION_NS) return #err(#InvalidArgument("timeout_date must be at least an hour from now"));
    if (arg.timeout_date > now() + Limits.MAX_BOUNTY_DURATION_NS) return #err(#InvalidArgument("timeout_date must be within a year"));
    let wasmId = Sha256.toHex(hash);
    let requested : ?Nat = lookupNat(challenge, "request_id");
    let fundable = func() : { #ok : Rounds.RequestRec; #err : T.Error } {
      let r = switch requested {
        case (?id) switch (Rounds.get(rounds, id)) { case (?r) r; case null return #err(#RequestNotFound) };
        case null {
          let ns = switch (resolveNamespace(wasmId, lookupText(challenge, "namespace"), func n = Rounds.hasCurrent(rounds, n, wasmId))) {
            case (#ok(n)) n;
            case (#err(#WasmNotFound)) return #err(#RequestNotFound);
            case (#err(e)) return #err(e);
          };
          switch (Rounds.current(rounds, ns, wasmId)) { case (?r) r; case null return #err(#RequestNotFound) };
        };
      };
      if (r.req.wasm_id != wasmId) return #err(#InvalidArgument("request_id is for another wasm"));
      if (not Rounds.isCurrent(rounds, r)) return #err(#InvalidArgument("that round was superseded"));
      if (outcomeOf(r) != null or Rounds.auditOutcome(rounds, r.req.id, auditType) != null) return #err(#AlreadyFinalized);
      if (Bounties.liveOfRequest(bounties, r.req.id) >= Limits.MAX_LIVE_BOUNTIES_PER_ROUND) return #err(#QuotaExceeded("at most " # Nat.toText(Limits.MAX_LIVE_BOUNTIES_PER_ROUND) # " open bounties per round"));
      if (Bounties.countOfRequest(bounties, r.req.id) >= Limits.MAX_BOUNTIES_PER_ROUND) return #err(#QuotaExceeded("at most " # Nat.toText(Limits.MAX_BOUNTIES_PER_ROUND) # " bounties per round"));
      #ok(r);
    };
    switch (fundable()) { case (#err(e)) return #err(e); case (#ok(_)) {} };
    let ledger : Transfers.Ledger = actor (Principal.toText(ledgerId));
    let fee = try { await ledger.icrc1_fee() } catch (e) { return #err(#TransferFailed(Error.message(e))) };
    // The round may have changed during the await: check again, then record the bounty before the next one.
    let r = switch (fundable()) { case (#err(e)) return #err(e); case (#ok(r)) r };
    let b = Bounties.create(bounties, caller, r.req.id, r.req.namespace, r.req.wasm_id, auditType, ledgerId, amount, fee, arg.timeout_date, now());
    let t = Transfers.create(transfers, b.id, #Escrow, ledgerId, { owner = caller; subaccount = null }, selfAccount(), amount + fee, null, now());
    Bounties.setEscrow(b, t.id);
    await* pull(b);
    switch (b.state) {
      case (#Funding) #err(#LedgerOutcomeUnknown({ bounty_id = b.id }));
      case (#Cancelled) #err(#TransferFailed(switch (t.state) { case (#Failed({ message })) message; case _ "the ledger refused the escrow transfer" }));
      case _ #ok(b.id);
    };
  };

  // Refund a bounty to its creator (anyone may trigger it): after its timeout, or once its round is over,
  // but never while a verifier holds a live reservation on it.
  public shared func icrc127_refund_bounty(bounty_id : Nat) : async { #ok : T.BountyState; #err : T.Error } {
    let b = switch (Bounties.get(bounties, bounty_id)) { case (?b) b; case null return #err(#BountyNotFound) };
    switch (b.state) {
      case (#Reserved({ claimant; until })) { if (until > now()) return #err(#ReservationHeld({ claimant; until })) };
      case (#Open) {};
      case (#Claimed(_) or #Funding or #Paying(_) or #Refunding) {};
      case (#Paid(_) or #Refunded(_) or #Cancelled) return #err(#BountyNotOpen);
    };
    let due = switch (b.state) {
      case (#Open or #Reserved(_)) refundDue(b);
      case _ true; // whatever is due for a bounty in another state is decided by `decide`
    };
    if (not due) return #err(#TimeoutNotReached({ timeout_date = b.timeout_date }));
    decide(b);
    await* complete(b);
    #ok(b.state);
  };

  // Drive a bounty towards its terminal state (anyone may call it; every recipient is fixed): retry an escrow
  // pull, a payout or a refund whose reply was lost or refused, settle a claimed bounty whose audit is final
  // or whose timeout passed, deliver a pending stake settlement to the hub.
  public shared func settle_bounty(bounty_id : Nat) : async { #ok : T.BountyState; #err : T.Error } {
    let b = switch (Bounties.get(bounties, bounty_id)) { case (?b) b; case null return #err(#BountyNotFound) };
    decide(b);
    await* complete(b);
    #ok(b.state);
  };

  public query func icrc127_get_bounty(bounty_id : Nat) : async ?T.Bounty {
    switch (Bounties.get(bounties, bounty_id)) { case (?b) ?Bounties.view(b); case null null };
  };

  // The newest bounties of a wasm, in every namespace (one page at most).
  public query func get_bounties_for_wasm(wasm_id : Text) : async [T.Bounty] {
    Array.map<Bounties.Rec, T.Bounty>(Bounties.ofWasm(bounties, wasm_id), Bounties.view);
  };

  public query func get_bounties_for_request(request_id : Nat) : async [T.Bounty] {
    Array.map<Bounties.Rec, T.Bounty>(Bounties.ofRequest(bounties, request_id), Bounties.view);
  };

  public query func get_bounty_transfers(bounty_id : Nat) : async [T.Transfer] {
    let b = switch (Bounties.get(bounties, bounty_id)) { case (?b) b; case null return [] };
    let out = List.empty<T.Transfer>();
    for (id in [b.escrow, b.release].vals()) {
      switch (id) { case (?i) { switch (Transfers.get(transfers, i)) { case (?t) List.add(out, Transfers.view(t)); case null {} } }; case null {} };
    };
    List.toArray(out);
  };

  // Escrow per ledger: held (confirmed in), incoming (pulls not confirmed), outgoing (payouts and refunds not
  // confirmed). The ledger balance of the registry is always at least `held`.
  public query func escrow_summary() : async [T.EscrowTotals] { Bounties.totals(bounties) };

  // ---------------------------------------------------------------- queries for clients

  // Rounds with open or reserved bounties, by request id (`after`: the last request id of the previous page);
  // `open_bounties` counts those a verifier may reserve now (open, or reserved and expired).
  public query func list_pending_verifications(arg : { after : ?Nat; limit : Nat }) : async [T.PendingVerification] {
    let out = List.empty<T.PendingVerification>();
    let limit = Nat.min(arg.limit, Limits.MAX_PAGE);
    let iter = Bounties.openRequests(bounties, arg.after);
    label scan loop {
      if (List.size(out) >= limit) break scan;
      let (requestId, _) = switch (iter.next()) { case (?e) e; case null break scan };
      switch (Rounds.get(rounds, requestId)) {
        case (?r) {
          let types = List.empty<Text>();
          var available = 0;
          for (b in Bounties.ofRequest(bounties, requestId).vals()) {
            let free = switch (b.state) { case (#Open) true; case (#Reserved({ until })) until <= now(); case _ false };
            if (free) {
              available += 1;
              if (not List.contains(types, Text.equal, b.audit_type)) List.add(types, b.audit_type);
            };
          };
          List.add(out, { request_id = requestId; wasm_id = r.req.wasm_id; repo = r.req.repo; commit_hash = r.req.commit_hash; namespace = r.req.namespace; open_bounties = available; audit_types = List.toArray(types) });
        };
        case null {};
      };
    };
    List.toArray(out);
  };

  // Filings of the current round of a wasm in every namespace (one page at most).
  public query func get_audit_records(wasm_id : Text) : async [T.Filing] {
    let out = List.empty<T.Filing>();
    label all for (ns in Uploads.namespacesOf(wasmUploads, wasm_id, Limits.MAX_NAMESPACE_SCAN).vals()) {
      switch (Rounds.current(rounds, ns, wasm_id)) {
        case (?r) {
          for (f in Rounds.filingsOf(rounds, r).vals()) {
            if (List.size(out) >= Limits.MAX_PAGE) break all;
            List.add(out, f);
          };
        };
        case null {};
      };
    };
    List.toArray(out);
  };

  // Everything `prometheus status` shows, in one query (namespace: needed only when several hold the wasm).
  public query func get_wasm_status(wasm_id : Text, namespace : ?Text) : async ?T.WasmStatus {
    let ns = switch (namespace) {
      case (?n) n;
      case null { let first = Uploads.namespacesOf(wasmUploads, wasm_id, 1); if (first.size() == 0) return null; first[0] };
    };
    let rec = switch (Uploads.get(wasmUploads, ns, wasm_id, now())) { case (?r) r; case null return null };
    let current = Rounds.current(rounds, ns, wasm_id);
    ?{
      wasm_id;
      namespace = ns;
      size = rec.size;
      complete = rec.complete;
      request = switch current { case (?r) ?r.req; case null null };
      audits = switch current { case (?r) Rounds.summaries(rounds, r); case null [] };
      outcome = switch current { case (?r) Rounds.outcome(r); case null null };
      bounties = switch current { case (?r) Array.map<Bounties.Rec, T.Bounty>(Bounties.ofRequest(bounties, r.req.id), Bounties.view); case null [] };
      filings = switch current { case (?r) Rounds.filingsOf(rounds, r); case null [] };
      versions = Namespaces.versionsOf(names, previousOf, ns, wasm_id);
      rounds = Rounds.rounds(rounds, ns, wasm_id);
    };
  };

  // ---------------------------------------------------------------- ICRC-3, ICRC-10

  public query func icrc3_get_blocks(args : [Log.BlockRange]) : async {
    log_length : Nat;
    blocks : [{ id : Nat; block : T.Value }];
    archived_blocks : [{ args : [Log.BlockRange]; callback : shared query ([Log.BlockRange]) -> async { blocks : [{ id : Nat; block : T.Value }] } }];
  } {
    let got = Log.get(blockLog, args);
    { log_length = got.log_length; blocks = got.blocks; archived_blocks = [] };
  };

  public query func icrc3_get_tip_certificate() : async ?{ certificate : Blob; hash_tree : Blob } {
    let certificate = switch (CertifiedData.getCertificate()) { case (?c) c; case null return null };
    switch (Log.tipTree(blockLog)) { case (?t) ?{ certificate; hash_tree = Provenance.withTip(provenance, t) }; case null null };
  };

  public query func icrc3_supported_block_types() : async [{ block_type : Text; url : Text }] {
    let url126 = "https://github.com/dfinity/ICRC/blob/main/ICRCs/ICRC-126/ICRC-126.md";
    let url127 = "https://github.com/dfinity/ICRC/blob/main/ICRCs/ICRC-127/ICRC-127.md";
    [
      { block_type = "126request"; url = url126 },
      { block_type = "126attest"; url = url126 },
      { block_type = "126divergence"; url = url126 },
      { block_type = "126verified"; url = url126 },
      { block_type = "126rejected"; url = url126 },
      { block_type = "127bounty"; url = url127 },
      { block_type = "127payout"; url = url127 },
      { block_type = "127refund"; url = url127 },
      { block_type = "118version"; url = "https://github.com/dfinity/ICRC/blob/main/ICRCs/ICRC-118/ICRC-118.md" },
      { block_type = "118deprecate"; url = "https://github.com/dfinity/ICRC/blob/main/ICRCs/ICRC-118/ICRC-118.md" },
    ];
  };

  public query func icrc3_get_archives(_ : { from : ?Principal }) : async [{ canister_id : Principal; start : Nat; end : Nat }] { [] };

  // The runtime's memory figures (high-water, heap, live after GC, allocated, reclaimed), for the canister's
  // controllers and governance (they show how much others store, and when): see lib/MemoryStats.
  public shared query ({ caller }) func memory_stats() : async { #ok : MemoryStats.Stats; #err : T.Error } {
    if (not (Principal.isController(caller) or isGovernance(caller))) return #err(#NotAuthorized);
    #ok(MemoryStats.now());
  };

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
