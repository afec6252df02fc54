"""Encryption at rest: AES-GCM bound to what each ciphertext is, and the key file that
holds the master key."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest

from watchkeeper.errors import EncryptionKeyError
from watchkeeper.store.crypto import (
    KEY_BYTES,
    NONCE_BYTES,
    KeyRing,
    decode_key,
    encode_key,
    generate_key,
    read_key_file,
    write_key_file,
)

SECRET = b"\x00\x01template-vector-bytes\xff" * 8


@pytest.fixture
def keys() -> KeyRing:
    return KeyRing(generate_key())


@pytest.mark.parametrize("plaintext", [b"", b"x", SECRET, bytes(range(256)) * 40])
def test_encrypt_then_decrypt_gives_back_the_plaintext(keys: KeyRing, plaintext: bytes) -> None:
    blob = keys.encrypt(plaintext, "template:1")
    assert keys.decrypt(blob, "template:1") == plaintext
    assert len(blob) == NONCE_BYTES + len(plaintext) + 16
    if len(plaintext) >= 8:  # a single byte occurs in random ciphertext by chance
        assert plaintext not in blob


def test_the_same_plaintext_encrypts_differently_each_time(keys: KeyRing) -> None:
    """A fresh nonce per ciphertext: equal templates do not give equal ciphertexts."""
    assert keys.encrypt(SECRET, "template:1") != keys.encrypt(SECRET, "template:1")


@pytest.mark.parametrize(
    "other",
    ["template:2", "face-image:1", "alert-probe:1", "camera:1", "template:1 ", ""],
)
def test_a_ciphertext_is_bound_to_its_context(keys: KeyRing, other: str) -> None:
    """A template moved to another row (or used as another kind of data) does not decrypt."""
    blob = keys.encrypt(SECRET, "template:1")
    with pytest.raises(EncryptionKeyError, match=r"wrong key, or the data was altered"):
        keys.decrypt(blob, other)


def _flip(blob: bytes, index: int) -> bytes:
    changed = bytearray(blob)
    changed[index] ^= 0x01
    return bytes(changed)


@pytest.mark.parametrize(
    "tamper",
    [
        lambda b: _flip(b, 0),  # nonce
        lambda b: _flip(b, NONCE_BYTES + 3),  # ciphertext
        lambda b: _flip(b, len(b) - 1),  # tag
        lambda b: b[:-1],  # truncated tag
        lambda b: b + b"\x00",  # extended
        lambda b: b[:NONCE_BYTES],  # nonce only
        lambda b: b"",  # nothing
    ],
    ids=["nonce", "ciphertext", "tag", "truncated", "extended", "nonce-only", "empty"],
)
def test_an_altered_ciphertext_is_refused(keys: KeyRing, tamper) -> None:
    blob = keys.encrypt(SECRET, "template:1")
    with pytest.raises(EncryptionKeyError, match=r"cannot decrypt template:1"):
        keys.decrypt(tamper(blob), "template:1")


def test_another_key_cannot_decrypt(keys: KeyRing) -> None:
    blob = keys.encrypt(SECRET, "template:1")
    with pytest.raises(EncryptionKeyError, match=r"wrong key"):
        KeyRing(generate_key()).decrypt(blob, "template:1")


def test_the_check_value_matches_only_the_same_key() -> None:
    master = generate_key()
    stored = KeyRing(master).check_value()
    KeyRing(master).verify(stored)
    with pytest.raises(EncryptionKeyError, match=r"does not match this database"):
        KeyRing(generate_key()).verify(stored)


def test_derived_keys_differ_from_each_other_and_the_master() -> None:
    """The audit MAC key, the check value and the data key are separate derivations."""
    master = generate_key()
    keys = KeyRing(master)
    assert len({master, keys.audit_key, keys.check_value()}) == 3
    assert keys.audit_key != KeyRing(generate_key()).audit_key


@pytest.mark.parametrize("length", [0, 16, 31, 33, 64])
def test_a_key_ring_needs_a_32_byte_master(length: int) -> None:
    with pytest.raises(EncryptionKeyError, match=r"must be 32 bytes"):
        KeyRing(bytes(length))


def test_the_key_file_is_private_and_round_trips(tmp_path: Path) -> None:
    key = generate_key()
    path = tmp_path / "config" / "watchkeeper" / "key"
    write_key_file(path, key)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_key_file(path) == key
    assert path.read_text("ascii").strip() == encode_key(key)


def test_an_existing_key_file_is_never_overwritten(tmp_path: Path) -> None:
    """Overwriting the key would make every encrypted template unreadable."""
    path = tmp_path / "key"
    first = generate_key()
    write_key_file(path, first)
    before = path.read_bytes()
    with pytest.raises(FileExistsError):
        write_key_file(path, generate_key())
    assert path.read_bytes() == before
    assert read_key_file(path) == first


def test_a_missing_key_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "key"
    with pytest.raises(EncryptionKeyError, match=r"does not exist") as error:
        read_key_file(path)
    assert str(path) in str(error.value)
    assert "watchkeeper init" in str(error.value)


def test_a_key_with_surrounding_whitespace_is_accepted() -> None:
    key = generate_key()
    assert decode_key(f"  {encode_key(key)}\n", "the key file") == key


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not base64 at all!", r"the encryption key in KEYFILE is not base64"),
        ("abc", r"the encryption key in KEYFILE is not base64"),
        ("", r"the encryption key in KEYFILE must be 32 bytes, not 0"),
        (base64.b64encode(bytes(16)).decode(), r"in KEYFILE must be 32 bytes, not 16"),
        (base64.b64encode(bytes(31)).decode(), r"in KEYFILE must be 32 bytes, not 31"),
        (base64.b64encode(bytes(33)).decode(), r"in KEYFILE must be 32 bytes, not 33"),
        (base64.b64encode(bytes(64)).decode(), r"in KEYFILE must be 32 bytes, not 64"),
    ],
    ids=["punctuation", "bad-padding", "empty", "16-bytes", "31-bytes", "33-bytes", "64-bytes"],
)
def test_a_malformed_key_is_refused_with_a_clear_message(text: str, message: str) -> None:
    with pytest.raises(EncryptionKeyError, match=message):
        decode_key(text, "KEYFILE")


@pytest.mark.parametrize(
    "content",
    ["garbage-not-a-key", base64.b64encode(bytes(KEY_BYTES - 1)).decode()],
    ids=["not-base64", "short"],
)
def test_a_malformed_key_file_names_the_file(tmp_path: Path, content: str) -> None:
    path = tmp_path / "key"
    path.write_text(content, "ascii")
    with pytest.raises(EncryptionKeyError) as error:
        read_key_file(path)
    assert str(path) in str(error.value)


def test_free_text_is_encrypted_under_a_key_of_its_own(keys: KeyRing) -> None:
    """A text ciphertext does not open with the key of photos and templates, nor the
    other way round, even under the same context."""
    blob = keys.encrypt_text("Zoë, red coat", "subject.label")
    assert keys.decrypt_text(blob, "subject.label") == "Zoë, red coat"
    with pytest.raises(EncryptionKeyError):
        keys.decrypt(blob, "subject.label")
    with pytest.raises(EncryptionKeyError, match=r"cannot decrypt subject\.label"):
        keys.decrypt_text(keys.encrypt(b"Zoe", "subject.label"), "subject.label")
