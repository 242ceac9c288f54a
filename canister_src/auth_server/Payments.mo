// Pay-per-use charges, one writer: the resource servers governance registered (who may charge, for which
// resource, paid to which account, in which ledgers), each user's spending limits per service, and every charge
// with its state. A charge pulls the user's tokens with ICRC-2 `transfer_from` (the user approved this canister
// as spender); its `created_at_time` and memo are fixed when the charge is first recorded, so a retry sends the
// identical transfer and the ledger's deduplication answers `Duplicate` instead of billing twice.
//
// Charge states:  InFlight --Ok--> Paid
//                    |  \--Err (definite)--> Failed   (the amount is given back to the limit)
//                    \--no answer--> Unknown --retry (same request id)--> InFlight ...
import Blob "mo:core/Blob";
import Iter "mo:core/Iter";
import List "mo:core/List";
import Map "mo:core/Map";
import Nat "mo:core/Nat";
import Nat64 "mo:core/Nat64";
import Principal "mo:core/Principal";
import Text "mo:core/Text";

import Sha256 "../lib/Sha256";

module {

  public type Account = { owner : Principal; subaccount : ?Blob };

  public type Server = {
    principal : Principal; // the caller of `charge_user`
    resource : Text; // the audience its tokens carry (RFC 8707)
    name : Text;
    payee : Account;
    ledgers : [Principal];
  };

  public type Limit = {
    resource : Text;
    ledger : Principal;
    max_per_charge : Nat;
    max_total : Nat;
    var spent : Nat; // paid and in-flight charges
  };

  public type State = { #inFlight; #unknown : Text; #paid : { block : Nat }; #failed : Text };

  public type Charge = {
    id : Nat;
    server : Principal;
    user : Principal;
    ledger : Principal;
    resource : Text;
    amount : Nat;
    request_id : Text;
    created_at_time : Nat64;
    memo : Blob;
    payee : Account; // fixed at the first attempt: a retry sends the identical transfer
    at_ns : Int;
    var state : State;
  };

  public let MAX_REQUEST_ID = 64;
  public let MAX_SERVERS = 1_000;

  public type Store = {
    servers : Map.Map<Principal, Server>;
    limits : Map.Map<Principal, List.List<Limit>>; // each user's, one per (resource, ledger)
    charges : List.List<Charge>; // by id
    byRequest : Map.Map<Blob, Nat>; // key: server, request id -> charge id
    byUser : Map.Map<Principal, List.List<Nat>>;
  };

  public func empty() : Store {
    { servers = Map.empty(); limits = Map.empty(); charges = List.empty(); byRequest = Map.empty(); byUser = Map.empty() };
  };

  func key(parts : [Blob]) : Blob {
    let st = Sha256.init();
    for (p in parts.vals()) { Sha256.writeText(st, Nat.toText(p.size()) # ":"); Sha256.write(st, p) };
    Sha256.finish(st);
  };

  // The charge's identity for the ledger and for retries: the server's request id, never the user's input.
  public func requestKey(server : Principal, requestId : Text) : Blob {
    key([Principal.toBlob(server), Text.encodeUtf8(requestId)]);
  };

  // ---------------------------------------------------------------- servers (governance)

  public func register(s : Store, server : Server) : Bool {
    if (Map.size(s.servers) >= MAX_SERVERS and not Map.containsKey(s.servers, Principal.compare, server.principal)) return false;
    Map.add(s.servers, Principal.compare, server.principal, server);
    true;
  };

  public func unregister(s : Store, p : Principal) : Bool {
    switch (Map.take(s.servers, Principal.compare, p)) { case (?_) true; case null false };
  };

  public func server(s : Store, p : Principal) : ?Server { Map.get(s.servers, Principal.compare, p) };

  public func servers(s : Store) : [Server] { Iter.toArray(Map.values(s.servers)) };

  public func serverFor(s : Store, resource : Text) : ?Server {
    for (v in Map.values(s.servers)) if (v.resource == resource) return ?v;
    null;
  };

  // ---------------------------------------------------------------- limits (each user's own)

  public let MAX_LIMITS_PER_USER = 100;

  public func setLimit(s : Store, user : Principal, resource : Text, ledger : Principal, perCharge : Nat, total : Nat) : Bool {
    let mine = switch (Map.get(s.limits, Principal.compare, user)) {
      case (?l) l;
      case null { let l = List.empty<Limit>(); Map.add(s.limits, Principal.compare, user, l); l };
    };
    switch (List.findIndex<Limit>(mine, func l = l.resource == resource and Principal.equal(l.ledger, ledger))) {
      case (?i) {
        let old = List.at(mine, i);
        List.put(mine, i, { resource; ledger; max_per_charge = perCharge; max_total = total; var spent = old.spent });
      };
      case null {
        if (List.size(mine) >= MAX_LIMITS_PER_USER) return false;
        List.add(mine, { resource; ledger; max_per_charge = perCharge; max_total = total; var spent = 0 });
      };
    };
    true;
  };

  public func limit(s : Store, user : Principal, resource : Text, ledger : Principal) : ?Limit {
    let ?mine = Map.get(s.limits, Principal.compare, user) else return null;
    List.find<Limit>(mine, func l = l.resource == resource and Principal.equal(l.ledger, ledger));
  };

  public func limitsOf(s : Store, user : Principal) : [Limit] {
    switch (Map.get(s.limits, Principal.compare, user)) { case (?l) List.toArray(l); case null [] };
  };

  // ---------------------------------------------------------------- charges

  public func byRequest(s : Store, server : Principal, requestId : Text) : ?Charge {
    switch (Map.get(s.byRequest, Blob.compare, requestKey(server, requestId))) { case (?id) ?List.at(s.charges, id); case null null };
  };

  public func record(s : Store, server : Principal, payee : Account, user : Principal, ledger : Principal, resource : Text, amount : Nat, requestId : Text, now : Int) : Charge {
    let memo = requestKey(server, requestId);
    let c : Charge = {
      id = List.size(s.charges);
      server;
      user;
      ledger;
      resource;
      amount;
      request_id = requestId;
      created_at_time = Nat64.fromIntWrap(now);
      memo;
      payee;
      at_ns = now;
      var state = #inFlight;
    };
    List.add(s.charges, c);
    Map.add(s.byRequest, Blob.compare, memo, c.id);
    switch (Map.get(s.byUser, Principal.compare, user)) {
      case (?ids) List.add(ids, c.id);
      case null Map.add(s.byUser, Principal.compare, user, List.singleton<Nat>(c.id));
    };
    c;
  };

  // A user's charges, newest first, a page at a time (`before`: the last id of the previous page).
  public func chargesOf(s : Store, user : Principal, before : ?Nat, limit : Nat) : [Charge] {
    let ?ids = Map.get(s.byUser, Principal.compare, user) else return [];
    let out = List.empty<Charge>();
    var i = List.size(ids);
    while (i > 0 and List.size(out) < limit) {
      i -= 1;
      let id = List.at(ids, i);
      let wanted = switch before { case (?b) id < b; case null true };
      if (wanted) List.add(out, List.at(s.charges, id));
    };
    List.toArray(out);
  };
};
