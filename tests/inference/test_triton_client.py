"""The workers' Triton client against the real server: answers checked, outages retried then reported,
a breaker that stops calling a dead model and closes when it is back, timeouts, HTTP, priority."""

import socket
import threading
import time

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from inference import triton as triton_client
from inference.chest_xray import analyse
from inference.lung_ct import analyse as analyse_ct
from inference.phantoms import chest_ct, chest_radiograph
from inference.profiles import profile_for
from tests.inference.test_phantoms import hounsfield
from tests.tcp_proxy import TcpProxy

CXR = profile_for("chest_xray").OUTPUTS


@pytest.fixture(autouse=True)
def fast_failures(settings):
    settings.TRITON_RETRIES = 2
    settings.TRITON_RETRY_BACKOFF_SECONDS = 0.1
    settings.TRITON_BREAKER_FAILURES = 5
    settings.TRITON_BREAKER_RESET_SECONDS = 30.0
    triton_client.breakers_reset()
    yield
    triton_client.breakers_reset()


@pytest.fixture
def calls(monkeypatch) -> list[str]:
    """The model of every attempt that reached the network layer."""
    seen, original = [], triton_client._call
    monkeypatch.setattr(triton_client, "_call", lambda model, *args: seen.append(model) or original(model, *args))
    return seen


@pytest.fixture
def proxy(triton) -> TcpProxy:
    host, port = triton.url.rsplit(":", 1)
    return TcpProxy(host, int(port))


@pytest.fixture
def silent_port() -> int:
    """A port that accepts connections and never answers: a hung server."""
    server = socket.create_server(("127.0.0.1", 0))
    held = []
    threading.Thread(target=lambda: held.extend(server.accept() for _ in range(50)), daemon=True).start()
    return server.getsockname()[1]


def radiograph() -> tuple[np.ndarray, object]:
    ds, truth = chest_radiograph(lesions=2, size=128, seed=3)
    return ds.pixel_array.astype(np.float32), truth


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_answers_are_the_algorithms_and_name_the_version(triton, protocol):
    image, _ = radiograph()
    url = triton.url if protocol == "grpc" else triton.http_url
    answer = triton_infer(image, url=url, protocol=protocol, request_id="test-1")
    expected = analyse(image)
    assert answer.model_version == "1"
    assert float(answer.outputs["PROBABILITY"][0, 0]) == pytest.approx(expected.probability)
    assert [tuple(b) for b in answer.outputs["BOXES"][0] if b[0] >= 0] == expected.boxes


def test_a_ct_volume_answers_as_the_algorithm(triton):
    datasets, _ = chest_ct(affected_share=0.3, slices=16, size=64, seed=2)
    hu = hounsfield(datasets).astype(np.float32)
    answer = triton_client.infer("ct_lung_lesions", {"HU": hu[None].astype(np.int16),
                                                     "SPACING_MM": np.full((1, 3), 2.5, np.float32)},
                          profile_for("chest_ct").OUTPUTS, url=triton.url, priority=1)
    expected = analyse_ct(hu, (2.5, 2.5, 2.5))
    assert int(answer.outputs["SEVERITY"][0, 0]) == expected.severity
    np.testing.assert_allclose(answer.outputs["LUNG_ML"][0], expected.lung_ml, rtol=1e-5)


def triton_infer(image: np.ndarray, outputs=CXR, **kwargs) -> triton_client.InferAnswer:
    return triton_client.infer("cxr_opacity", {"IMAGE": image[None]}, outputs, **kwargs)


@pytest.mark.parametrize("spec", [
    {"BOXES": triton_client.OutputSpec(np.int32, (1, 4, 4))},  # shape
    {"BOXES": triton_client.OutputSpec(np.float32, (-1, 8, 4))},  # dtype
    {"MASKS": triton_client.OutputSpec(np.uint8, (-1, -1))},  # missing
])
def test_an_answer_not_as_specified_is_a_bad_answer_never_retried(triton, calls, spec):
    with pytest.raises(triton_client.BadModelAnswer):
        triton_infer(radiograph()[0], spec, url=triton.url)
    assert calls == ["cxr_opacity"]


