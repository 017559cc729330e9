"""AMS storage encryption: AES-256 in counter mode over a whole file, as AMS clients applied it
before upload (spec: delivery-live-management-connector §3.11).

The layout, exactly as the spec gives it (and as the AMS SDKs and Microsoft's migration tool
build it):

* the file's `InitializationVector` is an unsigned 64-bit integer, stored on the AssetFile as a
  decimal string (the SDK's `ulong.ToString()`, e.g. "397304628502661816");
* the 16-byte counter block of the n-th 16-byte block of the file is
  IV (8 bytes, big-endian) || n (8 bytes, big-endian), n counting from 0 at file offset 0;
* keystream = AES-ECB-encrypt(key, counter block); data XOR keystream, no padding; encrypting and
  decrypting are the same operation.

So any byte range can be decrypted on its own: start the counter at `offset // 16` and drop the
first `offset % 16` keystream bytes. That is what lets the origin serve ranged reads and segments
of a storage-encrypted file without reading it from the start, and the encoder decrypt a download
chunk by chunk in constant memory.

The block counter lives in the low 8 bytes and is incremented there only; `cryptography`'s CTR
mode increments all 16 bytes, which is the same as long as the counter never passes 2**64 - 1 —
the spec requires files shorter than 2**64 blocks, and `crypt_range` refuses ranges beyond that.

Pure (bytes in, bytes out, nothing of openams imported), hence in `packaging/`: the entity rules
(IV validation), the encoder's input download and the origin's reader all use it, and
`packaging/` loads nothing heavy. Key material is never logged or put in exception messages.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

BLOCK = 16
KEY_BYTES = 32
"""AES-256: a StorageEncryption content key is 32 bytes."""
MAX_IV = (1 << 64) - 1
MAX_OFFSET = (1 << 64) * BLOCK
"""One past the last byte the 64-bit block counter can reach."""
CHUNK = 1 << 20
SCHEME = "StorageEncryption"
VERSION = "1.0"

_DECIMAL = re.compile(r"^[0-9]{1,20}$")


class StorageCryptoError(ValueError):
    """A key, IV or range that storage encryption cannot use (the message never holds key bytes)."""


def parse_iv(value: str | int) -> int:
    """An AssetFile's `InitializationVector` (decimal text of an unsigned 64-bit integer) as an int.

    Strict on purpose: a hex or base64 IV from another scheme would decrypt to garbage silently,
    so anything but 1 to 20 decimal digits in range is refused."""
    if isinstance(value, bool):
        raise StorageCryptoError("InitializationVector must be a decimal unsigned 64-bit integer, not a boolean.")
    if isinstance(value, int):
        iv = value
    else:
        text = str(value).strip()
        if not _DECIMAL.match(text):
            raise StorageCryptoError(f"InitializationVector must be the decimal text of an unsigned 64-bit integer "
                                     f"(for example \"397304628502661816\"), not {text[:40]!r}.")
        iv = int(text)
    if not 0 <= iv <= MAX_IV:
        raise StorageCryptoError("InitializationVector must be between 0 and 18446744073709551615 (64 bits).")
    return iv


def format_iv(iv: int) -> str:
    """The `InitializationVector` text for an IV (what the SDK's `ulong.ToString()` writes)."""
    return str(parse_iv(iv))


def new_iv() -> int:
    """A random 64-bit IV; one per file (the spec requires IVs unique per file for a key)."""
    return int.from_bytes(os.urandom(8), "big")


def counter_block(iv: int, block: int) -> bytes:
    """The AES input for block `block` of a file: IV big-endian in bytes 0 to 7, block number
    big-endian in bytes 8 to 15 (wrapping at 2**64 without touching the IV half)."""
    return parse_iv(iv).to_bytes(8, "big") + (block % (1 << 64)).to_bytes(8, "big")


def _check_key(key: bytes) -> None:
    if len(key) != KEY_BYTES:
        raise StorageCryptoError(f"A storage encryption key is {KEY_BYTES} bytes (AES-256), not {len(key)}.")


class CtrStream:
    """Encrypts or decrypts a file's bytes from `offset` on, fed in pieces of any size.

    Holds one AES context: memory does not grow with the amount of data fed through."""

    def __init__(self, key: bytes, iv: int, offset: int = 0) -> None:
        _check_key(key)
        if not 0 <= offset < MAX_OFFSET:
            raise StorageCryptoError(f"offset {offset} is outside what a 64-bit block counter can reach.")
        self.offset = offset
        block, skip = divmod(offset, BLOCK)
        self._ctx = Cipher(algorithms.AES(key), modes.CTR(counter_block(iv, block))).encryptor()
        if skip:
            self._ctx.update(bytes(skip))  # drop the keystream bytes before `offset` in its block

    def update(self, data: bytes) -> bytes:
        """The next `len(data)` bytes, transformed."""
        if self.offset + len(data) > MAX_OFFSET:
            raise StorageCryptoError("the data runs past what a 64-bit block counter can reach.")
        self.offset += len(data)
        return self._ctx.update(data)


def crypt_range(key: bytes, iv: int, offset: int, data: bytes) -> bytes:
    """`data`, which sits at `offset` of the file, encrypted or decrypted (the same operation)."""
    if not data:
        return b""
    return CtrStream(key, iv, offset).update(data)


decrypt_range = crypt_range
encrypt_range = crypt_range


def crypt_chunks(key: bytes, iv: int, chunks: Iterable[bytes], offset: int = 0) -> Iterator[bytes]:
    """Transform a stream of chunks that starts at `offset` of the file, one chunk at a time.

    Closing the returned generator closes `chunks` too (when it can be closed), so an abandoned
    download releases its storage reader."""
    stream = CtrStream(key, iv, offset)
    try:
        for chunk in chunks:
            if chunk:
                yield stream.update(chunk)
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()


def crypt_file(src: str | os.PathLike[str], dst: str | os.PathLike[str], key: bytes, iv: int,
               chunk: int = CHUNK) -> int:
    """Encrypt (or decrypt) the file `src` into `dst` chunk by chunk; returns the byte count."""
    stream = CtrStream(key, iv)
    total = 0
    with open(src, "rb") as fin, open(Path(dst), "wb") as fout:
        while data := fin.read(chunk):
            fout.write(stream.update(data))
            total += len(data)
    return total


encrypt_file = crypt_file
decrypt_file = crypt_file
