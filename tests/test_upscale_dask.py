"""The dask path: the same tile function through map_overlap on a 2-worker LocalCluster."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import zarr
from test_upscale import _image, _make_model, _write_tif

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def cluster():
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as c:
        yield c


def test_dask_cluster_matches_local_path(tmp_path, cluster):
    import dask.array as da

    from dleem.upscale import distributed as dist
    from dleem.upscale import upscale_array, upscale_dask, upscale_file

    model_dir = _make_model(tmp_path / "model")
    img = _image((83, 101), np.uint8, seed=4)
    local = upscale_array(img, model_dir, tile=32, device="cpu")
    # API: a dask array in, through the cluster (each worker loads the folder once)
    dist._CACHE.clear()
    with distributed.Client(cluster) as client:
        lazy = upscale_dask(da.from_array(img, chunks=40), model_dir, tile=19, device="cpu")
        assert lazy.shape == (332, 404) and lazy.dtype == np.uint8
        out = client.compute(lazy).result()
    assert len(dist._CACHE) == 1
    d = np.abs(out.astype(int) - local.astype(int))
    assert d.max() <= 1 and (d > 0).mean() < 1e-3
    # CLI/API file path with --dask-scheduler: TIFF input staged to zarr, written to OME-TIFF
    src = _write_tif(tmp_path / "LR.tif", img)
    sr = upscale_file(src, model_dir, tmp_path / "SR.tif", tile=32, device="cpu",
                      dask_scheduler=cluster.scheduler_address)
    d = np.abs(tifffile.imread(sr).astype(int) - local.astype(int))
    assert d.max() <= 1 and (d > 0).mean() < 1e-3
    # a zarr input runs directly
    z = zarr.create_array(str(tmp_path / "LR.zarr"), shape=img.shape, dtype=img.dtype, chunks=(32, 32))
    z[:] = img
    sr = upscale_file(tmp_path / "LR.zarr", model_dir, tmp_path / "SR2.ome.zarr", tile=32,
                      device="cpu", dask_scheduler=cluster.scheduler_address)
    d = np.abs(np.asarray(zarr.open_group(str(sr))["0"]).astype(int) - local.astype(int))
    assert d.max() <= 1 and (d > 0).mean() < 1e-3


def test_dask_run_resumes_without_recomputing(tmp_path, cluster):
    from dleem.models import load_model
    from dleem.upscale import distributed as dist
    from dleem.upscale import stream, upscale_array, upscale_file

    model_dir = _make_model(tmp_path / "model")
    img = _image((64, 96), np.uint8, seed=6)
    src = _write_tif(tmp_path / "LR.tif", img)
    out = tmp_path / "SR.tif"
    m = load_model(model_dir)
    orig = m.generator.forward
    calls: list[int] = []

    def failing(x):
        if len(calls) >= 3:
            raise RuntimeError("worker lost (simulated)")
        calls.append(1)
        return orig(x)

    dist._CACHE.clear()
    dist._CACHE[(str(model_dir.resolve()), "cpu", False)] = m  # the (threaded) workers' model
    m.generator.forward = failing
    with pytest.raises(RuntimeError, match="simulated"):
        upscale_file(src, model_dir, out, tile=32, device="cpu", dask_scheduler=cluster.scheduler_address)
    assert not out.exists()
    done = (stream.work_store_path(out) / stream.PROGRESS_FILE).read_text().split()
    assert 1 <= len(done) <= 3
    calls.clear()
    m.generator.forward = lambda x: (calls.append(1), orig(x))[1]
    upscale_file(src, model_dir, out, tile=32, device="cpu", dask_scheduler=cluster.scheduler_address,
                 resume=True)
    assert len(calls) == 6 - len(done)  # 2 x 3 blocks
    d = np.abs(tifffile.imread(out).astype(int) - upscale_array(img, m, device="cpu").astype(int))
    assert d.max() <= 1 and (d > 0).mean() < 1e-3
    dist._CACHE.clear()
