"""Task registry: every loader on a tiny fake tree in its dataset's official layout, the generic CSV task, and
clear errors for unknown tasks and missing files."""
import json

import numpy as np
import pytest
import soundfile as sf

from music_ssl.probe.errors import MissingDataError, ProbeConfigError, ProbeDataError
from music_ssl.probe.task_types import TASK_TYPES
from music_ssl.probe.datasets import DATASETS, load_probe_dataset


def touch_audio(path, seconds: float = 0.05):
    """A short noise WAV (16 kHz) at ``path`` (any suffix: loaders only need the file to exist)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    noise = np.random.default_rng(len(str(path))).standard_normal(int(16000 * seconds)).astype(np.float32)
    sf.write(path, 0.1 * noise, 16000, format="WAV")
    return path


def splits(task) -> dict:
    return {s: sorted(i.path.name for i in task.split_items(s)) for s in ("train", "valid", "test")}


def test_unknown_task_lists_the_known_ones():
    with pytest.raises(ProbeConfigError, match="unknown task 'gtzan'.*gtzan_genre"):
        load_probe_dataset("gtzan", root="/nowhere")


def test_registry_covers_the_issue_tasks_with_one_type_each():
    expected = {"mtt_top50": "multilabel", "gtzan_genre": "multiclass", "giantsteps_key": "key",
                "emomusic": "regression", "nsynth_instrument": "multiclass", "nsynth_pitch": "multiclass",
                "vocalset_technique": "multiclass", "vocalset_singer": "multiclass", "gtzan_beat": "beat",
                "mtg_top50": "multilabel", "mtg_genre": "multilabel", "mtg_instrument": "multilabel",
                "mtg_moodtheme": "multilabel"}
    assert {name: DATASETS[name].type for name in expected} == expected
    assert set(TASK_TYPES) == {"multiclass", "multilabel", "regression", "key", "beat"}


def test_mtt_folders_give_12_1_3_split_and_top_tags(tmp_path):
    tags = ["rock", "guitar", "piano", "quiet"]
    rows = ["clip_id\t" + "\t".join(tags) + "\tmp3_path"]
    for i, folder in enumerate("0123456789abcdef"):
        rel = f"{folder}/song-{i}.mp3"
        rows.append(f"{i}\t1\t{i % 2}\t{int(i < 3)}\t0\t{rel}")
        touch_audio(tmp_path / rel)
    (tmp_path / "0" / "song-0.mp3").write_bytes(b"")  # MTT ships a few zero-byte files
    (tmp_path / "annotations_final.csv").write_text("\n".join(rows) + "\n")
    task = load_probe_dataset("mtt_top50", root=tmp_path, top=3)
    assert task.classes == ["rock", "guitar", "piano"]  # by frequency: 16, 8, 3 (quiet: 0)
    assert [len(task.split_items(s)) for s in ("train", "valid", "test")] == [11, 1, 3]  # 12 folders, 1 empty
    assert task.skipped == {"zero-byte mp3 (known MTT defect)": 1}
    assert splits(task)["valid"] == ["song-12.mp3"]
    first = task.split_items("train")[0]
    assert first.path.name == "song-1.mp3" and first.label == ["rock", "guitar", "piano"]


def test_mtt_missing_table_names_file_and_layout(tmp_path):
    with pytest.raises(MissingDataError, match=r"annotations_final\.csv: missing .*Expected layout"):
        load_probe_dataset("mtt_top50", root=tmp_path)


def write_gtzan(root, per_split=(2, 1, 1)):
    lines = {"train": [], "valid": [], "test": []}
    for genre in ("blues", "rock"):
        for n, split in enumerate(s for s, k in zip(lines, per_split) for _ in range(k)):
            touch_audio(root / "genres" / genre / f"{genre}.{n:05d}.wav")
            lines[split].append(f"{genre}/{genre}.{n:05d}.wav")
    for split, entries in lines.items():
        (root / f"{split}_filtered.txt").write_text("\n".join(entries) + "\n")
    return root


def test_gtzan_fault_filtered_lists(tmp_path):
    task = load_probe_dataset("gtzan_genre", root=write_gtzan(tmp_path))
    assert splits(task)["test"] == ["blues.00003.wav", "rock.00003.wav"]
    assert sorted({i.label for i in task.items}) == ["blues", "rock"] and len(task.classes) == 10
    (tmp_path / "valid_filtered.txt").unlink()
    with pytest.raises(MissingDataError, match=r"valid_filtered\.txt: missing GTZAN fault-filtered split list"):
        load_probe_dataset("gtzan_genre", root=tmp_path)


def test_gtzan_rhythm_reads_beats_and_jams(tmp_path):
    write_gtzan(tmp_path)
    ann = tmp_path / "annotations"
    ann.mkdir()
    for path in sorted((tmp_path / "genres").rglob("*.wav")):
        (ann / f"{path.stem}.beats").write_text("0.5\t1\n1.0\t2\n")
    (ann / "rock.00000.beats").unlink()
    jams = {"annotations": [{"namespace": "beat", "data": [{"time": 0.25}, {"time": 0.75}]}]}
    (ann / "rock.00000.wav.jams").write_text(json.dumps(jams))
    task = load_probe_dataset("gtzan_beat", root=tmp_path)
    assert task.type == "beat" and task.pooling == "frames"
    labels = {i.path.stem: list(i.label) for i in task.items}
    assert labels["blues.00000"] == [0.5, 1.0] and labels["rock.00000"] == [0.25, 0.75]
    (ann / "blues.00001.beats").unlink()
    with pytest.raises(MissingDataError, match=r"blues\.00001\.beats: missing GTZAN-Rhythm beat annotation"):
        load_probe_dataset("gtzan_beat", root=tmp_path)


def test_giantsteps_filters_confidence_and_splits_by_artist(tmp_path):
    mtg, gs = tmp_path / "giantsteps-mtg-key-dataset", tmp_path / "giantsteps-key-dataset"
    (mtg / "annotations").mkdir(parents=True)
    rows, meta = ["ID\tMANUAL KEY\tC\tGLOBAL KEY"], ["ID\tARTIST\tTITLE"]
    for i in range(40):
        key, confidence = ("A minor", "2") if i % 10 else ("A minor / C major", "2")
        confidence = "1" if i == 5 else confidence
        rows.append(f"{i}\t{key}\t{confidence}\tA minor")
        guest = f", Artist {(i + 1) % 13}" if i % 7 == 0 else ""  # a few collaborations
        meta.append(f"{i}\tArtist {i % 13}{guest}\tsong")
        touch_audio(mtg / "audio" / f"{i}.LOFI.mp3")
    (mtg / "annotations" / "annotations.txt").write_text("\n".join(rows) + "\n")
    (mtg / "annotations" / "beatport_metadata.txt").write_text("\n".join(meta) + "\n")
    (gs / "annotations" / "key").mkdir(parents=True)
    for i in range(3):
        (gs / "annotations" / "key" / f"{i}.LOFI.key").write_text("F# minor\n")
        touch_audio(gs / "audio" / f"{i}.LOFI.mp3")
    task = load_probe_dataset("giantsteps_key", root=tmp_path)
    assert task.skipped == {"GS-MTG several or no keys": 4, "GS-MTG key confidence C != 2": 1}
    assert len(task.split_items("test")) == 3 and task.split_items("test")[0].label == "F# minor"
    assert task.pooling == "window" and task.window_seconds == 30.0
    # every artist's tracks land in one split
    split_of = {}
    for line in meta[1:]:
        track, artists = line.split("\t")[:2]
        for item in task.items:
            if item.path.name == f"{track}.LOFI.mp3" and item.split != "test":
                for artist in artists.split(", "):
                    assert split_of.setdefault(artist, item.split) == item.split
    assert {"train", "valid"} <= set(split_of.values())


def test_emomusic_eval_set_is_test_and_targets_zscored_on_train(tmp_path):
    info = ["song_id,file_name,Artist,Song title,start of the segment (min.sec),end of the segment (min.sec),"
            "Genre,Mediaeval 2013 set"]
    static = ["song_id, mean_arousal, std_arousal, mean_valence, std_valence"]
    for i in range(1, 31):
        info.append(f"{i},{i}.mp3,Artist {'ABCDEFGHIJKL'[i % 12]},t,0,45,Rock,{'evaluation' if i > 24 else 'development'}")
        static.append(f"{i}, {i / 10:.1f}, 1, {-i / 5:.1f}, 1")
        touch_audio(tmp_path / "clips_45seconds" / f"{i}.mp3")
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "songs_info.csv").write_text("\n".join(info) + "\n")
    (tmp_path / "annotations" / "static_annotations.csv").write_text("\n".join(static) + "\n")
    task = load_probe_dataset("emomusic", root=tmp_path)
    assert len(task.split_items("test")) == 6 and task.output_names == ["arousal", "valence"]
    artists_of = {s: {int(i.path.stem) % 12 for i in task.split_items(s)} for s in ("train", "valid")}
    assert not artists_of["train"] & artists_of["valid"]  # artist-stratified
    kind = TASK_TYPES["regression"]
    targets = kind.prepare({s: kind.encode([i.label for i in task.split_items(s)], task)
                            for s in ("train", "valid", "test")})
    np.testing.assert_allclose(targets["train"].mean(0), 0, atol=1e-6)
    np.testing.assert_allclose(targets["train"].std(0), 1, atol=1e-5)
    assert targets["test"].mean(0)[0] > 1  # test songs have the highest arousal: far above the train mean


def test_nsynth_instrument_pitch_and_train_cap(tmp_path):
    for split, n in (("train", 6), ("valid", 2), ("test", 2)):
        notes = {f"{split}_{i}": {"instrument_family_str": ["bass", "organ"][i % 2], "pitch": 60 + i}
                 for i in range(n)}
        (tmp_path / f"nsynth-{split}").mkdir()
        (tmp_path / f"nsynth-{split}" / "examples.json").write_text(json.dumps(notes))
        for name in notes:
            touch_audio(tmp_path / f"nsynth-{split}" / "audio" / f"{name}.wav")
    instrument = load_probe_dataset("nsynth_instrument", root=tmp_path, max_train_items=4)
    assert len(instrument.classes) == 11 and len(instrument.split_items("train")) == 4
    assert instrument.skipped == {"train notes beyond max_train_items": 2}
    pitch = load_probe_dataset("nsynth_pitch", root=tmp_path)
    assert len(pitch.classes) == 128 and sorted(i.label for i in pitch.split_items("valid")) == ["60", "61"]


def test_vocalset_test_singers_and_windows(tmp_path):
    for singer in ("f1", "f2", "f6", "m1", "m3"):
        for technique in ("belt", "vibrato", "messa"):
            for take in range(4):
                touch_audio(tmp_path / "FULL" / singer / "arpeggios" / technique / f"{singer}_{technique}_{take}.wav")
    technique = load_probe_dataset("vocalset_technique", root=tmp_path)
    assert {i.path.parts[-4] for i in technique.split_items("test")} == {"f2", "m3"}
    assert {i.path.parts[-4] for i in technique.split_items("valid")} == {"f6"}  # valid singers (9/6/5 split)
    assert technique.skipped == {"technique outside the 10 of Wilkins et al.": 20}
    assert technique.pooling == "window" and technique.window_seconds == 3.0
    singer = load_probe_dataset("vocalset_singer", root=tmp_path)
    assert len(singer.classes) == 20 and len(singer.items) == 60
    with pytest.raises(MissingDataError, match="FULL: missing VocalSet FULL folder"):
        load_probe_dataset("vocalset_singer", root=tmp_path / "nowhere")


def test_mtg_jamendo_split0_and_tags_only_from_train(tmp_path):
    folder = tmp_path / "data" / "splits" / "split-0"
    folder.mkdir(parents=True)
    header = "TRACK_ID\tARTIST_ID\tALBUM_ID\tPATH\tDURATION\tTAGS"
    for split, tag, n in (("train", "train", 4), ("valid", "validation", 1), ("test", "test", 2)):
        rows = [header]
        for i in range(n):
            rel = f"{i:02d}/{split}{i}.mp3"
            extra = "\tgenre---jazz" if split == "test" else ""
            rows.append(f"track_{i}\tartist_{i}\talbum_{i}\t{rel}\t30.0\tgenre---rock\tgenre---pop{extra}")
            touch_audio(tmp_path / "audio" / rel)
        (folder / f"autotagging_genre-{tag}.tsv").write_text("\n".join(rows) + "\n")
    task = load_probe_dataset("mtg_genre", root=tmp_path)
    assert task.classes == ["genre---pop", "genre---rock"] and task.type == "multilabel"
    assert task.skipped == {"tags absent from train (dropped from labels)": 1}
    assert [len(task.split_items(s)) for s in ("train", "valid", "test")] == [4, 1, 2]
    with pytest.raises(MissingDataError, match=r"autotagging_top50tags-train\.tsv: missing MTG-Jamendo split file"):
        load_probe_dataset("mtg_top50", root=tmp_path)


def write_csv(folder, rows, header="path,label,split"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "task.csv").write_text(header + "\n" + "\n".join(rows) + "\n")
    return folder / "task.csv"


@pytest.mark.parametrize("kind, labels, expected", [
    ("multiclass", ["a", "b", "a"], "a"),
    ("multilabel", ["x;y", "y", ""], ["x", "y"]),
    ("regression", ["1.5;2", "0;1", "3;4"], [1.5, 2.0]),
    ("key", ["C major", "f# minor", "Bb:maj"], "C major"),
])
def test_csv_task_types(tmp_path, kind, labels, expected):
    rows = [f"audio/{i}.wav,{label},{split}" for i, (label, split) in enumerate(zip(labels, ["train", "valid", "test"]))]
    for i in range(3):
        touch_audio(tmp_path / "audio" / f"{i}.wav")
    task = load_probe_dataset("csv", path=str(write_csv(tmp_path, rows)), type=kind)
    assert task.name == "task" and task.type == kind and task.items[0].label == expected
    assert task.items[0].path == tmp_path / "audio" / "0.wav"
    assert task.pooling == ("window" if kind == "key" else "clip")
    TASK_TYPES[kind].encode([i.label for i in task.items], task)  # labels encode without error


def test_csv_beat_task_reads_beat_files_relative_to_csv(tmp_path):
    rows = []
    for i, split in enumerate(["train", "valid", "test"]):
        touch_audio(tmp_path / "audio" / f"{i}.wav")
        (tmp_path / "beats").mkdir(exist_ok=True)
        (tmp_path / "beats" / f"{i}.beats").write_text("0.5\t1\n1.0\t2\n1.5\t3\n")
        rows.append(f"audio/{i}.wav,beats/{i}.beats,{split}")
    task = load_probe_dataset("csv", path=str(write_csv(tmp_path, rows)), type="beat", task_name="beats")
    assert task.name == "beats" and task.pooling == "frames"
    np.testing.assert_allclose(task.items[2].label, [0.5, 1.0, 1.5])


def test_csv_without_split_column_gets_a_deterministic_split(tmp_path):
    rows = [f"{i}.wav,{i % 2}" for i in range(60)]
    for i in range(60):
        touch_audio(tmp_path / f"{i}.wav", 0.01)
    path = write_csv(tmp_path, rows, header="path,label")
    first, second = load_probe_dataset("csv", path=str(path)), load_probe_dataset("csv", path=str(path))
    assert first.split_checksums() == second.split_checksums()
    assert 30 < len(first.split_items("train")) < 60 and first.split_items("test")


def test_csv_bad_inputs_fail_with_one_clear_line(tmp_path):
    touch_audio(tmp_path / "a.wav")
    with pytest.raises(MissingDataError, match=r"nope\.csv: CSV task file not found"):
        load_probe_dataset("csv", path=str(tmp_path / "nope.csv"))
    with pytest.raises(ProbeDataError, match="needs a header with columns path,label"):
        load_probe_dataset("csv", path=str(write_csv(tmp_path, ["a.wav,x"], header="file,y")))
    with pytest.raises(MissingDataError, match=r"missing\.wav: audio missing for 1 of 2 items"):
        load_probe_dataset("csv", path=str(write_csv(tmp_path, ["a.wav,x,train", "missing.wav,y,test"])))
    touch_audio(tmp_path / "b.wav")
    with pytest.raises(ProbeDataError, match="the valid split is empty"):
        load_probe_dataset("csv", path=str(write_csv(tmp_path, ["a.wav,x,train", "b.wav,x,test"])))
    with pytest.raises(ProbeConfigError, match="type 'ranking' is not one of"):
        load_probe_dataset("csv", path=str(write_csv(tmp_path, ["a.wav,x,train"])), type="ranking")
    with pytest.raises(ProbeDataError, match=r"task\.csv:2: expected a number, got 'loud'"):
        load_probe_dataset("csv", path=str(write_csv(tmp_path, ["a.wav,loud,train"])), type="regression")


def test_unknown_task_option_is_an_error_not_a_default(tmp_path):
    touch_audio(tmp_path / "a.wav")
    with pytest.raises(ProbeConfigError, match=r"task csv: unknown option\(s\) \['typ'\]"):
        load_probe_dataset("csv", path=str(write_csv(tmp_path, ["a.wav,C major,train"])), typ="key")
