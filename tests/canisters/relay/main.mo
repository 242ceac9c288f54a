// Test canister: inter-canister calls, rejects, self calls, ordering, cycles, management canister calls.
import IC "mo:core/InternetComputer";
import Error "mo:core/Error";
import Debug "mo:core/Debug";
import Runtime "mo:core/Runtime";
import Cycles "mo:core/Cycles";
import List "mo:core/List";
import Nat "mo:core/Nat";
import Nat32 "mo:core/Nat32";
import Principal "mo:core/Principal";

persistent actor Relay {
  type Management = actor {
    raw_rand : () -> async Blob;
    canister_info : ({ canister_id : Principal; num_requested_changes : ?Nat64 }) -> async {
      total_num_changes : Nat64;
      module_hash : ?Blob;
      controllers : [Principal];
    };
    create_canister : ({ settings : ?{ controllers : ?[Principal] } }) -> async { canister_id : Principal };
    install_code : ({
      mode : { #install; #reinstall; #upgrade : ?{ wasm_memory_persistence : ?{ #keep; #replace } } };
      canister_id : Principal;
      wasm_module : Blob;
      arg : Blob;
    }) -> async ();
  };
  transient let ic : Management = actor "aaaaa-aa";

  let received = List.empty<Text>();
  var cleanups : Nat = 0;

  func codeName(e : Error) : Text {
    switch (Error.code(e)) {
      case (#system_fatal) "system_fatal";
      case (#system_transient) "system_transient";
      case (#destination_invalid) "destination_invalid";
      case (#canister_reject) "canister_reject";
      case (#canister_error) "canister_error";
      case (#system_unknown) "system_unknown";
      case (#future n) "future " # Nat.toText(Nat32.toNat(n));
      case (#call_error { err_code }) "call_error " # Nat.toText(Nat32.toNat(err_code));
    };
  };

  public func forward(target : Principal, method : Text, arg : Blob) : async { #ok : Blob; #err : (Text, Text) } {
    try { #ok(await IC.call(target, method, arg)) } catch (e) { #err(codeName(e), Error.message(e)) };
  };

  // A direct typed call (no local async helper in between), so the callee's reject code arrives unchanged.
  public func direct(target : Principal, method : Text) : async { #ok : Nat; #err : (Text, Text) } {
    let other = actor (Principal.toText(target)) : actor {
      inc : () -> async Nat;
      missing : () -> async Nat;
      incThenTrap : () -> async Nat;
    };
    try {
      #ok(await (if (method == "inc") other.inc() else if (method == "missing") other.missing() else other.incThenTrap()));
    } catch (e) { #err(codeName(e), Error.message(e)) };
  };

  public func record(tag : Text) : async () { List.add(received, tag) };

  public query func receivedLog() : async [Text] { List.toArray(received) };

  // Sends `n` calls to `target.record` without waiting in between, then waits for all of them.
  public func fanout(target : Principal, n : Nat) : async () {
    let other = actor (Principal.toText(target)) : actor { record : Text -> async () };
    let pending = List.empty<async ()>();
    var i = 0;
    while (i < n) { List.add(pending, other.record(Nat.toText(i))); i += 1 };
    for (f in List.values(pending)) { await f };
  };

  public func inner(x : Nat) : async Nat { x + 1 };

  public func selfCall(x : Nat) : async Nat { (await inner(x)) * 2 };

  public func trapAfterAwait(target : Principal) : async () {
    ignore await IC.call(target, "get", to_candid ());
    Runtime.trap("deliberate trap in a callback");
  };

  public func rawRand() : async Blob { await ic.raw_rand() };

  public func info(c : Principal) : async (Nat64, ?Blob, [Principal]) {
    let r = await ic.canister_info({ canister_id = c; num_requested_changes = ?5 });
    (r.total_num_changes, r.module_hash, r.controllers);
  };

  public func createAndInstall(wasm : Blob, arg : Blob) : async Principal {
    let { canister_id } = await (with cycles = 1_000_000_000_000) ic.create_canister({ settings = null });
    await ic.install_code({ mode = #install; canister_id; wasm_module = wasm; arg });
    canister_id;
  };

  public func sendCycles(target : Principal, amount : Nat) : async Nat {
    let other = actor (Principal.toText(target)) : actor { acceptHalf : () -> async Nat };
    await (with cycles = amount) other.acceptHalf();
  };

  public func acceptHalf() : async Nat { Cycles.accept<system>(Cycles.available() / 2) };

  public query func balance() : async Nat { Cycles.balance() };
};
