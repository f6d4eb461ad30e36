// bindings.cpp: the only file that sees pybind11; builds the module
// rnnkit._core. Every argument is validated here, with the GIL held and
// before any kernel runs, and errors name the argument with the expected and
// actual value. Kernels then run with the GIL released.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <sstream>
#include <string>
#include <vector>

#include "common.h"
#include "dispatch.h"

#ifndef RNNKIT_VERSION
#define RNNKIT_VERSION "0.0.0"
#endif
#ifndef RNNKIT_CXX_FLAGS
#define RNNKIT_CXX_FLAGS ""
#endif
#ifndef RNNKIT_ISA_FLAGS
#define RNNKIT_ISA_FLAGS ""
#endif

namespace py = pybind11;
using rnnkit::RnnArgs;
using rnnkit::RnnDesc;

namespace {

std::atomic<int> g_threads{0};

int num_threads() {
  int n = g_threads.load();
  return n > 0 ? n : std::max(1, omp_get_max_threads());
}

std::string shape_str(const std::vector<int64_t>& s) {
  std::ostringstream o;
  o << "(";
  for (size_t i = 0; i < s.size(); ++i) o << (i ? ", " : "") << s[i];
  o << (s.size() == 1 ? ",)" : ")");
  return o.str();
}

std::vector<int64_t> shape_of(const py::array& a) {
  return std::vector<int64_t>(a.shape(), a.shape() + a.ndim());
}

// The names of cells.h, in its order: "'rnn', 'lstm' or 'gru'".
std::string cell_choices() {
  static const char* const names[] = {
#define RNNKIT_CELL_NAME(name, Struct, gates, has_c) #name,
      RNNKIT_CELLS(RNNKIT_CELL_NAME)
#undef RNNKIT_CELL_NAME
  };
  std::string out;
  for (int i = 0; i < rnnkit::kNumCells; ++i)
    out += std::string(i == 0                       ? ""
                       : i + 1 == rnnkit::kNumCells ? " or "
                                                    : ", ") +
           "'" + names[i] + "'";
  return out;
}

rnnkit::Cell parse_cell(const std::string& cell) {
#define RNNKIT_PARSE_CELL(name, Struct, gates, has_c) \
  if (cell == #name) return rnnkit::Cell::name;
  RNNKIT_CELLS(RNNKIT_PARSE_CELL)
#undef RNNKIT_PARSE_CELL
  throw py::value_error("cell must be " + cell_choices() + ", got '" + cell + "'");
}

rnnkit::Act parse_act(const std::string& act) {
  if (act == "tanh") return rnnkit::kTanh;
  if (act == "relu") return rnnkit::kRelu;
  if (act == "sigmoid") return rnnkit::kSigmoid;
  throw py::value_error("nonlinearity must be 'tanh', 'relu' or 'sigmoid', got '" +
                        act + "'");
}

// An array the kernel reads: exact dtype, C-contiguous, given shape.
template <class Real>
const Real* in_ptr(const char* name, const py::handle& obj,
                   const std::vector<int64_t>& shape) {
  if (!py::isinstance<py::array>(obj))
    throw py::type_error(std::string(name) + " must be a numpy array");
  py::array a = py::reinterpret_borrow<py::array>(obj);
  if (!py::isinstance<py::array_t<Real>>(a))
    throw py::type_error(std::string(name) + " must have dtype " +
                         std::string(py::str(py::dtype::of<Real>())) + ", got " +
                         std::string(py::str(a.dtype())));
  if (shape_of(a) != shape)
    throw py::value_error(std::string(name) + " must have shape " + shape_str(shape) +
                          ", got " + shape_str(shape_of(a)));
  if (!(a.flags() & py::array::c_style))
    throw py::value_error(std::string(name) + " must be C-contiguous");
  return static_cast<const Real*>(a.data());
}

// An array the kernel writes: as above, and writeable (never a silent copy).
template <class Real>
Real* out_ptr(const char* name, const py::handle& obj,
              const std::vector<int64_t>& shape) {
  const Real* p = in_ptr<Real>(name, obj, shape);
  if (!py::reinterpret_borrow<py::array>(obj).writeable())
    throw py::value_error(std::string(name) + " must be writeable");
  return const_cast<Real*>(p);
}

char* workspace_ptr(const char* name, const py::array& a, size_t need) {
  if (!(a.flags() & py::array::c_style) || !a.writeable())
    throw py::value_error(std::string(name) +
                          " must be a writeable C-contiguous array");
  if (size_t(a.nbytes()) < need)
    throw py::value_error(std::string(name) + " must have at least " +
                          std::to_string(need) + " bytes, got " +
                          std::to_string(a.nbytes()));
  return static_cast<char*>(const_cast<void*>(a.data()));
}

RnnDesc make_desc(const std::string& cell, const std::string& act, int64_t T, int64_t B,
                  int64_t I, int64_t H, int64_t L, bool bidirectional, bool bias) {
  RnnDesc d;
  d.cell = parse_cell(cell);
  d.act = parse_act(act);
  d.T = T, d.B = B, d.I = I, d.H = H, d.L = L, d.D = bidirectional ? 2 : 1;
  d.bias = bias;
  d.threads = num_threads();
  if (T < 1 || B < 1 || I < 1 || H < 1 || L < 1)
    throw py::value_error(
        "T, B, I, H and num_layers must be >= 1, got T=" + std::to_string(T) +
        ", B=" + std::to_string(B) + ", I=" + std::to_string(I) +
        ", H=" + std::to_string(H) + ", num_layers=" + std::to_string(L));
  return d;
}

// PyTorch's name of parameter `kind` (0 W_ih, 1 W_hh, 2 b_ih, 3 b_hh) of
// layer l in direction dir: weight_ih_l0, bias_hh_l1_reverse, ...
std::string param_name(int kind, int64_t l, int64_t dir) {
  static const char* const kinds[4] = {"weight_ih", "weight_hh", "bias_ih", "bias_hh"};
  return std::string(kinds[kind]) + "_l" + std::to_string(l) + (dir ? "_reverse" : "");
}

// weights: 4 per (layer, direction): W_ih, W_hh, b_ih, b_hh (biases None
// without bias). Names follow PyTorch for the messages.
template <class Real, class Ptr, class Get>
std::vector<Ptr> weight_ptrs(const RnnDesc& d, const py::list& weights,
                             const char* what, Get get) {
  const int64_t LD = d.L * d.D, GH = d.G() * d.H;
  if (int64_t(weights.size()) != 4 * LD)
    throw py::value_error(std::string(what) + " must hold " + std::to_string(4 * LD) +
                          " entries (4 per layer and direction), got " +
                          std::to_string(weights.size()));
  std::vector<Ptr> out(4 * LD, nullptr);
  for (int64_t l = 0; l < d.L; ++l)
    for (int64_t dir = 0; dir < d.D; ++dir) {
      const int64_t k = 4 * (l * d.D + dir);
      const std::string pre = std::string(what) == "dweights" ? "grad of " : "";
      out[k] =
          get((pre + param_name(0, l, dir)).c_str(), weights[k], {GH, d.in_size(l)});
      out[k + 1] =
          get((pre + param_name(1, l, dir)).c_str(), weights[k + 1], {GH, d.H});
      for (int b = 2; b < 4; ++b) {
        const std::string name = pre + param_name(b, l, dir);
        if (weights[k + b].is_none()) {
          if (d.bias) throw py::value_error(name + " is None but the layer has biases");
        } else {
          if (!d.bias) throw py::value_error(name + " given but bias=False");
          out[k + b] = get(name.c_str(), weights[k + b], {GH});
        }
      }
    }
  return out;
}

const int64_t* lengths_ptr(const py::object& lengths, int64_t T, int64_t B) {
  if (lengths.is_none()) return nullptr;
  const int64_t* p = in_ptr<int64_t>("lengths", lengths, {B});
  for (int64_t b = 0; b < B; ++b)
    if (p[b] < 1 || p[b] > T)
      throw py::value_error("lengths must be in [1, T=" + std::to_string(T) +
                            "], got lengths[" + std::to_string(b) +
                            "] = " + std::to_string(p[b]));
  return p;
}

template <class Real>
py::tuple forward_impl(const RnnDesc& d, const py::array& x, const py::object& h0,
                       const py::object& c0, const py::list& weights,
                       const py::object& lengths, const py::object& reserve,
                       const py::array& scratch, bool train) {
  const bool has_c = rnnkit::cell_has_c(d.cell);
  const std::vector<int64_t> state = {d.L * d.D, d.B, d.H};
  RnnArgs<Real> a;
  a.train = train;
  a.x = in_ptr<Real>("x", x, {d.T, d.B, d.I});
  a.h0 = in_ptr<Real>("h0", h0, state);
  if (has_c) a.c0 = in_ptr<Real>("c0", c0, state);
  auto w = weight_ptrs<Real, const Real*>(
      d, weights, "weights", [](const char* n, py::handle o, std::vector<int64_t> s) {
        return in_ptr<Real>(n, o, s);
      });
  a.weights = w.data();
  a.lengths = lengths_ptr(lengths, d.T, d.B);
  const int isa = rnnkit::isa_active();
  auto need = rnnkit::workspace_size<Real>(
      isa, d, train ? rnnkit::Mode::kTrainForward : rnnkit::Mode::kInference);
  a.scratch = workspace_ptr("scratch", scratch, need.scratch);
  if (train) {
    if (reserve.is_none()) throw py::value_error("reserve is required when train=True");
    a.reserve = workspace_ptr("reserve", reserve.cast<py::array>(), need.reserve);
  }
  py::array_t<Real> y({d.T, d.B, d.D * d.H}), hn(state);
  py::object cn = py::none();
  a.y = y.mutable_data();
  a.hn = hn.mutable_data();
  if (has_c) {
    py::array_t<Real> c(state);
    a.cn = c.mutable_data();
    cn = c;
  }
  {
    py::gil_scoped_release release;
    rnnkit::forward<Real>(isa, d, a);
  }
  return py::make_tuple(y, hn, cn);
}

template <class Real>
py::tuple backward_impl(const RnnDesc& d, const py::array& dy, const py::object& dhn,
                        const py::object& dcn, const py::list& weights,
                        const py::list& dweights, const py::object& lengths,
                        const py::array& reserve, const py::array& scratch) {
  const bool has_c = rnnkit::cell_has_c(d.cell);
  const std::vector<int64_t> state = {d.L * d.D, d.B, d.H};
  RnnArgs<Real> a;
  a.dy = in_ptr<Real>("dy", dy, {d.T, d.B, d.D * d.H});
  a.dhn = in_ptr<Real>("dh_n", dhn, state);
  if (has_c) a.dcn = in_ptr<Real>("dc_n", dcn, state);
  auto w = weight_ptrs<Real, const Real*>(
      d, weights, "weights", [](const char* n, py::handle o, std::vector<int64_t> s) {
        return in_ptr<Real>(n, o, s);
      });
  auto dw = weight_ptrs<Real, Real*>(
      d, dweights, "dweights", [](const char* n, py::handle o, std::vector<int64_t> s) {
        return out_ptr<Real>(n, o, s);
      });
  a.weights = w.data();
  a.dweights = dw.data();
  a.lengths = lengths_ptr(lengths, d.T, d.B);
  const int isa = rnnkit::isa_active();
  auto need = rnnkit::workspace_size<Real>(isa, d, rnnkit::Mode::kBackward);
  a.reserve = workspace_ptr("reserve", reserve, need.reserve);
  a.scratch = workspace_ptr("scratch", scratch, need.scratch);
  py::array_t<Real> dx({d.T, d.B, d.I}), dh0(state);
  py::object dc0 = py::none();
  a.dx = dx.mutable_data();
  a.dh0 = dh0.mutable_data();
  if (has_c) {
    py::array_t<Real> c(state);
    a.dc0 = c.mutable_data();
    dc0 = c;
  }
  {
    py::gil_scoped_release release;
    rnnkit::backward<Real>(isa, d, a);
  }
  return py::make_tuple(dx, dh0, dc0);
}

bool is_f64(const py::array& a) { return a.dtype().kind() == 'f' && a.itemsize() == 8; }

// One step at a time (generation): weights packed once at construction for the
// SIMD path active then, state carried inside between calls.
template <class Real>
class Stepper {
 public:
  Stepper(const std::string& cell, const std::string& act, int64_t L, int64_t B,
          const py::list& weights) {
    if (weights.size() < 2 || !py::isinstance<py::array>(weights[0]) ||
        !py::isinstance<py::array>(weights[1]))
      throw py::value_error("weights must start with " + param_name(0, 0, 0) + ", " +
                            param_name(1, 0, 0) + " arrays");
    py::array w0 = weights[0], w1 = weights[1];
    if (w0.ndim() != 2 || w1.ndim() != 2)
      throw py::value_error(param_name(0, 0, 0) + " and " + param_name(1, 0, 0) +
                            " must be 2-D");
    d_ = make_desc(cell, act, 1, B, w0.shape(1), w1.shape(1), L, false,
                   weights.size() > 2 && !weights[2].is_none());
    auto w = weight_ptrs<Real, const Real*>(
        d_, weights, "weights",
        [](const char* n, py::handle o, std::vector<int64_t> s) {
          return in_ptr<Real>(n, o, s);
        });
    isa_ = rnnkit::isa_active();
    ws_.assign(rnnkit::step_size<Real>(isa_, d_) + 64, 0);
    rnnkit::step_init<Real>(isa_, d_, base(), w.data());
  }

  py::array_t<Real> step(const py::array& xin) {
    if (xin.ndim() != 2 || xin.shape(0) != d_.B || xin.shape(1) != d_.I)
      throw py::value_error("x must have shape " + shape_str({d_.B, d_.I}) + ", got " +
                            shape_str(shape_of(xin)));
    if (xin.dtype().kind() != 'f')
      throw py::type_error("x must be a floating-point array, got dtype " +
                           std::string(py::str(xin.dtype())));
    auto x = py::array_t<Real, py::array::c_style | py::array::forcecast>::ensure(xin);
    py::array_t<Real> y({d_.B, d_.H});
    d_.threads = num_threads();
    const Real* xp = x.data();
    Real* yp = y.mutable_data();
    {
      py::gil_scoped_release release;
      rnnkit::step<Real>(isa_, d_, base(), xp, yp);
    }
    return y;
  }

  py::tuple get_state() {
    const std::vector<int64_t> shape = {d_.L, d_.B, d_.H};
    py::array_t<Real> h(shape);
    py::object c = py::none();
    Real* cp = nullptr;
    if (rnnkit::cell_has_c(d_.cell)) {
      py::array_t<Real> ca(shape);
      cp = ca.mutable_data();
      c = ca;
    }
    rnnkit::step_state<Real>(isa_, d_, base(), h.mutable_data(), cp, false);
    return py::make_tuple(h, c);
  }

  void set_state(const py::object& h, const py::object& c) {
    const std::vector<int64_t> shape = {d_.L, d_.B, d_.H};
    const Real* hp = in_ptr<Real>("h", h, shape);
    const Real* cp =
        rnnkit::cell_has_c(d_.cell) ? in_ptr<Real>("c", c, shape) : nullptr;
    rnnkit::step_state<Real>(isa_, d_, base(), const_cast<Real*>(hp),
                             const_cast<Real*>(cp), true);
  }

  std::string simd() const { return rnnkit::isa_name(isa_); }
  int64_t batch() const { return d_.B; }

 private:
  char* base() {
    uintptr_t p = reinterpret_cast<uintptr_t>(ws_.data());
    return reinterpret_cast<char*>((p + 63) & ~uintptr_t(63));
  }
  RnnDesc d_;
  int isa_ = 0;
  std::vector<char> ws_;
};

template <class Real>
void bind_stepper(py::module_& m, const char* name) {
  py::class_<Stepper<Real>>(m, name)
      .def(py::init<const std::string&, const std::string&, int64_t, int64_t,
                    const py::list&>(),
           py::arg("cell"), py::arg("nonlinearity"), py::arg("num_layers"),
           py::arg("batch_size"), py::arg("weights"))
      .def("step", &Stepper<Real>::step, py::arg("x"),
           "x (B, I) -> y (B, H), the top layer's new state; the state advances.")
      .def("get_state", &Stepper<Real>::get_state)
      .def("set_state", &Stepper<Real>::set_state, py::arg("h"),
           py::arg("c") = py::none())
      .def_property_readonly("simd", &Stepper<Real>::simd)
      .def_property_readonly("batch_size", &Stepper<Real>::batch);
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "rnnkit compiled kernels (use the Python API in rnnkit, not this module)";
  m.attr("__version__") = RNNKIT_VERSION;

  py::enum_<rnnkit::Mode>(m, "Mode", "What a kernel call does (sizes its workspace).")
      .value("INFERENCE", rnnkit::Mode::kInference, "forward without a reserve")
      .value("TRAIN_FORWARD", rnnkit::Mode::kTrainForward,
             "forward that fills the reserve for backward")
      .value("BACKWARD", rnnkit::Mode::kBackward, "backpropagation through time");

  m.def(
      "workspace_size",
      [](const std::string& cell, const std::string& dtype, int64_t T, int64_t B,
         int64_t I, int64_t H, int64_t L, bool bidirectional, bool bias,
         rnnkit::Mode mode) {
        RnnDesc d = make_desc(cell, "tanh", T, B, I, H, L, bidirectional, bias);
        const int isa = rnnkit::isa_active();
        rnnkit::WorkspaceSize w;
        if (dtype == "float32")
          w = rnnkit::workspace_size<float>(isa, d, mode);
        else if (dtype == "float64")
          w = rnnkit::workspace_size<double>(isa, d, mode);
        else
          throw py::type_error("dtype must be 'float32' or 'float64', got '" + dtype +
                               "'");
        return py::make_tuple(w.reserve, w.scratch);
      },
      py::arg("cell"), py::arg("dtype"), py::arg("T"), py::arg("B"), py::arg("I"),
      py::arg("H"), py::arg("num_layers"), py::arg("bidirectional"), py::arg("bias"),
      py::arg("mode"),
      "Bytes of (reserve, scratch) for a call of the given Mode with the active SIMD "
      "path and thread count.");

  m.def(
      "forward",
      [](const std::string& cell, const std::string& act, int64_t L, bool bidirectional,
         const py::array& x, const py::object& h0, const py::object& c0,
         const py::list& weights, const py::object& lengths, const py::object& reserve,
         const py::array& scratch, bool train) {
        if (x.ndim() != 3)
          throw py::value_error("x must be 3-D (T, B, I), got ndim " +
                                std::to_string(x.ndim()));
        if (weights.size() < 2 || !py::isinstance<py::array>(weights[1]) ||
            py::reinterpret_borrow<py::array>(weights[1]).ndim() != 2)
          throw py::value_error("weights[1] must be " + param_name(1, 0, 0) +
                                ", a 2-D array");
        const int64_t H = py::reinterpret_borrow<py::array>(weights[1]).shape(1);
        RnnDesc d = make_desc(cell, act, x.shape(0), x.shape(1), x.shape(2), H, L,
                              bidirectional, !weights[2].is_none());
        if (is_f64(x))
          return forward_impl<double>(d, x, h0, c0, weights, lengths, reserve, scratch,
                                      train);
        return forward_impl<float>(d, x, h0, c0, weights, lengths, reserve, scratch,
                                   train);
      },
      py::arg("cell"), py::arg("nonlinearity"), py::arg("num_layers"),
      py::arg("bidirectional"), py::arg("x"), py::arg("h0"), py::arg("c0"),
      py::arg("weights"), py::arg("lengths"), py::arg("reserve"), py::arg("scratch"),
      py::arg("train"),
      "Runs the stacked layer over x (T, B, I); returns (y, h_n, c_n or None).");

  m.def(
      "backward",
      [](const std::string& cell, const std::string& act, int64_t L, bool bidirectional,
         int64_t I, const py::array& dy, const py::object& dhn, const py::object& dcn,
         const py::list& weights, const py::list& dweights, const py::object& lengths,
         const py::array& reserve, const py::array& scratch) {
        if (dy.ndim() != 3)
          throw py::value_error("dy must be 3-D (T, B, D*H), got ndim " +
                                std::to_string(dy.ndim()));
        const int64_t D = bidirectional ? 2 : 1;
        if (dy.shape(2) % D != 0)
          throw py::value_error("dy last axis must be a multiple of " +
                                std::to_string(D));
        RnnDesc d =
            make_desc(cell, act, dy.shape(0), dy.shape(1), I, dy.shape(2) / D, L,
                      bidirectional, weights.size() > 2 && !weights[2].is_none());
        if (is_f64(dy))
          return backward_impl<double>(d, dy, dhn, dcn, weights, dweights, lengths,
                                       reserve, scratch);
        return backward_impl<float>(d, dy, dhn, dcn, weights, dweights, lengths,
                                    reserve, scratch);
      },
      py::arg("cell"), py::arg("nonlinearity"), py::arg("num_layers"),
      py::arg("bidirectional"), py::arg("input_size"), py::arg("dy"), py::arg("dh_n"),
      py::arg("dc_n"), py::arg("weights"), py::arg("dweights"), py::arg("lengths"),
      py::arg("reserve"), py::arg("scratch"),
      "Backpropagation through time for the training forward that filled reserve; adds "
      "into dweights and returns (dx, dh0, dc0 or None).");

  bind_stepper<float>(m, "Stepper32");
  bind_stepper<double>(m, "Stepper64");

  m.def(
      "simd_paths",
      [] {
        std::vector<std::string> out;
        for (int isa = rnnkit::kNumIsa - 1; isa >= 0; --isa)
          if (rnnkit::isa_supported(isa)) out.push_back(rnnkit::isa_name(isa));
        return out;
      },
      "SIMD paths this build contains and this CPU runs, best first.");
  m.def("compiled_simd_paths", [] {
    std::vector<std::string> out;
    for (int isa = rnnkit::kNumIsa - 1; isa >= 0; --isa)
      if (rnnkit::isa_compiled(isa)) out.push_back(rnnkit::isa_name(isa));
    return out;
  });
  m.def("get_simd", [] { return std::string(rnnkit::isa_name(rnnkit::isa_active())); });
  m.def(
      "set_simd",
      [](const std::string& name) {
        int isa = rnnkit::isa_from_name(name.c_str());
        if (isa < 0)
          throw py::value_error(
              "simd path must be one of 'avx512', 'avx2', 'generic', got '" + name +
              "'");
        if (!rnnkit::isa_supported(isa))
          throw py::value_error("simd path '" + name + "' is not " +
                                (rnnkit::isa_compiled(isa)
                                     ? "supported by this CPU"
                                     : "compiled into this build"));
        rnnkit::isa_set(isa);
      },
      py::arg("name"));
  m.def("get_num_threads", [] { return num_threads(); });
  m.def(
      "set_num_threads",
      [](int n) {
        if (n < 1) throw py::value_error("n must be >= 1, got " + std::to_string(n));
        g_threads.store(n);
        rnnkit::contention().reset();
      },
      py::arg("n"));
  m.def(
      "set_adaptive_threads",
      [](bool on) {
        rnnkit::contention().reset();
        __atomic_store_n(&rnnkit::contention().enabled, on ? 1 : 0, __ATOMIC_RELAXED);
      },
      py::arg("on"),
      "Whether calls fall back to one thread after a contended call (default on).");
  m.def("get_adaptive_threads", [] {
    return __atomic_load_n(&rnnkit::contention().enabled, __ATOMIC_RELAXED) != 0;
  });
  m.def(
      "fma_peak_gflops",
      [](double seconds) {
        py::gil_scoped_release release;
        return rnnkit::fma_peak_gflops(seconds, num_threads());
      },
      py::arg("seconds") = 0.2,
      "GFLOP/s of an FMA loop on all threads with the active SIMD path (float32).");
  m.def(
      "gemm_gflops",
      [](int64_t M, int64_t N, int64_t K, bool ta, bool tb, int reps) {
        if (M < 1 || N < 1 || K < 1 || reps < 1)
          throw py::value_error("M, N, K and reps must be >= 1");
        py::gil_scoped_release release;
        return rnnkit::gemm_gflops(M, N, K, ta, tb, reps, num_threads());
      },
      py::arg("M"), py::arg("N"), py::arg("K"), py::arg("trans_a") = false,
      py::arg("trans_b") = false, py::arg("reps") = 3,
      "GFLOP/s of the kernels' float32 GEMM alone (benchmarks and tuning).");
  m.def("build_info", [] {
    py::dict info;
#if defined(__clang__)
    info["compiler"] = std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
    info["compiler"] = std::string("gcc ") + __VERSION__;
#else
    info["compiler"] = "unknown";
#endif
    info["cxx_flags"] = RNNKIT_CXX_FLAGS;
    info["isa_flags"] = RNNKIT_ISA_FLAGS;
    info["openmp"] = _OPENMP;
    info["max_threads"] = omp_get_max_threads();
    return info;
  });
}
