// Exercises canister_src/lib/Sha256.mo and the ICRC-3 value hashing of canister_src/lib/Icrc3.mo from outside
// the registry: one-shot, split across writes, and values hashed with a kept hasher (what that allocates).
import Prim "mo:⛔";
import Icrc3 "lib/Icrc3";
import Sha256 "lib/Sha256";

persistent actor {
  public query func hash(data : Blob) : async Blob { Sha256.hash(data) };

  // The digest of the parts written one after another into one state, then reset and done again (so a reused
  // state must give the same answer).
  public query func hashParts(parts : [Blob]) : async Blob {
    let st = Sha256.init();
    for (p in parts.vals()) Sha256.write(st, p);
    ignore Sha256.finish(st);
    Sha256.reset(st);
    for (p in parts.vals()) Sha256.write(st, p);
    Sha256.finish(st);
  };

  transient let hasher = Icrc3.hasher();

  // The value's ICRC-3 hash, twice with the kept hasher (the first run may grow it), and the bytes the runtime
  // allocated for the second run alone.
  public query func valueHash(v : Icrc3.Value) : async { hash : Blob; again : Blob; allocated : Nat } {
    let first = Icrc3.hash(hasher, v);
    let before = Prim.rts_total_allocation();
    let again = Icrc3.hash(hasher, v);
    let allocated = Prim.rts_total_allocation() - before;
    { hash = first; again; allocated };
  };
};
