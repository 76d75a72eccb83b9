"""The papers' protocols and task rules: presets and their tables, LR on plateau (batched == torch's scheduler),
window -> song aggregation, beat scoring windows and averaging, VocalSet singer splits, key-label errors naming
file and row, JukeMIR's Jukebox layout, the raw CNN feature, published numbers in the report, the prob70
ablation."""
import dataclasses
import hashlib
import json
import re

import mir_eval
import numpy as np
import pytest
import torch

from test_probe_datasets import touch_audio
from test_probe_train import one_thread, small_grid, synthetic_data  # noqa: F401 (autouse fixture)

from music_ssl.probe import run_probe
from music_ssl.probe.assemble import assemble
from music_ssl.probe.beat import beat_targets
from music_ssl.probe.data import ProbeData, SplitArrays
from music_ssl.probe.errors import MissingDataError, ProbeConfigError, ProbeDataError
from music_ssl.probe.features.cache import FeatureSet
from music_ssl.probe.features.jukebox_source import JukeboxSource
from music_ssl.probe.metrics import beat_f_measure, beat_f_measure_files
from music_ssl.probe.protocols import PROTOCOLS, WEIGHTED_SUM, TrainSettings, get_protocol, resolve_layers
from music_ssl.probe.published import lookup, references
from music_ssl.probe.task_types import TASK_TYPES
from music_ssl.probe.datasets import load_probe_dataset
from music_ssl.probe.datasets.dataset import Item, ProbeDataset
from music_ssl.probe.datasets.vocalset import SINGERS, TECHNIQUES
from music_ssl.probe.trainer import train_batched, train_sequential


# ---------------------------------------------------------------- presets

def test_presets_match_their_papers_and_list_with_tables(capsys):
    from music_ssl.cli.probe import main

    ma, mulap, marble = get_protocol("ma2023"), get_protocol("mulap"), get_protocol("marble")
    assert [(c.hidden, c.lr) for c in ma.grid] == [(512, 1e-3)] and ma.layers == "sum"  # Ma et al. §4.1
    assert resolve_layers(ma.layers, 13) == [WEIGHTED_SUM]  # one learned sum (of the 12 layers: MARBLE's code)
    emo = ma.rules["emomusic"]  # MARBLE configs/music2vec/EMO.yaml: 30-s windows, each encoded alone, song means
    assert (emo["pooling"], emo["window_seconds"], emo["aggregate"]) == ("window", 30.0, "mean")
    assert emo["encode"] == "window"
    assert ma.rules["beat"]["beat_neighbour_weight"] == 1.0
    (m,) = mulap.grid
    assert (m.hidden, m.lr, m.batch_size, m.l2, m.dropout) == (512, 1e-3, 64, 0.01, 0.0)  # MuLaP §3.2
    assert mulap.settings.max_epochs == 200 and mulap.settings.lr_factor and mulap.settings.patience
    assert mulap.seeds == [0, 1, 2] and mulap.layers == "last"
    assert mulap.rules_for("mtt_top50", "multilabel")["window_seconds"] == 3.0  # 3-s crops, averaged at test
    assert marble.settings.lr_factor == 0.5 and marble.settings.lr_patience == 5 and marble.settings.patience == 20
    main(list_protocols_=True)
    out = capsys.readouterr().out
    for name in PROTOCOLS:
        assert f"\n{name}: " in "\n" + out
    assert out.count("setting") >= 4 and "§4.1" in out and "§3.3" in out and "probers.py" in out
    with pytest.raises(ProbeConfigError, match="choose one of"):
        get_protocol("map")


