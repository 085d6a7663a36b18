"""Input adapters and batched on-device augmentations."""

from featurekit.data.inputs import Waveforms

__all__ = ["Waveforms"]
