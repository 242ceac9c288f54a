// auth_server: an OAuth 2.1 authorization server on the IC (seeds 001/002, issue 17), reached through the HTTP
// gateway: RFC 8414 metadata at the issuer, JWKS, dynamic client registration (RFC 7591), the authorization
// code flow with PKCE (S256 only), resource indicators (RFC 8707: every token's audience), refresh-token
// rotation with reuse detection (a replayed refresh token or code revokes its whole grant), revocation
// (RFC 7009). Access tokens are JWTs (RFC 9068 `at+jwt`) signed with the canister's threshold Ed25519 key
// (`sign_with_schnorr`); the key can be rotated, the previous one stays published. The user approves a request
// with their IC identity: `approve` is a signed call, so the grant is bound to the caller's principal.
//
// Clients register (RFC 7591) or name themselves by the URL of their metadata document, fetched with an HTTPS
// outcall. Every HTTP request is upgraded to an update call (`http_request_update`): its reply is certified by
// consensus, except metadata and JWKS: certified responses (HTTP Gateway Protocol v2) served by the query.
import Array "mo:core/Array";
import Blob "mo:core/Blob";
import CertifiedData "mo:core/CertifiedData";
import Char "mo:core/Char";
import Debug "mo:core/Debug";
import Error "mo:core/Error";
import Int "mo:core/Int";
import Iter "mo:core/Iter";
import InternetComputer "mo:core/InternetComputer";
import List "mo:core/List";
import Map "mo:core/Map";
import Nat "mo:core/Nat";
import Nat64 "mo:core/Nat64";
import Principal "mo:core/Principal";
import Random "mo:core/Random";
import Text "mo:core/Text";
import Time "mo:core/Time";
import Timer "mo:core/Timer";

import CertifiedHttp "../lib/CertifiedHttp";
import Icrc3 "../lib/Icrc3";
import MemoryStats "../lib/MemoryStats";
import Sha256 "../lib/Sha256";
import ConsentScript "ConsentScript";
import Grants "Grants";
import Http "Http";
import Json "Json";
import Payments "Payments";

