"""The sides of bench_rnn.py: rnnkit or the NumPy reference (one API) and torch, each
set up with its thread count and versions recorded."""

from __future__ import annotations

import contextlib
import io
import platform
from typing import Any, Callable

import numpy as np

from rnnkit._sysinfo import openblas_info

from .problem import GEN_CHECK_STEPS, Config


# ------------------------------------------------------------------ the sides
class LayerSide:
    """rnnkit's layers or the NumPy reference (identical API)."""

    def __init__(self, module: Any, c: Config, weights: dict, dtype: str = "float32"):
        cls = {"rnn": module.RNN, "lstm": module.LSTM, "gru": module.GRU}[c["cell"]]
        self.lstm = c["cell"] == "lstm"
        self.dtype = np.dtype(dtype)
        self.layer = cls(c["I"], c["H"], dtype=dtype, seed=0)
        self.layer.load_state_dict(
            {k: v.astype(self.dtype) for k, v in weights.items()}
        )

    def _cast(self, a: np.ndarray | None) -> np.ndarray | None:
        return None if a is None else np.ascontiguousarray(a, dtype=self.dtype)

    def _state(self, h: Any, c: Any) -> Any:
        return (h, c) if self.lstm else h

    def _split(self, s: Any) -> tuple[Any, Any]:
        return (s[0], s[1]) if self.lstm else (s, None)

    def context(self, mode: str) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()

    def run_once(self, mode: str, p: dict) -> dict[str, Any]:
        """One checked call; returns NumPy arrays named as in :func:`check_keys`."""
        L, cast = self.layer, self._cast
        s0 = self._state(cast(p["h0"]), cast(p["c0"]))
        if mode == "gen":  # the generation path: layer.stepper(), state kept inside
            st = L.stepper(batch_size=1, hx=s0)
            x = cast(p["x"])[0]
            for _ in range(GEN_CHECK_STEPS):
                x = st.step(x)
            h, c = st.get_state()
            return {"y": x[None], "h_n": h, "c_n": c}
        if mode == "infer":
            y, s = L.forward(cast(p["x"]), s0, train=False)
            h, c = self._split(s)
            return {"y": y, "h_n": h, "c_n": c}
        L.zero_grad()
        y, s = L.forward(cast(p["x"]), s0, train=True)
        dx, ds = L.backward(cast(p["dy"]), self._state(cast(p["dhn"]), cast(p["dcn"])))
        h, c = self._split(s)
        dh0, dc0 = self._split(ds)
        return {
            "y": y,
            "h_n": h,
            "c_n": c,
            "dx": dx,
            "dh0": dh0,
            "dc0": dc0,
            "dweight_hh_l0": L.grads["weight_hh_l0"].copy(),
        }

    def timed(self, mode: str, p: dict) -> Callable[[], Any]:
        """The call that is timed (parameter gradients accumulate across calls)."""
        L = self.layer
        x, s0 = p["x"], self._state(p["h0"], p["c0"])
        if mode == "infer":
            return lambda: L.forward(x, s0, train=False)
        if mode == "train":
            dy, ds = p["dy"], self._state(p["dhn"], p["dcn"])

            def step() -> Any:
                L.forward(x, s0, train=True)
                return L.backward(dy, ds)

            return step
        # generation: state carried inside the stepper, output fed back as input
        st = L.stepper(batch_size=1, hx=s0)
        carry = [x[0]]

        def gen() -> None:
            carry[0] = st.step(carry[0])

        return gen


