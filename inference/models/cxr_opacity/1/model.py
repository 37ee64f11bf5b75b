"""Triton entry point of the chest-radiograph reference model; the algorithm is chest_xray.py beside it
(a link to inference/chest_xray.py, copied as a file into images)."""

import numpy as np
import triton_python_backend_utils as pb_utils
from chest_xray import MAX_BOXES, analyse


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            images = pb_utils.get_input_tensor_by_name(request, "IMAGE").as_numpy()
            probabilities = np.zeros((len(images), 1), dtype=np.float32)
            boxes = np.full((len(images), MAX_BOXES, 4), -1, dtype=np.int32)
            for i, image in enumerate(images):
                found = analyse(image)
                probabilities[i, 0] = found.probability
                for j, box in enumerate(found.boxes):
                    boxes[i, j] = box
            responses.append(pb_utils.InferenceResponse([
                pb_utils.Tensor("PROBABILITY", probabilities), pb_utils.Tensor("BOXES", boxes),
            ]))
        return responses
