// The IC's HTTP interface as the OAuth endpoints need it: request and response records (the HTTP Gateway
// Protocol's `http_request` / `http_request_update`), URL and form decoding (RFC 3986 percent-encoding,
// application/x-www-form-urlencoded), base64url, HTML escaping, and the responses every endpoint sends.
// Decoders return `null` on malformed input: the caller answers 400, nothing traps on what a client sends.
import Array "mo:core/Array";
import Base64 "mo:core/Base64";
import Blob "mo:core/Blob";
import Char "mo:core/Char";
import List "mo:core/List";
import Nat8 "mo:core/Nat8";
import Nat32 "mo:core/Nat32";
import Text "mo:core/Text";

import Chars "Chars";

module {

  public type HeaderField = (Text, Text);
  public type Request = { method : Text; url : Text; headers : [HeaderField]; body : Blob; certificate_version : ?Nat16 };
  public type UpdateRequest = { method : Text; url : Text; headers : [HeaderField]; body : Blob };
  public type Response = { status_code : Nat16; headers : [HeaderField]; body : Blob; upgrade : ?Bool };

  public func upgrade() : Response { { status_code = 200; headers = []; body = ""; upgrade = ?true } };

  // The URL's path (before `?` and `#`) and its query (between `?` and `#`).
  public func split(url : Text) : (Text, Text) {
    let noFragment = switch (Text.split(url, #char '#').next()) { case (?u) u; case null "" };
    let parts = Text.split(noFragment, #char '?');
    let path = switch (parts.next()) { case (?p) p; case null "" };
    var rest = "";
    var first = true;
    for (p in parts) { rest #= (if first "" else "?") # p; first := false };
    (path, rest);
  };

  public func header(headers : [HeaderField], name : Text) : ?Text {
    let lower = Text.toLower(name);
    for ((k, v) in headers.vals()) if (Text.toLower(k) == lower) return ?v;
    null;
  };

  // `name=value&...` with percent-decoding (and `+` as a space, as forms send it). A parameter sent twice is
  // refused (RFC 6749 section 3.1: request and response parameters MUST NOT be included more than once).
  public func params(q : Text) : ?[(Text, Text)] {
    let out = List.empty<(Text, Text)>();
    if (q == "") return ?[];
    for (pair in Text.split(q, #char '&')) {
      if (pair != "") {
        let kv = Text.split(pair, #char '=');
        let ?rawKey = kv.next() else return null;
        var rawValue = "";
        var first = true;
        for (p in kv) { rawValue #= (if first "" else "=") # p; first := false };
        let ?k = percentDecode(rawKey) else return null;
        let ?v = percentDecode(rawValue) else return null;
        if (List.any<(Text, Text)>(out, func((n, _)) = n == k)) return null;
        List.add(out, (k, v));
      };
    };
    ?List.toArray(out);
  };

  public func param(ps : [(Text, Text)], name : Text) : ?Text {
    for ((k, v) in ps.vals()) if (k == name) return ?v;
    null;
  };

  func hexValue(c : Char) : ?Nat8 {
    let n = Char.toNat32(c);
    if (c >= '0' and c <= '9') ?Nat8.fromNat(Nat32.toNat(n - 48)) else if (c >= 'a' and c <= 'f') ?Nat8.fromNat(Nat32.toNat(n - 87)) else if (c >= 'A' and c <= 'F') ?Nat8.fromNat(Nat32.toNat(n - 55)) else null;
  };

  public func percentDecode(t : Text) : ?Text {
    let bytes = List.empty<Nat8>();
    let chars = Text.toArray(t);
    var i = 0;
    while (i < chars.size()) {
      let c = chars[i];
      if (c == '%') {
        if (i + 2 >= chars.size()) return null;
        let ?hi = hexValue(chars[i + 1]) else return null;
        let ?lo = hexValue(chars[i + 2]) else return null;
        List.add(bytes, hi * 16 + lo);
        i += 3;
      } else {
        if (c == '+') List.add<Nat8>(bytes, 32) else for (b in Text.encodeUtf8(Char.toText(c)).vals()) List.add(bytes, b);
        i += 1;
      };
    };
    Text.decodeUtf8(Blob.fromArray(List.toArray(bytes)));
  };

  public func percentEncode(t : Text) : Text {
    let table = Text.toArray("0123456789ABCDEF");
    var out = "";
    for (b in Text.encodeUtf8(t).vals()) {
      let c = Char.fromNat32(Nat32.fromNat(Nat8.toNat(b)));
      if ((c >= 'a' and c <= 'z') or (c >= 'A' and c <= 'Z') or (c >= '0' and c <= '9') or c == '-' or c == '.' or c == '_' or c == '~') {
        out #= Char.toText(c);
      } else {
        out #= "%" # Char.toText(table[Nat8.toNat(b / 16)]) # Char.toText(table[Nat8.toNat(b % 16)]);
      };
    };
    out;
  };

  // RFC 4648 section 5, unpadded (JWS, PKCE, the codes and tokens this server issues).
  public func base64url(b : Blob) : Text {
    let out = List.empty<Char>();
    for (c in Base64.encode(b).chars()) {
      if (c == '+') List.add(out, '-') else if (c == '/') List.add(out, '_') else if (c != '=') List.add(out, c);
    };
    Chars.toText(out); // flat: client ids are kept
  };

  func base64Value(c : Char) : ?Nat32 {
    let n = Char.toNat32(c);
    if (c >= 'A' and c <= 'Z') ?(n - 65) else if (c >= 'a' and c <= 'z') ?(n - 71) else if (c >= '0' and c <= '9') ?(n + 4) else if (c == '+') ?62 else if (c == '/') ?63 else null;
  };

  // RFC 4648 section 4 with padding (HTTP Basic authentication); anything else is `null`.
  public func base64Decode(t : Text) : ?Blob {
    let chars = Text.toArray(t);
    if (chars.size() % 4 != 0) return null;
    let out = List.empty<Nat8>();
    var i = 0;
    while (i < chars.size()) {
      var acc : Nat32 = 0;
      var pad = 0;
      for (j in Nat32.range(0, 4)) {
        let c = chars[i + Nat32.toNat(j)];
        if (c == '=') {
          if (i + 4 != chars.size() or j < 2) return null;
          pad += 1;
          acc := acc << 6;
        } else {
          if (pad > 0) return null;
          let ?v = base64Value(c) else return null;
          acc := (acc << 6) | v;
        };
      };
      List.add(out, Nat8.fromNat(Nat32.toNat((acc >> 16) & 255)));
      if (pad < 2) List.add(out, Nat8.fromNat(Nat32.toNat((acc >> 8) & 255)));
      if (pad < 1) List.add(out, Nat8.fromNat(Nat32.toNat(acc & 255)));
      i += 4;
    };
    ?Blob.fromArray(List.toArray(out));
  };

  public func escapeHtml(t : Text) : Text {
    Text.flatMap(t, func c = if (c == '<') "&lt;" else if (c == '>') "&gt;" else if (c == '&') "&amp;" else if (c == '\"') "&quot;" else if (c == '\'') "&#39;" else Char.toText(c));
  };

  let SECURITY : [HeaderField] = [("X-Content-Type-Options", "nosniff"), ("Referrer-Policy", "no-referrer")];
  let CORS : [HeaderField] = [("Access-Control-Allow-Origin", "*")];

  // JSON for programs. `store = false` adds `Cache-Control: no-store` (tokens, registrations, errors).
  public func json(status : Nat16, body : Text, cacheable : Bool) : Response {
    let cache : [HeaderField] = if cacheable [("Cache-Control", "public, max-age=300")] else [("Cache-Control", "no-store"), ("Pragma", "no-cache")];
    {
      status_code = status;
      headers = Array.flatten<HeaderField>([[("Content-Type", "application/json")], cache, CORS, SECURITY]);
      body = Text.encodeUtf8(body);
      upgrade = null;
    };
  };

  public func html(status : Nat16, body : Text) : Response {
    {
      status_code = status;
      headers = Array.flatten<HeaderField>([[("Content-Type", "text/html; charset=utf-8"), ("Cache-Control", "no-store"), ("Content-Security-Policy", "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; frame-ancestors 'none'"), ("X-Frame-Options", "DENY"), ("Cross-Origin-Opener-Policy", "same-origin")], SECURITY]);
      body = Text.encodeUtf8(body);
      upgrade = null;
    };
  };


  // A script this canister serves (its pages load only these: `script-src 'self'`).
  public func script(body : Text) : Response {
    {
      status_code = 200;
      headers = Array.flatten<HeaderField>([[("Content-Type", "text/javascript; charset=utf-8"), ("Cache-Control", "public, max-age=300")], SECURITY]);
      body = Text.encodeUtf8(body);
      upgrade = null;
    };
  };

  // A CORS preflight: browser-based OAuth clients (e.g. MCP inspectors) read metadata and call the token endpoint.
  public func preflight() : Response {
    {
      status_code = 204;
      headers = [("Access-Control-Allow-Origin", "*"), ("Access-Control-Allow-Methods", "GET, POST, OPTIONS"), ("Access-Control-Allow-Headers", "Authorization, Content-Type, MCP-Protocol-Version"), ("Access-Control-Max-Age", "600")];
      body = "";
      upgrade = null;
    };
  };
};