def test_standardize_override_sets_every_grid_config_and_keeps_the_rest():
    mulap, jukemir = get_protocol("mulap"), get_protocol("jukemir")
    assert mulap.with_standardize(None) is mulap
    (z,) = mulap.with_standardize(True).grid
    assert z.standardize and z == dataclasses.replace(mulap.grid[0], standardize=True)
    raw = jukemir.with_standardize(False).grid  # the 216 cross standardisation: 108 distinct configs remain
    assert len(raw) == len(jukemir.grid) // 2 == 108 and not any(c.standardize for c in raw)
    assert jukemir.with_standardize(False).settings == jukemir.settings


def test_lr_on_plateau_batched_equals_torch_scheduler():
    data = synthetic_data("multiclass", seed=2)
    configs = small_grid()
    settings = TrainSettings(eval_every=2, patience=6, max_epochs=10, lr_factor=0.5, lr_patience=1)
    batched = train_batched(configs, data, settings, progress=False)
    sequential = train_sequential(configs, data, settings, progress=False)
    np.testing.assert_array_equal(batched.steps, sequential.steps)
    np.testing.assert_allclose(batched.logits["test"], sequential.logits["test"], atol=1e-4)
    constant = train_batched(configs, data, TrainSettings(eval_every=2, patience=6, max_epochs=10), progress=False)
    assert not np.allclose(constant.logits["test"], batched.logits["test"], atol=1e-3)  # the schedule acted
    with pytest.raises(ProbeConfigError, match="lr_factor .* and lr_patience"):
        train_batched(configs, data, TrainSettings(max_epochs=1, lr_factor=0.5), progress=False)


# ---------------------------------------------------------------- window -> song aggregation

def grouped_data(kind: str, groups: list, logits_dim: int) -> ProbeData:
    """Valid/test splits of windows grouped into songs (x unused), aggregate on."""
    rng = np.random.default_rng(0)
    g = torch.tensor(groups)
    num = int(g.max()) + 1
    if kind == "regression":
        song_y = torch.tensor(rng.standard_normal((num, logits_dim)), dtype=torch.float32)
    else:
        song_y = torch.tensor(rng.integers(0, logits_dim, num))
    split = SplitArrays(torch.zeros(1, len(groups), 2), song_y[g], g, aggregate=True)
    task = ProbeDataset("t", kind, [], classes=[str(k) for k in range(logits_dim)],
                    output_names=[f"y{k}" for k in range(logits_dim)])
    return ProbeData(task, TASK_TYPES[kind], {"train": split, "valid": split, "test": split}, logits_dim)


@pytest.mark.parametrize("kind", ["regression", "multiclass"])
def test_window_predictions_are_averaged_per_song(kind):
    groups = [0, 0, 0, 1, 1, 2, 2, 2, 2]
    data = grouped_data(kind, groups, 2)
    logits = np.random.default_rng(1).standard_normal((len(groups), 2)).astype(np.float32)
    means = np.stack([logits[np.array(groups) == s].mean(0) for s in range(3)])  # by hand
    song_y = data.splits["test"].group_targets().numpy()
    result = TASK_TYPES[kind].evaluate({"test": logits}, data)["test"]["primary"]
    batched = float(TASK_TYPES[kind].batched_primary(torch.from_numpy(logits)[None], data.splits["test"])[0])
    if kind == "regression":
        expected = np.mean([mir_r2(song_y[:, k], means[:, k]) for k in range(2)])
    else:
        expected = float((means.argmax(1) == song_y).mean())
    assert result == pytest.approx(expected, abs=1e-6) and batched == pytest.approx(expected, abs=1e-5)
    per_window = TASK_TYPES[kind].evaluate({"test": logits}, grouped_data_no_aggregate(data))["test"]["primary"]
    assert per_window != pytest.approx(expected)  # aggregation changed the score


def mir_r2(y, p):
    return 1 - ((y - p) ** 2).sum() / ((y - y.mean()) ** 2).sum()


def grouped_data_no_aggregate(data):
    split = data.splits["test"]
    plain = SplitArrays(split.x, split.y, split.groups, aggregate=False)
    return ProbeData(data.task, data.type, {s: plain for s in ("train", "valid", "test")}, data.num_outputs)


