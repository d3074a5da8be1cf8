"""Winograd inference of 2ch-2stream on the CPU: the same network with 2.4× fewer multiply-adds.

Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks" (CVPR 2016): an r×r convolution
producing an m×m output tile is computed as ``Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A`` from an (m+r−1)² input
tile ``d``; summed over input channels, the element-wise products become (m+r−1)² independent
matrix multiplies (tiles × C_in) @ (C_in × C_out).

The 3×3 layers of a 2ch-2stream stream fit the tiles exactly (no padding, no partial tile):

==========  ============  ================  =======================  ======================
layer       input → out   tiles             multiply-adds, direct    Winograd (GEMM part)
==========  ============  ================  =======================  ======================
conv2       96×14² → 12²  3×3 of F(4×4,3×3)  11.9 M                   3.0 M
conv3       96×6² → 4²    1 of F(4×4,3×3)    2.65 M                   0.66 M
conv4       192×4² → 2²   1 of F(2×2,3×3)    1.33 M                   0.59 M
==========  ============  ================  =======================  ======================

With the first layer (5×5 over 2 channels, 3.76 M per stream, run by oneDNN as in the plain model)
and the fully connected layers, a pair costs ~17 M multiply-adds in matrix products plus ~3.5 M in
the tile transforms (dense products with the transform matrices), instead of 40.6 M. The 2×2 max pooling
after conv2 falls on whole 2×2 blocks of each 4×4 output tile, so the output transform's rows are
ordered to make it a maximum of four contiguous blocks. Scores equal the plain model's up to
float32 rounding of the transforms (largest difference measured ~2e-5 on scores of magnitude ~1).

Inference only: the 3×3 filters are transformed when the module is built (it holds transformed
copies; the first convolution and the fully connected layers are the model's own modules): train
the plain model and build this again. :class:`patchmatch.scoring.PatchScorer` uses it for fp32 on
the CPU (``winograd=None``, the default).
"""

from __future__ import annotations

import torch
from torch import nn

from .layers import normalized_central_surround
from .twochannel import TwoChannel2Stream

#: F(4×4, 3×3) with interpolation points 0, ±1, ±2, ∞ (Lavin & Gray 2016, Sec. 4.2).
_BT4 = [[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0], [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]]
_G4 = [[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6], [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]]
_AT4 = [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]]
#: F(2×2, 3×3) (Lavin & Gray 2016, Sec. 4.1).
_BT2 = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]
_G2 = [[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]]
_AT2 = [[1, 1, 1, 0], [0, 1, -1, -1]]


def _kron2(m: list[list[float]]) -> torch.Tensor:
    """The 2-D transform ``X ↦ M X Mᵀ`` as one matrix on row-major flattened tiles."""
    t = torch.tensor(m, dtype=torch.float64)
    return torch.kron(t, t).float().contiguous()


def winograd_weights(conv: nn.Conv2d, g: list[list[float]]) -> torch.Tensor:
    """Transformed 3×3 filters ``G g Gᵀ``: (T², C_in, C_out) float32, T = m + 2 (computed in float64)."""
    if conv.kernel_size != (3, 3) or conv.stride != (1, 1) or conv.padding != (0, 0) or conv.groups != 1 or conv.dilation != (1, 1):
        raise ValueError(f"Winograd needs a plain 3×3 convolution (stride 1, no padding), got {conv}.")
    w = conv.weight.detach().to(torch.float64)  # (C_out, C_in, 3, 3)
    gm = torch.tensor(g, dtype=w.dtype, device=w.device)
    u = torch.einsum("ak,oikl,bl->abio", gm, w, gm)
    return u.reshape(-1, w.shape[1], w.shape[0]).float().contiguous()


