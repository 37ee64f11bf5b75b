"""Triton entry point of the mammography reference model; the algorithm is mammography.py beside it
(links to inference/, copied as files into images)."""

import numpy as np
import triton_python_backend_utils as pb_utils
from mammography import MAX_MASSES, analyse


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            images = pb_utils.get_input_tensor_by_name(request, "IMAGE").as_numpy()
            shares = np.zeros((len(images), 1), dtype=np.float32)
            birads = np.zeros((len(images), 1), dtype=np.int32)
            masses = np.full((len(images), MAX_MASSES, 4), -1, dtype=np.int32)
            for i, image in enumerate(images):
                found = analyse(image)
                shares[i, 0], birads[i, 0] = found.fibroglandular_share, found.birads
                for j, box in enumerate(found.masses):
                    masses[i, j] = box
            responses.append(pb_utils.InferenceResponse([
                pb_utils.Tensor("FIBROGLANDULAR_SHARE", shares), pb_utils.Tensor("BIRADS", birads),
                pb_utils.Tensor("MASSES", masses),
            ]))
        return responses
