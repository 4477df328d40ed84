"""One seed for every random number generator a run uses."""

import random

import numpy as np
import paddle


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and Paddle, so model initialisation is reproducible."""
    random.seed(seed)
    np.random.seed(seed)
    paddle.seed(seed)
