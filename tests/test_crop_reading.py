"""Crop reading (``task.crop_reading``): only each crop is decoded and only its labels parsed, at offsets drawn as
fairseq draws them (uniform over every valid start) from (seed, epoch, index); frame t of a crop keeps the label
the whole-file path gives it; a file that decodes short fails loudly. The trainer-level equivalence with stock
fairseq is in ``test_equivalence.py::test_crop_reading_changes_only_where_the_offsets_come_from``."""
import numpy as np
import pytest
import soundfile as sf
import torch
from fairseq.data import Dictionary
from fairseq.data.audio.hubert_dataset import HubertDataset
from fairseq.data.audio.raw_audio_dataset import FileAudioDataset
from fairseq.tasks.hubert_pretraining import LabelEncoder

from conftest import SAMPLE_RATE, write_clips, write_manifest
from music_ssl.data.crop import crop_start
from music_ssl.data.crop_reading_audio_dataset import CropReadingAudioDataset
from music_ssl.data.crop_reading_hubert_dataset import CropReadingHubertDataset
from music_ssl.data.errors import AudioError, MissingAudioError

K = 5000  # label of frame t is t % K: a slice's labels say which frames it holds


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """6 clips of 1.3–3.1 s (lengths not multiples of a label frame) and their manifest."""
    root = tmp_path_factory.mktemp("crop_reading")
    paths = []
    for i, seconds in enumerate([1.3, 2.05, 3.1, 2.5, 1.77, 2.9]):
        paths += write_clips(root / "audio" / f"c{i}", 1, seconds, seed=i)
    write_manifest(root / "train.tsv", root / "audio", paths)
    return root


def frame_labels(root, rate: float) -> str:
    """``train_{rate}.km``: frame t of every row labelled ``t % K`` (ceil(seconds × rate) frames), and the dict."""
    path = root / f"train_{rate:g}.km"
    sizes = [int(line.split("\t")[1]) for line in (root / "train.tsv").read_text().splitlines()[1:]]
    path.write_text("".join(" ".join(str(t % K) for t in range(int(np.ceil(n / SAMPLE_RATE * rate)))) + "\n"
                            for n in sizes))
    (root / "dict.km.txt").write_text("".join(f"{i} 1\n" for i in range(K)))
    return str(path)


def hubert_pair(root, rate: float, crop: int, pad_audio: bool = False, seed: int = 1):
    """(ours, stock) MusicHuBERT datasets over the same rows and labels."""
    labels = frame_labels(root, rate)
    dictionary = Dictionary.load(str(root / "dict.km.txt"))
    common = dict(sample_rate=SAMPLE_RATE, label_paths=[labels], label_rates=float(rate),
                  pad_list=[dictionary.pad()], eos_list=[dictionary.eos()], max_sample_size=crop,
                  pad_audio=pad_audio, random_crop=True)
    ours = CropReadingHubertDataset(str(root / "train.tsv"), dictionaries=[dictionary], seed=seed, **common)
    stock = HubertDataset(str(root / "train.tsv"), label_processors=[LabelEncoder(dictionary)], store_labels=False,
                          **common)
    return ours, stock, dictionary


def offsets_for(dataset, ids, target: int, seed: int = 1, epoch: int = 1) -> list:
    """The offsets crop reading draws for the clips of one batch cropped to ``target`` samples."""
    return [crop_start(seed, epoch, i, int(dataset.sizes[i]) - target) for i in ids if dataset.sizes[i] > target]


def stock_collate(monkeypatch, stock, ids, offsets):
    """fairseq's collater on whole files, its ``np.random.randint`` returning ``offsets`` in order."""
    queue = list(offsets)
    monkeypatch.setattr(np.random, "randint", lambda low, high: queue.pop(0))
    batch = stock.collater([stock[i] for i in ids])
    monkeypatch.undo()
    assert not queue
    return batch


