"""The ground floor: what every other package of music-ssl may use, and which uses nothing of ours.

``errors`` (the one error tree), ``device`` (the one device resolver), ``resources`` (shipped folders),
``atomic`` (temporary name + rename), ``fingerprint`` (sha256 of files, folders, bytes and JSON) and ``conv``
(fairseq's conv-stack spec: layers, receptive field, stride, frames).
"""
