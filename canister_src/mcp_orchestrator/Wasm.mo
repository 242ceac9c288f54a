// What the orchestrator reads in a module before installing it: whether it declares enhanced orthogonal
// persistence (then an upgrade must keep its heap, as the management canister requires). The module is a list
// of chunks; only section headers and custom section names are read, so the cost follows the number of sections.
import Array "mo:core/Array";
import Blob "mo:core/Blob";
import Nat8 "mo:core/Nat8";
import Text "mo:core/Text";

module {

  let EOP_SECTION = "enhanced-orthogonal-persistence"; // named `icp:private ...` or `icp:public ...`
  let MAX_NAME = 64;

  // Reads bytes in order across consecutive chunks.
  class Reader(chunks : [Blob]) {
    var chunk = 0;
    var offset = 0;
    var position = 0;

    public func pos() : Nat { position };

    public func next() : ?Nat8 {
      while (chunk < chunks.size() and offset >= chunks[chunk].size()) { chunk += 1; offset := 0 };
      if (chunk >= chunks.size()) return null;
      let b = chunks[chunk][offset];
      offset += 1;
      position += 1;
      ?b;
    };

    public func skip(n : Nat) : Bool {
      var left = n;
      while (left > 0) {
        if (chunk >= chunks.size()) return false;
        let here : Nat = chunks[chunk].size() - offset;
        if (left < here) { offset += left; position += left; return true };
        left -= here;
        position += here;
        chunk += 1;
        offset := 0;
      };
      true;
    };
  };

  func leb(r : Reader) : ?Nat {
    var value = 0;
    var scale = 1;
    var read = 0;
    loop {
      let b = switch (r.next()) { case (?b) Nat8.toNat(b); case null return null };
      value += (b % 128) * scale;
      if (b < 128) return ?value;
      scale *= 128;
      read += 1;
      if (read >= 5) return null; // a u32 takes at most 5 bytes
    };
  };

  // True if the module has a custom section `icp:private|public enhanced-orthogonal-persistence`. A module that
  // is not plain wasm (e.g. gzipped) reports false: its upgrade then asks to replace the heap, which the
  // management canister refuses for a canister whose running module keeps it (the upgrade fails, nothing lost).
  public func declaresEop(chunks : [Blob]) : Bool {
    let r = Reader(chunks);
    for (expected in [0x00 : Nat8, 0x61, 0x73, 0x6d].vals()) {
      if (r.next() != ?expected) return false;
    };
    if (not r.skip(4)) return false; // the version
    loop {
      let id = switch (r.next()) { case (?b) b; case null return false };
      let size = switch (leb(r)) { case (?n) n; case null return false };
      let start = r.pos();
      if (id == 0) {
        let length = switch (leb(r)) { case (?n) n; case null return false };
        if (length <= MAX_NAME) {
          var complete = true;
          let name = Array.tabulate<Nat8>(length, func _ { switch (r.next()) { case (?b) b; case null { complete := false; 0 } } });
          if (not complete) return false;
          switch (Text.decodeUtf8(Blob.fromArray(name))) {
            case (?n) if (Text.startsWith(n, #text "icp:") and Text.endsWith(n, #text EOP_SECTION)) return true;
            case null {};
          };
        };
      };
      let used : Nat = r.pos() - start;
      if (used > size or not r.skip(size - used)) return false;
    };
  };
};
