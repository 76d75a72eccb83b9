"""Hands each batch's sample ids to models that seed their masks with them (``model.seeded_masks=true``)."""


class MaskIdsMixin:
    """Before a fairseq task's ``train_step`` / ``valid_step``, puts ``sample["id"]`` (B,) into
    ``net_input["mask_ids"]`` when the model asks for it (``model.wants_mask_ids``); other models get the batch as is."""

    @staticmethod
    def add_mask_ids(sample, model) -> None:
        if sample and getattr(model, "wants_mask_ids", False) and "id" in sample:
            sample["net_input"]["mask_ids"] = sample["id"]

    def train_step(self, sample, model, criterion, optimizer, update_num, ignore_grad=False):
        self.add_mask_ids(sample, model)
        return super().train_step(sample, model, criterion, optimizer, update_num, ignore_grad)

    def valid_step(self, sample, model, criterion):
        self.add_mask_ids(sample, model)
        return super().valid_step(sample, model, criterion)