def test_wildcards_match_any_size(triton):
    answer = triton_infer(radiograph()[0], {"BOXES": triton_client.OutputSpec(np.int32, (-1, -1, 4))}, url=triton.url)
    assert answer.outputs["BOXES"].shape == (1, 8, 4)


def test_a_request_the_model_rejects_is_a_bad_answer_and_an_unknown_model_is_not_ready(triton, calls):
    with pytest.raises(triton_client.BadModelAnswer):
        triton_client.infer("pixel_stats", {"IMAGE": np.ones((1, 8, 8), np.float32)}, {}, url=triton.url)
    with pytest.raises(triton_client.ModelNotReady):
        triton_client.infer("knee_mri", {"IMAGE": np.ones((1, 8, 8), np.float32)}, {}, url=triton.url)
    with pytest.raises(triton_client.ModelNotReady):
        triton_infer(radiograph()[0], url=triton.url, version="7")
    assert calls == ["pixel_stats", "knee_mri", "cxr_opacity"]


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_an_outage_is_retried_with_backoff_then_reported(proxy, calls, protocol):
    proxy.cut()
    url = f"127.0.0.1:{proxy.port}" if protocol == "grpc" else proxy.url
    started = time.monotonic()
    with pytest.raises(triton_client.TritonUnavailable):
        triton_infer(radiograph()[0], url=url, protocol=protocol)
    assert calls == ["cxr_opacity"] * 3  # the call and TRITON_RETRIES = 2 retries
    assert 0.3 <= time.monotonic() - started < 3  # backoff 0.1 s, then 0.2 s


def test_the_breaker_opens_rejects_at_once_and_closes_when_the_server_is_back(proxy, calls, settings):
    settings.TRITON_RETRIES = 0
    settings.TRITON_BREAKER_FAILURES = 2
    settings.TRITON_BREAKER_RESET_SECONDS = 0.5
    url, image = f"127.0.0.1:{proxy.port}", radiograph()[0]
    proxy.cut()
    for _ in range(2):
        with pytest.raises(triton_client.TritonUnavailable):
            triton_infer(image, url=url)
    proxy.restore()
    with pytest.raises(triton_client.CircuitOpen):
        triton_infer(image, url=url)
    assert len(calls) == 2  # open: Triton was not called
    time.sleep(0.6)
    assert triton_infer(image, url=url).model_version == "1"  # the half-open trial closes it
    assert triton_infer(image, url=url).model_version == "1"
    assert len(calls) == 4


def test_a_failed_trial_opens_the_breaker_again(proxy, calls, settings):
    settings.TRITON_RETRIES = 0
    settings.TRITON_BREAKER_FAILURES = 1
    settings.TRITON_BREAKER_RESET_SECONDS = 0.3
    url, image = f"127.0.0.1:{proxy.port}", radiograph()[0]
    proxy.cut()
    with pytest.raises(triton_client.TritonUnavailable):
        triton_infer(image, url=url)
    time.sleep(0.4)
    with pytest.raises(triton_client.TritonUnavailable):
        triton_infer(image, url=url)  # the trial
    with pytest.raises(triton_client.CircuitOpen):
        triton_infer(image, url=url)
    assert len(calls) == 2


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_a_hung_server_times_out(silent_port, calls, settings, protocol):
    settings.TRITON_RETRIES = 0
    started = time.monotonic()
    with pytest.raises(triton_client.TritonUnavailable):
        triton_infer(radiograph()[0], url=f"127.0.0.1:{silent_port}", protocol=protocol, timeout_s=0.5)
    assert 0.4 <= time.monotonic() - started < 2.5
    assert len(calls) == 1


def test_priority_is_passed_and_the_batched_models_queue_by_it(triton):
    client = grpcclient.InferenceServerClient(url=triton.url)
    for model in ("cxr_opacity", "mg_density_masses"):
        batching = client.get_model_config(model, as_json=True)["config"]["dynamic_batching"]
        assert int(batching["priority_levels"]) == 2 and int(batching["default_priority_level"]) == 2
    for priority in (0, 1, 2):
        assert triton_infer(radiograph()[0], url=triton.url, priority=priority).model_version == "1"