@pytest.mark.parametrize("rate", [50.0, 100.0])
@pytest.mark.parametrize("pad_audio", [False, True], ids=["crop", "pad"])
def test_hubert_crops_and_labels_equal_the_whole_file_path(clips, monkeypatch, rate, pad_audio):
    """Same offsets → same audio, padding, labels, lengths and token counts as fairseq's HubertDataset; the labels
    of a crop starting at sample s are frames round(s × rate / 16000) on (offsets between frames included)."""
    crop = 24000
    ours, stock, dictionary = hubert_pair(clips, rate, crop, pad_audio)
    between = 0
    for ids in ([0, 1, 2], [3, 4, 5], [2, 3, 5], [1, 4]):
        sizes = [int(ours.sizes[i]) for i in ids]
        target = min(max(sizes) if pad_audio else min(sizes), crop)
        offsets = offsets_for(ours, ids, target)
        between += sum(o % (SAMPLE_RATE / rate) != 0 for o in offsets)
        a, b = ours.collater([ours[i] for i in ids]), stock_collate(monkeypatch, stock, ids, offsets)
        for key in ("source", "padding_mask"):
            assert torch.equal(a["net_input"][key], b["net_input"][key]), (ids, key)
        assert a["target_list"][0].dtype == b["target_list"][0].dtype == torch.int32
        assert torch.equal(a["target_list"][0], b["target_list"][0]) and a["ntokens_list"] == b["ntokens_list"]
        assert torch.equal(a["target_lengths_list"][0], b["target_lengths_list"][0])
        starts = iter(offsets)
        for row, i in enumerate(ids):  # frame t of the crop holds label (first frame + t) % K
            start = next(starts) if ours.sizes[i] > target else 0
            first = int(round(start * rate / SAMPLE_RATE))
            n = int(a["target_lengths_list"][0][row])
            expected = [dictionary.index(str((first + t) % K)) for t in range(n)]
            assert a["target_list"][0][row, :n].tolist() == expected
    assert between > 0


@pytest.mark.parametrize("pad", [False, True], ids=["crop", "pad"])
def test_music2vec_crops_equal_the_whole_file_path(clips, monkeypatch, pad):
    crop = 24000
    ours = CropReadingAudioDataset(str(clips / "train.tsv"), SAMPLE_RATE, max_sample_size=crop, pad=pad)
    stock = FileAudioDataset(str(clips / "train.tsv"), SAMPLE_RATE, max_sample_size=crop, pad=pad)
    for ids in ([0, 1, 2], [3, 4, 5], [2, 5]):
        sizes = [int(ours.sizes[i]) for i in ids]
        target = min(max(sizes) if pad else min(sizes), crop)
        a = ours.collater([ours[i] for i in ids])
        b = stock_collate(monkeypatch, stock, ids, offsets_for(ours, ids, target))
        assert a["net_input"]["source"].shape == (len(ids), target)
        for key in ("source", "padding_mask"):
            assert torch.equal(a["net_input"].get(key), b["net_input"].get(key)) if pad else \
                torch.equal(a["net_input"]["source"], b["net_input"]["source"])
        assert torch.equal(a["id"], b["id"])


def test_normalize_standardises_each_crop(clips):
    ours = CropReadingAudioDataset(str(clips / "train.tsv"), SAMPLE_RATE, max_sample_size=16000, normalize=True)
    source = ours.collater([ours[i] for i in range(6)])["net_input"]["source"]  # (6, 16000)
    assert torch.allclose(source.mean(1), torch.zeros(6), atol=1e-5)
    assert torch.allclose(source.var(1, unbiased=False), torch.ones(6), atol=1e-3)


def test_offsets_are_uniform_over_every_start_and_seeded():
    slack = 9
    draws = np.array([crop_start(7, 1, i, slack) for i in range(20000)])
    counts = np.bincount(draws, minlength=slack + 1)
    assert len(counts) == slack + 1 and np.all(np.abs(counts - 2000) < 200), counts
    assert [crop_start(7, 1, i, 10**6) for i in range(5)] == [crop_start(7, 1, i, 10**6) for i in range(5)]
    assert crop_start(7, 1, 3, 10**6) != crop_start(7, 2, 3, 10**6) != crop_start(8, 2, 3, 10**6)
    assert crop_start(7, 1, 3, 0) == 0