def write_emomusic(root, n: int = 10):
    info = ["song_id,file_name,Artist,Song title,start of the segment (min.sec),end of the segment (min.sec),"
            "Genre,Mediaeval 2013 set"]
    static = ["song_id, mean_arousal, std_arousal, mean_valence, std_valence"]
    for i in range(1, n + 1):
        info.append(f"{i},{i}.mp3,Artist {'ABCDE'[i % 5]},t,0,45,Rock,{'evaluation' if i > n - 3 else 'development'}")
        static.append(f"{i}, {i / 10:.1f}, 1, {-i / 5:.1f}, 1")
        touch_audio(root / "clips_45seconds" / f"{i}.mp3")
    (root / "songs_info.csv").write_text("\n".join(info) + "\n")
    (root / "static_annotations.csv").write_text("\n".join(static) + "\n")


def test_ma2023_emomusic_rule_windows_items_and_song_means(tmp_path):
    """Emomusic under ma2023's text reading (5-s windows; the default is MARBLE's 30 s): windows are the items,
    valid/test outputs are averaged per song."""
    write_emomusic(tmp_path)
    rules = get_protocol("ma2023").rules_for("emomusic", "regression")
    task = load_probe_dataset("emomusic", root=tmp_path, **{**rules, "window_seconds": 5.0, "hop_seconds": 5.0})
    assert (task.pooling, task.window_seconds, task.aggregate) == ("window", 5.0, "mean")
    windows = 9  # a 45-s clip in 5-s windows
    arrays = [np.full((windows, 1, 2), i, np.float32) for i, _ in enumerate(task.items)]
    data = assemble(task, FeatureSet(arrays, ["s0"], 50.0, False), "cpu")
    test = data.splits["test"]
    assert test.aggregate and test.num_items == windows * len(task.split_items("test")) and test.num_groups == 3
    song_y = test.group_targets()
    assert torch.equal(test.y.view(3, windows, 2)[:, 0], song_y)
    outputs = torch.randn(1, test.num_items, 2)
    pooled, _ = data.type.songs(outputs, test)
    torch.testing.assert_close(pooled[0], outputs[0].view(3, windows, 2).mean(1))


def test_mtg_long_tracks_are_the_mean_of_30s_window_embeddings():
    from music_ssl.probe.features.source import mean_windows

    frames = np.arange(2 * 95 * 50 * 3, dtype=np.float32).reshape(2, 95 * 50, 3)  # (S, T, C): a 95-s track, 50 Hz
    windows = mean_windows(frames, 50.0, 30.0, 30.0)  # three full 30-s windows; the 5-s tail is dropped
    hand = np.stack([frames[:, a:a + 1500].mean(1) for a in (0, 1500, 3000)])
    np.testing.assert_allclose(windows, hand)
    task = ProbeDataset("mtg", "multilabel", [Item("a", ["x"], s) for s in ("train", "valid", "test")], classes=["x"])
    data = assemble(task, FeatureSet([windows] * 3, ["s0", "s1"], 50.0, False), "cpu")
    np.testing.assert_allclose(data.splits["test"].x[:, 0].numpy(), hand.mean(0), rtol=1e-6)


# ---------------------------------------------------------------- beat tracking