persistent actor class AuthServer(init : { governance : Principal; issuer : Text; key_name : Text }) = self {

  public type Authorization = {
    request_id : Text;
    client_id : Text;
    client_name : Text;
    redirect_uri : Text;
    scopes : [Text];
    resource : Text;
    expires_at_ns : Int;
  };
  public type Grant = {
    id : Nat;
    client_id : Text;
    client_name : Text;
    scopes : [Text];
    resource : Text;
    created_at_ns : Int;
    revoked : Bool;
    refreshed : Nat;
  };
  public type SigningKey = { generation : Nat; kid : Text; public_key : Blob };
  public type AuthError = { #NotAuthorized; #NotFound; #InvalidArgument : Text; #Unavailable : Text };

  public type Account = Payments.Account;
  public type ResourceServer = Payments.Server;
  public type ChargeArgs = { user : Principal; ledger : Principal; amount : Nat; request_id : Text };
  public type ChargeError = {
    #NotRegistered; // the caller is no registered resource server
    #LedgerNotAccepted;
    #NoPaymentGrant; // the user granted this resource no live `payments` scope
    #NoLimit; // the user set no spending limit for this resource and ledger
    #OverLimit : { max_per_charge : Nat; max_total : Nat; spent : Nat };
    #InFlight; // this request id is being charged now
    #Unknown : Text; // the ledger's answer was lost: retry with the same request id
    #Failed : Text; // the ledger refused (e.g. InsufficientAllowance): nothing was billed
    #Conflict : Text; // the request id was used for another charge
    #InvalidArgument : Text;
  };
  public type ChargeState = { #InFlight; #Unknown : Text; #Paid : { block : Nat }; #Failed : Text };
  public type ChargeView = {
    id : Nat;
    server : Principal;
    user : Principal;
    ledger : Principal;
    resource : Text;
    amount : Nat;
    request_id : Text;
    at_ns : Int;
    state : ChargeState;
  };
  public type SpendingLimit = { resource : Text; ledger : Principal; max_per_charge : Nat; max_total : Nat; spent : Nat };

  type TransferFromError = {
    #BadFee : { expected_fee : Nat };
    #BadBurn : { min_burn_amount : Nat };
    #InsufficientFunds : { balance : Nat };
    #InsufficientAllowance : { allowance : Nat };
    #TooOld;
    #CreatedInFuture : { ledger_time : Nat64 };
    #Duplicate : { duplicate_of : Nat };
    #TemporarilyUnavailable;
    #GenericError : { error_code : Nat; message : Text };
  };
  type TransferFromArgs = { spender_subaccount : ?Blob; from : Account; to : Account; amount : Nat; fee : ?Nat; memo : ?Blob; created_at_time : ?Nat64 };
  type TransferFromResult = { #Ok : Nat; #Err : TransferFromError };


  type SchnorrKeyId = { algorithm : { #bip340secp256k1; #ed25519 }; name : Text };
  public type HttpHeader = { name : Text; value : Text };
  public type HttpResult = { status : Nat; headers : [HttpHeader]; body : Blob };
  public type TransformArgs = { response : HttpResult; context : Blob };
  type HttpRequestArgs = {
    url : Text;
    max_response_bytes : ?Nat64;
    method : { #get; #head; #post };
    headers : [HttpHeader];
    body : ?Blob;
    transform : ?{ function : shared query TransformArgs -> async HttpResult; context : Blob };
    is_replicated : ?Bool;
  };
  type Management = actor {
    http_request : HttpRequestArgs -> async HttpResult;
    schnorr_public_key : ({ canister_id : ?Principal; derivation_path : [Blob]; key_id : SchnorrKeyId }) -> async { public_key : Blob; chain_code : Blob };
    sign_with_schnorr : ({ message : Blob; derivation_path : [Blob]; key_id : SchnorrKeyId; aux : ?{ #bip341 : { merkle_root_hash : Blob } } }) -> async { signature : Blob };
  };

  transient let ACCESS_TTL_S = 300; // short-lived: a resource server checks a JWT offline, so it cannot be revoked
  transient let SIGN_CYCLES = 26_153_846_153; // the IC's fee for `key_1` (test keys cost less; the rest is refunded)
  transient let MAX_URL = 8 * 1024;
  transient let MAX_FORM = 8 * 1024;
  transient let MAX_REGISTRATION = 16 * 1024;
  transient let MAX_REDIRECT_URIS = 8;
  transient let MAX_URI = 1024;
  transient let MAX_SCOPES = 16;
  transient let MAX_PUBLISHED_KEYS = 2;
  transient let PAYMENT_SCOPE = "payments";
  transient let CLIENT_DOC_MAX_BYTES = 16_384; // a client metadata document as received, headers included
  transient let CLIENT_DOC_TTL_NS = 3_600_000_000_000; // a fetched document is used for an hour, then fetched again
  transient let CLIENT_DOC_RETRY_NS = 300_000_000_000; // a URL whose document failed is not fetched again for 5 min
  transient let MAX_CLIENT_DOC_FETCHES_PER_MINUTE = 30; // each fetch is an HTTPS outcall the canister pays for
  transient let MAX_FAILED_CLIENT_DOCS = 1_000;

  var governance : Principal = init.governance;
  var issuer : Text = init.issuer;
  var keyName : Text = init.key_name;
  let grants = Grants.empty();
  let payments = Payments.empty();
  let chargeLog = Icrc3.empty(); // every paid charge as an ICRC-3 block (btype "charge"), the tip certified
  transient let hasher = Icrc3.hasher(); // block hashing scratch: no garbage per block
  var keys : [SigningKey] = []; // newest first: the first signs, all are published
  var seed : Blob = ""; // from raw_rand, ratcheted on each use: codes, tokens and ids are SHA-256("out", seed, counter)
  var counter : Nat = 0;
  transient var httpTree : CertifiedHttp.Tree = #empty; // the certified data's tree: responses below, the charge log's tip
  transient var certifiedResponses : [CertifiedHttp.Response] = [];
  transient var fetchWindowStart : Int = 0; // client metadata fetches: a fixed one-minute window
  transient var fetchesInWindow : Nat = 0;
  transient let failedClientDocs = Map.empty<Text, Int>(); // URL -> until when it is not fetched again

  transient let ic : Management = actor ("aaaaa-aa");

  func isGovernance(p : Principal) : Bool { not Principal.isAnonymous(p) and Principal.equal(p, governance) };

  // ---------------------------------------------------------------- randomness and keys

  func mix(entropy : Blob) {
    let st = Sha256.init();
    Sha256.writeText(st, "mix");
    Sha256.write(st, seed);
    Sha256.write(st, entropy);
    seed := Sha256.finish(st);
  };

  func ensureSeed() : async* () {
    if (seed.size() > 0) return;
    mix(await Random.blob());
  };

  // Fresh entropy every 5 minutes: a copy of the state gives the secrets issued after it until the next reseed,
  // and (the seed being ratcheted on each use) none issued before it.
  transient let _reseed = Timer.recurringTimer<system>(#seconds(300), func() : async () { mix(await Random.blob()) });

  func random() : Blob {
    counter += 1;
    let st = Sha256.init();
    Sha256.writeText(st, "out");
    Sha256.write(st, seed);
    Sha256.writeText(st, Nat.toText(counter));
    let out = Sha256.finish(st);
    Sha256.reset(st);
    Sha256.writeText(st, "next");
    Sha256.write(st, seed);
    seed := Sha256.finish(st);
    out;
  };

  func secretText() : Text { Http.base64url(random()) };

  func derivationPath(generation : Nat) : [Blob] { [Text.encodeUtf8("jwt-signing"), Text.encodeUtf8(Nat.toText(generation))] };

  func keyId() : SchnorrKeyId { { algorithm = #ed25519; name = keyName } };

  // RFC 7638: the thumbprint of the required members in lexicographic order.
  func thumbprint(x : Text) : Text {
    Http.base64url(Sha256.hash(Text.encodeUtf8("{\"crv\":\"Ed25519\",\"kty\":\"OKP\",\"x\":\"" # x # "\"}")));
  };

  func fetchKey(generation : Nat) : async* SigningKey {
    let { public_key } = await ic.schnorr_public_key({ canister_id = null; derivation_path = derivationPath(generation); key_id = keyId() });
    { generation; kid = thumbprint(Http.base64url(public_key)); public_key };
  };

  func ensureKey() : async* SigningKey {
    if (keys.size() > 0) return keys[0];
    let k = await* fetchKey(0);
    if (keys.size() == 0) { keys := [k]; certify() };
    keys[0];
  };

  func jwks() : Text {
    Json.write(#object_([("keys", #array(Array.map<SigningKey, Json.Value>(keys, func k = #object_([("kty", #string("OKP")), ("crv", #string("Ed25519")), ("x", #string(Http.base64url(k.public_key))), ("kid", #string(k.kid)), ("alg", #string("EdDSA")), ("use", #string("sig"))])))) ]));
  };

  func sign(key : SigningKey, claims : Json.Value) : async* Text {
    let header = Json.write(#object_([("alg", #string("EdDSA")), ("typ", #string("at+jwt")), ("kid", #string(key.kid))]));
    let input = Http.base64url(Text.encodeUtf8(header)) # "." # Http.base64url(Text.encodeUtf8(Json.write(claims)));
    let { signature } = await (with cycles = SIGN_CYCLES) ic.sign_with_schnorr({ message = Text.encodeUtf8(input); derivation_path = derivationPath(key.generation); key_id = keyId(); aux = null });
    input # "." # Http.base64url(signature);
  };

  // ---------------------------------------------------------------- validation

  func isScopeToken(t : Text) : Bool {
    if (t.size() == 0 or t.size() > 64) return false;
    for (c in t.chars()) {
      // RFC 6749 scope-token: %x21 / %x23-5B / %x5D-7E
      let n = Char.toNat32(c);
      if (n < 0x21 or n > 0x7E or n == 0x22 or n == 0x5C) return false;
    };
    true;
  };

  func parseScopes(t : ?Text) : ?[Text] {
    let out = List.empty<Text>();
    switch t {
      case null {};
      case (?text) for (s in Text.split(text, #char ' ')) if (s != "") {
        if (not isScopeToken(s)) return null;
        if (not List.contains(out, Text.equal, s)) List.add(out, s);
      };
    };
    if (List.size(out) > MAX_SCOPES) null else ?List.toArray(out);
  };

  func noControlOrSpace(t : Text) : Bool {
    for (c in t.chars()) if (Char.toNat32(c) <= 0x20 or Char.toNat32(c) == 0x7F or isHidden(c)) return false;
    true;
  };

  // C1 controls and the invisible or direction-changing format characters (soft hyphen, zero-width, bidi
  // embeddings, overrides and isolates, BOM, annotations): in what a consent page shows they could disguise it.
  func isHidden(c : Char) : Bool {
    let n = Char.toNat32(c);
    (n >= 0x80 and n < 0xA0) or n == 0xAD or n == 0x61C or (n >= 0x200B and n <= 0x200F) or (n >= 0x202A and n <= 0x202E) or (n >= 0x2060 and n <= 0x206F) or n == 0xFEFF or (n >= 0xFFF9 and n <= 0xFFFB);
  };

  // `host[:port]` of a URI's authority, split; null when the authority has userinfo (`user@`), a backslash (which
  // browsers read as `/`), percent-encoding, or a port that is not a number from 1 to 65535.
  func hostAndPort(rest : Text) : ?(Text, Text) {
    var authority = "";
    label scan for (c in rest.chars()) {
      if (c == '/' or c == '?' or c == '#') break scan;
      if (c == '@' or c == '\\' or c == '%') return null;
      authority #= Char.toText(c);
    };
    let chars = Text.toArray(authority);
    var host = "";
    var i = 0;
    if (chars.size() > 0 and chars[0] == '[') {
      label ipv6 while (i < chars.size()) { host #= Char.toText(chars[i]); i += 1; if (chars[i - 1] == ']') break ipv6 };
      if (not Text.endsWith(host, #char ']')) return null;
    } else {
      while (i < chars.size() and chars[i] != ':') { host #= Char.toText(chars[i]); i += 1 };
    };
    var port = "";
    if (i < chars.size()) {
      if (chars[i] != ':') return null;
      i += 1;
      while (i < chars.size()) { if (not Char.isDigit(chars[i])) return null; port #= Char.toText(chars[i]); i += 1 };
      switch (Nat.fromText(port)) { case (?n) if (n == 0 or n > 65_535) return null; case null return null };
    };
    if (host.size() == 0) return null;
    for (c in host.chars()) {
      if (not ((c >= 'a' and c <= 'z') or (c >= 'A' and c <= 'Z') or (c >= '0' and c <= '9') or c == '-' or c == '.' or c == '[' or c == ']' or c == ':')) return null;
    };
    ?(Text.toLower(host), port);
  };

  // `localhost` and its subdomains (RFC 6761: a localnet's `<canister id>.localhost`), 127.0.0.1, [::1].
  func isLoopbackHost(host : Text) : Bool {
    host == "localhost" or Text.endsWith(host, #text ".localhost") or host == "127.0.0.1" or host == "[::1]";
  };

  // An absolute https URI, or http on a loopback host (RFC 8252 section 7.3); never a fragment or userinfo.
  func isWebUri(u : Text) : Bool {
    if (u.size() > MAX_URI or Text.contains(u, #char '#') or not noControlOrSpace(u)) return false;
    switch (Text.stripStart(u, #text "https://")) {
      case (?rest) return hostAndPort(rest) != null;
      case null {};
    };
    switch (Text.stripStart(u, #text "http://")) {
      case (?rest) switch (hostAndPort(rest)) {
        case (?(host, _)) isLoopbackHost(host);
        case null false;
      };
      case null false;
    };
  };

  // The registered redirect URI, exactly; for a loopback http URI any port (RFC 8252 section 7.3: a native app
  // listens on whatever port it gets).
  func sameRedirect(registered : Text, presented : Text) : Bool {
    if (registered == presented) return true;
    switch (withoutLoopbackPort(registered), withoutLoopbackPort(presented)) { case (?a, ?b) a == b; case _ false };
  };

  func withoutLoopbackPort(u : Text) : ?Text {
    let ?rest = Text.stripStart(u, #text "http://") else return null;
    let ?(host, _) = hostAndPort(rest) else return null;
    if (not isLoopbackHost(host)) return null;
    // what follows the authority: from the first '/', '?' (a fragment is never allowed)
    var seen = false;
    var tail = "";
    for (c in rest.chars()) { if (not seen and (c == '/' or c == '?')) seen := true; if seen tail #= Char.toText(c) };
    ?(host # tail);
  };

  // A redirect URI: a web URI, or a private-use scheme of a native app (RFC 8252 section 7.1: a reverse domain
  // name such as `com.example.app:/callback`).
  func isRedirectUri(u : Text) : Bool {
    if (isWebUri(u)) return true;
    if (u.size() > MAX_URI or Text.contains(u, #char '#') or not noControlOrSpace(u)) return false;
    let ?scheme = Text.split(u, #char ':').next() else return false;
    if (not Text.contains(scheme, #char '.') or scheme.size() + 1 >= u.size()) return false;
    for (c in scheme.chars()) if (not ((c >= 'a' and c <= 'z') or (c >= '0' and c <= '9') or c == '.' or c == '-' or c == '+')) return false;
    true;
  };

  func isIssuer(u : Text) : Bool { isWebUri(u) and not Text.contains(u, #char '?') and not Text.endsWith(u, #char '/') };

  // RFC 7636: 43 to 128 unreserved characters.
  func isVerifier(v : Text) : Bool {
    if (v.size() < 43 or v.size() > 128) return false;
    for (c in v.chars()) if (not ((c >= 'a' and c <= 'z') or (c >= 'A' and c <= 'Z') or (c >= '0' and c <= '9') or c == '-' or c == '.' or c == '_' or c == '~')) return false;
    true;
  };

  func isChallenge(c : Text) : Bool {
    if (c.size() != 43) return false;
    for (ch in c.chars()) if (not ((ch >= 'a' and ch <= 'z') or (ch >= 'A' and ch <= 'Z') or (ch >= '0' and ch <= '9') or ch == '-' or ch == '_')) return false;
    true;
  };

  func s256(verifier : Text) : Text { Http.base64url(Sha256.hash(Text.encodeUtf8(verifier))) };

  func hashText(t : Text) : Blob { Sha256.hash(Text.encodeUtf8(t)) };

  // Equal digests: SHA-256 first, so the comparison reveals nothing about the secret's bytes.
  func sameSecret(presented : Text, stored : Blob) : Bool { Blob.equal(hashText(presented), stored) };

  // ---------------------------------------------------------------- responses

  func oauthError(status : Nat16, error : Text, description : Text) : Http.Response {
    Http.json(status, Json.write(#object_([("error", #string(error)), ("error_description", #string(description))])), false);
  };

  func page(status : Nat16, title : Text, body : Text) : Http.Response {
    Http.html(status, "<!doctype html><html><head><meta charset=\"utf-8\"><title>" # Http.escapeHtml(title) # "</title></head><body style=\"font-family:sans-serif;max-width:40em;margin:2em auto\"><h1>" # Http.escapeHtml(title) # "</h1>" # body # "</body></html>");
  };

  func withQuery(base : Text, pairs : [(Text, Text)]) : Text {
    var out = base # (if (Text.contains(base, #char '?')) "&" else "?");
    var first = true;
    for ((k, v) in pairs.vals()) { out #= (if first "" else "&") # Http.percentEncode(k) # "=" # Http.percentEncode(v); first := false };
    out;
  };

  // The answer to a client at its redirect URI: `params`, the request's `state`, and `iss` (RFC 9207) so a client
  // talking to several servers can tell which one answered.
  func backToClient(redirectUri : Text, params : [(Text, Text)], state : ?Text) : Text {
    let withState = switch state { case (?s) Array.concat(params, [("state", s)]); case null params };
    withQuery(redirectUri, Array.concat(withState, [("iss", issuer)]));
  };

  // An error after the redirect URI was checked goes back to the client (RFC 6749 section 4.1.2.1) with `iss`
  // (RFC 9207) -- through the user, not by an automatic redirect: anyone may register a client, so redirecting
  // at once would make this server an open redirector for phishing sites (RFC 9700 section 4.11.2). The page
  // names the error and links back; with `Accept: application/json` the link is `redirect_to`.
  func redirectError(redirectUri : Text, error : Text, description : Text, state : ?Text, json : Bool) : Http.Response {
    let target = backToClient(redirectUri, [("error", error), ("error_description", description)], state);
    if (json) return Http.json(400, Json.write(#object_([("error", #string(error)), ("error_description", #string(description)), ("redirect_to", #string(target))])), false);
    page(400, "Authorization refused", "<p><code>" # Http.escapeHtml(error) # "</code>: " # Http.escapeHtml(description) # "</p><p><a id=\"return\" href=\"" # Http.escapeHtml(target) # "\">Return to the application</a> (" # Http.escapeHtml(redirectUri) # ")</p>");
  };

  func metadata() : Text {
    let methods = Json.strings(["none", "client_secret_post", "client_secret_basic"]);
    Json.write(#object_([
      ("issuer", #string(issuer)),
      ("authorization_endpoint", #string(issuer # "/authorize")),
      ("token_endpoint", #string(issuer # "/token")),
      ("registration_endpoint", #string(issuer # "/register")),
      ("revocation_endpoint", #string(issuer # "/revoke")),
      ("jwks_uri", #string(issuer # "/.well-known/jwks.json")),
      ("response_types_supported", Json.strings(["code"])),
      ("response_modes_supported", Json.strings(["query"])),
      ("grant_types_supported", Json.strings(["authorization_code", "refresh_token"])),
      ("code_challenge_methods_supported", Json.strings(["S256"])),
      ("token_endpoint_auth_methods_supported", methods),
      ("revocation_endpoint_auth_methods_supported", methods),
      ("authorization_response_iss_parameter_supported", #bool(true)),
      ("client_id_metadata_document_supported", #bool(true)),
      ("scopes_supported", Json.strings([])),
    ]));
  };

  // ---------------------------------------------------------------- HTTP

  // Metadata and JWKS are certified responses, served by the query (a gateway verifies them); everything else
  // is answered by an update call.
  public query func http_request(req : Http.Request) : async Http.Response {
    let (path, _) = Http.split(req.url);
    switch (req.method, certifiedAt(path), CertifiedData.getCertificate()) {
      case ("GET", ?r, ?certificate) CertifiedHttp.serve(r, httpTree, certificate);
      case _ Http.upgrade();
    };
  };

  func certifiedAt(path : Text) : ?CertifiedHttp.Response {
    Array.find<CertifiedHttp.Response>(certifiedResponses, func r = r.path == path);
  };

  func asResponse(r : CertifiedHttp.Response) : Http.Response { { status_code = r.status; headers = r.headers; body = r.body; upgrade = null } };

  // Certify what the query serves and the charge log's tip under one root (the only writer of certified data).
  func certify() {
    let metadataResponse = Http.json(200, metadata(), true);
    let responses = List.fromArray<CertifiedHttp.Response>([{ path = "/.well-known/oauth-authorization-server"; status = 200 : Nat16; headers = metadataResponse.headers; body = metadataResponse.body }]);
    if (keys.size() > 0) {
      let r = Http.json(200, jwks(), true);
      List.add(responses, { path = "/.well-known/jwks.json"; status = 200 : Nat16; headers = r.headers; body = r.body });
    };
    let js = Http.script(ConsentScript.SCRIPT);
    List.add(responses, { path = "/consent.js"; status = 200 : Nat16; headers = js.headers; body = js.body });
    let entries = List.map<CertifiedHttp.Response, ([Blob], Blob)>(responses, func r = (CertifiedHttp.certificationPath(r), ""));
    switch (chargeLog.lastHash) {
      case (?h) {
        List.add(entries, ([Text.encodeUtf8("last_block_hash")], h));
        List.add(entries, ([Text.encodeUtf8("last_block_index")], Blob.fromArray(Icrc3.leb(Icrc3.length(chargeLog) - 1))));
      };
      case null {};
    };
    certifiedResponses := List.toArray(responses);
    httpTree := CertifiedHttp.fromPaths(List.toArray(entries));
    CertifiedData.set(CertifiedHttp.reconstruct(httpTree));
  };

  public func http_request_update(req : Http.UpdateRequest) : async Http.Response {
    if (req.url.size() > MAX_URL) return oauthError(414, "invalid_request", "the URL is too long");
    let (path, qs) = Http.split(req.url);
    switch (req.method, path) {
      case ("OPTIONS", _) Http.preflight();
      case ("GET", "/.well-known/oauth-authorization-server") Http.json(200, metadata(), true);
      case ("GET", "/.well-known/jwks.json") {
        try { ignore await* ensureKey() } catch (e) { return oauthError(503, "temporarily_unavailable", "the signing key is not available: " # Error.message(e)) };
        switch (certifiedAt(path)) { case (?r) asResponse(r); case null Http.json(200, jwks(), true) };
      };
      case ("GET", "/authorize") await* authorize(qs, req.headers);
      case ("GET", "/grants") grantsPage();
      case ("GET", "/consent.js") switch (certifiedAt(path)) { case (?r) asResponse(r); case null Http.script(ConsentScript.SCRIPT) };
      case ("POST", "/register") await* register(req);
      case ("POST", "/token") await* token(req);
      case ("POST", "/revoke") revokeEndpoint(req);
      case (_, "/.well-known/oauth-authorization-server" or "/.well-known/jwks.json" or "/authorize" or "/register" or "/token" or "/revoke") {
        oauthError(405, "invalid_request", "method " # req.method # " is not allowed here");
      };
      case _ oauthError(404, "not_found", "no such endpoint: " # path);
    };
  };

  // ---------------------------------------------------------------- /authorize

  func authorize(qs : Text, headers : [Http.HeaderField]) : async* Http.Response {
    let wantsJson = switch (Http.header(headers, "Accept")) { case (?a) Text.contains(a, #text "application/json"); case null false };
    let ?ps = Http.params(qs) else return page(400, "Bad request", "<p>The authorization request is malformed (a parameter is not percent-encoded or appears twice).</p>");
    let ?clientId = Http.param(ps, "client_id") else return page(400, "Bad request", "<p>The request names no <code>client_id</code>.</p>");
    switch (await* ensureClient(clientId)) {
      case (#ok) {};
      case (#err(why)) return page(400, "Unknown client", "<p>The client <code>" # Http.escapeHtml(clientId) # "</code> cannot be used: " # Http.escapeHtml(why) # "</p>");
    };
    let ?client = Grants.client(grants, clientId) else return page(503, "Unavailable", "<p>The client was just removed; try again.</p>");
    // The redirect URI must be one the client registered, exactly; until it is known good, nothing redirects.
    let redirectUri = switch (Http.param(ps, "redirect_uri")) {
      case (?u) if (Array.find<Text>(client.redirect_uris, func r = sameRedirect(r, u)) != null) u else return page(400, "Bad redirect URI", "<p>The redirect URI is not one this client registered.</p>");
      case null if (client.redirect_uris.size() == 1) client.redirect_uris[0] else return page(400, "Bad request", "<p>The request names no <code>redirect_uri</code>.</p>");
    };
    let state = Http.param(ps, "state");
    switch state { case (?s) if (s.size() > 512) return page(400, "Bad request", "<p>The state is too long.</p>"); case null {} };
    if (Http.param(ps, "response_type") != ?"code") return redirectError(redirectUri, "unsupported_response_type", "only response_type=code", state, wantsJson);
    let ?challenge = Http.param(ps, "code_challenge") else return redirectError(redirectUri, "invalid_request", "PKCE is required: code_challenge", state, wantsJson);
    if (Http.param(ps, "code_challenge_method") != ?"S256") return redirectError(redirectUri, "invalid_request", "code_challenge_method must be S256", state, wantsJson);
    if (not isChallenge(challenge)) return redirectError(redirectUri, "invalid_request", "code_challenge is not a base64url SHA-256", state, wantsJson);
    let ?scopes = parseScopes(Http.param(ps, "scope")) else return redirectError(redirectUri, "invalid_scope", "a scope is malformed or there are more than 16", state, wantsJson);
    let ?resource = Http.param(ps, "resource") else return redirectError(redirectUri, "invalid_target", "a resource indicator (RFC 8707) is required: the token's audience", state, wantsJson);
    if (not isWebUri(resource) or Text.contains(resource, #char '?')) return redirectError(redirectUri, "invalid_target", "the resource must be an absolute https (or loopback http) URI without query or fragment", state, wantsJson);
    let payee = Payments.serverFor(payments, resource);
    if (Array.find<Text>(scopes, func s = s == PAYMENT_SCOPE) != null and payee == null) return redirectError(redirectUri, "invalid_scope", "the payments scope needs a resource server registered for payments", state, wantsJson);
    try { await* ensureSeed() } catch (e) { return page(503, "Unavailable", "<p>No randomness yet: " # Http.escapeHtml(Error.message(e)) # "</p>") };
    let now = Time.now();
    Grants.prune(grants, now);
    let id = "r_" # secretText(); // never starts with `-`: it is a command-line argument
    let p : Grants.Pending = { id; client_id = clientId; redirect_uri = redirectUri; challenge; scopes; resource; state; expires_ns = now + Grants.PENDING_TTL_NS };
    if (not Grants.addPending(grants, p)) return redirectError(redirectUri, "temporarily_unavailable", "too many authorization requests are waiting; try again", state, wantsJson);
    if (wantsJson) {
      return Http.json(200, Json.write(#object_([("request_id", #string(id)), ("client_id", #string(clientId)), ("client_name", #string(client.name)), ("redirect_uri", #string(redirectUri)), ("scopes", Json.strings(scopes)), ("resource", #string(resource)), ("expires_in", #number(Int.toText(Grants.PENDING_TTL_NS / 1_000_000_000)))])), false);
    };
    let scopeList = if (scopes.size() == 0) "<li>(no scope)</li>" else Text.join(Array.map<Text, Text>(scopes, func s = "<li><code>" # Http.escapeHtml(s) # "</code></li>").vals(), "");
    let paymentNote = switch (payee) {
      case (?srv) if (Array.find<Text>(scopes, func s = s == PAYMENT_SCOPE) != null) {
        "<p>With <code>payments</code>, <b>" # Http.escapeHtml(srv.name) # "</b> may charge you in " # Text.join(Array.map<Principal, Text>(srv.ledgers, func l = "<code>" # Principal.toText(l) # "</code>").vals(), ", ") # ", never more than the spending limit the approving identity set for it (<code>prometheus allowance limit " # Http.escapeHtml(resource) # "</code>) nor than that identity's ledger allowance to this server: approved in this browser, the browser's identity needs its own.</p>";
      } else "";
      case null "";
    };
    let origin = if (isClientIdUrl(clientId)) "described at <code><bdi>" # Http.escapeHtml(clientId) # "</bdi></code>" else "registered here as <code>" # Http.escapeHtml(clientId) # "</code>";
    page(200, "Authorize an application", "<p>An application that calls itself <b><bdi>" # Http.escapeHtml(client.name) # "</bdi></b> (its own claim; " # origin # ") asks to act for you at <code><bdi>" # Http.escapeHtml(resource) # "</bdi></code> with:</p><ul>" # scopeList # "</ul>" # paymentNote # "<p>It will receive the answer at <code><bdi>" # Http.escapeHtml(redirectUri) # "</bdi></code>. The request expires in 10 minutes.</p>" # consentBox(id) # "<p>Or with your IC identity on the command line:</p><pre>prometheus auth approve " # Http.escapeHtml(id) # " --issuer " # Http.escapeHtml(issuer) # "</pre><p>or decline with <code>prometheus auth deny " # Http.escapeHtml(id) # " --issuer " # Http.escapeHtml(issuer) # "</code>.</p><p id=\"request-id\" hidden>" # Http.escapeHtml(id) # "</p>");
  };

  // What a browser identity approved can be revoked only with that identity: this page signs `revoke_my_grants`.
  func grantsPage() : Http.Response {
    page(200, "Grants approved in this browser", "<div id=\"consent\" data-mode=\"grants\" data-canister=\"" # Principal.toText(Principal.fromActor(self)) # "\"><p>This browser approves as <code id=\"consent-principal\">(loading)</code>. Applications you approved here keep access until you revoke it (30 days at most without use).</p><p><button id=\"consent-revoke-all\" disabled>Revoke every grant approved in this browser</button></p><p id=\"consent-status\" role=\"status\"></p></div><script src=\"/consent.js\"></script>");
  };

  // Approve or decline in this browser, as the principal of a key the browser keeps (consent.js signs the call).
  func consentBox(id : Text) : Text {
    "<div id=\"consent\" data-request-id=\"" # Http.escapeHtml(id) # "\" data-canister=\"" # Principal.toText(Principal.fromActor(self)) # "\"><p>Approve in this browser as <code id=\"consent-principal\">(loading)</code> (an identity this browser keeps for this site; clearing the site's data loses it):</p><p><button id=\"consent-approve\" disabled>Approve</button> <button id=\"consent-deny\" disabled>Decline</button></p><p id=\"consent-status\" role=\"status\"></p><p><a id=\"consent-return\" hidden>Return to the application</a></p><p>What this browser approved: <a href=\"/grants\">grants</a>.</p></div><script src=\"/consent.js\"></script>";
  };

  // What a user is asked to approve (the id is the capability: it was only shown to whoever started the flow).
  public query func get_authorization(id : Text) : async ?Authorization {
    let ?p = Grants.pending(grants, id, Time.now()) else return null;
    let name = switch (Grants.client(grants, p.client_id)) { case (?c) c.name; case null "" };
    ?{ request_id = id; client_id = p.client_id; client_name = name; redirect_uri = p.redirect_uri; scopes = p.scopes; resource = p.resource; expires_at_ns = p.expires_ns };
  };

  // The user's approval, signed with their identity: the grant is theirs. Returns where to send the browser.
  public shared ({ caller }) func approve(id : Text) : async { #ok : { redirect_to : Text }; #err : AuthError } {
    if (Principal.isAnonymous(caller)) return #err(#NotAuthorized);
    let now = Time.now();
    let ?p = Grants.takePending(grants, id, now) else return #err(#NotFound);
    let code = secretText();
    let stored = Grants.addCode(grants, hashText(code), { client_id = p.client_id; redirect_uri = p.redirect_uri; challenge = p.challenge; scopes = p.scopes; resource = p.resource; user = caller; expires_ns = now + Grants.CODE_TTL_NS; var use = #unused; var family = null });
    if (not stored) return #err(#Unavailable("too many codes are waiting to be exchanged"));
    #ok({ redirect_to = backToClient(p.redirect_uri, [("code", code)], p.state) });
  };

  public shared ({ caller }) func deny(id : Text) : async { #ok : { redirect_to : Text }; #err : AuthError } {
    if (Principal.isAnonymous(caller)) return #err(#NotAuthorized);
    let ?p = Grants.takePending(grants, id, Time.now()) else return #err(#NotFound);
    #ok({ redirect_to = backToClient(p.redirect_uri, [("error", "access_denied"), ("error_description", "the user declined")], p.state) });
  };

  // ---------------------------------------------------------------- /register (RFC 7591)

  func stringList(v : ?Json.Value, default : [Text]) : ?[Text] {
    switch v {
      case null ?default;
      case (?#array(items)) {
        let out = List.empty<Text>();
        for (x in items.vals()) switch x { case (#string(s)) List.add(out, s); case _ return null };
        ?List.toArray(out);
      };
      case _ null;
    };
  };

  func registrationError(error : Text, description : Text) : Http.Response { oauthError(400, error, description) };

  type ClientFields = { redirects : [Text]; grantTypes : [Text]; responseTypes : [Text]; method : Grants.AuthMethod; name : Text };

  // A client's metadata (RFC 7591 section 2), registered or published at its client ID URL: the fields this
  // server uses, checked, or the RFC 7591 error and why. `defaultMethod` applies when none is named.
  func clientFields(body : Json.Value, defaultMethod : Grants.AuthMethod) : { #ok : ClientFields; #err : (Text, Text) } {
    let ?redirects = stringList(Json.field(body, "redirect_uris"), []) else return #err("invalid_redirect_uri", "redirect_uris must be an array of strings");
    if (redirects.size() == 0 or redirects.size() > MAX_REDIRECT_URIS) return #err("invalid_redirect_uri", "between 1 and 8 redirect URIs are required");
    for (u in redirects.vals()) if (not isRedirectUri(u)) return #err("invalid_redirect_uri", "not an https, loopback http or private-use redirect URI: " # u);
    let ?grantTypes = stringList(Json.field(body, "grant_types"), ["authorization_code"]) else return #err("invalid_client_metadata", "grant_types must be an array of strings");
    for (g in grantTypes.vals()) if (g != "authorization_code" and g != "refresh_token") return #err("invalid_client_metadata", "unsupported grant type: " # g);
    let ?responseTypes = stringList(Json.field(body, "response_types"), ["code"]) else return #err("invalid_client_metadata", "response_types must be an array of strings");
    for (r in responseTypes.vals()) if (r != "code") return #err("invalid_client_metadata", "unsupported response type: " # r);
    let method : Grants.AuthMethod = switch (Json.field(body, "token_endpoint_auth_method")) {
      case null defaultMethod;
      case (?#string("client_secret_basic")) #client_secret_basic;
      case (?#string("client_secret_post")) #client_secret_post;
      case (?#string("none")) #none;
      case _ return #err("invalid_client_metadata", "token_endpoint_auth_method must be none, client_secret_post or client_secret_basic");
    };
    let name = switch (Json.field(body, "client_name")) {
      case (?#string(n)) {
        if (n.size() > 200) return #err("invalid_client_metadata", "client_name is longer than 200 characters");
        for (c in n.chars()) if (Char.toNat32(c) < 0x20 or Char.toNat32(c) == 0x7F or isHidden(c)) return #err("invalid_client_metadata", "client_name has a control, invisible or direction-changing character");
        n;
      };
      case null "(unnamed client)";
      case _ return #err("invalid_client_metadata", "client_name must be a string");
    };
    #ok({ redirects; grantTypes; responseTypes; method; name });
  };

  // ---------------------------------------------------------------- Client ID Metadata Documents
  // A client may name itself by an https URL where it publishes its metadata (draft-ietf-oauth-client-id-
  // metadata-document, preferred by the MCP authorization specification): the document is fetched with an HTTPS
  // outcall, must name that URL as its `client_id`, and is used for an hour. A public client only (no shared
  // secret can be published). Fetches cost cycles and anyone may ask for one, so there are at most 30 a minute
  // and a URL that failed is not fetched again for 5 minutes.

  // https, a path beyond `/`, no fragment, userinfo or dot segments (the draft's section 3).
  func isClientIdUrl(u : Text) : Bool {
    if (u.size() > MAX_URI or Text.contains(u, #char '#') or not noControlOrSpace(u)) return false;
    let ?rest = Text.stripStart(u, #text "https://") else return false;
    let ?(host, _) = hostAndPort(rest) else return false;
    if (isSpecialUseHost(host) and not isSpecialUseHost(issuerHost())) return false; // a loopback issuer's tests may
    let path = switch (Text.split(rest, #char '?').next()) { case (?p) p; case null "" };
    if (Text.contains(Text.toLower(path), #text "%2e")) return false; // an encoded dot segment
    let segments = Iter.toArray(Text.split(path, #char '/'));
    if (segments.size() < 2 or (segments.size() == 2 and segments[1] == "")) return false;
    for (seg in segments.vals()) if (seg == "." or seg == "..") return false;
    true;
  };

  func issuerHost() : Text {
    let rest = switch (Text.stripStart(issuer, #text "https://"), Text.stripStart(issuer, #text "http://")) { case (?r, _) r; case (_, ?r) r; case _ "" };
    switch (hostAndPort(rest)) { case (?(h, _)) h; case null "" };
  };

  // Hosts the draft's SSRF rules forbid (RFC 6890 special-use addresses): loopback and `localhost` names,
  // private, link-local, shared, documentation, benchmark and multicast IPv4, IPv6 other than global unicast
  // literals, and IPv4 written in any other form than four decimal numbers (which resolvers read as addresses).
  func isSpecialUseHost(host : Text) : Bool {
    if (host == "localhost" or Text.endsWith(host, #text ".localhost")) return true;
    if (Text.startsWith(host, #char '[')) {
      return Text.startsWith(host, #text "[::") or Text.startsWith(host, #text "[fc") or Text.startsWith(host, #text "[fd") or Text.startsWith(host, #text "[fe") or Text.startsWith(host, #text "[ff") or Text.startsWith(host, #text "[64:ff9b") or Text.startsWith(host, #text "[2001:db8") or Text.startsWith(host, #text "[2001:0db8") or Text.startsWith(host, #text "[0");
    };
    let labels = Iter.toArray(Text.split(host, #char '.'));
    for (l in labels.vals()) if (Text.startsWith(l, #text "0x")) return true;
    if (not Text.contains(host, #predicate(func c = not (Char.isDigit(c) or c == '.')))) {
      // only digits and dots: an address; anything but a dotted quad of plain decimals is refused
      if (labels.size() != 4) return true;
      let octets = Array.map<Text, Nat>(labels, func l = switch (Nat.fromText(l)) { case (?n) if (l.size() > 1 and Text.startsWith(l, #char '0')) 256 else n; case null 256 });
      for (o in octets.vals()) if (o > 255) return true;
      let (a, b) = (octets[0], octets[1]);
      return a == 0 or a == 10 or a == 127 or a >= 224 or (a == 100 and b >= 64 and b < 128) or (a == 169 and b == 254) or (a == 172 and b >= 16 and b < 32) or (a == 192 and b == 168) or (a == 192 and b == 0) or (a == 198 and (b == 18 or b == 19 or b == 51)) or (a == 203 and b == 0);
    };
    false;
  };

  // The client a request names is in the client table: registered here, or described by its metadata document
  // (fetched when unknown or older than an hour; an older copy keeps serving while the document cannot be
  // fetched, not when it changed into one that is refused).
  func ensureClient(clientId : Text) : async* { #ok; #err : Text } {
    let now = Time.now();
    let cached = switch (Grants.client(grants, clientId)) {
      case (?c) { if (not isClientIdUrl(clientId) or now < c.created_ns + CLIENT_DOC_TTL_NS) return #ok; true };
      case null { if (not isClientIdUrl(clientId)) return #err("no client is registered with this id"); false };
    };
    switch (await* fetchClient(clientId, now)) {
      case (#ok) #ok;
      case (#unavailable(why)) if cached #ok else #err(why);
      case (#invalid(why)) #err(why);
    };
  };

  type Fetched = { #ok; #unavailable : Text; #invalid : Text };

  func fetchClient(url : Text, now : Int) : async* Fetched {
    switch (Map.get(failedClientDocs, Text.compare, url)) {
      case (?until) if (now < until) return #unavailable("its metadata document could not be used a moment ago; try again in a few minutes");
      case null {};
    };
    if (now >= fetchWindowStart + 60_000_000_000) { fetchWindowStart := now; fetchesInWindow := 0 };
    if (fetchesInWindow >= MAX_CLIENT_DOC_FETCHES_PER_MINUTE) return #unavailable("too many client metadata documents were fetched this minute; try again shortly");
    fetchesInWindow += 1;
    let maxBytes = CLIENT_DOC_MAX_BYTES;
    let cycles = 2 * ((3_000_000 + 60_000 * 13) * 13 + 400 * 13 * (url.size() + 64) + 800 * 13 * maxBytes); // twice the IC's price
    let reply = try {
      await (with cycles) ic.http_request({ url; max_response_bytes = ?Nat64.fromNat(maxBytes); method = #get; headers = [{ name = "Accept"; value = "application/json" }]; body = null; transform = ?{ function = transform_http_response; context = "" }; is_replicated = null });
    } catch (e) {
      Debug.print("client metadata document " # url # ": " # Error.message(e)); // the detail for controllers' logs only
      return failedDoc(url, #unavailable("its metadata document could not be fetched (no answer in time, a TLS error, or more than 16 KiB)"));
    };
    if (reply.status != 200) return failedDoc(url, #invalid("its metadata document answered HTTP " # Nat.toText(reply.status)));
    let ?text = Text.decodeUtf8(reply.body) else return failedDoc(url, #invalid("its metadata document is not UTF-8"));
    let ?doc = Json.parse(text) else return failedDoc(url, #invalid("its metadata document is not a JSON object"));
    if (Json.field(doc, "client_id") != ?#string(url)) return failedDoc(url, #invalid("its metadata document does not name this URL as its client_id"));
    if (Json.field(doc, "client_secret") != null or Json.field(doc, "client_secret_expires_at") != null) return failedDoc(url, #invalid("a published metadata document cannot hold a client secret"));
    let fields = switch (clientFields(doc, #none)) { case (#ok(f)) f; case (#err(_, why)) return failedDoc(url, #invalid("its metadata document is invalid: " # why)) };
    if (fields.method != #none) return failedDoc(url, #invalid("a client identified by a URL authenticates with none (PKCE) only"));
    let used = switch (Grants.client(grants, url)) { case (?c) c.used; case null false };
    let client : Grants.Client = { id = url; name = fields.name; redirect_uris = fields.redirects; grant_types = fields.grantTypes; auth_method = #none; secret_hash = null; created_ns = Time.now(); var used = used };
    Grants.prune(grants, Time.now());
    if (not Grants.addClient(grants, client)) return #unavailable("the client table is full; try again later");
    #ok;
  };

  // Remember a failure for 5 minutes (the table is bounded: expired entries make room, else it is not kept).
  func failedDoc(url : Text, outcome : Fetched) : Fetched {
    let now = Time.now();
    if (Map.size(failedClientDocs) >= MAX_FAILED_CLIENT_DOCS) {
      for ((u, until) in Map.toArray(failedClientDocs).vals()) if (until <= now) Map.remove(failedClientDocs, Text.compare, u);
    };
    if (Map.size(failedClientDocs) < MAX_FAILED_CLIENT_DOCS) Map.add(failedClientDocs, Text.compare, url, now + CLIENT_DOC_RETRY_NS);
    outcome;
  };

  // What replicas agree on: the status and body (headers such as Date differ from one replica to the next).
  public shared query func transform_http_response(args : TransformArgs) : async HttpResult {
    { status = args.response.status; headers = []; body = args.response.body };
  };

  func register(req : Http.UpdateRequest) : async* Http.Response {
    if (req.body.size() > MAX_REGISTRATION) return registrationError("invalid_client_metadata", "the registration is larger than 16 KiB");
    let ?text = Text.decodeUtf8(req.body) else return registrationError("invalid_client_metadata", "the body is not UTF-8");
    let ?body = Json.parse(text) else return registrationError("invalid_client_metadata", "the body is not a JSON object");
    switch body { case (#object_(_)) {}; case _ return registrationError("invalid_client_metadata", "the body is not a JSON object") };
    let { redirects; grantTypes; responseTypes; method; name } = switch (clientFields(body, #client_secret_basic)) {
      case (#ok(f)) f;
      case (#err(error, description)) return registrationError(error, description);
    };
    try { await* ensureSeed() } catch (e) { return oauthError(503, "temporarily_unavailable", Error.message(e)) };
    let now = Time.now();
    Grants.prune(grants, now);
    let id = "c_" # secretText(); // never starts with `-` (a command-line argument)
    let secret = if (method == #none) null else ?secretText();
    let client : Grants.Client = { id; name; redirect_uris = redirects; grant_types = grantTypes; auth_method = method; secret_hash = switch secret { case (?s) ?hashText(s); case null null }; created_ns = now; var used = false };
    if (not Grants.addClient(grants, client)) return oauthError(503, "temporarily_unavailable", "registration is closed: the client limit is reached");
    let methodName = switch method { case (#none) "none"; case (#client_secret_post) "client_secret_post"; case (#client_secret_basic) "client_secret_basic" };
    let members = List.fromArray<(Text, Json.Value)>([
      ("client_id", #string(id)),
      ("client_id_issued_at", #number(Int.toText(now / 1_000_000_000))),
      ("client_name", #string(name)),
      ("redirect_uris", Json.strings(redirects)),
      ("grant_types", Json.strings(grantTypes)),
      ("response_types", Json.strings(responseTypes)),
      ("token_endpoint_auth_method", #string(methodName)),
    ]);
    switch secret { case (?s) { List.add(members, ("client_secret", #string(s))); List.add(members, ("client_secret_expires_at", #number("0"))) }; case null {} };
    Http.json(201, Json.write(#object_(List.toArray(members))), false);
  };

  // ---------------------------------------------------------------- client authentication at /token and /revoke

  // The client, authenticated by its registered method (RFC 6749 section 2.3), or the error to answer.
  func authenticate(ps : [(Text, Text)], headers : [Http.HeaderField]) : { #ok : Grants.Client; #err : Http.Response } {
    let invalid = #err(unauthorizedClient(Http.header(headers, "Authorization") != null));
    var basic : ?(Text, Text) = null;
    switch (Http.header(headers, "Authorization")) {
      case (?value) {
        let ?encoded = Text.stripStart(value, #text "Basic ") else return invalid;
        let ?raw = Http.base64Decode(encoded) else return invalid;
        let ?pair = Text.decodeUtf8(raw) else return invalid;
        let parts = Text.split(pair, #char ':');
        let ?rawId = parts.next() else return invalid;
        var rawSecret = "";
        var first = true;
        for (p in parts) { rawSecret #= (if first "" else ":") # p; first := false };
        let ?id = Http.percentDecode(rawId) else return invalid;
        let ?secret = Http.percentDecode(rawSecret) else return invalid;
        basic := ?(id, secret);
      };
      case null {};
    };
    let clientId = switch (basic, Http.param(ps, "client_id")) {
      case (?(id, _), ?formId) if (id == formId) id else return invalid;
      case (?(id, _), null) id;
      case (null, ?formId) formId;
      case (null, null) return invalid;
    };
    let ?client = Grants.client(grants, clientId) else return invalid;
    switch (client.auth_method, client.secret_hash, basic, Http.param(ps, "client_secret")) {
      case (#none, _, null, null) #ok(client);
      case (#client_secret_basic, ?stored, ?(_, secret), null) if (sameSecret(secret, stored)) #ok(client) else invalid;
      case (#client_secret_post, ?stored, null, ?secret) if (sameSecret(secret, stored)) #ok(client) else invalid;
      case _ invalid;
    };
  };

  // 401 invalid_client; with a `WWW-Authenticate` challenge when the client tried HTTP authentication (RFC 6749 5.2).
  func unauthorizedClient(triedBasic : Bool) : Http.Response {
    let r = oauthError(401, "invalid_client", "client authentication failed");
    if (not triedBasic) return r;
    { r with headers = Array.concat(r.headers, [("WWW-Authenticate", "Basic realm=\"auth_server\"")]) };
  };

  func form(req : Http.UpdateRequest) : { #ok : [(Text, Text)]; #err : Http.Response } {
    if (req.body.size() > MAX_FORM) return #err(oauthError(400, "invalid_request", "the request is larger than 8 KiB"));
    let isForm = switch (Http.header(req.headers, "Content-Type")) { case (?t) Text.startsWith(Text.toLower(t), #text "application/x-www-form-urlencoded"); case null false };
    if (not isForm) return #err(oauthError(400, "invalid_request", "the body must be application/x-www-form-urlencoded"));
    let ?text = Text.decodeUtf8(req.body) else return #err(oauthError(400, "invalid_request", "the body is not UTF-8"));
    let ?ps = Http.params(text) else return #err(oauthError(400, "invalid_request", "a parameter is malformed or appears twice"));
    #ok(ps);
  };

  // ---------------------------------------------------------------- /token

  func tokenResponse(access : Text, refresh : ?Text, scopes : [Text]) : Http.Response {
    let members = List.fromArray<(Text, Json.Value)>([("access_token", #string(access)), ("token_type", #string("Bearer")), ("expires_in", #number(Nat.toText(ACCESS_TTL_S))), ("scope", #string(Text.join(scopes.vals(), " ")))]);
    switch refresh { case (?r) List.add(members, ("refresh_token", #string(r))); case null {} };
    Http.json(200, Json.write(#object_(List.toArray(members))), false);
  };

  func accessClaims(user : Principal, clientId : Text, resource : Text, scopes : [Text], now : Int) : Json.Value {
    let iat = now / 1_000_000_000;
    #object_([
      ("iss", #string(issuer)),
      ("sub", #string(Principal.toText(user))),
      ("aud", #string(resource)),
      ("client_id", #string(clientId)),
      ("scope", #string(Text.join(scopes.vals(), " "))),
      ("iat", #number(Int.toText(iat))),
      ("exp", #number(Int.toText(iat + ACCESS_TTL_S))),
      ("jti", #string(Http.base64url(random()))),
    ]);
  };

  func token(req : Http.UpdateRequest) : async* Http.Response {
    let ps = switch (form(req)) { case (#ok(p)) p; case (#err(r)) return r };
    switch (Http.param(ps, "client_id")) {
      case (?id) if (isClientIdUrl(id)) switch (Grants.client(grants, id)) { case null ignore await* ensureClient(id); case (?_) {} };
      case null {};
    };
    let client = switch (authenticate(ps, req.headers)) { case (#ok(c)) c; case (#err(r)) return r };
    switch (Http.param(ps, "grant_type")) {
      case (?"authorization_code") await* exchangeCode(ps, client);
      case (?"refresh_token") {
        if (Array.find<Text>(client.grant_types, func g = g == "refresh_token") == null) return oauthError(400, "unauthorized_client", "this client did not register the refresh_token grant");
        await* rotate(ps, client);
      };
      case (?other) oauthError(400, "unsupported_grant_type", "unsupported grant_type: " # other);
      case null oauthError(400, "invalid_request", "grant_type is required");
    };
  };

  func exchangeCode(ps : [(Text, Text)], client : Grants.Client) : async* Http.Response {
    let ?presented = Http.param(ps, "code") else return oauthError(400, "invalid_request", "code is required");
    let ?verifier = Http.param(ps, "code_verifier") else return oauthError(400, "invalid_request", "code_verifier is required (PKCE)");
    let now = Time.now();
    let ?code = Grants.code(grants, hashText(presented)) else return oauthError(400, "invalid_grant", "unknown or expired code");
    if (code.client_id != client.id) return oauthError(400, "invalid_grant", "the code was issued to another client");
    switch (code.use) {
      case (#used) {
        // a code presented twice: someone else has it; the tokens it gave are revoked (RFC 6749 section 4.1.2)
        switch (code.family) { case (?f) Grants.revoke(grants, f); case null {} };
        return oauthError(400, "invalid_grant", "the code was already used; the tokens issued for it are revoked");
      };
      case (#inFlight) return oauthError(400, "invalid_grant", "the code is being exchanged");
      case (#unused) {};
    };
    if (code.expires_ns <= now) return oauthError(400, "invalid_grant", "the code expired");
    // A presentation by its client spends the code, whatever follows: a wrong verifier cannot be retried.
    code.use := #used;
    if (Http.param(ps, "redirect_uri") != ?code.redirect_uri) return oauthError(400, "invalid_grant", "redirect_uri does not match the authorization request");
    if (not isVerifier(verifier) or s256(verifier) != code.challenge) return oauthError(400, "invalid_grant", "the PKCE code_verifier does not match the code_challenge");
    switch (Http.param(ps, "resource")) { case (?r) if (r != code.resource) return oauthError(400, "invalid_target", "the resource differs from the one authorized"); case null {} };
    if (not Grants.refreshRoom(grants)) { code.use := #unused; return oauthError(503, "temporarily_unavailable", "the server holds too many grants") };
    code.use := #inFlight;
    let access = try {
      let key = await* ensureKey();
      await* sign(key, accessClaims(code.user, client.id, code.resource, code.scopes, now));
    } catch (e) {
      code.use := #unused; // nothing was issued: the client may try again with the same code
      return oauthError(503, "temporarily_unavailable", "signing failed: " # Error.message(e));
    };
    code.use := #used;
    Grants.markUsed(grants, client.id);
    let wantsRefresh = Array.find<Text>(client.grant_types, func g = g == "refresh_token") != null;
    let f = Grants.newFamily(grants, client.id, code.user, code.scopes, code.resource, now);
    code.family := ?f.id;
    Grants.prune(grants, Time.now());
    if (not wantsRefresh) return tokenResponse(access, null, code.scopes);
    let refresh = secretText();
    Grants.addRefresh(grants, hashText(refresh), f, code.scopes, Time.now());
    tokenResponse(access, ?refresh, code.scopes);
  };

  func rotate(ps : [(Text, Text)], client : Grants.Client) : async* Http.Response {
    let ?presented = Http.param(ps, "refresh_token") else return oauthError(400, "invalid_request", "refresh_token is required");
    let now = Time.now();
    let presentedHash = hashText(presented);
    let ?t = Grants.refreshToken(grants, presentedHash) else {
      switch (Grants.retiredFamily(grants, presentedHash)) {
        case (?f) {
          // a rotated-out token came back: the thief's or the client's copy, either way the family is compromised
          switch (Grants.family(grants, f)) { case (?fam) if (fam.client_id == client.id) Grants.revoke(grants, f); case null {} };
          return oauthError(400, "invalid_grant", "the refresh token was already used; the grant is revoked");
        };
        case null return oauthError(400, "invalid_grant", "unknown or expired refresh token");
      };
    };
    if (t.client_id != client.id) return oauthError(400, "invalid_grant", "the refresh token was issued to another client");
    if (not Grants.live(grants, t.family)) return oauthError(400, "invalid_grant", "the grant was revoked");
    switch (t.use) {
      case (#used) {
        Grants.revoke(grants, t.family); // a rotated-out token came back: the family is compromised
        return oauthError(400, "invalid_grant", "the refresh token was already used; the grant is revoked");
      };
      case (#inFlight) return oauthError(400, "invalid_grant", "the refresh token is being exchanged");
      case (#unused) {};
    };
    if (t.expires_ns <= now) return oauthError(400, "invalid_grant", "the refresh token expired");
    switch (Grants.family(grants, t.family)) {
      case (?f) if (now - f.lastIssuedNs < Grants.MIN_REFRESH_INTERVAL_NS) {
        return oauthError(400, "invalid_request", "tokens were issued for this grant less than a minute ago: use that access token (it lasts 5 minutes)");
      };
      case null {};
    };
    let ?asked = parseScopes(Http.param(ps, "scope")) else return oauthError(400, "invalid_scope", "a scope is malformed");
    let scopes = if (asked.size() == 0) t.scopes else asked;
    for (s in scopes.vals()) if (Array.find<Text>(t.scopes, func g = g == s) == null) return oauthError(400, "invalid_scope", "scope " # s # " was not granted");
    switch (Http.param(ps, "resource")) { case (?r) if (r != t.resource) return oauthError(400, "invalid_target", "the resource differs from the one authorized"); case null {} };
    t.use := #inFlight;
    let access = try {
      let key = await* ensureKey();
      await* sign(key, accessClaims(t.user, client.id, t.resource, scopes, now));
    } catch (e) {
      t.use := #unused;
      return oauthError(503, "temporarily_unavailable", "signing failed: " # Error.message(e));
    };
    t.use := #used;
    let ?f = Grants.family(grants, t.family) else return oauthError(400, "invalid_grant", "the grant is gone");
    Grants.retire(grants, presentedHash, f);
    if (f.revoked) return oauthError(400, "invalid_grant", "the grant was revoked"); // while the token was signed
    f.refreshed += 1;
    f.lastIssuedNs := now;
    let refresh = secretText();
    Grants.addRefresh(grants, hashText(refresh), f, t.scopes, Time.now());
    Grants.prune(grants, Time.now());
    tokenResponse(access, ?refresh, scopes);
  };

  // ---------------------------------------------------------------- /revoke (RFC 7009)

  func revokeEndpoint(req : Http.UpdateRequest) : Http.Response {
    let ps = switch (form(req)) { case (#ok(p)) p; case (#err(r)) return r };
    let client = switch (authenticate(ps, req.headers)) { case (#ok(c)) c; case (#err(r)) return r };
    let ?presented = Http.param(ps, "token") else return oauthError(400, "invalid_request", "token is required");
    // A refresh token ends its grant. An access token (a JWT) expires by itself; an unknown token is not an
    // error (RFC 7009 section 2.2): either way the answer is 200 and says nothing about the token.
    switch (Grants.refreshToken(grants, hashText(presented))) {
      case (?t) if (t.client_id == client.id) Grants.revoke(grants, t.family);
      case null {};
    };
    Http.json(200, "{}", false);
  };

  // ---------------------------------------------------------------- a user's grants

  func grantView(f : Grants.Family) : Grant {
    let name = switch (Grants.client(grants, f.client_id)) { case (?c) c.name; case null "" };
    { id = f.id; client_id = f.client_id; client_name = name; scopes = f.scopes; resource = f.resource; created_at_ns = f.created_ns; revoked = f.revoked; refreshed = f.refreshed };
  };

  public shared query ({ caller }) func my_grants(before : ?Nat, limit : Nat) : async [Grant] {
    Array.map<Grants.Family, Grant>(Grants.grantsOf(grants, caller, before, Nat.min(limit, 100)), grantView);
  };

  // Every live grant of the caller (at most 1,000 a call, newest first): how many were revoked. The browser's
  // grants page uses it; its key is an identity the CLI does not hold.
  public shared ({ caller }) func revoke_my_grants() : async Nat {
    if (Principal.isAnonymous(caller)) return 0;
    var n = 0;
    for (f in Grants.grantsOf(grants, caller, null, 1_000).vals()) if (not f.revoked) { f.revoked := true; n += 1 };
    n;
  };

  public shared ({ caller }) func revoke_grant(id : Nat) : async { #ok; #err : AuthError } {
    let ?f = Grants.family(grants, id) else return #err(#NotFound);
    if (not Principal.equal(f.user, caller)) return #err(#NotFound); // someone else's grant is not theirs to see
    f.revoked := true;
    #ok;
  };

  // ---------------------------------------------------------------- payments

  func hasPaymentGrant(user : Principal, resource : Text) : Bool {
    Grants.hasLiveScope(grants, user, resource, PAYMENT_SCOPE);
  };

  func describe(e : TransferFromError) : Text {
    switch e {
      case (#InsufficientAllowance({ allowance })) "InsufficientAllowance: the allowance left is " # Nat.toText(allowance);
      case (#InsufficientFunds({ balance })) "InsufficientFunds: the balance is " # Nat.toText(balance);
      case (#BadFee({ expected_fee })) "BadFee: expected " # Nat.toText(expected_fee);
      case (#BadBurn(_)) "BadBurn";
      case (#TooOld) "TooOld";
      case (#CreatedInFuture(_)) "CreatedInFuture";
      case (#Duplicate({ duplicate_of })) "Duplicate of " # Nat.toText(duplicate_of);
      case (#TemporarilyUnavailable) "TemporarilyUnavailable";
      case (#GenericError({ message })) "GenericError: " # message;
    };
  };

  func chargeView(c : Payments.Charge) : ChargeView {
    let state : ChargeState = switch (c.state) { case (#inFlight) #InFlight; case (#unknown(t)) #Unknown(t); case (#paid(p)) #Paid(p); case (#failed(t)) #Failed(t) };
    { id = c.id; server = c.server; user = c.user; ledger = c.ledger; resource = c.resource; amount = c.amount; request_id = c.request_id; at_ns = c.at_ns; state };
  };

  // A charge is paid once (the only transition into Paid), and its block is appended then.
  func paid(c : Payments.Charge, block : Nat) {
    c.state := #paid({ block });
    ignore Icrc3.append(chargeLog, hasher, Time.now(), "charge", [
      ("charge_id", #Nat(c.id)),
      ("user", #Blob(Principal.toBlob(c.user))),
      ("server", #Blob(Principal.toBlob(c.server))),
      ("resource", #Text(c.resource)),
      ("ledger", #Blob(Principal.toBlob(c.ledger))),
      ("amt", #Nat(c.amount)),
      ("request_id", #Text(c.request_id)),
      ("ledger_block", #Nat(block)),
    ]);
    certify();
  };

  func release(c : Payments.Charge) {
    switch (Payments.limit(payments, c.user, c.resource, c.ledger)) { case (?l) l.spent -= Nat.min(c.amount, l.spent); case null {} };
  };

  // Charge a user for one use of the caller's service. Idempotent per (caller, request_id): a retry returns the
  // first outcome, or, when the ledger's answer was lost, sends the identical transfer again (same
  // created_at_time and memo: the ledger deduplicates it within its 24-hour window).
  public shared ({ caller }) func charge_user(args : ChargeArgs) : async { #ok : { block : Nat; charge_id : Nat }; #err : ChargeError } {
    let ?srv = Payments.server(payments, caller) else return #err(#NotRegistered);
    if (args.request_id.size() == 0 or args.request_id.size() > Payments.MAX_REQUEST_ID) return #err(#InvalidArgument("request_id must have 1 to 64 characters"));
    if (args.amount == 0) return #err(#InvalidArgument("the amount must be positive"));
    let charge = switch (Payments.byRequest(payments, caller, args.request_id)) {
      case (?c) {
        if (not Principal.equal(c.user, args.user) or c.amount != args.amount or not Principal.equal(c.ledger, args.ledger)) {
          return #err(#Conflict("request_id " # args.request_id # " was used for another charge"));
        };
        switch (c.state) {
          case (#paid({ block })) return #ok({ block; charge_id = c.id });
          case (#failed(why)) return #err(#Failed(why));
          case (#inFlight) return #err(#InFlight);
          case (#unknown(_)) { c.state := #inFlight; c };
        };
      };
      case null {
        if (Array.find<Principal>(srv.ledgers, func l = Principal.equal(l, args.ledger)) == null) return #err(#LedgerNotAccepted);
        if (not hasPaymentGrant(args.user, srv.resource)) return #err(#NoPaymentGrant);
        let ?l = Payments.limit(payments, args.user, srv.resource, args.ledger) else return #err(#NoLimit);
        if (args.amount > l.max_per_charge or l.spent + args.amount > l.max_total) {
          return #err(#OverLimit({ max_per_charge = l.max_per_charge; max_total = l.max_total; spent = l.spent }));
        };
        l.spent += args.amount; // held before the call: concurrent charges cannot pass the limit together
        Payments.record(payments, caller, srv.payee, args.user, args.ledger, srv.resource, args.amount, args.request_id, Time.now());
      };
    };
    let arg : TransferFromArgs = { spender_subaccount = null; from = { owner = charge.user; subaccount = null }; to = charge.payee; amount = charge.amount; fee = null; memo = ?charge.memo; created_at_time = ?charge.created_at_time };
    // A raw call, decoded here: a reply this canister cannot decode (a ledger with more error variants) leaves the
    // charge Unknown, where a typed call would trap after the await and leave it InFlight for good.
    let raw = try { await InternetComputer.call(charge.ledger, "icrc2_transfer_from", to_candid (arg)) } catch (e) {
      charge.state := #unknown(Error.message(e));
      return #err(#Unknown(Error.message(e) # "; retry with the same request_id"));
    };
    let ?reply : ?TransferFromResult = from_candid (raw) else {
      charge.state := #unknown("the ledger's reply is not an ICRC-2 transfer_from result");
      return #err(#Unknown("the ledger's reply is not an ICRC-2 transfer_from result; retry with the same request_id"));
    };
    switch reply {
      case (#Ok(block)) { paid(charge, block); #ok({ block; charge_id = charge.id }) };
      case (#Err(#Duplicate({ duplicate_of }))) { paid(charge, duplicate_of); #ok({ block = duplicate_of; charge_id = charge.id }) };
      case (#Err(#TooOld)) {
        // past the ledger's deduplication window, a lost first attempt can no longer be told from none
        charge.state := #unknown("too old for the ledger to deduplicate: check the ledger for memo " # Sha256.toHex(charge.memo));
        #err(#Unknown("the charge is older than the ledger's deduplication window"));
      };
      case (#Err(#TemporarilyUnavailable)) { charge.state := #unknown("TemporarilyUnavailable"); #err(#Unknown("the ledger is temporarily unavailable; retry with the same request_id")) };
      case (#Err(e)) {
        let why = describe(e);
        charge.state := #failed(why);
        release(charge);
        #err(#Failed(why));
      };
    };
  };

  public shared ({ caller }) func set_spending_limit(args : { resource : Text; ledger : Principal; max_per_charge : Nat; max_total : Nat }) : async { #ok; #err : AuthError } {
    if (Principal.isAnonymous(caller)) return #err(#NotAuthorized);
    if (not isWebUri(args.resource)) return #err(#InvalidArgument("the resource is an absolute https (or loopback http) URI"));
    if (args.max_per_charge > args.max_total) return #err(#InvalidArgument("max_per_charge is above max_total"));
    if (not Payments.setLimit(payments, caller, args.resource, args.ledger, args.max_per_charge, args.max_total)) return #err(#InvalidArgument("at most 100 spending limits per user"));
    #ok;
  };

  public shared query ({ caller }) func my_spending_limits() : async [SpendingLimit] {
    Array.map<Payments.Limit, SpendingLimit>(Payments.limitsOf(payments, caller), func l = { resource = l.resource; ledger = l.ledger; max_per_charge = l.max_per_charge; max_total = l.max_total; spent = l.spent });
  };

  public shared query ({ caller }) func my_charges(before : ?Nat, limit : Nat) : async [ChargeView] {
    Array.map<Payments.Charge, ChargeView>(Payments.chargesOf(payments, caller, before, Nat.min(limit, 100)), chargeView);
  };

  // A resource server's view of one of its charges (to resolve an `Unknown` without charging again).
  public shared query ({ caller }) func get_charge(request_id : Text) : async ?ChargeView {
    switch (Payments.byRequest(payments, caller, request_id)) { case (?c) ?chargeView(c); case null null };
  };

  public query func resource_servers() : async [ResourceServer] { Payments.servers(payments) };

  public shared ({ caller }) func register_resource_server(srv : ResourceServer) : async { #ok; #err : AuthError } {
    if (not isGovernance(caller)) return #err(#NotAuthorized);
    if (Principal.isAnonymous(srv.principal)) return #err(#InvalidArgument("the anonymous principal cannot charge"));
    if (not isWebUri(srv.resource) or Text.contains(srv.resource, #char '?')) return #err(#InvalidArgument("the resource is an absolute https (or loopback http) URI without query"));
    if (srv.name.size() == 0 or srv.name.size() > 100 or srv.ledgers.size() == 0 or srv.ledgers.size() > 8) return #err(#InvalidArgument("a name of 1 to 100 characters and 1 to 8 ledgers"));
    switch (Payments.serverFor(payments, srv.resource)) {
      case (?other) if (not Principal.equal(other.principal, srv.principal)) return #err(#InvalidArgument("another server is registered for this resource"));
      case null {};
    };
    if (not Payments.register(payments, srv)) return #err(#Unavailable("at most 1,000 resource servers"));
    #ok;
  };

  public shared ({ caller }) func unregister_resource_server(p : Principal) : async { #ok; #err : AuthError } {
    if (not isGovernance(caller)) return #err(#NotAuthorized);
    if (Payments.unregister(payments, p)) #ok else #err(#NotFound);
  };

  // ---------------------------------------------------------------- ICRC-3: the charges

  public query func icrc3_get_blocks(args : [Icrc3.BlockRange]) : async {
    log_length : Nat;
    blocks : [{ id : Nat; block : Icrc3.Value }];
    archived_blocks : [{ args : [Icrc3.BlockRange]; callback : shared query ([Icrc3.BlockRange]) -> async { blocks : [{ id : Nat; block : Icrc3.Value }] } }];
  } {
    let got = Icrc3.get(chargeLog, args);
    { log_length = got.log_length; blocks = got.blocks; archived_blocks = [] };
  };

  // The tip's labels in the tree that also certifies the HTTP responses (pruned here).
  public query func icrc3_get_tip_certificate() : async ?{ certificate : Blob; hash_tree : Blob } {
    if (chargeLog.lastHash == null) return null;
    let ?certificate = CertifiedData.getCertificate() else return null;
    ?{ certificate; hash_tree = CertifiedHttp.cbor(CertifiedHttp.witness(httpTree, [[Text.encodeUtf8("last_block_hash")], [Text.encodeUtf8("last_block_index")]])) };
  };

  public query func icrc3_supported_block_types() : async [{ block_type : Text; url : Text }] {
    [{ block_type = "charge"; url = "https://github.com/prometheus-protocol/prometheus/blob/main/docs/auth.md#payments" }];
  };

  public query func icrc3_get_archives(_ : { from : ?Principal }) : async [{ canister_id : Principal; start : Nat; end : Nat }] { [] };

  public query func icrc10_supported_standards() : async [{ name : Text; url : Text }] {
    [
      { name = "ICRC-3"; url = "https://github.com/dfinity/ICRC-1/tree/main/standards/ICRC-3" },
      { name = "ICRC-10"; url = "https://github.com/dfinity/ICRC/blob/main/ICRCs/ICRC-10/ICRC-10.md" },
    ];
  };

  // ---------------------------------------------------------------- governance

  public query func signing_keys() : async [SigningKey] { keys };

  public query func issuer_url() : async Text { issuer };

  public shared ({ caller }) func set_issuer(url : Text) : async { #ok; #err : AuthError } {
    if (not isGovernance(caller)) return #err(#NotAuthorized);
    if (not isIssuer(url)) return #err(#InvalidArgument("an issuer is an https (or loopback http) URL without query, fragment or trailing slash"));
    issuer := url;
    certify();
    #ok;
  };

  // A new signing key; the previous one stays published so tokens it signed still verify until they expire.
  public shared ({ caller }) func rotate_signing_key() : async { #ok : SigningKey; #err : AuthError } {
    if (not isGovernance(caller)) return #err(#NotAuthorized);
    let next = if (keys.size() == 0) 0 else keys[0].generation + 1;
    let k = try { await* fetchKey(next) } catch (e) { return #err(#Unavailable(Error.message(e))) };
    if (keys.size() > 0 and keys[0].generation >= next) return #err(#Unavailable("another rotation finished first"));
    keys := Array.sliceToArray(Array.concat([k], keys), 0, MAX_PUBLISHED_KEYS);
    certify();
    #ok(k);
  };

  public shared ({ caller }) func set_governance(p : Principal) : async { #ok; #err : AuthError } {
    if (not isGovernance(caller)) return #err(#NotAuthorized);
    if (Principal.isAnonymous(p)) return #err(#InvalidArgument("the anonymous principal cannot govern"));
    governance := p;
    #ok;
  };

  public shared query ({ caller }) func memory_stats() : async { #ok : MemoryStats.Stats; #err : AuthError } {
    if (not isGovernance(caller) and not Principal.isController(caller)) return #err(#NotAuthorized);
    #ok(MemoryStats.now());
  };

  transient let _certified : () = certify(); // at install and after every upgrade (transient state is rebuilt)
};
