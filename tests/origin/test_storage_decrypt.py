"""The origin service's reading of storage-encrypted files, on a local blob backend: ranges,
streamed chunks (the progressive path for big files) and the MP4 index all see the clear bytes;
a missing key or IV is an error naming the file, never ciphertext served as media; the key stays
out of the AssetRef's repr, equality and hash."""

from __future__ import annotations

import dataclasses
import os
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from openams.entities.origin_lookup import OriginFile
from openams.origin.app import _asset_ref
from openams.origin.service import AssetRef, OriginError, OriginService
from openams.storage.base import ContentSettings
from openams.storage.local import LocalBackend
from tests.origin.conftest import make_clip

ACCOUNT = "storageacct"
KEY = os.urandom(32)
IV = 0xFEDCBA9876543210


def aes_ctr(key: bytes, iv: int, data: bytes) -> bytes:
    enc = Cipher(algorithms.AES(key), modes.CTR(iv.to_bytes(8, "big") + bytes(8))).encryptor()
    return enc.update(data) + enc.finalize()


@pytest.fixture(scope="module")
def clear_clip(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return make_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", 2, "160x90", gop=25).read_bytes()


@pytest.fixture
def setup(tmp_path: Path, clear_clip: bytes) -> tuple[OriginService, AssetRef, AssetRef]:
    storage = LocalBackend(tmp_path / "blobs")
    container = f"asset-{uuid.uuid4()}"
    storage.create_container(ACCOUNT, container)
    for name, data in (("enc.mp4", aes_ctr(KEY, IV, clear_clip)), ("clear.mp4", clear_clip)):
        with storage.spool() as spool:
            spool.write(data)
            storage.put_blob(ACCOUNT, container, name, spool, ContentSettings(content_type="video/mp4"), {})
    files = (("clear.mp4", len(clear_clip), ""), ("enc.mp4", len(clear_clip), ""))
    encrypted = AssetRef("nb:cid:UUID:x", ACCOUNT, container, files, None, (("enc.mp4", IV),), KEY)
    plain = AssetRef("nb:cid:UUID:y", ACCOUNT, container, files)
    return OriginService(storage, tmp_path / "index"), encrypted, plain


def test_ranged_reads_and_streams_are_clear(setup: tuple[OriginService, AssetRef, AssetRef],
                                            clear_clip: bytes) -> None:
    service, ref, _plain = setup
    size, _etag, read = service.progressive(ref, "enc.mp4")
    assert size == len(clear_clip) and read(0, size) == clear_clip
    for offset, length in ((1, 1), (15, 2), (33, 1000), (size - 5, 5)):
        assert read(offset, length) == clear_clip[offset:offset + length]
    for start, end in ((0, size - 1), (9, 9 + 70_000), (size // 3 + 1, size - 1)):
        assert b"".join(service.stream(ref, "enc.mp4", start, end)) == clear_clip[start:end + 1]
    # clear files of the same asset are read as they are
    assert b"".join(service.stream(ref, "clear.mp4", 0, size - 1)) == clear_clip


def test_the_index_is_built_from_the_clear_bytes(setup: tuple[OriginService, AssetRef, AssetRef],
                                                 clear_clip: bytes) -> None:
    service, ref, plain = setup
    decrypted = service.index(ref, "enc.mp4", len(clear_clip))
    reference = service.index(plain, "clear.mp4", len(clear_clip))
    assert [len(t.table) for t in decrypted.tracks] == [len(t.table) for t in reference.tracks]
    assert [list(t.table.sizes) for t in decrypted.tracks] == [list(t.table.sizes) for t in reference.tracks]
    # another IV is another clear text: not served from the first index
    wrong = dataclasses.replace(ref, encrypted=(("enc.mp4", IV ^ 1),))
    with pytest.raises(OriginError) as err:
        service.index(wrong, "enc.mp4", len(clear_clip))
    assert err.value.code == "UnstreamableFile"


def test_a_missing_key_or_iv_is_an_error_not_ciphertext(setup: tuple[OriginService, AssetRef, AssetRef]) -> None:
    service, ref, _plain = setup
    no_key = dataclasses.replace(ref, storage_key=b"")
    for call in (lambda: service.progressive(no_key, "enc.mp4"), lambda: service.stream(no_key, "enc.mp4", 0, 10),
                 lambda: service.index(no_key, "enc.mp4", 100)):
        with pytest.raises(OriginError) as err:
            call()
        assert err.value.code == "StorageKeyMissing" and "enc.mp4" in err.value.message
    no_iv = dataclasses.replace(ref, encrypted=(("enc.mp4", None),))
    with pytest.raises(OriginError) as err:
        service.progressive(no_iv, "enc.mp4")
    assert err.value.code == "StorageEncryptionInvalid"


def test_the_key_stays_out_of_repr_equality_and_hash(setup: tuple[OriginService, AssetRef, AssetRef]) -> None:
    _service, ref, _plain = setup
    assert KEY.hex() not in repr(ref) and repr(KEY) not in repr(ref)
    other = dataclasses.replace(ref, storage_key=os.urandom(32))
    assert other == ref and hash(other) == hash(ref)


def test_the_asset_ref_carries_each_files_iv_and_refuses_foreign_keys() -> None:
    kid = str(uuid.uuid4())
    asset = SimpleNamespace(id="nb:cid:UUID:z", storage_account_name=ACCOUNT, container="asset-z", last_modified=None)

    def f(name: str, encrypted: bool, iv: str | None = None, key: str | None = None) -> OriginFile:
        return OriginFile(name, 10, False, "video/mp4", None, encrypted, iv, key)

    files = (f("a.mp4", True, "42", kid.upper()), f("b.mp4", True, "0x2a", f"nb:kid:UUID:{kid}"),
             f("c.mp4", True, "42", f"nb:kid:UUID:{uuid.uuid4()}"), f("d.mp4", False), f("e.mp4", True, "7"))
    target = SimpleNamespace(asset=asset, files=files, storage_key_id=f"nb:kid:UUID:{kid}")
    ref = _asset_ref(target, KEY)
    assert ref.encrypted == (("a.mp4", 42), ("b.mp4", None), ("c.mp4", None), ("e.mp4", 7))
    assert ref.storage_key == KEY and ref.encryption_of("d.mp4") == (False, None)
