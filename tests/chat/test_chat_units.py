"""Fast checks of the assistant's building blocks (no services): redaction on chunked streams, bounded
results, tool input validation, the system prompt, the memory's message shape, the stand-in itself."""

from __future__ import annotations

import json
import random
import re

import anthropic
import pytest

from functions.assistant.prompt import PAGES, base_prompt, system_blocks
from functions.assistant.redaction import SecretRedactor, StreamRedactor
from functions.assistant.tools import MAX_RESULT_CHARS, TOOLS, ToolInputError, bound, validate_input
from tests.chat.anthropic_standin import AnthropicStandIn, error, text, tool_use

SECRET = "sk-ant-api03-" + "Zx9" * 12


@pytest.mark.parametrize("seed", range(20))
def test_a_secret_split_across_chunks_never_leaks(seed: int) -> None:
    rng = random.Random(seed)
    redactor = SecretRedactor.from_environ({"ANTHROPIC_API_KEY": SECRET, "AWS_SECRET_ACCESS_KEY": "s3-secret-value-42"})
    message = f"The key is {SECRET} and s3 is s3-secret-value-42, done. " * 3
    stream = StreamRedactor(redactor)
    out, i = "", 0
    while i < len(message):
        step = rng.randint(1, 9)
        out += stream.feed(message[i : i + step])
        i += step
    out += stream.flush()
    assert SECRET not in out and "s3-secret-value-42" not in out
    assert out == redactor.redact(message)
    assert out.count("[redacted]") == 6


def test_redaction_of_structures_and_urls() -> None:
    redactor = SecretRedactor(["hunter2-password"])
    data = {"url": "redis://user:pa55word@host:6379/0", "nested": [{"p": "hunter2-password"}], "n": 3}
    assert redactor.redact_data(data) == {
        "url": "redis://[redacted]@host:6379/0",
        "nested": [{"p": "[redacted]"}],
        "n": 3,
    }


def test_results_are_bounded() -> None:
    big = {"rows": [{"i": i, "text": "x" * 200} for i in range(500)], "note": "y" * 20_000}
    out = bound(big)
    assert len(out) <= MAX_RESULT_CHARS
    small = {"a": 1}
    assert json.loads(bound(small)) == small


def test_tool_inputs_are_validated() -> None:
    assert validate_input("get_recent_predictions", {"domain": "eta", "limit": 3}) == {"domain": "eta", "limit": 3}
    for name, tool_input, message in [
        ("set_rate", {}, "unknown tool"),
        ("get_model_info", {}, "missing input field(s): domain"),
        ("get_model_info", {"domain": "all"}, "domain must be one of"),
        ("get_recent_predictions", {"domain": "tfd", "limit": True}, "limit must be an integer"),
        ("get_recent_predictions", {"domain": "tfd", "limit": 0}, "limit must be between"),
        ("explain_prediction", {"domain": "tfd", "event": "x"}, "event must be an object"),
        ("explain_prediction", {"domain": "tfd", "event": {"a": "b" * 5000}}, "larger than"),
        ("get_page_state", ["not", "an", "object"], "must be a JSON object"),
    ]:
        with pytest.raises(ToolInputError, match=re.escape(message)):
            validate_input(name, tool_input)
    for tool in TOOLS.values():
        assert tool.input_schema["additionalProperties"] is False


def test_system_prompt_covers_every_page_and_the_four_questions() -> None:
    prompt = base_prompt()
    for page in ("home", "tfd", "eta", "ecci"):
        assert page in PAGES and PAGES[page][:30] in prompt
    for question in (
        "What does this page show?",
        "What does a cluster represent?",
        "Why was this transaction flagged?",
        "What drove this ETA?",
    ):
        assert question in prompt
    blocks = system_blocks({"page": "eta", "form": {"weather": "rain"}})
    assert blocks[0]["text"] == prompt and '"weather": "rain"' in blocks[1]["text"]


def test_standin_streams_tool_use_and_errors() -> None:
    with AnthropicStandIn(chunk_size=3) as api:
        api.script([text("hi there"), tool_use("get_model_info", {"domain": "tfd"})], error(529))
        client = anthropic.Anthropic(api_key="k", base_url=api.url, max_retries=0)
        with client.messages.stream(model="m", max_tokens=10, messages=[{"role": "user", "content": "q"}]) as stream:
            deltas = [e.text for e in stream if e.type == "text"]
            final = stream.get_final_message()
        assert "".join(deltas) == "hi there" and len(deltas) == 3
        assert final.stop_reason == "tool_use" and final.content[1].input == {"domain": "tfd"}
        with pytest.raises(anthropic.APIStatusError) as info:
            client.messages.create(model="m", max_tokens=10, messages=[{"role": "user", "content": "q"}])
        assert info.value.status_code == 529
        assert [r.messages[0]["content"] for r in api.requests] == ["q", "q"]


