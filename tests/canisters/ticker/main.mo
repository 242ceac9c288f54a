// Test canister: heartbeat, global timer (mo:core Timer), inspect_message.
import Timer "mo:core/Timer";

persistent actor Ticker {
  var beats : Nat = 0;
  var fired : Nat = 0;

  system func heartbeat() : async () { beats += 1 };

  public func schedule(seconds : Nat) : async () {
    ignore Timer.setTimer<system>(#seconds seconds, func() : async () { fired += 1 });
  };

  public query func counts() : async (Nat, Nat) { (beats, fired) };

  public func allowed() : async Text { "ok" };

  public func forbidden() : async Text { "inspect_message should have refused this" };

  system func inspect({ msg : { #allowed : Any; #forbidden : Any; #schedule : Any; #counts : Any } }) : Bool {
    switch msg {
      case (#forbidden _) false;
      case _ true;
    };
  };
};
