"""The batch emulation across processes (``facegate_local.batch_processes``): moto as
servers of their own and worker instances as processes reach the same outcome as the
in-process emulation: every line answered once, by the worker processes, not the driver."""

from __future__ import annotations

import json
import os

from facegate_local.batch import LocalBatches, reset_caches
from facegate_local.batch_processes import MotoServers, WorkerProcesses

from .batchkit import STAGE, compare_line


def test_a_batch_runs_against_moto_servers_with_worker_processes(shuxun, small_photos):
    shuxun.reset()
    saved = dict(os.environ)
    servers = MotoServers()
    try:
        os.environ.update(servers.environment())
        local = LocalBatches(
            stage=STAGE,
            region="us-east-1",
            secret_values={
                f"facegate/{STAGE}/vendors/shuxun": json.dumps({**shuxun.default_credentials(), "endpoint": shuxun.url})
            },
            env_overrides={"FACEGATE_DEFAULT_VENDOR": "shuxun", "POWERTOOLS_LOG_LEVEL": "ERROR"},
        )
        for name, data in small_photos.items():
            local.upload(f"photos/{name}", data)
        items = 12
        with WorkerProcesses(local, workers=2) as pool:
            local.upload("batches/procs.jsonl", "".join(compare_line(i) + "\n" for i in range(1, items + 1)).encode())
            meta = local.run("procs", poll_items=False, timeout_s=300, between_polls=pool.check)
            stats = pool.stop()
        assert meta.status == "done"
        report = local.report("procs")
        assert sorted(r["line"] for r in report) == list(range(1, items + 1))
        assert all("result" in r for r in report)
        assert local.worker.invocations == 0  # the driver never polled the item queue
        assert sum(s["invocations"] for s in stats) >= 2  # 12 items in batches of up to 10
        assert shuxun.requests == items
        assert servers.costs()  # the servers answered the calls, not an in-process mock
    finally:
        servers.stop()
        os.environ.clear()
        os.environ.update(saved)
        reset_caches()