def test_the_function_environment_redacts_secrets_but_not_names() -> None:
    from coelho.settings import Settings

    env = Settings.load().function_env()
    redactor = SecretRedactor.from_environ({**env, "ANTHROPIC_API_KEY": SECRET})
    said = f"coelho-tfd uses {env['AWS_ACCESS_KEY_ID']} with {env['AWS_SECRET_ACCESS_KEY']} and {SECRET}"
    assert redactor.redact(said) == f"coelho-tfd uses {env['AWS_ACCESS_KEY_ID']} with [redacted] and [redacted]"


def test_platform_health_checks_the_services_where_the_environment_says_they_are(tmp_path: object) -> None:
    """In a cluster the services are not on this machine's ports: get_platform_health asks the addresses the
    coelho-config ConfigMap gives (LEARN_URL, MLFLOW_TRACKING_URI, KAFKA_BOOTSTRAP_SERVERS, ...), and falls back
    to the local ports where a name is unset."""
    import socket
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from pathlib import Path

    from coelho.settings import Settings
    from functions.assistant.data import PlatformReader
    from functions.assistant.health import service_states

    class Ready(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            self.send_response(200 if self.path in ("/health/readiness", "/health") else 404)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Ready)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    kafka = socket.socket()
    kafka.bind(("127.0.0.1", 0))
    kafka.listen()
    try:
        here = f"http://127.0.0.1:{server.server_address[1]}"
        settings = Settings.load(environ={}, config_file=Path(str(tmp_path)) / "none.toml").with_free_ports(
            Path(str(tmp_path)) / "d"
        )
        environ = {
            "LEARN_URL": here,
            "MLFLOW_TRACKING_URI": here + "/",
            "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{kafka.getsockname()[1]},other:9092",
        }
        reader = PlatformReader(settings, settings.redis_url, environ=environ)
        services = service_states(reader)
        assert services["learn"] == "up" and services["mlflow"] == "up" and services["kafka"] == "up"
        # nothing listens on the local ports of the others (free ports of an unstarted platform)
        assert services["predict"] == services["checkpoint"] == services["s3"] == services["redis"] == "down"
        assert reader.service_url("predict") == settings.url("predict")
        assert reader.service_address("s3") == ("127.0.0.1", settings.ports["s3"])
        cluster = PlatformReader(
            settings,
            settings.redis_url,
            environ={
                "S3_ENDPOINT_URL": "http://coelho-minio.coelho.svc.cluster.local:9000",
                "BROKER_URL": "http://kafka-broker-ingress.knative-eventing.svc.cluster.local/coelho/default",
                "PREDICT_URL": "http://coelho-predict.coelho.svc.cluster.local",
            },
        )
        assert cluster.service_address("s3") == ("coelho-minio.coelho.svc.cluster.local", 9000)
        assert cluster.service_address("broker") == ("kafka-broker-ingress.knative-eventing.svc.cluster.local", 80)
        assert cluster.service_url("predict") == "http://coelho-predict.coelho.svc.cluster.local"
    finally:
        server.shutdown()
        kafka.close()


def test_on_a_cluster_kafka_health_comes_from_prometheus(tmp_path: object) -> None:
    """Kafka's NetworkPolicy keeps the assistant's pod off the brokers: with COELHO_KAFKA_HEALTH_QUERY set (the
    cluster's ConfigMap), get_platform_health asks Prometheus instead of connecting, and says when it cannot."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from pathlib import Path
    from urllib.parse import parse_qs, urlsplit

    from coelho.settings import Settings
    from functions.assistant.data import PlatformReader
    from functions.assistant.health import service_states

    brokers = {"value": "3"}
    asked: list[str] = []

    class Prometheus(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            parts = urlsplit(self.path)
            asked.extend(parse_qs(parts.query).get("query", []))
            result = [{"metric": {}, "value": [0, brokers["value"]]}] if brokers["value"] else []
            body = json.dumps({"status": "success", "data": {"resultType": "vector", "result": result}}).encode()
            self.send_response(200 if parts.path == "/api/v1/query" else 404)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Prometheus)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        settings = Settings.load(environ={}, config_file=Path(str(tmp_path)) / "none.toml").with_free_ports(
            Path(str(tmp_path)) / "d"
        )
        environ = {
            "PROMETHEUS_URL": f"http://127.0.0.1:{server.server_address[1]}",
            "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",  # nothing listens: a TCP check would say down
            "COELHO_KAFKA_HEALTH_QUERY": "max(kafka_brokers)",
        }
        reader = PlatformReader(settings, settings.redis_url, environ=environ)
        assert service_states(reader)["kafka"] == "up"
        assert asked[-1] == "max(kafka_brokers)"
        brokers["value"] = "0"
        assert service_states(reader)["kafka"] == "down"
        brokers["value"] = ""
        assert service_states(reader)["kafka"] == "down"
    finally:
        server.shutdown()
    gone = PlatformReader(settings, settings.redis_url, environ=dict(environ, PROMETHEUS_URL="http://127.0.0.1:1"))
    assert service_states(gone)["kafka"] == "unknown (Prometheus unreachable)"
