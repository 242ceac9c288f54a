// A module of the app itself: how a greeting reads.
import Nat "mo:core/Nat";

module {
  public func make(name : Text, count : Nat) : Text {
    "Hello, " # name # "! (greeting #" # Nat.toText(count) # ")";
  };
};
