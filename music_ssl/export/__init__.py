"""Interoperability: export to Hugging Face transformers, encoders over transformers folders, the HEAR API.

* :mod:`.hf` — fairseq checkpoint (music2vec, MusicHuBERT, stock hubert / data2vec_audio) →
  ``transformers.HubertModel`` / ``Data2VecAudioModel`` folder (config.json, model.safetensors,
  preprocessor_config.json), and music2vec2 → a folder that ships its own model code
  (:mod:`.configuration_music2vec2`, :mod:`.modeling_music2vec2`: torch + transformers only, loaded with
  ``trust_remote_code=True``); CLI ``music-ssl-export-hf`` (``music_ssl/cli/export_hf.py``);
* :mod:`.parity` — every hidden state of a checkpoint against its exported folder, unpadded and padded;
* :mod:`.hf_encoder` — :class:`HFEncoder`, the :class:`music_ssl.checkpoint.FrozenEncoder` interface over any
  local transformers wav2vec2-family model folder (what probing uses for ``source.kind: hf``);
* :mod:`.hear` — the HEAR 2021 API (``load_model``, ``get_scene_embeddings``, ``get_timestamp_embeddings``).

``transformers`` is an optional dependency (``pip install .[hf]``): it is imported only by these modules.
"""
