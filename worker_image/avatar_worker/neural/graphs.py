"""The two halves of a pass (audio: log-mel and whisper's encoder; face: UNet step and VAE
decode) replayed from CUDA graphs.

Run eagerly, the CPU spends about 30 ms launching the UNet's and the VAE's kernels whatever
the batch (bench/gpu_renderer.py on an H200: 34 ms for one frame, 58 ms for eight), longer
than the GPU's own work for a few sessions, and every launch competes for the GIL with the
sessions' compositing threads. A graph captured once per batch size replays all of them in one
launch. A batch is padded up to the next captured size (powers of two up to the model's
`max_batch`; rows are independent, so the padding rows' output is simply unused); a larger one
runs eagerly. CUDA only: on the CPU the model always runs eagerly.

The graphs are captured when the model loads, before any session can use the GPU from
another thread, with cuDNN choosing the fastest convolution for each size, and replayed by the
pass thread alone; their outputs are overwritten by the next replay, so a caller copies or
consumes them first.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

MAX_BATCH = 32
WARMUP_RUNS = 3  # before capture, on a side stream, as torch.cuda.graph asks

Shape = tuple[int, ...]


def batch_sizes(max_batch: int = MAX_BATCH) -> list[int]:
    """The captured sizes: 1, 2, 4, ... below `max_batch`, then `max_batch` itself (padding
    wastes under half). A pool worker's largest batch is a frame from each of its slots."""
    sizes = [1]
    while sizes[-1] * 2 < max_batch:
        sizes.append(sizes[-1] * 2)
    if max_batch > 1:
        sizes.append(max_batch)
    return sizes


def size_for(frames: int, sizes: Sequence[int]) -> int | None:
    """The smallest captured size that holds `frames`; None when none does."""
    return min((size for size in sizes if size >= frames), default=None)


@dataclass
class _Graph:
    graph: torch.cuda.CUDAGraph
    inputs: list[torch.Tensor]  # static, (size, *row shape) each
    output: torch.Tensor  # static


class BatchGraphs:
    """`call(*inputs)` for batches of rows, captured at each of `sizes`. `rows` gives each
    input's row shape and dtype."""

    def __init__(
        self,
        call: Callable[..., torch.Tensor],
        rows: Sequence[tuple[Shape, torch.dtype]],
        *,
        device: torch.device,
        sizes: Sequence[int],
    ) -> None:
        self.sizes = sorted(sizes)
        self.replays = 0
        self._graphs: dict[int, _Graph] = {}
        pool = torch.cuda.graph_pool_handle()
        with torch.backends.cudnn.flags(enabled=True, benchmark=True):
            # Largest first: the smaller graphs then fit in the memory the largest one took.
            for size in reversed(self.sizes):
                inputs = [torch.zeros((size, *row), device=device, dtype=dt) for row, dt in rows]
                side = torch.cuda.Stream(device)  # type: ignore[no-untyped-call]
                side.wait_stream(torch.cuda.current_stream(device))
                with torch.cuda.stream(side):
                    for _ in range(WARMUP_RUNS):
                        call(*inputs)
                torch.cuda.current_stream(device).wait_stream(side)
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph, pool=pool):
                    output = call(*inputs)
                self._graphs[size] = _Graph(graph, inputs, output)

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor | None:
        """The call's output for these rows (a view valid until the next call), or None when
        the batch is larger than any graph."""
        frames = inputs[0].shape[0]
        size = size_for(frames, self.sizes)
        if size is None:
            return None
        graph = self._graphs[size]
        for static, given in zip(graph.inputs, inputs, strict=True):
            static[:frames].copy_(given)
        graph.graph.replay()
        self.replays += 1
        return graph.output[:frames]
