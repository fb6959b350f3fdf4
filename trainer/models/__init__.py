"""Models: the Wide & Deep network and its serving wrapper."""

from trainer.models.wide_deep import WideDeepModel

__all__ = ["WideDeepModel"]
