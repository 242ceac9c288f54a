// JSON (RFC 8259) for the OAuth endpoints: a strict parser for request bodies (dynamic client registration)
// and the writers the responses need. Bounded: the caller limits the input's size, the parser its depth, and
// numbers are kept as their text (nothing here does arithmetic on them). Invalid input is `null`, never a trap.
import Array "mo:core/Array";
import Char "mo:core/Char";
import List "mo:core/List";
import Nat32 "mo:core/Nat32";
import Text "mo:core/Text";

import Chars "Chars";

module {

  public type Value = {
    #null_;
    #bool : Bool;
    #number : Text;
    #string : Text;
    #array : [Value];
    #object_ : [(Text, Value)];
  };

  public let MAX_DEPTH = 16;

  public func parse(t : Text) : ?Value {
    let p = { chars = Text.toArray(t); var i = 0 };
    skipSpace(p);
    let ?v = value(p, 0) else return null;
    skipSpace(p);
    if (p.i != p.chars.size()) null else ?v;
  };

  type Parser = { chars : [Char]; var i : Nat };

  func peek(p : Parser) : ?Char { if (p.i < p.chars.size()) ?p.chars[p.i] else null };

  func skipSpace(p : Parser) {
    while (p.i < p.chars.size() and (p.chars[p.i] == ' ' or p.chars[p.i] == '\t' or p.chars[p.i] == '\n' or p.chars[p.i] == '\r')) p.i += 1;
  };

  func literal(p : Parser, word : Text, v : Value) : ?Value {
    for (c in word.chars()) {
      if (peek(p) != ?c) return null;
      p.i += 1;
    };
    ?v;
  };

  func value(p : Parser, depth : Nat) : ?Value {
    if (depth > MAX_DEPTH) return null;
    switch (peek(p)) {
      case (?'{') objectValue(p, depth);
      case (?'[') arrayValue(p, depth);
      case (?'\"') switch (stringValue(p)) { case (?s) ?#string(s); case null null };
      case (?'t') literal(p, "true", #bool(true));
      case (?'f') literal(p, "false", #bool(false));
      case (?'n') literal(p, "null", #null_);
      case (?c) if (c == '-' or Char.isDigit(c)) number(p) else null;
      case null null;
    };
  };

  func objectValue(p : Parser, depth : Nat) : ?Value {
    p.i += 1;
    let out = List.empty<(Text, Value)>();
    skipSpace(p);
    if (peek(p) == ?'}') { p.i += 1; return ?#object_([]) };
    loop {
      skipSpace(p);
      if (peek(p) != ?'\"') return null;
      let ?k = stringValue(p) else return null;
      // a duplicate member name is refused: which of the two a reader sees differs between parsers
      if (List.any<(Text, Value)>(out, func((n, _)) = n == k)) return null;
      skipSpace(p);
      if (peek(p) != ?':') return null;
      p.i += 1;
      skipSpace(p);
      let ?v = value(p, depth + 1) else return null;
      List.add(out, (k, v));
      skipSpace(p);
      switch (peek(p)) {
        case (?',') p.i += 1;
        case (?'}') { p.i += 1; return ?#object_(List.toArray(out)) };
        case _ return null;
      };
    };
  };

  func arrayValue(p : Parser, depth : Nat) : ?Value {
    p.i += 1;
    let out = List.empty<Value>();
    skipSpace(p);
    if (peek(p) == ?']') { p.i += 1; return ?#array([]) };
    loop {
      skipSpace(p);
      let ?v = value(p, depth + 1) else return null;
      List.add(out, v);
      skipSpace(p);
      switch (peek(p)) {
        case (?',') p.i += 1;
        case (?']') { p.i += 1; return ?#array(List.toArray(out)) };
        case _ return null;
      };
    };
  };

  func hexDigit(c : Char) : ?Nat32 {
    let n = Char.toNat32(c);
    if (c >= '0' and c <= '9') ?(n - 48) else if (c >= 'a' and c <= 'f') ?(n - 87) else if (c >= 'A' and c <= 'F') ?(n - 55) else null;
  };

  func hex4(p : Parser) : ?Nat32 {
    var n : Nat32 = 0;
    for (_ in Nat32.range(0, 4)) {
      let ?c = peek(p) else return null;
      let ?d = hexDigit(c) else return null;
      n := n * 16 + d;
      p.i += 1;
    };
    ?n;
  };

  func stringValue(p : Parser) : ?Text {
    p.i += 1;
    let out = List.empty<Char>(); // then one flat Text (Chars.mo): a redirect URI or a name is kept
    loop {
      let ?c = peek(p) else return null;
      p.i += 1;
      if (c == '\"') return ?Chars.toText(out);
      if (Char.toNat32(c) < 0x20) return null;
      if (c != '\\') List.add(out, c) else {
        let ?e = peek(p) else return null;
        p.i += 1;
        switch (e) {
          case ('\"') List.add(out, '\"');
          case ('\\') List.add(out, '\\');
          case ('/') List.add(out, '/');
          case ('b') List.add(out, '\u{08}');
          case ('f') List.add(out, '\u{0c}');
          case ('n') List.add(out, '\n');
          case ('r') List.add(out, '\r');
          case ('t') List.add(out, '\t');
          case ('u') {
            let ?hi = hex4(p) else return null;
            let code : Nat32 = if (hi >= 0xD800 and hi <= 0xDBFF) {
              // a high surrogate must be followed by an escaped low one; a lone surrogate is refused
              if (peek(p) != ?'\\') return null;
              p.i += 1;
              if (peek(p) != ?'u') return null;
              p.i += 1;
              let ?lo = hex4(p) else return null;
              if (lo < 0xDC00 or lo > 0xDFFF) return null;
              0x10000 + (hi - 0xD800) * 0x400 + (lo - 0xDC00);
            } else if (hi >= 0xDC00 and hi <= 0xDFFF) return null else hi;
            List.add(out, Char.fromNat32(code));
          };
          case _ return null;
        };
      };
    };
  };

  func digits(p : Parser) : Nat {
    let start = p.i;
    while (p.i < p.chars.size() and Char.isDigit(p.chars[p.i])) p.i += 1;
    p.i - start;
  };

  func number(p : Parser) : ?Value {
    let start = p.i;
    if (peek(p) == ?'-') p.i += 1;
    if (peek(p) == ?'0') p.i += 1 else if (digits(p) == 0) return null;
    if (peek(p) == ?'.') { p.i += 1; if (digits(p) == 0) return null };
    if (peek(p) == ?'e' or peek(p) == ?'E') {
      p.i += 1;
      if (peek(p) == ?'+' or peek(p) == ?'-') p.i += 1;
      if (digits(p) == 0) return null;
    };
    var t = "";
    var j = start;
    while (j < p.i) { t #= Char.toText(p.chars[j]); j += 1 };
    ?#number(t);
  };

  // ---------------------------------------------------------------- reading members

  public func field(v : Value, name : Text) : ?Value {
    switch v {
      case (#object_(members)) { for ((k, x) in members.vals()) if (k == name) return ?x; null };
      case _ null;
    };
  };

  // ---------------------------------------------------------------- writing

  public func quote(t : Text) : Text {
    var out = "\"";
    for (c in t.chars()) {
      let n = Char.toNat32(c);
      out #= (
        if (c == '\"') "\\\"" else if (c == '\\') "\\\\" else if (c == '\n') "\\n" else if (c == '\r') "\\r" else if (c == '\t') "\\t" else if (n < 0x20 or n == 0x2028 or n == 0x2029) {
          "\\u" # hex(n);
        } else Char.toText(c)
      );
    };
    out # "\"";
  };

  func hex(n : Nat32) : Text {
    let table = Text.toArray("0123456789abcdef");
    Char.toText(table[Nat32.toNat((n >> 12) & 15)]) # Char.toText(table[Nat32.toNat((n >> 8) & 15)]) # Char.toText(table[Nat32.toNat((n >> 4) & 15)]) # Char.toText(table[Nat32.toNat(n & 15)]);
  };

  public func write(v : Value) : Text {
    switch v {
      case (#null_) "null";
      case (#bool(b)) if b "true" else "false";
      case (#number(n)) n;
      case (#string(s)) quote(s);
      case (#array(items)) {
        var out = "[";
        var first = true;
        for (x in items.vals()) { if (not first) out #= ","; first := false; out #= write(x) };
        out # "]";
      };
      case (#object_(members)) {
        var out = "{";
        var first = true;
        for ((k, x) in members.vals()) { if (not first) out #= ","; first := false; out #= quote(k) # ":" # write(x) };
        out # "}";
      };
    };
  };

  public func strings(items : [Text]) : Value {
    #array(Array.map<Text, Value>(items, func s = #string(s)));
  };
};
