"""The PyTorch side of dali-mix: loader, losses, MixMo model."""
from dali_mix.torch.loader import Loader, check_batch
from dali_mix.torch.losses import (
    binary_cross_entropy,
    mixed_cross_entropy,
    mixed_segmentation_loss,
    slot_cross_entropy,
    soft_target_cross_entropy,
)
from dali_mix.torch.mixmo import (
    MixMoNet,
    cut_mixmo_mask,
    mixmo_loss,
    mixmo_loss_weights,
    mixmo_p_schedule,
)

__all__ = [
    "Loader", "MixMoNet", "binary_cross_entropy", "check_batch", "cut_mixmo_mask", "mixed_cross_entropy",
    "mixed_segmentation_loss", "mixmo_loss", "slot_cross_entropy",
    "mixmo_loss_weights", "mixmo_p_schedule", "soft_target_cross_entropy",
]
