// Test canister: state, traps and rollback, stable memory, heap growth, instruction limits, upgrades.
import Debug "mo:core/Debug";
import Runtime "mo:core/Runtime";
import Nat "mo:core/Nat";
import Nat64 "mo:core/Nat64";
import Region "mo:core/Region";
import Array "mo:core/Array";
import Blob "mo:core/Blob";
import Time "mo:core/Time";
import CertifiedData "mo:core/CertifiedData";

persistent actor class Counter(initial : Nat) {
  var count : Nat = initial;
  var upgrades : Nat = 0;
  var failPreUpgrade : Bool = false;
  var failHealth : Bool = false;
  var region : ?Region.Region = null;
  var ballast : [Blob] = [];

  func theRegion() : Region.Region {
    switch region {
      case (?r) r;
      case null { let r = Region.new(); region := ?r; r };
    };
  };

  public func inc() : async Nat {
    count += 1;
    Debug.print("count=" # Nat.toText(count));
    count;
  };

  public query func get() : async Nat { count };

  public func incThenTrap() : async () {
    count += 1;
    Runtime.trap("deliberate trap after increment");
  };

  public query func queryMutates() : async Nat {
    count += 1000;
    count;
  };

  public shared ({ caller }) func whoami() : async Principal { caller };

  public query ({ caller }) func whoamiQuery() : async Principal { caller };

  public func stableWrite(offset : Nat64, data : Blob) : async () {
    let r = theRegion();
    let needed = (offset + Nat64.fromNat(data.size())) / 65536 + 1;
    let have = Region.size(r);
    if (needed > have) { ignore Region.grow(r, needed - have) };
    Region.storeBlob(r, offset, data);
  };

  public func stableWriteThenTrap(offset : Nat64, data : Blob) : async () {
    let r = theRegion();
    ignore Region.grow(r, 4);
    Region.storeBlob(r, offset, data);
    Runtime.trap("deliberate trap after stable write");
  };

  public query func stableRead(offset : Nat64, size : Nat) : async Blob {
    switch region {
      case null Blob.fromArray([]);
      case (?r) Region.loadBlob(r, offset, size);
    };
  };

  public query func stablePages() : async Nat64 {
    switch region { case null 0; case (?r) Region.size(r) };
  };

  // Keep `mib` more MiB of data on the heap (for benchmarks and memory-growth tests).
  public func grow(mib : Nat) : async Nat {
    ballast := Array.concat(ballast, Array.tabulate<Blob>(mib * 16, func _ = Blob.fromArray(Array.repeat<Nat8>(7, 65536))));
    ballast.size();
  };

  public func growThenTrap(mib : Nat) : async () {
    count += 1;
    ballast := Array.concat(ballast, Array.tabulate<Blob>(mib * 16, func _ = Blob.fromArray(Array.repeat<Nat8>(9, 65536))));
    Runtime.trap("deliberate trap after growing the heap");
  };

  public query func ballastSize() : async Nat { ballast.size() };

  public func spin() : async () {
    var i = 0;
    loop { i += 1 };
  };

  public query func now() : async Int { Time.now() };

  public func certify(data : Blob) : async () { CertifiedData.set(data) };

  public query func certificate() : async ?Blob { CertifiedData.getCertificate() };

  public func setFailPreUpgrade(fail : Bool) : async () { failPreUpgrade := fail };

  public query func upgradeCount() : async Nat { upgrades };

  public func setFailHealth(fail : Bool) : async () { failHealth := fail };

  public query func health() : async { #ok; #err : Text } { if failHealth #err("told to fail") else #ok };

  system func preupgrade() {
    if (failPreUpgrade) { Runtime.trap("pre-upgrade refused") };
  };

  system func postupgrade() {
    upgrades += 1;
  };
};
