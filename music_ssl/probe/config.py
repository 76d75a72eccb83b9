"""The probe run config: a structured (dataclass) schema, so every key has a default, a type and help.

``config/probe/*.yaml`` start with ``defaults: [probe_schema, _self_]`` and list only what they change;
``music_ssl/cli/probe.py`` registers the schema with hydra's ConfigStore (:func:`register_schema`). Unknown keys,
wrong types and values outside a fixed set of choices (``source.kind``, ``source.naming``, ``protocol.name``:
fairseq's ``ChoiceEnum``) fail when the config is composed, with the key and the allowed values.
:func:`resolve_config` applies the same schema to a plain dict (the Python API).
"""
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from fairseq.dataclass import ChoiceEnum
from omegaconf import MISSING, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .errors import ProbeConfigError
from .protocols import PROTOCOLS, SUM_STATES

SCHEMA_NAME = "probe_schema"
SOURCE_KINDS = ("checkpoint", "hf", "jukebox", "chroma", "mfcc")  # probe.features.build_source
NAMINGS = ("jukemir", "stem")  # probe.features.jukebox_source
SOURCE_KIND_CHOICES = ChoiceEnum(list(SOURCE_KINDS))
NAMING_CHOICES = ChoiceEnum(list(NAMINGS))
PROTOCOL_CHOICES = ChoiceEnum(list(PROTOCOLS))
SUM_STATES_CHOICES = ChoiceEnum(list(SUM_STATES))


@dataclass
class SourceConfig:
    kind: Optional[SOURCE_KIND_CHOICES] = field(default=None, metadata={
        "help": "checkpoint (fairseq .pt) | hf (local transformers folder: HubertModel / Data2VecAudioModel / "
                "Wav2Vec2Model ..., or remote code with trust_remote_code) | "
                "jukebox (folder of JukeMIR .npy features) | "
                "chroma | mfcc (JukeMIR's hand-crafted baselines)"})
    path: Optional[str] = field(default=None, metadata={
        "help": "fairseq checkpoint (.pt), transformers model folder, or folder of Jukebox .npy features"})
    layers: Optional[List[int]] = field(default=None, metadata={
        "help": "hidden states to extract and keep (0 = the Transformer input: CNN output after layer norm, "
                "projection and positional convolution; i = output of Transformer layer i); null = all"})
    cnn: bool = field(default=False, metadata={
        "help": "checkpoint only: probe the raw conv feature extractor output (e.g. 512-d, before the projection; "
                "MAP-Music2Vec Table 1's diamond rows) instead of the hidden states"})
    trust_remote_code: bool = field(default=False, metadata={
        "help": "hf only: allow a model folder whose config.json has auto_map (e.g. MERT) to load by RUNNING THE "
                "FOLDER'S OWN PYTHON CODE (its configuration_*.py / modeling_*.py); read that code first. false = "
                "such a folder is refused"})
    random_init: bool = field(default=False, metadata={
        "help": "checkpoint only: same architecture, fresh random weights (the baseline of pretraining)"})
    seed: int = field(default=0, metadata={"help": "seed of the random initialisation (random_init)"})
    batch_size: int = field(default=8, metadata={"help": "files per forward pass (files of equal length only)"})
    chunk_seconds: float = field(default=30.0, metadata={
        "help": "files longer than this are encoded in chunks of this many seconds"})
    dim: int = field(default=4800, metadata={"help": "jukebox: expected feature size"})
    naming: NAMING_CHOICES = field(default="jukemir", metadata={
        "help": "jukebox: 'jukemir' = <uid>.npy with JukeMIR's per-dataset uid where the task loader knows it "
                "(MTT clip_id zero-padded to 5, GTZAN sha256 of '<genre>.000NN', Emomusic song_id padded to 4, "
                "Giantsteps ID padded to 7 plus '-<window>'), else <audio stem>.npy; 'stem' = always <audio stem>.npy"})
    reference: Optional[str] = field(default=None, metadata={
        "help": "published model + protocol to print beside ours, e.g. ma2023/music2vec_base, jukemir/jukebox "
                "(music-ssl-probe --list-references); null = no paper column"})
    reference_table: Optional[str] = field(default=None, metadata={
        "help": "a CSV of published numbers we do not ship (e.g. MARBLE's MERT rows, copied from the paper), "
                "columns as music_ssl/probe/published/*.csv; its references join the shipped ones"})
    sample_rate: int = field(default=22050, metadata={"help": "chroma / mfcc: audio is resampled to this rate (Hz)"})


