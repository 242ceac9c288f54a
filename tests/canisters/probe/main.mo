import Prim "mo:⛔";
import Runtime "mo:core/Runtime";
import CertifiedData "mo:core/CertifiedData";
import Cycles "mo:core/Cycles";
import IC "mo:core/InternetComputer";
import CallerAttributes "mo:core/CallerAttributes";
persistent actor Probe {
  public shared func all() : async Text {
    let a = Prim.costCall(1, 2);
    let b = Prim.costCreateCanister();
    let c = Prim.costHttpRequest(1, 2);
    let (d, _) = Prim.costSignWithEcdsa("k", 0 : Nat32);
    let (e, _) = Prim.costSignWithSchnorr("k", 0 : Nat32);
    let f = Runtime.envVar<system>("X");
    let g = Runtime.envVarNames<system>();
    CertifiedData.set("abc");
    let h = CertifiedData.getCertificate();
    let i = Cycles.balance() + Cycles.available() + Cycles.accept<system>(0) + Cycles.burn<system>(0) + Cycles.refunded();
    let j = IC.isReplicated();
    let k = IC.replyDeadline();
    let l = IC.performanceCounter(0);
    let m = Prim.canisterSubnet();
    let n = Prim.canisterVersion();
    let o = Prim.rootKey();
    let p = CallerAttributes.getAttributes<system>();
    debug_show (a, b, c, d, e, f, g, h, i, j, k, l, m, n, o)
  };
  system func inspect({ caller : Principal; msg : { #all : () -> () } }) : Bool { true };
  system func heartbeat() : async () {};
}