def test_beat_f_measure_20_and_70_ms_are_mir_eval_values_and_pooling_is_stated():
    reference = np.array([1.0, 1.5, 2.0, 2.5])
    estimated = np.array([1.01, 1.55, 2.0, 2.6])  # errors 10, 50, 0, 100 ms
    assert beat_f_measure(reference, estimated, 0.02) == pytest.approx(0.5)  # 2 of 4 within 20 ms
    assert beat_f_measure(reference, estimated, 0.07) == pytest.approx(0.75)  # 3 of 4 within 70 ms
    for window in (0.02, 0.07):
        assert beat_f_measure(reference, estimated, window) == pytest.approx(
            mir_eval.beat.f_measure(reference, estimated, f_measure_threshold=window))
    other = (np.array([1.0, 2.0]), np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]))  # F = 2 * 1 * 1/3 / (4/3) = 0.5
    pairs = [(reference, estimated), other]
    assert beat_f_measure_files(pairs, 0.07, "per_file") == pytest.approx((0.75 + 0.5) / 2)
    pooled = 2 * (5 / 10) * (5 / 6) / (5 / 10 + 5 / 6)  # 5 matches of 10 estimates and 6 references
    assert beat_f_measure_files(pairs, 0.07, "pooled") == pytest.approx(pooled)


def test_adjacent_frames_are_beats_under_ma2023():
    target = beat_targets(np.array([0.1]), 20, 50.0, neighbour_weight=1.0)  # beat at frame 5
    assert target[[4, 5, 6]].tolist() == [1, 1, 1] and target.sum() == 3
    assert TASK_TYPES["beat"].select_on_library  # probe configs chosen on the valid F-measure


def test_beat_configs_are_selected_on_valid_f_measure(tmp_path):
    from test_probe_train import write_demo_like_corpus

    write_demo_like_corpus(tmp_path / "corpus", n=10)
    task = {"name": "csv", "path": str(tmp_path / "corpus" / "beat.csv"), "type": "beat", "beat_tolerance": 0.02,
            "beat_average": "per_file"}
    summary = run_probe({"source": {"kind": "mfcc"}, "device": "cpu", "progress": False, "cache_dir": None,
                         "out_dir": str(tmp_path / "out"), "tasks": [task],
                         "protocol": {"name": "marble", "train": {"max_epochs": 4}}})  # 6 learning rates
    (row,) = summary["selected"]
    selection = [p["valid_primary_selection"] for p in summary["probes"]]
    assert len(selection) == 6 and row["valid_mean"] == pytest.approx(max(selection))  # the valid F, not frame AP
    info = summary["tasks"]["beat"]
    assert (info["beat_tolerance"], info["beat_average"]) == (0.02, "per_file")  # the entry beats the preset


# ---------------------------------------------------------------- splits and labels

def test_vocalset_technique_by_singer_9_6_5_and_singer_id_12_8_5_within_singers(tmp_path):
    for singer in SINGERS:
        for take in range(25):
            touch_audio(tmp_path / "FULL" / singer / "scales" / TECHNIQUES[take % 10] / f"{singer}_{take}.wav", 0.01)
    technique = load_probe_dataset("vocalset_technique", root=tmp_path)
    singers = {s: {i.path.parts[-4] for i in technique.split_items(s)} for s in ("train", "valid", "test")}
    assert [len(singers[s]) for s in ("train", "valid", "test")] == [9, 6, 5]
    assert not (singers["train"] & singers["valid"] or singers["train"] & singers["test"]
                or singers["valid"] & singers["test"])
    assert singers["test"] == {"f2", "f8", "m3", "m5", "m10"}
    ident = load_probe_dataset("vocalset_singer", root=tmp_path)
    for singer in SINGERS:
        counts = [sum(i.label == singer for i in ident.split_items(s)) for s in ("train", "valid", "test")]
        assert counts == [12, 8, 5], singer  # 12:8:5 inside every singer: all 20 singers in every split


