"""The chest-radiograph reference model separates the phantoms with lesions from normal ones and
boxes each lesion; Triton serves it with dynamic batching."""

import numpy as np
import tritonclient.grpc as grpcclient

from inference.chest_xray import analyse
from inference.phantoms import chest_radiograph


def iou(a, b) -> float:
    rows = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    cols = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = rows * cols
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def auroc(scores_positive: list[float], scores_negative: list[float]) -> float:
    """The probability that a random positive outranks a random negative (ties count half)."""
    pairs = [(p > n) + 0.5 * (p == n) for p in scores_positive for n in scores_negative]
    return sum(pairs) / len(pairs)


def test_phantoms_are_separated_and_every_lesion_is_boxed():
    positive, negative = [], []
    for seed in range(10):
        image, truth = chest_radiograph(lesions=1 + seed % 3, seed=seed)
        found = analyse(image.pixel_array.astype(np.float32))
        positive.append(found.probability)
        for finding in truth.findings:  # localised: its centre lies in a box (touching lesions share one)
            row, col = (finding.box[0] + finding.box[2]) // 2, (finding.box[1] + finding.box[3]) // 2
            assert any(b[0] <= row < b[2] and b[1] <= col < b[3] for b in found.boxes)
        if len(truth.findings) == 1:
            assert iou(truth.findings[0].box, found.boxes[0]) >= 0.5
        normal, _ = chest_radiograph(lesions=0, seed=100 + seed)
        negative.append(analyse(normal.pixel_array.astype(np.float32)).probability)
    assert auroc(positive, negative) == 1.0
    assert max(negative) < 0.5 <= min(positive)


def test_the_model_answers_a_batch_through_triton(triton):
    images, truths = zip(*(chest_radiograph(lesions=n, seed=20 + n) for n in (0, 2)), strict=True)
    batch = np.stack([ds.pixel_array.astype(np.float32) for ds in images])
    client = grpcclient.InferenceServerClient(url=triton.url)
    assert "dynamic_batching" in client.get_model_config("cxr_opacity", as_json=True)["config"]
    tensor = grpcclient.InferInput("IMAGE", list(batch.shape), "FP32")
    tensor.set_data_from_numpy(batch)
    result = client.infer("cxr_opacity", [tensor])
    probabilities, boxes = result.as_numpy("PROBABILITY")[:, 0], result.as_numpy("BOXES")
    assert probabilities[0] == 0.0 and probabilities[1] == 1.0
    assert (boxes[0] == -1).all()
    found = [tuple(b) for b in boxes[1] if b[0] >= 0]
    assert sorted(found) == sorted(f.box for f in truths[1].findings)
