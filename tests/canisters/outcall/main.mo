// Test canister: HTTPS outcalls through the management canister's `http_request`. The test encodes the whole
// argument (so it can name any transform, or another canister's), and this canister attaches the cycles.
import Error "mo:core/Error";
import Nat "mo:core/Nat";
import Nat32 "mo:core/Nat32";
import Principal "mo:core/Principal";
import Text "mo:core/Text";
import Blob "mo:core/Blob";
import Array "mo:core/Array";
import Runtime "mo:core/Runtime";

persistent actor Outcall {
  public type Header = { name : Text; value : Text };
  public type Result = { status : Nat; headers : [Header]; body : Blob };
  public type TransformArgs = { response : Result; context : Blob };

  func codeName(e : Error) : Text {
    switch (Error.code(e)) {
      case (#system_fatal) "system_fatal";
      case (#system_transient) "system_transient";
      case (#destination_invalid) "destination_invalid";
      case (#canister_reject) "canister_reject";
      case (#canister_error) "canister_error";
      case (#system_unknown) "system_unknown";
      case (#future n) "future " # Nat.toText(Nat32.toNat(n));
      case (#call_error { err_code }) "call_error " # Nat.toText(Nat32.toNat(err_code));
    };
  };

  public type Args = {
    url : Text;
    max_response_bytes : ?Nat64;
    method : { #get; #head; #post };
    headers : [Header];
    body : ?Blob;
    transform : ?{ function : shared query TransformArgs -> async Result; context : Blob };
    is_replicated : ?Bool;
  };
  transient let ic = actor "aaaaa-aa" : actor { http_request : Args -> async Result };

  // `http_request` with `arg` and `cycles` attached: the result or the reject (a direct typed call: through
  // a raw-call helper, every reject would arrive as #canister_reject).
  public func fetch(arg : Args, cycles : Nat) : async { #ok : Result; #err : (Text, Text) } {
    try { #ok(await (with cycles) ic.http_request(arg)) } catch (e) { #err(codeName(e), Error.message(e)) };
  };

  // The context says what to do: "caller" answers who called, "echo" answers the context's rest, "big" answers
  // more than the IC allows, "trap" traps; anything else keeps status and body and drops the headers.
  public shared query ({ caller }) func transform(args : TransformArgs) : async Result {
    let context = switch (Text.decodeUtf8(args.context)) { case (?t) t; case null "" };
    if (context == "caller") return { status = 200; headers = []; body = Text.encodeUtf8(Principal.toText(caller)) };
    if (Text.startsWith(context, #text "echo:")) return { status = 200; headers = []; body = Text.encodeUtf8(context) };
    if (context == "big") return { status = 200; headers = []; body = Blob.fromArray(Array.repeat<Nat8>(120, 2_000_001)) };
    if (context == "trap") Runtime.trap("transform trapped on purpose");
    { status = args.response.status; headers = []; body = args.response.body };
  };
};
