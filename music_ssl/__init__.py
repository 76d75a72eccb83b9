"""music-ssl: a fairseq user-dir for self-supervised music audio models and their probing.

Use it as ``fairseq-hydra-train ... common.user_dir=/path/to/music_ssl`` or simply ``import music_ssl``:
either way every model and task of the plugin is registered in fairseq's registries.

Importing this package also

* registers fairseq's ``data2vec_audio`` model (it lives in ``fairseq.examples`` and is not a core model),
* allows fairseq's ``Dictionary`` in ``torch.load(weights_only=True)`` (HuBERT checkpoints pickle it), so
  checkpoints load with the safe unpickler on; ``weights_only`` is never turned off,
* installs its overrides of fairseq (``fairseq_patches``) and the ones that end a training run on an expected
  error with one ``error: …`` line (``run_errors``),
* registers the ``${job_port:…}`` config resolver (``core.job_port``: a Slurm job's rendezvous port).
"""
import importlib
import logging
from pathlib import Path

import torch
from fairseq.data.dictionary import Dictionary

import fairseq.examples.data2vec.models.data2vec_audio  # noqa: F401  (registers "data2vec_audio")

from . import fairseq_patches  # noqa: F401,E402  (atomic checkpoint copies, one music_ssl as user_dir)
from . import run_errors  # noqa: F401,E402  (an expected error ends a training run as one line)
from .core.job_port import register_resolver  # noqa: E402
from .core.version import __version__  # noqa: F401

register_resolver()  # ${job_port:...}: the Slurm run configs' rendezvous port, from the job id

logger = logging.getLogger(__name__)

torch.serialization.add_safe_globals([Dictionary])

# fairseq's import_user_module auto-imports only tasks/ and models/; import all registrable
# sub-packages here so that a plain ``import music_ssl`` registers everything too.
_REGISTERED_SUBPACKAGES = ("tasks", "models")


def _import_registered_modules() -> None:
    here = Path(__file__).parent
    for sub in _REGISTERED_SUBPACKAGES:
        for path in sorted((here / sub).glob("*.py")):
            if not path.name.startswith("_"):
                importlib.import_module(f"{__name__}.{sub}.{path.stem}")


_import_registered_modules()
