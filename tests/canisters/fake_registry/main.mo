// Test canister: a registry that lies. It answers the orchestrator's questions as the real registry's
// interface does, with whatever a test set: a version it calls verified, and chunks that need not hash to it.
persistent actor {
  type Version = (Nat, Nat, Nat);
  var wasmId : Text = "";
  var version : Version = (1, 0, 0);
  var chunks : [Blob] = [];
  var controllers : [Principal] = [];

  public func set(arg : { wasm_id : Text; version : Version; chunks : [Blob]; controllers : [Principal] }) : async () {
    wasmId := arg.wasm_id;
    version := arg.version;
    chunks := arg.chunks;
    controllers := arg.controllers;
  };

  public query func icrc118_get_wasms(_ : Text) : async [{ version : Version; wasm_id : Text; published_at : Int; publisher : Principal; deprecated : ?Text }] {
    [{ version; wasm_id = wasmId; published_at = 0; publisher = controllers[0]; deprecated = null }];
  };

  public query func icrc118_get_canister_type(namespace : Text) : async ?{ namespace : Text; controllers : [Principal]; description : Text; created_at : Int } {
    ?{ namespace; controllers; description = ""; created_at = 0 };
  };

  public query func get_wasm_status(wasm_id : Text, namespace : ?Text) : async ?{ wasm_id : Text; namespace : Text; complete : Bool; outcome : ?{ #Verified; #Rejected } } {
    ?{ wasm_id; namespace = switch namespace { case (?n) n; case null "" }; complete = true; outcome = ?#Verified };
  };

  public query func icrc118_get_wasm_chunk(arg : { namespace : Text; wasm_hash : Blob; chunk_id : Nat }) : async {
    #ok : { chunk : Blob; total_chunks : Nat };
    #err : { #WasmNotFound };
  } {
    if (arg.chunk_id >= chunks.size()) return #err(#WasmNotFound);
    #ok({ chunk = chunks[arg.chunk_id]; total_chunks = chunks.size() });
  };
};
