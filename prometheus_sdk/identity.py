"""Identities: PEM files (Ed25519, secp256k1), our identity store, and dfx's store read as it is.

Store: `$XDG_CONFIG_HOME/prometheus/identity/<name>/identity.pem` (0600). dfx's identities under
`~/.config/dfx/identity/<name>/identity.pem` are found by name too. `anonymous` is always available.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from icp_identity.identity import Identity  # type: ignore[import-not-found]

from prometheus_sdk.errors import IdentityError

NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
ANONYMOUS = "anonymous"
DEFAULT = "default"


def _config_home() -> Path:
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")


def store_dir() -> Path:
    return Path(os.environ.get("PROMETHEUS_IDENTITY_DIR") or _config_home() / "prometheus" / "identity")


def dfx_store_dir() -> Path:
    return Path(os.environ.get("DFX_IDENTITY_DIR") or _config_home() / "dfx" / "identity")


@dataclass(frozen=True)
class IdentityInfo:
    name: str
    source: str  # "prometheus" | "dfx" | "builtin"
    principal: str
    path: Path | None


PASSWORD_ENV = "PROMETHEUS_IDENTITY_PASSWORD"


def _decrypt(path: Path, text: str, password: str | None) -> Identity:
    """An encrypted PKCS#8 PEM, with the password from the argument, $PROMETHEUS_IDENTITY_PASSWORD or a prompt."""
    import getpass

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    if password is None:
        password = os.environ.get(PASSWORD_ENV)
    if password is None:
        if not os.isatty(0):
            raise IdentityError(f"{path} is encrypted: set {PASSWORD_ENV} or run interactively")
        password = getpass.getpass(f"password for {path.name}: ")
    try:
        key = serialization.load_pem_private_key(text.encode(), password=password.encode())
    except (ValueError, TypeError) as exc:
        raise IdentityError(f"cannot decrypt {path}: wrong password or not an encrypted private key") from exc
    if isinstance(key, ed25519.Ed25519PrivateKey):
        raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                serialization.NoEncryption())
        return Identity(privkey=raw.hex(), type="ed25519")
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name in ("secp256k1", "secp256r1"):
        secret = key.private_numbers().private_value.to_bytes(32, "big")
        return Identity(privkey=secret.hex(), type="secp256k1" if key.curve.name == "secp256k1" else "p256")
    raise IdentityError(f"{path}: unsupported key type (Ed25519, secp256k1 or P-256 only)")


def from_pem_file(path: Path, password: str | None = None) -> Identity:
    """Load a PEM (PKCS#8 Ed25519, SEC1/PKCS#8 secp256k1 or P-256); encrypted PKCS#8 asks for a password."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise IdentityError(f"cannot read {path}: {exc.strerror}") from exc
    if "BEGIN ENCRYPTED PRIVATE KEY" in text:
        return _decrypt(path, text, password)
    if "ENCRYPTED" in text:
        raise IdentityError(f"{path} uses legacy PEM encryption; convert it to encrypted PKCS#8 or decrypt it")
    try:
        return Identity.from_pem(text)
    except Exception as exc:  # ecdsa raises several error types for bad PEM
        raise IdentityError(f"{path} is not an Ed25519/secp256k1/P-256 private key PEM: {exc}") from exc


def _validate(name: str) -> None:
    if not NAME.match(name):
        raise IdentityError(f"invalid identity name {name!r}: use letters, digits, '.', '_', '-', '@'")


def _find(name: str) -> tuple[Path, str] | None:
    for root, source in ((store_dir(), "prometheus"), (dfx_store_dir(), "dfx")):
        pem = root / name / "identity.pem"
        if pem.is_file():
            return pem, source
        if source == "prometheus" and (root / name / "identity.encrypted.pem").is_file():
            return root / name / "identity.encrypted.pem", source
        if (root / name / "identity.pem.encrypted").is_file():
            raise IdentityError(f"{source} identity {name!r} is encrypted; encrypted identities are not supported "
                                "yet (export it unencrypted with `dfx identity export` and import it)")
    return None


def _config_file() -> Path:
    return store_dir().parent / "config.json"


def selected() -> str:
    """The identity used when none is named: $PROMETHEUS_IDENTITY, then `identity use`, then `default`."""
    import json

    env = os.environ.get("PROMETHEUS_IDENTITY")
    if env:
        return env
    try:
        return str(json.loads(_config_file().read_text())["identity"])
    except (OSError, ValueError, KeyError):
        return DEFAULT


def use(name: str) -> None:
    """Make `name` the identity used when none is named."""
    import json

    if name != ANONYMOUS:
        _validate(name)
        if _find(name) is None:
            raise IdentityError(f"no identity named {name!r} (see `prometheus identity list`)")
    path = _config_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"identity": name}) + "\n")


def load(name: str | None = None) -> Identity:
    """The named identity; `None` means the selected one (`default` is created on first use)."""
    pem_env = os.environ.get("PROMETHEUS_IDENTITY_PEM")
    if name is None and pem_env:
        return from_pem_file(Path(pem_env))
    name = name or selected()
    if name == ANONYMOUS:
        return Identity(anonymous=True)
    _validate(name)
    found = _find(name)
    if found is None:
        if name == DEFAULT:
            return create(DEFAULT)
        raise IdentityError(f"no identity named {name!r} (see `prometheus identity list`)")
    return from_pem_file(found[0])


def create(name: str, key_type: str = "ed25519") -> Identity:
    """A new identity in our store; never overwrites an existing one."""
    _validate(name)
    if name == ANONYMOUS or _find(name) is not None:
        raise IdentityError(f"identity {name!r} already exists")
    if key_type not in ("ed25519", "secp256k1"):
        raise IdentityError(f"unsupported key type {key_type!r}: use ed25519 or secp256k1")
    identity = Identity(type=key_type)
    _write_pem(name, identity.to_pem())
    return identity


def import_pem(name: str, path: Path) -> Identity:
    """Import a PEM; an encrypted one is checked (password needed) and stored still encrypted."""
    identity = from_pem_file(path)
    _validate(name)
    if _find(name) is not None:
        raise IdentityError(f"identity {name!r} already exists")
    text = path.read_text()
    if "BEGIN ENCRYPTED PRIVATE KEY" in text:
        _write_pem(name, text.encode(), "identity.encrypted.pem")
    else:
        _write_pem(name, identity.to_pem())
    return identity


def _write_pem(name: str, pem: bytes, filename: str = "identity.pem") -> None:
    folder = store_dir() / name
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / filename
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)


def list_identities() -> list[IdentityInfo]:
    found = [IdentityInfo(ANONYMOUS, "builtin", str(Identity(anonymous=True).sender()), None)]
    seen = {ANONYMOUS}
    for root, source in ((store_dir(), "prometheus"), (dfx_store_dir(), "dfx")):
        if not root.is_dir():
            continue
        for pem in sorted([*root.glob("*/identity.pem"), *root.glob("*/identity.encrypted.pem")]):
            name = pem.parent.name
            if name in seen:
                continue
            seen.add(name)
            if pem.name == "identity.encrypted.pem":
                principal = "(encrypted)"
            else:
                try:
                    principal = str(from_pem_file(pem).sender())
                except IdentityError as exc:
                    principal = f"(unreadable: {exc})"
            found.append(IdentityInfo(name, source, principal, pem))
    return found
