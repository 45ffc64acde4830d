"""The PyTorch adapters: exactly once per epoch over DataLoader workers and ranks, map-style access, and a
tiny model that learns through the DataLoader on the CPU."""

from __future__ import annotations

import numpy as np
import pytest
from ml_helpers import CHUNKINGS, synthetic_cube, write_cube

torch = pytest.importorskip("torch", reason="the 'ml' extra (torch) is not installed")

from platform_lib.errors import EsdlError  # noqa: E402
from platform_lib.ml import SampleSpec, TrainingSet  # noqa: E402
from platform_lib.ml.torch import (  # noqa: E402
    ChunkAwareSampler,
    CubeIterableDataset,
    CubeMapDataset,
    make_dataloader,
    split_segment,
)

SPEC = SampleSpec(
    inputs=["air_temperature_2m", "kndvi"],
    targets="gross_primary_productivity",
    patch={"time": 8, "lat": 3, "lon": 4},
    stride={"time": 4},
)


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("ml-torch")
    cube = synthetic_cube(seed=1)
    return {name: write_cube(cube, root / f"{name}.zarr", chunks) for name, chunks in CHUNKINGS.items()}


def _ids(loader) -> list[int]:
    return [s for batch in loader for s in batch["sample"].tolist()]


@pytest.mark.filterwarnings("ignore:This DataLoader will create 3 worker processes")
@pytest.mark.parametrize("num_workers", [0, 1, 2, 3])
def test_each_sample_exactly_once_per_epoch_with_workers_and_two_ranks(stores, num_workers):
    ts = TrainingSet(stores["ts"], SPEC, nan="fill-mean", window=2)
    everything: list[int] = []
    for rank in range(2):
        loader = make_dataloader(ts, batch_size=16, num_workers=num_workers, seed=5, rank=rank, world_size=2)
        batch = next(iter(loader))
        assert batch["x"].dtype == torch.float32 and tuple(batch["x"].shape[1:]) == ts.x_shape
        assert not torch.isnan(batch["x"]).any()
        everything += _ids(loader)
    assert sorted(everything) == list(range(len(ts)))


@pytest.mark.parametrize("num_workers", [0, 2])
def test_batches_travel_in_segments_and_come_out_as_views(stores, num_workers):
    ts = TrainingSet(stores["ts"], SPEC, nan="fill-mean", window=2)
    loader = make_dataloader(ts, batch_size=16, num_workers=num_workers, seed=5)
    raw = torch.utils.data.DataLoader(loader.dataset, batch_size=None, num_workers=num_workers)
    sent = list(raw)  # the items the DataLoader moves (across processes with workers), before splitting
    assert sent and all("_esdl_batch_sizes" in item for item in sent)
    n_batches = sum(len(split_segment(item)) for item in sent)
    assert len(sent) < n_batches / 4  # many batches per item: the per-item cost is paid per segment
    ids: list[int] = []
    for batch in loader:
        assert {"x", "y", "sample"} <= set(batch) and "_esdl_batch_sizes" not in batch
        assert tuple(batch["x"].shape[1:]) == ts.x_shape and batch["x"].dtype == torch.float32
        assert batch["x"]._base is not None  # a view of its segment, not a copy
        ids += batch["sample"].tolist()
    assert sorted(ids) == list(range(len(ts)))
    # the same values as the dataset's batch-by-batch iteration (no segments)
    plain = {
        int(s): x
        for b in torch.utils.data.DataLoader(CubeIterableDataset(ts, 7, seed=5), batch_size=None)
        for s, x in zip(b["sample"], b["x"], strict=True)
    }
    for batch in loader:
        for s, x in zip(batch["sample"], batch["x"], strict=True):
            torch.testing.assert_close(x, plain[int(s)])


class _SharedReportingDataset(CubeIterableDataset):
    """Segments plus whether their inputs were in shared memory before they left the worker."""

    def __iter__(self):
        for item in super().__iter__():
            x = item["x"]
            yield {**item, "x_was_shared": isinstance(x, torch.Tensor) and x.is_shared()}


@pytest.mark.parametrize("share_above", [0, None])
def test_a_worker_cuts_large_segments_into_shared_memory_and_pickles_small_ones(
    stores, monkeypatch, share_above
):
    import platform_lib.ml.torch as ml_torch

    if share_above is not None:  # every array counts as large (workers are forked: they see this)
        monkeypatch.setattr(ml_torch, "SHARE_ABOVE", share_above)
    ts = TrainingSet(stores["map"], SPEC, nan="fill-mean")
    collate = make_dataloader(ts, batch_size=16, num_workers=2).collate_fn  # what the loader uses
    dataset = _SharedReportingDataset(ts, batch_size=16, seed=2, grouped=True)
    items = list(torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=2, collate_fn=collate))
    whole = [i for i in items if len(i["_esdl_batch_sizes"]) > 1]  # not a batch carried between windows
    assert whole
    if share_above == 0:  # cut into shared memory: no copy into a segment to send it
        assert all(i["x_was_shared"] and isinstance(i["x"], torch.Tensor) for i in whole)
    else:  # this cube's segments are small: numpy arrays through the pipe, no shared memory
        assert all(isinstance(i["x"], np.ndarray) and not i["x_was_shared"] for i in items)
    assert all(isinstance(i["sample"], np.ndarray) for i in items)  # ids never take a segment
    ids = sorted(s for i in items for s in i["sample"].tolist())
    assert ids == list(range(len(ts)))


def test_set_epoch_reshuffles_and_the_same_seed_repeats(stores):
    ts = TrainingSet(stores["map"], SPEC, normalise=False)
    dataset = CubeIterableDataset(ts, batch_size=8, seed=11)
    loader = torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=0)
    first = _ids(loader)
    assert _ids(loader) == first
    dataset.set_epoch(1)
    second = _ids(loader)
    assert second != first and sorted(second) == sorted(first) == list(range(len(ts)))


