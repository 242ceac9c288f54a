// ICRC-1 / ICRC-2 token ledger for local networks and tests (on mainnet the registry uses a real ledger).
// Every error a caller can cause is a typed variant; state changes happen before anything can interleave
// (this canister makes no calls at all).
import Array "mo:core/Array";
import Blob "mo:core/Blob";
import Int "mo:core/Int";
import List "mo:core/List";
import Map "mo:core/Map";
import Nat "mo:core/Nat";
import Nat64 "mo:core/Nat64";
import Nat8 "mo:core/Nat8";
import Order "mo:core/Order";
import Principal "mo:core/Principal";
import Time "mo:core/Time";

persistent actor class Ledger(init : {
  name : Text;
  symbol : Text;
  decimals : Nat8;
  fee : Nat;
  minting_account : { owner : Principal; subaccount : ?Blob };
  initial_balances : [({ owner : Principal; subaccount : ?Blob }, Nat)];
}) {
  public type Account = { owner : Principal; subaccount : ?Blob };
  public type Value = { #Nat : Nat; #Int : Int; #Text : Text; #Blob : Blob };
  public type TransferArg = {
    from_subaccount : ?Blob;
    to : Account;
    amount : Nat;
    fee : ?Nat;
    memo : ?Blob;
    created_at_time : ?Nat64;
  };
  public type TransferError = {
    #BadFee : { expected_fee : Nat };
    #BadBurn : { min_burn_amount : Nat };
    #InsufficientFunds : { balance : Nat };
    #TooOld;
    #CreatedInFuture : { ledger_time : Nat64 };
    #Duplicate : { duplicate_of : Nat };
    #TemporarilyUnavailable;
    #GenericError : { error_code : Nat; message : Text };
  };
  public type ApproveArgs = {
    from_subaccount : ?Blob;
    spender : Account;
    amount : Nat;
    expected_allowance : ?Nat;
    expires_at : ?Nat64;
    fee : ?Nat;
    memo : ?Blob;
    created_at_time : ?Nat64;
  };
  public type ApproveError = {
    #BadFee : { expected_fee : Nat };
    #InsufficientFunds : { balance : Nat };
    #AllowanceChanged : { current_allowance : Nat };
    #Expired : { ledger_time : Nat64 };
    #TooOld;
    #CreatedInFuture : { ledger_time : Nat64 };
    #Duplicate : { duplicate_of : Nat };
    #TemporarilyUnavailable;
    #GenericError : { error_code : Nat; message : Text };
  };
  public type TransferFromArgs = {
    spender_subaccount : ?Blob;
    from : Account;
    to : Account;
    amount : Nat;
    fee : ?Nat;
    memo : ?Blob;
    created_at_time : ?Nat64;
  };
  public type TransferFromError = {
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
  public type Allowance = { allowance : Nat; expires_at : ?Nat64 };
  public type Standard = { name : Text; url : Text };
  type Generic = { #GenericError : { error_code : Nat; message : Text } };

  let TX_WINDOW : Nat = 24 * 60 * 60 * 1_000_000_000;
  let PERMITTED_DRIFT : Nat = 60 * 1_000_000_000;
  let MAX_MEMO : Nat = 32;
  let ZERO_SUBACCOUNT : Blob = Blob.fromArray(Array.repeat<Nat8>(0, 32));

  let balances = Map.empty<Blob, Nat>();
  let allowances = Map.empty<Blob, Allowance>();
  let recent = Map.empty<Blob, (Nat, Nat64)>(); // deduplication key -> (transaction index, created_at_time)
  // The same entries ordered by created_at_time, so pruning reads only the expired ones (a scan of `recent`
  // cost a step per transaction in the window on every transfer).
  let recentByTime = Map.empty<(Nat64, Blob), ()>();

  func byTime(a : (Nat64, Blob), b : (Nat64, Blob)) : Order.Order {
    switch (Nat64.compare(a.0, b.0)) { case (#equal) Blob.compare(a.1, b.1); case other other };
  };

  system func postupgrade() { // a release before the time index: index what it holds
    if (Map.size(recentByTime) != Map.size(recent)) {
      Map.clear(recentByTime);
      for ((k, (_, t)) in Map.entries(recent)) Map.add(recentByTime, byTime, (t, k), ());
    };
  };
  let transactions = List.empty<(Text, Nat64)>(); // kind and ledger time of every transaction
  var totalSupply : Nat = 0;

  // ---------------------------------------------------------------- helpers

  func key(account : Account) : Blob {
    let owner = Blob.toArray(Principal.toBlob(account.owner));
    let sub = switch (account.subaccount) { case (?s) Blob.toArray(s); case null Blob.toArray(ZERO_SUBACCOUNT) };
    Blob.fromArray(Array.concat(Array.concat([Nat8.fromNat(owner.size())], owner), sub));
  };

  func validAccount(account : Account) : Bool {
    switch (account.subaccount) { case (?s) s.size() == 32; case null true };
  };

  func sameAccount(a : Account, b : Account) : Bool { Blob.equal(key(a), key(b)) };

  func balanceOf(account : Account) : Nat {
    switch (Map.get(balances, Blob.compare, key(account))) { case (?b) b; case null 0 };
  };

  func credit(account : Account, amount : Nat) {
    if (amount > 0) { Map.add(balances, Blob.compare, key(account), balanceOf(account) + amount) };
  };

  // Callers check the balance first, so this never underflows.
  func debit(account : Account, amount : Nat) {
    let left : Nat = balanceOf(account) - amount;
    if (left == 0) { Map.remove(balances, Blob.compare, key(account)) } else {
      Map.add(balances, Blob.compare, key(account), left);
    };
  };

  func now() : Nat64 { Nat64.fromNat(Int.toNat(Time.now())) };

  func generic(message : Text) : Generic { #GenericError({ error_code = 0; message }) };

  func isMinting(account : Account) : Bool { sameAccount(account, init.minting_account) };

  func checkCommon(memo : ?Blob, subaccounts : [?Blob]) : ?Text {
    switch (memo) { case (?m) { if (m.size() > MAX_MEMO) return ?"memo is longer than 32 bytes" }; case null {} };
    for (s in subaccounts.vals()) {
      switch (s) { case (?b) { if (b.size() != 32) return ?"subaccounts are 32 bytes" }; case null {} };
    };
    null;
  };

  // created_at_time rules: too old, in the future, or a duplicate of a recent identical transaction.
  type TimeCheck = { #ok; #tooOld; #future : Nat64; #duplicate : Nat };

  func checkTime(created : ?Nat64, dedupKey : Blob) : TimeCheck {
    switch (created) {
      case null #ok;
      case (?t) {
        let ledgerTime = now();
        if (Nat64.toNat(t) + TX_WINDOW + PERMITTED_DRIFT < Nat64.toNat(ledgerTime)) return #tooOld;
        if (Nat64.toNat(t) > Nat64.toNat(ledgerTime) + PERMITTED_DRIFT) return #future(ledgerTime);
        switch (Map.get(recent, Blob.compare, dedupKey)) {
          case (?(index, _)) #duplicate(index);
          case null #ok;
        };
      };
    };
  };

  func record(kind : Text, created : ?Nat64, dedupKey : Blob) : Nat {
    let index = List.size(transactions);
    List.add(transactions, (kind, now()));
    switch (created) {
      case (?t) { Map.add(recent, Blob.compare, dedupKey, (index, t)); Map.add(recentByTime, byTime, (t, dedupKey), ()) };
      case null {};
    };
    pruneRecent();
    index;
  };

  // Forget deduplication entries once they are too old to be accepted again.
  func pruneRecent() {
    let horizon : Int = Nat64.toNat(now()) - TX_WINDOW - 2 * PERMITTED_DRIFT;
    if (horizon <= 0) return;
    let old = List.empty<(Nat64, Blob)>();
    label scan for ((k, ()) in Map.entries(recentByTime)) {
      if (Nat64.toNat(k.0) >= horizon or List.size(old) >= 100) break scan;
      List.add(old, k);
    };
    for (k in List.values(old)) { Map.remove(recentByTime, byTime, k); Map.remove(recent, Blob.compare, k.1) };
  };

  func allowanceKey(owner : Account, spender : Account) : Blob {
    Blob.fromArray(Array.concat(Blob.toArray(key(owner)), Blob.toArray(key(spender))));
  };

  func currentAllowance(owner : Account, spender : Account) : Allowance {
    switch (Map.get(allowances, Blob.compare, allowanceKey(owner, spender))) {
      case (?a) {
        switch (a.expires_at) {
          case (?e) { if (e <= now()) return { allowance = 0; expires_at = null } };
          case null {};
        };
        a;
      };
      case null { { allowance = 0; expires_at = null } };
    };
  };

  // Initial balances, once: actor-body statements also run on upgrade, the flag persists.
  var initialized = false;
  if (not initialized) {
    for ((account, amount) in init.initial_balances.vals()) {
      credit(account, amount);
      totalSupply += amount;
    };
    initialized := true;
  };

  // ---------------------------------------------------------------- ICRC-1

  public query func icrc1_name() : async Text { init.name };
  public query func icrc1_symbol() : async Text { init.symbol };
  public query func icrc1_decimals() : async Nat8 { init.decimals };
  public query func icrc1_fee() : async Nat { init.fee };
  public query func icrc1_total_supply() : async Nat { totalSupply };
  public query func icrc1_minting_account() : async ?Account { ?init.minting_account };

  public query func icrc1_metadata() : async [(Text, Value)] {
    [
      ("icrc1:name", #Text(init.name)),
      ("icrc1:symbol", #Text(init.symbol)),
      ("icrc1:decimals", #Nat(Nat8.toNat(init.decimals))),
      ("icrc1:fee", #Nat(init.fee)),
    ];
  };

  public query func icrc1_supported_standards() : async [Standard] { standards() };
  public query func icrc10_supported_standards() : async [Standard] { standards() };

  func standards() : [Standard] {
    [
      { name = "ICRC-1"; url = "https://github.com/dfinity/ICRC-1/tree/main/standards/ICRC-1" },
      { name = "ICRC-2"; url = "https://github.com/dfinity/ICRC-1/tree/main/standards/ICRC-2" },
      { name = "ICRC-10"; url = "https://github.com/dfinity/ICRC/blob/main/ICRCs/ICRC-10/ICRC-10.md" },
    ];
  };

  public query func icrc1_balance_of(account : Account) : async Nat {
    if (not validAccount(account)) 0 else balanceOf(account);
  };

  public shared ({ caller }) func icrc1_transfer(arg : TransferArg) : async { #Ok : Nat; #Err : TransferError } {
    let from = { owner = caller; subaccount = arg.from_subaccount };
    switch (checkCommon(arg.memo, [arg.from_subaccount, arg.to.subaccount])) {
      case (?message) return #Err(generic(message));
      case null {};
    };
    let dedupKey = Blob.fromArray(Blob.toArray(to_candid ("transfer", caller, arg)));
    switch (checkTime(arg.created_at_time, dedupKey)) {
      case (#tooOld) return #Err(#TooOld);
      case (#future(t)) return #Err(#CreatedInFuture({ ledger_time = t }));
      case (#duplicate(i)) return #Err(#Duplicate({ duplicate_of = i }));
      case (#ok) {};
    };
    if (isMinting(from) and isMinting(arg.to)) return #Err(generic("cannot transfer from the minting account to itself"));
    if (isMinting(from)) {
      switch (arg.fee) { case (?f) { if (f != 0) return #Err(#BadFee({ expected_fee = 0 })) }; case null {} };
      credit(arg.to, arg.amount);
      totalSupply += arg.amount;
      return #Ok(record("mint", arg.created_at_time, dedupKey));
    };
    if (isMinting(arg.to)) {
      switch (arg.fee) { case (?f) { if (f != 0) return #Err(#BadFee({ expected_fee = 0 })) }; case null {} };
      if (arg.amount < init.fee) return #Err(#BadBurn({ min_burn_amount = init.fee }));
      let balance = balanceOf(from);
      if (balance < arg.amount) return #Err(#InsufficientFunds({ balance }));
      debit(from, arg.amount);
      totalSupply -= arg.amount;
      return #Ok(record("burn", arg.created_at_time, dedupKey));
    };
    switch (arg.fee) { case (?f) { if (f != init.fee) return #Err(#BadFee({ expected_fee = init.fee })) }; case null {} };
    let balance = balanceOf(from);
    if (balance < arg.amount + init.fee) return #Err(#InsufficientFunds({ balance }));
    debit(from, arg.amount + init.fee);
    credit(arg.to, arg.amount);
    totalSupply -= init.fee;
    #Ok(record("transfer", arg.created_at_time, dedupKey));
  };

  // ---------------------------------------------------------------- ICRC-2

  public shared ({ caller }) func icrc2_approve(arg : ApproveArgs) : async { #Ok : Nat; #Err : ApproveError } {
    let from = { owner = caller; subaccount = arg.from_subaccount };
    switch (checkCommon(arg.memo, [arg.from_subaccount, arg.spender.subaccount])) {
      case (?message) return #Err(generic(message));
      case null {};
    };
    if (Principal.equal(arg.spender.owner, caller)) return #Err(generic("cannot approve an account of the caller"));
    let dedupKey = Blob.fromArray(Blob.toArray(to_candid ("approve", caller, arg)));
    switch (checkTime(arg.created_at_time, dedupKey)) {
      case (#tooOld) return #Err(#TooOld);
      case (#future(t)) return #Err(#CreatedInFuture({ ledger_time = t }));
      case (#duplicate(i)) return #Err(#Duplicate({ duplicate_of = i }));
      case (#ok) {};
    };
    switch (arg.fee) { case (?f) { if (f != init.fee) return #Err(#BadFee({ expected_fee = init.fee })) }; case null {} };
    switch (arg.expires_at) {
      case (?e) { if (e <= now()) return #Err(#Expired({ ledger_time = now() })) };
      case null {};
    };
    let current = currentAllowance(from, arg.spender);
    switch (arg.expected_allowance) {
      case (?expected) {
        if (expected != current.allowance) return #Err(#AllowanceChanged({ current_allowance = current.allowance }));
      };
      case null {};
    };
    let balance = balanceOf(from);
    if (balance < init.fee) return #Err(#InsufficientFunds({ balance }));
    debit(from, init.fee);
    totalSupply -= init.fee;
    let k = allowanceKey(from, arg.spender);
    if (arg.amount == 0) { Map.remove(allowances, Blob.compare, k) } else {
      Map.add(allowances, Blob.compare, k, { allowance = arg.amount; expires_at = arg.expires_at });
    };
    #Ok(record("approve", arg.created_at_time, dedupKey));
  };

  public query func icrc2_allowance(arg : { account : Account; spender : Account }) : async Allowance {
    currentAllowance(arg.account, arg.spender);
  };

  public shared ({ caller }) func icrc2_transfer_from(arg : TransferFromArgs) : async {
    #Ok : Nat;
    #Err : TransferFromError;
  } {
    let spender = { owner = caller; subaccount = arg.spender_subaccount };
    switch (checkCommon(arg.memo, [arg.spender_subaccount, arg.from.subaccount, arg.to.subaccount])) {
      case (?message) return #Err(generic(message));
      case null {};
    };
    if (isMinting(arg.from)) return #Err(generic("the minting account cannot be a transfer_from source"));
    let dedupKey = Blob.fromArray(Blob.toArray(to_candid ("transfer_from", caller, arg)));
    switch (checkTime(arg.created_at_time, dedupKey)) {
      case (#tooOld) return #Err(#TooOld);
      case (#future(t)) return #Err(#CreatedInFuture({ ledger_time = t }));
      case (#duplicate(i)) return #Err(#Duplicate({ duplicate_of = i }));
      case (#ok) {};
    };
    let burning = isMinting(arg.to);
    let fee = if burning 0 else init.fee;
    switch (arg.fee) { case (?f) { if (f != fee) return #Err(#BadFee({ expected_fee = fee })) }; case null {} };
    if (burning and arg.amount < init.fee) return #Err(#BadBurn({ min_burn_amount = init.fee }));
    let ownTransfer = sameAccount(spender, arg.from);
    let allowance = currentAllowance(arg.from, spender);
    if (not ownTransfer and allowance.allowance < arg.amount + fee) {
      return #Err(#InsufficientAllowance({ allowance = allowance.allowance }));
    };
    let balance = balanceOf(arg.from);
    if (balance < arg.amount + fee) return #Err(#InsufficientFunds({ balance }));
    debit(arg.from, arg.amount + fee);
    if (burning) { totalSupply -= arg.amount } else {
      credit(arg.to, arg.amount);
      totalSupply -= fee;
    };
    if (not ownTransfer) {
      let k = allowanceKey(arg.from, spender);
      let left : Nat = allowance.allowance - (arg.amount + fee);
      if (left == 0) { Map.remove(allowances, Blob.compare, k) } else {
        Map.add(allowances, Blob.compare, k, { allowance = left; expires_at = allowance.expires_at });
      };
    };
    #Ok(record(if burning "burn" else "transfer_from", arg.created_at_time, dedupKey));
  };

  public query func transaction_count() : async Nat { List.size(transactions) };
};
