// Test canister for the HTTP gateway: serves routes the test registers, with the certification tree the
// TEST computes in Python (the canister only stores it, certifies its root and hands out the certificate).
import Array "mo:core/Array";
import Blob "mo:core/Blob";
import Nat8 "mo:core/Nat8";
import CertifiedData "mo:core/CertifiedData";

persistent actor Web {
  type HeaderField = (Text, Text);
  type HttpRequest = { method : Text; url : Text; headers : [HeaderField]; body : Blob; certificate_version : ?Nat16 };
  type HttpUpdateRequest = { method : Text; url : Text; headers : [HeaderField]; body : Blob };
  type Token = { url : Text; index : Nat };
  type CallbackResponse = { body : Blob; token : ?Token };
  type StreamingStrategy = { #Callback : { callback : shared query Token -> async ?CallbackResponse; token : Token } };
  type HttpResponse = {
    status_code : Nat16; headers : [HeaderField]; body : Blob; upgrade : ?Bool; streaming_strategy : ?StreamingStrategy
  };
  // certRest: appended to "certificate=:<b64>:, " in an IC-Certificate header (none: no such header);
  // fixedCert: a certificate to send instead of the current one (stale or forged, for tests).
  type Route = {
    status : Nat16; headers : [HeaderField]; body : Blob; certRest : ?Text; fixedCert : ?Blob;
    upgrade : Bool; chunks : [Blob]
  };

  var routes : [(Text, Route)] = [];
  var counter : Nat = 0;
  transient let alphabet : [Text] = ["A", "B", "C", "D", "E", "F", "G", "H", "I", "J", "K", "L", "M", "N", "O", "P", "Q", "R", "S", "T", "U", "V", "W", "X", "Y", "Z", "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n", "o", "p", "q", "r", "s", "t", "u", "v", "w", "x", "y", "z", "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "+", "/"];

  func b64(b : Blob) : Text {
    let bytes = Blob.toArray(b);
    let n = bytes.size();
    var out = "";
    var i = 0;
    while (i < n) {
      let b0 = Nat8.toNat(bytes[i]);
      let b1 = if (i + 1 < n) Nat8.toNat(bytes[i + 1]) else 0;
      let b2 = if (i + 2 < n) Nat8.toNat(bytes[i + 2]) else 0;
      let x = b0 * 65536 + b1 * 256 + b2;
      out #= alphabet[x / 262144] # alphabet[(x / 4096) % 64];
      out #= if (i + 1 < n) alphabet[(x / 64) % 64] else "=";
      out #= if (i + 2 < n) alphabet[x % 64] else "=";
      i += 3;
    };
    out;
  };

  func find(url : Text) : ?Route {
    for ((u, r) in routes.vals()) { if (u == url) return ?r };
    null;
  };

  public func set_route(url : Text, route : Route) : async () {
    var kept : [(Text, Route)] = [(url, route)];
    for ((u, r) in routes.vals()) { if (u != url) kept := [(u, r)].concat(kept) };
    routes := kept;
  };

  public func set_certified(root : Blob) : async () { CertifiedData.set(root) };

  public query func certificate() : async ?Blob { CertifiedData.getCertificate() };

  public query func count() : async Nat { counter };

  func respond(r : Route, url : Text) : HttpResponse {
    var headers = r.headers;
    switch (r.certRest) {
      case (?rest) {
        let cert : Blob = switch (r.fixedCert) {
          case (?c) c;
          case null { switch (CertifiedData.getCertificate()) { case (?c) c; case null { "" : Blob } } };
        };
        headers := headers.concat([("IC-Certificate", "certificate=:" # b64(cert) # ":, " # rest)]);
      };
      case null {};
    };
    let streaming = if (r.chunks.size() == 0) null else ?#Callback({ callback = http_stream; token = { url; index = 0 } });
    { status_code = r.status; headers; body = r.body; upgrade = null; streaming_strategy = streaming };
  };

  public query func http_request(req : HttpRequest) : async HttpResponse {
    switch (find(req.url)) {
      case (?r) {
        if (r.upgrade) {
          return { status_code = 200; headers = []; body = ""; upgrade = ?true; streaming_strategy = null };
        };
        respond(r, req.url);
      };
      case null { { status_code = 404; headers = []; body = "no route"; upgrade = null; streaming_strategy = null } };
    };
  };

  public func http_request_update(req : HttpUpdateRequest) : async HttpResponse {
    counter += 1;
    let body = Blob.fromArray([Nat8.fromNat(48 + counter % 10)]);
    { status_code = 200; headers = [("x-method", req.method)]; body; upgrade = ?false; streaming_strategy = null };
  };

  public query func http_stream(token : Token) : async ?CallbackResponse {
    switch (find(token.url)) {
      case (?r) {
        if (token.index >= r.chunks.size()) return null;
        let next = if (token.index + 1 < r.chunks.size()) ?{ url = token.url; index = token.index + 1 } else null;
        ?{ body = r.chunks[token.index]; token = next };
      };
      case null null;
    };
  };
};
