// Every size and count limit of the registry, in one place, with the validators that enforce them. A stored
// field is checked here before it is stored, so every query's reply stays bounded by construction.
import Nat "mo:core/Nat";
import Text "mo:core/Text";

import T "Types";

module {

  // Uploads
  public let MAX_CHUNK_BYTES = 1_048_576;
  public let MAX_CHUNKS = 64; // a wasm of at most 64 MiB
  public let MAX_CHUNKS_AHEAD = 4; // how far past the hashed prefix a chunk may arrive (bounds one message's hashing)
  public let UPLOAD_TTL_NS : Int = 86_400_000_000_000; // an incomplete upload expires a day after it began
  public let MAX_INCOMPLETE_PER_PRINCIPAL = 2;
  public let MAX_WASMS_PER_NAMESPACE = 1000;
  // What all uploads may hold (Uploads.Budget; governance may lower or raise it up to the caps). Principals are
  // free, so the per-principal and per-namespace quotas above do not bound these.
  public let DEFAULT_INCOMPLETE_UPLOAD_BYTES = 536_870_912; // 512 MiB: heap held by incomplete uploads
  public let MAX_INCOMPLETE_UPLOAD_BYTES = 1_073_741_824; // 1 GiB
  public let DEFAULT_STORED_WASM_BYTES = 2_147_483_648; // 2 GiB: complete modules, in stable memory
  public let MAX_STORED_WASM_BYTES = 3_221_225_472; // 3 GiB: moc caps stable memory at 4 GiB (regions use some)

  // Namespaces and versions
  public let MAX_NAMESPACES_PER_PRINCIPAL = 10;
  public let MAX_CONTROLLERS = 10;
  public let MAX_VERSIONS_PER_NAMESPACE = 500;
  public let MAX_VERSION_PART = 4_294_967_295; // each of MAJOR.MINOR.PATCH (readers decode every logged number)

  // Rounds, bounties, filings
  public let MAX_ROUNDS_PER_WASM = 10; // per namespace
  public let MAX_LIVE_BOUNTIES_PER_ROUND = 20;
  public let MAX_BOUNTIES_PER_ROUND = 100;
  public let MIN_BOUNTY_DURATION_NS : Int = 3_600_000_000_000; // a bounty runs at least an hour
  public let MAX_BOUNTY_DURATION_NS : Int = 31_622_400_000_000_000; // 366 days

  // Text and metadata
  public let MAX_TEXT_BYTES = 1024;
  public let MAX_REPO_BYTES = 512;
  public let MAX_AUDIT_TYPE_CHARS = 64;
  public let MAX_METADATA_ENTRIES = 32;
  public let MAX_METADATA_KEY_BYTES = 64;
  public let MAX_METADATA_BYTES = 8_192; // what one metadata map may weigh in all
  public let MAX_METADATA_DEPTH = 4;
  public let MAX_REPORT_BYTES = 4_096;
  public let NODE_WEIGHT = 16; // what every metadata node costs on top of its content (tags, lengths)
  public let MAX_NAMESPACE_SCAN = 100; // namespaces looked at when a call names a wasm but no namespace
  public let MAX_AMBIGUOUS_LISTED = 5; // namespaces an Ambiguous error names (the scan stops at one more)

  // Replies: the IC caps a reply at 2 MiB; every list reply stays well below.
  public let MAX_PAGE = 100;
  public let MAX_REPLY_BYTES = 1_048_576;
  public let MAX_BLOCK_RANGES = 16;

  public func bytes(t : Text) : Nat { t.encodeUtf8().size() };

  public func text(t : Text, max : Nat) : Bool { t.size() > 0 and t.size() <= max and bytes(t) <= max };

  // Audit types are identifiers: [a-z0-9_.:-], 1..64 characters.
  public func auditType(t : Text) : Bool {
    if (t.size() == 0 or t.size() > MAX_AUDIT_TYPE_CHARS) return false;
    for (c in t.chars()) {
      if (not ((c >= 'a' and c <= 'z') or (c >= '0' and c <= '9') or c == '_' or c == '.' or c == ':' or c == '-')) return false;
    };
    true;
  };

  public func lowerHex(t : Text, size : Nat) : Bool {
    if (t.size() != size) return false;
    for (c in t.chars()) { if (not ((c >= '0' and c <= '9') or (c >= 'a' and c <= 'f'))) return false };
    true;
  };

  // Reverse-DNS: two or more dot-separated labels of [a-z0-9-], 1..63 characters each, no leading or trailing '-'.
  public func namespace(ns : Text) : Bool {
    if (ns.size() == 0 or ns.size() > 253) return false;
    var labels = 0;
    for (l in Text.split(ns, #char '.')) {
      labels += 1;
      let n = l.size();
      if (n == 0 or n > 63 or Text.startsWith(l, #char '-') or Text.endsWith(l, #char '-')) return false;
      for (c in l.chars()) {
        if (not ((c >= 'a' and c <= 'z') or (c >= '0' and c <= '9') or c == '-')) return false;
      };
    };
    labels >= 2;
  };

  // A repository URL: http(s), no whitespace or control characters, at most 512 bytes.
  public func repo(url : Text) : Bool {
    if (not text(url, MAX_REPO_BYTES)) return false;
    if (not (Text.startsWith(url, #text "https://") or Text.startsWith(url, #text "http://"))) return false;
    for (c in url.chars()) { if (c <= ' ' or c == '\u{7f}') return false };
    true;
  };

  // ICRC-16 metadata: at most 32 entries, keys 1..64 bytes, nesting at most 4 deep, at most 8 KiB in all.
  // Returns an explanation when the map is refused.
  public func metadata(m : T.ICRC16Map) : ?Text {
    if (m.size() > MAX_METADATA_ENTRIES) return ?("metadata has more than " # Nat.toText(MAX_METADATA_ENTRIES) # " entries");
    var weight = 0;
    for ((k, v) in m.vals()) {
      if (not text(k, MAX_METADATA_KEY_BYTES)) return ?"metadata keys are 1..64 bytes";
      weight += bytes(k) + NODE_WEIGHT;
      switch (valueWeight(v, 1, MAX_METADATA_BYTES)) {
        case (?w) weight += w;
        case null return ?"a metadata value is too large, too deep or of an unsupported kind";
      };
      if (weight > MAX_METADATA_BYTES) return ?("metadata is larger than " # Nat.toText(MAX_METADATA_BYTES) # " bytes");
    };
    null;
  };

  // The stored size of one value (every node costs NODE_WEIGHT, so empty arrays and maps are not free), or
  // null when it is too deep, too large or of a kind we do not store.
  func valueWeight(v : T.ICRC16, depth : Nat, budget : Nat) : ?Nat {
    if (depth > MAX_METADATA_DEPTH) return null;
    let w : Nat = NODE_WEIGHT + (switch (v) {
      case (#Text(t)) bytes(t);
      case (#Blob(b)) b.size();
      case (#Nat(n)) { if (n >= 2 ** 256) return null; 32 };
      case (#Int(i)) { if (i >= 2 ** 255 or i < -(2 ** 255)) return null; 32 };
      case (#Bool(_) or #Nat8(_) or #Int8(_)) 1;
      case (#Nat16(_) or #Int16(_)) 2;
      case (#Nat32(_) or #Int32(_)) 4;
      case (#Nat64(_) or #Int64(_) or #Float(_)) 8;
      case (#Principal(_)) 29;
      case (#Array(items)) {
        if (items.size() > MAX_METADATA_ENTRIES) return null;
        var sum = 0;
        for (x in items.vals()) {
          switch (valueWeight(x, depth + 1, budget)) { case (?n) sum += n; case null return null };
          if (sum > budget) return null;
        };
        sum;
      };
      case (#Map(entries)) {
        if (entries.size() > MAX_METADATA_ENTRIES) return null;
        var sum = 0;
        for ((k, x) in entries.vals()) {
          if (not text(k, MAX_METADATA_KEY_BYTES)) return null;
          switch (valueWeight(x, depth + 1, budget)) { case (?n) sum += n + bytes(k); case null return null };
          if (sum > budget) return null;
        };
        sum;
      };
      case _ return null; // #Bytes, #Class, #Floats, #Ints, #Nats, #Option, #Set, #ValueMap: not stored
    });
    if (w > budget) null else ?w;
  };

  public func version((ma, mi, pa) : (Nat, Nat, Nat)) : Bool {
    ma <= MAX_VERSION_PART and mi <= MAX_VERSION_PART and pa <= MAX_VERSION_PART;
  };
};
