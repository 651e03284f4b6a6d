"""The explain_prediction tool against the live models: linear contributions checked against the model's weights.

The test follows the same event log as the learner with its own replica (functions.model_state.replica, a follower):
the model state is a deterministic function of the log, so at the same log position it is the learner's model.
"""

from __future__ import annotations

import json
import math
import random
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
import redis
from river import compose, linear_model, preprocessing

from coelho.runtime import Platform
from eventing.domains import DOMAINS, ECCI, ETA, TFD
from functions.model_state.replica import ModelReplica
from tests.chat.anthropic_standin import AnthropicStandIn, text, tool_use
from tests.chat.chat_testkit import answer_text, ask, sample_event, tool_result_json

pytestmark = pytest.mark.stack


def _replica(platform: Platform, domain: Any, seq: int) -> ModelReplica:
    replica = ModelReplica(redis.Redis.from_url(platform.settings.redis_url), domain, role="follower")
    replica.load_snapshot()
    replica.catch_up(paused_at=seq, check_pause=False)
    assert replica.state.seq == seq
    return replica


def _explain_through_chat(
    chat_url: str, standin: AnthropicStandIn, domain: Any, form: dict[str, Any], question: str, answer: Any = None
) -> tuple[dict[str, Any], str]:
    standin.script(
        [tool_use("explain_prediction", {"domain": domain.name})],
        answer or (lambda body: [text("Explained: " + json.dumps(tool_result_json(body)["explanation"]["kind"]))]),
    )
    status, events = ask(chat_url, "x-" + uuid.uuid4().hex[:12], question, {"page": domain.name, "form": form})
    assert status == 200, events
    assert [e["name"] for e in events if e["type"] == "tool"] == ["explain_prediction"]
    result = tool_result_json(standin.requests[1].body)
    return result, answer_text(events)


def _linear_parts(model: Any) -> tuple[Any, preprocessing.StandardScaler, linear_model.LogisticRegression]:
    pipeline = model.classifier  # RandomUnderSampler around the pipeline
    union, regression = list(pipeline.steps.values())
    scaler = next(
        step
        for branch in union.transformers.values()
        for step in branch.steps.values()
        if isinstance(step, preprocessing.StandardScaler)
    )
    assert isinstance(union, compose.TransformerUnion) and isinstance(regression, linear_model.LogisticRegression)
    return union, scaler, regression


def test_why_was_this_transaction_flagged_linear_contributions(
    chat_url: str, standin: AnthropicStandIn, live_platform: Platform
) -> None:
    assert TFD.default_model == "logreg_rus", "the test checks the default linear fraud model"
    form = sample_event(TFD, random.Random(99), datetime(2026, 11, 27, 2, 30, tzinfo=UTC))
    form.update(payment_method="crypto", cvv_provided=False, account_age_days=3, amount=1890.5)
    form.pop("is_fraud")
    result, answer = _explain_through_chat(chat_url, standin, TFD, form, "Why was this transaction flagged?")
    explanation = result["explanation"]
    assert explanation["kind"] == "linear" and explanation["estimator"] == "LogisticRegression"
    assert "Pipeline" not in explanation.get("wrappers", []) and "RandomUnderSampler" in explanation["wrappers"]
    assert answer == 'Explained: "linear"'

    replica = _replica(live_platform, TFD, result["log_position"])
    union, scaler, regression = _linear_parts(replica.state.model)
    weights = regression.weights
    x = TFD.features(TFD.validate(form, purpose="prediction"))

    # Each contribution is the model's weight times the value the model sees.
    seen = union.transform_one(x)
    for c in explanation["contributions"]:
        assert c["weight"] == pytest.approx(weights.get(c["feature"], 0.0), abs=1e-6)
        assert c["value"] == pytest.approx(seen[c["feature"]], abs=1e-6)
        assert c["contribution"] == pytest.approx(weights.get(c["feature"], 0.0) * seen[c["feature"]], abs=1e-6)
    # Checked by hand, not through the pipeline: standardised numbers, one-hot categories.
    categories = {
        f"{name}_{x[name]}"
        for name in (
            "currency",
            "product_category",
            "transaction_type",
            "payment_method",
            "os",
            "browser",
            "hour_of_day",
        )
    }
    for c in explanation["contributions"]:
        name = c["feature"]
        if name in scaler.means:
            z = (x[name] - scaler.means[name]) / math.sqrt(scaler.vars[name]) if scaler.vars[name] > 0 else 0.0
            assert c["contribution"] == pytest.approx(weights[name] * z, rel=1e-4, abs=1e-6), name
        else:
            assert name in categories and c["value"] == 1.0, name
            assert c["contribution"] == pytest.approx(weights[name], abs=1e-6)
    # Contributions (all of them) + intercept = the model's own log-odds = its probability.
    total = explanation["intercept"] + sum(c["contribution"] for c in explanation["contributions"])
    total += explanation["other_features"]["contribution"]
    assert explanation["intercept"] == pytest.approx(regression.intercept, abs=1e-6)
    assert total == pytest.approx(explanation["raw_output"], abs=1e-4)
    probability = replica.state.predict_one(x)
    assert explanation["raw_output"] == pytest.approx(math.log(probability / (1 - probability)), abs=1e-4)
    assert result["fraud_probability"] == pytest.approx(probability, abs=1e-6)
    # Sorted by size, bounded in number.
    sizes = [abs(c["contribution"]) for c in explanation["contributions"]]
    assert sizes == sorted(sizes, reverse=True) and len(sizes) <= 12


