"""View settings the contrastive methods share."""

from __future__ import annotations

#: Images up to this side are not blurred by ``blur="auto"``.
SMALL_IMAGE_NO_BLUR = 32


def use_blur(blur: str | bool, size: int) -> bool:
    """Resolve a method's ``blur`` parameter for images of side ``size``.

    ``"auto"`` blurs only images larger than 32 px: at CIFAR-10 size a blur
    erases most of the detail, and SimCLR's paper leaves it out there.

    Examples
    --------
    >>> use_blur("auto", 32), use_blur("auto", 96), use_blur(True, 8)
    (False, True, True)
    """
    return size > SMALL_IMAGE_NO_BLUR if blur == "auto" else bool(blur)
