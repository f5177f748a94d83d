"""The model zoo: small CNN (28x28 / 8x8), CIFAR-style ResNet-18 and PreAct-ResNet-18, VGG with BN, MLP.

Every entry takes ``num_classes``, ``input_shape``, ``mean``, ``std`` and architecture keywords such as
``width`` (a channel multiplier), and starts with a :class:`Normalize` layer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from pruneguard.models.layers import Normalize
from pruneguard.models.registry import register_model

__all__ = ["GAPCNN", "SmallCNN", "ResNet", "PreActResNet", "VGG", "MLP"]


def _ch(base: int, width: float) -> int:
    return max(1, int(round(base * width)))


class SmallCNN(nn.Module):
    """Two conv-BN-ReLU-pool blocks and a BN hidden layer: LeNet-size, fast on a CPU."""

    def __init__(
        self,
        num_classes: int,
        input_shape: Sequence[int],
        mean: Sequence[float],
        std: Sequence[float],
        width: float = 1.0,
        hidden: int = 128,
    ) -> None:
        super().__init__()
        c, h, w = input_shape
        c1, c2 = _ch(32, width), _ch(64, width)
        self.normalize = Normalize(mean, std)
        self.features = nn.Sequential(
            nn.Conv2d(c, c1, 3, padding=1, bias=False),
            nn.BatchNorm2d(c1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1, bias=False),
            nn.BatchNorm2d(c2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )
        flat = c2 * (h // 4) * (w // 4)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(flat, hidden, bias=False),
            nn.BatchNorm1d(hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(self.normalize(x)))


class GAPCNN(nn.Module):
    """Three conv-BN-ReLU stages and global average pooling into one linear classifier (no hidden FC layer).

    Channel-wise features with no spatial flattening make neurons specialise, which is what ANP prunes.
    """

    def __init__(
        self,
        num_classes: int,
        input_shape: Sequence[int],
        mean: Sequence[float],
        std: Sequence[float],
        width: float = 1.0,
    ) -> None:
        super().__init__()
        _build_gap_(self, num_classes, input_shape[0], mean, std, width, nn.BatchNorm2d)

    def forward(self, x: Tensor) -> Tensor:
        return _gap_forward(self, x)


def _build_gap_(
    net: nn.Module,
    num_classes: int,
    channels: int,
    mean: Sequence[float],
    std: Sequence[float],
    width: float,
    norm: Callable[[int], nn.Module] | None,
) -> None:
    """Give ``net`` the GAP-CNN layout: three 3×3 conv stages (a ``norm`` layer after each conv, which replaces
    its bias; without a norm the convs have biases), max-pooling between them, global average pooling and a
    linear classifier. Modules are made in the same order for every norm, so a seed gives the same weights."""
    widths = [channels, _ch(32, width), _ch(64, width), _ch(128, width)]
    layers: list[nn.Module] = []
    for i, (cin, cout) in enumerate(zip(widths, widths[1:], strict=False)):
        layers.append(nn.Conv2d(cin, cout, 3, padding=1, bias=norm is None))
        if norm is not None:
            layers.append(norm(cout))
        layers.append(nn.ReLU(inplace=True))
        if i < 2:
            layers.append(nn.MaxPool2d(2))
    net.normalize = Normalize(mean, std)
    net.features = nn.Sequential(*layers)
    net.pool = nn.AdaptiveAvgPool2d(1)
    net.classifier = nn.Linear(widths[-1], num_classes)


def _gap_forward(net: Any, x: Tensor) -> Tensor:
    return net.classifier(torch.flatten(net.pool(net.features(net.normalize(x))), 1))


class _BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: Tensor) -> Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class _PreActBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.shortcut: nn.Module | None = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        out = torch.relu(self.bn1(x))
        short = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(torch.relu(self.bn2(out)))
        return out + short


class ResNet(nn.Module):
    """CIFAR-style ResNet-18 (3x3 stem, no max-pool) with a channel ``width`` multiplier."""

    def __init__(
        self,
        num_classes: int,
        input_shape: Sequence[int],
        mean: Sequence[float],
        std: Sequence[float],
        width: float = 1.0,
        blocks: Sequence[int] = (2, 2, 2, 2),
        preact: bool = False,
    ) -> None:
        super().__init__()
        self.preact = preact
        widths = [_ch(b, width) for b in (64, 128, 256, 512)]
        self.normalize = Normalize(mean, std)
        self.conv1 = nn.Conv2d(input_shape[0], widths[0], 3, 1, 1, bias=False)
        self.bn1: nn.Module = nn.Identity() if preact else nn.BatchNorm2d(widths[0])
        block = _PreActBlock if preact else _BasicBlock
        layers, cin = [], widths[0]
        for i, (w, n) in enumerate(zip(widths, blocks, strict=True)):
            stage = []
            for j in range(n):
                stage.append(block(cin, w, 2 if (j == 0 and i > 0) else 1))
                cin = w
            layers.append(nn.Sequential(*stage))
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.final_bn = nn.BatchNorm2d(cin) if preact else None
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(cin, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv1(self.normalize(x))
        if not self.preact:
            out = torch.relu(self.bn1(out))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        if self.final_bn is not None:
            out = torch.relu(self.final_bn(out))
        return self.linear(torch.flatten(self.pool(out), 1))


class PreActResNet(ResNet):
    """Pre-activation ResNet-18 (He et al. 2016), CIFAR style."""

    def __init__(
        self,
        num_classes: int,
        input_shape: Sequence[int],
        mean: Sequence[float],
        std: Sequence[float],
        width: float = 1.0,
    ) -> None:
        super().__init__(num_classes, input_shape, mean, std, width=width, preact=True)


class VGG(nn.Module):
    """VGG with BatchNorm (VGG-11 layout by default), global average pooling, one linear classifier."""

    def __init__(
        self,
        num_classes: int,
        input_shape: Sequence[int],
        mean: Sequence[float],
        std: Sequence[float],
        width: float = 1.0,
        layout: Sequence[int | str] = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512),
    ) -> None:
        super().__init__()
        self.normalize = Normalize(mean, std)
        layers: list[nn.Module] = []
        cin, size = input_shape[0], min(input_shape[1:])
        for item in layout:
            if item == "M":
                if size >= 2:
                    layers.append(nn.MaxPool2d(2))
                    size //= 2
                continue
            cout = _ch(int(item), width)
            layers += [
                nn.Conv2d(cin, cout, 3, padding=1, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
            ]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(cin, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(self.normalize(x))), 1))


class MLP(nn.Module):
    """Linear-BN-ReLU blocks for tabular (or flattened) inputs."""

    def __init__(
        self,
        num_classes: int,
        input_shape: Sequence[int],
        mean: Sequence[float],
        std: Sequence[float],
        hidden: Sequence[int] = (64, 32),
        width: float = 1.0,
    ) -> None:
        super().__init__()
        self.normalize = Normalize(mean, std)
        layers: list[nn.Module] = [nn.Flatten()]
        cin = 1
        for s in input_shape:
            cin *= int(s)
        for h in hidden:
            h = _ch(h, width)
            layers += [nn.Linear(cin, h, bias=False), nn.BatchNorm1d(h), nn.ReLU(inplace=True)]
            cin = h
        layers.append(nn.Linear(cin, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(self.normalize(x))


register_model("small_cnn", kind="image")(SmallCNN)
register_model("gap_cnn", kind="image")(GAPCNN)
register_model("resnet18_cifar", kind="image")(ResNet)
register_model("preact_resnet18", kind="image")(PreActResNet)
register_model("vgg11_bn", kind="image")(VGG)
register_model("mlp", kind="any")(MLP)


class PlainCNN(nn.Module):
    """Three conv-ReLU stages (biases, no norm layer of any kind) and global average pooling into a linear
    classifier: the zoo's network whose neurons ANP must mask on the convolutions themselves."""

    def __init__(
        self,
        num_classes: int,
        input_shape: Sequence[int],
        mean: Sequence[float],
        std: Sequence[float],
        width: float = 1.0,
    ) -> None:
        super().__init__()
        _build_gap_(self, num_classes, input_shape[0], mean, std, width, None)

    def forward(self, x: Tensor) -> Tensor:
        return _gap_forward(self, x)


def _groups(channels: int, groups: int) -> int:
    """The largest group count <= ``groups`` that divides ``channels`` (GroupNorm needs a divisor)."""
    g = max(1, min(groups, channels))
    while channels % g:
        g -= 1
    return g


class GroupNormCNN(nn.Module):
    """:class:`GAPCNN`'s layout with GroupNorm (``groups`` per layer, fewer where the width does not divide)
    instead of BatchNorm: statistics per sample, none kept from training."""

    def __init__(
        self,
        num_classes: int,
        input_shape: Sequence[int],
        mean: Sequence[float],
        std: Sequence[float],
        width: float = 1.0,
        groups: int = 8,
    ) -> None:
        super().__init__()
        if groups < 1:
            raise ValueError(f"groups={groups} is not accepted; accepted: an integer >= 1")
        _build_gap_(
            self, num_classes, input_shape[0], mean, std, width, lambda ch: nn.GroupNorm(_groups(ch, groups), ch)
        )

    def forward(self, x: Tensor) -> Tensor:
        return _gap_forward(self, x)


__all__ += ["PlainCNN", "GroupNormCNN"]
register_model("plain_cnn", kind="image")(PlainCNN)
register_model("gn_cnn", kind="image")(GroupNormCNN)
