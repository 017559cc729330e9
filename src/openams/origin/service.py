"""What the origin serves, independent of HTTP: an asset's presentation, its manifests and its
segments, built from the blobs on demand and cached.

Three caches, from slowest to rebuild to fastest:

- the **sample index** of each MP4 (reading `moov` costs ranged reads and parsing): memory LRU,
  plus a sidecar file under `<data_dir>/origin-index/` so a restart reads it back instead of
  re-parsing (keyed by the blob's ETag, so a replaced file is re-indexed);
- the **presentation** of an asset (track choice, names and segment timelines), keyed by the
  asset's file list (name, size, last change);
- built **segments and manifests**, in a byte-bounded LRU (`origin_cache_mb`), so popular
  segments are sent straight from memory like a CDN edge would.

Segments are built from coalesced ranged reads of exactly the samples they hold: a whole MP4 is
never loaded.

Storage-encrypted files (AES-256-CTR ciphertext at rest, spec §3.11) are decrypted as they are
read: every byte the origin takes from an asset goes through `_reader` (or `stream` for long
progressive downloads), which decrypts any range on its own from the file's IV and the asset's
storage key carried by the `AssetRef`. Indexes, presentations, manifests and segments are thus
built from clear bytes and everything above the reader is unchanged. The key never enters a cache
key, an ETag or a log line; the IV (public, it is an AssetFile property) is part of the index key
so a file re-described with another IV is re-indexed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..packaging import dash, encryption, fmp4, hls, mpegts, smooth
from ..packaging.filters import FilterError, FilterSpec, apply_filters, first_quality
from ..packaging.index import MediaFormatError, MediaIndex, index_file
from ..packaging.model import Protection, Sample, TrackView
from ..packaging.presentation import (
    Presentation,
    PresentationError,
    PresentedTrack,
    build_presentation,
    media_files,
)
from ..packaging.storage_crypto import StorageCryptoError, crypt_chunks, crypt_range
from .cache import LruCache
from .urls import DASH_FORMATS, HLS_FORMATS, SMOOTH_FORMATS, OriginRequest, UrlError

log = logging.getLogger("openams.origin")

PROGRESSIVE_REFUSED = (".ism", ".ismv", ".isma", ".ismt", ".ismc")
MAX_SPAN_WASTE = 1 << 20
"""Read one span covering a segment's samples when the interleaved bytes of other tracks inside
it are at most this much; otherwise read the coalesced sample ranges one by one."""


class OriginError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass(frozen=True)
class AssetRef:
    """Where an asset's blobs are and what files it has (from the database)."""

    asset_id: str
    storage_account: str
    container: str
    files: tuple[tuple[str, int, str], ...]
    """(name, size, last-modified text) of every file."""
    last_modified: datetime | None = None
    encrypted: tuple[tuple[str, int | None], ...] = ()
    """(name, IV) of every storage-encrypted file; IV None when the file's InitializationVector
    is missing or unreadable (reading it then fails with a clear error instead of serving garbage)."""
    storage_key: bytes = field(default=b"", repr=False, compare=False)
    """The asset's clear StorageEncryption key (b"" if it has none or it cannot be read). Kept out
    of `repr`, equality and hashing so it can never leak into a cache key or a log line."""

    def encryption_of(self, name: str) -> tuple[bool, int | None]:
        """(storage-encrypted?, IV) of one of the asset's files."""
        for n, iv in self.encrypted:
            if n == name:
                return True, iv
        return False, None


@dataclass(frozen=True)
class Built:
    body: bytes
    content_type: str
    etag: str
    cacheable: bool
    """True for segments (immutable), False for manifests and playlists."""


CONTENT_TYPES = {
    "hls": "application/vnd.apple.mpegurl",
    "dash": "application/dash+xml",
    "smooth": "application/vnd.ms-sstr+xml",
    "ts": "video/MP2T",
    "mp4": "video/mp4",
    "audio-mp4": "audio/mp4",
}


