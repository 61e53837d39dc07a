"""The audio and face halves of a pass replayed from CUDA graphs: a batch is padded up to a
captured size, and what the graphs produce is what the eager model produces. The replay test
needs a CUDA GPU and is skipped without one (run this file on a GPU machine); the sizing tests
run everywhere."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from avatar_worker.neural.graphs import MAX_BATCH, batch_sizes, size_for
from avatar_worker.neural.model import MuseTalk, load_networks
from worker_image.tests.neural_support import write_tiny


def test_sizes_are_powers_of_two_up_to_the_largest_batch() -> None:
    assert batch_sizes(32) == [1, 2, 4, 8, 16, 32]
    assert batch_sizes(6) == [1, 2, 4, 6]  # a worker with six slots
    assert batch_sizes(1) == [1]


@pytest.mark.parametrize(("frames", "size"), [(1, 1), (3, 4), (4, 4), (5, 8), (32, 32), (33, None)])
def test_a_batch_runs_in_the_smallest_graph_that_holds_it(frames: int, size: int | None) -> None:
    assert size_for(frames, batch_sizes(32)) == size


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA GPU")
def test_graphs_render_what_the_eager_model_renders(tmp_path: Path) -> None:
    directory = write_tiny(tmp_path)
    graphed = MuseTalk(load_networks(directory))
    eager = MuseTalk(load_networks(directory), cuda_graphs=False)
    assert eager.audio_graphs is None
    assert eager.face_graphs is None
    audio, face = graphed.audio_graphs, graphed.face_graphs
    assert audio is not None, "audio graphs were not captured (see the log)"
    assert face is not None, "face graphs were not captured (see the log)"
    rng = np.random.default_rng(0)
    generator = torch.Generator(device="cuda").manual_seed(0)
    side, tokens = graphed.config.latent_size, graphed.tokens_per_frame
    for frames in (1, 3, 8, MAX_BATCH + 1):  # 3 is padded to 4; 33 has no graph
        graphed_once = frames <= MAX_BATCH
        windows = [
            (rng.standard_normal(graphed.mel.n_samples // (i + 1)) * 0.1).astype(np.float32)
            for i in range(frames)
        ]
        replays = audio.replays
        got_features = graphed.features(windows).clone()
        assert audio.replays == replays + graphed_once
        torch.testing.assert_close(got_features, eager.features(windows), atol=2e-2, rtol=2e-2)

        latents = torch.randn(
            (frames, 8, side, side), generator=generator, device="cuda", dtype=graphed.dtype
        )
        prompts = torch.randn(
            (frames, tokens, graphed.config.audio_dim),
            generator=generator,
            device="cuda",
            dtype=graphed.dtype,
        )
        replays = face.replays
        got, expected = graphed.generate(latents, prompts), eager.generate(latents, prompts)
        assert face.replays == replays + graphed_once
        assert got.shape == expected.shape == (frames, *expected.shape[1:])
        # cuDNN picks other convolution kernels for a graph (on an H200: at most 3 levels,
        # 0.12 on average, at 3 frames), where a row mix-up or a stale buffer would change
        # whole faces.
        difference = np.abs(got.astype(int) - expected.astype(int))
        assert difference.max() <= 3, frames
        assert difference.mean() < 0.5, frames
