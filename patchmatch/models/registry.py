"""Model registry: name → (class, config dataclass)."""

from __future__ import annotations

import dataclasses
from typing import Any

from torch import nn

from .siamese import PseudoSiamese, Siamese, Siamese2Stream, SiameseConfig
from .twochannel import (
    TwoChannel,
    TwoChannel2Stream,
    TwoChannel2StreamConfig,
    TwoChannelConfig,
    TwoChannelDeep,
    TwoChannelDeepConfig,
)

#: name → (model class, config class). ``2ch2stream`` is the default.
MODELS: dict[str, tuple[type[nn.Module], type]] = {
    "2ch2stream": (TwoChannel2Stream, TwoChannel2StreamConfig),
    "2ch": (TwoChannel, TwoChannelConfig),
    "2chdeep": (TwoChannelDeep, TwoChannelDeepConfig),
    "siam": (Siamese, SiameseConfig),
    "pseudo-siam": (PseudoSiamese, SiameseConfig),
    "siam-2stream": (Siamese2Stream, SiameseConfig),
}
DEFAULT_MODEL = "2ch2stream"


def build_model(name: str = DEFAULT_MODEL, **config: Any) -> nn.Module:
    """Builds a registered model with He-initialised weights.

    Args:
        name: one of :data:`MODELS`.
        **config: fields of the model's config dataclass.

    Raises:
        KeyError: unknown model name.
        TypeError: unknown config field.
    """
    if name not in MODELS:
        raise KeyError(f"Unknown model {name!r}; available: {', '.join(MODELS)}.")
    cls, config_cls = MODELS[name]
    fields = {f.name for f in dataclasses.fields(config_cls)}
    unknown = set(config) - fields
    if unknown:
        raise TypeError(f"Unknown config field(s) {sorted(unknown)} for model {name!r}; known: {sorted(fields)}.")
    return cls(config_cls(**config))


def model_name(model: nn.Module) -> str:
    """Registered name of a model instance."""
    for name, (cls, _) in MODELS.items():
        if type(model) is cls:
            return name
    raise KeyError(f"{type(model).__name__} is not a registered model.")
