// A sample app for the lifecycle demo: what a developer submits for verification.
import Text "mo:core/Text";

persistent actor HelloMcp {
  var greetings : Nat = 0;

  public func greet(name : Text) : async Text {
    greetings += 1;
    "Hello, " # name # "! (greeting #" # debug_show greetings # ")";
  };

  public query func count() : async Nat { greetings };
};
