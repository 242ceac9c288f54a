// Blobs appended to a stable-memory region and read back by reference: bulk bytes (wasm modules) kept out of
// the collected heap, so the garbage collector never scans or copies them and they cost their size, not the
// heap's high-water multiple. Append-only: what is stored stays (callers store only what they keep forever).
import Nat64 "mo:core/Nat64";
import Region "mo:core/Region";
import Runtime "mo:core/Runtime";

module {

  public type Store = { region : Region.Region; var end : Nat64 };

  let PAGE : Nat64 = 65_536;
  let FAILED : Nat64 = 0xFFFF_FFFF_FFFF_FFFF; // what Region.grow answers when stable memory cannot grow

  public func empty() : Store { { region = Region.new(); var end = 0 } };

  // Append `b` and answer its offset; traps (undoing the message) if stable memory cannot grow.
  public func put(s : Store, b : Blob) : Nat64 {
    let size = Nat64.fromNat(b.size());
    let end = s.end + size;
    let have = Region.size(s.region) * PAGE;
    if (end > have and Region.grow(s.region, (end - have + PAGE - 1) / PAGE) == FAILED) {
      Runtime.trap("stable memory cannot grow");
    };
    let offset = s.end;
    Region.storeBlob(s.region, offset, b);
    s.end := end;
    offset;
  };

  public func get(s : Store, offset : Nat64, size : Nat) : Blob { Region.loadBlob(s.region, offset, size) };

  // The offset the next blob gets (blobs put one after another are contiguous).
  public func next(s : Store) : Nat64 { s.end };
};
