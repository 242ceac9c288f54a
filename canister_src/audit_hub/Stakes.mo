// Verifiers' reputation stake, per (verifier, audit type), and the locks that hold it: the only writer of both.
// A lock moves stake from `available` to `staked` when it is taken, and back (release, reward) or out (slash)
// exactly once when it is settled; a settled lock leaves a record, so asking again answers the same.
//
//   Reserving -> Held | (abandoned: stake back)   the registry granted / refused the reservation
//   Held      -> Cleaning | settled               expired: ask the registry / the registry settles it
//   Cleaning  -> Filed | Held | slashed           the claimant filed / the question failed / it did not file
//   Filed     -> settled                          the registry settles it by the audit's outcome
import List "mo:core/List";
import Map "mo:core/Map";
import Nat "mo:core/Nat";
import Principal "mo:core/Principal";
import Text "mo:core/Text";

module {

  public type LockState = { #Reserving; #Held; #Cleaning; #Filed };
  public type Verdict = { #Reward; #Release; #Slash };

  public type Lock = {
    lock_id : Nat;
    bounty_id : Nat;
    claimant : Principal;
    wasm_id : Text;
    audit_type : Text;
    stake : Nat;
    reserved_at : Int;
    expires_at : Int;
    state : LockState;
  };

  public type LockRec = {
    id : Nat;
    bounty_id : Nat;
    claimant : Principal;
    audit_type : Text;
    stake : Nat;
    reserved_at : Int;
    var wasm_id : Text;
    var expires_at : Int;
    var state : LockState;
  };

  public type Record = { var reputation : Int; var verifications : Nat; var earnings : Nat; var slashed : Nat };

  public type Store = {
    available : Map.Map<Text, Nat>; // "<principal>|<audit type>" -> stake free to reserve with
    staked : Map.Map<Text, Nat>; // locked in live locks
    locks : Map.Map<Nat, LockRec>; // live locks by lock id
    byBounty : Map.Map<Nat, Nat>; // bounty id -> its live lock's id
    settled : Map.Map<Text, Verdict>; // "<bounty>|<claimant>" -> how its lock was settled
    records : Map.Map<Principal, Record>;
    auditTypes : Map.Map<Principal, List.List<Text>>;
    var nextLock : Nat;
  };

  public func empty() : Store {
    {
      available = Map.empty();
      staked = Map.empty();
      locks = Map.empty();
      byBounty = Map.empty();
      settled = Map.empty();
      records = Map.empty();
      auditTypes = Map.empty();
      var nextLock = 0;
    };
  };

  func stakeKey(p : Principal, auditType : Text) : Text { Principal.toText(p) # "|" # auditType };
  func settledKey(bounty : Nat, claimant : Principal) : Text { Nat.toText(bounty) # "|" # Principal.toText(claimant) };

  func get(m : Map.Map<Text, Nat>, k : Text) : Nat { switch (Map.get(m, Text.compare, k)) { case (?v) v; case null 0 } };

  func put(m : Map.Map<Text, Nat>, k : Text, v : Nat) {
    if (v == 0) Map.remove(m, Text.compare, k) else Map.add(m, Text.compare, k, v);
  };

  public func record(s : Store, p : Principal) : Record {
    switch (Map.get(s.records, Principal.compare, p)) {
      case (?r) r;
      case null {
        let r = { var reputation : Int = 0; var verifications = 0; var earnings = 0; var slashed = 0 };
        Map.add(s.records, Principal.compare, p, r);
        r;
      };
    };
  };

  public func available(s : Store, p : Principal, auditType : Text) : Nat { get(s.available, stakeKey(p, auditType)) };
  public func staked(s : Store, p : Principal, auditType : Text) : Nat { get(s.staked, stakeKey(p, auditType)) };

  public func auditTypesOf(s : Store, p : Principal) : [Text] {
    switch (Map.get(s.auditTypes, Principal.compare, p)) { case (?l) List.toArray(l); case null [] };
  };

  public func mint(s : Store, p : Principal, auditType : Text, amount : Nat) : Nat {
    let k = stakeKey(p, auditType);
    put(s.available, k, get(s.available, k) + amount);
    let types = switch (Map.get(s.auditTypes, Principal.compare, p)) {
      case (?l) l;
      case null { let l = List.empty<Text>(); Map.add(s.auditTypes, Principal.compare, p, l); l };
    };
    if (not List.contains(types, Text.equal, auditType)) List.add(types, auditType);
    ignore record(s, p);
    get(s.available, k);
  };

  // ---------------------------------------------------------------- locks

  public func lockOf(s : Store, bounty : Nat) : ?LockRec {
    switch (Map.get(s.byBounty, Nat.compare, bounty)) { case (?id) Map.get(s.locks, Nat.compare, id); case null null };
  };

  public func live(s : Store, id : Nat) : ?LockRec { Map.get(s.locks, Nat.compare, id) };

  // Take `amount` of the claimant's stake into a new lock (the caller checked there is no live lock and the
  // stake is available). The lock exists, and the stake is locked, before the caller awaits the registry.
  public func take(s : Store, bounty : Nat, claimant : Principal, auditType : Text, amount : Nat, now : Int, expires : Int) : LockRec {
    let k = stakeKey(claimant, auditType);
    put(s.available, k, get(s.available, k) - amount : Nat);
    put(s.staked, k, get(s.staked, k) + amount);
    let l : LockRec = {
      id = s.nextLock;
      bounty_id = bounty;
      claimant;
      audit_type = auditType;
      stake = amount;
      reserved_at = now;
      var wasm_id = "";
      var expires_at = expires;
      var state = #Reserving;
    };
    s.nextLock += 1;
    Map.add(s.locks, Nat.compare, l.id, l);
    Map.add(s.byBounty, Nat.compare, bounty, l.id);
    l;
  };

  public func setState(l : LockRec, next : LockState) { l.state := next };

  public func confirm(l : LockRec, wasm_id : Text, until : Int) {
    l.wasm_id := wasm_id;
    l.expires_at := until;
    l.state := #Held;
  };

  func remove(s : Store, l : LockRec) {
    Map.remove(s.locks, Nat.compare, l.id);
    if (Map.get(s.byBounty, Nat.compare, l.bounty_id) == ?l.id) Map.remove(s.byBounty, Nat.compare, l.bounty_id);
    let k = stakeKey(l.claimant, l.audit_type);
    put(s.staked, k, get(s.staked, k) - l.stake : Nat);
  };

  // The registry refused the reservation: the stake goes back, nothing else happened.
  public func abandon(s : Store, l : LockRec) {
    remove(s, l);
    let k = stakeKey(l.claimant, l.audit_type);
    put(s.available, k, get(s.available, k) + l.stake);
  };

  // Settle a live lock once: its stake is released (with reputation for an agreeing filing) or slashed.
  public func settle(s : Store, l : LockRec, verdict : Verdict, earned : Nat) {
    remove(s, l);
    Map.add(s.settled, Text.compare, settledKey(l.bounty_id, l.claimant), verdict);
    let r = record(s, l.claimant);
    switch verdict {
      case (#Slash) {
        r.slashed += l.stake;
        r.reputation -= 1;
      };
      case (#Reward or #Release) {
        let k = stakeKey(l.claimant, l.audit_type);
        put(s.available, k, get(s.available, k) + l.stake);
        if (verdict == #Reward) {
          r.reputation += 1;
          r.verifications += 1;
          r.earnings += earned;
        };
      };
    };
  };

  public func settledAs(s : Store, bounty : Nat, claimant : Principal) : ?Verdict {
    Map.get(s.settled, Text.compare, settledKey(bounty, claimant));
  };

  public func view(l : LockRec) : Lock {
    {
      lock_id = l.id;
      bounty_id = l.bounty_id;
      claimant = l.claimant;
      wasm_id = l.wasm_id;
      audit_type = l.audit_type;
      stake = l.stake;
      reserved_at = l.reserved_at;
      expires_at = l.expires_at;
      state = l.state;
    };
  };
};
