// ICRC-118 namespaces (canister types): their controllers, published versions and upgrade paths. Only
// controllers manage a namespace; the anonymous principal never becomes one. This module is the only writer of
// namespaces, versions and `previous` links.
//
// Upgrade paths (ICRC-118 `previous`): a version may name the module it must be installed over (a lower version
// of the same namespace); one that names none may be installed over any lower version. The path from a running
// module to a target follows these links back from the target, so it is the only order in which an installer
// may take the versions in between.
import Array "mo:core/Array";
import List "mo:core/List";
import Map "mo:core/Map";
import Nat "mo:core/Nat";
import Order "mo:core/Order";
import Principal "mo:core/Principal";
import Text "mo:core/Text";

import Limits "Limits";
import T "Types";

module {

  public type NamespaceRec = { var controllers : [Principal]; var description : Text; created_at : Int; created_by : Principal };
  public type VersionRec = { version : (Nat, Nat, Nat); wasm_id : Text; published_at : Int; publisher : Principal; var deprecated : ?Text };

  public type Store = {
    namespaces : Map.Map<Text, NamespaceRec>;
    createdBy : Map.Map<Principal, Nat>; // namespaces each principal created
    versions : Map.Map<Text, List.List<VersionRec>>; // namespace -> versions in publication order
  };

  // `namespace@a.b.c` -> the wasm id that version must be installed over (kept apart from `VersionRec`, whose
  // stable shape predates upgrade paths).
  public type Previous = Map.Map<Text, Text>;

  public func empty() : Store { { namespaces = Map.empty(); createdBy = Map.empty(); versions = Map.empty() } };

  public func emptyPrevious() : Previous { Map.empty() };

  func versionKey(ns : Text, (a, b, c) : (Nat, Nat, Nat)) : Text { ns # "@" # Nat.toText(a) # "." # Nat.toText(b) # "." # Nat.toText(c) };

  public func compareVersions(x : (Nat, Nat, Nat), y : (Nat, Nat, Nat)) : Order.Order {
    switch (Nat.compare(x.0, y.0)) {
      case (#equal) switch (Nat.compare(x.1, y.1)) { case (#equal) Nat.compare(x.2, y.2); case o o };
      case o o;
    };
  };

  public func get(s : Store, ns : Text) : ?NamespaceRec { Map.get(s.namespaces, Text.compare, ns) };

  public func exists(s : Store, ns : Text) : Bool { Map.containsKey(s.namespaces, Text.compare, ns) };

  public func isController(s : Store, ns : Text, p : Principal) : Bool {
    switch (get(s, ns)) {
      case (?n) Array.any<Principal>(n.controllers, func c = Principal.equal(c, p));
      case null false;
    };
  };

  public func create(s : Store, caller : Principal, ns : Text, description : Text, now : Int) : { #ok : Text; #err : T.Error } {
    if (Principal.isAnonymous(caller)) return #err(#NotAuthorized);
    if (not Limits.namespace(ns)) return #err(#InvalidNamespace("use reverse-DNS, e.g. com.example.app"));
    if (Limits.bytes(description) > Limits.MAX_TEXT_BYTES) return #err(#InvalidArgument("description is longer than 1024 bytes"));
    if (exists(s, ns)) return #err(#NamespaceExists);
    let made = switch (Map.get(s.createdBy, Principal.compare, caller)) { case (?n) n; case null 0 };
    if (made >= Limits.MAX_NAMESPACES_PER_PRINCIPAL) return #err(#QuotaExceeded("a principal creates at most " # Nat.toText(Limits.MAX_NAMESPACES_PER_PRINCIPAL) # " namespaces"));
    Map.add(s.createdBy, Principal.compare, caller, made + 1);
    Map.add(s.namespaces, Text.compare, ns, { var controllers = [caller]; var description = description; created_at = now; created_by = caller });
    #ok(ns);
  };

  public func manageController(s : Store, caller : Principal, ns : Text, p : Principal, add : Bool) : { #ok : [Principal]; #err : T.Error } {
    let n = switch (get(s, ns)) { case (?n) n; case null return #err(#NamespaceNotFound) };
    if (not isController(s, ns, caller)) return #err(#NotAuthorized);
    if (add) {
      if (Principal.isAnonymous(p)) return #err(#InvalidArgument("the anonymous principal cannot control a namespace"));
      if (not Array.any<Principal>(n.controllers, func c = Principal.equal(c, p))) {
        if (n.controllers.size() >= Limits.MAX_CONTROLLERS) return #err(#InvalidArgument("at most " # Nat.toText(Limits.MAX_CONTROLLERS) # " controllers"));
        n.controllers := Array.concat(n.controllers, [p]);
      };
    } else {
      let rest = Array.filter<Principal>(n.controllers, func c = not Principal.equal(c, p));
      if (rest.size() == 0) return #err(#InvalidArgument("a namespace keeps at least one controller"));
      n.controllers := rest;
    };
    #ok(n.controllers);
  };

  // `previous`: the wasm id of a published lower version of `ns` this version must be installed over.
  public func publish(s : Store, p : Previous, caller : Principal, ns : Text, version : (Nat, Nat, Nat), wasm_id : Text, previous : ?Text, now : Int) : {
    #ok;
    #err : T.Error;
  } {
    let list = switch (Map.get(s.versions, Text.compare, ns)) {
      case (?l) l;
      case null { let l = List.empty<VersionRec>(); Map.add(s.versions, Text.compare, ns, l); l };
    };
    for (v in List.values(list)) { if (v.version == version) return #err(#VersionExists) };
    if (List.size(list) >= Limits.MAX_VERSIONS_PER_NAMESPACE) return #err(#QuotaExceeded("a namespace holds at most " # Nat.toText(Limits.MAX_VERSIONS_PER_NAMESPACE) # " versions"));
    switch previous {
      case (?from) {
        let isLower = List.any<VersionRec>(list, func v = v.wasm_id == from and compareVersions(v.version, version) == #less);
        if (not isLower) return #err(#InvalidArgument("previous must be the wasm of a lower published version of this namespace"));
        Map.add(p, Text.compare, versionKey(ns, version), from);
      };
      case null {};
    };
    List.add(list, { version; wasm_id; published_at = now; publisher = caller; var deprecated : ?Text = null });
    #ok;
  };

  // The versions to install, in order, to go from the module `current` to the module `target` (the target
  // last): follow `previous` links back from the target's highest version until one names `current`, or names
  // nothing and `current` is published lower. Empty when there is no such path or `current` is the target.
  // Each link points to a strictly lower version, so the walk takes at most `MAX_VERSIONS_PER_NAMESPACE` steps.
  public func upgradePath(s : Store, p : Previous, ns : Text, current : Text, target : Text) : [T.Version] {
    let list = switch (Map.get(s.versions, Text.compare, ns)) { case (?l) l; case null return [] };
    if (current == target) return [];
    // One module may be published as several versions: each time the highest one that qualifies.
    func highest(wasm_id : Text, below : ?(Nat, Nat, Nat)) : ?VersionRec {
      var best : ?VersionRec = null;
      for (v in List.values(list)) {
        let under = switch below { case (?b) compareVersions(v.version, b) == #less; case null true };
        if (v.wasm_id == wasm_id and under) switch best { case (?b) if (compareVersions(v.version, b.version) == #greater) best := ?v; case null best := ?v };
      };
      best;
    };
    var step : VersionRec = switch (highest(target, null)) { case (?v) v; case null return [] };
    let steps = List.empty<T.Version>();
    loop {
      if (step.wasm_id == current) return List.toArray(List.reverse(steps));
      List.add(steps, view(p, ns, step));
      let below = step.version;
      switch (Map.get(p, Text.compare, versionKey(ns, below))) {
        case null {
          // Installable over any lower version: `current` must be one.
          let lower = List.any<VersionRec>(list, func v = v.wasm_id == current and compareVersions(v.version, below) == #less);
          return if lower List.toArray(List.reverse(steps)) else [];
        };
        case (?prev) {
          if (prev == current) return List.toArray(List.reverse(steps));
          step := switch (highest(prev, ?below)) {
            case (?v) v;
            case null return [];
          };
        };
      };
    };
  };

  public func deprecate(s : Store, ns : Text, version : (Nat, Nat, Nat), reason : Text) : { #ok; #err : T.Error } {
    let list = switch (Map.get(s.versions, Text.compare, ns)) { case (?l) l; case null return #err(#VersionNotFound) };
    for (v in List.values(list)) {
      if (v.version == version) { v.deprecated := ?reason; return #ok };
    };
    #err(#VersionNotFound);
  };

  func view(p : Previous, ns : Text, v : VersionRec) : T.Version {
    { version = v.version; wasm_id = v.wasm_id; published_at = v.published_at; publisher = v.publisher; deprecated = v.deprecated;
      previous = Map.get(p, Text.compare, versionKey(ns, v.version)) };
  };

  public func versions(s : Store, p : Previous, ns : Text) : [T.Version] {
    switch (Map.get(s.versions, Text.compare, ns)) { case (?l) List.toArray(List.map<VersionRec, T.Version>(l, func v = view(p, ns, v))); case null [] };
  };

  public func versionsOf(s : Store, p : Previous, ns : Text, wasm_id : Text) : [T.Version] {
    switch (Map.get(s.versions, Text.compare, ns)) {
      case (?l) List.toArray(List.filterMap<VersionRec, T.Version>(l, func v = if (v.wasm_id == wasm_id) ?view(p, ns, v) else null));
      case null [];
    };
  };
};
