"""Fully connected networks of the TPP paper (MLP-7-Linear after Lee et al., ICLR 2020)."""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from tpp.models.registry import register_model


class MLP(nn.Sequential):
    """``flatten -> fc1 -> [relu1] -> fc2 -> ... -> fc{depth}`` on square images.

    All Linear layers have bias; no BN or dropout. ``activation=None`` gives the purely linear
    network the paper uses to study trainability. PyTorch default initialisation.
    Module names: ``flatten``, ``fc1`` ... ``fc{depth}``, ``relu1`` ... ``relu{depth-1}``.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        image_size: int = 32,
        depth: int = 7,
        width: int = 100,
        activation: str | None = None,
    ) -> None:
        if depth < 2:
            raise ValueError(f"depth must be >= 2, got {depth}")
        if activation not in (None, "relu"):
            raise ValueError(f"activation must be None or 'relu', got {activation!r}")
        layers: OrderedDict[str, nn.Module] = OrderedDict(flatten=nn.Flatten())
        dims = [in_channels * image_size * image_size] + [width] * (depth - 1) + [num_classes]
        for i in range(depth):
            layers[f"fc{i + 1}"] = nn.Linear(dims[i], dims[i + 1])
            if activation == "relu" and i < depth - 1:
                layers[f"relu{i + 1}"] = nn.ReLU()
        super().__init__(layers)


@register_model("mlp7_linear", image_size=32)
def mlp7_linear(num_classes: int = 10, in_channels: int = 3, **kwargs) -> MLP:
    """The paper's MLP-7-Linear: 7 Linear layers of width 100, no nonlinearity."""
    return MLP(num_classes, in_channels, depth=7, activation=None, **kwargs)


@register_model("mlp7_relu", image_size=32)
def mlp7_relu(num_classes: int = 10, in_channels: int = 3, **kwargs) -> MLP:
    """MLP-7 with ReLU after each hidden Linear layer."""
    return MLP(num_classes, in_channels, depth=7, activation="relu", **kwargs)
