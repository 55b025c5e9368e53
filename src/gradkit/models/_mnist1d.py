"""The baselines of the MNIST-1D paper (Greydanus, arXiv 2011.14439), written for gradkit.

Input: a batch of 1-D signals, shape ``(batch, length)`` (one channel) or
``(batch, channels, length)``; MNIST-1D has length 40 and 10 classes. At their defaults the
models have the paper code's parameter counts: 410 (logistic), 15,210 (MLP), 5,210 (CNN) and
5,134 (GRU). Each exposes its classifier as ``.head``.
"""

from __future__ import annotations

from torch import Tensor, nn

from gradkit._checks import check_integer, check_probability


def _as_channels_first(x: Tensor) -> Tensor:
    """``(batch, length)`` becomes ``(batch, 1, length)``; 3-D inputs pass unchanged."""
    return x.unsqueeze(1) if x.dim() == 2 else x


class LogisticRegression(nn.Module):
    r"""Multinomial logistic regression: :math:`\mathrm{logits} = W x + b` on the flat input.

    It has no width or depth; its only sizes are the input's and the number of classes.
    """

    def __init__(self, *, in_features: int = 40, classes: int = 10) -> None:
        super().__init__()
        check_integer("logistic", "in_features", in_features, 1)
        check_integer("logistic", "classes", classes, 2)
        self.head = nn.Linear(in_features, classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(x.flatten(1))


class MLP(nn.Module):
    r"""The MNIST-1D MLP: a ReLU layer, then ``depth - 1`` residual ReLU layers, then the head.

    .. math:: h_1 = \mathrm{relu}(W_1 x), \quad h_{i+1} = h_i + \mathrm{relu}(W_{i+1} h_i),
              \quad \mathrm{logits} = W_{\mathrm{head}}\,\mathrm{dropout}(h_{\mathrm{depth}})

    ``depth = 2``, ``width = 100`` is the paper's (15,210 parameters).
    """

    def __init__(
        self,
        *,
        in_features: int = 40,
        classes: int = 10,
        width: int = 100,
        depth: int = 2,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        check_integer("mlp", "in_features", in_features, 1)
        check_integer("mlp", "classes", classes, 2)
        check_integer("mlp", "width", width, 1)
        check_integer("mlp", "depth", depth, 1)
        check_probability("mlp", "dropout", dropout)
        self.input = nn.Linear(in_features, width)
        self.hidden = nn.ModuleList(nn.Linear(width, width) for _ in range(depth - 1))
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(width, classes)

    def forward(self, x: Tensor) -> Tensor:
        h = self.input(x.flatten(1)).relu()
        for layer in self.hidden:
            h = h + layer(h).relu()
        return self.head(self.dropout(h))


class ConvNet1d(nn.Module):
    """The MNIST-1D CNN: ``depth`` strided ReLU convolutions, flattened into a linear head.

    The first convolution has kernel 5, the others kernel 3; all have stride 2 and padding 1,
    so a length-40 signal becomes 19, 10, then 5 positions. ``width = 25``, ``depth = 3`` is the
    paper's (5,210 parameters).
    """

    def __init__(
        self,
        *,
        length: int = 40,
        in_channels: int = 1,
        classes: int = 10,
        width: int = 25,
        depth: int = 3,
    ) -> None:
        super().__init__()
        check_integer("cnn", "length", length, 3)
        check_integer("cnn", "in_channels", in_channels, 1)
        check_integer("cnn", "classes", classes, 2)
        check_integer("cnn", "width", width, 1)
        check_integer("cnn", "depth", depth, 1)
        layers: list[nn.Module] = []
        channels, size = in_channels, length
        for index in range(depth):
            kernel = 5 if index == 0 else 3
            layers += [nn.Conv1d(channels, width, kernel, stride=2, padding=1), nn.ReLU()]
            channels, size = width, (size + 2 - kernel) // 2 + 1
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(width * size, classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(_as_channels_first(x)).flatten(1))


class GRUClassifier(nn.Module):
    """The MNIST-1D GRU: a (bidirectional) GRU over time, every time step's state into the head.

    ``width`` is the hidden size, ``depth`` the number of stacked GRU layers. ``width = 6``,
    ``depth = 1``, bidirectional is the paper's (5,134 parameters).
    """

    def __init__(
        self,
        *,
        length: int = 40,
        in_channels: int = 1,
        classes: int = 10,
        width: int = 6,
        depth: int = 1,
        bidirectional: bool = True,
    ) -> None:
        super().__init__()
        check_integer("gru", "length", length, 1)
        check_integer("gru", "in_channels", in_channels, 1)
        check_integer("gru", "classes", classes, 2)
        check_integer("gru", "width", width, 1)
        check_integer("gru", "depth", depth, 1)
        self.gru = nn.GRU(
            in_channels, width, num_layers=depth, batch_first=True, bidirectional=bidirectional
        )
        directions = 2 if bidirectional else 1
        self.head = nn.Linear(directions * width * length, classes)

    def forward(self, x: Tensor) -> Tensor:
        sequence = _as_channels_first(x).transpose(1, 2)  # (batch, time, channels)
        states, _ = self.gru(sequence)
        return self.head(states.flatten(1))