def test_bad_key_label_names_file_and_row(tmp_path):
    paths = [touch_audio(tmp_path / f"a{i}.wav") for i in range(3)]
    (tmp_path / "keys.csv").write_text("path,label,split\n" + "\n".join(
        f"{p.name},{label},{split}" for p, label, split in zip(paths, ("C major", "H major", "A minor"),
                                                                ("train", "valid", "test"))) + "\n")
    with pytest.raises(ProbeDataError, match=r"keys\.csv:3: key 'H major' is not"):
        load_probe_dataset("csv", path=str(tmp_path / "keys.csv"), type="key")
    gs = tmp_path / "GS"
    (gs / "giantsteps-mtg-key-dataset" / "annotations").mkdir(parents=True)
    (gs / "giantsteps-mtg-key-dataset" / "annotations" / "annotations.txt").write_text(
        "ID\tMANUAL KEY\tC\n1\tA minor\t2\n2\tA mixolydian\t2\n")
    (gs / "giantsteps-mtg-key-dataset" / "annotations" / "beatport_metadata.txt").write_text(
        "ID\tARTIST\n1\tX\n2\tY\n")
    with pytest.raises(ProbeDataError, match=r"annotations\.txt:3: key 'A mixolydian'"):
        load_probe_dataset("giantsteps_key", root=gs)


# ---------------------------------------------------------------- Jukebox features in JukeMIR's layout

def write_gtzan(root, genres=("blues", "rock"), per_genre: int = 3) -> list:
    stems = []
    for genre in genres:
        for i in range(per_genre):
            touch_audio(root / "genres" / genre / f"{genre}.{i:05d}.wav")
            stems.append(f"{genre}/{genre}.{i:05d}.wav")
    for k, split in enumerate(("train", "valid", "test")):
        (root / f"{split}_filtered.txt").write_text("\n".join(stems[k::3]) + "\n")
    return stems


def test_fake_jukemir_representation_tree_loads_by_uid(tmp_path):
    stems = write_gtzan(tmp_path / "GTZAN")
    features = tmp_path / "representations" / "gtzan_ff" / "jukebox"
    features.mkdir(parents=True)
    vectors = {}
    for k, entry in enumerate(stems):
        uid = hashlib.sha256(entry.split("/")[1][:-len(".wav")].encode()).hexdigest()  # JukeMIR's GTZAN uid
        vectors[entry.split("/")[1][:-4]] = np.full(16, k, np.float32)
        np.save(features / f"{uid}.npy", vectors[entry.split("/")[1][:-4]])
    task = load_probe_dataset("gtzan_genre", root=tmp_path / "GTZAN")
    source = JukeboxSource(features, dim=16)
    source.bind_items(task.items)
    arrays, names, _ = source.extract([i.path for i in task.items], "clip", None, None)
    for item, array in zip(task.items, arrays):
        np.testing.assert_array_equal(array[0, 0], vectors[item.path.stem])
    stem_named = JukeboxSource(features, dim=16, naming="stem")
    with pytest.raises(MissingDataError, match=r"expected e\.g\. blues\.00000\.npy"):
        stem_named.extract([i.path for i in task.items], "clip", None, None)
    (features / f"{task.items[0].uid}.npy").unlink()
    with pytest.raises(MissingDataError, match=rf"1 of 6 clips .* expected e\.g\. {task.items[0].uid}\.npy"):
        source.extract([i.path for i in task.items], "clip", None, None)


def test_jukemir_uids_of_mtt_emomusic_and_giantsteps_windows(tmp_path):
    write_emomusic(tmp_path / "EMO")
    assert [i.uid for i in load_probe_dataset("emomusic", root=tmp_path / "EMO").items][:2] == ["0001", "0002"]
    mtt = tmp_path / "MTT"
    rows = ["clip_id\tguitar\tmp3_path"] + [f"{i}\t1\t{d}/clip{i}.mp3" for i, d in ((2, "0"), (6, "c"), (10, "d"))]
    (mtt.mkdir() or mtt / "annotations_final.csv").write_text("\n".join(rows) + "\n")
    for i, d in ((2, "0"), (6, "c"), (10, "d")):
        touch_audio(mtt / d / f"clip{i}.mp3")
    assert [i.uid for i in load_probe_dataset("mtt_top50", root=mtt).items] == ["00002", "00006", "00010"]
    folder = tmp_path / "gs_jukebox"
    folder.mkdir()
    for k in range(3):  # three full 30-s windows of track 123
        np.save(folder / f"0000123-{k}.npy", np.full(4, k, np.float32))
    source = JukeboxSource(folder, dim=4)
    source.bind_items([Item(tmp_path / "123.LOFI.mp3", "A minor", "test", "0000123")])
    (arrays,), _, _ = source.extract([tmp_path / "123.LOFI.mp3"], "window", 30.0, 30.0)
    assert arrays[:, 0, 0].tolist() == [0, 1, 2]


