// The registry's public types: what its Candid interface shows (candid/mcp_registry.did) and what the modules
// share. Internal records (with `var` fields) live next to the module that writes them.
module {

  public type ICRC16 = {
    #Array : [ICRC16];
    #Blob : Blob;
    #Bool : Bool;
    #Bytes : [Nat8];
    #Class : [ICRC16Property];
    #Float : Float;
    #Floats : [Float];
    #Int : Int;
    #Int16 : Int16;
    #Int32 : Int32;
    #Int64 : Int64;
    #Int8 : Int8;
    #Ints : [Int];
    #Map : ICRC16Map;
    #Nat : Nat;
    #Nat16 : Nat16;
    #Nat32 : Nat32;
    #Nat64 : Nat64;
    #Nat8 : Nat8;
    #Nats : [Nat];
    #Option : ?ICRC16;
    #Principal : Principal;
    #Set : [ICRC16];
    #Text : Text;
    #ValueMap : [(ICRC16, ICRC16)];
  };
  public type ICRC16Property = { name : Text; value : ICRC16; immutable : Bool };
  public type ICRC16Map = [(Text, ICRC16)];

  // ICRC-3 generic value.
  public type Value = { #Blob : Blob; #Text : Text; #Nat : Nat; #Int : Int; #Array : [Value]; #Map : [(Text, Value)] };

  public type Account = { owner : Principal; subaccount : ?Blob };

  public type Error = {
    #NotAuthorized;
    #InvalidNamespace : Text;
    #NamespaceExists;
    #NamespaceNotFound;
    #InvalidArgument : Text;
    #WasmNotFound;
    #WasmIncomplete : { missing : [Nat] };
    #WasmHashMismatch : { computed : Text };
    #RequestNotFound;
    #BountyNotFound;
    #BountyNotOpen;
    #LedgerNotAllowed;
    #TransferFailed : Text;
    #LockInvalid : Text;
    #AlreadyFiled;
    #AlreadyFinalized;
    #NotFinalizable : Text;
    #NotVerified;
    #WasmRejected;
    #VersionExists;
    #VersionNotFound;
    #TimeoutNotReached : { timeout_date : Int };
    #AuditHubUnavailable : Text;
    // Several namespaces or rounds match: name one (`namespace` / `request_id`).
    #Ambiguous : Text;
    // A per-principal, per-namespace or per-round limit is reached.
    #QuotaExceeded : Text;
    // A new request while the current round has filings or live reservations.
    #RoundInProgress : Text;
    // A refund while a verifier holds a live reservation on the bounty.
    #ReservationHeld : { claimant : Principal; until : Int };
    // The escrow transfer's reply was lost: its outcome is unknown; `settle_bounty(bounty_id)` retries it safely.
    #LedgerOutcomeUnknown : { bounty_id : Nat };
    // The filing's metadata contradicts the wasm or the request it answers.
    #FilingRefused : Text;
  };

  public type Outcome = { #Verified; #Rejected };
  public type FinalizationMode = { #Auto; #Governance };
  public type Policy = {
    quorum : Nat;
    mode : FinalizationMode;
    required_audit_types : [Text];
    min_bounty_reward : Nat;
  };

  public type VerificationRequest = {
    id : Nat;
    wasm_id : Text;
    namespace : Text;
    repo : Text;
    commit_hash : Text;
    metadata : ICRC16Map;
    requester : Principal;
    timestamp : Int;
    amends : ?Nat;
  };

  // The lifecycle of a bounty's escrow (transition table in Bounties.mo).
  public type BountyState = {
    #Funding; // the escrow pull is in flight or its outcome is unknown
    #Open; // escrow held; reservable
    #Reserved : { claimant : Principal; until : Int }; // a verifier may file until `until`
    #Claimed : { claimant : Principal }; // the claimant filed; waits for the audit's final outcome
    #Paying : { claimant : Principal }; // payout transfer created, not confirmed
    #Refunding; // refund transfer created, not confirmed
    #Paid : { claimant : Principal; block : Nat };
    #Refunded : { block : Nat };
    #Cancelled; // the escrow never arrived
  };

  // What the registry owes the hub for a claimant's stake: nothing yet, a settlement to deliver, or done.
  public type StakeVerdict = { #Reward; #Release; #Slash };
  public type StakeSettlement = { #None; #Pending : StakeVerdict; #Done : StakeVerdict };

  public type Bounty = {
    bounty_id : Nat;
    creator : Principal;
    request_id : Nat;
    namespace : Text;
    wasm_id : Text;
    audit_type : Text;
    reward_canister : Principal;
    reward_amount : Nat;
    fee : Nat;
    timeout_date : Int;
    created_at : Int;
    state : BountyState;
    filer : ?Principal; // who filed on this bounty (its claimant)
    stake : StakeSettlement;
  };

  public type TransferKind = { #Escrow; #Payout; #Refund };
  public type TransferState = {
    #Ready; // created or renewed; not sent
    #InFlight : { since : Int }; // a message awaits the ledger's answer
    #Unknown : { message : Text }; // the ledger's answer was lost: maybe executed; resent with the same dedup key
    #Failed : { message : Text }; // the ledger refused this attempt; retried
    #InDoubt : { message : Text }; // maybe executed and too old to resend: governance resolves it from the ledger
    #Done : { block : Nat };
  };
  public type Transfer = {
    id : Nat;
    bounty_id : Nat;
    kind : TransferKind;
    ledger : Principal;
    to : Account;
    amount : Nat;
    memo : Blob;
    created_at_time : Nat64;
    attempts : Nat;
    state : TransferState;
  };

  public type Filing = {
    index : Nat;
    verifier : Principal;
    bounty_id : Nat;
    request_id : Nat;
    wasm_id : Text;
    audit_type : Text;
    attested : Bool;
    report : ?Text;
    metadata : ICRC16Map;
    timestamp : Int;
  };

  public type AuditSummary = {
    audit_type : Text;
    attestations : Nat;
    divergences : Nat;
    outcome : ?Outcome;
    finalized_at : ?Int;
  };

  public type Round = {
    request : VerificationRequest;
    outcome : ?Outcome;
    audits : [AuditSummary];
  };

  // `previous`: the wasm id this version must be installed over (ICRC-118); null: over any lower version.
  public type Version = { version : (Nat, Nat, Nat); wasm_id : Text; published_at : Int; publisher : Principal; deprecated : ?Text; previous : ?Text };

  public type WasmStatus = {
    wasm_id : Text;
    namespace : Text;
    size : Nat;
    complete : Bool;
    request : ?VerificationRequest; // the current round's request
    audits : [AuditSummary]; // of the current round
    outcome : ?Outcome; // of the current round
    bounties : [Bounty]; // of the current round
    filings : [Filing]; // of the current round
    versions : [Version];
    rounds : [Round]; // every round, oldest first (the last is the current one)
  };

  public type PendingVerification = {
    request_id : Nat;
    wasm_id : Text;
    repo : Text;
    commit_hash : Text;
    namespace : Text;
    open_bounties : Nat;
    audit_types : [Text];
  };

  // What the audit hub learns when it asks for a reservation.
  public type Grant = { wasm_id : Text; request_id : Nat; until : Int };
  // What the audit hub learns when it cleans up an expired lock.
  public type ReservationEnd = { #Filed; #NotFiled; #Live };

  public type EscrowTotals = {
    ledger : Principal;
    held : Nat; // escrow confirmed in, no outgoing transfer started
    incoming : Nat; // escrow pulls not confirmed
    outgoing : Nat; // payouts and refunds not confirmed
  };
};
