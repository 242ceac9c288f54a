"""Identities: our store, dfx's store read as it is, PEM import, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from icp_identity.identity import Identity  # type: ignore[import-not-found]

from prometheus_sdk import IdentityError
from prometheus_sdk import identity as identities


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    for var in ("PROMETHEUS_IDENTITY", "PROMETHEUS_IDENTITY_PEM", "PROMETHEUS_IDENTITY_DIR", "DFX_IDENTITY_DIR"):
        monkeypatch.delenv(var, raising=False)


def test_default_identity_is_created_once(tmp_path: Path) -> None:
    first = identities.load()
    assert str(first.sender()) == str(identities.load().sender())
    pem = tmp_path / "prometheus" / "identity" / "default" / "identity.pem"
    assert pem.stat().st_mode & 0o777 == 0o600


def test_dfx_identities_are_found_by_name(tmp_path: Path) -> None:
    dfx = tmp_path / "dfx" / "identity" / "alice"
    dfx.mkdir(parents=True)
    key = Identity(type="secp256k1")
    (dfx / "identity.pem").write_bytes(key.to_pem())
    assert str(identities.load("alice").sender()) == str(key.sender())
    names = {i.name: i.source for i in identities.list_identities()}
    assert names["alice"] == "dfx" and names["anonymous"] == "builtin"


def test_create_import_and_errors(tmp_path: Path) -> None:
    created = identities.create("ci", "secp256k1")
    with pytest.raises(IdentityError, match="already exists"):
        identities.create("ci")
    pem = tmp_path / "exported.pem"
    pem.write_bytes(created.to_pem())
    imported = identities.import_pem("copy", pem)
    assert str(imported.sender()) == str(created.sender())
    with pytest.raises(IdentityError, match="no identity named"):
        identities.load("nobody")
    with pytest.raises(IdentityError, match="invalid identity name"):
        identities.load("../escape")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a key")
    with pytest.raises(IdentityError, match="not an Ed25519"):
        identities.import_pem("bad", garbage)
    encrypted = tmp_path / "dfx" / "identity" / "locked"
    encrypted.mkdir(parents=True)
    (encrypted / "identity.pem.encrypted").write_bytes(b"\x00")
    with pytest.raises(IdentityError, match="encrypted"):
        identities.load("locked")
    assert identities.load("anonymous").sender().to_str() == "2vxsx-fae"


def test_encrypted_pkcs8_pem_needs_the_password(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PrivateKey.generate()
    pem = tmp_path / "locked.pem"
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.BestAvailableEncryption(b"s3cret")))
    raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    expected = str(Identity(privkey=raw.hex()).sender())
    with pytest.raises(IdentityError, match="wrong password"):
        identities.from_pem_file(pem, password="nope")
    monkeypatch.setenv("PROMETHEUS_IDENTITY_PASSWORD", "s3cret")
    assert str(identities.import_pem("vault", pem).sender()) == expected
    stored = tmp_path / "prometheus" / "identity" / "vault" / "identity.encrypted.pem"
    assert stored.is_file() and b"ENCRYPTED" in stored.read_bytes()  # kept encrypted at rest
    assert str(identities.load("vault").sender()) == expected
    monkeypatch.delenv("PROMETHEUS_IDENTITY_PASSWORD")
    with pytest.raises(IdentityError, match="PROMETHEUS_IDENTITY_PASSWORD"):
        identities.load("vault")  # no terminal to ask on, no password in the environment
