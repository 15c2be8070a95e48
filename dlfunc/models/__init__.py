"""dlfunc.models: Flax Linen modules whose layers call :mod:`dlfunc.nn`."""
from dlfunc.models._classic import CNN, LeNet, MLP
from dlfunc.models._layers import BatchNorm, Conv, Dense, Dropout, Embed, LayerNorm

__all__ = ["MLP", "CNN", "LeNet", "Dense", "Conv", "BatchNorm", "LayerNorm", "Dropout", "Embed"]
