"""MPEG audio (MP3) frame walker: how many samples an MP3's frames hold, and whether libsndfile's length is a guess.

soundfile reads MP3 through libsndfile's libmpg123 decoder. The sample count it reports (``sf.info(path).frames``)
comes from the first frame's Xing/Info header when there is one; without one (some encoders and streams write
none) libsndfile *estimates* it from the file size and the first audio frame's bitrate, and every read --
``sf.read``, ``SoundFile.read`` loops, seeks -- silently stops at that estimate. For a VBR file the estimate can be
half the song (or more than it holds), with no error anywhere. This module counts the frames themselves so the
readers in :mod:`music_ssl.data.audio` can refuse such a file (kind ``length``).

Facts measured here (soundfile 0.14.0, libsndfile 1.2.2; 16 kHz mono MPEG-2 Layer III, 576 samples per frame, as
``sf.write(path, x, 16000, format="MP3")`` writes it; a 60-s song = 960,000 samples):

* soundfile's MP3s start with a Xing (VBR) or Info (CBR) frame (the tag at byte 13, a LAME tag at byte 133) whose
  frame count excludes that frame (1,669 audio frames + the tag frame) and whose byte count is the file size. Its
  LAME tag gives encoder delay 576 and padding 768 samples (the padding fills the last frame: 1,088 for a 40-s
  song), and ``sf.info(...).frames`` = the decoded length = 1,669 × 576 − 576 − 768 = 960,000, the samples written,
  exactly, for VBR (the default) and CBR alike; also for MPEG-1 (44.1 kHz stereo, 1152 samples per frame, a 240-s
  song: 9,189 × 1152 − 576 − 1152 = 10,584,000). libmpg123 trims the delay and padding (gapless): decoded length =
  audio frames × samples per frame − delay − padding.
* With the LAME tag blanked (a Xing header alone): 1,669 × 576 − 529 = 960,815 (only libmpg123's own 529-sample
  decoder delay is trimmed). Any non-blank LAME encoder string is enough for the delay/padding to be used.
* Without a Xing/Info frame: CBR (160 or 80 kbps) gives 961,344 = 1,669 × 576 exactly (nothing trimmed); VBR gives
  an estimate of 456,408 samples (28.5 s = the file's bytes at its first audio frame's 64 kbps) and ``sf.read``,
  ``SoundFile.read`` loops and seeks return 456,408 samples: half the song is lost without an error (a 240-s song:
  1,801,224 of 3,841,344). Two songs joined (``cat``): the first Xing header's 240 s are read, 480 s are there.
* Seeks land on the right sample, but the first frame after a seek can decode wrong when the bit reservoir
  reaches back beyond libmpg123's seek pre-roll (low-bitrate MPEG-2 streams; libmpg123 then prints
  "part2_3_length ... too large" on stderr): 1-2% of random seeks into a 16 kHz VBR song, 71% into a 24 kbps CBR
  one, up to 0.04 off (0 of 400 into a 44.1 kHz MPEG-1 song). Past that frame, and with 2-4 frames decoded before
  the window, every window equals the full decode to ~1e-7 (what :func:`music_ssl.data.audio.decode_window` does).
* soundfile's ``bitrate_mode="CONSTANT"`` only takes effect together with ``compression_level`` (soundfile sets the
  mode only after a compression level); alone it writes the default VBR file byte for byte.

So :func:`mp3_length` walks every frame header (no decoding; the file read once: 1.8 ms for a 4-min 16 kHz song of
6,669 frames, 2.9 ms for a 4-min 44.1 kHz stereo one of 9,189 frames, 4.3 MB) and
:func:`length_mismatch` compares the decoded length that the frames imply (rule above) with libsndfile's: a file
is refused when libsndfile's length is more than one frame short of the frames (no Xing/Info header, or one that
declares fewer frames than the file holds, e.g. joined files), or, without a Xing/Info header, more than one frame
beyond frames walked to the end. A Xing/Info header that declares *more* than the file holds is a cut file: the
decoders then return fewer samples than declared, and the readers' own decode checks report it (``truncated``).
An MP3 whose first frame carries a Xing/Info header covering the whole file (its byte count) and agreeing with
libsndfile is cleared from its first 4 KB (~15 µs), without reading the rest.

Layers I, II and III of MPEG-1, -2 and -2.5 are walked (384, 1152 and 1152/576 samples per frame); a VBRI
(Fraunhofer) header is read and reported but libsndfile's length is never assumed to come from it. The walk starts
after any ID3v2 tags and stops at the end of the file, an ID3v1 ``TAG``/APE/Lyrics3 trailer, a frame cut short, or
bytes that are not a frame header of the same stream (junk: ``complete`` is then False; no resync). Free-format
streams (bitrate index 0) are not walked (no frames: nothing is reported).
"""
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import numpy as np

