"""Triton entry point of the chest-CT reference model; the algorithm is lung_ct.py beside it
(a link to inference/lung_ct.py, copied as a file into images)."""

import numpy as np
import triton_python_backend_utils as pb_utils
from lung_ct import analyse


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            volumes = pb_utils.get_input_tensor_by_name(request, "HU").as_numpy()  # int16 [batch, slices, rows, cols]
            spacings = pb_utils.get_input_tensor_by_name(request, "SPACING_MM").as_numpy()
            found = [analyse(hu.astype(np.float32), tuple(float(s) for s in spacing))
                     for hu, spacing in zip(volumes, spacings, strict=True)]
            responses.append(pb_utils.InferenceResponse([
                pb_utils.Tensor("LUNG_ML", np.array([f.lung_ml for f in found], dtype=np.float32)),
                pb_utils.Tensor("GROUND_GLASS_ML", np.array([f.ground_glass_ml for f in found], dtype=np.float32)),
                pb_utils.Tensor("CONSOLIDATION_ML", np.array([f.consolidation_ml for f in found], dtype=np.float32)),
                pb_utils.Tensor("AFFECTED_SHARE", np.array([[f.affected_share] for f in found], dtype=np.float32)),
                pb_utils.Tensor("SEVERITY", np.array([[f.severity] for f in found], dtype=np.int32)),
                pb_utils.Tensor("KEY_SLICE", np.array([f.key_slice for f in found], dtype=np.int32)),
                pb_utils.Tensor("LESION_BOX", np.array([f.lesion_box for f in found], dtype=np.int32)),
            ]))
        return responses