# ---------------------------------------------------------------- published numbers in the report

def jukebox_gtzan_run(tmp_path, out: str, reference=None, reference_table=None) -> dict:
    stems = write_gtzan(tmp_path / "GTZAN", per_genre=6)
    features = tmp_path / "jb"
    features.mkdir(exist_ok=True)
    for entry in stems:
        stem = entry.split("/")[1][:-4]
        vector = np.random.default_rng(len(stem)).standard_normal(8).astype(np.float32)
        vector[0] += 3 * stem.startswith("rock")
        np.save(features / f"{hashlib.sha256(stem.encode()).hexdigest()}.npy", vector)
    source = {"kind": "jukebox", "path": str(features), "dim": 8, "reference": reference,
              "reference_table": reference_table}
    tasks = [{"name": "gtzan_genre", "root": str(tmp_path / "GTZAN")}]
    return run_probe({"name": out, "source": source, "tasks": tasks,
                      "protocol": {"name": "marble", "train": {"max_epochs": 3}}, "cache_dir": None,
                      "out_dir": str(tmp_path / out), "progress": False, "device": "cpu"})


def test_report_has_paper_column_only_with_a_reference(tmp_path):
    assert "jukemir/jukebox" in references() and "ma2023/music2vec_base" in references()
    assert lookup("ma2023/music2vec_base", "emomusic", "r2")["value"] == pytest.approx((61.9 + 38.5) / 2)
    with_ref = jukebox_gtzan_run(tmp_path, "with", "jukemir/jukebox")
    md = (tmp_path / "with" / "results.md").read_text()
    assert "| test | paper | valid |" in md and "| 79.7 |" in md and "Castellon et al. 2021 (JukeMIR), Table 3" in md
    assert with_ref["selected"][0]["paper"] == 79.7
    assert "paper" in (tmp_path / "with" / "results.csv").read_text().splitlines()[0]
    jukebox_gtzan_run(tmp_path, "without")
    assert "paper" not in (tmp_path / "without" / "results.md").read_text()
    with pytest.raises(ProbeConfigError, match="not a published model"):
        jukebox_gtzan_run(tmp_path, "bad", "jukemir/jukebox-5b")


def test_a_user_reference_table_puts_numbers_we_do_not_ship_beside_ours(tmp_path):
    header = "reference,model,protocol,task,metric,value,paper,table,note\n"
    table = tmp_path / "marble_mert.csv"
    table.write_text(header + "marble2023/mert_v1_95m,mert_v1_95m,marble,gtzan_genre,accuracy,12.3,"
                              "Yuan et al. 2023 (MARBLE),Table 3,copied by the user\n")
    run = jukebox_gtzan_run(tmp_path, "user", "marble2023/mert_v1_95m", str(table))
    assert run["selected"][0]["paper"] == 12.3
    assert "Yuan et al. 2023 (MARBLE), Table 3" in (tmp_path / "user" / "results.md").read_text()
    assert "marble2023/mert_v1_95m" not in references()  # the user's rows are not shipped

    bad = tmp_path / "bad.csv"
    bad.write_text(header + "marble2023/mert_v1_95m,m,marble,gtzan_genre,accuracy,79.3 ±0.4,MARBLE,Table 3,\n")
    with pytest.raises(ProbeConfigError, match=f"{bad}:2: value '79.3 ±0.4' is not a number"):
        jukebox_gtzan_run(tmp_path, "bad", "marble2023/mert_v1_95m", str(bad))
    clash = tmp_path / "clash.csv"
    clash.write_text(header + "jukemir/jukebox,jukebox,jukemir,gtzan_genre,accuracy,1.0,x,y,\n")
    with pytest.raises(ProbeConfigError, match="jukemir/jukebox is already shipped"):
        jukebox_gtzan_run(tmp_path, "clash", "jukemir/jukebox", str(clash))
    no_column = tmp_path / "no_column.csv"
    no_column.write_text("reference,task,value\nmarble2023/mert_v1_95m,gtzan_genre,79.3\n")
    with pytest.raises(ProbeConfigError, match="no column model, protocol, metric, paper, table, note"):
        jukebox_gtzan_run(tmp_path, "no_column", "marble2023/mert_v1_95m", str(no_column))


