// SHA-256 (FIPS 180-4) for canisters: the registry recomputes every hash it is given.
import Array "mo:core/Array";
import Blob "mo:core/Blob";
import Nat32 "mo:core/Nat32";
import Nat64 "mo:core/Nat64";
import Nat8 "mo:core/Nat8";
import VarArray "mo:core/VarArray";
import Char "mo:core/Char";

module {
  let K : [Nat32] = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
  ];

  public class Digest() {
    let h = VarArray.fromArray<Nat32>([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]);
    let block = VarArray.repeat<Nat8>(0, 64);
    let w = VarArray.repeat<Nat32>(0, 64);
    var filled = 0;
    var total : Nat64 = 0;

    func compress() {
      var t = 0;
      while (t < 16) {
        let i = 4 * t;
        w[t] := (Nat32.fromNat(Nat8.toNat(block[i])) << 24) | (Nat32.fromNat(Nat8.toNat(block[i + 1])) << 16)
          | (Nat32.fromNat(Nat8.toNat(block[i + 2])) << 8) | Nat32.fromNat(Nat8.toNat(block[i + 3]));
        t += 1;
      };
      while (t < 64) {
        let s0 = (w[t - 15] <>> 7) ^ (w[t - 15] <>> 18) ^ (w[t - 15] >> 3);
        let s1 = (w[t - 2] <>> 17) ^ (w[t - 2] <>> 19) ^ (w[t - 2] >> 10);
        w[t] := w[t - 16] +% s0 +% w[t - 7] +% s1;
        t += 1;
      };
      var a = h[0]; var b = h[1]; var c = h[2]; var d = h[3];
      var e = h[4]; var f = h[5]; var g = h[6]; var hh = h[7];
      t := 0;
      while (t < 64) {
        let S1 = (e <>> 6) ^ (e <>> 11) ^ (e <>> 25);
        let ch = (e & f) ^ ((^ e) & g);
        let t1 = hh +% S1 +% ch +% K[t] +% w[t];
        let S0 = (a <>> 2) ^ (a <>> 13) ^ (a <>> 22);
        let maj = (a & b) ^ (a & c) ^ (b & c);
        let t2 = S0 +% maj;
        hh := g; g := f; f := e; e := d +% t1;
        d := c; c := b; b := a; a := t1 +% t2;
        t += 1;
      };
      h[0] := h[0] +% a; h[1] := h[1] +% b; h[2] := h[2] +% c; h[3] := h[3] +% d;
      h[4] := h[4] +% e; h[5] := h[5] +% f; h[6] := h[6] +% g; h[7] := h[7] +% hh;
    };

    public func writeByte(x : Nat8) {
      block[filled] := x;
      filled += 1;
      total +%= 1;
      if (filled == 64) { compress(); filled := 0 };
    };

    public func writeBlob(data : Blob) { for (x in data.vals()) { writeByte(x) } };

    public func sum() : Blob {
      let bits = total *% 8;
      writeByte(0x80);
      while (filled != 56) { writeByte(0) };
      var shift : Nat64 = 56;
      label lengthBytes loop {
        block[filled] := Nat8.fromNat(Nat64.toNat((bits >> shift) & 0xff));
        filled += 1;
        if (shift == 0) break lengthBytes;
        shift -= 8;
      };
      compress();
      Blob.fromArray(Array.flatten<Nat8>(Array.tabulate<[Nat8]>(8, func i = [
        Nat8.fromNat(Nat32.toNat(h[i] >> 24)), Nat8.fromNat(Nat32.toNat((h[i] >> 16) & 0xff)),
        Nat8.fromNat(Nat32.toNat((h[i] >> 8) & 0xff)), Nat8.fromNat(Nat32.toNat(h[i] & 0xff)),
      ])));
    };
  };

  public func hash(data : Blob) : Blob {
    let d = Digest();
    d.writeBlob(data);
    d.sum();
  };

  let HEX : [Char] = ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9', 'a', 'b', 'c', 'd', 'e', 'f'];

  public func toHex(data : Blob) : Text {
    var out = "";
    for (x in data.vals()) {
      let n = Nat8.toNat(x);
      out #= Char.toText(HEX[n / 16]) # Char.toText(HEX[n % 16]);
    };
    out;
  };
};
