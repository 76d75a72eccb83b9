"""Registered fairseq tasks: music2vec and MusicHuBERT pretraining."""
