"""Media fixtures for the packager tests, generated once per session with FFmpeg (testsrc2 + sine,
320x180, a few seconds) and then remuxed (stream copy) into the other layouts, so every layout
holds the very same samples."""

from __future__ import annotations

import struct
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from openams.media.ffmpeg import find_ffmpeg
from openams.packaging.index import MediaIndex, index_file
from openams.packaging.isobmff import box, full_box


def ffmpeg(*args: str) -> None:
    subprocess.run(
        [find_ffmpeg(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args],
        check=True,
        timeout=120,
        capture_output=True,
    )


def has_encoder(name: str) -> bool:
    out = subprocess.run([find_ffmpeg(), "-hide_banner", "-encoders"], capture_output=True, text=True, timeout=60)
    return any(line.split()[1:2] == [name] for line in out.stdout.splitlines() if line.strip())


def index_path(path: Path) -> MediaIndex:
    data = path.read_bytes()
    return index_file(lambda offset, length: data[offset : offset + length], len(data), source=path.name)


def file_reader(path: Path) -> Callable[[int, int], bytes]:
    data = path.read_bytes()
    return lambda offset, length: data[offset : offset + length]


@pytest.fixture(scope="session")
def pkg_media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("packaging-media")


@pytest.fixture(scope="session")
def progressive(pkg_media: Path) -> Path:
    """H.264 (B-frames, 2 s closed GOPs) + AAC stereo in French, 25 fps, 4 s, `moov` at the end."""
    out = pkg_media / "progressive.mp4"
    ffmpeg(
        "-f", "lavfi", "-i", "testsrc2=s=320x180:r=25:d=4",
        "-f", "lavfi", "-i", "sine=f=440:r=48000:d=4",
        "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
        "-g", "50", "-keyint_min", "50", "-sc_threshold", "0",
        "-c:a", "aac", "-ac", "2", "-b:a", "64k", "-metadata:s:a:0", "language=fre",
        str(out),
    )  # fmt: skip
    return out


@pytest.fixture(scope="session")
def faststart(progressive: Path) -> Path:
    out = progressive.with_name("faststart.mp4")
    ffmpeg("-i", str(progressive), "-map", "0", "-c", "copy", "-movflags", "+faststart", str(out))
    return out


@pytest.fixture(scope="session")
def fragmented(progressive: Path) -> Path:
    """The same samples as a fragmented MP4 (stands in for CMAF input)."""
    out = progressive.with_name("fragmented.mp4")
    ffmpeg("-i", str(progressive), "-map", "0", "-c", "copy",
           "-movflags", "+frag_keyframe+empty_moov+default_base_moof", str(out))
    return out


@pytest.fixture(scope="session")
def ismv(progressive: Path) -> Path:
    """The same samples as a Smooth Streaming `.ismv` (10 MHz tracks, `tfxd`, no `tfdt`)."""
    out = progressive.with_name("smooth.ismv")
    ffmpeg("-i", str(progressive), "-map", "0", "-c", "copy", "-f", "ismv", str(out))
    return out


@pytest.fixture(scope="session")
def audio_only(pkg_media: Path) -> Path:
    """AAC mono, 44.1 kHz, 3 s."""
    out = pkg_media / "tone.m4a"
    ffmpeg("-f", "lavfi", "-i", "sine=f=660:r=44100:d=3", "-ac", "1", "-c:a", "aac", "-b:a", "48k", str(out))
    return out


@pytest.fixture(scope="session")
def hevc(pkg_media: Path) -> Path:
    if not has_encoder("libx265"):
        pytest.skip("this FFmpeg has no libx265")
    out = pkg_media / "hevc.mp4"
    ffmpeg(
        "-f", "lavfi", "-i", "testsrc2=s=320x180:r=25:d=2",
        "-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=error",
        "-tag:v", "hvc1", "-g", "25", "-pix_fmt", "yuv420p", str(out),
    )  # fmt: skip
    return out


@pytest.fixture(scope="session")
def eac3(pkg_media: Path) -> Path:
    """E-AC-3 5.1, 1 s."""
    if not has_encoder("eac3"):
        pytest.skip("this FFmpeg has no eac3 encoder")
    out = pkg_media / "surround.mp4"
    ffmpeg("-f", "lavfi", "-i", "sine=r=48000:d=1", "-ac", "6", "-c:a", "eac3", "-b:a", "192k", str(out))
    return out


@pytest.fixture(scope="session")
def mpeg4_part2(pkg_media: Path) -> Path:
    """A video codec the packager does not handle (MPEG-4 Part 2, `mp4v`)."""
    out = pkg_media / "mp4v.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=s=160x90:r=25:d=1", "-c:v", "mpeg4", str(out))
    return out


# -- synthetic files: hand-built sample tables, media data never materialised -------------------------------

AVCC = bytes.fromhex("0164001fffe1001a6764001facd9405005bb011000000300100000030320f1831960010005" + "68ebecb22c")