@dataclass
class ProtocolConfig:
    name: PROTOCOL_CHOICES = field(default="marble", metadata={
        "help": "ma2023 | mulap | marble | jukemir (music-ssl-probe --list-protocols; probe/protocols.py)"})
    layers: Any = field(default=None, metadata={
        "help": "null = the preset's; all | all+sum | sum | last | list of indices (-1 = weighted sum)"})
    seeds: Optional[List[int]] = field(default=None, metadata={"help": "null = the preset's seeds"})
    standardize: Optional[bool] = field(default=None, metadata={
        "help": "null = the preset's; true / false = z-score every feature with train-split statistics or not, "
                "in every probe of the grid (features of differently trained models differ in scale by orders of "
                "magnitude; an MLP on raw features then partly measures that scale)"})
    train: Dict[str, Any] = field(default_factory=dict, metadata={
        "help": "overrides of the preset's TrainSettings (over its per-task schedule, for every task): eval_every, "
                "eval_every_epochs, patience, max_epochs, max_steps, lr_factor, lr_patience, lr_threshold "
                "(on the command line: +protocol.train.KEY=VALUE)"})
    sum_states: Optional[SUM_STATES_CHOICES] = field(default=None, metadata={
        "help": "null = the preset's; which hidden states the weighted sum mixes: layers = the Transformer "
                "outputs only (MARBLE's code: hidden_states[1:], 12 for a base model) | all = every state, the "
                "Transformer input too (13; Ma et al. 2023 §4.1's text)"})
    head: Dict[str, Any] = field(default_factory=dict, metadata={
        "help": "overrides of the preset's HeadSettings: sum_states, mix_init (zeros | normal), input_dropout "
                "(true = dropout on the probe input too, JukeMIR; false = after the hidden layer only, MARBLE) "
                "(on the command line: +protocol.head.KEY=VALUE)"})


@dataclass
class WandbConfig:
    project: Optional[str] = field(default=None, metadata={"help": "log to this wandb project (null = off)"})
    name: Optional[str] = field(default=None, metadata={"help": "wandb run name (default: the config's name)"})


@dataclass
class ProbeRunConfig:
    name: str = field(default="probe", metadata={"help": "title of the report"})
    data_root: Optional[str] = field(default=MISSING, metadata={
        "help": "dataset folder for ${data_root} in task roots / paths (needed only where used)"})
    source: SourceConfig = field(default_factory=SourceConfig)
    tasks: List[Any] = field(default_factory=list, metadata={
        "help": "registry tasks with options, e.g. {name: gtzan_genre, root: /data/GTZAN} or "
                "{name: csv, path: my.csv, type: multiclass}"})
    protocol: ProtocolConfig = field(default_factory=ProtocolConfig)
    batched: bool = field(default=True, metadata={"help": "false = train probes one by one (reference loop)"})
    device: str = field(default="auto", metadata={"help": "auto (CUDA when present) | cpu | cuda | cuda:N"})
    cache_dir: Optional[str] = field(default="~/.cache/music-ssl/probe-features", metadata={
        "help": "feature cache folder (null = no cache)"})
    out_dir: str = field(default="probe_results", metadata={"help": "where the results are written"})
    wandb: WandbConfig = field(default_factory=WandbConfig)
    progress: bool = field(default=True, metadata={"help": "tqdm progress bars"})


def yaml_syntax_error(err: BaseException, file) -> ProbeConfigError:
    """One line for a YAML syntax error raised while composing ``file``: ``FILE:LINE:COLUMN: YAML syntax error: …``
    (the file, line and column of PyYAML's mark; ``file`` when the mark names none)."""
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    name = getattr(mark, "name", None)
    where = name if name and not name.startswith("<") else str(file)
    if mark is not None:
        where += f":{mark.line + 1}:{mark.column + 1}"
    problem = " ".join(str(getattr(err, "problem", None) or err).split())
    context, context_mark = getattr(err, "context", None), getattr(err, "context_mark", None)
    if context and context_mark is not None and context_mark is not mark:
        problem += f" ({context} from line {context_mark.line + 1})"
    return ProbeConfigError(f"{where}: YAML syntax error: {problem}; fix the YAML there (indent with spaces, "
                            f"quote values holding ': ' or '#').")


def register_schema() -> None:
    """Register :class:`ProbeRunConfig` as ``probe_schema`` with hydra's ConfigStore."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name=SCHEMA_NAME, node=ProbeRunConfig)


def resolve_config(cfg) -> dict:
    """Validate ``cfg`` (dict or OmegaConf node) against the schema, fill defaults, resolve interpolations.

    Returns:
        a plain dict (choices as their strings); raises :class:`ProbeConfigError` for unknown keys, wrong types,
        values outside their choices, missing values, no source kind or no tasks.
    """
    try:
        merged = OmegaConf.merge(OmegaConf.structured(ProbeRunConfig), cfg)
        out = OmegaConf.to_container(merged, resolve=True, enum_to_str=True)
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None)  # omegaconf appends full_key / object_type lines: keep the rest
        lines = [line.strip() for line in str(err).splitlines()
                 if line.strip() and not line.strip().startswith(("full_key:", "object_type=", "reference_type="))]
        message = (f"{key}: " if key else "") + " / ".join(lines)
        hint = ("set it on the command line (key=value)" if "Missing mandatory value" in message
                else "see music_ssl/probe/config.py for the keys and types")
        raise ProbeConfigError(f"probe config: {message}; {hint}.") from None
    if not out["source"]["kind"]:
        raise ProbeConfigError(f"probe config: source.kind is not set; choose one of [{', '.join(SOURCE_KINDS)}].")
    if not out["tasks"]:
        raise ProbeConfigError("probe config: no tasks; list at least one under `tasks:` (e.g. {name: gtzan_genre, "
                               "root: /data/GTZAN}).")
    return out
