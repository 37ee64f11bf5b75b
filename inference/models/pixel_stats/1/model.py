"""Reference model (not a medical device): min, max, mean and standard deviation of each image."""

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            pixels = pb_utils.get_input_tensor_by_name(request, "PIXELS").as_numpy()
            flat = pixels.reshape(pixels.shape[0], -1)
            stats = np.stack([flat.min(1), flat.max(1), flat.mean(1), flat.std(1)], axis=1).astype(np.float32)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("STATS", stats)]))
        return responses
