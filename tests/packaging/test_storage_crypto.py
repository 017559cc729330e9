"""AMS storage encryption (AES-256-CTR, spec §3.11) checked against an independent construction:
the keystream is built here block by block with AES-ECB from the spec's counter layout
(IV big-endian || block number big-endian), not with the module's CTR context."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from openams.packaging import storage_crypto as sc

KEY = bytes(range(32))
IV = 397304628502661816  # the spec's sample InitializationVector


def keystream(key: bytes, iv: int, blocks: int, first: int = 0) -> bytes:
    """AES-ECB over the counter blocks, spelled out from the spec's layout."""
    ecb = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    counters = b"".join(iv.to_bytes(8, "big") + ((first + n) % 2**64).to_bytes(8, "big") for n in range(blocks))
    return ecb.update(counters) + ecb.finalize()


def reference(key: bytes, iv: int, data: bytes) -> bytes:
    stream = keystream(key, iv, -(-len(data) // 16))
    return bytes(a ^ b for a, b in zip(data, stream, strict=False))


def test_round_trip_and_ciphertext_differs() -> None:
    clear = os.urandom(10_000 + 7)
    cipher = sc.encrypt_range(KEY, IV, 0, clear)
    assert len(cipher) == len(clear) and cipher != clear
    assert sc.decrypt_range(KEY, IV, 0, cipher) == clear


def test_matches_a_keystream_built_from_the_spec_layout() -> None:
    clear = bytes(range(256)) * 5 + b"tail!"
    assert sc.encrypt_range(KEY, IV, 0, clear) == reference(KEY, IV, clear)
    # the first counter block is the IV then eight zero bytes
    assert sc.counter_block(IV, 0) == bytes.fromhex("0583827461850ab8") + bytes(8)
    assert sc.counter_block(IV, 0x0102) == bytes.fromhex("0583827461850ab8") + bytes(6) + b"\x01\x02"


def test_a_fixed_vector() -> None:
    # zero key, IV 1: block 0 of keystream is AES-256-ECB(0^32, 00..01 || 00..00)
    key = bytes(32)
    expected = keystream(key, 1, 1)
    assert sc.encrypt_range(key, 1, 0, bytes(16)) == expected
    # and at block 1 the counter half reads 1 (big-endian), not the IV half
    ecb = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    second = ecb.update(bytes.fromhex("0000000000000001" "0000000000000001")) + ecb.finalize()
    assert sc.encrypt_range(key, 1, 16, bytes(16)) == second


@pytest.mark.parametrize("offset,length", [(0, 1), (1, 15), (7, 33), (15, 2), (16, 16), (17, 100), (4093, 4099),
                                           (9999, 1)])
def test_ranged_decrypt_at_any_offset_equals_slicing_the_clear(offset: int, length: int) -> None:
    clear = os.urandom(10_000)
    cipher = reference(KEY, IV, clear)
    assert sc.decrypt_range(KEY, IV, offset, cipher[offset:offset + length]) == clear[offset:offset + length]


def test_streaming_in_odd_pieces_equals_one_shot() -> None:
    clear = os.urandom(5000)
    cipher = sc.encrypt_range(KEY, IV, 0, clear)
    pieces = [cipher[i:i + n] for i, n in zip(range(0, 5000, 13), [13] * 400, strict=False)]
    assert b"".join(sc.crypt_chunks(KEY, IV, iter(pieces))) == clear
    # from an offset in the middle of a block
    start = 1234
    rest = [cipher[i:i + 777] for i in range(start, 5000, 777)]
    assert b"".join(sc.crypt_chunks(KEY, IV, rest, offset=start)) == clear[start:]


def test_crypt_chunks_closes_its_source() -> None:
    closed = []

    def source():  # type: ignore[no-untyped-def]
        try:
            yield b"a" * 100
            yield b"b" * 100
        finally:
            closed.append(True)

    gen = sc.crypt_chunks(KEY, IV, source())
    next(gen)
    gen.close()
    assert closed == [True]


def test_files_round_trip(tmp_path: Path) -> None:
    clear = os.urandom(3 * 1024 * 1024 + 5)
    src = tmp_path / "clear.bin"
    src.write_bytes(clear)
    assert sc.encrypt_file(src, tmp_path / "enc.bin", KEY, IV, chunk=65_537) == len(clear)
    assert (tmp_path / "enc.bin").read_bytes() == reference(KEY, IV, clear)
    sc.decrypt_file(tmp_path / "enc.bin", tmp_path / "back.bin", KEY, IV)
    assert (tmp_path / "back.bin").read_bytes() == clear


def test_iv_text() -> None:
    assert sc.parse_iv("397304628502661816") == IV
    assert sc.parse_iv(" 18446744073709551615 ") == 2**64 - 1
    assert sc.format_iv(IV) == "397304628502661816"
    for bad in ("", "-1", "0x10", "12.5", "18446744073709551616", "abc", "1e5"):
        with pytest.raises(sc.StorageCryptoError):
            sc.parse_iv(bad)
    assert 0 <= sc.new_iv() < 2**64


def test_the_largest_iv_does_not_carry_into_the_counter() -> None:
    iv = 2**64 - 1
    clear = os.urandom(64)
    assert sc.encrypt_range(KEY, iv, 0, clear) == reference(KEY, iv, clear)


def test_bad_keys_and_ranges_are_refused_without_showing_the_key() -> None:
    with pytest.raises(sc.StorageCryptoError) as err:
        sc.decrypt_range(b"k" * 16, IV, 0, b"data")
    assert "kkkk" not in str(err.value)
    with pytest.raises(sc.StorageCryptoError):
        sc.decrypt_range(KEY, IV, 2**64 * 16, b"x")
    assert sc.decrypt_range(KEY, IV, 5, b"") == b""
