// A small text library vendored into the app's repository (mops dependency by path).
import Text "mo:core/Text";

module {
  /// The text without leading and trailing spaces.
  public func trimmed(t : Text) : Text { Text.trim(t, #char ' ') };
};
