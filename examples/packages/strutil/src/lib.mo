// A string library the greeter app depends on through git, pinned to a commit (`make demo` serves this
// folder as a git repository on loopback).
import Text "mo:core/Text";

module {
  /// `text` framed by `c` on both sides, e.g. banner("hi", '*') == "** hi **".
  public func banner(text : Text, c : Char) : Text {
    let edge = Text.fromChar(c) # Text.fromChar(c);
    edge # " " # text # " " # edge;
  };
};
