// Ledger transfers that move escrow (the pull at bounty creation, payouts, refunds), each one a record with a
// fixed ICRC-1 deduplication key (`created_at_time` + `memo`): every attempt sends identical arguments, so a
// retry after a lost reply can never execute twice — the ledger answers `Duplicate` with the first block.
//
// A transfer is marked in flight before its await, so no other message sends it meanwhile; a lost reply is
// `#Unknown` (maybe executed), never `#Failed` (certainly not executed). A ledger checks deduplication before
// it applies a transfer (the ICRC-1 reference ledger and ours do), so when an identical resend inside the
// window is refused for want of funds or allowance, no earlier attempt executed. This module is the only
// writer of transfer records.
import Array "mo:core/Array";
import Blob "mo:core/Blob";
import Error "mo:core/Error";
import Int "mo:core/Int";
import Map "mo:core/Map";
import Nat "mo:core/Nat";
import Nat64 "mo:core/Nat64";
import Nat8 "mo:core/Nat8";
import Principal "mo:core/Principal";

import T "Types";

module {

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
  public type Ledger = actor {
    icrc1_fee : () -> async Nat;
    icrc2_transfer_from : ({
      spender_subaccount : ?Blob;
      from : T.Account;
      to : T.Account;
      amount : Nat;
      fee : ?Nat;
      memo : ?Blob;
      created_at_time : ?Nat64;
    }) -> async { #Ok : Nat; #Err : TransferFromError };
    icrc1_transfer : ({
      from_subaccount : ?Blob;
      to : T.Account;
      amount : Nat;
      fee : ?Nat;
      memo : ?Blob;
      created_at_time : ?Nat64;
    }) -> async { #Ok : Nat; #Err : TransferError };
  };

  public type Rec = {
    id : Nat;
    bounty_id : Nat;
    kind : T.TransferKind;
    ledger : Principal;
    from : T.Account; // the sponsor for an escrow pull; the registry otherwise
    to : T.Account;
    var amount : Nat;
    var fee : ?Nat;
    memo : Blob;
    var created_at_time : Nat64;
    var attempts : Nat;
    var state : T.TransferState;
    var maybeExecuted : Bool; // some attempt's reply was lost
  };

  public type Store = { transfers : Map.Map<Nat, Rec>; var next : Nat };

  // A message that trapped after its await leaves a transfer in flight; after this long it may be resent
  // (safe: identical arguments).
  public let RESEND_AFTER_NS : Int = 600_000_000_000; // 10 minutes

  public func empty() : Store { { transfers = Map.empty(); var next = 0 } };

  public func get(s : Store, id : Nat) : ?Rec { Map.get(s.transfers, Nat.compare, id) };

  // Drop a transfer that certainly never executed and that nothing refers to any more.
  public func remove(s : Store, id : Nat) {
    switch (get(s, id)) { case (?r) { if (failedForSure(r)) Map.remove(s.transfers, Nat.compare, id) }; case null {} };
  };

  public func create(s : Store, bounty_id : Nat, kind : T.TransferKind, ledger : Principal, from : T.Account, to : T.Account, amount : Nat, fee : ?Nat, now : Int) : Rec {
    let id = s.next;
    s.next += 1;
    let r : Rec = {
      id;
      bounty_id;
      kind;
      ledger;
      from;
      to;
      var amount = amount;
      var fee = fee;
      memo = memo(kind, id);
      var created_at_time = Nat64.fromNat(Int.toNat(now));
      var attempts = 0;
      var state = #Ready;
      var maybeExecuted = false;
    };
    Map.add(s.transfers, Nat.compare, id, r);
    r;
  };

  // "prometheus" tag, the kind, and the transfer id: unique per transfer, 32 bytes at most.
  func memo(kind : T.TransferKind, id : Nat) : Blob {
    let k : Nat8 = switch kind { case (#Escrow) 0x45; case (#Payout) 0x50; case (#Refund) 0x52 };
    let idBytes = Array.tabulate<Nat8>(8, func i = Nat8.fromNat((id / (256 ** (7 - i))) % 256));
    Blob.fromArray(Array.concat(Array.concat(Blob.toArray("prometheus"), [k]), idBytes));
  };

  public func isDone(r : Rec) : ?Nat { switch (r.state) { case (#Done({ block })) ?block; case _ null } };

  // Failed for certain: no attempt executed (only such a transfer may be abandoned).
  public func failedForSure(r : Rec) : Bool {
    switch (r.state) { case (#Failed(_)) not r.maybeExecuted; case _ false };
  };

  // Whether this message may send the transfer now; if so it is marked in flight before the caller awaits.
  public func claim(r : Rec, now : Int) : Bool {
    let may = switch (r.state) {
      case (#Ready or #Failed(_) or #Unknown(_)) true;
      case (#InFlight({ since })) now - since >= RESEND_AFTER_NS;
      case (#Done(_) or #InDoubt(_)) false;
    };
    if (may) {
      r.state := #InFlight({ since = now });
      r.attempts += 1;
    };
    may;
  };

  // Send a claimed transfer and record what the ledger said. Never traps on a ledger error.
  public func send(r : Rec, now : () -> Int) : async* () {
    let ledger : Ledger = actor (Principal.toText(r.ledger));
    // #unapplied: the ledger refused to apply it (funds, allowance), which it decides after deduplication.
    // #badFee: the ledger's fee changed; checked before deduplication, so it proves nothing about earlier attempts.
    let result : { #ok : Nat; #duplicate : Nat; #tooOld; #unapplied : Text; #badFee : Nat; #refused : Text; #lost : Text } = switch (r.kind) {
      case (#Escrow) {
        try {
          switch (await ledger.icrc2_transfer_from({ spender_subaccount = null; from = r.from; to = r.to; amount = r.amount; fee = r.fee; memo = ?r.memo; created_at_time = ?r.created_at_time })) {
            case (#Ok(b)) #ok(b);
            case (#Err(#Duplicate({ duplicate_of }))) #duplicate(duplicate_of);
            case (#Err(#TooOld)) #tooOld;
            case (#Err(#InsufficientAllowance({ allowance }))) #unapplied("insufficient allowance: " # Nat.toText(allowance) # " (approve reward + 2 x fee: escrow holds reward + fee, and the escrow transfer costs a fee)");
            case (#Err(#InsufficientFunds({ balance }))) #unapplied("insufficient funds: " # Nat.toText(balance));
            case (#Err(e)) #refused(describe(e));
          };
        } catch (e) { #lost(Error.message(e)) };
      };
      case (#Payout or #Refund) {
        try {
          switch (await ledger.icrc1_transfer({ from_subaccount = r.from.subaccount; to = r.to; amount = r.amount; fee = r.fee; memo = ?r.memo; created_at_time = ?r.created_at_time })) {
            case (#Ok(b)) #ok(b);
            case (#Err(#Duplicate({ duplicate_of }))) #duplicate(duplicate_of);
            case (#Err(#TooOld)) #tooOld;
            case (#Err(#InsufficientFunds({ balance }))) #unapplied("insufficient funds: " # Nat.toText(balance));
            case (#Err(#BadFee({ expected_fee }))) #badFee(expected_fee);
            case (#Err(e)) #refused(describe(e));
          };
        } catch (e) { #lost(Error.message(e)) };
      };
    };
    switch (result) {
      case (#ok(block) or #duplicate(block)) r.state := #Done({ block });
      case (#lost(message)) {
        r.maybeExecuted := true;
        r.state := #Unknown({ message = "the ledger's reply was lost: " # message });
      };
      case (#tooOld) {
        if (r.maybeExecuted) {
          r.state := #InDoubt({ message = "an earlier attempt may have executed and its deduplication window has passed" });
        } else {
          // No attempt ever reached the ledger's books: a fresh deduplication key is safe.
          r.created_at_time := Nat64.fromNat(Int.toNat(now()));
          r.state := #Ready;
        };
      };
      case (#unapplied(message)) {
        r.maybeExecuted := false; // deduplication came first: no identical attempt ever executed
        r.state := #Failed({ message });
      };
      case (#badFee(expected)) {
        let budget = r.amount + (switch (r.fee) { case (?f) f; case null 0 });
        if (not r.maybeExecuted and expected < budget) {
          // Nothing executed: send the same total out under the ledger's new fee, with a fresh key.
          r.amount := budget - expected;
          r.fee := ?expected;
          r.created_at_time := Nat64.fromNat(Int.toNat(now()));
          r.state := #Ready;
        } else {
          r.state := if (r.maybeExecuted) #Unknown({ message = "the ledger's fee changed to " # Nat.toText(expected) # " (an earlier attempt may have executed)" }) else #Failed({ message = "the ledger's fee " # Nat.toText(expected) # " exceeds the escrow" });
        };
      };
      case (#refused(message)) {
        r.state := if (r.maybeExecuted) #Unknown({ message = message # " (an earlier attempt may have executed)" }) else #Failed({ message });
      };
    };
  };

  func describe(e : TransferFromError) : Text {
    switch (e) {
      case (#BadFee({ expected_fee })) "bad fee, the ledger expects " # Nat.toText(expected_fee);
      case (#BadBurn(_)) "bad burn";
      case (#InsufficientFunds({ balance })) "insufficient funds: " # Nat.toText(balance);
      case (#InsufficientAllowance({ allowance })) "insufficient allowance: " # Nat.toText(allowance);
      case (#TooOld) "too old";
      case (#CreatedInFuture(_)) "created in the future";
      case (#Duplicate({ duplicate_of })) "duplicate of " # Nat.toText(duplicate_of);
      case (#TemporarilyUnavailable) "the ledger is temporarily unavailable";
      case (#GenericError({ message })) message;
    };
  };

  // Governance settles a transfer left in doubt, after reading the ledger: `?block` if it executed, null if not.
  public func resolve(r : Rec, block : ?Nat, now : Int) : Bool {
    switch (r.state) {
      case (#InDoubt(_)) {};
      case _ return false;
    };
    switch (block) {
      case (?b) r.state := #Done({ block = b });
      case null {
        r.maybeExecuted := false;
        r.created_at_time := Nat64.fromNat(Int.toNat(now));
        r.state := #Ready;
      };
    };
    true;
  };

  public func view(r : Rec) : T.Transfer {
    {
      id = r.id;
      bounty_id = r.bounty_id;
      kind = r.kind;
      ledger = r.ledger;
      to = r.to;
      amount = r.amount;
      memo = r.memo;
      created_at_time = r.created_at_time;
      attempts = r.attempts;
      state = r.state;
    };
  };
};
