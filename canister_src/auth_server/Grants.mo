// The OAuth state and its transitions, one writer: registered clients, authorization requests waiting for the
// user's approval, authorization codes, and refresh-token families. Codes and refresh tokens are kept only as
// their SHA-256 (a copy of the state reveals none). Every record expires; expired ones are pruned a few at a
// time on each write (queues in expiry order, one per lifetime), so the work per call is bounded.
//
// Transitions (a code or a refresh token):   Unused --present--> InFlight --signed--> Used
//                                                  ^                   |
//                                                  +----sign failed----+
// A token presented while InFlight is refused without effect (the first presentation is still being served);
// presented again once Used, it is a replay: its whole family is revoked (RFC 9700 section 4.14.2).
import Array "mo:core/Array";
import Blob "mo:core/Blob";
import List "mo:core/List";
import Map "mo:core/Map";
import Nat "mo:core/Nat";
import Principal "mo:core/Principal";
import Queue "mo:core/Queue";
import Text "mo:core/Text";

module {

  public type AuthMethod = { #none; #client_secret_post; #client_secret_basic };

  public type Client = {
    id : Text;
    name : Text;
    redirect_uris : [Text];
    grant_types : [Text];
    auth_method : AuthMethod;
    secret_hash : ?Blob;
    created_ns : Int;
    var used : Bool; // a code was exchanged: kept; a client never used is removed a day after registration
  };

  public type Pending = {
    id : Text;
    client_id : Text;
    redirect_uri : Text;
    challenge : Text;
    scopes : [Text];
    resource : Text;
    state : ?Text;
    expires_ns : Int;
  };

  public type Use = { #unused; #inFlight; #used };

  public type Code = {
    client_id : Text;
    redirect_uri : Text;
    challenge : Text;
    scopes : [Text];
    resource : Text;
    user : Principal;
    expires_ns : Int;
    var use : Use;
    var family : ?Nat; // the grant it started, once exchanged (revoked if the code is replayed)
  };

  public type Refresh = {
    family : Nat;
    client_id : Text;
    user : Principal;
    scopes : [Text];
    resource : Text;
    expires_ns : Int;
    var use : Use;
  };

  public type Family = {
    id : Nat;
    client_id : Text;
    user : Principal;
    scopes : [Text];
    resource : Text;
    created_ns : Int;
    var revoked : Bool;
    var refreshed : Nat; // how many times its refresh token was rotated
    var lastIssuedNs : Int; // when it last got tokens (a refresh within MIN_REFRESH_INTERVAL_NS is refused)
    var retired : [Blob]; // its last RETIRED_KEPT rotated-out refresh tokens (hashes): presented again, a replay
  };

  public let PENDING_TTL_NS : Int = 600_000_000_000; // 10 minutes
  public let CODE_TTL_NS : Int = 60_000_000_000; // 1 minute
  public let REFRESH_TTL_NS : Int = 2_592_000_000_000_000; // 30 days
  public let MAX_CLIENTS = 50_000;
  public let MAX_PENDING = 50_000;
  public let UNUSED_CLIENT_TTL_NS : Int = 86_400_000_000_000; // 1 day
  public let MAX_CODES = 10_000;
  public let MAX_REFRESH = 200_000; // live refresh tokens: one per live grant
  public let RETIRED_KEPT = 8;
  public let MIN_REFRESH_INTERVAL_NS : Int = 60_000_000_000; // each refresh is a threshold signature the canister pays
  let PRUNE_PER_WRITE = 8;

  public type Store = {
    clients : Map.Map<Text, Client>;
    pending : Map.Map<Text, Pending>;
    codes : Map.Map<Blob, Code>;
    refresh : Map.Map<Blob, Refresh>; // the live refresh token of each grant
    retired : Map.Map<Blob, Nat>; // rotated-out refresh tokens still recognised (hash -> family)
    families : Map.Map<Nat, Family>;
    byUser : Map.Map<Principal, List.List<Nat>>; // each user's families, oldest first
    byUserResource : Map.Map<Text, List.List<Nat>>; // "<principal> <resource>" -> families, oldest first
    pendingPerClient : Map.Map<Text, Nat>; // unused (there is no cap per client any more); kept, stable and empty:
    // enhanced orthogonal persistence refuses an upgrade that drops a field
    clientExpiry : Queue.Queue<(Text, Int)>;
    pendingExpiry : Queue.Queue<(Text, Int)>;
    codeExpiry : Queue.Queue<(Blob, Int)>;
    refreshExpiry : Queue.Queue<(Blob, Int)>;
    var nextFamily : Nat;
  };

  public func empty() : Store {
    {
      clients = Map.empty();
      pending = Map.empty();
      codes = Map.empty();
      refresh = Map.empty();
      retired = Map.empty();
      families = Map.empty();
      byUser = Map.empty();
      byUserResource = Map.empty();
      pendingPerClient = Map.empty();
      clientExpiry = Queue.empty();
      pendingExpiry = Queue.empty();
      codeExpiry = Queue.empty();
      refreshExpiry = Queue.empty();
      var nextFamily = 0;
    };
  };

  // ---------------------------------------------------------------- pruning

  public func prune(s : Store, now : Int) {
    var n = 0;
    label p while (n < PRUNE_PER_WRITE) {
      switch (Queue.peekFront(s.pendingExpiry)) {
        case (?(id, at)) if (at <= now) { ignore Queue.popFront(s.pendingExpiry); removePending(s, id); n += 1 } else break p;
        case null break p;
      };
    };
    n := 0;
    label u while (n < PRUNE_PER_WRITE) {
      switch (Queue.peekFront(s.clientExpiry)) {
        case (?(id, at)) if (at <= now) {
          ignore Queue.popFront(s.clientExpiry);
          switch (Map.get(s.clients, Text.compare, id)) { case (?c) if (not c.used) Map.remove(s.clients, Text.compare, id); case null {} };
          n += 1;
        } else break u;
        case null break u;
      };
    };
    n := 0;
    label c while (n < PRUNE_PER_WRITE) {
      switch (Queue.peekFront(s.codeExpiry)) {
        case (?(h, at)) if (at <= now) {
          ignore Queue.popFront(s.codeExpiry);
          switch (Map.get(s.codes, Blob.compare, h)) { case (?code) if (code.use != #inFlight) Map.remove(s.codes, Blob.compare, h) else { Queue.pushBack(s.codeExpiry, (h, now + CODE_TTL_NS)) }; case null {} };
          n += 1;
        } else break c;
        case null break c;
      };
    };
    n := 0;
    label r while (n < PRUNE_PER_WRITE) {
      switch (Queue.peekFront(s.refreshExpiry)) {
        case (?(h, at)) if (at <= now) {
          ignore Queue.popFront(s.refreshExpiry);
          switch (Map.get(s.refresh, Blob.compare, h)) {
            case (?t) if (t.use != #inFlight) {
              Map.remove(s.refresh, Blob.compare, h);
              switch (family(s, t.family)) {
                case (?f) { for (r in f.retired.vals()) Map.remove(s.retired, Blob.compare, r); f.retired := [] };
                case null {};
              };
            } else { Queue.pushBack(s.refreshExpiry, (h, now + CODE_TTL_NS)) };
            case null {};
          };
          n += 1;
        } else break r;
        case null break r;
      };
    };
  };

  // ---------------------------------------------------------------- clients and authorization requests

  // When the table is full, the oldest client never used makes room: spam cannot close registration, and an honest
  // client is lost only if 50,000 registrations arrive between its registration and its first sign-in.
  public func addClient(s : Store, c : Client) : Bool {
    label evict while (Map.size(s.clients) >= MAX_CLIENTS) {
      let ?(oldest, _) = Queue.popFront(s.clientExpiry) else return false; // every client is in use
      switch (Map.get(s.clients, Text.compare, oldest)) { case (?o) if (not o.used) Map.remove(s.clients, Text.compare, oldest); case null {} };
    };
    Map.add(s.clients, Text.compare, c.id, c);
    Queue.pushBack(s.clientExpiry, (c.id, c.created_ns + UNUSED_CLIENT_TTL_NS));
    true;
  };

  public func markUsed(s : Store, id : Text) {
    switch (Map.get(s.clients, Text.compare, id)) { case (?c) c.used := true; case null {} };
  };

  func removePending(s : Store, id : Text) { Map.remove(s.pending, Text.compare, id) };

  public func client(s : Store, id : Text) : ?Client { Map.get(s.clients, Text.compare, id) };

  // When the table is full, the oldest waiting request makes room: to push out an honest user's request, spam must
  // fill 50,000 requests while that user reads the page and approves, far beyond a canister's update throughput.
  // There is no cap per client: client ids are public, so such a cap let anyone block every user of a client.
  public func addPending(s : Store, p : Pending) : Bool {
    label evict while (Map.size(s.pending) >= MAX_PENDING) {
      let ?(oldest, _) = Queue.popFront(s.pendingExpiry) else return false;
      removePending(s, oldest);
    };
    Map.add(s.pending, Text.compare, p.id, p);
    Queue.pushBack(s.pendingExpiry, (p.id, p.expires_ns));
    true;
  };

  public func pending(s : Store, id : Text, now : Int) : ?Pending {
    switch (Map.get(s.pending, Text.compare, id)) { case (?p) if (p.expires_ns > now) ?p else null; case null null };
  };

  // The request, removed: a request is answered once, approved or denied.
  public func takePending(s : Store, id : Text, now : Int) : ?Pending {
    let p = pending(s, id, now);
    removePending(s, id);
    p;
  };

  // ---------------------------------------------------------------- codes

  public func addCode(s : Store, hash : Blob, c : Code) : Bool {
    if (Map.size(s.codes) >= MAX_CODES) return false;
    Map.add(s.codes, Blob.compare, hash, c);
    Queue.pushBack(s.codeExpiry, (hash, c.expires_ns));
    true;
  };

  public func code(s : Store, hash : Blob) : ?Code { Map.get(s.codes, Blob.compare, hash) };

  // ---------------------------------------------------------------- refresh-token families

  public func refreshRoom(s : Store) : Bool { Map.size(s.refresh) < MAX_REFRESH };

  public func newFamily(s : Store, client_id : Text, user : Principal, scopes : [Text], resource : Text, now : Int) : Family {
    let f : Family = { id = s.nextFamily; client_id; user; scopes; resource; created_ns = now; var revoked = false; var refreshed = 0; var lastIssuedNs = now; var retired = [] };
    s.nextFamily += 1;
    Map.add(s.families, Nat.compare, f.id, f);
    switch (Map.get(s.byUser, Principal.compare, user)) {
      case (?ids) List.add(ids, f.id);
      case null Map.add(s.byUser, Principal.compare, user, List.singleton<Nat>(f.id));
    };
    let k = Principal.toText(user) # " " # resource;
    switch (Map.get(s.byUserResource, Text.compare, k)) {
      case (?ids) List.add(ids, f.id);
      case null Map.add(s.byUserResource, Text.compare, k, List.singleton<Nat>(f.id));
    };
    f;
  };

  public func family(s : Store, id : Nat) : ?Family { Map.get(s.families, Nat.compare, id) };

  public func addRefresh(s : Store, hash : Blob, f : Family, scopes : [Text], now : Int) {
    let t : Refresh = { family = f.id; client_id = f.client_id; user = f.user; scopes; resource = f.resource; expires_ns = now + REFRESH_TTL_NS; var use = #unused };
    Map.add(s.refresh, Blob.compare, hash, t);
    Queue.pushBack(s.refreshExpiry, (hash, t.expires_ns));
  };

  public func refreshToken(s : Store, hash : Blob) : ?Refresh { Map.get(s.refresh, Blob.compare, hash) };

  // The family of a rotated-out refresh token, if it is one of the last RETIRED_KEPT of its family.
  public func retiredFamily(s : Store, hash : Blob) : ?Nat { Map.get(s.retired, Blob.compare, hash) };

  // A refresh token rotated out: no longer live, still recognised (bounded per family) so a replay is caught.
  public func retire(s : Store, hash : Blob, f : Family) {
    Map.remove(s.refresh, Blob.compare, hash);
    Map.add(s.retired, Blob.compare, hash, f.id);
    var kept = Array.concat(f.retired, [hash]);
    if (kept.size() > RETIRED_KEPT) {
      Map.remove(s.retired, Blob.compare, kept[0]);
      kept := Array.sliceToArray(kept, 1, kept.size());
    };
    f.retired := kept;
  };

  public func revoke(s : Store, familyId : Nat) {
    switch (family(s, familyId)) { case (?f) f.revoked := true; case null {} };
  };

  public func live(s : Store, familyId : Nat) : Bool {
    switch (family(s, familyId)) { case (?f) not f.revoked; case null false };
  };

  // Whether the user holds a live grant for `resource` with `scope` (newest first: the usual answer is the first).
  public func hasLiveScope(s : Store, user : Principal, resource : Text, scope : Text) : Bool {
    let ?ids = Map.get(s.byUserResource, Text.compare, Principal.toText(user) # " " # resource) else return false;
    for (id in List.reverseValues(ids)) {
      switch (family(s, id)) {
        case (?f) if (not f.revoked and List.contains<Text>(List.fromArray(f.scopes), Text.equal, scope)) return true;
        case null {};
      };
    };
    false;
  };

  // A user's grants, newest first, a page at a time (`before`: the last id of the previous page).
  public func grantsOf(s : Store, user : Principal, before : ?Nat, limit : Nat) : [Family] {
    let ?ids = Map.get(s.byUser, Principal.compare, user) else return [];
    let out = List.empty<Family>();
    var i = List.size(ids);
    while (i > 0 and List.size(out) < limit) {
      i -= 1;
      let id = List.at(ids, i);
      let wanted = switch before { case (?b) id < b; case null true };
      if (wanted) switch (family(s, id)) { case (?f) List.add(out, f); case null {} };
    };
    List.toArray(out);
  };
};