class OriginService:
    def __init__(self, storage: Any, cache_dir: Path, *, cache_bytes: int = 256 << 20,
                 index_cache_bytes: int = 128 << 20) -> None:
        self.storage = storage
        self.cache_dir = cache_dir
        self.indexes: LruCache[MediaIndex] = LruCache(index_cache_bytes, _index_weight)
        self.presentations: LruCache[Presentation] = LruCache(256)
        self.built: LruCache[Built] = LruCache(cache_bytes, lambda b: len(b.body) + 200)
        self._ts_counts: LruCache[list[dict[int, int]]] = LruCache(4096)
        # sub-sample maps of encrypted video segments: key-independent and costlier to find than
        # the encryption itself, so kept apart from (and far longer than) the built segments
        self._maps: LruCache[tuple[encryption.Subsamples, ...]] = LruCache(32 << 20, _maps_weight)
        # Packaging (sub-sample maps included) is CPU work under the GIL: more threads at it than
        # cores only thrash the GIL and the CPU caches (measured: a 1080p CENC segment costs 2-3x the
        # CPU with 32 builders at once than with 2). Reading the samples (I/O, possibly remote) stays
        # outside, unlimited.
        self._packaging = threading.BoundedSemaphore(_cpu_count())
        self._locks: dict[Any, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    # ---- reading blobs --------------------------------------------------------------------------
    def _reader(self, ref: AssetRef, name: str) -> Callable[[int, int], bytes]:
        """`read(offset, length)` over the file's clear bytes (decrypting a storage-encrypted file)."""
        encrypted, iv = ref.encryption_of(name)
        if encrypted:
            _check_decryptable(ref, name, iv)

        def read(offset: int, length: int) -> bytes:
            if length <= 0:
                return b""
            data = b"".join(self.storage.read(ref.storage_account, ref.container, name, offset, offset + length - 1))
            if encrypted:
                assert iv is not None
                return _decrypt(ref, name, iv, offset, data)
            return data
        return read

    def stream(self, ref: AssetRef, name: str, start: int, end: int) -> Iterator[bytes]:
        """Bytes [start, end] of the file as chunks, decrypted on the way for a storage-encrypted
        file (constant memory, for progressive downloads too big to build in one body)."""
        chunks = self.storage.read(ref.storage_account, ref.container, name, start, end)
        encrypted, iv = ref.encryption_of(name)
        if not encrypted:
            return chunks
        try:
            _check_decryptable(ref, name, iv)
            assert iv is not None
            return crypt_chunks(ref.storage_key, iv, chunks, offset=start)
        except (OriginError, StorageCryptoError):
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
            raise

    def _lock(self, key: Any) -> threading.Lock:
        with self._locks_guard:
            if len(self._locks) > 10_000:
                self._locks.clear()
            return self._locks.setdefault(key, threading.Lock())

    # ---- index ----------------------------------------------------------------------------------
    def index(self, ref: AssetRef, name: str, size: int) -> MediaIndex:
        props = self.storage.properties(ref.storage_account, ref.container, name)
        if props is None:
            raise OriginError(404, "FileNotFound", f"the asset's file '{name}' has no content in storage")
        key: tuple[Any, ...] = (ref.container, name, props.etag, props.size)
        encrypted, iv = ref.encryption_of(name)
        if encrypted:  # the index is of the clear bytes, which depend on the IV too
            key += ("storage-encrypted", iv)
        found = self.indexes.get(key)
        if found is not None:
            return found
        with self._lock(key):
            found = self.indexes.get(key)
            if found is not None:
                return found
            sidecar = self._sidecar(key)
            index = None
            if sidecar.exists():
                try:
                    index = MediaIndex.from_bytes(sidecar.read_bytes())
                except (MediaFormatError, OSError) as exc:
                    log.warning("ignoring unreadable index sidecar %s: %s", sidecar, exc)
            if index is None:
                try:
                    index = index_file(self._reader(ref, name), props.size, source=name)
                except MediaFormatError as exc:
                    raise OriginError(500, "UnstreamableFile",
                                      f"the asset's file '{name}' cannot be streamed: {exc}") from None
                self._write_sidecar(sidecar, index)
            self.indexes.put(key, index)
            return index

    def _sidecar(self, key: tuple[Any, ...]) -> Path:
        digest = hashlib.sha256(repr(key).encode()).hexdigest()
        return self.cache_dir / digest[:2] / f"{digest}.idx"

    def _write_sidecar(self, path: Path, index: MediaIndex) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(index.to_bytes())
                os.replace(tmp, path)
            except BaseException:
                os.unlink(tmp)
                raise
        except OSError as exc:  # a full or read-only disk costs a re-index later, nothing more
            log.warning("could not persist the index sidecar %s: %s", path, exc)

    # ---- presentation ---------------------------------------------------------------------------
    def presentation(self, ref: AssetRef, manifest_name: str) -> Presentation:
        ism_files = [f for f in ref.files if f[0].lower().endswith(".ism")]
        ism_name = next((f[0] for f in ism_files if f[0][:-4] == manifest_name), None)
        if ism_files and ism_name is None:
            names = ", ".join(f[0] for f in ism_files)
            raise OriginError(404, "ManifestNotFound",
                              f"the asset has no server manifest '{manifest_name}.ism' (it has {names})")
        key = (ref.asset_id, manifest_name, ref.files)
        found = self.presentations.get(key)
        if found is not None:
            return found
        with self._lock(key):
            found = self.presentations.get(key)
            if found is not None:
                return found
            sizes = {f[0]: f[1] for f in ref.files}
            ism = None
            if ism_name is not None:
                ism = self._reader(ref, ism_name)(0, min(sizes[ism_name], 1 << 20))
                from ..packaging.presentation import parse_ism
                try:
                    wanted = sorted({e.src for e in parse_ism(ism)})
                except PresentationError as exc:
                    raise OriginError(500, "InvalidServerManifest", f"{ism_name}: {exc}") from None
                missing = [n for n in wanted if n not in sizes]
                if missing:
                    raise OriginError(500, "InvalidServerManifest",
                                      f"{ism_name} names '{missing[0]}', which is not a file of the asset")
            else:
                wanted = media_files(list(sizes))
            if not wanted:
                raise OriginError(404, "NotStreamable", "the asset has no MP4 files to stream")
            indexes = {n: self.index(ref, n, sizes[n]) for n in wanted}
            try:
                pres = build_presentation(indexes, ism)
            except PresentationError as exc:
                raise OriginError(500, "NotStreamable", f"the asset cannot be streamed: {exc}") from None
            self.presentations.put(key, pres)
            return pres

    # ---- requests -------------------------------------------------------------------------------
    @staticmethod
    def _built_key(ref: AssetRef, req: OriginRequest, filters: Sequence[dict[str, Any]], plan: Any) -> Any:
        return (ref.asset_id, ref.files, req, tuple(_filter_key(f) for f in filters),
                plan.cache_key if plan is not None else None)

    def cached(self, ref: AssetRef, req: OriginRequest, filters: Sequence[dict[str, Any]] = (),
               plan: Any = None) -> Built | None:
        """The response body if it was built before (no I/O: safe on the event loop)."""
        return self.built.get(self._built_key(ref, req, filters, plan))

    def build(self, ref: AssetRef, req: OriginRequest, filters: Sequence[dict[str, Any]] = (),
              plan: Any = None) -> Built:
        """A manifest, playlist or segment for a parsed request (raises OriginError / UrlError).
        `plan` (`origin.protection.Plan`) says how to encrypt; None or a clear plan sends clear."""
        key = self._built_key(ref, req, filters, plan)
        found = self.built.get(key)
        if found is not None:
            return found
        pres = self.presentation(ref, req.name)
        if plan is not None and plan.kind == "clear":
            plan = None
        if req.kind == "manifest":
            built = self._manifest(pres, req, _specs(filters), plan)
        elif req.kind == "playlist":
            built = self._playlist(pres, req, _specs(filters), plan)
        else:
            built = self._fragment(ref, pres, req, plan)
        if plan is not None:  # the same URL under another protection is another representation
            etag = hashlib.sha256((built.etag + repr(plan.cache_key)).encode()).hexdigest()[:32]
            built = Built(built.body, built.content_type, f'"{etag}"', built.cacheable)
        self.built.put(key, built)
        return built

    def _views(self, pres: Presentation, specs: list[FilterSpec]) -> list[TrackView]:
        views = pres.views()
        if not specs:
            return views
        try:
            return apply_filters(views, specs)
        except FilterError as exc:
            raise OriginError(400, "InvalidFilter", str(exc)) from None

    def _manifest(self, pres: Presentation, req: OriginRequest, specs: list[FilterSpec], plan: Any) -> Built:
        fmt = req.params.format
        views = self._views(pres, specs)
        query = _filter_query(req)
        if fmt in HLS_FORMATS:
            # I-frame playlists are byte ranges of TS segments; CMAF players use the fMP4 renditions
            text = hls.master_playlist(views, fmt=fmt, audio_only=req.params.audio_only,
                                       first_bitrate=first_quality(specs) if specs else None, query=query,
                                       iframes=fmt == "m3u8-aapl")
            return _text(text, "hls")
        if fmt in DASH_FORMATS:
            text = dash.mpd(views, fmt=fmt, content_protection=plan.dash_protection() if plan else ())
            return _text(text, "dash")
        assert fmt in SMOOTH_FORMATS
        protection = plan.smooth_protection() if plan else ()
        return _text(smooth.client_manifest(views, v20=fmt == "fmp4-v20", protection=protection), "smooth")

    def _playlist(self, pres: Presentation, req: OriginRequest, specs: list[FilterSpec], plan: Any) -> Built:
        views = self._views(pres, specs)
        view = _find_view(views, req.track, req.bitrate)
        fmt = req.params.format
        muxed = None
        if fmt == "m3u8-aapl-v3" and view.info.kind == "video":
            muxed = _audio_for(views, req.params.audio_track)
        if req.params.keyframes:
            if view.info.kind != "video" or fmt != "m3u8-aapl" or plan is not None:
                raise UrlError("I-frame playlists exist only for clear video tracks of format=m3u8-aapl")
            track = _find_track(pres, req.track, req.bitrate)

            def keyframe_range(v: TrackView, i: int) -> tuple[int, int]:
                # `i` indexes the (possibly filtered) view; the byte range is the full track's segment
                return self._keyframe_range(track, self._segment(track, v.segments[i].start))

            text = hls.media_playlist(view, fmt=fmt, keyframes_only=True, keyframe_range=keyframe_range)
        else:
            text = hls.media_playlist(view, fmt=fmt, muxed_audio=muxed, keys=plan.hls_keys(req.token) if plan else ())
        return _text(text, "hls")

    def _keyframe_range(self, track: PresentedTrack, segment_index: int) -> tuple[int, int]:
        seg = track.segments[segment_index]
        counts = mpegts.packet_counts([(track.info, [track.table.ref(seg.first_sample)])])
        return 0, sum(counts.values()) * 188

    def _fragment(self, ref: AssetRef, pres: Presentation, req: OriginRequest, plan: Any = None) -> Built:
        built = self._clear_fragment(ref, pres, req, plan)
        if plan is not None and plan.kind == "envelope" and not (req.time is None and req.params.format == "m3u8-cmaf"):
            with self._packaging:
                body = encryption.aes128_segment(built.body, plan.key, plan.segment_iv)
            return Built(body, built.content_type, built.etag, True)
        return built

    def _clear_fragment(self, ref: AssetRef, pres: Presentation, req: OriginRequest, plan: Any) -> Built:
        """The segment, with sample encryption when the plan says cenc/cbcs (AES-128 is applied
        to the finished bytes by `_fragment`)."""
        fmt = req.params.format
        track = _find_track(pres, req.track, req.bitrate)
        audio = track.info.kind == "audio"
        protection = plan.protection() if plan is not None else None
        if fmt in SMOOTH_FORMATS:
            if req.time is None:
                raise UrlError("Smooth Streaming has no init segment; Fragments(<track>=i) needs format=")
            index = self._smooth_segment(track, req.time)
            samples = self._samples(ref, track, index)
            with self._packaging:
                maps = self._subsample_maps(ref, track, index, samples, protection)
                body = fmp4.smooth_fragment(track.info, samples, sequence_number=index + 1, protection=protection,
                                            subsample_maps=maps)
            return Built(body, CONTENT_TYPES["audio-mp4" if audio else "mp4"], _etag(ref, req), True)
        if fmt in ("m3u8-cmaf", *DASH_FORMATS):
            if req.time is None:
                body = fmp4.init_segment(track.info, protection=protection)
            else:
                index = self._segment(track, req.time)
                samples = self._samples(ref, track, index)
                with self._packaging:
                    maps = self._subsample_maps(ref, track, index, samples, protection)
                    body = fmp4.media_segment(track.info, samples, sequence_number=index + 1, protection=protection,
                                              subsample_maps=maps)
            return Built(body, CONTENT_TYPES["audio-mp4" if audio else "mp4"], _etag(ref, req), True)
        # MPEG-TS
        if req.time is None:
            raise UrlError(f"{fmt} segments are MPEG-TS and have no init segment")
        index = self._segment(track, req.time)
        parts: list[tuple[Any, list[Sample]]] = [(track.info, self._samples(ref, track, index))]
        if fmt == "m3u8-aapl-v3" and not audio:
            audio_track = _audio_track(pres, req.params.audio_track)
            if audio_track is not None:
                parts.append((audio_track.info, self._samples_between(ref, audio_track, track, index)))
        continuity = self._continuity(ref, pres, track, index, fmt, req.params.audio_track)
        shifts = {track.info.track_id: track.dts_shift} if not audio else {}
        with self._packaging:
            body = mpegts.ts_segment(parts, continuity=continuity, dts_shift=shifts)
        return Built(body, CONTENT_TYPES["ts"], _etag(ref, req), True)

    def _subsample_maps(self, ref: AssetRef, track: PresentedTrack, index: int, samples: list[Sample],
                        protection: Protection | None) -> tuple[encryption.Subsamples, ...] | None:
        """The segment's sub-sample maps under the protection's scheme, found once per segment
        (None: not sample-encrypted video, `fmp4` finds nothing to map)."""
        if protection is None or protection.scheme not in ("cenc", "cbcs") or track.info.kind != "video":
            return None
        seg = track.segments[index]
        key = (ref.asset_id, ref.files, ref.encrypted, track.info.source, track.info.track_id, seg.first_sample,
               len(samples), protection.scheme)
        maps = self._maps.get(key)
        if maps is None:
            maps = encryption.subsample_maps(track.info, samples, protection.scheme)
            if maps is None:
                return None
            self._maps.put(key, maps)
        return maps

    # ---- segment lookup and sample loading ------------------------------------------------------
    @staticmethod
    def _segment(track: PresentedTrack, time: int) -> int:
        from ..packaging.timeline import find_segment

        index = find_segment(track.segments, time)
        if index is None:
            raise OriginError(404, "FragmentNotFound",
                              f"no {track.info.name} fragment starts at {time} (track timescale "
                              f"{track.info.timescale})")
        return index

    @staticmethod
    def _smooth_segment(track: PresentedTrack, time: int) -> int:
        index = smooth.smooth_segment_index(track.view, time)
        if index is not None:
            return index
        raise OriginError(404, "FragmentNotFound", f"no {track.info.name} fragment starts at {time} (100 ns ticks)")

    def _samples(self, ref: AssetRef, track: PresentedTrack, index: int) -> list[Sample]:
        seg = track.segments[index]
        return self._load(ref, track, seg.first_sample, seg.sample_count)

    def _load(self, ref: AssetRef, track: PresentedTrack, first: int, count: int) -> list[Sample]:
        if count <= 0:
            return []
        table = track.table
        read = self._reader(ref, track.info.source)
        lo = table.offsets[first]
        hi = max(table.offsets[i] + table.sizes[i] for i in range(first, first + count))
        payload = sum(table.sizes[first:first + count])
        if hi - lo - payload <= MAX_SPAN_WASTE:
            span = read(lo, hi - lo)
            if len(span) != hi - lo:
                raise OriginError(500, "UnstreamableFile", f"'{track.info.source}' is shorter than its index says")
            return [Sample(span[table.offsets[i] - lo:table.offsets[i] - lo + table.sizes[i]], table.dts[i],
                           table.durations[i], table.cts_offsets[i], table.is_sync(i))
                    for i in range(first, first + count)]
        return fmp4.load_samples(table, first, count, read)

    def _samples_between(self, ref: AssetRef, audio: PresentedTrack, video: PresentedTrack,
                         index: int) -> list[Sample]:
        """The audio samples playing during a video segment (muxed HLS v3)."""
        picked = self._audio_indices(audio, video, index)
        if not picked:
            return []
        return self._load(ref, audio, picked[0], picked[-1] - picked[0] + 1)

    def _continuity(self, ref: AssetRef, pres: Presentation, track: PresentedTrack, index: int, fmt: str,
                    audio_name: str | None) -> dict[int, int]:
        """Continuity counters at the start of segment `index`: the packets of all earlier
        segments, counted from sample sizes alone (consecutive segments read as one stream)."""
        key = (ref.asset_id, ref.files, track.info.source, track.info.track_id, fmt, audio_name)
        counts = self._ts_counts.get(key)
        if counts is None:
            counts = []
            audio_track = _audio_track(pres, audio_name) if fmt == "m3u8-aapl-v3" and \
                track.info.kind == "video" else None
            for i, seg in enumerate(track.segments):
                parts: list[tuple[Any, list[Sample]]] = [(track.info, _size_only(track, seg.first_sample,
                                                                                 seg.sample_count))]
                if audio_track is not None:
                    picked = self._audio_indices(audio_track, track, i)
                    if picked:
                        parts.append((audio_track.info, _size_only(audio_track, picked[0],
                                                                   picked[-1] - picked[0] + 1)))
                counts.append(mpegts.packet_counts(parts))
            self._ts_counts.put(key, counts)
        total: dict[int, int] = {}
        for c in counts[:index]:
            total = mpegts.advance_continuity(total, c)
        return total

    @staticmethod
    def _audio_indices(audio: PresentedTrack, video: PresentedTrack, index: int) -> list[int]:
        seg = video.segments[index]
        scale_v, scale_a = video.info.timescale, audio.info.timescale
        lo = seg.start * scale_a // scale_v if index else -(1 << 62)
        last = index == len(video.segments) - 1
        hi = (seg.start + seg.duration) * scale_a // scale_v
        table = audio.table
        shift = audio.info.media_time
        return [i for i in range(len(table)) if lo <= table.dts[i] + table.cts_offsets[i] - shift and
                (last or table.dts[i] + table.cts_offsets[i] - shift < hi)]

    # ---- progressive download -------------------------------------------------------------------
    def progressive(self, ref: AssetRef, name: str) -> tuple[int, str, Callable[[int, int], bytes]]:
        """(size, etag, reader) of a file that may be downloaded progressively."""
        if name.lower().endswith(PROGRESSIVE_REFUSED):
            raise OriginError(404, "NotDownloadable",
                              f"'{name}' is a Smooth Streaming file; .ism* files cannot be downloaded progressively")
        if not any(f[0] == name for f in ref.files):
            raise OriginError(404, "FileNotFound", f"the asset has no file named '{name}'")
        props = self.storage.properties(ref.storage_account, ref.container, name)
        if props is None:
            raise OriginError(404, "FileNotFound", f"the asset's file '{name}' has no content in storage")
        return props.size, f'"{props.etag.strip(chr(34))}"', self._reader(ref, name)


def _check_decryptable(ref: AssetRef, name: str, iv: int | None) -> None:
    if not ref.storage_key:
        raise OriginError(500, "StorageKeyMissing",
                          f"the asset's file '{name}' is storage-encrypted and the asset's StorageEncryption content "
                          "key is missing or cannot be read")
    if iv is None:
        raise OriginError(500, "StorageEncryptionInvalid",
                          f"the asset's file '{name}' is storage-encrypted but has no usable InitializationVector, "
                          "or names another key than the asset's StorageEncryption key")


def _decrypt(ref: AssetRef, name: str, iv: int, offset: int, data: bytes) -> bytes:
    try:
        return crypt_range(ref.storage_key, iv, offset, data)
    except StorageCryptoError as exc:  # e.g. a key of the wrong length: says so, never shows it
        raise OriginError(500, "StorageEncryptionInvalid", f"the asset's file '{name}' cannot be decrypted: {exc}"
                          ) from None


def _size_only(track: PresentedTrack, first: int, count: int) -> list[Any]:
    """Sample references (sizes and flags, no payload): enough to count TS packets."""
    return [track.table.ref(i) for i in range(first, first + count)]


def _cpu_count() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def _maps_weight(maps: tuple[encryption.Subsamples, ...]) -> int:
    """Approximate bytes of a segment's maps as Python objects (a tuple of pairs per sample)."""
    return 100 + sum(64 + 72 * len(m) for m in maps)


def _index_weight(index: MediaIndex) -> int:
    return sum(len(t.table) for t in index.tracks) * 40 + 4096


def _specs(filters: Sequence[dict[str, Any]]) -> list[FilterSpec]:
    try:
        return [FilterSpec.from_entity(f) for f in filters]
    except FilterError as exc:
        raise OriginError(400, "InvalidFilter", str(exc)) from None


def _filter_key(f: dict[str, Any]) -> str:
    import json

    return json.dumps(f, sort_keys=True, default=str)


def _filter_query(req: OriginRequest) -> str:
    """The query that carries a request's filters and viewer token to the URIs of its playlist."""
    parts = []
    if req.params.filters:
        parts.append(f"filter={';'.join(req.params.filters)}")
    if req.token:
        parts.append(f"token={quote(req.token, safe='')}")
    return "&".join(parts)


def _text(text: str, kind: str) -> Built:
    body = text.encode()
    return Built(body, CONTENT_TYPES[kind], '"' + hashlib.sha256(body).hexdigest()[:32] + '"', False)


def _etag(ref: AssetRef, req: OriginRequest) -> str:
    return '"' + hashlib.sha256(repr((ref.asset_id, ref.files, req.track, req.bitrate, req.time,
                                      req.params.format)).encode()).hexdigest()[:32] + '"'


def _find_view(views: Sequence[TrackView], name: str, bitrate: int) -> TrackView:
    for v in views:
        if v.info.name == name and v.info.bitrate == bitrate:
            return v
    raise OriginError(404, "TrackNotFound", f"the presentation has no track '{name}' at QualityLevels({bitrate})")


def _find_track(pres: Presentation, name: str, bitrate: int) -> PresentedTrack:
    track = pres.track(name, bitrate)
    if track is None:
        raise OriginError(404, "TrackNotFound", f"the presentation has no track '{name}' at QualityLevels({bitrate})")
    return track


def _audio_for(views: Sequence[TrackView], name: str | None) -> TrackView | None:
    audios = [v for v in views if v.info.kind == "audio"]
    if name is not None:
        audios = [v for v in audios if v.info.name == name]
        if not audios:
            raise OriginError(404, "TrackNotFound", f"the presentation has no audio track '{name}'")
    return audios[0] if audios else None


def _audio_track(pres: Presentation, name: str | None) -> PresentedTrack | None:
    audios = [t for t in pres.tracks if t.info.kind == "audio"]
    if name is not None:
        audios = [t for t in audios if t.info.name == name]
        if not audios:
            raise OriginError(404, "TrackNotFound", f"the presentation has no audio track '{name}'")
    return audios[0] if audios else None
