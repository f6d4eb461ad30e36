"""rnnkit: recurrent neural networks (RNN, LSTM, GRU) on hand-written SIMD + OpenMP kernels.

>>> import rnnkit as rk
>>> lstm = rk.LSTM(8, 16, seed=0)
>>> y, (h_n, c_n) = lstm.forward(x)            # x: (T, B, 8)
>>> dx, (dh0, dc0) = lstm.backward(dy)         # adds into lstm.grads
"""

from . import losses, optim
from ._config import (
    __version__,
    get_num_threads,
    get_simd,
    set_num_threads,
    set_simd,
    show_config,
    simd_paths,
)
from .io import CheckpointError, load, save
from .layers import GRU, LSTM, RNN
from .models import EncoderDecoder, Sequential
from .modules import Dropout, Embedding, Linear
from .optim import (
    SGD,
    Adagrad,
    Adam,
    AdamW,
    CosineDecay,
    ExponentialDecay,
    LinearWarmup,
    RMSprop,
    StepDecay,
    clip_grad_norm,
    clip_grad_value,
)
from .text import CharLM, Vocab
from .train import EarlyStopping, evaluate, fit

__all__ = [
    "GRU",
    "LSTM",
    "RNN",
    "SGD",
    "Adagrad",
    "Adam",
    "AdamW",
    "CharLM",
    "CheckpointError",
    "CosineDecay",
    "Dropout",
    "EarlyStopping",
    "Embedding",
    "EncoderDecoder",
    "ExponentialDecay",
    "Linear",
    "LinearWarmup",
    "RMSprop",
    "Sequential",
    "StepDecay",
    "Vocab",
    "__version__",
    "clip_grad_norm",
    "clip_grad_value",
    "evaluate",
    "fit",
    "get_num_threads",
    "get_simd",
    "load",
    "losses",
    "optim",
    "save",
    "set_num_threads",
    "set_simd",
    "show_config",
    "simd_paths",
    "text",
]
