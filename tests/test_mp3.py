"""MP3 lengths (music_ssl/data/mp3.py and its use by the readers): soundfile's MP3 seeks are sample-accurate, the
frame walker agrees with the decoded length, and an MP3 whose length libsndfile only estimates (no Xing/Info
header: every read stops at the estimate) is refused by every reader, the audit, the pre-flight and the manifest
builder, one line naming the file; good MP3s, WAV and FLAC pass.

Every file is written here (16 kHz mono, 40 s: ~0.3 s to encode each).
"""
import logging
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import SAMPLE_RATE, synth_clip
from test_bad_input_data import run_cli

from music_ssl.data.audio import (
    inspect_audio,
    read_audio,
    read_audio_blocks,
    read_training_audio,
)
from music_ssl.data.audit import audit_manifest
from music_ssl.data.errors import AudioError
from music_ssl.data.manifest import read_manifest
from music_ssl.data.manifest_builder import build_manifests
from music_ssl.data.mp3 import id3v2_size, length_mismatch, mp3_length, parse_mp3
from music_ssl.data.preflight import preflight_manifest
from music_ssl.errors import DataError

SECONDS = 40.0
SAMPLES = int(SECONDS * SAMPLE_RATE)
ESTIMATED = "an MP3 without a Xing/Info header: libsndfile estimates"
SKIPPED = "MP3 length only estimated"  # the manifest builder's skip reason


def first_frame_bytes(data: bytes) -> int:
    """Byte length of the first MPEG frame of ``data`` (after any ID3v2 tag), from its header: MPEG-2 Layer III
    (soundfile's 16 kHz MP3s) is 72 × kbit/s × 1000 / rate + padding bytes."""
    at = id3v2_size(data[:10])
    b1, b2 = data[at + 1], data[at + 2]
    assert data[at] == 0xFF and (b1 >> 3) & 3 == 2 and (b1 >> 1) & 3 == 1, "expected MPEG-2 Layer III"
    kbps = (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)[b2 >> 4]
    rate = (22050, 24000, 16000)[(b2 >> 2) & 3]
    return 72 * kbps * 1000 // rate + ((b2 >> 1) & 1)


def strip_xing(src: Path, dest: Path) -> Path:
    """``src`` without its first frame (the Xing/Info + LAME tag frame): an MP3 as some encoders and streams write."""
    data = src.read_bytes()
    assert data[13:17] in (b"Xing", b"Info")
    dest.write_bytes(data[first_frame_bytes(data):])
    return dest


def id3v2(payload: bytes = b"TIT2\x00\x00\x00\x05\x00\x00\x00song" + bytes(300)) -> bytes:
    """An ID3v2.4 tag: 10-byte header with a syncsafe size, then ``payload``."""
    n = len(payload)
    return b"ID3\x04\x00\x00" + bytes([(n >> 21) & 127, (n >> 14) & 127, (n >> 7) & 127, n & 127]) + payload


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict:
    """{name: path}: VBR and CBR MP3s as soundfile writes them, both without their Xing/Info frame, WAV and FLAC."""
    audio = tmp_path_factory.mktemp("mp3") / "audio"
    audio.mkdir()
    paths = {"vbr": audio / "vbr.mp3", "cbr": audio / "cbr.mp3", "wav": audio / "tone.wav",
             "flac": audio / "chord.flac"}
    sf.write(paths["vbr"], synth_clip(SECONDS, 0), SAMPLE_RATE, format="MP3")  # VBR: the default
    sf.write(paths["cbr"], synth_clip(SECONDS, 1), SAMPLE_RATE, format="MP3", bitrate_mode="CONSTANT",
             compression_level=0.5)  # bitrate_mode only takes with a compression_level
    sf.write(paths["wav"], synth_clip(2.0, 2), SAMPLE_RATE)
    sf.write(paths["flac"], synth_clip(2.0, 3), SAMPLE_RATE)
    paths["vbr_bare"] = strip_xing(paths["vbr"], audio / "vbr_bare.mp3")
    paths["cbr_bare"] = strip_xing(paths["cbr"], audio / "cbr_bare.mp3")
    return paths


def refused_line(err: AudioError, path: Path) -> str:
    message = str(err)
    assert err.kind == "length" and message.startswith(f"{path}: {ESTIMATED}"), message
    assert "\n" not in message and "ffmpeg -i X.mp3 X.flac" in message and "keep only the estimate" in message
    return message


# --- facts: seeks are sample-accurate, header == decoded length, the walker's rule ------------------------------


