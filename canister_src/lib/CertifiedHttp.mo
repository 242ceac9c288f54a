// Certified HTTP responses (the HTTP Gateway Protocol's response verification, version 2) for a few fixed
// responses, so a gateway can serve them from a query and still prove them: each is certified at its exact path
// (`http_expr/<segments>/<$>`) with no request certification and every response header certified. The same
// hash tree can carry other certified labels (e.g. an ICRC-3 log's tip), so one certified-data root serves both.
import Array "mo:core/Array";
import Base64 "mo:core/Base64";
import Blob "mo:core/Blob";
import Iter "mo:core/Iter";
import List "mo:core/List";
import Nat8 "mo:core/Nat8";
import Nat16 "mo:core/Nat16";
import Text "mo:core/Text";

import Sha256 "Sha256";

module {

  public type Tree = { #empty; #fork : (Tree, Tree); #labeled : (Blob, Tree); #leaf : Blob; #pruned : Blob };
  public type Header = (Text, Text);
  public type Response = { path : Text; status : Nat16; headers : [Header]; body : Blob };

  // ---------------------------------------------------------------- hash trees (the IC interface spec)

  func domain(st : Sha256.State, d : Text) { Sha256.writeByte(st, Nat8.fromNat(d.size())); Sha256.writeText(st, d) };

  public func reconstruct(t : Tree) : Blob {
    let st = Sha256.init();
    switch t {
      case (#empty) domain(st, "ic-hashtree-empty");
      case (#fork(l, r)) { let (a, b) = (reconstruct(l), reconstruct(r)); domain(st, "ic-hashtree-fork"); Sha256.write(st, a); Sha256.write(st, b) };
      case (#labeled(l, sub)) { let h = reconstruct(sub); domain(st, "ic-hashtree-labeled"); Sha256.write(st, l); Sha256.write(st, h) };
      case (#leaf(v)) { domain(st, "ic-hashtree-leaf"); Sha256.write(st, v) };
      case (#pruned(h)) return h;
    };
    Sha256.finish(st);
  };

  // A tree holding each (path, value) as labeled nodes down to a leaf; siblings in label order.
  public func fromPaths(entries : [([Blob], Blob)]) : Tree {
    if (entries.size() == 0) return #empty;
    for ((path, value) in entries.vals()) if (path.size() == 0) return #leaf(value); // a path ends here
    let sorted = Array.sort<([Blob], Blob)>(entries, func(a, b) = Blob.compare(a.0[0], b.0[0]));
    let children = List.empty<Tree>();
    var i = 0;
    while (i < sorted.size()) {
      let label_ = sorted[i].0[0];
      let group = List.empty<([Blob], Blob)>();
      while (i < sorted.size() and Blob.equal(sorted[i].0[0], label_)) {
        List.add(group, (Array.sliceToArray<Blob>(sorted[i].0, 1, sorted[i].0.size()), sorted[i].1));
        i += 1;
      };
      List.add(children, #labeled(label_, fromPaths(List.toArray(group))));
    };
    forks(List.toArray(children), 0, List.size(children));
  };

  func forks(nodes : [Tree], from : Nat, to : Nat) : Tree {
    if (to - from == 1) return nodes[from];
    let mid = from + (to - from) / 2;
    #fork(forks(nodes, from, mid), forks(nodes, mid, to));
  };

  // The tree with everything but the given paths pruned (what a certificate's reader needs to look them up).
  public func witness(t : Tree, paths : [[Blob]]) : Tree {
    for (p in paths.vals()) if (p.size() == 0) return t;
    switch t {
      case (#pruned(_)) t;
      case (#fork(l, r)) {
        switch (witness(l, paths), witness(r, paths)) {
          case (#pruned(_), #pruned(_)) #pruned(reconstruct(t));
          case (a, b) #fork(a, b);
        };
      };
      case (#labeled(l, sub)) {
        let rests = Array.filterMap<[Blob], [Blob]>(paths, func p = if (Blob.equal(p[0], l)) ?Array.sliceToArray<Blob>(p, 1, p.size()) else null);
        if (rests.size() == 0) #pruned(reconstruct(t)) else #labeled(l, witness(sub, rests));
      };
      case _ #pruned(reconstruct(t));
    };
  };

  // CBOR (with the self-describe tag), as certificates and the IC-Certificate header carry trees.
  public func cbor(t : Tree) : Blob {
    let out = List.fromArray<Nat8>([0xd9, 0xd9, 0xf7]);
    writeTree(out, t);
    Blob.fromArray(List.toArray(out));
  };

  func head(out : List.List<Nat8>, major : Nat, n : Nat) {
    let m = major * 32;
    if (n < 24) List.add(out, Nat8.fromNat(m + n)) else if (n < 256) { List.add(out, Nat8.fromNat(m + 24)); List.add(out, Nat8.fromNat(n)) } else if (n < 65_536) {
      List.add(out, Nat8.fromNat(m + 25));
      List.add(out, Nat8.fromNat(n / 256));
      List.add(out, Nat8.fromNat(n % 256));
    } else {
      List.add(out, Nat8.fromNat(m + 26));
      for (shift in [16_777_216, 65_536, 256, 1].vals()) List.add(out, Nat8.fromNat(n / shift % 256));
    };
  };

  func bytes(out : List.List<Nat8>, b : Blob) { head(out, 2, b.size()); for (x in b.vals()) List.add(out, x) };

  func writeTree(out : List.List<Nat8>, t : Tree) {
    switch t {
      case (#empty) { head(out, 4, 1); head(out, 0, 0) };
      case (#fork(l, r)) { head(out, 4, 3); head(out, 0, 1); writeTree(out, l); writeTree(out, r) };
      case (#labeled(l, sub)) { head(out, 4, 3); head(out, 0, 2); bytes(out, l); writeTree(out, sub) };
      case (#leaf(v)) { head(out, 4, 2); head(out, 0, 3); bytes(out, v) };
      case (#pruned(h)) { head(out, 4, 2); head(out, 0, 4); bytes(out, h) };
    };
  };

  // ---------------------------------------------------------------- response certification (version 2)

  public let EXACT = "<$>";

  // `/a/b` -> ["a", "b"]; `/` -> [""]; `/a/` -> ["a", ""] (the gateway's segments of a request path).
  public func segments(path : Text) : [Text] {
    let parts = Array.filter<Text>(Iter.toArray(Text.split(path, #char '/')), func s = s != "");
    if (Text.endsWith(path, #char '/')) Array.concat(parts, [""]) else parts;
  };

  public func exprPath(path : Text) : [Blob] {
    Array.flatten<Blob>([[Text.encodeUtf8("http_expr")], Array.map<Text, Blob>(segments(path), Text.encodeUtf8), [Text.encodeUtf8(EXACT)]]);
  };

  // Every header certified (by name, lower case), no request certification.
  public func expression(r : Response) : Text {
    let names = Array.map<Header, Text>(r.headers, func((n, _)) = "\"" # Text.toLower(n) # "\"");
    "default_certification(ValidationArgs{certification:Certification{no_request_certification:Empty{},response_certification:ResponseCertification{certified_response_headers:ResponseHeaderList{headers:[" # Text.join(names.vals(), ",") # "]}}}})";
  };

  func leb(n : Nat) : Blob {
    let out = List.empty<Nat8>();
    var x = n;
    loop {
      let b = x % 128;
      x /= 128;
      if (x == 0) { List.add(out, Nat8.fromNat(b)); return Blob.fromArray(List.toArray(out)) };
      List.add(out, Nat8.fromNat(b + 128));
    };
  };

  // sha256(hash of the certified headers and `:ic-cert-status` as a map ‖ sha256(body)).
  public func responseHash(r : Response) : Blob {
    let pairs = List.empty<Blob>();
    for ((n, v) in Array.concat(r.headers, [("IC-CertificateExpression", expression(r))]).vals()) {
      List.add(pairs, Blob.fromArray(Array.concat(Blob.toArray(Sha256.hash(Text.encodeUtf8(Text.toLower(n)))), Blob.toArray(Sha256.hash(Text.encodeUtf8(v))))));
    };
    List.add(pairs, Blob.fromArray(Array.concat(Blob.toArray(Sha256.hash(Text.encodeUtf8(":ic-cert-status"))), Blob.toArray(Sha256.hash(leb(Nat16.toNat(r.status)))))));
    let st = Sha256.init();
    for (p in Array.sort<Blob>(List.toArray(pairs), Blob.compare).vals()) Sha256.write(st, p);
    let headersHash = Sha256.finish(st);
    Sha256.hash(Blob.fromArray(Array.concat(Blob.toArray(headersHash), Blob.toArray(Sha256.hash(r.body)))));
  };

  // Where a response is certified: its expression path, the expression's hash, "" (no request), its hash.
  public func certificationPath(r : Response) : [Blob] {
    Array.concat(exprPath(r.path), [Sha256.hash(Text.encodeUtf8(expression(r))), "" : Blob, responseHash(r)]);
  };

  // The response as served: its headers, the expression and the IC-Certificate header (certificate, the tree
  // pruned to this response, version 2, the expression path).
  public func serve(r : Response, tree : Tree, certificate : Blob) : { status_code : Nat16; headers : [Header]; body : Blob; upgrade : ?Bool } {
    let exprPathCbor = List.fromArray<Nat8>([0xd9, 0xd9, 0xf7]);
    let labels = Array.flatten<Text>([["http_expr"], segments(r.path), [EXACT]]);
    head(exprPathCbor, 4, labels.size());
    for (l in labels.vals()) { let b = Text.encodeUtf8(l); head(exprPathCbor, 3, b.size()); for (x in b.vals()) List.add(exprPathCbor, x) };
    let value = "certificate=:" # Base64.encode(certificate) # ":, tree=:" # Base64.encode(cbor(witness(tree, [certificationPath(r)]))) # ":, version=2, expr_path=:" # Base64.encode(Blob.fromArray(List.toArray(exprPathCbor))) # ":";
    { status_code = r.status; headers = Array.concat(r.headers, [("IC-CertificateExpression", expression(r)), ("IC-Certificate", value)]); body = r.body; upgrade = null };
  };
};
