"""Encode jobs through a real two-worker Dask cluster and a local process pool give the eval the
same files as an in-process run; failed jobs are retried; finished files are reused."""
import json

import numpy as np
import pytest

pytest.importorskip("torch")
distributed = pytest.importorskip("distributed")
pytestmark = pytest.mark.slow

from lotterycodec import evaluation as evaluate  # noqa: E402
from lotterycodec.evaluation import jobs  # noqa: E402
from lotterycodec.evaluation.run import our_curve  # noqa: E402

SETTINGS = dict(lmbdas=[1e-2, 1e-3], preset="fast", steps=4, codecs=["jpeg"], batch=1, progress=False,
                arch={"stripe_height": 8, "shared_max_pixels": 64})


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, bundled_image):
    from PIL import Image
    folder = tmp_path_factory.mktemp("tiny_dataset")
    for name, (y, x) in {"one": (0, 0), "two": (40, 50)}.items():
        Image.fromarray(np.ascontiguousarray(bundled_image[y:y + 24, x:x + 24])).save(folder / f"{name}.png")
    return folder


@pytest.fixture(scope="module")
def local_run(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("local")
    return out, evaluate.run(str(dataset), out=str(out), **SETTINGS)


def _files(out):
    return {p.name: p.read_bytes() for p in sorted((out / "files").glob("*.lotc"))}


def _same_results(a, b):
    """Same files decoded to the same points (float training may differ across thread counts)."""
    assert set(_files(a[0])) == set(_files(b[0])) and len(_files(a[0])) == 4
    name = our_curve("fast", 0.7, SETTINGS["arch"])  # the run changed arch fields: they are in its name
    assert name == "lotterycodec-fast-shared_max_pixels64-stripe_height8"
    ours_a = a[1]["curves"][name]
    ours_b = b[1]["curves"][name]
    for pa, pb in zip(ours_a, ours_b):
        assert abs(pa["bpp"] - pb["bpp"]) <= 0.05 * pa["bpp"] and abs(pa["psnr"] - pb["psnr"]) <= 0.3


def test_eval_through_a_local_dask_cluster(dataset, local_run, tmp_path):
    from distributed import LocalCluster
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        report = evaluate.run(str(dataset), out=str(tmp_path), cluster=cluster.scheduler_address, **SETTINGS)
    assert report["engine"].startswith("dask cluster tcp://")
    _same_results(local_run, (tmp_path, report))
    assert (tmp_path / "per_image.tsv").exists() and json.loads((tmp_path / "summary.json").read_text())


def test_eval_on_a_local_process_pool(dataset, local_run, tmp_path):
    report = evaluate.run(str(dataset), out=str(tmp_path), workers=2, **SETTINGS)
    assert report["engine"] == "local, 2 process(es)"
    _same_results(local_run, (tmp_path, report))


def test_finished_files_are_not_encoded_again(dataset, local_run, monkeypatch):
    out, _ = local_run
    before = _files(out)
    monkeypatch.setattr(jobs, "run_encode_job", lambda *a, **k: pytest.fail("re-encoded a finished file"))
    evaluate.run(str(dataset), out=str(out), **SETTINGS)
    assert _files(out) == before


def test_failed_jobs_are_retried_then_reported(dataset, tmp_path, monkeypatch):
    calls = []
    real = jobs.run_encode_job

    def flaky(job, progress=False):
        calls.append((job.name, tuple(job.lmbdas)))
        if calls.count(calls[-1]) == 1:
            raise OSError("worker lost")
        return real(job, progress)
    monkeypatch.setattr(jobs, "run_encode_job", flaky)
    evaluate.run(str(dataset), out=str(tmp_path / "a"), **SETTINGS)
    assert len(calls) == 8  # 4 jobs, each failed once

    monkeypatch.setattr(jobs, "run_encode_job", lambda job, progress=False: (_ for _ in ()).throw(OSError("down")))
    with pytest.raises(RuntimeError, match="4 encode job.s. failed after 2 tries"):
        evaluate.run(str(dataset), out=str(tmp_path / "b"), retries=1, **SETTINGS)