@pytest.mark.parametrize("name", ["vbr", "cbr"])
def test_mp3_seek_reads_equal_the_full_decode_and_the_header_is_the_decoded_length(corpus, name):
    path = corpus[name]
    full, rate = sf.read(path, dtype="float32")
    assert rate == SAMPLE_RATE and sf.info(path).frames == len(full) == SAMPLES
    spf = 576  # MPEG-2 Layer III
    for start, length in [(0, 4000), (1000, 3000), (spf * 100, spf * 7), (spf * 333 + 17, 5000),
                          (SAMPLES - 2500, 2500), (SAMPLES - 1, 1)]:
        window, _ = sf.read(path, start=start, stop=start + length, dtype="float32")
        assert len(window) == length  # seeks land on the sample; past the first frame the samples are exact
        assert np.allclose(window[spf:], full[start + spf:start + length], atol=1e-6), (start, length)
        ours, _ = read_audio(path, offset=start / SAMPLE_RATE, duration=length / SAMPLE_RATE)
        assert np.allclose(ours, full[start:start + length], atol=1e-6), (start, length)
    assert not np.allclose(full[:4000], full[1000:5000], atol=1e-6)  # the windows do differ


def test_mp3_first_frame_after_a_seek_can_decode_wrong_and_read_audio_prerolls(tmp_path):
    """A low-bitrate stream's bit reservoir reaches back beyond libmpg123's pre-roll after a seek: soundfile's
    first frame of such windows is wrong (if this stops failing, libmpg123 seeks are exact and the pre-roll of
    music_ssl.data.audio.decode_window can go); read_audio's windows equal the full decode."""
    path = tmp_path / "low.mp3"
    sf.write(path, synth_clip(20.0, 4), SAMPLE_RATE, format="MP3", bitrate_mode="CONSTANT", compression_level=0.9)
    full = sf.read(path, dtype="float32")[0]
    starts = [int(s) for s in np.random.default_rng(0).integers(0, len(full) - 2000, 40)]
    raw_wrong = 0
    for start in starts:
        raw, _ = sf.read(path, start=start, stop=start + 2000, dtype="float32")
        raw_wrong += not np.allclose(raw, full[start:start + 2000], atol=1e-6)
        ours, _ = read_audio(path, offset=start / SAMPLE_RATE, duration=2000 / SAMPLE_RATE)
        assert np.allclose(ours, full[start:start + 2000], atol=1e-6), start
    assert raw_wrong >= 4, raw_wrong


@pytest.mark.parametrize("name, tag", [("vbr", "Xing"), ("cbr", "Info")])
def test_mp3_walked_frames_minus_lame_delay_and_padding_are_the_decoded_length(corpus, name, tag):
    length = mp3_length(corpus[name])
    assert length.tag.name == tag and length.has_length_tag and length.complete
    assert (length.version, length.layer, length.samples_per_frame, length.sample_rate) == ("MPEG-2", 3, 576, 16000)
    assert length.tag_frames == length.frames_walked and length.tag.bytes == corpus[name].stat().st_size
    delay, padding = length.tag.delay, length.tag.padding  # LAME's delay is 576; padding fills the last frames
    assert length.tag.encoder.startswith("LAME") and delay == 576 and 0 < padding < 2 * 576
    decoded = len(sf.read(corpus[name])[0])
    assert length.frames_walked * 576 - delay - padding == length.decoded_samples == decoded == SAMPLES


def test_mp3_xing_header_without_lame_tag_trims_only_the_decoder_delay(corpus, tmp_path):
    data = bytearray(corpus["vbr"].read_bytes())
    assert data[133:137] == b"LAME"  # soundfile's Xing header has every field: the LAME tag follows at byte 133
    data[133:133 + 36] = bytes(36)
    blank = tmp_path / "blank.mp3"
    blank.write_bytes(bytes(data))
    length = mp3_length(blank)
    assert length.has_length_tag and length.tag.delay is None
    assert length.decoded_samples == length.frames_walked * 576 - 529 == sf.info(blank).frames == len(sf.read(blank)[0])
    assert length_mismatch(blank, sf.info(blank).frames) is None


def test_mp3_without_xing_frame_cbr_estimate_is_exact_but_vbr_reads_stop_at_a_short_estimate(corpus):
    vbr, cbr = mp3_length(corpus["vbr_bare"]), mp3_length(corpus["cbr_bare"])
    assert vbr.tag is None and cbr.tag is None and not vbr.has_length_tag
    assert vbr.frames_walked == mp3_length(corpus["vbr"]).frames_walked  # only the tag frame went
    # CBR: nothing trimmed, libsndfile's bitrate estimate is right
    assert sf.info(corpus["cbr_bare"]).frames == len(sf.read(corpus["cbr_bare"])[0]) == cbr.frames_walked * 576
    assert length_mismatch(corpus["cbr_bare"], sf.info(corpus["cbr_bare"]).frames) is None
    # VBR: the estimate, and every read, stop far short of the frames (the problem this module exists for)
    estimate = sf.info(corpus["vbr_bare"]).frames
    assert estimate < 0.9 * vbr.decoded_samples and len(sf.read(corpus["vbr_bare"])[0]) == estimate
    detail = length_mismatch(corpus["vbr_bare"], estimate)
    assert detail.startswith(f"{ESTIMATED} {estimate / SAMPLE_RATE:.1f} s ({estimate} samples) from its bitrate but "
                             f"its frames hold {vbr.decoded_samples / SAMPLE_RATE:.1f} s"), detail


