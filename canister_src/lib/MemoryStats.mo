// The Motoko runtime's memory figures, for operators and benchmarks: what the heap holds now (garbage not yet
// collected included), the most it held live after a collection, and what was allocated and reclaimed in all.
import Prim "mo:⛔";

module {
  public type Stats = {
    wasm_memory_bytes : Nat; // the wasm memory's size: the high-water mark (it never shrinks)
    stable_memory_bytes : Nat; // the stable memory's size (regions grow it in 8 MiB steps)
    heap_bytes : Nat; // the heap now, garbage not yet collected included
    max_live_bytes : Nat; // the most the heap held live, as measured by the collector
    allocated_bytes : Nat; // allocated since the canister's heap began
    reclaimed_bytes : Nat; // reclaimed by the collector since then
  };

  public func now() : Stats {
    {
      wasm_memory_bytes = Prim.rts_memory_size();
      stable_memory_bytes = Prim.rts_stable_memory_size() * 65_536;
      heap_bytes = Prim.rts_heap_size();
      max_live_bytes = Prim.rts_max_live_size();
      allocated_bytes = Prim.rts_total_allocation();
      reclaimed_bytes = Prim.rts_reclaimed();
    };
  };
};
