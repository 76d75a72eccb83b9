"""The demo: an offline, seeded music corpus (``corpus``: composed in ``midi``, rendered by FluidSynth in ``render``)."""
from music_ssl.demo.corpus import Corpus, CorpusError, CorpusSettings, load_corpus, make_corpus
from music_ssl.demo.render import FluidSynthNotFoundError, RenderError, SoundfontNotFoundError

__all__ = ["Corpus", "CorpusError", "CorpusSettings", "load_corpus", "make_corpus",
           "FluidSynthNotFoundError", "RenderError", "SoundfontNotFoundError"]
