"""Registered fairseq models: music2vec and MusicHuBERT (plus their shared hidden-state extraction)."""
