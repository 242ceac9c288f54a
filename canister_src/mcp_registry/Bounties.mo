// ICRC-127 bounties: the records and their state machine. This module is the only writer of a bounty's
// state; every change goes through `transition`, which refuses (traps, rolling the message back) any move the
// table below does not allow and keeps the indexes and escrow totals in step.
//
//   Funding  -> Open | Refunding | Cancelled      escrow pull confirmed / round over meanwhile / pull refused
//   Open     -> Reserved | Refunding              the hub reserved it / timeout, round final or superseded
//   Reserved -> Claimed | Open | Refunding        the claimant filed / reservation expired unused / timeout
//   Claimed  -> Paying | Refunding                audit final and the filing agrees / disagrees or timeout
//   Paying   -> Paid,  Refunding -> Refunded      the ledger confirmed the transfer
import List "mo:core/List";
import Map "mo:core/Map";
import Nat "mo:core/Nat";
import Principal "mo:core/Principal";
import Runtime "mo:core/Runtime";
import Text "mo:core/Text";

import Limits "Limits";
import T "Types";

module {

  public type Rec = {
    id : Nat;
    creator : Principal;
    request_id : Nat;
    namespace : Text;
    wasm_id : Text;
    audit_type : Text;
    ledger : Principal;
    amount : Nat;
    fee : Nat;
    timeout_date : Int;
    created_at : Int;
    var state : T.BountyState;
    var escrow : ?Nat; // the escrow pull's transfer id
    var release : ?Nat; // the payout's or refund's transfer id
    var filing : ?Nat; // the claimant's filing (index in Rounds)
    var filer : ?Principal; // who filed on this bounty
    var stake : T.StakeSettlement; // what the hub still has to be told about the filer's stake
  };

  type Totals = { var held : Nat; var incoming : Nat; var outgoing : Nat };

  public type Store = {
    bounties : Map.Map<Nat, Rec>;
    var next : Nat;
    byRequest : Map.Map<Nat, List.List<Nat>>;
    byWasm : Map.Map<Text, List.List<Nat>>;
    live : Map.Map<Nat, Nat>; // request id -> bounties not yet terminal
    open : Map.Map<Nat, Nat>; // request id -> bounties #Open or #Reserved (the pending list)
    reservations : Map.Map<Text, Nat>; // "<request>|<audit type>|<claimant>" -> bounty id, while #Reserved
    totals : Map.Map<Principal, Totals>; // per ledger
  };

  public func empty() : Store {
    {
      bounties = Map.empty();
      var next = 0;
      byRequest = Map.empty();
      byWasm = Map.empty();
      live = Map.empty();
      open = Map.empty();
      reservations = Map.empty();
      totals = Map.empty();
    };
  };

  // ---------------------------------------------------------------- the state machine

  public func tag(s : T.BountyState) : Text {
    switch s {
      case (#Funding) "Funding";
      case (#Open) "Open";
      case (#Reserved(_)) "Reserved";
      case (#Claimed(_)) "Claimed";
      case (#Paying(_)) "Paying";
      case (#Refunding) "Refunding";
      case (#Paid(_)) "Paid";
      case (#Refunded(_)) "Refunded";
      case (#Cancelled) "Cancelled";
    };
  };

  let TRANSITIONS : [(Text, [Text])] = [
    ("Funding", ["Open", "Refunding", "Cancelled"]),
    ("Open", ["Reserved", "Refunding"]),
    ("Reserved", ["Claimed", "Open", "Refunding"]),
    ("Claimed", ["Paying", "Refunding"]),
    ("Paying", ["Paid"]),
    ("Refunding", ["Refunded"]),
  ];

  public func allowed(from : T.BountyState, to : T.BountyState) : Bool {
    let (f, t) = (tag(from), tag(to));
    for ((src, dsts) in TRANSITIONS.vals()) {
      if (src == f) { for (d in dsts.vals()) { if (d == t) return true } };
    };
    false;
  };

  // Open or reserved: work a verifier may do now or once the reservation expires (the pending list).
  func workable(s : T.BountyState) : Bool {
    switch s { case (#Open or #Reserved(_)) true; case _ false };
  };

  public func terminal(s : T.BountyState) : Bool {
    switch s { case (#Paid(_) or #Refunded(_) or #Cancelled) true; case _ false };
  };

  // Where a bounty's escrow is: on its way in, held, on its way out, or gone.
  func category(s : T.BountyState) : { #incoming; #held; #outgoing; #none } {
    switch s {
      case (#Funding) #incoming;
      case (#Open or #Reserved(_) or #Claimed(_)) #held;
      case (#Paying(_) or #Refunding) #outgoing;
      case (#Paid(_) or #Refunded(_) or #Cancelled) #none;
    };
  };

  public func transition(s : Store, b : Rec, next : T.BountyState) {
    if (not allowed(b.state, next)) Runtime.trap("bounty " # Nat.toText(b.id) # ": no transition " # tag(b.state) # " -> " # tag(next));
    let before = b.state;
    account(s, b, before, -1);
    b.state := next;
    account(s, b, next, 1);
    if (terminal(next)) bump(s.live, b.request_id, -1);
    if (workable(before)) bump(s.open, b.request_id, -1);
    if (workable(next)) bump(s.open, b.request_id, 1);
    switch before {
      case (#Reserved({ claimant })) {
        let k = reservationKey(b.request_id, b.audit_type, claimant);
        if (Map.get(s.reservations, Text.compare, k) == ?b.id) Map.remove(s.reservations, Text.compare, k);
      };
      case _ {};
    };
    switch next {
      case (#Reserved({ claimant })) Map.add(s.reservations, Text.compare, reservationKey(b.request_id, b.audit_type, claimant), b.id);
      case _ {};
    };
  };

  func account(s : Store, b : Rec, state : T.BountyState, sign : Int) {
    let t = switch (Map.get(s.totals, Principal.compare, b.ledger)) {
      case (?t) t;
      case null {
        let t = { var held = 0; var incoming = 0; var outgoing = 0 };
        Map.add(s.totals, Principal.compare, b.ledger, t);
        t;
      };
    };
    let value = b.amount + b.fee;
    func apply(x : Nat) : Nat { if (sign > 0) x + value else x - value : Nat };
    switch (category(state)) {
      case (#incoming) t.incoming := apply(t.incoming);
      case (#held) t.held := apply(t.held);
      case (#outgoing) t.outgoing := apply(t.outgoing);
      case (#none) {};
    };
  };

  func bump(m : Map.Map<Nat, Nat>, k : Nat, delta : Int) {
    let current : Int = switch (Map.get(m, Nat.compare, k)) { case (?n) n; case null 0 };
    let next = current + delta;
    if (next <= 0) Map.remove(m, Nat.compare, k) else Map.add(m, Nat.compare, k, Nat.fromInt(next));
  };

  func reservationKey(request : Nat, auditType : Text, claimant : Principal) : Text {
    Nat.toText(request) # "|" # auditType # "|" # Principal.toText(claimant);
  };

  // ---------------------------------------------------------------- records

  public func create(s : Store, creator : Principal, request_id : Nat, namespace : Text, wasm_id : Text, audit_type : Text, ledger : Principal, amount : Nat, fee : Nat, timeout_date : Int, now : Int) : Rec {
    let id = s.next;
    s.next += 1;
    let b : Rec = {
      id;
      creator;
      request_id;
      namespace;
      wasm_id;
      audit_type;
      ledger;
      amount;
      fee;
      timeout_date;
      created_at = now;
      var state = #Funding;
      var escrow = null;
      var release = null;
      var filing = null;
      var filer = null;
      var stake = #None;
    };
    Map.add(s.bounties, Nat.compare, id, b);
    index(s.byRequest, Nat.compare, request_id, id);
    index(s.byWasm, Text.compare, wasm_id, id);
    account(s, b, #Funding, 1);
    bump(s.live, request_id, 1);
    b;
  };

  func index<K>(m : Map.Map<K, List.List<Nat>>, compare : (K, K) -> { #less; #equal; #greater }, k : K, id : Nat) {
    let l = switch (Map.get(m, compare, k)) {
      case (?l) l;
      case null { let l = List.empty<Nat>(); Map.add(m, compare, k, l); l };
    };
    List.add(l, id);
  };

  // A bounty whose escrow never arrived (certainly) leaves the per-round and per-wasm indexes, so failed
  // creations cost nobody a place; it stays readable by id only if its id was ever handed out.
  public func forget(s : Store, b : Rec, keepRecord : Bool) {
    if (b.state != #Cancelled) Runtime.trap("only a cancelled bounty is forgotten");
    unindex(s.byRequest, Nat.compare, b.request_id, b.id);
    unindex(s.byWasm, Text.compare, b.wasm_id, b.id);
    if (not keepRecord) Map.remove(s.bounties, Nat.compare, b.id);
  };

  func unindex<K>(m : Map.Map<K, List.List<Nat>>, compare : (K, K) -> { #less; #equal; #greater }, k : K, id : Nat) {
    switch (Map.get(m, compare, k)) {
      case (?l) {
        List.retain<Nat>(l, func x = x != id);
        if (List.size(l) == 0) Map.remove(m, compare, k);
      };
      case null {};
    };
  };

  public func setEscrow(b : Rec, transfer : Nat) { b.escrow := ?transfer };
  public func setRelease(b : Rec, transfer : Nat) { b.release := ?transfer };
  public func setFiling(b : Rec, filer : Principal, filing : Nat) { b.filer := ?filer; b.filing := ?filing };
  public func setStake(b : Rec, stake : T.StakeSettlement) { b.stake := stake };

  public func get(s : Store, id : Nat) : ?Rec { Map.get(s.bounties, Nat.compare, id) };

  public func ofRequest(s : Store, request : Nat) : [Rec] {
    switch (Map.get(s.byRequest, Nat.compare, request)) {
      case (?l) List.toArray(List.filterMap<Nat, Rec>(l, func id = get(s, id)));
      case null [];
    };
  };

  public func countOfRequest(s : Store, request : Nat) : Nat {
    switch (Map.get(s.byRequest, Nat.compare, request)) { case (?l) List.size(l); case null 0 };
  };

  public func liveOfRequest(s : Store, request : Nat) : Nat {
    switch (Map.get(s.live, Nat.compare, request)) { case (?n) n; case null 0 };
  };

  // The newest bounties of a wasm (every namespace), at most one page.
  public func ofWasm(s : Store, wasm_id : Text) : [Rec] {
    let out = List.empty<Rec>();
    switch (Map.get(s.byWasm, Text.compare, wasm_id)) {
      case (?l) {
        label newest for (id in List.reverseValues(l)) {
          if (List.size(out) >= Limits.MAX_PAGE) break newest;
          switch (get(s, id)) { case (?b) List.add(out, b); case null {} };
        };
      };
      case null {};
    };
    List.reverseInPlace(out);
    List.toArray(out);
  };

  public func openCount(s : Store, request : Nat) : Nat {
    switch (Map.get(s.open, Nat.compare, request)) { case (?n) n; case null 0 };
  };

  // Requests that have at least one #Open or #Reserved bounty, from `after` on.
  public func openRequests(s : Store, after : ?Nat) : { next : () -> ?(Nat, Nat) } {
    switch after { case (?a) Map.entriesFrom(s.open, Nat.compare, a + 1); case null Map.entries(s.open) };
  };

  public func reservedBy(s : Store, request : Nat, auditType : Text, claimant : Principal) : ?Nat {
    Map.get(s.reservations, Text.compare, reservationKey(request, auditType, claimant));
  };

  public func totals(s : Store) : [T.EscrowTotals] {
    let out = List.empty<T.EscrowTotals>();
    for ((ledger, t) in Map.entries(s.totals)) {
      List.add(out, { ledger; held = t.held; incoming = t.incoming; outgoing = t.outgoing });
    };
    List.toArray(out);
  };

  public func view(b : Rec) : T.Bounty {
    {
      bounty_id = b.id;
      creator = b.creator;
      request_id = b.request_id;
      namespace = b.namespace;
      wasm_id = b.wasm_id;
      audit_type = b.audit_type;
      reward_canister = b.ledger;
      reward_amount = b.amount;
      fee = b.fee;
      timeout_date = b.timeout_date;
      created_at = b.created_at;
      state = b.state;
      filer = b.filer;
      stake = b.stake;
    };
  };
};
