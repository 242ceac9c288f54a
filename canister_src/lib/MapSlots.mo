// Emptied `mo:core` maps that keep one slot instead of 31. `Map.empty()` and `Map.clear` leave a leaf of 31
// slots (248 bytes of them with 64-bit pointers); a record that keeps an emptied map for good (a complete
// upload's chunk map) keeps those too. A leaf of one empty slot is a valid empty map for every read: lookups,
// iteration and size find nothing (a leaf of no slots would not do: mo:core's search asserts a non-empty node).
// An insert into it traps before changing anything (mo:core shifts the slot over, out of bounds, before it
// writes), and the trap rolls its message back: use it only for maps nothing writes to again.
// `tests/test_map_slots.py` checks these properties against the toolchain's mo:core.
import Map "mo:core/Map";
import Types "mo:core/Types";

module {

  // The root to give an emptied map (`m.root := MapSlots.oneSlot()`).
  public func oneSlot<K, V>() : Types.Map.Node<K, V> { #leaf({ data = { kvs = [var null] : [var ?(K, V)]; var count = 0 } }) };

  // Whether an empty map still holds more than one slot.
  public func hasSpareSlots<K, V>(m : Map.Map<K, V>) : Bool {
    switch (m.root) { case (#leaf(l)) l.data.kvs.size() > 1; case (#internal(_)) true };
  };
};
