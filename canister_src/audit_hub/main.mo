// audit_hub: verifiers' reputation stake per audit type, the locks that hold it while a verifier works on a
// bounty, profiles, policy. Stake accounting and locks have one writer (Stakes.mo). The registry is the
// authority on bounties: it grants each reservation (so a bounty is reserved by at most one verifier, a
// verifier holds at most one reservation per round and audit type, and a sponsor cannot refund under a live
// reservation) and it says whether a claimant filed before its lock may be slashed (so a verifier who filed
// in time is never slashed for it). Every lock is written before the await that asks the registry.
import Error "mo:core/Error";
import List "mo:core/List";
import Map "mo:core/Map";
import Nat "mo:core/Nat";
import Principal "mo:core/Principal";
import Time "mo:core/Time";

import MemoryStats "../lib/MemoryStats";
import Stakes "Stakes";

persistent actor class AuditHub(init : { governance : Principal; registry : ?Principal }) {

  public type Lock = Stakes.Lock;
  public type Verdict = Stakes.Verdict;
  public type Policy = { lock_duration_ns : Nat; stake_per_reservation : Nat };
  public type Profile = {
    principal : Principal;
    available : [(Text, Nat)];
    staked : [(Text, Nat)];
    reputation : Int;
    verifications : Nat;
    earnings : Nat;
    slashed : Nat;
  };
  public type HubError = {
    #NotAuthorized;
    #RegistryNotSet;
    #InsufficientStake : { available : Nat; required : Nat };
    #AlreadyReserved : { claimant : Principal; expires_at : Int };
    #BountyNotFound;
    #BountyNotOpen : Text;
    #AuditTypeMismatch : { expected : Text };
    #AlreadyHolding : { bounty_id : Nat };
    #AlreadyFiled;
    #LockNotFound;
    #LockNotExpired : { expires_at : Int };
    #LockFiled;
    #InvalidArgument : Text;
    #RegistryUnavailable : Text;
  };

  type GrantError = {
    #NotAuthorized;
    #BountyNotFound;
    #BountyNotOpen : Text;
    #AuditTypeMismatch : { expected : Text };
    #AlreadyHolding : { bounty_id : Nat };
    #AlreadyFiled;
  };
  type ReservationEnd = { #Filed; #NotFiled; #Live };
  type Registry = actor {
    grant_reservation : (Nat, Principal, Text, Int) -> async { #ok : { wasm_id : Text; request_id : Nat; until : Int }; #err : GrantError };
    end_reservation : (Nat, Principal) -> async { #ok : ReservationEnd; #err : GrantError };
  };

  // Set once, at install: an upgrade's argument does not rebind them (`set_governance`, `set_registry`).
  var governance : Principal = init.governance;
  var registry : ?Principal = init.registry;
  var policy : Policy = { lock_duration_ns = 3 * 24 * 60 * 60 * 1_000_000_000; stake_per_reservation = 100 };
  let stakes = Stakes.empty();

  func isGovernance(p : Principal) : Bool { not Principal.isAnonymous(p) and Principal.equal(p, governance) };

  func isRegistry(p : Principal) : Bool {
    switch (registry) { case (?r) Principal.equal(p, r); case null false };
  };

  func validAuditType(t : Text) : Bool {
    if (t.size() == 0 or t.size() > 64) return false;
    for (c in t.chars()) {
      if (not ((c >= 'a' and c <= 'z') or (c >= '0' and c <= '9') or c == '_' or c == '.' or c == ':' or c == '-')) return false;
    };
    true;
  };

  func registryActor() : ?Registry {
    switch (registry) { case (?r) ?(actor (Principal.toText(r)) : Registry); case null null };
  };

  // ---------------------------------------------------------------- governance

  public shared ({ caller }) func mint_tokens(verifier : Principal, audit_type : Text, amount : Nat) : async {
    #ok : Nat;
    #err : HubError;
  } {
    if (not isGovernance(caller)) return #err(#NotAuthorized);
    if (Principal.isAnonymous(verifier)) return #err(#InvalidArgument("the anonymous principal cannot hold stake"));
    if (not validAuditType(audit_type)) return #err(#InvalidArgument("audit types are 1..64 characters of [a-z0-9_.:-]"));
    if (Stakes.auditTypesOf(stakes, verifier).size() >= 16 and Stakes.available(stakes, verifier, audit_type) == 0 and Stakes.staked(stakes, verifier, audit_type) == 0) {
      return #err(#InvalidArgument("a verifier holds stake in at most 16 audit types"));
    };
    #ok(Stakes.mint(stakes, verifier, audit_type, amount));
  };

  public shared ({ caller }) func set_policy(p : Policy) : async { #ok; #err : HubError } {
    if (not isGovernance(caller)) return #err(#NotAuthorized);
    if (p.lock_duration_ns < 60_000_000_000) return #err(#InvalidArgument("a lock lasts at least a minute"));
    if (p.stake_per_reservation == 0) return #err(#InvalidArgument("a reservation stakes something"));
    policy := p;
    #ok;
  };

  public shared ({ caller }) func set_registry(r : Principal) : async { #ok; #err : HubError } {
    if (not isGovernance(caller)) return #err(#NotAuthorized);
    registry := ?r;
    #ok;
  };

  public query func get_policy() : async Policy { policy };

  // Hand governance to another principal (e.g. a DAO canister); never to the anonymous principal.
  public shared ({ caller }) func set_governance(next : Principal) : async { #ok; #err : HubError } {
    if (not isGovernance(caller)) return #err(#NotAuthorized);
    if (Principal.isAnonymous(next)) return #err(#InvalidArgument("governance is never the anonymous principal"));
    governance := next;
    #ok;
  };

  // ---------------------------------------------------------------- verifiers

  // Reserve a bounty: lock the caller's stake, then ask the registry to grant the reservation (it ends no later
  // than the bounty). An expired lock on the bounty is cleaned up first.
  public shared ({ caller }) func reserve_bounty(bounty_id : Nat, audit_type : Text) : async {
    #ok : Lock;
    #err : HubError;
  } {
    if (Principal.isAnonymous(caller)) return #err(#NotAuthorized);
    let reg = switch (registryActor()) { case (?r) r; case null return #err(#RegistryNotSet) };
    if (not validAuditType(audit_type)) return #err(#InvalidArgument("audit types are 1..64 characters of [a-z0-9_.:-]"));
    switch (Stakes.lockOf(stakes, bounty_id)) {
      case (?l) {
        if (l.state == #Held and l.expires_at <= Time.now()) {
          await* cleanup(reg, l);
          switch (Stakes.lockOf(stakes, bounty_id)) {
            case (?still) return #err(#AlreadyReserved({ claimant = still.claimant; expires_at = still.expires_at }));
            case null {};
          };
        } else if (l.state == #Filed) {
          return #err(#BountyNotOpen("a verifier filed on it"));
        } else return #err(#AlreadyReserved({ claimant = l.claimant; expires_at = l.expires_at }));
      };
      case null {};
    };
    let required = policy.stake_per_reservation;
    let free = Stakes.available(stakes, caller, audit_type);
    if (free < required) return #err(#InsufficientStake({ available = free; required }));
    let now = Time.now();
    let lock = Stakes.take(stakes, bounty_id, caller, audit_type, required, now, now + policy.lock_duration_ns);
    let answer = try {
      await reg.grant_reservation(bounty_id, caller, audit_type, lock.expires_at);
    } catch (e) { #err(#BountyNotOpen("the registry could not be asked: " # Error.message(e))) };
    // The registry commits a grant or nothing (a call without a timeout is answered or rejected, never lost).
    switch (Stakes.live(stakes, lock.id)) {
      case null return #err(#LockNotFound); // settled meanwhile
      case (?_) {};
    };
    switch (answer) {
      case (#ok(g)) {
        Stakes.confirm(lock, g.wasm_id, g.until);
        #ok(Stakes.view(lock));
      };
      case (#err(e)) {
        Stakes.abandon(stakes, lock);
        #err(switch e {
          case (#NotAuthorized) #NotAuthorized;
          case (#BountyNotFound) #BountyNotFound;
          case (#BountyNotOpen(why)) #BountyNotOpen(why);
          case (#AuditTypeMismatch(x)) #AuditTypeMismatch(x);
          case (#AlreadyHolding(x)) #AlreadyHolding(x);
          case (#AlreadyFiled) #AlreadyFiled;
        });
      };
    };
  };

  // An expired lock: ask the registry whether its claimant filed in time. Filed: kept for the registry to
  // settle by the audit's outcome. Not filed: slashed. No answer: left as it was, to be asked again.
  func cleanup(reg : Registry, l : Stakes.LockRec) : async* () {
    Stakes.setState(l, #Cleaning);
    let answer = try { await reg.end_reservation(l.bounty_id, l.claimant) } catch (_) { #err(#NotAuthorized) };
    switch (Stakes.live(stakes, l.id)) { case null return; case (?_) {} }; // the registry settled it meanwhile
    switch answer {
      case (#ok(#Filed)) Stakes.setState(l, #Filed);
      case (#ok(#NotFiled)) Stakes.settle(stakes, l, #Slash, 0);
      case (#ok(#Live) or #err(_)) Stakes.setState(l, #Held);
    };
  };

  public shared func cleanup_expired_lock(bounty_id : Nat) : async { #ok : Lock; #err : HubError } {
    let reg = switch (registryActor()) { case (?r) r; case null return #err(#RegistryNotSet) };
    let l = switch (Stakes.lockOf(stakes, bounty_id)) { case (?l) l; case null return #err(#LockNotFound) };
    if (l.expires_at > Time.now()) return #err(#LockNotExpired({ expires_at = l.expires_at }));
    switch (l.state) {
      case (#Filed) return #err(#LockFiled);
      case (#Held) {};
      case (#Reserving or #Cleaning) return #err(#AlreadyReserved({ claimant = l.claimant; expires_at = l.expires_at }));
    };
    let before = Stakes.view(l);
    await* cleanup(reg, l);
    switch (Stakes.settledAs(stakes, bounty_id, l.claimant)) {
      case (?#Slash) #ok(before);
      case _ {
        switch (Stakes.live(stakes, l.id)) {
          case (?x) { if (x.state == #Filed) #err(#LockFiled) else #err(#RegistryUnavailable("the registry did not answer; try again")) };
          case null #err(#LockNotFound);
        };
      };
    };
  };

  public query func is_bounty_ready_for_collection(bounty_id : Nat, claimant : Principal) : async Bool {
    switch (Stakes.lockOf(stakes, bounty_id)) {
      case (?l) Principal.equal(l.claimant, claimant) and l.expires_at > Time.now() and l.state == #Held;
      case null false;
    };
  };

  public query func get_lock(bounty_id : Nat) : async ?Lock {
    switch (Stakes.lockOf(stakes, bounty_id)) { case (?l) ?Stakes.view(l); case null null };
  };

  // ---------------------------------------------------------------- settlement (registry only)

  // The registry settles a claimant's lock once the outcome is known: reward (stake back, reputation, earnings),
  // release (stake back: the audit never reached its quorum) or slash. Asking again answers the same.
  public shared ({ caller }) func settle_lock(bounty_id : Nat, claimant : Principal, verdict : Verdict, earned : Nat) : async {
    #ok;
    #err : HubError;
  } {
    if (not isRegistry(caller)) return #err(#NotAuthorized);
    switch (Stakes.lockOf(stakes, bounty_id)) {
      case (?l) {
        if (Principal.equal(l.claimant, claimant)) {
          Stakes.settle(stakes, l, verdict, earned);
          return #ok;
        };
      };
      case null {};
    };
    switch (Stakes.settledAs(stakes, bounty_id, claimant)) { case (?_) #ok; case null #err(#LockNotFound) };
  };

  public query func get_auditor_profile(p : Principal) : async Profile {
    let types = Stakes.auditTypesOf(stakes, p);
    let r = switch (Map.get(stakes.records, Principal.compare, p)) {
      case (?r) r;
      case null { { var reputation : Int = 0; var verifications = 0; var earnings = 0; var slashed = 0 } };
    };
    {
      principal = p;
      available = List.toArray(List.map<Text, (Text, Nat)>(List.fromArray(types), func t = (t, Stakes.available(stakes, p, t))));
      staked = List.toArray(List.map<Text, (Text, Nat)>(List.fromArray(types), func t = (t, Stakes.staked(stakes, p, t))));
      reputation = r.reputation;
      verifications = r.verifications;
      earnings = r.earnings;
      slashed = r.slashed;
    };
  };

  // Live locks by lock id, one page after `after`.
  public query func get_locks(after : ?Nat, limit : Nat) : async [Lock] {
    let out = List.empty<Lock>();
    let iter = switch after { case (?a) Map.entriesFrom(stakes.locks, Nat.compare, a + 1); case null Map.entries(stakes.locks) };
    label scan for ((_, l) in iter) {
      if (List.size(out) >= Nat.min(limit, 100)) break scan;
      List.add(out, Stakes.view(l));
    };
    List.toArray(out);
  };

  // The runtime's memory figures (high-water, heap, live after GC, allocated, reclaimed), for the canister's
  // controllers and governance (they show how much others store, and when): see lib/MemoryStats.
  public shared query ({ caller }) func memory_stats() : async { #ok : MemoryStats.Stats; #err : HubError } {
    if (not (Principal.isController(caller) or isGovernance(caller))) return #err(#NotAuthorized);
    #ok(MemoryStats.now());
  };

  public query func icrc10_supported_standards() : async [{ name : Text; url : Text }] {
    [{ name = "ICRC-10"; url = "https://github.com/dfinity/ICRC/blob/main/ICRCs/ICRC-10/ICRC-10.md" }];
  };
};