def test_published_tables_cover_the_papers():
    assert lookup("jukemir/mfcc", "giantsteps_key", "score")["value"] == 14.6  # JukeMIR Table 3
    assert lookup("li2022/music2vec_prob70", "mtt_top50", "roc_auc")["value"] == 87.2  # MAP-Music2Vec Table 1
    assert lookup("ma2023/music_hubert_base", "gtzan_beat", "f_measure")["value"] == 88.6  # Ma et al. Table 1
    assert lookup("ma2023/music2vec_crop5", "gtzan_genre", "accuracy")["value"] == 76.6  # Ma et al. Table 3
    assert lookup("ma2023/music_hubert_k500_mfcc60", "nsynth_pitch", "accuracy")["value"] == 79.0  # Table 2
    tasks = {t for t in ("mtt_top50", "giantsteps_key", "gtzan_genre", "emomusic", "nsynth_instrument", "nsynth_pitch",
                         "vocalset_technique", "vocalset_singer", "gtzan_beat", "mtg_instrument", "mtg_moodtheme",
                         "mtg_genre", "mtg_top50") if lookup("ma2023/music2vec_base", t, "accuracy")
             or lookup("ma2023/music2vec_base", t, "roc_auc") or lookup("ma2023/music2vec_base", t, "r2")
             or lookup("ma2023/music2vec_base", t, "score") or lookup("ma2023/music2vec_base", t, "f_measure")}
    assert len(tasks) == 13


# ---------------------------------------------------------------- configs

def test_paper_configs_run_all_13_tasks_and_prob70_ablation_exists():
    from omegaconf import OmegaConf

    from music_ssl.core.resources import PROBE_CONFIG_DIR

    for name in ("music2vec", "music_hubert"):
        cfg = OmegaConf.load(PROBE_CONFIG_DIR / f"{name}.yaml")
        assert cfg.protocol.name == "ma2023" and len(cfg.tasks) == 13 and len({t.name for t in cfg.tasks}) == 13
        assert not any("max_train_items" in t for t in cfg.tasks)  # no subsample
        assert cfg.source.reference in references()
    prob70 = OmegaConf.load(PROBE_CONFIG_DIR.parent / "pretrain" / "ablation" / "prob70.yaml")
    assert prob70.model.mask_prob == 0.70