def loader_batches(dataset, workers: int, epochs=(1, 2)) -> list:
    """Batches of two epochs through one DataLoader whose persistent workers outlive an epoch (as fairseq's)."""
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=[[0, 1, 2], [3, 4, 5]], collate_fn=dataset.collater,
                                         num_workers=workers, persistent_workers=workers > 0)
    out = []
    for epoch in epochs:
        dataset.set_epoch(epoch)
        out.append([b["net_input"]["source"] for b in loader])
    return out


def test_the_epoch_reaches_persistent_workers_and_workers_do_not_change_crops(clips):
    dataset = CropReadingAudioDataset(str(clips / "train.tsv"), SAMPLE_RATE, max_sample_size=8000, seed=3)
    in_process, in_worker = loader_batches(dataset, 0), loader_batches(dataset, 1)
    for a, b in zip(in_process, in_worker):
        assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(in_worker[0][0], in_worker[1][0]), "epoch 2 drew the crops of epoch 1"


def test_a_file_that_decodes_short_fails_naming_it(tmp_path):
    audio = tmp_path / "audio"
    paths = write_clips(audio, 2, 1.0)
    tsv = write_manifest(tmp_path / "train.tsv", audio, paths)
    tsv.write_text(tsv.read_text().replace("\t16000\n", "\t48000\n", 1))  # the file lost 2 s after the manifest
    dataset = CropReadingAudioDataset(str(tsv), SAMPLE_RATE, max_sample_size=40000, pad=True)
    with pytest.raises(AudioError) as err:
        dataset.collater([dataset[0], dataset[1]])
    message = str(err.value)
    assert str(paths[0]) in message and "music-ssl-manifest audit" in message and "48000" in message
    assert "\n" not in message and err.value.kind == "truncated"
    paths[1].unlink()
    with pytest.raises(MissingAudioError, match=str(paths[1])):
        dataset.collater([dataset[1]])


def test_nan_samples_in_a_crop_fail_naming_the_file(tmp_path):
    audio = np.zeros(16000, np.float32)
    audio[12345] = np.nan
    (tmp_path / "a").mkdir()
    sf.write(tmp_path / "a" / "x.wav", audio, SAMPLE_RATE, subtype="FLOAT")
    tsv = write_manifest(tmp_path / "train.tsv", tmp_path / "a", [tmp_path / "a" / "x.wav"])
    dataset = CropReadingAudioDataset(str(tsv), SAMPLE_RATE)
    with pytest.raises(AudioError, match="x.wav.*non-finite"):
        dataset.collater([dataset[0]])


def test_mp3_crops_equal_the_full_decode(tmp_path):
    """A low-bitrate MP3 (whose first frame after a plain seek often decodes wrong, tests/test_mp3.py): every crop
    equals the same window of a full decode."""
    (tmp_path / "a").mkdir()
    path = tmp_path / "a" / "low.mp3"
    sf.write(path, np.asarray(torch.randn(16000 * 12) * 0.1), SAMPLE_RATE, format="MP3", bitrate_mode="CONSTANT",
             compression_level=0.9)
    full = sf.read(path, dtype="float32")[0]
    tsv = write_manifest(tmp_path / "train.tsv", tmp_path / "a", [path])
    dataset = CropReadingAudioDataset(str(tsv), SAMPLE_RATE, max_sample_size=4000)
    for epoch in range(1, 31):
        dataset.set_epoch(epoch)
        crop = dataset.collater([dataset[0]])["net_input"]["source"][0].numpy()
        start = crop_start(1, epoch, 0, len(full) - 4000)
        assert np.allclose(crop, full[start:start + 4000], atol=1e-6), start


