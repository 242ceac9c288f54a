// The registry's ICRC-3 log: the shared block log (lib/Icrc3.mo), and ICRC-16 metadata as ICRC-3 values.
import Array "mo:core/Array";
import Int16 "mo:core/Int16";
import Int32 "mo:core/Int32";
import Int64 "mo:core/Int64";
import Int8 "mo:core/Int8";
import Nat16 "mo:core/Nat16";
import Nat32 "mo:core/Nat32";
import Nat64 "mo:core/Nat64";
import Nat8 "mo:core/Nat8";
import Principal "mo:core/Principal";

import Icrc3 "../lib/Icrc3";
import T "Types";

module {

  public type Store = Icrc3.Store;
  public type Hasher = Icrc3.Hasher;
  public let hasher = Icrc3.hasher;
  public type BlockRange = Icrc3.BlockRange;
  public type Blocks = Icrc3.Blocks;
  public let empty = Icrc3.empty;
  public let length = Icrc3.length;
  public let adopt = Icrc3.adopt;
  public let append = Icrc3.append;
  public let get = Icrc3.get;
  public let hash = Icrc3.hash;
  public let tipCertificate = Icrc3.tipCertificate;
  public let tipTree = Icrc3.tipTree;
  public let tipRoot = Icrc3.tipRoot;

  // ---------------------------------------------------------------- ICRC-16 metadata as ICRC-3 values

  public func fromIcrc16(v : T.ICRC16) : T.Value {
    switch (v) {
      case (#Text(t)) #Text(t);
      case (#Nat(n)) #Nat(n);
      case (#Int(i)) #Int(i);
      case (#Blob(b)) #Blob(b);
      case (#Principal(p)) #Blob(Principal.toBlob(p));
      case (#Bool(b)) #Nat(if b 1 else 0);
      case (#Nat8(n)) #Nat(Nat8.toNat(n));
      case (#Nat16(n)) #Nat(Nat16.toNat(n));
      case (#Nat32(n)) #Nat(Nat32.toNat(n));
      case (#Nat64(n)) #Nat(Nat64.toNat(n));
      case (#Int8(n)) #Int(Int8.toInt(n));
      case (#Int16(n)) #Int(Int16.toInt(n));
      case (#Int32(n)) #Int(Int32.toInt(n));
      case (#Int64(n)) #Int(Int64.toInt(n));
      case (#Array(a)) #Array(Array.map<T.ICRC16, T.Value>(a, fromIcrc16));
      case (#Map(m)) #Map(fromMap(m));
      case _ #Text("(unsupported ICRC-16 value)");
    };
  };

  // A block (or any ICRC-3 value) as ICRC-16, for interfaces typed that way (ICRC-120's event details).
  public func toIcrc16(v : T.Value) : T.ICRC16 {
    switch v {
      case (#Text(t)) #Text(t);
      case (#Nat(n)) #Nat(n);
      case (#Int(i)) #Int(i);
      case (#Blob(b)) #Blob(b);
      case (#Array(a)) #Array(Array.map<T.Value, T.ICRC16>(a, toIcrc16));
      case (#Map(m)) #Map(Array.map<(Text, T.Value), (Text, T.ICRC16)>(m, func((k, x)) = (k, toIcrc16(x))));
    };
  };

  public func fromMap(m : T.ICRC16Map) : [(Text, T.Value)] {
    Array.map<(Text, T.ICRC16), (Text, T.Value)>(m, func((k, v)) = (k, fromIcrc16(v)));
  };
};
