"""A hand-made 68-point face (iBUG 300-W order) on a 100 × 100 canvas, for label tests.

Eye centres (35, 40) and (65, 40): inter-ocular distance 30 px. Mouth open.
"""

import numpy as np

SIZE = (100, 100)


def synthetic_face() -> np.ndarray:
    """``f32[68, 2]`` (x, y) landmarks of a frontal face."""
    t = np.linspace(np.pi, 0.0, 17)
    jaw = np.stack([50 + 36 * np.cos(t), 42 + 46 * np.sin(t)], -1)
    brow_l = [(24, 30), (29, 28), (34, 27), (39, 28), (44, 30)]
    brow_r = [(56, 30), (61, 28), (66, 27), (71, 28), (76, 30)]
    bridge = [(50, 36), (50, 42), (50, 48), (50, 54)]
    base = [(43, 58), (46, 59), (50, 60), (54, 59), (57, 58)]
    eye_l = [(28, 40), (32, 37), (38, 37), (42, 40), (38, 43), (32, 43)]
    eye_r = [(x + 30, y) for x, y in eye_l]
    outer = [(36, 72), (40, 69), (45, 67), (50, 68), (55, 67), (60, 69), (64, 72)]
    outer += [(60, 77), (55, 79), (50, 80), (45, 79), (40, 77)]
    inner = [(38, 72), (45, 71), (50, 71), (55, 71), (62, 72), (55, 75), (50, 76), (45, 75)]
    rest = brow_l + brow_r + bridge + base + eye_l + eye_r + outer + inner
    points = np.concatenate([jaw, np.asarray(rest, np.float64)])
    assert points.shape == (68, 2)
    return points.astype(np.float32)


def shoelace(polygon) -> float:
    """Area of a simple polygon ``[K, 2]``."""
    x, y = np.asarray(polygon, np.float64).T
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def perimeter(polygon) -> float:
    p = np.asarray(polygon, np.float64)
    return float(np.linalg.norm(p - np.roll(p, -1, axis=0), axis=1).sum())
