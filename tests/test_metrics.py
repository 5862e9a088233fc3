"""Box metrics (`multitask.metrics`)."""

import numpy as np

from multitask.metrics import box_iou_numpy


def test_box_iou_known_values():
    a = np.array([[0, 0, 1, 1], [0, 0, 0.5, 0.5], [0, 0, 0.2, 0.2]], dtype=np.float32)
    b = np.array([[0, 0, 1, 1], [0, 0.25, 0.5, 0.75], [0.5, 0.5, 1, 1]], dtype=np.float32)
    np.testing.assert_allclose(box_iou_numpy(a, b), [1.0, 1 / 3, 0.0], atol=1e-6)
