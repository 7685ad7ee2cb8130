"""Style outliers: how far each example's v_lf and v_is lie from the data set's centre.

Distance is the standardised Euclidean distance to the mean, divided by sqrt(dimensions), i.e. the
root-mean-square z-score over the dimensions:

    d(x) = sqrt( mean_j ((x_j − mean_j) / std_j)² )

Standardising puts every dimension on the same scale (max-pooled encoder states differ widely in
scale per dimension); dividing by sqrt(dimensions) makes the mean of d² over the data set exactly 1
(for dimensions that vary), so a value near 1 is typical and 2 or 3 is far out, whatever the encoder.
Dimensions with zero spread contribute nothing.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Centre:
    mean: np.ndarray   # (H,)
    scale: np.ndarray  # (H,) standard deviation, 0 where a dimension is constant

    @classmethod
    def of(cls, vectors: np.ndarray) -> Centre:
        x = np.asarray(vectors, np.float64)
        return cls(x.mean(axis=0), x.std(axis=0))

    def distance(self, vectors: np.ndarray) -> np.ndarray:
        """RMS z-score of each row; with a Centre fitted on these rows, mean(d²) = 1."""
        x = np.asarray(vectors, np.float64)
        if len(x) == 0:
            return np.zeros(0)
        varying = self.scale > 1e-12 * max(float(self.scale.max(initial=0.0)), 1e-300)
        if not varying.any():
            return np.zeros(len(x))
        z = (x[:, varying] - self.mean[varying]) / self.scale[varying]
        return np.sqrt(np.mean(z * z, axis=1))


def style_outliers(v_lf: np.ndarray, v_is: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(lf_outlier, is_outlier): each row's distance to the data set's centre in each space."""
    if len(v_lf) == 0:
        return np.zeros(0), np.zeros(0)
    return Centre.of(v_lf).distance(v_lf), Centre.of(v_is).distance(v_is)
