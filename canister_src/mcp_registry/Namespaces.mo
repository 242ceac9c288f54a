// ICRC-118 namespaces (canister types): their controllers and published versions. Only controllers manage a
// namespace; the anonymous principal never becomes one. This module is the only writer of namespaces and
// versions.
import Array "mo:core/Array";
import List "mo:core/List";
import Map "mo:core/Map";
import Nat "mo:core/Nat";
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

  public func empty() : Store { { namespaces = Map.empty(); createdBy = Map.empty(); versions = Map.empty() } };

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

  public func publish(s : Store, caller : Principal, ns : Text, version : (Nat, Nat, Nat), wasm_id : Text, now : Int) : { #ok; #err : T.Error } {
    let list = switch (Map.get(s.versions, Text.compare, ns)) {
      case (?l) l;
      case null { let l = List.empty<VersionRec>(); Map.add(s.versions, Text.compare, ns, l); l };
    };
    for (v in List.values(list)) { if (v.version == version) return #err(#VersionExists) };
    if (List.size(list) >= Limits.MAX_VERSIONS_PER_NAMESPACE) return #err(#QuotaExceeded("a namespace holds at most " # Nat.toText(Limits.MAX_VERSIONS_PER_NAMESPACE) # " versions"));
    List.add(list, { version; wasm_id; published_at = now; publisher = caller; var deprecated : ?Text = null });
    #ok;
  };

  public func deprecate(s : Store, ns : Text, version : (Nat, Nat, Nat), reason : Text) : { #ok; #err : T.Error } {
    let list = switch (Map.get(s.versions, Text.compare, ns)) { case (?l) l; case null return #err(#VersionNotFound) };
    for (v in List.values(list)) {
      if (v.version == version) { v.deprecated := ?reason; return #ok };
    };
    #err(#VersionNotFound);
  };

  func view(v : VersionRec) : T.Version {
    { version = v.version; wasm_id = v.wasm_id; published_at = v.published_at; publisher = v.publisher; deprecated = v.deprecated };
  };

  public func versions(s : Store, ns : Text) : [T.Version] {
    switch (Map.get(s.versions, Text.compare, ns)) { case (?l) List.toArray(List.map<VersionRec, T.Version>(l, view)); case null [] };
  };

  public func versionsOf(s : Store, ns : Text, wasm_id : Text) : [T.Version] {
    switch (Map.get(s.versions, Text.compare, ns)) {
      case (?l) List.toArray(List.filterMap<VersionRec, T.Version>(l, func v = if (v.wasm_id == wasm_id) ?view(v) else null));
      case null [];
    };
  };
};
