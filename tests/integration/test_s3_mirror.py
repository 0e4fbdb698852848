"""Run folders mirrored to S3-compatible storage: moto's S3 server on loopback, through s3fs.

The worker is a real process started by ``submit``; it reaches the storage through the
environment a node would have (``AWS_*`` keys and endpoint), never through the
spec or the store.
"""

from __future__ import annotations

import io
import shutil
import time
from collections.abc import Iterator

import pytest
from moto.moto_server.threaded_moto_server import ThreadedMotoServer
from PIL import Image
from specs import tiny_spec

from tlcore.deploy.serving import load_run
from tlcore.records import RunStatus
from tlcore.runs import artifact_mirror, jobs
from tlcore.runs.store import RunStore

pytestmark = pytest.mark.integration
BUCKET = "tl-runs"


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    import s3fs

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1",
                        "AWS_ENDPOINT_URL_S3": f"http://{host}:{port}"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("TL_ARTIFACTS_URL", f"s3://{BUCKET}/studio")
    artifact_mirror._filesystem.cache_clear()
    fs = s3fs.S3FileSystem(endpoint_url=f"http://{host}:{port}", skip_instance_cache=True)
    fs.mkdir(BUCKET)
    yield fs
    artifact_mirror._filesystem.cache_clear()
    server.stop()


def test_a_run_trained_by_a_worker_is_in_the_bucket_and_a_node_without_it_fetches_it(s3, monkeypatch) -> None:
    store = RunStore()
    run_id = jobs.submit(tiny_spec("frozen", epochs=1), store).run.id
    deadline = time.monotonic() + 240
    while store.get(run_id).is_active:
        assert time.monotonic() < deadline
        time.sleep(0.5)
    run = store.get(run_id)
    log = store.artifacts(run_id).worker_log
    assert run.status is RunStatus.FINISHED, (run.error, log.read_text()[-2000:])
    stored = {path.rsplit("/", 1)[-1] for path in s3.find(f"{BUCKET}/studio/runs/{run_id}")}
    assert {"model.keras", "report.json", "run.json", "class_names.json"} <= stored

    shutil.rmtree(store.artifact_dir(run_id))  # a node that never had the folder
    monkeypatch.setattr(artifact_mirror, "_last_pull", {})
    monkeypatch.setattr(artifact_mirror, "_pushed", {})
    assert store.artifacts(run_id).report.exists()
    buffer = io.BytesIO()
    Image.new("RGB", (24, 24), (30, 200, 30)).save(buffer, format="PNG")
    assert load_run(run_id, store).predict([buffer.getvalue()])[0]