@pytest.mark.parametrize("key, value, allowed", [
    ("source.kind", "wav2vec", "[checkpoint, hf, jukebox, chroma, mfcc]"),
    ("source.naming", "uid", "[jukemir, stem]"),
    ("protocol.name", "map", "[ma2023, mulap, marble, jukemir]"),
])
def test_unknown_choice_is_rejected_when_the_config_is_composed(key, value, allowed, tmp_path, monkeypatch, capsys):
    from hydra.errors import ConfigCompositionException

    from test_bad_input_labels import cli_error

    from music_ssl.cli.probe import cli, main
    from music_ssl.core.resources import PROBE_CONFIG_DIR
    from music_ssl.probe.config import resolve_config

    reason = f"Invalid value '{value}', expected one of {allowed}"
    with pytest.raises(ConfigCompositionException) as info:  # hydra, before anything runs
        main(str(PROBE_CONFIG_DIR), "demo", ["data_root=x", f"{key}={value}"])
    assert str(info.value.__cause__).splitlines()[0] == reason
    line = cli_error(monkeypatch, capsys, cli, "music-ssl-probe", "--config-name", "demo", "data_root=x",
                     f"{key}={value}")
    assert line == f"error: Error merging override {key}={value}: {reason}"
    section, name = key.split(".")
    (tmp_path / "bad.yaml").write_text(f"defaults: [probe_schema, _self_]\ndata_root: x\n{section}:\n  {name}: {value}\n")
    line = cli_error(monkeypatch, capsys, cli, "music-ssl-probe", "--config-dir", tmp_path, "--config-name", "bad")
    assert line.startswith("error: In 'bad': ") and line.endswith(f"{reason} (key {key})")  # a YAML value: one line
    with pytest.raises(ProbeConfigError, match="^" + re.escape(f"probe config: {key}: {reason};")):
        resolve_config({"data_root": "x", section: {name: value}})  # the Python API: the same schema


def test_shipped_probe_configs_compose_and_choices_resolve_to_plain_strings():
    from hydra import compose, initialize_config_dir

    from music_ssl.core.resources import PROBE_CONFIG_DIR
    from music_ssl.probe.config import register_schema, resolve_config

    register_schema()
    for path in sorted(PROBE_CONFIG_DIR.glob("*.yaml")):
        with initialize_config_dir(config_dir=str(PROBE_CONFIG_DIR), version_base=None):
            cfg = compose(config_name=path.stem, overrides=["data_root=/data", "source.kind=mfcc", "tasks=[x]"])
        out = resolve_config(cfg)
        for value in (out["source"]["kind"], out["source"]["naming"], out["protocol"]["name"]):
            assert type(value) is str  # JSON-able: hashed into config_hash and written to results.json
        json.dumps(out)


@pytest.mark.slow  # trains the session's tiny checkpoints when no other test did
def test_raw_cnn_output_is_a_selectable_feature(tiny_checkpoints, tmp_path):
    from conftest import write_clips

    from music_ssl.checkpoint import FrozenEncoder
    from music_ssl.probe.features import build_source

    clips = write_clips(tmp_path / "clips", 2, 1.0)
    source = build_source("checkpoint", tiny_checkpoints["music2vec"], device="cpu", cnn=True)
    hidden = build_source("checkpoint", tiny_checkpoints["music2vec"], device="cpu")
    arrays, names, rate = source.extract(clips, "frames", None, None)
    states, state_names, _ = hidden.extract(clips, "frames", None, None)
    assert names == ["cnn"] and state_names[0] == "input" and rate == 50.0
    assert arrays[0].shape[0] == states[0].shape[0] and arrays[0].shape[1] == 1  # same frames, one state
    encoder = FrozenEncoder.from_checkpoint(tiny_checkpoints["music2vec"], device="cpu")
    import soundfile as sf

    audio = torch.from_numpy(sf.read(clips[0], dtype="float32")[0])[None]
    if encoder.normalize:  # the waveform layer norm the encoder applies before its conv stack
        audio = torch.nn.functional.layer_norm(audio, audio.shape[1:])
    with torch.no_grad():
        raw = encoder.model.feature_extractor(audio).transpose(1, 2)[0].numpy()  # (T, C_conv), before projection
    np.testing.assert_allclose(arrays[0][:, 0].astype(np.float32), raw, atol=2e-2, rtol=1e-2)  # stored as float16
    assert source.identity() != hidden.identity()  # never shares a cache entry with the hidden states
    with pytest.raises(ProbeConfigError, match="source.cnn=true needs source.kind=checkpoint"):
        build_source("mfcc", cnn=True)
    json.dumps(source.identity())