def test_mp3_walker_skips_id3v2_stops_at_id3v1_and_reads_mpeg1(corpus, tmp_path):
    data, bare = corpus["vbr"].read_bytes(), corpus["vbr_bare"].read_bytes()
    tag, trailer = id3v2(), b"TAG" + bytes(125)
    plain = parse_mp3(data)
    tagged = parse_mp3(tag + data + trailer)
    assert tagged.start == len(tag) and tagged.complete and tagged._replace(start=0, end=0) == plain._replace(end=0)
    junk = parse_mp3(data + b"\x00" * 64)
    assert junk.frames_walked == plain.frames_walked and not junk.complete
    # libsndfile reads the tagged files too, and the bare one is still caught behind an ID3v2 tag
    (tmp_path / "tagged.mp3").write_bytes(tag + data + trailer)
    (tmp_path / "tagged_bare.mp3").write_bytes(tag + bare + trailer)
    assert sf.info(tmp_path / "tagged.mp3").frames == SAMPLES
    assert length_mismatch(tmp_path / "tagged.mp3", SAMPLES) is None
    assert length_mismatch(tmp_path / "tagged_bare.mp3", sf.info(tmp_path / "tagged_bare.mp3").frames)
    # MPEG-1 (44.1 kHz stereo): 1152 samples per frame, the same rule
    sf.write(tmp_path / "cd.mp3", np.stack([synth_clip(4.0, 5, 44100)] * 2, 1), 44100, format="MP3")
    cd = mp3_length(tmp_path / "cd.mp3")
    assert (cd.version, cd.samples_per_frame, cd.sample_rate) == ("MPEG-1", 1152, 44100)
    assert cd.decoded_samples == sf.info(tmp_path / "cd.mp3").frames == 4 * 44100