def test_map_style_dataset_and_chunk_aware_sampler(stores):
    ts = TrainingSet(stores["ts"], SPEC, nan="drop-any", normalise=False)
    loader = make_dataloader(ts, batch_size=10, map_style=True, seed=2)
    ds: CubeMapDataset = loader.dataset
    assert len(ds) < len(ts)  # the NaN drop happened up front
    ids = _ids(loader)
    assert sorted(ids) == list(range(len(ds)))
    batch = next(iter(loader))
    assert not torch.isnan(batch["x"]).any() and not torch.isnan(batch["y"]).any()
    one = ds[int(batch["sample"][0])]
    torch.testing.assert_close(one["x"], batch["x"][0])
    ranks = [list(ChunkAwareSampler(ds.training_set, seed=2, rank=r, world_size=2)) for r in range(2)]
    assert sorted(ranks[0] + ranks[1]) == list(range(len(ds))) and not set(ranks[0]) & set(ranks[1])
    # block-ordered access decodes each block once
    assert ds.training_set._cache.misses <= ds.training_set.plan.n_blocks


def test_a_tiny_model_learns_through_the_dataloader_on_cpu(stores):
    torch.manual_seed(0)
    spec = SampleSpec(
        inputs=["air_temperature_2m", "kndvi"],
        targets="gross_primary_productivity",
        patch={"time": 8, "lat": 3, "lon": 4},
        stride={"time": 2, "lat": 1, "lon": 1},
    )
    ts = TrainingSet(stores["ts"], spec, nan="drop-any")
    model = torch.nn.Sequential(
        torch.nn.Conv3d(2, 8, kernel_size=3, padding=1), torch.nn.ReLU(), torch.nn.Conv3d(8, 1, kernel_size=1)
    )
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    loader = make_dataloader(ts, batch_size=32, num_workers=0, seed=0)
    losses = []
    for step, batch in enumerate(loader):
        loss = torch.nn.functional.mse_loss(model(batch["x"]), batch["y"])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
        if step == 40:
            break
    assert len(losses) > 20
    print("losses", [round(v, 3) for v in losses])
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5]), losses


class _ThreadReportingDataset(CubeIterableDataset):
    """Batches plus the read threads the process that cut them used."""

    def __iter__(self):
        for batch in super().__iter__():
            ts = self.training_set
            yield {**batch, "threads": torch.tensor([ts.threads, ts.reader.threads])}


@pytest.mark.parametrize("num_workers", [0, 2])
def test_workers_divide_the_read_threads_between_them(stores, num_workers):
    ts = TrainingSet(stores["ts"], SPEC, nan="fill-mean", threads=2)
    ts.reader.threads = 4
    dataset = _ThreadReportingDataset(ts, batch_size=32, seed=1)
    loader = torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=num_workers)
    seen = {tuple(b["threads"].tolist()) for b in loader}
    assert seen == ({(1, 2)} if num_workers == 2 else {(2, 4)})
    assert (ts.threads, ts.reader.threads) == (2, 4)  # the main process's set is left as it was


def test_set_epoch_reaches_persistent_workers(stores):
    ts = TrainingSet(stores["ts"], SPEC, normalise=False)
    loader = make_dataloader(ts, batch_size=16, num_workers=1, persistent_workers=True, seed=3)
    first = _ids(loader)
    loader.dataset.set_epoch(1)
    second = _ids(loader)
    assert sorted(first) == sorted(second) == list(range(len(ts)))
    assert first != second  # the worker process saw the new epoch
    loader.dataset.set_epoch(0)
    assert _ids(loader) == first


def test_even_shards_give_every_rank_the_same_number_of_steps(stores):
    ts = TrainingSet(stores["ts"], SPEC, nan="drop-any", normalise=False)
    assert ts.plan.n_blocks >= 3
    steps, seen = [], []
    for rank in range(3):
        loader = make_dataloader(ts, batch_size=8, seed=1, rank=rank, world_size=3, even=True)
        ids = _ids(loader)
        steps.append(sum(1 for _ in loader))
        seen += ids
    assert len(set(steps)) == 1  # DistributedDataParallel needs the same number of steps on every rank
    assert len(seen) == len(set(seen))  # still never twice
    assert len(seen) == 3 * loader.dataset.even_limit(0, 3) > 0  # each shard: the smallest shard's size
    few = TrainingSet(stores["map"], SPEC, normalise=False)
    if few.plan.n_blocks < 8:
        with pytest.raises(EsdlError, match="even=True over 8 shards .* leaves nothing"):
            list(make_dataloader(few, batch_size=8, rank=0, world_size=8, even=True))


def test_persistent_workers_by_default_still_cover_each_epoch_with_its_own_shuffle(stores):
    """Workers live across epochs (the default with num_workers > 0), and each epoch is still every sample
    once, in the order of that epoch's shuffle."""
    ts = TrainingSet(stores["ts"], SPEC, nan="fill-mean", window=2)
    loader = make_dataloader(ts, batch_size=16, num_workers=2, seed=3)
    assert loader.persistent_workers
    orders = []
    for epoch in range(3):
        loader.dataset.set_epoch(epoch % 2)  # epochs 0, 1, then 0 again
        orders.append([int(s) for b in loader for s in b["sample"]])
        assert sorted(orders[-1]) == list(range(len(ts)))
    assert orders[0] != orders[1] and orders[0] == orders[2]  # the same seed and epoch: the same order
    first_workers = loader._iterator._workers if loader._iterator is not None else None
    assert first_workers is not None and all(w.is_alive() for w in first_workers)
