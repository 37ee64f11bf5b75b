"""The real Triton server, started from the nvidia-pytriton wheel, serves the project's model repository."""

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from medai.archive.synthetic import make_instance


def test_reference_model_answers_over_grpc_with_dynamic_batching(triton):
    client = grpcclient.InferenceServerClient(url=triton.url)
    assert client.is_model_ready("pixel_stats")
    config = client.get_model_config("pixel_stats", as_json=True)["config"]
    assert "dynamic_batching" in config
    images = np.stack([make_instance(seed=s).pixel_array.astype(np.float32) for s in (1, 2)])
    tensor = grpcclient.InferInput("PIXELS", list(images.shape), "FP32")
    tensor.set_data_from_numpy(images)
    stats = client.infer("pixel_stats", [tensor]).as_numpy("STATS")
    flat = images.reshape(2, -1)
    expected = np.stack([flat.min(1), flat.max(1), flat.mean(1), flat.std(1)], axis=1)
    np.testing.assert_allclose(stats, expected, rtol=1e-4)


def test_the_same_model_answers_over_http(triton):
    client = httpclient.InferenceServerClient(url=triton.http_url.removeprefix("http://"))
    image = np.arange(16, dtype=np.float32).reshape(1, 4, 4)
    tensor = httpclient.InferInput("PIXELS", list(image.shape), "FP32")
    tensor.set_data_from_numpy(image)
    stats = client.infer("pixel_stats", [tensor]).as_numpy("STATS")
    np.testing.assert_allclose(stats, [[0, 15, 7.5, np.arange(16).std()]], rtol=1e-5)
