// Test canister: keeps the counter's field names with other types, so an upgrade onto it must fail.
persistent actor class Incompatible(initial : Text) {
  var count : Text = initial;
  public query func get() : async Text { count };
};
