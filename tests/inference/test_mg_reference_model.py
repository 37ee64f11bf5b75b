"""The mammography reference model reads the phantoms' density and finds their masses, in Triton too."""

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from inference.mammography import analyse, study_density
from inference.phantoms import mammography_study


@pytest.mark.parametrize("density", ["A", "B", "C", "D"])
@pytest.mark.parametrize("seed", [3, 4])
def test_density_and_masses_match_the_truth(density, seed):
    datasets, truth = mammography_study(density=density, masses=1, seed=seed)
    findings = {(ds.ImageLaterality, ds.ViewPosition): analyse(ds.pixel_array.astype(np.float32))
                for ds in datasets}
    assert study_density(list(findings.values())) == truth.density
    for view, found in findings.items():
        assert len(found.masses) == len(truth.masses[view])
        for expected, box in zip(truth.masses[view], found.masses, strict=True):
            row, col = (box[0] + box[2]) // 2, (box[1] + box[3]) // 2
            assert expected.box[0] <= row < expected.box[2] and expected.box[1] <= col < expected.box[3]
    assert max(f.birads for f in findings.values()) == truth.birads == 4


def test_the_model_answers_a_study_through_triton(triton):
    datasets, truth = mammography_study(density="C", masses=1, seed=5)
    batch = np.stack([ds.pixel_array.astype(np.float32) for ds in datasets])
    client = grpcclient.InferenceServerClient(url=triton.url)
    tensor = grpcclient.InferInput("IMAGE", list(batch.shape), "FP32")
    tensor.set_data_from_numpy(batch)
    result = client.infer("mg_density_masses", [tensor])
    shares = result.as_numpy("FIBROGLANDULAR_SHARE")[:, 0]
    assert np.median(shares) == pytest.approx(0.60, abs=0.05)
    views = [(ds.ImageLaterality, ds.ViewPosition) for ds in datasets]
    expected_birads = [4 if truth.masses[v] else 1 for v in views]
    assert result.as_numpy("BIRADS")[:, 0].tolist() == expected_birads
