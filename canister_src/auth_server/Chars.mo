// Characters collected into one flat Text. Appending to a Text a character at a time (`t #= c`, and
// mo:core's Text.fromIter) builds a rope of one node per character: fine for a reply, wasteful for a string the
// canister keeps (a redirect URI of 1,000 characters would hold about 40 KB). Encoding to UTF-8 and decoding
// once gives a single object.
import Blob "mo:core/Blob";
import Char "mo:core/Char";
import List "mo:core/List";
import Nat32 "mo:core/Nat32";
import Nat8 "mo:core/Nat8";
import Runtime "mo:core/Runtime";
import Text "mo:core/Text";

module {

  func byte(out : List.List<Nat8>, n : Nat32) { List.add(out, Nat8.fromNat(Nat32.toNat(n & 0xFF))) };

  public func toText(chars : List.List<Char>) : Text {
    let out = List.empty<Nat8>();
    for (c in List.values(chars)) {
      let n = Char.toNat32(c);
      if (n < 0x80) byte(out, n) else if (n < 0x800) {
        byte(out, 0xC0 | (n >> 6));
        byte(out, 0x80 | (n & 0x3F));
      } else if (n < 0x10000) {
        byte(out, 0xE0 | (n >> 12));
        byte(out, 0x80 | ((n >> 6) & 0x3F));
        byte(out, 0x80 | (n & 0x3F));
      } else {
        byte(out, 0xF0 | (n >> 18));
        byte(out, 0x80 | ((n >> 12) & 0x3F));
        byte(out, 0x80 | ((n >> 6) & 0x3F));
        byte(out, 0x80 | (n & 0x3F));
      };
    };
    switch (Text.decodeUtf8(Blob.fromArray(List.toArray(out)))) {
      case (?t) t;
      case null Runtime.trap("unreachable: characters always encode as UTF-8");
    };
  };
};