@pytest.mark.parametrize("separator", [" ", "  ", "\t", " \t "])
def test_label_slices_read_only_what_they_need_whatever_the_spacing(tmp_path, separator):
    """read_label_slice reads a prefix sized for single-space ids and the whole line when the ids do not fit."""
    from music_ssl.data.label_files import line_index, read_label_slice

    ids = np.random.default_rng(0).integers(0, K, (2, 300))
    ids[1, :5] = [7, 12, 4999, 0, 1]  # narrow ids first: the prefix ends inside a later, wider one
    path = tmp_path / "train.km"
    path.write_text("".join(separator.join(map(str, row)) + "\n" for row in ids))
    offsets, counts = line_index(path)
    assert counts.tolist() == [300, 300] and offsets[-1] == path.stat().st_size
    for line in (0, 1):
        for first, stop in [(0, 1), (0, 3), (0, 300), (17, 40), (299, 300), (250, 300)]:
            got = read_label_slice(path, line, (offsets[line], offsets[line + 1]), first, stop, K)
            assert got.tolist() == ids[line, first:stop].tolist(), (line, first, stop)


def test_libmpg123_seek_notes_are_kept_out_of_the_log_in_workers(tmp_path, capfd):
    """libmpg123 writes "part2_3_length … too large" to stderr after many seeks into a low-bitrate MP3 (the crop is
    still exact: test_mp3_crops_equal_the_full_decode); inside DataLoader workers those lines are silenced."""
    (tmp_path / "a").mkdir()
    path = tmp_path / "a" / "low.mp3"
    sf.write(path, np.asarray(torch.randn(16000 * 12) * 0.1), SAMPLE_RATE, format="MP3", bitrate_mode="CONSTANT",
             compression_level=0.9)
    tsv = write_manifest(tmp_path / "train.tsv", tmp_path / "a", [path] * 40)  # 40 rows: 40 crop offsets
    dataset = CropReadingAudioDataset(str(tsv), SAMPLE_RATE, max_sample_size=4000)
    batches = [[i] for i in range(40)]
    for workers in (0, 1):
        loader = torch.utils.data.DataLoader(dataset, batch_sampler=batches, collate_fn=dataset.collater,
                                             num_workers=workers)
        dataset.set_epoch(workers + 1)
        assert len(list(loader)) == 40
        notes = capfd.readouterr().err.count("part2_3_length")
        assert (notes > 0) if workers == 0 else (notes == 0), (workers, notes)


def test_data2vec2_block_masks_are_drawn_from_seed_epoch_and_clip(clips):
    """music2vec2 (task.precompute_mask_config): a clip's block masks, like its crop, are a function of (seed,
    epoch, clip index) alone — the same whatever torch's global generator holds, the batch it is in, or a DataLoader
    worker — so a resumed run masks as the uninterrupted one; another epoch or seed gives other masks, and torch's
    global generator is left as it was."""
    def masked(seed=1, epoch=1, batch=(0, 1, 2)):
        dataset = CropReadingAudioDataset(str(clips / "train.tsv"), SAMPLE_RATE, max_sample_size=8000, seed=seed,
                                          compute_mask=True, mask_prob=0.5, mask_length=5, mask_prob_adjust=0.05,
                                          inverse_mask=False, clone_batch=2, expand_adjacent=False, mask_dropout=0,
                                          non_overlapping=False,
                                          feature_encoder_spec="[(64,10,5)] + [(64,3,2)] * 4 + [(64,2,2)] * 2")
        dataset.set_epoch(epoch)
        return dataset.collater([dataset[i] for i in batch])["net_input"]["precomputed_mask"]  # (B x clones, T)

    torch.manual_seed(0)
    first = masked()
    state = torch.random.get_rng_state()
    torch.manual_seed(12345)
    again = masked(batch=(2, 0, 1))
    assert first.shape == (3 * 2, 24) and 0.3 < first.float().mean() < 0.7
    assert torch.equal(again[2:], first[:4]) and torch.equal(again[:2], first[4:]), "clip 2's masks moved with it"
    torch.manual_seed(0)
    masked()
    assert torch.equal(torch.random.get_rng_state(), state), "torch's global generator is left as it was"
    assert not torch.equal(masked(epoch=2), first) and not torch.equal(masked(seed=2), first)
