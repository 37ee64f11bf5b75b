"""Triton entry point of the chest-CT reference model; the algorithm is lung_ct.py beside it
(a link to inference/lung_ct.py, copied as a file into images)."""

import numpy as np
import triton_python_backend_utils as pb_utils
from lung_ct import analyse


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            hu = pb_utils.get_input_tensor_by_name(request, "HU").as_numpy()
            spacing = pb_utils.get_input_tensor_by_name(request, "SPACING_MM").as_numpy()
            findings = analyse(hu, tuple(float(s) for s in spacing))
            responses.append(pb_utils.InferenceResponse([
                pb_utils.Tensor("LUNG_ML", np.array(findings.lung_ml, dtype=np.float32)),
                pb_utils.Tensor("GROUND_GLASS_ML", np.array(findings.ground_glass_ml, dtype=np.float32)),
                pb_utils.Tensor("CONSOLIDATION_ML", np.array(findings.consolidation_ml, dtype=np.float32)),
                pb_utils.Tensor("AFFECTED_SHARE", np.array([findings.affected_share], dtype=np.float32)),
                pb_utils.Tensor("SEVERITY", np.array([findings.severity], dtype=np.int32)),
                pb_utils.Tensor("KEY_SLICE", np.array(findings.key_slice, dtype=np.int32)),
                pb_utils.Tensor("LESION_BOX", np.array(findings.lesion_box, dtype=np.int32)),
            ]))
        return responses
