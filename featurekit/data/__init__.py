"""Input adapters and batched on-device augmentations."""
