"""Encryption of biometric data at rest, and the key that protects it.

One 32-byte master key, kept outside the database and the data folder (a key
file or the WATCHKEEPER_KEY environment variable), is stretched with HKDF
into separate keys: one for AES-256-GCM encryption of templates, face images,
alert snapshots and camera URLs; one for AES-256-GCM encryption of the free text
that describes people (``watchkeeper.store.sealed``); one for the audit log's HMAC chain; one for
a check value stored in the database, so that a wrong key is recognised
before any data is touched; one for the MAC of a backup's manifest.

Every ciphertext is bound to what it is and to which row it belongs
(associated data), so an encrypted template cannot be moved to another
subject without detection.
"""

from __future__ import annotations

import base64
import hmac
import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from watchkeeper.errors import EncryptionKeyError

KEY_BYTES = 32
NONCE_BYTES = 12


def generate_key() -> bytes:
    return os.urandom(KEY_BYTES)


def encode_key(key: bytes) -> str:
    return base64.b64encode(key).decode("ascii")


def decode_key(text: str, where: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except ValueError:
        raise EncryptionKeyError(f"the encryption key in {where} is not base64") from None
    if len(key) != KEY_BYTES:
        raise EncryptionKeyError(
            f"the encryption key in {where} must be {KEY_BYTES} bytes, not {len(key)}"
        )
    return key


def write_key_file(path: Path, key: bytes) -> None:
    """Create ``path`` readable by its owner only; never overwrite an existing key."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(encode_key(key) + "\n")


def read_key_file(path: Path) -> bytes:
    if not path.is_file():
        raise EncryptionKeyError(
            f"no encryption key: {path} does not exist and WATCHKEEPER_KEY is not set "
            "(`watchkeeper init` creates one)"
        )
    return decode_key(path.read_text("ascii"), str(path))


class KeyRing:
    """The keys derived from one master key."""

    def __init__(self, master: bytes) -> None:
        if len(master) != KEY_BYTES:
            raise EncryptionKeyError(f"the encryption key must be {KEY_BYTES} bytes")
        self._aead = AESGCM(_derive(master, b"watchkeeper data encryption"))
        self._text_aead = AESGCM(_derive(master, b"watchkeeper text encryption"))
        self.audit_key = _derive(master, b"watchkeeper audit chain")
        self._check_key = _derive(master, b"watchkeeper key check")
        self._backup_key = _derive(master, b"watchkeeper backup manifest")

    def encrypt(self, plaintext: bytes, context: str) -> bytes:
        """nonce || ciphertext || tag, bound to ``context`` (e.g. ``template:<id>``)."""
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, plaintext, context.encode())

    def decrypt(self, blob: bytes, context: str) -> bytes:
        try:
            return self._aead.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], context.encode())
        except (InvalidTag, ValueError):
            raise EncryptionKeyError(
                f"cannot decrypt {context}: wrong key, or the data was altered"
            ) from None

    def encrypt_text(self, text: str, context: str) -> bytes:
        """nonce || ciphertext || tag of ``text`` (UTF-8) under the text key, bound to
        ``context`` (e.g. ``subject.label``)."""
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._text_aead.encrypt(nonce, text.encode("utf-8"), context.encode())

    def decrypt_text(self, blob: bytes, context: str) -> str:
        try:
            plain = self._text_aead.decrypt(
                blob[:NONCE_BYTES], blob[NONCE_BYTES:], context.encode()
            )
        except (InvalidTag, ValueError):
            raise EncryptionKeyError(
                f"cannot decrypt {context}: wrong key, or the text was altered or moved "
                "from another column"
            ) from None
        return plain.decode("utf-8")

    def check_value(self) -> bytes:
        """A value stored with the data: it matches only for the same key."""
        return hmac.new(self._check_key, b"watchkeeper", "sha256").digest()

    def backup_mac(self, manifest: bytes) -> bytes:
        """MAC of a backup's manifest: an archive whose manifest (and with it, any file
        checksum) was changed without the key no longer matches."""
        return hmac.new(self._backup_key, manifest, "sha256").digest()

    def verify(self, stored: bytes) -> None:
        if not hmac.compare_digest(stored, self.check_value()):
            raise EncryptionKeyError(
                "the encryption key does not match this database; nothing was read or changed"
            )


def _derive(master: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=info).derive(master)