def test_what_drove_this_eta_factors(chat_url: str, standin: AnthropicStandIn, live_platform: Platform) -> None:
    form = sample_event(ETA, random.Random(5), datetime(2026, 11, 27, 8, 15, tzinfo=UTC))
    form.pop(ETA.target)

    def answer(body: dict[str, Any]) -> Any:
        result = tool_result_json(body)
        top = result["explanation"]["contributions"][0]
        return [text(f"The model predicts {result['eta_seconds']} s. Most: {top['feature']} x{top['factor']}.")]

    result, said = _explain_through_chat(chat_url, standin, ETA, form, "What drove this ETA?", answer)
    explanation = result["explanation"]
    top = explanation["contributions"][0]
    assert said == f"The model predicts {result['eta_seconds']} s. Most: {top['feature']} x{top['factor']}."
    replica = _replica(live_platform, ETA, result["log_position"])
    x = ETA.features(ETA.validate(form, purpose="prediction"))
    assert result["eta_seconds"] == pytest.approx(replica.state.predict_one(x), abs=1e-3)
    # The default learns log(1 + seconds): intercept + contributions = raw output, and expm1 of it the prediction.
    assert explanation["kind"] == "linear" and explanation["estimator"] == "LinearRegression"
    total = explanation["intercept"] + sum(c["contribution"] for c in explanation["contributions"])
    total += explanation["other_features"]["contribution"]
    assert total == pytest.approx(explanation["raw_output"], abs=1e-4)
    assert explanation["prediction"] == pytest.approx(result["eta_seconds"], rel=1e-5)
    assert top["factor"] == pytest.approx(math.exp(top["contribution"]), rel=1e-5)


def test_which_cluster_nearest_centres(chat_url: str, standin: AnthropicStandIn, live_platform: Platform) -> None:
    form = sample_event(ECCI, random.Random(3), datetime(2026, 11, 27, 20, 0, tzinfo=UTC))
    result, _ = _explain_through_chat(chat_url, standin, ECCI, form, "Which cluster is this and why?")
    replica = _replica(live_platform, ECCI, result["log_position"])
    x = ECCI.features(ECCI.validate(form, purpose="prediction"))
    explanation = result["explanation"]
    assert explanation["kind"] == "clusters"
    assert result["cluster"] == replica.state.predict_one(x) == explanation["predicted_cluster"]
    distances = [c["distance"] for c in explanation["nearest_centres"]]
    assert distances == sorted(distances) and explanation["nearest_centres"][0]["cluster"] == result["cluster"]
    # the distances are the model's: the event through the pipeline's scaler, to each DBSTREAM centre
    steps = list(replica.state.model.steps.values())
    xt = x
    for step in steps[:-1]:
        xt = step.transform_one(xt)
    point = {k: float(v) for k, v in xt.items() if isinstance(v, int | float)}
    centres = steps[-1].centers
    want = sorted(
        (math.sqrt(sum((point.get(k, 0.0) - float(c.get(k, 0.0))) ** 2 for k in set(point) | set(c))), cid)
        for cid, c in centres.items()
    )
    got = [(c["distance"], c["cluster"]) for c in explanation["nearest_centres"]]
    assert explanation["n_clusters"] == len(centres) >= 2 and 0 < len(got) <= len(centres)
    assert [d for d, _ in got] == pytest.approx([d for d, _ in want[: len(got)]], abs=1e-3)
    assert {c for _, c in got} <= set(centres)


def test_explain_rejects_an_invalid_form(chat_url: str, standin: AnthropicStandIn) -> None:
    form = {"amount": -5, "currency": "XXX"}
    standin.script([tool_use("explain_prediction", {"domain": "tfd"})], [text("It failed.")])
    status, events = ask(chat_url, "x-" + uuid.uuid4().hex[:12], "Why?", {"page": "tfd", "form": form})
    assert status == 200
    result = [b for b in standin.requests[1].messages[-1]["content"] if b["type"] == "tool_result"][0]
    assert result.get("is_error") is True and "not valid for tfd" in result["content"] and "amount" in result["content"]
    assert [e["ok"] for e in events if e["type"] == "tool_result"] == [False]


def test_every_domain_is_known_to_the_explain_tool() -> None:
    from functions.assistant.tools import TOOLS

    assert TOOLS["explain_prediction"].input_schema["properties"]["domain"]["enum"] == sorted(DOMAINS)
