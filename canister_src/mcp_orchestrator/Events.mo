// The ICRC-120 event index: which ICRC-3 blocks are events on which canister, of which type. Each event is
// listed four times (all, by canister, by type, by canister and type), oldest first, so that a page of
// `icrc120_get_events` costs a binary search and a merge of at most one list per requested type, whatever
// the log's size and whatever the other canisters did. This module is the only writer of the index.
import Array "mo:core/Array";
import List "mo:core/List";
import Map "mo:core/Map";
import Nat "mo:core/Nat";
import Order "mo:core/Order";
import Principal "mo:core/Principal";
import Text "mo:core/Text";

module {

  // ICRC-120's event types. `snapshot_requested` and `snapshot_revert_requested` are never emitted: both
  // operations finish within the call that asks for them (`snapshot_created`, `snapshot_reverted`).
  public type EventType = {
    #upgrade_initiated;
    #upgrade_finished;
    #snapshot_requested;
    #snapshot_created;
    #snapshot_cleaned;
    #snapshot_revert_requested;
    #snapshot_reverted;
    #canister_started;
    #canister_stopped;
    #configuration_changed;
  };

  public type Ref = { block : Nat; time : Int; canister : Principal; kind : EventType };

  public type Index = {
    all : List.List<Ref>;
    byCanister : Map.Map<Principal, List.List<Ref>>;
    byType : Map.Map<Text, List.List<Ref>>;
    byCanisterType : Map.Map<Text, List.List<Ref>>;
  };

  public type Filter = { canister : ?Principal; event_types : ?[EventType]; start_time : ?Nat; end_time : ?Nat };

  public func empty() : Index { { all = List.empty(); byCanister = Map.empty(); byType = Map.empty(); byCanisterType = Map.empty() } };

  public func name(kind : EventType) : Text {
    switch kind {
      case (#upgrade_initiated) "upgrade_initiated";
      case (#upgrade_finished) "upgrade_finished";
      case (#snapshot_requested) "snapshot_requested";
      case (#snapshot_created) "snapshot_created";
      case (#snapshot_cleaned) "snapshot_cleaned";
      case (#snapshot_revert_requested) "snapshot_revert_requested";
      case (#snapshot_reverted) "snapshot_reverted";
      case (#canister_started) "canister_started";
      case (#canister_stopped) "canister_stopped";
      case (#configuration_changed) "configuration_changed";
    };
  };

  func pairKey(canister : Principal, kind : EventType) : Text { Principal.toText(canister) # "/" # name(kind) };

  func push<K>(m : Map.Map<K, List.List<Ref>>, compare : (K, K) -> Order.Order, key : K, ref : Ref) {
    switch (Map.get(m, compare, key)) {
      case (?l) List.add(l, ref);
      case null Map.add(m, compare, key, List.singleton<Ref>(ref));
    };
  };

  // Blocks are appended in order, so every list stays sorted by block and by time.
  public func add(ix : Index, ref : Ref) {
    List.add(ix.all, ref);
    push(ix.byCanister, Principal.compare, ref.canister, ref);
    push(ix.byType, Text.compare, name(ref.kind), ref);
    push(ix.byCanisterType, Text.compare, pairKey(ref.canister, ref.kind), ref);
  };

  // The first position in `l` whose block is after `after` and whose time is at least `start`.
  func firstFrom(l : List.List<Ref>, after : ?Nat, start : Int) : Nat {
    var lo = 0;
    var hi = List.size(l);
    while (lo < hi) {
      let mid = (lo + hi) / 2;
      let r = List.at(l, mid);
      let before = (switch after { case (?a) r.block <= a; case null false }) or r.time < start;
      if (before) lo := mid + 1 else hi := mid;
    };
    lo;
  };

  // At most `take` events after block `after`, oldest first, matching `filter`.
  public func page(ix : Index, filter : ?Filter, after : ?Nat, take : Nat) : [Ref] {
    let f : Filter = switch filter { case (?f) f; case null ({ canister = null; event_types = null; start_time = null; end_time = null }) };
    let start : Int = switch (f.start_time) { case (?t) t; case null 0 };
    // At most the first 100 entries are read (there are 10 types); none named: every type.
    let kinds : [EventType] = switch (f.event_types) {
      case (?ks) Array.sliceToArray<EventType>(ks, 0, Nat.min(ks.size(), 100));
      case null [];
    };
    let lists : [List.List<Ref>] = if (kinds.size() == 0) {
      switch (f.canister) {
        case (?c) switch (Map.get(ix.byCanister, Principal.compare, c)) { case (?l) [l]; case null [] };
        case null [ix.all];
      };
    } else {
      // One list per distinct requested type (a type named twice is read once).
      let seen = Map.empty<Text, ()>();
      let out = List.empty<List.List<Ref>>();
      for (k in kinds.vals()) {
        let key = switch (f.canister) { case (?c) pairKey(c, k); case null name(k) };
        if (not Map.containsKey(seen, Text.compare, key)) {
          Map.add(seen, Text.compare, key, ());
          let found = switch (f.canister) { case (?_) Map.get(ix.byCanisterType, Text.compare, key); case null Map.get(ix.byType, Text.compare, key) };
          switch found { case (?l) List.add(out, l); case null {} };
        };
      };
      List.toArray(out);
    };
    let heads = Array.toVarArray<Nat>(Array.map<List.List<Ref>, Nat>(lists, func l = firstFrom(l, after, start)));
    let out = List.empty<Ref>();
    label merge while (List.size(out) < take) {
      var best : ?(Nat, Ref) = null;
      for (i in heads.keys()) {
        if (heads[i] < List.size(lists[i])) {
          let r = List.at(lists[i], heads[i]);
          switch best { case (?(_, b)) if (r.block < b.block) best := ?(i, r); case null best := ?(i, r) };
        };
      };
      switch best {
        case null break merge;
        case (?(i, r)) {
          switch (f.end_time) { case (?e) if (r.time > e) break merge; case null {} };
          List.add(out, r);
          heads[i] += 1;
        };
      };
    };
    List.toArray(out);
  };
};
