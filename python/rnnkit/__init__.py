"""rnnkit: recurrent neural networks (RNN, LSTM, GRU) on hand-written SIMD + OpenMP kernels.

>>> import rnnkit as rk
>>> lstm = rk.LSTM(8, 16, seed=0)
>>> y, (h_n, c_n) = lstm.forward(x)            # x: (T, B, 8)
>>> dx, (dh0, dc0) = lstm.backward(dy)         # adds into lstm.grads
"""

from ._config import (
    __version__,
    get_num_threads,
    get_simd,
    set_num_threads,
    set_simd,
    show_config,
    simd_paths,
)
from .layers import GRU, LSTM, RNN

__all__ = [
    "GRU",
    "LSTM",
    "RNN",
    "__version__",
    "get_num_threads",
    "get_simd",
    "set_num_threads",
    "set_simd",
    "show_config",
    "simd_paths",
]
