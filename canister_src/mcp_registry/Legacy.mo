// The registry's stable state in the shapes the release before 2026-12-01 kept it (commit 4c01e47), and its move
// into today's shapes, run by `postupgrade`. Their stable fields keep their names (`uploads`, `log`) and these
// types, so that release upgrades in place; a fresh install starts with them empty, and they stay empty after
// the move. What moves: every complete upload (hashed already), the whole ICRC-3 log (each block encoded as it
// is stored now, hashes and tip unchanged), and the indexes of complete uploads. Incomplete uploads do not move:
// their chunks were never hashed the way uploads are now, and they would expire within a day anyway; their
// uploaders send them again.
import List "mo:core/List";
import Map "mo:core/Map";
import Text "mo:core/Text";

import Log "Log";
import T "Types";
import Uploads "Uploads";

module {

  public type WasmRec = {
    namespace : Text;
    wasm_id : Text;
    hash : Blob;
    total_chunks : Nat;
    chunks : Map.Map<Nat, Blob>;
    var size : Nat;
    var complete : Bool;
    uploaded_by : Principal;
    created_at : Int;
  };

  public type UploadStore = {
    wasms : Map.Map<Text, WasmRec>;
    byWasm : Map.Map<Text, List.List<Text>>;
    incomplete : Map.Map<Principal, List.List<Text>>;
    perNamespace : Map.Map<Text, Nat>;
  };

  public type LogStore = {
    blocks : List.List<T.Value>;
    sizes : List.List<Nat>;
    var lastHash : ?Blob;
  };

  public func emptyUploads() : UploadStore {
    { wasms = Map.empty(); byWasm = Map.empty(); incomplete = Map.empty(); perNamespace = Map.empty() };
  };

  public func emptyLog() : LogStore { { blocks = List.empty(); sizes = List.empty(); var lastHash = null } };

  // Complete uploads and their indexes into `into` (empty until the first upgrade from that release).
  public func moveUploads(old : UploadStore, into : Uploads.Store) {
    for ((k, r) in Map.entries(old.wasms)) {
      if (r.complete) {
        Map.add(into.wasms, Text.compare, k, {
          namespace = r.namespace;
          wasm_id = r.wasm_id;
          hash = r.hash;
          total_chunks = r.total_chunks;
          chunks = r.chunks;
          var digest = null;
          var absorbed = r.total_chunks;
          var size = r.size;
          var complete = true;
          uploaded_by = r.uploaded_by;
          created_at = r.created_at;
        } : Uploads.WasmRec);
      };
    };
    for ((wasm, namespaces) in Map.entries(old.byWasm)) Map.add(into.byWasm, Text.compare, wasm, namespaces);
    for ((ns, n) in Map.entries(old.perNamespace)) Map.add(into.perNamespace, Text.compare, ns, n);
    Map.clear(old.wasms);
    Map.clear(old.byWasm);
    Map.clear(old.incomplete);
    Map.clear(old.perNamespace);
  };

  // The log, block by block in order, into `into` (empty until the first upgrade from that release).
  public func moveLog(old : LogStore, into : Log.Store) {
    if (List.size(old.blocks) == 0) return;
    Log.adopt(into, List.values(old.blocks), old.lastHash);
    List.clear(old.blocks);
    List.clear(old.sizes);
    old.lastHash := null;
  };
};