class _WinogradStreams(nn.Module):
    """The streams of a central-surround model (:func:`patchmatch.models.twochannel.stream_2stream`),
    run side by side: each product of the two streams is one batched matrix multiply.

    Input: S tensors (n, C, 32, 32) float32 (one per stream). Output: (n, S·768) features, each
    stream's ordered as ``stream(x).flatten(1)``.
    """

    def __init__(self, streams: list[nn.Sequential], first_block_chunk: int):
        super().__init__()
        convs = [[m for m in st if isinstance(m, nn.Conv2d)] for st in streams]
        for st, cs in zip(streams, convs):
            if len(st) != 10 or len(cs) != 4 or cs[0].kernel_size != (5, 5) or [c.out_channels for c in cs] != [96, 96, 192, 192]:
                raise ValueError("expected 2ch-2stream streams: C(96,5)-P-C(96,3)-P-C(192,3)-C(192,3).")
        self.first = nn.ModuleList(cs[0] for cs in convs)
        self.first_block_chunk = first_block_chunk
        for i, g in [(1, _G4), (2, _G4), (3, _G2)]:
            # (T², S, C_in, C_out) → (T²·S, C_in, C_out): batch index = position · S + stream
            u = torch.stack([winograd_weights(cs[i], g) for cs in convs], 1)
            self.register_buffer(f"u{i + 1}", u.reshape(-1, *u.shape[2:]).contiguous())
            self.register_buffer(f"b{i + 1}", torch.stack([cs[i].bias.detach() for cs in convs])[:, None])  # (S, 1, C_out)
        # conv2's output transform with its 16 rows ordered (row % 2, col % 2, row // 2, col // 2):
        # the 2×2 max pooling is then the maximum of the four blocks of 4 rows
        order = [(2 * ya + yb) * 4 + 2 * xa + xb for yb in range(2) for xb in range(2) for ya in range(2) for xa in range(2)]
        self.register_buffer("a36_pool", _kron2(_AT4)[order].contiguous())
        self.register_buffer("b36", _kron2(_BT4))
        self.register_buffer("a36", _kron2(_AT4))
        self.register_buffer("b16", _kron2(_BT2))
        self.register_buffer("a16", _kron2(_AT2))

    def _first_block(self, xs: list[torch.Tensor]) -> torch.Tensor:
        """relu(maxpool(conv1(x))) of each stream as (S, n, 14, 14, 96), in chunks that keep the
        96×28×28 response in cache."""
        n, k = len(xs[0]), self.first_block_chunk
        h = xs[0].new_empty((len(xs), n, 14, 14, 96))
        for conv, x, out in zip(self.first, xs, h):
            for s in range(0, n, k):
                y = conv(x[s : s + k]).permute(0, 2, 3, 1)  # (k, 28, 28, 96) view of channels-last memory
                y = y.reshape(len(y), 14, 2, 14, 2, 96)
                rows = torch.maximum(y[:, :, 0], y[:, :, 1])  # (k, 14, 14, 2, 96)
                torch.maximum(rows[:, :, :, 0], rows[:, :, :, 1], out=out[s : s + k])
        return h.relu_()

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        n, ns = len(xs[0]), len(xs)
        h = self._first_block(xs)  # (S, n, 14, 14, 96)
        # conv2, F(4×4,3×3): 3×3 tiles of 6×6 at stride 4, gathered position-major (36, S·n·9·96)
        ss, s0, s1, s2, _ = h.stride()
        d = h.as_strided((6, 6, ns, n, 3, 3, 96), (s1, s2, ss, s0, 4 * s1, 4 * s2, 1)).reshape(36, -1)
        v = (self.b36 @ d).view(36 * ns, n * 9, 96)
        m = torch.bmm(v, self.u2)  # (36·S, n·9, 96)
        y = (self.a36_pool @ m.view(36, -1)).view(4, -1)  # (row%2 col%2, row//2 col//2 · S · n · tile · c)
        pooled = torch.maximum(torch.maximum(y[0], y[1]), torch.maximum(y[2], y[3])).view(2, 2, ns, n, 3, 3, 96)
        # 6×6 pooled maps, position-major: position (2·tile_row + row//2, 2·tile_col + col//2)
        p = pooled.permute(4, 0, 5, 1, 2, 3, 6).reshape(36, ns, n, 96).add_(self.b2).relu_()
        # conv3, one F(4×4,3×3) tile: 6×6 → 4×4
        v = (self.b36 @ p.view(36, -1)).view(36 * ns, n, 96)
        y = (self.a36 @ torch.bmm(v, self.u3).view(36, -1)).view(16, ns, n, 192).add_(self.b3).relu_()
        # conv4, one F(2×2,3×3) tile: 4×4 → 2×2
        v = (self.b16 @ y.view(16, -1)).view(16 * ns, n, 192)
        y = (self.a16 @ torch.bmm(v, self.u4).view(16, -1)).view(4, ns, n, 192).add_(self.b4).relu_()
        return y.permute(2, 1, 3, 0).reshape(n, ns * 768)  # (n, stream · 768 + c·4 + position)


class WinogradTwoChannel2Stream(nn.Module):
    """:class:`~patchmatch.models.twochannel.TwoChannel2Stream` for inference, with its 3×3
    convolutions computed by Winograd's minimal filtering (module docstring).

    Args:
        model: a trained 2ch-2stream (not modified; its 3×3 filters are copied and transformed).
        chunk: pairs per pass through the streams. Their tile arrays (both streams) take
            ~0.25 MB per pair, so small chunks stay in cache: on 2 cores 16 was the fastest
            measured, 32 and above up to 2× slower when other processes load the memory bus.
        first_block_chunk: pairs per first convolution (its 96×28×28 response per pair).

    Input: (B, 2, 64, 64) pixel values 0..255 (uint8 or float). Output: (B,) float32 scores, equal to
    ``model(x)`` up to float32 rounding.

    Raises:
        TypeError: ``model`` is not a TwoChannel2Stream.
        ValueError: its streams do not have the 2ch-2stream layers (as built by this package).
    """

    def __init__(self, model: TwoChannel2Stream, chunk: int = 16, first_block_chunk: int = 16):
        super().__init__()
        if not isinstance(model, TwoChannel2Stream):
            raise TypeError(f"Winograd inference is implemented for 2ch2stream, got {type(model).__name__}.")
        if chunk < 1 or first_block_chunk < 1:
            raise ValueError(f"chunk sizes must be >= 1, got {chunk} and {first_block_chunk}.")
        self.chunk = chunk
        self.streams = _WinogradStreams([model.central, model.surround], first_block_chunk)
        self.decision = model.decision

    @torch.inference_mode()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        centre, surround = normalized_central_surround(x)
        c = self.chunk
        feats = torch.cat([self.streams([centre[s : s + c], surround[s : s + c]]) for s in range(0, len(x), c)])
        return self.decision(feats).squeeze(1)
