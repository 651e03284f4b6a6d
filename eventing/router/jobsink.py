"""A Knative JobSink (sinks.knative.dev/v1alpha1) on one machine: every event it receives runs its Job's container
command once, as a local process.

On a cluster, the JobSink is an Addressable: a Trigger delivers to it over HTTP, it creates one Kubernetes Job per
event from `spec.job` and answers 202 once the Job exists; the Job's pod finds the event as a JSON file (the
CloudEvent in structured mode) mounted at /etc/jobsink-event/event. Here the router serves each JobSink on its own
127.0.0.1 port (a free one), and for each event:

- writes the structured event to `<data dir>/run/jobsinks/<namespace>-<name>/<job>/event` and runs the first
  container's `command` + `args` (`python` is this interpreter) with the platform's function environment
  (`Settings.function_env()`: the same names the cluster's ConfigMap sets), the container's literal `env` values,
  and `COELHO_JOBSINK_EVENT` = the event file's path (the one difference with a cluster);
- answers 202 once the process started (500 when it could not start: the Trigger retries), and 202 again without
  a second process for an event whose source and id it has already run (a redelivery), as the JobSink names its
  Job after the event;
- keeps the process's output in `job.log` beside the event; the router ends the processes still running when it
  stops.

A Job's success or failure is its own (its exit code, in `<job>/exit_code`): the event was delivered when the Job
started, as on a cluster.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eventing.router.event import InvalidEvent, WireEvent
from eventing.router.httpserver import (
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_TIMEOUT_S,
    BodyError,
    BoundedHandler,
    bounded_handler,
    serve,
)

log = logging.getLogger(__name__)

CLUSTER_EVENT_PATH = "/etc/jobsink-event/event"  # where Knative mounts the event in the Job's pod
EVENT_PATH_ENV = "COELHO_JOBSINK_EVENT"  # where the local router wrote it
STOP_WAIT_S = 1.0  # a running job's time to end on SIGTERM when the router stops (inside its stop budget)


@dataclass(frozen=True)
class JobSink:
    """A JobSink manifest: the first container of its Job template, what the router runs."""

    namespace: str
    name: str
    command: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)  # literal values only (valueFrom: the cluster's)

    @classmethod
    def parse(cls, namespace: str, name: str, spec: Mapping[str, Any]) -> JobSink:
        from eventing.router.manifests import ManifestError

        pod = (((spec.get("job") or {}).get("spec") or {}).get("template") or {}).get("spec") or {}
        containers = pod.get("containers") or []
        if not containers:
            raise ManifestError(f"JobSink {namespace}/{name}: spec.job has no container to run")
        container = containers[0]
        command = [str(c) for c in (container.get("command") or [])] + [str(a) for a in (container.get("args") or [])]
        if not command:
            raise ManifestError(f"JobSink {namespace}/{name}: the container names no command (the image's is unknown)")
        env = {str(e["name"]): str(e["value"]) for e in container.get("env") or [] if "value" in e}
        return cls(namespace, name, tuple(command), env)


def job_name(sink: JobSink, event: WireEvent) -> str:
    """The Job of an event: one per (source, id), so a redelivery finds the Job it already started."""
    digest = hashlib.sha256(f"{event.get('source')}\n{event.get('id')}".encode()).hexdigest()[:16]
    return f"{sink.name}-{digest}"


class LocalJobSink:
    """Serves one JobSink on 127.0.0.1 (see the module's docstring)."""

    def __init__(
        self,
        sink: JobSink,
        host: str,
        workdir: Path,
        environ: Mapping[str, str],
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        timeout: float = DEFAULT_TIMEOUT_S,
    ):
        self.sink = sink
        self.workdir = workdir / f"{sink.namespace}-{sink.name}"
        self.environ = dict(environ)
        self.jobs: dict[str, subprocess.Popen[bytes]] = {}
        self.started = 0  # processes started: one per distinct event
        self._lock = threading.Lock()
        self.server = serve(host, 0, bounded_handler(self._handler_class(), max_body_bytes, timeout))
        self._thread = threading.Thread(target=self.server.serve_forever, name=f"jobsink-{sink.name}", daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{int(port)}/"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        with self._lock:
            running = [p for p in self.jobs.values() if p.poll() is None]
        for proc in running:
            proc.send_signal(signal.SIGTERM)
        for proc in running:
            try:
                proc.wait(timeout=STOP_WAIT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def run(self, event: WireEvent) -> tuple[str, bool]:
        """Start the Job of `event` unless it exists: (job name, whether it was started now)."""
        name = job_name(self.sink, event)
        with self._lock:
            if name in self.jobs:
                return name, False
            folder = self.workdir / name
            folder.mkdir(parents=True, exist_ok=True)
            event_file = folder / "event"
            event_file.write_text(json.dumps(event.structured()))
            command = [sys.executable if c == "python" else c for c in self.sink.command]
            env = {**os.environ, **self.sink.env, **self.environ, EVENT_PATH_ENV: str(event_file)}
            with (folder / "job.log").open("wb") as output:
                proc = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT, cwd=os.getcwd())
            self.jobs[name] = proc
            self.started += 1
        threading.Thread(target=self._await, args=(name, proc, folder), name=f"job-{name}", daemon=True).start()
        log.info("JobSink %s: job %s started for event %s (pid %d)", self.sink.name, name, event.get("id"), proc.pid)
        return name, True

    def _await(self, name: str, proc: subprocess.Popen[bytes], folder: Path) -> None:
        code = proc.wait()
        (folder / "exit_code").write_text(f"{code}\n")
        log.log(
            logging.INFO if code == 0 else logging.WARNING, "JobSink %s: job %s ended (%d)", self.sink.name, name, code
        )

    def _handler_class(self) -> type[BoundedHandler]:
        jobsink = self

        class Handler(BoundedHandler):
            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                try:
                    body = self.read_body()
                except BodyError as exc:
                    self.body_error(exc)
                    return
                try:
                    event = WireEvent.from_http(dict(self.headers.items()), body)
                except InvalidEvent as exc:
                    self.reply(400, f"not a valid CloudEvent: {exc}")
                    return
                try:
                    name, _started = jobsink.run(event)
                except OSError as exc:  # the command could not start: the Trigger retries
                    log.error("JobSink %s: cannot start a job: %s", jobsink.sink.name, exc)
                    self.reply(500, "the job could not be started")
                    return
                self.reply(202, headers={"Location": f"/jobs/{name}"})

        return Handler