class TorchSide:
    """torch.nn.RNN / LSTM / GRU with the same weights."""

    def __init__(self, c: Config, weights: dict, dtype: str = "float32"):
        import torch

        self.torch = torch
        self.lstm = c["cell"] == "lstm"
        cls = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}
        self.dt = torch.float64 if dtype == "float64" else torch.float32
        self.mod = cls[c["cell"]](c["I"], c["H"]).to(self.dt)
        self.mod.load_state_dict(
            {k: torch.from_numpy(v.copy()) for k, v in weights.items()}
        )
        self.params = list(self.mod.parameters())
        self.i_whh = [n for n, _ in self.mod.named_parameters()].index("weight_hh_l0")

    def _t(self, a: np.ndarray | None, grad: bool = False) -> Any:
        if a is None:
            return None
        t = self.torch.from_numpy(np.ascontiguousarray(a)).to(self.dt)
        return t.requires_grad_() if grad else t

    def context(self, mode: str) -> contextlib.AbstractContextManager:
        if mode == "train":
            return contextlib.nullcontext()
        return self.torch.inference_mode()

    def _state(self, h: Any, c: Any) -> Any:
        return (h, c) if self.lstm else h

    def _train_fn(self, p: dict) -> Callable[[], Any]:
        x, h0, c0 = (
            self._t(p["x"], True),
            self._t(p["h0"], True),
            self._t(p["c0"], True),
        )
        dy, dhn, dcn = self._t(p["dy"]), self._t(p["dhn"]), self._t(p["dcn"])
        ins = [x, h0] + ([c0] if self.lstm else []) + self.params
        douts = [dy, dhn] + ([dcn] if self.lstm else [])
        state = self._state(h0, c0)

        def step() -> Any:
            y, s = self.mod(x, state)
            outs = [y, *s] if self.lstm else [y, s]
            return (y, s), self.torch.autograd.grad(outs, ins, douts)

        return step

    def run_once(self, mode: str, p: dict) -> dict[str, Any]:
        if mode == "train":
            (y, s), g = self._train_fn(p)()
            h, c = (s[0], s[1]) if self.lstm else (s, None)
            nl = 1 if self.lstm else 0
            out = {
                "y": y,
                "h_n": h,
                "c_n": c,
                "dx": g[0],
                "dh0": g[1],
                "dc0": g[2] if self.lstm else None,
                "dweight_hh_l0": g[2 + nl + self.i_whh],
            }
        else:
            with self.context(mode):
                s = self._state(self._t(p["h0"]), self._t(p["c0"]))
                if mode == "gen":
                    x = self._t(p["x"])
                    for _ in range(GEN_CHECK_STEPS):
                        x, s = self.mod(x, s)
                    y = x
                else:
                    y, s = self.mod(self._t(p["x"]), s)
            h, c = (s[0], s[1]) if self.lstm else (s, None)
            out = {"y": y, "h_n": h, "c_n": c}
        return {k: None if v is None else v.detach().numpy() for k, v in out.items()}

    def timed(self, mode: str, p: dict) -> Callable[[], Any]:
        if mode == "train":
            return self._train_fn(p)
        x, s0 = self._t(p["x"]), self._state(self._t(p["h0"]), self._t(p["c0"]))
        if mode == "infer":
            return lambda: self.mod(x, s0)
        carry = [x, s0]

        def gen() -> None:
            carry[0], carry[1] = self.mod(carry[0], carry[1])

        return gen


def side_setup(side: str, threads: int) -> dict[str, Any]:
    """Imports what ``side`` needs, fixes its thread count, returns versions etc."""
    info: dict[str, Any] = {
        "numpy": np.__version__,
        "python": platform.python_version(),
    }
    info["openblas"] = openblas_info(set_threads=threads)
    if side in (
        "rnnkit",
        "numpy",
        "numpy-skx",
        "ref",
        "mem:rnnkit",
        "mem:numpy",
        "peak",
    ):
        try:
            import rnnkit as rk

            info["rnnkit"] = getattr(rk, "__version__", "?")
            if hasattr(rk, "set_num_threads"):
                rk.set_num_threads(threads)
            for name in ("get_simd", "get_num_threads"):
                if hasattr(rk, name):
                    with contextlib.suppress(Exception):
                        info[name.removeprefix("get_")] = getattr(rk, name)()
            if side == "rnnkit" and hasattr(rk, "show_config"):
                buf = io.StringIO()
                with contextlib.redirect_stdout(buf):
                    ret = rk.show_config()
                info["show_config"] = ret if isinstance(ret, str) else buf.getvalue()
        except Exception as e:  # noqa: BLE001 - reported, the side fails later
            info["rnnkit_error"] = f"{type(e).__name__}: {e}"
    if side in ("torch", "mem:torch", "ref"):
        try:
            import torch

            torch.set_num_threads(threads)
            info["torch"] = torch.__version__
            info["torch_threads"] = torch.get_num_threads()
        except ImportError as e:
            info["torch_error"] = str(e)
    return info


def make_side(side: str, c: Config, weights: dict) -> Any:
    if side == "rnnkit":
        import rnnkit

        return LayerSide(rnnkit, c, weights)
    if side in ("numpy", "numpy-skx"):
        import rnnkit.reference

        return LayerSide(rnnkit.reference, c, weights)
    if side == "torch":
        return TorchSide(c, weights)
    raise ValueError(f"unknown side {side!r}")
