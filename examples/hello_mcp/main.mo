// A sample app, what a developer submits for verification: the tests' app. It imports no package, so it
// compiles in about half the time (the demo's app, examples/greeter, has packages).

persistent actor HelloMcp {
  var greetings : Nat = 0;

  public func greet(name : Text) : async Text {
    greetings += 1;
    "Hello, " # name # "! (greeting #" # debug_show greetings # ")";
  };

  public query func count() : async Nat { greetings };
};
