"""Batches collated in the training thread when there are no DataLoader workers, so a seeded run is reproducible.

With ``dataset.num_workers=0`` fairseq still prefetches through a ``BufferedIterator``, whose background thread
runs the dataset's collater while the training thread steps the model. Both then draw from the process's one global
torch and numpy generators: data2vec 2.0's block masks (``compute_block_mask_1d``, torch), our seeded mask draws
(``crop.seeded_torch_rng`` reseeds the global generator for a moment) and fairseq's crop offsets (numpy) interleave
with the step's dropout draws in whatever order the threads run. The same config and seed then trains to different
weights (seen: music2vec2 tiny, first-update gradients differing by half their size between two runs). With workers,
collation runs in their own processes and nothing is shared; without, this mixin turns the prefetch thread off
(``data_buffer_size=0``) so the collater runs between steps in the training thread.
"""


class MainThreadCollationMixin:
    """A fairseq task whose ``get_batch_iterator`` keeps collation in the training thread when ``num_workers`` is 0
    (it ignores ``dataset.data_buffer_size`` then; with workers it is passed on as is)."""

    def get_batch_iterator(self, dataset, *args, num_workers=0, data_buffer_size=0, **kwargs):
        if num_workers == 0:
            data_buffer_size = 0
        return super().get_batch_iterator(dataset, *args, num_workers=num_workers,
                                          data_buffer_size=data_buffer_size, **kwargs)
