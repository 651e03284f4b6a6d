"""One batch study as a Job: what the JobSink `coelho-batch-study` runs for each
`com.coelho.realtime.batch.study.requested` event (knative/eventing/batch-jobsink.yaml).

Run: `python -m functions.batch.job`. The event is read from the file Knative's JobSink mounts in the Job's pod,
/etc/jobsink-event/event (the CloudEvent in structured JSON), or from the file `COELHO_JOBSINK_EVENT` names (the
local router writes it there, eventing/router/jobsink.py). Its data:

    {"domain": "tfd", "version": 12, "model": "hist_gradient_boosting", "rows": 50000, "truth_seed": 42,
     "online": true}

`domain` is required; the rest is optional, as the options of `coelho batch train`. The study runs, is logged to
MLflow and its model registered exactly as `coelho batch train` does it (the run's params carry the event's id as
`requested_by`). Exit 0 once logged; 2 when the event cannot make a study (not the type, bad data, a `StudyError`:
retrying cannot help, so the Job template sets no retries); 1 when MLflow did not take it.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from eventing.cloudevent_types import BATCH_STUDY_REQUESTED

CLUSTER_EVENT_PATH = "/etc/jobsink-event/event"
EVENT_PATH_ENV = "COELHO_JOBSINK_EVENT"
OPTIONS = {"version": int, "model": str, "rows": int, "truth_seed": int, "online": bool}


class BadRequest(ValueError):
    """The event cannot make a study."""


def read_event(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    env = os.environ if environ is None else environ
    path = Path(env.get(EVENT_PATH_ENV) or CLUSTER_EVENT_PATH)
    try:
        event = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise BadRequest(f"no readable event at {path}: {exc}") from None
    if not isinstance(event, dict):
        raise BadRequest(f"the event at {path} is not a JSON object")
    return event


def study_request(event: Mapping[str, Any]) -> dict[str, Any]:
    """The study's arguments from a batch.study.requested event, or BadRequest naming what is wrong.

    >>> study_request({"type": BATCH_STUDY_REQUESTED, "id": "1", "data": {"domain": "eta", "rows": 5000}})
    {'domain': 'eta', 'rows': 5000}
    >>> try:
    ...     study_request({"type": BATCH_STUDY_REQUESTED, "id": "1", "data": {"domain": "eta", "rows": "many"}})
    ... except BadRequest as exc:
    ...     print(exc)
    data.rows: an int, not 'many'
    """
    from eventing.domains import get_domain

    if event.get("type") != BATCH_STUDY_REQUESTED:
        raise BadRequest(f"event type {event.get('type')!r}: this job takes {BATCH_STUDY_REQUESTED}")
    data = event.get("data")
    if not isinstance(data, dict):
        raise BadRequest("the event's data is not a JSON object")
    try:
        domain = get_domain(str(data.get("domain", "")))
    except ValueError as exc:
        raise BadRequest(f"data.domain: {exc}") from None
    out: dict[str, Any] = {"domain": domain.name}
    for name, kind in OPTIONS.items():
        value = data.get(name)
        if value is None:
            continue
        if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
            raise BadRequest(f"data.{name}: an int, not {value!r}")
        if not isinstance(value, kind):
            raise BadRequest(f"data.{name}: a {kind.__name__}, not {value!r}")
        out[name] = value
    unknown = sorted(set(data) - set(OPTIONS) - {"domain"})
    if unknown:
        raise BadRequest(f"data has unknown fields {unknown}: domain, {', '.join(OPTIONS)}")
    return out


def post_request(broker_url: str, data: Mapping[str, Any], source: str = "/coelho/cli") -> str:
    """Post a batch.study.requested event with `data` to the Broker ingress at `broker_url`; its id once the
    Broker took it (202). ConnectionError when nothing answers, RuntimeError with the reason when it refuses."""
    import uuid

    import requests
    from cloudevents.core.bindings.http import to_binary_event
    from cloudevents.core.v1.event import CloudEvent

    event_id = str(uuid.uuid4())
    event = CloudEvent(
        {
            "specversion": "1.0",
            "id": event_id,
            "source": source,
            "type": BATCH_STUDY_REQUESTED,
            "datacontenttype": "application/json",
        },
        dict(data),
    )
    message = to_binary_event(event)
    response = requests.post(broker_url, data=message.body, headers=dict(message.headers), timeout=15)
    if response.status_code != 202:
        raise RuntimeError(f"the Broker refused the request: HTTP {response.status_code} {response.text.strip()}")
    return event_id


def main(environ: Mapping[str, str] | None = None) -> int:
    from functions.batch.dataset import StudyError
    from functions.batch.report import log_study
    from functions.batch.study import run_study

    env = dict(os.environ if environ is None else environ)
    started = time.perf_counter()

    def say(message: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f}s] {message}", flush=True)

    try:
        event = read_event(env)
        request = study_request(event)
    except BadRequest as exc:
        say(f"refused: {exc}")
        return 2
    domain = request.pop("domain")
    say(f"batch study of {domain} for event {event.get('id')} from {event.get('source')}: {request}")
    try:
        result = run_study(domain, environ=env, progress=say, **request)
    except StudyError as exc:
        say(f"refused: {exc}")
        return 2
    result.params["requested_by"] = f"{event.get('source')}#{event.get('id')}"
    try:
        log_study(result, env)
    except Exception as exc:
        say(f"MLflow did not take the study: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}")
        return 1
    say(f"run {result.run_id}: registered coelho-{domain}-batch version {result.model_version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
