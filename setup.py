"""music-ssl: a fairseq user-dir for self-supervised music audio models (music2vec, MusicHuBERT) and probing.

The dependency stack is pinned in one place, ``requirements.txt``; this file reads it.
"""
import re
from pathlib import Path

from setuptools import find_namespace_packages, setup

HERE = Path(__file__).parent


def read_requirements(name: str) -> list[str]:
    lines = (HERE / name).read_text().splitlines()
    return [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()]


dev = read_requirements("requirements-dev.txt")
setup(
    name="music-ssl",
    version=re.search(r'__version__ = "(.+)"', (HERE / "music_ssl/core/version.py").read_text()).group(1),
    description="Self-supervised music audio pretraining (music2vec, MusicHuBERT) and MIR probing on fairseq",
    # tools/ are checkout shims, not installed; music_ssl/config/** are data folders (namespace packages)
    packages=find_namespace_packages(include=["music_ssl", "music_ssl.*"], exclude=["*.__pycache__"]),
    python_requires="==3.12.*",
    install_requires=read_requirements("requirements.txt"),
    extras_require={
        "hf": [r for r in dev if r.startswith("transformers")],
        "test": [r for r in dev if r.startswith("pytest")],
    },
    entry_points={
        "console_scripts": [
            "music-ssl-manifest=music_ssl.cli.manifest:cli",
            "music-ssl-kmeans=music_ssl.cli.kmeans_labels:cli",
            "music-ssl-probe=music_ssl.cli.probe:cli",
            "music-ssl-export-hf=music_ssl.cli.export_hf:cli",
            "music-ssl-demo=music_ssl.cli.demo:cli",
            "music-ssl-make-corpus=music_ssl.cli.make_corpus:cli",
            "music-ssl-config-dir=music_ssl.cli.config_dir:cli",
            "music-ssl-train=music_ssl.cli.train:cli",
        ]
    },
    package_data={"music_ssl.config": ["**/*.yaml"],  # the shipped hydra configs (music-ssl-config-dir)
                  "music_ssl.probe": ["published/*.csv"]},  # the papers' result tables (probe report)
    include_package_data=True,
)