def u32s(*values: int) -> bytes:
    return struct.pack(f">{len(values)}I", *values)


def visual_entry(width: int = 320, height: int = 180, kind: bytes = b"avc1", config: bytes = AVCC) -> bytes:
    return box(
        kind, bytes(6), struct.pack(">H", 1), bytes(16), struct.pack(">HH", width, height),
        struct.pack(">IIIH", 0x00480000, 0x00480000, 0, 1), bytes(32), struct.pack(">Hh", 0x18, -1),
        box("avcC", config),
    )  # fmt: skip


def stbl_boxes(
    *,
    stts: list[tuple[int, int]],
    sizes: list[int] | tuple[int, int],
    stsc: list[tuple[int, int]],
    chunk_offsets: list[int],
    ctts: list[tuple[int, int]] | None = None,
    stss: list[int] | None = None,
    co64: bool = False,
) -> list[bytes]:
    """Sample-table boxes; `sizes` is a list, or (fixed size, count)."""
    out = [full_box("stts", 0, 0, u32s(len(stts)), b"".join(struct.pack(">II", c, d) for c, d in stts))]
    if ctts is not None:
        out.append(full_box("ctts", 1, 0, u32s(len(ctts)), b"".join(struct.pack(">Ii", c, o) for c, o in ctts)))
    if stss is not None:
        out.append(full_box("stss", 0, 0, u32s(len(stss)), struct.pack(f">{len(stss)}I", *stss)))
    if isinstance(sizes, tuple):
        out.append(full_box("stsz", 0, 0, u32s(sizes[0], sizes[1])))
    else:
        out.append(full_box("stsz", 0, 0, u32s(0, len(sizes)), struct.pack(f">{len(sizes)}I", *sizes)))
    out.append(full_box("stsc", 0, 0, u32s(len(stsc)), b"".join(u32s(f, n, 1) for f, n in stsc)))
    if co64:
        out.append(full_box("co64", 0, 0, u32s(len(chunk_offsets)),
                            struct.pack(f">{len(chunk_offsets)}Q", *chunk_offsets)))
    else:
        out.append(full_box("stco", 0, 0, u32s(len(chunk_offsets)),
                            struct.pack(f">{len(chunk_offsets)}I", *chunk_offsets)))
    return out


def synth_moov(
    stbl: list[bytes],
    *,
    timescale: int = 12800,
    movie_timescale: int = 1000,
    handler: bytes = b"vide",
    entry: bytes | None = None,
    elst: list[tuple[int, int]] | None = None,
    track_id: int = 1,
    language: int = 0x55C4,  # 'und'
) -> bytes:
    """A one-track `moov` around the given sample-table boxes."""
    mvhd = full_box("mvhd", 0, 0, u32s(0, 0, movie_timescale, 0), bytes(80))
    tkhd = full_box("tkhd", 0, 3, u32s(0, 0, track_id, 0, 0), bytes(60))
    mdhd = full_box("mdhd", 0, 0, u32s(0, 0, timescale, 0), struct.pack(">HH", language, 0))
    hdlr = full_box("hdlr", 0, 0, u32s(0), handler, bytes(12), b"handler\0")
    stsd = full_box("stsd", 0, 0, u32s(1), entry if entry is not None else visual_entry())
    minf = box("minf", box("stbl", stsd, *stbl))
    edts = b""
    if elst is not None:
        edts = box("edts", full_box("elst", 0, 0, u32s(len(elst)),
                                    b"".join(struct.pack(">Iihh", d, t, 1, 0) for d, t in elst)))
    return box("moov", mvhd, box("trak", tkhd, edts, box("mdia", mdhd, hdlr, minf)))


class VirtualFile:
    """`ftyp` + an `mdat` of `payload` zero bytes + `moov`, readable by range without ever
    allocating the payload (so a 2-hour sample table needs no 2-hour file)."""

    FTYP = box("ftyp", b"isom", u32s(0x200), b"isomiso2avc1mp41")

    def __init__(self, moov_for: Callable[[int], bytes], payload: int) -> None:
        if payload + 8 <= 0xFFFFFFFF:
            mdat = u32s(payload + 8) + b"mdat"
        else:
            mdat = struct.pack(">I4sQ", 1, b"mdat", payload + 16)
        self.head = self.FTYP + mdat
        self.data_start = len(self.head)
        self.moov = moov_for(self.data_start)
        self.moov_at = self.data_start + payload
        self.size = self.moov_at + len(self.moov)
        self.reads: list[tuple[int, int]] = []

    def read(self, offset: int, length: int) -> bytes:
        self.reads.append((offset, length))
        out = bytearray(length)
        for start, blob in ((0, self.head), (self.moov_at, self.moov)):
            lo, hi = max(offset, start), min(offset + length, start + len(blob))
            if lo < hi:
                out[lo - offset : hi - offset] = blob[lo - start : hi - start]
        return bytes(out)