@pytest.mark.parametrize("header, size, spf, rate", [
    (b"\xff\xfd\x80\xc0", 417, 1152, 44100),  # MPEG-1 Layer II, 128 kbit/s: 144 × 128000 / 44100 bytes
    (b"\xff\xff\x40\xc0", 136, 384, 44100),  # MPEG-1 Layer I, 128 kbit/s: 4 × (12 × 128000 // 44100) bytes
    (b"\xff\xe3\x88\xc0", 576, 576, 8000),  # MPEG-2.5 Layer III, 64 kbit/s: 72 × 64000 / 8000 bytes
])
def test_mp3_walker_frame_sizes_of_other_layers_and_versions(header, size, spf, rate):
    """soundfile writes Layer III only: hand-made frames (a header, then zeros) of the other kinds."""
    frame = header + bytes(size - 4)
    length = parse_mp3(frame * 10 + b"TAG" + bytes(125))
    assert (length.frames_walked, length.samples_per_frame, length.sample_rate) == (10, spf, rate)
    assert length.complete and length.end == 10 * size and length.tag is None
    assert parse_mp3(frame * 10 + frame[:size // 2]).frames_walked == 10  # a frame cut short is not counted


def test_mp3_walk_of_a_four_minute_stream_takes_milliseconds(corpus, tmp_path):
    bare = corpus["vbr_bare"].read_bytes()
    song = tmp_path / "song.mp3"
    song.write_bytes(bare * 6)  # 6 × 40 s of frames: 240 s, ~6,700 frames
    mp3_length(corpus["vbr"])  # builds the lookup table once
    start = time.perf_counter()
    length = mp3_length(song)
    took = time.perf_counter() - start
    assert length.frames_walked == 6 * mp3_length(corpus["vbr_bare"]).frames_walked and took < 0.05, took


def test_mp3_joined_files_and_cut_files(corpus, tmp_path):
    """Two songs joined: the first Xing header covers half (soundfile reads half) -> refused; a cut file's Xing
    header declares more than it holds -> left to the decode check (``truncated``), as before."""
    joined = tmp_path / "joined.mp3"
    joined.write_bytes(corpus["vbr"].read_bytes() * 2)
    assert sf.info(joined).frames == SAMPLES
    assert "Xing header declares 40.0 s" in length_mismatch(joined, SAMPLES)
    _, problem = inspect_audio(joined)
    assert problem.kind == "length" and "(joined files?)" in problem.detail
    cut = tmp_path / "cut.mp3"
    cut.write_bytes(corpus["vbr"].read_bytes()[:60000])
    assert length_mismatch(cut, sf.info(cut).frames) is None
    assert inspect_audio(cut)[1].kind == "truncated"


# --- the readers, the audit, the pre-flight, the manifest builder ------------------------------------------------


def test_mp3_estimated_length_refused_by_every_reader_naming_the_file(corpus):
    path = corpus["vbr_bare"]
    estimate = sf.info(path).frames
    with pytest.raises(AudioError) as err:
        read_training_audio(path, estimate)
    assert "then regenerate the manifest" in refused_line(err.value, path)
    for read in (lambda: read_audio(path), lambda: read_audio(path, 22050, offset=1.0, duration=2.0),
                 lambda: list(read_audio_blocks(path, SAMPLE_RATE))):
        with pytest.raises(AudioError) as err:
            read()
        refused_line(err.value, path)
    for decode in (True, False):
        samples, problem = inspect_audio(path, decode=decode)
        assert samples == estimate and problem.kind == "length" and problem.detail.startswith(ESTIMATED)


@pytest.mark.parametrize("name", ["vbr", "cbr", "cbr_bare", "wav", "flac"])
def test_mp3_good_files_and_other_formats_pass_every_reader(corpus, name):
    path = corpus[name]
    frames = sf.info(path).frames
    assert len(read_training_audio(path, frames)) == frames
    assert len(read_audio(path)[0]) == frames and inspect_audio(path) == (frames, None)
    assert sum(len(b) for b in read_audio_blocks(path, SAMPLE_RATE)) == frames
    assert length_mismatch(path, frames) is None
    assert (mp3_length(path) is None) == (path.suffix != ".mp3")




def test_mp3_estimated_length_is_a_bad_row_of_the_audit_and_stops_the_preflight(corpus, tmp_path, capsys):
    root = corpus["vbr"].parent
    names = ["vbr", "cbr", "cbr_bare", "vbr_bare", "wav", "flac"]
    tsv = tmp_path / "m" / "train.tsv"
    tsv.parent.mkdir()
    tsv.write_text(f"{root}\n" + "".join(f"{corpus[n].name}\t{sf.info(corpus[n]).frames}\n" for n in names))
    with pytest.raises(DataError) as err:  # headers only
        preflight_manifest(tsv)
    message = str(err.value)
    assert "1 of 6 rows cannot be trained on (1 length; from file headers)" in message, message
    assert f"line 5: {corpus['vbr_bare']}: {ESTIMATED}" in message and "ffmpeg -i X.mp3" in message

    code, err = run_cli(["audit", tmp_path / "m"], capsys)
    assert code == 1 and any("1 bad rows" in line for line in err if line.startswith("error: ")), err
    lines = [line for line in err if f"{corpus['vbr_bare']}: {ESTIMATED}" in line]
    assert len(lines) == 1 and "train.tsv:5:" in lines[0] and "--write-clean" in lines[0], err
    bad = [r.split("\t") for r in (tmp_path / "m" / "train.bad.tsv").read_text().splitlines()[1:]]
    assert [(r[1], r[3]) for r in bad] == [("vbr_bare.mp3", "length")]
    result = audit_manifest(tsv, write_clean=True)
    assert result.cached and result.counts() == {"length": 1}
    clean = tmp_path / "m" / "train.clean.tsv"
    assert "vbr_bare.mp3" not in read_manifest(clean).relpaths and len(preflight_manifest(clean)) == 5


def test_mp3_estimated_length_skipped_and_counted_by_the_manifest_builder(corpus, tmp_path, caplog):
    audio = corpus["vbr"].parent
    with caplog.at_level(logging.WARNING):
        plain = build_manifests(audio, tmp_path / "m", valid_percent=0.0)
    assert plain.skipped == {SKIPPED: 1}
    assert sorted(read_manifest(tmp_path / "m" / "train.tsv").relpaths) == sorted(
        p.name for n, p in corpus.items() if n != "vbr_bare")
    said = [r.getMessage() for r in caplog.records if str(corpus["vbr_bare"]) in r.getMessage()]
    assert len(said) == 1 and said[0].startswith(f"skipped: {corpus['vbr_bare']}: {ESTIMATED}"), said
    assert "ffmpeg -i X.mp3 X.flac" in said[0]
    converted = build_manifests(audio, tmp_path / "c", valid_percent=0.0, convert_dir=tmp_path / "flac")
    assert converted.skipped == {SKIPPED: 1} and not (tmp_path / "flac" / "vbr_bare.flac").exists()
    assert sf.info(tmp_path / "flac" / "vbr.flac").frames == SAMPLES
