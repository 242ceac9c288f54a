// ICRC-126 verification rounds. A round is one immutable request (namespace, wasm, repository, commit); the
// current round of a (namespace, wasm) is its latest request. Each round keeps, per audit type, its filings and
// its outcome; the round's overall outcome is decided from the policy's required audit types and, once stored,
// never changes (a later policy applies only to rounds not yet decided). This module is the only writer of
// requests, audits, filings and outcomes.
import List "mo:core/List";
import Map "mo:core/Map";
import Nat "mo:core/Nat";
import Principal "mo:core/Principal";
import Text "mo:core/Text";

import T "Types";

module {

  public type RequestRec = {
    req : T.VerificationRequest;
    var outcome : ?T.Outcome; // stored once decided
    var decided_at : ?Int;
    var filings : Nat;
    auditTypes : List.List<Text>; // the audit types with an audit record, in order of appearance
  };

  public type AuditRec = {
    var attestations : Nat;
    var divergences : Nat;
    var outcome : ?T.Outcome;
    var finalized_at : ?Int;
    filings : List.List<Nat>; // indexes into `Store.filings`
  };

  public type Store = {
    requests : List.List<RequestRec>; // request id = index
    current : Map.Map<Text, Nat>; // "<namespace>|<wasm>" -> the current round's request id
    history : Map.Map<Text, List.List<Nat>>; // "<namespace>|<wasm>" -> every round's request id, oldest first
    audits : Map.Map<Text, AuditRec>; // "<request>|<audit type>"
    filings : List.List<T.Filing>;
    filed : Map.Map<Text, Nat>; // "<request>|<audit type>|<verifier>" -> filing index
  };

  public func empty() : Store {
    {
      requests = List.empty();
      current = Map.empty();
      history = Map.empty();
      audits = Map.empty();
      filings = List.empty();
      filed = Map.empty();
    };
  };

  func subject(namespace : Text, wasm_id : Text) : Text { namespace # "|" # wasm_id };
  func auditKey(request : Nat, auditType : Text) : Text { Nat.toText(request) # "|" # auditType };

  public func get(s : Store, id : Nat) : ?RequestRec { List.get(s.requests, id) };

  public func current(s : Store, namespace : Text, wasm_id : Text) : ?RequestRec {
    switch (Map.get(s.current, Text.compare, subject(namespace, wasm_id))) { case (?i) get(s, i); case null null };
  };

  // Whether (repo, commit) was already rejected in a round of (namespace, wasm): a correction must change it.
  public func rejectedBefore(s : Store, namespace : Text, wasm_id : Text, repo : Text, commit_hash : Text) : Bool {
    switch (Map.get(s.history, Text.compare, subject(namespace, wasm_id))) {
      case (?h) List.any<Nat>(h, func id = switch (get(s, id)) {
        case (?r) r.outcome == ?#Rejected and r.req.repo == repo and r.req.commit_hash == commit_hash;
        case null false;
      });
      case null false;
    };
  };

  public func hasCurrent(s : Store, namespace : Text, wasm_id : Text) : Bool {
    Map.containsKey(s.current, Text.compare, subject(namespace, wasm_id));
  };

  public func roundCount(s : Store, namespace : Text, wasm_id : Text) : Nat {
    switch (Map.get(s.history, Text.compare, subject(namespace, wasm_id))) { case (?l) List.size(l); case null 0 };
  };

  public func isCurrent(s : Store, r : RequestRec) : Bool {
    Map.get(s.current, Text.compare, subject(r.req.namespace, r.req.wasm_id)) == ?r.req.id;
  };

  // A new round for (namespace, wasm); the caller has checked that one may be opened.
  public func open(s : Store, namespace : Text, wasm_id : Text, repo : Text, commit_hash : Text, metadata : T.ICRC16Map, requester : Principal, now : Int) : RequestRec {
    let key = subject(namespace, wasm_id);
    let id = List.size(s.requests);
    let r : RequestRec = {
      req = { id; wasm_id; namespace; repo; commit_hash; metadata; requester; timestamp = now; amends = Map.get(s.current, Text.compare, key) };
      var outcome = null;
      var decided_at = null;
      var filings = 0;
      auditTypes = List.empty();
    };
    List.add(s.requests, r);
    Map.add(s.current, Text.compare, key, id);
    let h = switch (Map.get(s.history, Text.compare, key)) {
      case (?h) h;
      case null { let h = List.empty<Nat>(); Map.add(s.history, Text.compare, key, h); h };
    };
    List.add(h, id);
    r;
  };

  public func findAudit(s : Store, request : Nat, auditType : Text) : ?AuditRec {
    Map.get(s.audits, Text.compare, auditKey(request, auditType));
  };

  func audit(s : Store, r : RequestRec, auditType : Text) : AuditRec {
    switch (findAudit(s, r.req.id, auditType)) {
      case (?a) a;
      case null {
        let a : AuditRec = { var attestations = 0; var divergences = 0; var outcome = null; var finalized_at = null; filings = List.empty() };
        Map.add(s.audits, Text.compare, auditKey(r.req.id, auditType), a);
        List.add(r.auditTypes, auditType);
        a;
      };
    };
  };

  public func auditOutcome(s : Store, request : Nat, auditType : Text) : ?T.Outcome {
    switch (findAudit(s, request, auditType)) { case (?a) a.outcome; case null null };
  };

  public func hasFiled(s : Store, request : Nat, auditType : Text, verifier : Principal) : Bool {
    Map.get(s.filed, Text.compare, auditKey(request, auditType) # "|" # Principal.toText(verifier)) != null;
  };

  public func filing(s : Store, index : Nat) : ?T.Filing { List.get(s.filings, index) };

  // Record a filing; returns its index and the audit it counts in.
  public func addFiling(s : Store, r : RequestRec, auditType : Text, verifier : Principal, bounty_id : Nat, attested : Bool, report : ?Text, metadata : T.ICRC16Map, now : Int) : (Nat, AuditRec) {
    let a = audit(s, r, auditType);
    let index = List.size(s.filings);
    List.add(s.filings, { index; verifier; bounty_id; request_id = r.req.id; wasm_id = r.req.wasm_id; audit_type = auditType; attested; report; metadata; timestamp = now });
    Map.add(s.filed, Text.compare, auditKey(r.req.id, auditType) # "|" # Principal.toText(verifier), index);
    List.add(a.filings, index);
    r.filings += 1;
    if (attested) a.attestations += 1 else a.divergences += 1;
    (index, a);
  };

  // Finalize one audit; false if it was already final (a final outcome never changes).
  public func finalizeAudit(s : Store, r : RequestRec, auditType : Text, outcome : T.Outcome, now : Int) : Bool {
    let a = audit(s, r, auditType);
    if (a.outcome != null) return false;
    a.outcome := ?outcome;
    a.finalized_at := ?now;
    true;
  };

  // The round's overall outcome once decided (it never changes afterwards).
  public func outcome(r : RequestRec) : ?T.Outcome { r.outcome };

  // What the current policy derives from the round's audits (not stored: see `decide`).
  func derive(s : Store, r : RequestRec, required : [Text]) : ?T.Outcome {
    var all = true;
    for (t in required.vals()) {
      switch (auditOutcome(s, r.req.id, t)) {
        case (?#Rejected) return ?#Rejected;
        case (?#Verified) {};
        case null all := false;
      };
    };
    if (all and required.size() > 0) ?#Verified else null;
  };

  // Store the overall outcome if the current policy decides it now; returns it when this call decided it.
  // Every update that looks at a round's outcome calls this first, so a policy change takes effect once,
  // at the first update that meets the round, and never alters an outcome already stored.
  public func decide(s : Store, r : RequestRec, required : [Text], now : Int) : ?T.Outcome {
    if (r.outcome != null) return null;
    switch (derive(s, r, required)) {
      case (?o) { r.outcome := ?o; r.decided_at := ?now; ?o };
      case null null;
    };
  };

  public func summaries(s : Store, r : RequestRec) : [T.AuditSummary] {
    List.toArray(List.filterMap<Text, T.AuditSummary>(r.auditTypes, func t = switch (findAudit(s, r.req.id, t)) {
      case (?a) ?{ audit_type = t; attestations = a.attestations; divergences = a.divergences; outcome = a.outcome; finalized_at = a.finalized_at };
      case null null;
    }));
  };

  public func allFilings(s : Store) : [T.Filing] { List.toArray(s.filings) };

  public func filingsOf(s : Store, r : RequestRec) : [T.Filing] {
    let out = List.empty<T.Filing>();
    for (t in List.values(r.auditTypes)) {
      switch (findAudit(s, r.req.id, t)) {
        case (?a) { for (i in List.values(a.filings)) { switch (filing(s, i)) { case (?f) List.add(out, f); case null {} } } };
        case null {};
      };
    };
    List.toArray(out);
  };

  public func rounds(s : Store, namespace : Text, wasm_id : Text) : [T.Round] {
    switch (Map.get(s.history, Text.compare, subject(namespace, wasm_id))) {
      case (?h) List.toArray(List.filterMap<Nat, T.Round>(h, func id = switch (get(s, id)) {
        case (?r) ?{ request = r.req; outcome = r.outcome; audits = summaries(s, r) };
        case null null;
      }));
      case null [];
    };
  };
};
