"""The chest-CT reference model finds the phantoms' lesions: severity right, shares close, in Triton too."""

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from inference.lung_ct import analyse
from inference.phantoms import chest_ct
from tests.inference.test_phantoms import hounsfield


@pytest.mark.parametrize("seed", [5, 6])
@pytest.mark.parametrize("share", [0.0, 0.12, 0.35, 0.6, 0.8])
def test_severity_matches_the_truth_and_the_share_is_close(share, seed):
    datasets, truth = chest_ct(affected_share=share, seed=seed)
    findings = analyse(hounsfield(datasets), (2.5, 2.5, 2.5))
    assert f"CT-{findings.severity}" == truth.severity
    assert findings.affected_share == pytest.approx(truth.affected_share(), abs=0.06)
    for found, lung in zip(findings.lung_ml, truth.lung_ml.values(), strict=True):
        assert found <= lung * 1.01  # the envelope never reaches outside the lungs


def test_the_model_answers_the_same_through_triton(triton):
    datasets, truth = chest_ct(affected_share=0.35, seed=7)
    hu = hounsfield(datasets).astype(np.float32)
    client = grpcclient.InferenceServerClient(url=triton.url)
    batch = [grpcclient.InferInput("HU", [1, *hu.shape], "INT16"), grpcclient.InferInput("SPACING_MM", [1, 3], "FP32")]
    batch[0].set_data_from_numpy(hu[None].astype(np.int16))
    batch[1].set_data_from_numpy(np.array([[2.5, 2.5, 2.5]], dtype=np.float32))
    result = client.infer("ct_lung_lesions", batch)
    expected = analyse(hu, (2.5, 2.5, 2.5))
    assert int(result.as_numpy("SEVERITY")[0, 0]) == expected.severity == 2
    assert float(result.as_numpy("AFFECTED_SHARE")[0, 0]) == pytest.approx(expected.affected_share, rel=1e-5)
    np.testing.assert_allclose(result.as_numpy("LUNG_ML")[0], expected.lung_ml, rtol=1e-5)
    key_slice, box = result.as_numpy("KEY_SLICE")[0], result.as_numpy("LESION_BOX")[0]
    np.testing.assert_array_equal(key_slice, expected.key_slice)
    np.testing.assert_array_equal(box, expected.lesion_box)
    assert truth.severity == "CT-2"
