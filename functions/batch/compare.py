"""`coelho models compare DOMAIN --batch [N]`: a batch study's registered model in the paired comparison of the live
models, frozen (functions/batch/serving.py answers on the same log positions). Apart from serving.py so that
predict-one, which imports serving.py, does not import the study's modules (the lake's reader and its settings)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from eventing.domain import Domain
from functions.batch.serving import BATCH_MODEL, batch_outcomes, latest_version, load, registered_name


def frozen_answers(
    client: Any, domain: Domain, version: str, environ: Mapping[str, str] | None = None
) -> tuple[str, Callable[[Mapping[int, Sequence[Any]]], dict[int, list[Any]]]]:
    """For `coelho models compare --batch`: the name of batch `version` ("latest" or a number) in the comparison
    (`batch v<N>`) and the function giving its outcomes on a live model's positions. LookupError when there is no
    such version."""
    from functions.batch.report import _mlflow

    _mlflow(environ)  # the tracking URI and the artifact store's keys, from the platform's settings
    text = version.strip().removeprefix("v")
    if version != "latest" and not text.isdigit():
        raise LookupError(f"--batch takes a version number or nothing (the latest), not {version!r}")
    number = latest_version(domain.name) if version == "latest" else int(text)
    if number is None:
        raise LookupError(f"{registered_name(domain.name)} has no registered version: `coelho batch train` trains one")
    model = load(domain, number)
    if model is None:
        raise LookupError(f"{registered_name(domain.name)} has no version {number}")
    return f"{BATCH_MODEL} v{number}", lambda reference: batch_outcomes(client, model, reference)
