// audit_hub: verifiers' reputation stake per audit type, bounty locks, profiles, policy.
// Stake moves and lock records are written before any await, so concurrent reservations of one bounty or
// of one stake cannot both succeed; every caller error is a typed #err.
import Int "mo:core/Int";
import List "mo:core/List";
import Map "mo:core/Map";
import Nat "mo:core/Nat";
import Principal "mo:core/Principal";
import Text "mo:core/Text";
import Time "mo:core/Time";

persistent actor class AuditHub(init : { governance : Principal; registry : ?Principal }) {
  public type Lock = {
    bounty_id : Nat;
    claimant : Principal;
    wasm_id : Text;
    audit_type : Text;
    stake : Nat;
    reserved_at : Int;
    expires_at : Int;
  };
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
    #BountyNotOpen;
    #AuditTypeMismatch : { expected : Text };
    #LockNotFound;
    #LockNotExpired : { expires_at : Int };
    #InvalidArgument : Text;
    #RegistryUnavailable : Text;
  };
  public type BountyView = { wasm_id : Text; audit_type : Text; open : Bool };
  type Registry = actor { bounty_for_lock : (Nat) -> async ?BountyView };
  type Record = { var reputation : Int; var verifications : Nat; var earnings : Nat; var slashed : Nat };

  var registry : ?Principal = init.registry;
  var policy : Policy = { lock_duration_ns = 3 * 24 * 60 * 60 * 1_000_000_000; stake_per_reservation = 100 };
  let available = Map.empty<Text, Nat>(); // "<principal>|<audit type>" -> tokens
  let staked = Map.empty<Text, Nat>();
  let locks = Map.empty<Nat, Lock>();
  let records = Map.empty<Principal, Record>();
  let auditTypes = Map.empty<Principal, List.List<Text>>();

  func stakeKey(p : Principal, auditType : Text) : Text { Principal.toText(p) # "|" # auditType };

  func get(m : Map.Map<Text, Nat>, k : Text) : Nat { switch (Map.get(m, Text.compare, k)) { case (?v) v; case null 0 } };

  func put(m : Map.Map<Text, Nat>, k : Text, v : Nat) {
    if (v == 0) { Map.remove(m, Text.compare, k) } else { Map.add(m, Text.compare, k, v) };
  };

  func record(p : Principal) : Record {
    switch (Map.get(records, Principal.compare, p)) {
      case (?r) r;
      case null {
        let r = { var reputation : Int = 0; var verifications = 0; var earnings = 0; var slashed = 0 };
        Map.add(records, Principal.compare, p, r);
        r;
      };
    };
  };

  func noteAuditType(p : Principal, auditType : Text) {
    let types = switch (Map.get(auditTypes, Principal.compare, p)) {
      case (?l) l;
      case null { let l = List.empty<Text>(); Map.add(auditTypes, Principal.compare, p, l); l };
    };
    if (not List.contains(types, Text.equal, auditType)) { List.add(types, auditType) };
  };

  func isGovernance(p : Principal) : Bool { Principal.equal(p, init.governance) };

  func isRegistry(p : Principal) : Bool {
    switch (registry) { case (?r) Principal.equal(p, r); case null false };
  };

  // Move a lock's stake out of `staked`; returns the amount.
  func unstake(lock : Lock) : Nat {
    let k = stakeKey(lock.claimant, lock.audit_type);
    let s = get(staked, k);
    let amount = Nat.min(s, lock.stake);
    put(staked, k, s - amount);
    amount;
  };

  // ---------------------------------------------------------------- governance

  public shared ({ caller }) func mint_tokens(verifier : Principal, audit_type : Text, amount : Nat) : async {
    #ok : Nat;
    #err : HubError;
  } {
    if (not isGovernance(caller)) return #err(#NotAuthorized);
    if (Text.size(audit_type) == 0 or Text.size(audit_type) > 64) return #err(#InvalidArgument("audit type must be 1..64 characters"));
    let k = stakeKey(verifier, audit_type);
    put(available, k, get(available, k) + amount);
    noteAuditType(verifier, audit_type);
    ignore record(verifier);
    #ok(get(available, k));
  };

  public shared ({ caller }) func set_policy(p : Policy) : async { #ok; #err : HubError } {
    if (not isGovernance(caller)) return #err(#NotAuthorized);
    if (p.lock_duration_ns == 0) return #err(#InvalidArgument("lock duration must be positive"));
    policy := p;
    #ok;
  };

  public shared ({ caller }) func set_registry(r : Principal) : async { #ok; #err : HubError } {
    if (not isGovernance(caller)) return #err(#NotAuthorized);
    registry := ?r;
    #ok;
  };

  public query func get_policy() : async Policy { policy };

  // ---------------------------------------------------------------- verifiers

  public shared ({ caller }) func reserve_bounty(bounty_id : Nat, audit_type : Text) : async {
    #ok : Lock;
    #err : HubError;
  } {
    if (Principal.isAnonymous(caller)) return #err(#NotAuthorized);
    let registryId = switch (registry) { case (?r) r; case null return #err(#RegistryNotSet) };
    let now = Time.now();
    switch (Map.get(locks, Nat.compare, bounty_id)) {
      case (?lock) {
        if (lock.expires_at > now) return #err(#AlreadyReserved({ claimant = lock.claimant; expires_at = lock.expires_at }));
        slash(lock); // an abandoned lock is cleaned up (and slashed) before anyone may reserve again
      };
      case null {};
    };
    let k = stakeKey(caller, audit_type);
    let free = get(available, k);
    let required = policy.stake_per_reservation;
    if (free < required) return #err(#InsufficientStake({ available = free; required }));
    // Take the stake and the lock now: a concurrent reservation sees them during the await below.
    put(available, k, free - required);
    put(staked, k, get(staked, k) + required);
    let pending : Lock = {
      bounty_id;
      claimant = caller;
      wasm_id = "";
      audit_type;
      stake = required;
      reserved_at = now;
      expires_at = now + policy.lock_duration_ns;
    };
    Map.add(locks, Nat.compare, bounty_id, pending);
    let registryActor : Registry = actor (Principal.toText(registryId));
    let outcome : { #ok : BountyView; #err : HubError } = try {
      switch (await registryActor.bounty_for_lock(bounty_id)) {
        case null #err(#BountyNotFound);
        case (?b) {
          if (not b.open) #err(#BountyNotOpen) else if (b.audit_type != audit_type) {
            #err(#AuditTypeMismatch({ expected = b.audit_type }));
          } else #ok(b);
        };
      };
    } catch (e) { #err(#RegistryUnavailable("the registry could not be asked")) };
    switch (outcome) {
      case (#ok(b)) {
        let lock = { pending with wasm_id = b.wasm_id };
        Map.add(locks, Nat.compare, bounty_id, lock);
        #ok(lock);
      };
      case (#err(e)) {
        // Give the stake back, but only if our own pending lock is still the one recorded.
        switch (Map.get(locks, Nat.compare, bounty_id)) {
          case (?current) {
            if (Principal.equal(current.claimant, caller) and current.reserved_at == now and current.wasm_id == "") {
              Map.remove(locks, Nat.compare, bounty_id);
              let s = unstake(current);
              put(available, k, get(available, k) + s);
            };
          };
          case null {};
        };
        #err(e);
      };
    };
  };

  public query func is_bounty_ready_for_collection(bounty_id : Nat, claimant : Principal) : async Bool {
    switch (Map.get(locks, Nat.compare, bounty_id)) {
      case (?lock) Principal.equal(lock.claimant, claimant) and lock.expires_at > Time.now() and lock.wasm_id != "";
      case null false;
    };
  };

  public query func get_lock(bounty_id : Nat) : async ?Lock { Map.get(locks, Nat.compare, bounty_id) };

  // ---------------------------------------------------------------- settlement (registry only)

  // The registry settles a lock once the outcome is final: agreeing claimants get their stake back and
  // reputation; disagreeing ones are slashed. The lock is removed in the same message: it settles once.
  public shared ({ caller }) func settle_lock(bounty_id : Nat, agreed : Bool, earned : Nat) : async {
    #ok : Lock;
    #err : HubError;
  } {
    if (not isRegistry(caller)) return #err(#NotAuthorized);
    let lock = switch (Map.get(locks, Nat.compare, bounty_id)) { case (?l) l; case null return #err(#LockNotFound) };
    Map.remove(locks, Nat.compare, bounty_id);
    let r = record(lock.claimant);
    if (agreed) {
      let s = unstake(lock);
      let k = stakeKey(lock.claimant, lock.audit_type);
      put(available, k, get(available, k) + s);
      r.reputation += 1;
      r.verifications += 1;
      r.earnings += earned;
    } else {
      r.slashed += unstake(lock);
      r.reputation -= 1;
    };
    #ok(lock);
  };

  func slash(lock : Lock) {
    Map.remove(locks, Nat.compare, lock.bounty_id);
    let r = record(lock.claimant);
    r.slashed += unstake(lock);
    r.reputation -= 1;
  };

  public shared func cleanup_expired_lock(bounty_id : Nat) : async { #ok : Lock; #err : HubError } {
    let lock = switch (Map.get(locks, Nat.compare, bounty_id)) { case (?l) l; case null return #err(#LockNotFound) };
    if (lock.expires_at > Time.now()) return #err(#LockNotExpired({ expires_at = lock.expires_at }));
    slash(lock);
    #ok(lock);
  };

  public query func get_auditor_profile(p : Principal) : async Profile {
    let types = switch (Map.get(auditTypes, Principal.compare, p)) { case (?l) List.toArray(l); case null [] };
    let r = switch (Map.get(records, Principal.compare, p)) {
      case (?r) r;
      case null { { var reputation : Int = 0; var verifications = 0; var earnings = 0; var slashed = 0 } };
    };
    {
      principal = p;
      available = List.toArray(List.map<Text, (Text, Nat)>(List.fromArray(types), func t = (t, get(available, stakeKey(p, t)))));
      staked = List.toArray(List.map<Text, (Text, Nat)>(List.fromArray(types), func t = (t, get(staked, stakeKey(p, t)))));
      reputation = r.reputation;
      verifications = r.verifications;
      earnings = r.earnings;
      slashed = r.slashed;
    };
  };

  public query func get_locks(offset : Nat, limit : Nat) : async [Lock] {
    let out = List.empty<Lock>();
    var i = 0;
    label scan for ((_, lock) in Map.entries(locks)) {
      if (i >= offset) { List.add(out, lock) };
      i += 1;
      if (List.size(out) >= Nat.min(limit, 500)) break scan;
    };
    List.toArray(out);
  };

  public query func icrc10_supported_standards() : async [{ name : Text; url : Text }] {
    [{ name = "ICRC-10"; url = "https://github.com/dfinity/ICRC/blob/main/ICRCs/ICRC-10/ICRC-10.md" }];
  };
};
