"""Beam's local job service, with each job's work spread over several worker pools.

Beam's own Python job service runs a job on one SDK worker: it never reads
the number of workers from the job's options. This entrypoint runs that same
service with two changes, both through Beam's public extension points:

- every job runs with one SDK worker per worker pool, and Beam's runner then
  splits each stage's bundles among them;
- the workers' EXTERNAL environment points at a dispatcher that hands each
  `StartWorker` call to the next pool in turn, and each `StopWorker` call to
  the pool that started that worker.

Run it as

    python -m zenml.integrations.beam.jobservice --port 8099 \\
        --worker-pools localhost:50000,localhost:50001 --dispatcher-port 50100

and submit with `environment_config=localhost:50100`. The job service and
every pool must share one network namespace: Beam tells workers to call the
job service back on `localhost`.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import threading
from collections.abc import Sequence
from concurrent import futures
from typing import Any

import grpc
from apache_beam.portability.api import (
    beam_fn_api_pb2,
    beam_fn_api_pb2_grpc,
    beam_job_api_pb2,
)
from apache_beam.runners.portability import local_job_service
from apache_beam.runners.portability.fn_api_runner import fn_runner

logger = logging.getLogger(__name__)

READY = "Listening for beam jobs"


class WorkerPoolDispatcher(beam_fn_api_pb2_grpc.BeamFnExternalWorkerPoolServicer):
    """One worker-pool address in front of several pools, taken in turn."""

    def __init__(self, pools: Sequence[str], *, timeout: float = 60.0) -> None:
        if not pools:
            raise ValueError("the dispatcher needs at least one worker pool")
        self._stubs = {
            address: beam_fn_api_pb2_grpc.BeamFnExternalWorkerPoolStub(
                grpc.insecure_channel(address)
            )
            for address in pools
        }
        self._turns = itertools.cycle(pools)
        self._owners: dict[str, str] = {}
        self._lock = threading.Lock()
        self._timeout = timeout

    def StartWorker(  # noqa: N802 (gRPC's method name)
        self, request: beam_fn_api_pb2.StartWorkerRequest, context: Any
    ) -> beam_fn_api_pb2.StartWorkerResponse:
        with self._lock:
            pool = next(self._turns)
            self._owners[request.worker_id] = pool
        logger.info("worker %s starts in the pool at %s", request.worker_id, pool)
        try:
            return self._stubs[pool].StartWorker(request, timeout=self._timeout)
        except grpc.RpcError as exc:
            return beam_fn_api_pb2.StartWorkerResponse(
                error=f"the worker pool at {pool} did not start a worker: {exc}"
            )

    def StopWorker(  # noqa: N802 (gRPC's method name)
        self, request: beam_fn_api_pb2.StopWorkerRequest, context: Any
    ) -> beam_fn_api_pb2.StopWorkerResponse:
        with self._lock:
            pool = self._owners.pop(request.worker_id, None)
        if pool is None:
            return beam_fn_api_pb2.StopWorkerResponse()
        try:
            return self._stubs[pool].StopWorker(request, timeout=self._timeout)
        except grpc.RpcError as exc:
            return beam_fn_api_pb2.StopWorkerResponse(error=str(exc))


def job_type(workers: int) -> type[local_job_service.BeamJob]:
    """A BeamJob whose runner uses `workers` SDK workers per environment."""
    if workers < 1:
        raise ValueError(f"workers must be 1 or more, not {workers}")

    class SpreadBeamJob(local_job_service.BeamJob):
        def _invoke_runner(self) -> Any:
            self.set_state(beam_job_api_pb2.JobState.RUNNING)
            runner = fn_runner.FnApiRunner(provision_info=self._provision_info)
            if not hasattr(runner, "_num_workers"):
                raise RuntimeError(
                    "this Beam release's FnApiRunner has no worker count to set; "
                    "run Beam's own local_job_service_main instead"
                )
            runner._num_workers = workers
            return runner.run_via_runner_api(
                self._pipeline_proto, self.pipeline_options()
            )

    return SpreadBeamJob


def serve(
    port: int, pools: Sequence[str], dispatcher_port: int
) -> tuple[local_job_service.LocalJobServicer, grpc.Server]:
    """Start the dispatcher and the job service; both serve until stopped."""
    dispatcher = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    beam_fn_api_pb2_grpc.add_BeamFnExternalWorkerPoolServicer_to_server(
        WorkerPoolDispatcher(pools), dispatcher
    )
    dispatcher.add_insecure_port(f"localhost:{dispatcher_port}")
    dispatcher.start()
    servicer = local_job_service.LocalJobServicer(beam_job_type=job_type(len(pools)))
    bound = servicer.start_grpc_server(port)
    logger.info(
        "%s on port %d, %d workers per job over %s",
        READY,
        bound,
        len(pools),
        ", ".join(pools),
    )
    return servicer, dispatcher


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8099)
    parser.add_argument(
        "--worker-pools",
        required=True,
        help="comma-separated HOST:PORT of worker_pool_main processes",
    )
    parser.add_argument("--dispatcher-port", type=int, default=50100)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(levelname)s %(message)s", force=True
    )
    pools = [pool for pool in args.worker_pools.split(",") if pool]
    servicer, dispatcher = serve(args.port, pools, args.dispatcher_port)
    try:
        threading.Event().wait()
    finally:
        dispatcher.stop(1)
        servicer.stop()


if __name__ == "__main__":
    main()
