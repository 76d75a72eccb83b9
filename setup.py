"""music-ssl: a fairseq user-dir for self-supervised music audio models (music2vec, MusicHuBERT) and probing.

The dependency stack is pinned in one place, ``requirements.txt``; this file reads it.
"""
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent


def read_requirements(name: str) -> list[str]:
    lines = (HERE / name).read_text().splitlines()
    return [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()]


dev = read_requirements("requirements-dev.txt")
setup(
    name="music-ssl",
    version="0.1.0",
    description="Self-supervised music audio pretraining (music2vec, MusicHuBERT) and MIR probing on fairseq",
    packages=find_packages(include=["music_ssl", "music_ssl.*", "tools"]),
    python_requires="==3.12.*",
    install_requires=read_requirements("requirements.txt"),
    extras_require={
        "hf": [r for r in dev if r.startswith("transformers")],
        "test": [r for r in dev if r.startswith("pytest")],
    },
    entry_points={
        "console_scripts": [
            "music-ssl-manifest=tools.manifest:cli",
            "music-ssl-kmeans=tools.kmeans_labels:cli",
            "music-ssl-probe=tools.probe:cli",
            "music-ssl-export-hf=tools.export_hf:cli",
            "music-ssl-demo=tools.demo:cli",
        ]
    },
    include_package_data=True,
)
