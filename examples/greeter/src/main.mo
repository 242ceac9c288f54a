// The sample app of the quick start and `make demo`: a main actor, a module of its own (src/lib/), a
// package vendored in the repository (vendor/textutil) and one from a git repository pinned to a commit
// (strutil, see mops.toml).
import Greeting "lib/Greeting";
import Strutil "mo:strutil";
import Textutil "mo:textutil";

persistent actor Greeter {
  var greetings : Nat = 0;

  public func greet(name : Text) : async Text {
    greetings += 1;
    Greeting.make(Textutil.trimmed(name), greetings);
  };

  public query func banner(text : Text) : async Text { Strutil.banner(text, '*') };

  public query func count() : async Nat { greetings };
};