REENCODE_MP3_FIX = ("re-encode it with an encoder that writes a Xing/Info header, e.g. `ffmpeg -i X.mp3 X.flac` or "
                    "lame (converting it with soundfile, --convert-dir included, would keep only the estimate)")
HEAD_BYTES = 4096  # bytes read after the ID3v2 tags for the quick check (the first frame is at most 2,881 bytes)
DECODER_DELAY = 529  # samples libmpg123 trims from the start of a Xing/Info file without a LAME tag (measured)
TRAILERS = (b"TAG", b"APETAGEX", b"LYRICS")  # ID3v1, APE, Lyrics3 tags after the last frame
STREAM_MASK = 0x1E0C  # bits of header bytes 1-2 every frame of one stream shares: version, layer, sample rate
VERSIONS = {3: "MPEG-1", 2: "MPEG-2", 0: "MPEG-2.5"}  # header version bits -> name
RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}  # Hz per version
KBPS = {  # (MPEG-1?, layer) -> bitrate in kbit/s for bitrate index 1..14 (ISO/IEC 11172-3, 13818-3)
    (True, 1): (32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (True, 2): (32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (True, 3): (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (False, 1): (32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (False, 2): (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
    (False, 3): (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}


class Tag(NamedTuple):
    """What the first frame's VBR header says: ``name`` ("Xing", "Info" or "VBRI"), ``frames`` and ``bytes``
    (None when absent; Xing/Info frames exclude the tag frame), the LAME tag's ``encoder`` string and its
    ``delay``/``padding`` in samples (None without a LAME tag)."""

    name: str
    frames: int | None
    bytes: int | None
    encoder: str | None = None
    delay: int | None = None
    padding: int | None = None


class Mp3Length(NamedTuple):
    """An MP3's frames as walked (:func:`mp3_length`).

    ``frames_walked``: complete audio frames (a Xing/Info tag frame not counted); ``samples_per_frame``: 384, 1152
    or 576; ``sample_rate`` in Hz; ``version`` ("MPEG-1", ...) and ``layer`` (1-3); ``tag``: the first frame's
    :class:`Tag` or None; ``start``/``end``: byte offsets of the first frame and of where the walk stopped;
    ``complete``: the walk stopped at the end of the file or at a trailer (not at junk or a cut frame).
    """

    frames_walked: int
    samples_per_frame: int
    sample_rate: int
    version: str
    layer: int
    tag: Tag | None
    start: int
    end: int
    complete: bool

    @property
    def has_length_tag(self) -> bool:
        """Whether a Xing/Info header gives the frame count (what libsndfile's length then comes from)."""
        return self.tag is not None and self.tag.name in ("Xing", "Info") and self.tag.frames is not None

    @property
    def tag_frames(self) -> int | None:
        """Frames the Xing/Info/VBRI header declares (None without one)."""
        return None if self.tag is None else self.tag.frames

    @property
    def decoded_samples(self) -> int:
        """Samples the frames decode to with libmpg123 (the measured rule of the module docstring)."""
        return self.frames_walked * self.samples_per_frame - trimmed(self.tag)

    def seconds(self, samples: int) -> float:
        """``samples`` in seconds at this stream's rate."""
        return samples / self.sample_rate


def trimmed(tag: Tag | None) -> int:
    """Samples libmpg123 trims from a stream whose first frame holds ``tag``: LAME delay + padding, else the decoder
    delay for a Xing/Info header, else none."""
    if tag is None or tag.name not in ("Xing", "Info"):
        return 0
    if tag.delay is not None:
        return tag.delay + tag.padding
    return DECODER_DELAY


@lru_cache(maxsize=1)
def frame_tables() -> tuple[list[int], list[int]]:
    """(frame bytes, samples per frame) for every value of header bytes 1-2 (``byte1 << 8 | byte2``; byte 0 is
    0xFF); 0 bytes where those bits are not a valid header (reserved version/layer/rate, free-format or bad
    bitrate)."""
    key = np.arange(1 << 16)
    b1, b2 = key >> 8, key & 0xFF
    version, layer, index = (b1 >> 3) & 3, 4 - ((b1 >> 1) & 3), b2 >> 4
    rate_index, pad = (b2 >> 2) & 3, (b2 >> 1) & 1
    mpeg1 = version == 3
    valid = ((b1 & 0xE0) == 0xE0) & (version != 1) & (layer != 4) & (index > 0) & (index < 15) & (rate_index < 3)
    kbps = np.zeros(len(key), np.int64)
    rate = np.ones(len(key), np.int64)
    for (is1, lay), table in KBPS.items():
        sel = valid & (mpeg1 == is1) & (layer == lay)
        kbps[sel] = np.asarray((0,) + table)[index[sel]]
    for ver, rates in RATES.items():
        sel = valid & (version == ver)
        rate[sel] = np.asarray(rates)[rate_index[sel]]
    spf = np.where(layer == 1, 384, np.where((layer == 3) & ~mpeg1, 576, 1152))
    size = np.where(layer == 1, (12 * kbps * 1000 // rate + pad) * 4, spf // 8 * kbps * 1000 // rate + pad)
    return np.where(valid, size, 0).tolist(), np.where(valid, spf, 0).tolist()


def id3v2_size(head: bytes) -> int:
    """Bytes of the ID3v2 tag starting ``head`` (10-byte header + syncsafe size + optional 10-byte footer); 0 when
    ``head`` does not start with one."""
    if len(head) < 10 or head[:3] != b"ID3" or any(b & 0x80 for b in head[6:10]):
        return 0
    size = (head[6] << 21) | (head[7] << 14) | (head[8] << 7) | head[9]
    return 10 + size + (10 if head[5] & 0x10 else 0)


def stream_start(data: bytes) -> int:
    """Offset of the first byte after the ID3v2 tag(s) at the start of ``data`` (0 when there is none)."""
    at = 0
    while size := id3v2_size(data[at:at + 10]):
        at += size
    return at


def header_key(data: bytes, at: int) -> int:
    """``byte1 << 8 | byte2`` of a valid frame header at ``at``, or -1 (no sync, invalid, or out of ``data``)."""
    if at + 4 > len(data) or data[at] != 0xFF:
        return -1
    key = data[at + 1] << 8 | data[at + 2]
    return key if frame_tables()[0][key] else -1


def read_tag(data: bytes, at: int) -> Tag | None:
    """The Xing/Info (with its LAME tag) or VBRI header of the Layer III frame at ``at`` in ``data``, or None."""
    key = header_key(data, at)
    if key < 0 or (key >> 9) & 3 != 1:  # not Layer III
        return None
    mpeg1, mono = (key >> 11) & 3 == 3, data[at + 3] >> 6 == 3
    side = (17 if mono else 32) if mpeg1 else (9 if mono else 17)  # side-information bytes after the header
    xing = at + 4 + side + (0 if key & 0x100 else 2)  # + a CRC word when the protection bit is 0
    if data[xing:xing + 4] in (b"Xing", b"Info"):
        return xing_tag(data, xing)
    vbri = at + 36  # VBRI: always 32 bytes after the 4-byte header
    if data[vbri:vbri + 4] == b"VBRI" and len(data) >= vbri + 18:
        return Tag("VBRI", int.from_bytes(data[vbri + 14:vbri + 18], "big"),
                   int.from_bytes(data[vbri + 10:vbri + 14], "big"))
    return None


def xing_tag(data: bytes, at: int) -> Tag:
    """The Xing/Info header at ``at``: flags, then frames (flag 1), bytes (2), a 100-byte TOC (4), quality (8),
    then the LAME tag (9-byte encoder string; delay and padding: 12 bits each at its byte 21)."""
    flags = int.from_bytes(data[at + 4:at + 8], "big")
    fields, pos = {}, at + 8
    for bit, name, width in ((1, "frames", 4), (2, "bytes", 4), (4, "toc", 100), (8, "quality", 4)):
        if flags & bit:
            fields[name] = int.from_bytes(data[pos:pos + 4], "big") if width == 4 else None
            pos += width
    tag = Tag(data[at:at + 4].decode(), fields.get("frames"), fields.get("bytes"))
    encoder = data[pos:pos + 9]
    if len(data) < pos + 24 or not any(encoder):
        return tag
    both = int.from_bytes(data[pos + 21:pos + 24], "big")
    return tag._replace(encoder=encoder.decode("latin-1").rstrip("\0 "), delay=both >> 12, padding=both & 0xFFF)


def walk(data: bytes, at: int, key: int) -> tuple[int, int]:
    """(frames, end offset): consecutive complete frames of the stream whose first header (bytes 1-2: ``key``) is
    at ``at``."""
    sizes, n, count, stream = frame_tables()[0], len(data), 0, key & STREAM_MASK
    while at + 4 <= n and data[at] == 0xFF:
        key = data[at + 1] << 8 | data[at + 2]
        size = sizes[key]
        if not size or key & STREAM_MASK != stream or at + size > n:
            break
        at += size
        count += 1
    return count, at


def parse_mp3(data: bytes) -> Mp3Length | None:
    """:class:`Mp3Length` of the bytes of an MP3 file; None when no MPEG audio frame follows the ID3v2 tags."""
    start = stream_start(data)
    key = header_key(data, start)
    if key < 0:
        return None
    frames, end = walk(data, start, key)
    tag = read_tag(data, start)
    tag_frame = tag is not None and tag.name in ("Xing", "Info")
    complete = end == len(data) or data[end:end + 8].startswith(TRAILERS)
    version = (key >> 11) & 3
    return Mp3Length(max(frames - tag_frame, 0), frame_tables()[1][key], RATES[version][(key >> 2) & 3],
                     VERSIONS[version], 4 - ((key >> 9) & 3), tag, start, end, complete)


def mp3_length(path) -> Mp3Length | None:
    """Walk the frames of the MP3 file ``path`` (read once; no decoding). None when it holds no MPEG audio frame
    after its ID3v2 tags (not an MP3, or a free-format stream).

    Raises:
        OSError: the file cannot be read.
    """
    return parse_mp3(Path(path).read_bytes())


def read_head(path) -> tuple[bytes, int, int]:
    """(up to ``HEAD_BYTES`` from the first byte after the ID3v2 tags, that offset, the file size in bytes)."""
    with open(path, "rb") as f:
        head, at = f.read(HEAD_BYTES), 0
        while size := id3v2_size(head[:10]):
            at += size
            f.seek(at)
            head = f.read(HEAD_BYTES)
        f.seek(0, 2)
        return head, at, f.tell()


def tag_vouches(head: bytes, start: int, file_size: int, header_frames: int) -> bool | None:
    """Quick verdict from the first frame (``head``, at byte ``start`` of a ``file_size``-byte file): None when it
    is not an MPEG audio frame; True when its Xing/Info header counts the whole file and agrees with libsndfile's
    ``header_frames`` within one frame; False when the frames must be walked."""
    key = header_key(head, 0)
    if key < 0:
        return None
    tag, spf = read_tag(head, 0), frame_tables()[1][key]
    if tag is None or tag.name not in ("Xing", "Info") or tag.frames is None or tag.bytes is None:
        return False
    covers = start + tag.bytes >= file_size - 128  # (an ID3v1 trailer is 128 bytes)
    return covers and abs(tag.frames * spf - trimmed(tag) - header_frames) <= spf


def length_mismatch(path, header_frames: int) -> str | None:
    """Why libsndfile's sample count ``header_frames`` of the MP3 ``path`` cannot be trusted (a phrase to follow
    the file name), or None: not an MP3 (nothing read beyond its first ``HEAD_BYTES``), a Xing/Info header that
    vouches for the whole file, or frames that agree within one frame.

    Raises:
        OSError: the file cannot be read.
    """
    head, start, size = read_head(path)
    if tag_vouches(head, start, size, header_frames) is not False:
        return None
    length = mp3_length(path)
    return None if length is None else describe_mismatch(length, header_frames)


def describe_mismatch(length: Mp3Length, header_frames: int) -> str | None:
    """The phrase for libsndfile's ``header_frames`` against ``length``'s frames, or None when they agree (within
    one frame) or the header declares more than a cut file holds (the decode checks' ``truncated``)."""
    held, spf = length.decoded_samples, length.samples_per_frame
    short = header_frames < held - spf
    beyond = header_frames > held + spf and length.complete and not length.has_length_tag
    if not (short or beyond):
        return None
    said = f"{length.seconds(header_frames):.1f} s ({header_frames} samples)"
    holds = f"its frames hold {length.seconds(held):.1f} s ({held} samples)"
    if length.has_length_tag:
        return (f"an MP3 whose {length.tag.name} header declares {said} but {holds} (joined files?); soundfile "
                f"would read only what the header declares")
    what = "read only the estimate" if short else "declare the estimate and decode fewer samples"
    return (f"an MP3 without a Xing/Info header: libsndfile estimates {said} from its bitrate but {holds}; "
            f"soundfile would {what}")
