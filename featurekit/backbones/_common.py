"""Checks and helpers shared by the built-in backbone factories."""

from __future__ import annotations

import functools
import inspect
import numbers
from typing import Any, Callable, TypeVar

import torchvision
from torch import nn
from torchvision.models import WeightsEnum

from featurekit.exceptions import ParameterError

F = TypeVar("F", bound=Callable[..., nn.Module])


def strict_kwargs(factory: F) -> F:
    """Report an unknown keyword of ``factory`` as a :class:`ParameterError`.

    Users hand ``backbone_kwargs`` straight to the factory, so a typo should
    read like sklearn's parameter errors and list what is accepted, rather
    than surface as a bare ``TypeError`` from deep inside ``fit``.
    """
    accepted = [name for name, p in inspect.signature(factory).parameters.items()
                if p.kind is inspect.Parameter.KEYWORD_ONLY]

    @functools.wraps(factory)
    def checked(*args: Any, **kwargs: Any) -> nn.Module:
        unknown = sorted(set(kwargs) - set(accepted))
        if unknown:
            # Image factories get their architecture bound as the first argument.
            owner = args[0] if args else factory.__name__
            raise ParameterError(
                f"Backbone {owner!r} got unexpected parameter(s) "
                f"{', '.join(map(repr, unknown))}. It accepts "
                f"{', '.join(map(repr, accepted))}; fix or remove the names in "
                f"backbone_kwargs.")
        return factory(*args, **kwargs)

    return checked  # type: ignore[return-value]


def check_int(value: Any, name: str, owner: str, *, minimum: int = 1) -> int:
    """Return ``value`` as an int, or raise if it is not an int >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ParameterError(
            f"The {name!r} parameter of backbone {owner!r} must be an int in "
            f"[{minimum}, inf). Got {value!r} instead.")
    return int(value)


def pretrained_names(arch: str) -> tuple[str, ...]:
    """The torchvision weight names of ``arch`` (``DEFAULT`` is an alias, left out)."""
    return tuple(member.name for member in torchvision.models.get_model_weights(arch))


def resolve_weights(arch: str, weights: str | None) -> WeightsEnum | None:
    """Look up ``weights`` among the torchvision weights of ``arch``.

    Only the enum is consulted, so nothing is downloaded here.
    """
    if weights is None:
        return None
    try:
        enum = torchvision.models.get_model_weights(arch)
    except ValueError as exc:
        raise ParameterError(f"{arch!r} is not a torchvision architecture with pretrained "
                             f"weights; list them with list_backbones(pretrained=True).") from exc
    if not isinstance(weights, str) or weights not in enum.__members__:
        valid = ", ".join(repr(name) for name in enum.__members__)
        raise ParameterError(
            f"The 'weights' parameter of backbone {arch!r} must be None or one of "
            f"{valid}. Got {weights!r} instead.")
    return enum[weights]


def check_pretrained_setup(arch: str, weights: str | None, *, in_channels: int,
                           small_stem: bool) -> WeightsEnum | None:
    """Resolve ``weights`` and refuse settings that would discard the pretrained stem."""
    resolved = resolve_weights(arch, weights)
    if resolved is None:
        return None
    if in_channels != 3:
        raise ParameterError(
            f"The 'in_channels' parameter of backbone {arch!r} must be 3 when weights="
            f"{weights!r} are loaded, since the pretrained first layer expects RGB. Got "
            f"{in_channels} instead; repeat grey images to 3 channels or set weights=None.")
    if small_stem:
        raise ParameterError(
            f"The 'small_stem' parameter of backbone {arch!r} must be False when weights="
            f"{weights!r} are loaded, since the small stem would replace the pretrained "
            f"first layer. Set small_stem=False or weights=None.")
    return resolved


def no_pretrained(owner: str, weights: str | None) -> None:
    """Refuse ``weights`` for a backbone that has no pretrained weights."""
    if weights is not None:
        raise ParameterError(
            f"The 'weights' parameter of backbone {owner!r} must be None: it has no "
            f"pretrained weights. Got {weights!r} instead; set weights=None or choose a "
            f"backbone from list_backbones(pretrained=True).")


def check_input_size(owner: str, input_size: int, minimum: int, why: str) -> None:
    """Refuse an image side the configured network cannot reduce to a feature map."""
    if input_size < minimum:
        raise ParameterError(
            f"The 'input_size' parameter of backbone {owner!r} must be at least {minimum} "
            f"{why}. Got {input_size} instead; resize the images or choose another backbone.")


def new_conv(old: nn.Conv2d, *, in_channels: int, kernel_size: int | None = None,
             stride: int | None = None, padding: int | None = None) -> nn.Conv2d:
    """A freshly initialised copy of ``old`` with some of its geometry changed."""
    return nn.Conv2d(
        in_channels,
        old.out_channels,
        kernel_size=kernel_size if kernel_size is not None else old.kernel_size,
        stride=stride if stride is not None else old.stride,
        padding=padding if padding is not None else old.padding,
        bias=old.bias is not None,
    )


def kaiming_init(conv: nn.Conv2d) -> nn.Conv2d:
    """Initialise ``conv`` as torchvision's ResNet and VGG initialise theirs."""
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    return conv
