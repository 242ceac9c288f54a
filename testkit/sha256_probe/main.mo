// Exercises canister_src/lib/Sha256.mo from outside the registry: one-shot, and split across writes.
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
};
