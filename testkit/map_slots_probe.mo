// Exercises canister_src/lib/MapSlots.mo against the toolchain's mo:core: an emptied map given one slot reads
// as empty to every read, and an insert into it traps without changing it.
import Iter "mo:core/Iter";
import Map "mo:core/Map";
import Nat "mo:core/Nat";
import MapSlots "lib/MapSlots";

persistent actor {
  // Kept across messages: what a complete upload's chunk map is.
  let kept : Map.Map<Nat, Blob> = { var root = MapSlots.oneSlot<Nat, Blob>(); var size = 0 };

  // A map of `n` entries, emptied by `take`, before and after it gets one slot (then `take` and `remove` on it;
  // every read below comes after them).
  public func emptied(n : Nat) : async {
    spareBefore : Bool;
    spareAfter : Bool;
    isEmpty : Bool;
    size : Nat;
    got : ?Blob;
    taken : ?Blob;
    entries : Nat;
    keys : Nat;
    from : Nat;
  } {
    let m = Map.empty<Nat, Blob>();
    for (i in Nat.range(0, n)) Map.add(m, Nat.compare, i, "chunk" : Blob);
    for (i in Nat.range(0, n)) ignore Map.take(m, Nat.compare, i);
    let spareBefore = MapSlots.hasSpareSlots(m);
    m.root := MapSlots.oneSlot();
    let taken = Map.take(m, Nat.compare, 0);
    Map.remove(m, Nat.compare, 1);
    {
      spareBefore;
      spareAfter = MapSlots.hasSpareSlots(m);
      isEmpty = Map.isEmpty(m);
      size = Map.size(m);
      got = Map.get(m, Nat.compare, 0);
      taken;
      entries = Iter.size(Map.entries(m));
      keys = Iter.size(Map.keys(m));
      from = Iter.size(Map.entriesFrom(m, Nat.compare, 0));
    };
  };

  public func insert(k : Nat) : async () { Map.add(kept, Nat.compare, k, "chunk" : Blob) };

  public query func keptView() : async { size : Nat; got : ?Blob; entries : Nat; spare : Bool } {
    { size = Map.size(kept); got = Map.get(kept, Nat.compare, 0); entries = Iter.size(Map.entries(kept)); spare = MapSlots.hasSpareSlots(kept) };
  };
};
