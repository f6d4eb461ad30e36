"""rnnkit: recurrent networks (RNN, LSTM, GRU) on hand-written SIMD + OpenMP kernels.

PyTorch's math, gate orders, parameter names and shapes; NumPy arrays in and out.
This module only re-exports: layers (:mod:`rnnkit.layers`), blocks
(:mod:`rnnkit.modules`), models (:mod:`rnnkit.models`), losses, optimizers, the
training loop, checkpoints (:mod:`rnnkit.io`), the text model and the run-time
configuration. The NumPy reference, :mod:`rnnkit.reference`, is imported only
on request.

>>> import numpy as np
>>> import rnnkit as rk
>>> lstm = rk.LSTM(8, 16, seed=0)
>>> x = np.ones((5, 2, 8), dtype=np.float32)      # (T, B, I)
>>> y, (h_n, c_n) = lstm.forward(x)
>>> dx, (dh0, dc0) = lstm.backward(np.ones_like(y))   # adds into lstm.grads
>>> y.shape, h_n.shape
((5, 2, 16), (1, 2, 16))
"""

from . import _safetensors as _safetensors  # registers .safetensors with io
from . import callbacks, distributed, losses, metrics, onnx, optim
from ._config import (
    __version__,
    get_num_threads,
    get_simd,
    set_num_threads,
    set_simd,
    show_config,
    simd_paths,
)
from .callbacks import ModelCheckpoint, ReduceLROnPlateau
from .interop import from_torch, to_torch
from .io import CheckpointError, load, save
from .layers import GRU, LSTM, RNN
from .losses import sigmoid, softmax
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
    "ModelCheckpoint",
    "ReduceLROnPlateau",
    "RMSprop",
    "Sequential",
    "StepDecay",
    "Vocab",
    "__version__",
    "callbacks",
    "clip_grad_norm",
    "clip_grad_value",
    "distributed",
    "evaluate",
    "fit",
    "from_torch",
    "get_num_threads",
    "get_simd",
    "load",
    "losses",
    "onnx",
    "metrics",
    "optim",
    "save",
    "set_num_threads",
    "set_simd",
    "show_config",
    "sigmoid",
    "simd_paths",
    "softmax",
    "text",
    "to_torch",
]
