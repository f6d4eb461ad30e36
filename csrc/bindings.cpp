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
#include "layernorm.h"

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

// The masks of the layer options (issue 12), per the mask contract: lists of
// arrays in real time indexed by the original batch row, or None. They set the
// option flags of the desc (the workspace depends on them), and forward and
// its backward must get the same ones.
template <class Real>
struct OptionMasks {
  std::vector<const Real*> rec, drop;
  std::vector<const uint8_t*> zh, zc;
};

template <class T>
std::vector<const T*> mask_list(const char* name, const py::object& obj, int64_t count,
                                const std::vector<int64_t>& shape) {
  std::vector<const T*> out;
  if (obj.is_none()) return out;
  if (!py::isinstance<py::list>(obj) && !py::isinstance<py::tuple>(obj))
    throw py::type_error(std::string(name) + " must be a list of arrays or None, got " +
                         std::string(py::str(obj.get_type().attr("__name__"))));
  py::sequence seq = py::reinterpret_borrow<py::sequence>(obj);
  if (int64_t(seq.size()) != count)
    throw py::value_error(std::string(name) + " must hold " + std::to_string(count) +
                          " arrays, got " + std::to_string(seq.size()));
  for (int64_t i = 0; i < count; ++i) {
    const std::string item = std::string(name) + "[" + std::to_string(i) + "]";
    out.push_back(in_ptr<T>(item.c_str(), seq[i], shape));
  }
  return out;
}

template <class Real>
OptionMasks<Real> option_masks(RnnDesc& d, bool train, const py::object& rec,
                               const py::object& zh, const py::object& zc,
                               const py::object& drop, double zoneout) {
  const bool has_c = rnnkit::cell_has_c(d.cell);
  if (!(zoneout >= 0.0 && zoneout < 1.0))
    throw py::value_error("zoneout must be in [0, 1), got " + std::to_string(zoneout));
  if (!train)
    for (auto [name, o] : {std::pair<const char*, const py::object*>{"rec_masks", &rec},
                           {"zone_h", &zh},
                           {"zone_c", &zc},
                           {"drop_masks", &drop}})
      if (!o->is_none())
        throw py::value_error(
            std::string(name) +
            " must be None when train=False (inference draws no mask)");
  const int64_t LD = d.L * d.D;
  OptionMasks<Real> m;
  d.zoneout = zoneout;
  m.rec = mask_list<Real>("rec_masks", rec, LD, {d.B, d.H});
  m.zh = mask_list<uint8_t>("zone_h", zh, LD, {d.T, d.B, d.H});
  if (!has_c && !zc.is_none())
    throw py::value_error("zone_c must be None for a cell without a cell state");
  m.zc = mask_list<uint8_t>("zone_c", zc, LD, {d.T, d.B, d.H});
  if (m.zh.empty() != m.zc.empty() && has_c)
    throw py::value_error("zone_h and zone_c must be given together (LSTM zoneout)");
  m.drop = mask_list<Real>("drop_masks", drop, d.L - 1, {d.T, d.B, d.D * d.H});
  d.rdrop = !m.rec.empty();
  d.zone = !m.zh.empty();
  d.drop = !drop.is_none() && d.L > 1;
  return m;
}

template <class Real>
void set_masks(RnnArgs<Real>& a, const OptionMasks<Real>& m) {
  a.rec_mask = m.rec.empty() ? nullptr : m.rec.data();
  a.zone_h = m.zh.empty() ? nullptr : m.zh.data();
  a.zone_c = m.zc.empty() ? nullptr : m.zc.data();
  a.drop_mask = m.drop.empty() ? nullptr : m.drop.data();
}

// The fused cells' kernels as forward_impl / backward_impl call them; the
// layer-normalised cells (LnKernel, further down) supply the same members.
template <class R>
struct FusedKernel {
  using Real = R;
  using Args = RnnArgs<R>;
  template <class Ptr, class Get>
  static std::vector<Ptr> weights(const RnnDesc& d, const py::list& w, bool grads,
                                  Get get) {
    return weight_ptrs<R, Ptr>(d, w, grads ? "dweights" : "weights", get);
  }
  static rnnkit::WorkspaceSize size(int isa, const RnnDesc& d, rnnkit::Mode mode) {
    return rnnkit::workspace_size<R>(isa, d, mode);
  }
  static void forward(int isa, const RnnDesc& d, const Args& a) {
    rnnkit::forward<R>(isa, d, a);
  }
  static void backward(int isa, const RnnDesc& d, const Args& a) {
    rnnkit::backward<R>(isa, d, a);
  }
};

// (reserve, scratch) bytes of kernel family K (FusedKernel, LnKernel) for the
// dtype named, with the active SIMD path.
template <template <class> class K>
py::tuple workspace_tuple(const std::string& dtype, const RnnDesc& d,
                          rnnkit::Mode mode) {
  const int isa = rnnkit::isa_active();
  rnnkit::WorkspaceSize w;
  if (dtype == "float32")
    w = K<float>::size(isa, d, mode);
  else if (dtype == "float64")
    w = K<double>::size(isa, d, mode);
  else
    throw py::type_error("dtype must be 'float32' or 'float64', got '" + dtype + "'");
  return py::make_tuple(w.reserve, w.scratch);
}

template <class Real>
const Real* in_arg(const char* n, py::handle o, std::vector<int64_t> s) {
  return in_ptr<Real>(n, o, s);
}
template <class Real>
Real* out_arg(const char* n, py::handle o, std::vector<int64_t> s) {
  return out_ptr<Real>(n, o, s);
}

// A forward of kernel K: checks every array against d, allocates the outputs,
// runs without the GIL. a comes with its option masks set.
template <class K, class Real = typename K::Real>
py::tuple forward_impl(const RnnDesc& d, typename K::Args a, const py::array& x,
                       const py::object& h0, const py::object& c0,
                       const py::list& weights, const py::object& lengths,
                       const py::object& reserve, const py::array& scratch,
                       bool train) {
  const bool has_c = rnnkit::cell_has_c(d.cell);
  const std::vector<int64_t> state = {d.L * d.D, d.B, d.H};
  a.train = train;
  a.x = in_ptr<Real>("x", x, {d.T, d.B, d.I});
  a.h0 = in_ptr<Real>("h0", h0, state);
  if (has_c) a.c0 = in_ptr<Real>("c0", c0, state);
  auto w = K::template weights<const Real*>(d, weights, false, in_arg<Real>);
  a.weights = w.data();
  a.lengths = lengths_ptr(lengths, d.T, d.B);
  const int isa = rnnkit::isa_active();
  auto need =
      K::size(isa, d, train ? rnnkit::Mode::kTrainForward : rnnkit::Mode::kInference);
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
    K::forward(isa, d, a);
  }
  return py::make_tuple(y, hn, cn);
}

// The backward of kernel K (see forward_impl).
template <class K, class Real = typename K::Real>
py::tuple backward_impl(const RnnDesc& d, typename K::Args a, const py::array& dy,
                        const py::object& dhn, const py::object& dcn,
                        const py::list& weights, const py::list& dweights,
                        const py::object& lengths, const py::array& reserve,
                        const py::array& scratch) {
  const bool has_c = rnnkit::cell_has_c(d.cell);
  const std::vector<int64_t> state = {d.L * d.D, d.B, d.H};
  a.dy = in_ptr<Real>("dy", dy, {d.T, d.B, d.D * d.H});
  a.dhn = in_ptr<Real>("dh_n", dhn, state);
  if (has_c) a.dcn = in_ptr<Real>("dc_n", dcn, state);
  auto w = K::template weights<const Real*>(d, weights, false, in_arg<Real>);
  auto dw = K::template weights<Real*>(d, dweights, true, out_arg<Real>);
  a.weights = w.data();
  a.dweights = dw.data();
  a.lengths = lengths_ptr(lengths, d.T, d.B);
  const int isa = rnnkit::isa_active();
  auto need = K::size(isa, d, rnnkit::Mode::kBackward);
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
    K::backward(isa, d, a);
  }
  return py::make_tuple(dx, dh0, dc0);
}

// The fused kernels' arguments with the option masks m set (m must outlive
// the call).
template <class Real>
RnnArgs<Real> fused_args(const OptionMasks<Real>& m) {
  RnnArgs<Real> a;
  set_masks(a, m);
  return a;
}

bool is_f64(const py::array& a) { return a.dtype().kind() == 'f' && a.itemsize() == 8; }

// One step at a time (generation): weights packed once at construction for the
// SIMD path active then, state carried inside between calls.
template <class Real>
class Stepper {
 public:
  Stepper(const std::string& cell, const std::string& act, int64_t L, int64_t B,
          const py::list& weights, double zoneout) {
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
    if (!(zoneout >= 0.0 && zoneout < 1.0))
      throw py::value_error("zoneout must be in [0, 1), got " +
                            std::to_string(zoneout));
    d_.zoneout = zoneout;
    auto w = weight_ptrs<Real, const Real*>(d_, weights, "weights", in_arg<Real>);
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
                    const py::list&, double>(),
           py::arg("cell"), py::arg("nonlinearity"), py::arg("num_layers"),
           py::arg("batch_size"), py::arg("weights"), py::kw_only(),
           py::arg("zoneout") = 0.0)
      .def("step", &Stepper<Real>::step, py::arg("x"),
           "x (B, I) -> y (B, H), the top layer's new state; the state advances.")
      .def("get_state", &Stepper<Real>::get_state)
      .def("set_state", &Stepper<Real>::set_state, py::arg("h"),
           py::arg("c") = py::none())
      .def_property_readonly("simd", &Stepper<Real>::simd)
      .def_property_readonly("batch_size", &Stepper<Real>::batch);
}

// ---------------------------------------------------------------- blocks
// The kernels around the recurrent layers (blocks.h). Arrays the kernels
// write are taken as they are (exact dtype, C-contiguous, writeable) and
// never converted; everything is checked before the GIL is released.

// Scratch of the calling thread (GEMM packing, norm partials), kept between
// calls: Python threads running kernels at once each have their own.
template <class Real>
Real* thread_scratch(size_t count) {
  thread_local std::vector<char> buf;
  const size_t need = count * sizeof(Real) + 64;
  if (buf.size() < need) buf.resize(need);
  uintptr_t p = reinterpret_cast<uintptr_t>(buf.data());
  return reinterpret_cast<Real*>((p + 63) & ~uintptr_t(63));
}

int parse_block_act(const py::object& act) {
  if (act.is_none()) return -1;
  return int(parse_act(act.cast<std::string>()));
}

// A 2-D float array's (rows, cols), named in the error.
std::vector<int64_t> dims2(const char* name, const py::array& a) {
  if (a.ndim() != 2)
    throw py::value_error(std::string(name) + " must be 2-D, got shape " +
                          shape_str(shape_of(a)));
  return shape_of(a);
}

template <class Real>
py::array_t<Real> linear_forward_impl(const py::array& x, const py::array& w,
                                      const py::object& b, int act) {
  const auto xs = dims2("x", x), ws = dims2("weight", w);
  rnnkit::LinearArgs<Real> a;
  a.N = xs[0], a.I = xs[1], a.O = ws[0];
  a.act = act;
  a.x = in_ptr<Real>("x", x, {a.N, a.I});
  a.W = in_ptr<Real>("weight", w, {a.O, a.I});
  if (!b.is_none()) a.b = in_ptr<Real>("bias", b, {a.O});
  py::array_t<Real> y({a.N, a.O});
  a.y = y.mutable_data();
  a.threads = num_threads();
  const int isa = rnnkit::isa_active();
  a.pack = thread_scratch<Real>(size_t(rnnkit::gemm_pack_size<Real>(isa, a.threads)));
  if (a.N > 0) {
    py::gil_scoped_release release;
    rnnkit::linear_forward<Real>(isa, a);
  }
  return y;
}

template <class Real>
py::object linear_backward_impl(const py::array& dy, const py::array& x,
                                const py::object& y, const py::array& w,
                                const py::object& dw, const py::object& db, int act,
                                bool need_dx) {
  const auto xs = dims2("x", x), ws = dims2("weight", w);
  rnnkit::LinearArgs<Real> a;
  a.N = xs[0], a.I = xs[1], a.O = ws[0];
  a.act = act;
  a.x = in_ptr<Real>("x", x, {a.N, a.I});
  a.W = in_ptr<Real>("weight", w, {a.O, a.I});
  a.dy = in_ptr<Real>("dy", dy, {a.N, a.O});
  a.dW = out_ptr<Real>("dweight", dw, {a.O, a.I});
  if (!db.is_none()) a.db = out_ptr<Real>("dbias", db, {a.O});
  py::object da_keep = py::none();
  if (act >= 0) {
    a.y = const_cast<Real*>(in_ptr<Real>("y", y, {a.N, a.O}));
    py::array_t<Real> da({a.N, a.O});
    a.da = da.mutable_data();
    da_keep = da;
  }
  py::object dx = py::none();
  if (need_dx) {
    py::array_t<Real> d({a.N, a.I});
    a.dx = d.mutable_data();
    dx = d;
  }
  a.threads = num_threads();
  const int isa = rnnkit::isa_active();
  a.pack = thread_scratch<Real>(size_t(rnnkit::gemm_pack_size<Real>(isa, a.threads)));
  if (a.N > 0) {
    py::gil_scoped_release release;
    rnnkit::linear_backward<Real>(isa, a);
  } else if (a.dx) {
    // no rows: dx is empty, the gradients get nothing
  }
  return dx;
}

// Which rows count: targets != ignore_index and mask; targets there must be
// in [0, C) (IndexError naming the flat position otherwise).
template <class Real>
py::tuple xent_impl(const py::array& z, const py::array& targets,
                    const py::object& mask, const py::object& ignore_index, bool mean,
                    const py::object& out) {
  const auto zs = dims2("logits", z);
  rnnkit::XentArgs<Real> a;
  a.N = zs[0], a.C = zs[1];
  a.z = in_ptr<Real>("logits", z, {a.N, a.C});
  a.target = in_ptr<int64_t>("targets", targets, {a.N});
  const uint8_t* m = nullptr;
  if (!mask.is_none()) {
    if (!py::isinstance<py::array_t<bool>>(mask))
      throw py::type_error("mask must be a bool array");
    m = reinterpret_cast<const uint8_t*>(in_ptr<bool>("mask", mask, {a.N}));
  }
  const bool has_ignore = !ignore_index.is_none();
  const int64_t ignore = has_ignore ? ignore_index.cast<int64_t>() : 0;
  py::array_t<uint8_t> valid(a.N);
  uint8_t* v = valid.mutable_data();
  int64_t n = 0;
  for (int64_t r = 0; r < a.N; ++r) {
    const int64_t t = a.target[r];
    const bool ok = !(has_ignore && t == ignore) && (!m || m[r]);
    if (ok && (t < 0 || t >= a.C))
      throw py::index_error("targets[" + std::to_string(r) +
                            "] = " + std::to_string(t) + " is outside [0, " +
                            std::to_string(a.C) + ")");
    v[r] = ok;
    n += ok;
  }
  a.valid = v;
  py::array_t<Real> d;
  py::object dobj;
  if (out.is_none()) {
    d = py::array_t<Real>({a.N, a.C});
    a.dz = d.mutable_data();
    dobj = d;
  } else {
    a.dz = out_ptr<Real>("out", out, {a.N, a.C});
    dobj = out;
  }
  a.scale = mean && n > 0 ? Real(1.0 / double(n)) : Real(1);
  std::vector<double> nll(size_t(a.N));
  a.nll = nll.data();
  a.threads = num_threads();
  const int isa = rnnkit::isa_active();
  double total = 0;
  {
    py::gil_scoped_release release;
    if (a.N > 0) rnnkit::xent<Real>(isa, a);
    for (int64_t r = 0; r < a.N; ++r) total += nll[size_t(r)];
  }
  if (mean && n > 0) total /= double(n);
  return py::make_tuple(n > 0 ? total : 0.0, n, dobj);
}

const int64_t* ids_ptr(const py::array& ids, int64_t N, int64_t V) {
  const int64_t* p = in_ptr<int64_t>("ids", ids, {N});
  for (int64_t r = 0; r < N; ++r)
    if (p[r] < 0 || p[r] >= V)
      throw py::index_error("ids[" + std::to_string(r) + "] = " + std::to_string(p[r]) +
                            " is outside the vocabulary [0, " + std::to_string(V) +
                            ")");
  return p;
}

template <class Real>
py::array_t<Real> embedding_forward_impl(const py::array& ids, const py::array& w) {
  const auto ws = dims2("weight", w);
  if (ids.ndim() != 1)
    throw py::value_error("ids must be 1-D, got shape " + shape_str(shape_of(ids)));
  rnnkit::EmbeddingArgs<Real> a;
  a.N = ids.shape(0), a.V = ws[0], a.E = ws[1];
  a.W = in_ptr<Real>("weight", w, {a.V, a.E});
  a.ids = ids_ptr(ids, a.N, a.V);
  py::array_t<Real> y({a.N, a.E});
  a.y = y.mutable_data();
  a.threads = num_threads();
  const int isa = rnnkit::isa_active();
  if (a.N > 0) {
    py::gil_scoped_release release;
    rnnkit::embedding_forward<Real>(isa, a);
  }
  return y;
}

template <class Real>
void embedding_backward_impl(const py::array& ids, const py::array& dy,
                             const py::object& dw, int64_t padding) {
  const auto ws = dims2("dweight", dw.cast<py::array>());
  if (ids.ndim() != 1)
    throw py::value_error("ids must be 1-D, got shape " + shape_str(shape_of(ids)));
  rnnkit::EmbeddingArgs<Real> a;
  a.N = ids.shape(0), a.V = ws[0], a.E = ws[1];
  a.dW = out_ptr<Real>("dweight", dw, {a.V, a.E});
  a.dy = in_ptr<Real>("dy", dy, {a.N, a.E});
  a.ids = ids_ptr(ids, a.N, a.V);
  a.padding = padding;
  a.threads = num_threads();
  const int isa = rnnkit::isa_active();
  if (a.N > 0) {
    py::gil_scoped_release release;
    rnnkit::embedding_backward<Real>(isa, a);
  }
}

rnnkit::OptimKind parse_optim(const std::string& kind) {
  if (kind == "sgd") return rnnkit::OptimKind::kSgd;
  if (kind == "adagrad") return rnnkit::OptimKind::kAdagrad;
  if (kind == "rmsprop") return rnnkit::OptimKind::kRmsprop;
  if (kind == "adam") return rnnkit::OptimKind::kAdam;
  throw py::value_error("kind must be 'sgd', 'adagrad', 'rmsprop' or 'adam', got '" +
                        kind + "'");
}

template <class Real>
void optim_impl(rnnkit::OptimArgs<Real> a, const py::array& p, const py::array& g,
                const py::list& slots) {
  if (p.ndim() != 1) throw py::value_error("param must be 1-D (a flat buffer)");
  a.n = p.shape(0);
  a.p = out_ptr<Real>("param", p, {a.n});
  a.g = in_ptr<Real>("grad", g, {a.n});
  // the slots each kind needs, in blocks.h's order
  bool need[3] = {false, false, false};
  switch (a.kind) {
    case rnnkit::OptimKind::kSgd:
      need[0] = a.momentum != 0;
      break;
    case rnnkit::OptimKind::kAdagrad:
      need[0] = true;
      break;
    case rnnkit::OptimKind::kRmsprop:
      need[0] = true, need[1] = a.momentum != 0, need[2] = a.centered;
      break;
    case rnnkit::OptimKind::kAdam:
      need[0] = need[1] = true, need[2] = a.amsgrad;
      break;
  }
  Real* ptr[3] = {nullptr, nullptr, nullptr};
  if (slots.size() > 3)
    throw py::value_error("slots must hold at most 3 entries, got " +
                          std::to_string(slots.size()));
  for (int i = 0; i < 3; ++i) {
    const bool given = i < int(slots.size()) && !slots[size_t(i)].is_none();
    const std::string name = "slots[" + std::to_string(i) + "]";
    if (need[i] && !given) throw py::value_error(name + " is required for this update");
    if (need[i]) ptr[i] = out_ptr<Real>(name.c_str(), slots[size_t(i)], {a.n});
  }
  a.s0 = ptr[0], a.s1 = ptr[1], a.s2 = ptr[2];
  a.threads = num_threads();
  const int isa = rnnkit::isa_active();
  py::gil_scoped_release release;
  rnnkit::optim_step<Real>(isa, a);
}

template <class Real>
double sum_squares_impl(const py::array& x, double scale) {
  if (x.ndim() != 1) throw py::value_error("x must be 1-D (a flat buffer)");
  const int64_t n = x.shape(0);
  const Real* p = in_ptr<Real>("x", x, {n});
  double* partial = thread_scratch<double>(size_t(rnnkit::norm_blocks(n)) + 1);
  const int threads = num_threads();
  const int isa = rnnkit::isa_active();
  py::gil_scoped_release release;
  return rnnkit::sum_squares<Real>(isa, p, n, scale, partial, threads);
}

template <class Real>
void scale_impl(const py::array& x, double s) {
  if (x.ndim() != 1) throw py::value_error("x must be 1-D (a flat buffer)");
  const int64_t n = x.shape(0);
  Real* p = out_ptr<Real>("x", x, {n});
  const int threads = num_threads();
  const int isa = rnnkit::isa_active();
  py::gil_scoped_release release;
  rnnkit::scale_buffer<Real>(isa, p, n, Real(s), threads);
}

// The 64-bit key of a mask: a Python int (or NumPy integer) in [0, 2^64).
uint64_t mask_key(const py::object& key) {
  if (py::isinstance<py::bool_>(key) || !PyIndex_Check(key.ptr()))
    throw py::type_error("key must be an int in [0, 2**64), got " +
                         std::string(py::str(py::type::of(key).attr("__name__"))));
  const py::int_ k = py::reinterpret_steal<py::int_>(PyNumber_Index(key.ptr()));
  if (!k) throw py::error_already_set();
  if (k < py::int_(0) || k.attr("bit_length")().cast<int>() > 64)
    throw py::value_error("key must be in [0, 2**64), got " + std::string(py::str(k)));
  return PyLong_AsUnsignedLongLong(k.ptr());
}

// A real-valued scalar argument (not a bool), as a double.
double real_arg(const char* name, const py::object& obj) {
  if (!py::isinstance<py::bool_>(obj) && PyNumber_Check(obj.ptr()) &&
      !PyComplex_Check(obj.ptr())) {
    const double v = PyFloat_AsDouble(obj.ptr());
    if (!(v == -1.0 && PyErr_Occurred())) return v;
    PyErr_Clear();
  }
  throw py::type_error(std::string(name) + " must be a real number, got " +
                       std::string(py::str(py::type::of(obj).attr("__name__"))));
}

template <class Out>
void bernoulli_impl(const py::array& out, double p, uint64_t key, double value) {
  if (!(out.flags() & py::array::c_style))
    throw py::value_error("out must be C-contiguous");
  if (!out.writeable()) throw py::value_error("out must be writeable");
  rnnkit::BernoulliArgs<Out> a;
  a.n = int64_t(out.size());
  a.out = static_cast<Out*>(const_cast<void*>(out.data()));
  a.key = key;
  // round(p 2^32): p 2^32 is exact in double, +0.5 and truncation round half up
  a.thr = uint64_t(p * 4294967296.0 + 0.5);
  a.value = Out(value);
  a.threads = num_threads();
  const int isa = rnnkit::isa_active();
  if (a.n > 0) {
    py::gil_scoped_release release;
    rnnkit::bernoulli<Out>(isa, a);
  }
}

// float32 or float64, from the array that decides the call's dtype.
bool float_dtype(const char* name, const py::array& a) {
  if (a.dtype().kind() == 'f' && (a.itemsize() == 4 || a.itemsize() == 8))
    return a.itemsize() == 8;
  throw py::type_error(std::string(name) + " must have dtype float32 or float64, got " +
                       std::string(py::str(a.dtype())));
}

void bind_blocks(py::module_& m) {
  m.def(
      "linear_forward",
      [](const py::array& x, const py::array& w, const py::object& b,
         const py::object& act) -> py::object {
        if (float_dtype("x", x))
          return linear_forward_impl<double>(x, w, b, parse_block_act(act));
        return linear_forward_impl<float>(x, w, b, parse_block_act(act));
      },
      py::arg("x"), py::arg("weight"), py::arg("bias"), py::arg("activation"),
      "y = act(x W^T + b): x (N, I), weight (O, I), bias (O,) or None -> y (N, O).");
  m.def(
      "linear_backward",
      [](const py::array& dy, const py::array& x, const py::object& y,
         const py::array& w, const py::object& dw, const py::object& db,
         const py::object& act, bool need_dx) -> py::object {
        if (float_dtype("dy", dy))
          return linear_backward_impl<double>(dy, x, y, w, dw, db, parse_block_act(act),
                                              need_dx);
        return linear_backward_impl<float>(dy, x, y, w, dw, db, parse_block_act(act),
                                           need_dx);
      },
      py::arg("dy"), py::arg("x"), py::arg("y"), py::arg("weight"), py::arg("dweight"),
      py::arg("dbias"), py::arg("activation"), py::arg("need_dx") = true,
      "Adds dW = da^T x and db = sum da into dweight, dbias (da = dy act'(y)); returns "
      "dx = da W (N, I), or None without need_dx.");
  m.def(
      "cross_entropy",
      [](const py::array& z, const py::array& t, const py::object& mask,
         const py::object& ignore_index, bool mean, const py::object& out) {
        if (float_dtype("logits", z))
          return xent_impl<double>(z, t, mask, ignore_index, mean, out);
        return xent_impl<float>(z, t, mask, ignore_index, mean, out);
      },
      py::arg("logits"), py::arg("targets"), py::arg("mask"), py::arg("ignore_index"),
      py::arg("mean"), py::arg("out") = py::none(),
      "Softmax cross-entropy of logits (N, C) against int64 targets (N,): returns "
      "(loss, rows that count, dlogits); out may be logits itself.");
  m.def(
      "embedding_forward",
      [](const py::array& ids, const py::array& w) -> py::object {
        if (float_dtype("weight", w)) return embedding_forward_impl<double>(ids, w);
        return embedding_forward_impl<float>(ids, w);
      },
      py::arg("ids"), py::arg("weight"), "y[n] = weight[ids[n]]: ids (N,) int64.");
  m.def(
      "embedding_backward",
      [](const py::array& ids, const py::array& dy, const py::object& dw,
         int64_t padding) {
        if (float_dtype("dy", dy))
          return embedding_backward_impl<double>(ids, dy, dw, padding);
        return embedding_backward_impl<float>(ids, dy, dw, padding);
      },
      py::arg("ids"), py::arg("dy"), py::arg("dweight"), py::arg("padding_idx") = -1,
      "dweight[ids[n]] += dy[n] in position order, rows of padding_idx left out.");
  m.def(
      "optim_step",
      [](const std::string& kind, const py::array& p, const py::array& g,
         const py::list& slots, double lr, double weight_decay, double eps,
         double momentum, double dampening, bool nesterov, bool first, double alpha,
         bool centered, double beta1, double beta2, double bc1, double bc2,
         bool amsgrad, bool decoupled) {
        auto fill = [&](auto& a) {
          a.kind = parse_optim(kind);
          a.lr = lr, a.weight_decay = weight_decay, a.eps = eps;
          a.momentum = momentum, a.dampening = dampening, a.alpha = alpha;
          a.beta1 = beta1, a.beta2 = beta2, a.bc1 = bc1, a.bc2 = bc2;
          a.nesterov = nesterov, a.first = first, a.centered = centered;
          a.amsgrad = amsgrad, a.decoupled = decoupled;
        };
        if (float_dtype("param", p)) {
          rnnkit::OptimArgs<double> a;
          fill(a);
          optim_impl<double>(a, p, g, slots);
        } else {
          rnnkit::OptimArgs<float> a;
          fill(a);
          optim_impl<float>(a, p, g, slots);
        }
      },
      py::arg("kind"), py::arg("param"), py::arg("grad"), py::arg("slots"),
      py::arg("lr"), py::arg("weight_decay") = 0.0, py::arg("eps") = 0.0,
      py::arg("momentum") = 0.0, py::arg("dampening") = 0.0,
      py::arg("nesterov") = false, py::arg("first") = false, py::arg("alpha") = 0.0,
      py::arg("centered") = false, py::arg("beta1") = 0.0, py::arg("beta2") = 0.0,
      py::arg("bc1") = 1.0, py::arg("bc2") = 1.0, py::arg("amsgrad") = false,
      py::arg("decoupled") = false,
      "One optimizer update in place over a flat (param, grad) pair and its state "
      "slots (blocks.h lists them per kind).");
  m.def(
      "sum_squares",
      [](const py::array& x, double scale) {
        if (float_dtype("x", x)) return sum_squares_impl<double>(x, scale);
        return sum_squares_impl<float>(x, scale);
      },
      py::arg("x"), py::arg("scale") = 1.0,
      "sum((x * scale)**2) in double over a flat buffer, the same for any thread "
      "count.");
  m.def(
      "scale_",
      [](const py::array& x, double s) {
        if (float_dtype("x", x)) return scale_impl<double>(x, s);
        return scale_impl<float>(x, s);
      },
      py::arg("x"), py::arg("s"), "x *= s in place over a flat buffer.");
  m.def(
      "bernoulli_",
      [](const py::object& out, const py::object& p, const py::object& key,
         const py::object& value_obj) {
        if (!py::isinstance<py::array>(out))
          throw py::type_error(
              "out must be a numpy array, got " +
              std::string(py::str(py::type::of(out).attr("__name__"))));
        const py::array a = py::reinterpret_borrow<py::array>(out);
        const bool flags = py::isinstance<py::array_t<uint8_t>>(a) ||
                           py::isinstance<py::array_t<bool>>(a);
        const bool f64 = py::isinstance<py::array_t<double>>(a);
        if (!flags && !f64 && !py::isinstance<py::array_t<float>>(a))
          throw py::type_error(
              "out must have dtype uint8, bool, float32 or float64, got " +
              std::string(py::str(a.dtype())));
        const double pv = real_arg("p", p);
        if (!(pv >= 0.0 && pv <= 1.0))
          throw py::value_error("p must be in [0, 1], got " + std::string(py::repr(p)));
        const uint64_t k = mask_key(key);
        const double value = real_arg("value", value_obj);
        if (flags) {
          if (value != 1.0)
            throw py::value_error("value must be 1 for flags (out of dtype " +
                                  std::string(py::str(a.dtype())) + "), got " +
                                  std::string(py::repr(value_obj)));
          return bernoulli_impl<uint8_t>(a, pv, k, value);
        }
        const double vr = f64 ? value : double(float(value));
        if (!(vr - vr == 0.0))
          throw py::value_error("value must be finite in out's dtype, got " +
                                std::string(py::repr(value_obj)));
        if (f64) return bernoulli_impl<double>(a, pv, k, value);
        return bernoulli_impl<float>(a, pv, k, value);
      },
      py::arg("out"), py::arg("p"), py::arg("key"), py::arg("value") = py::float_(1.0),
      "Fills out in place from a counter-based generator of (key, i): uint8/bool out "
      "gets 1 with probability p (zoneout flags), float32/float64 out gets value "
      "with probability 1 - p, else 0 (inverted-dropout multipliers). The same bits "
      "for any thread count, SIMD path or array size (blocks.h, masks.cpp).");
}

}  // namespace

void bind_lstmp(py::module_& m);  // the projected LSTM, at the end of this file

void bind_layernorm(py::module_& m);  // at the end of this file

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
         rnnkit::Mode mode, bool recurrent_dropout, bool zoneout, bool dropout) {
        RnnDesc d = make_desc(cell, "tanh", T, B, I, H, L, bidirectional, bias);
        d.rdrop = recurrent_dropout;
        d.zone = zoneout && mode != rnnkit::Mode::kInference;
        d.drop = dropout && L > 1 && mode != rnnkit::Mode::kInference;
        return workspace_tuple<FusedKernel>(dtype, d, mode);
      },
      py::arg("cell"), py::arg("dtype"), py::arg("T"), py::arg("B"), py::arg("I"),
      py::arg("H"), py::arg("num_layers"), py::arg("bidirectional"), py::arg("bias"),
      py::arg("mode"), py::kw_only(), py::arg("recurrent_dropout") = false,
      py::arg("zoneout") = false, py::arg("dropout") = false,
      "Bytes of (reserve, scratch) for a call of the given Mode with the active SIMD "
      "path and thread count; the keywords say which option masks the call passes "
      "(recurrent_dropout: rec_masks, zoneout: zone_h, dropout: drop_masks).");

  m.def(
      "forward",
      [](const std::string& cell, const std::string& act, int64_t L, bool bidirectional,
         const py::array& x, const py::object& h0, const py::object& c0,
         const py::list& weights, const py::object& lengths, const py::object& reserve,
         const py::array& scratch, bool train, const py::object& rec_masks,
         const py::object& zone_h, const py::object& zone_c,
         const py::object& drop_masks, double zoneout) {
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
        if (is_f64(x)) {
          auto m = option_masks<double>(d, train, rec_masks, zone_h, zone_c, drop_masks,
                                        zoneout);
          return forward_impl<FusedKernel<double>>(d, fused_args(m), x, h0, c0, weights,
                                                   lengths, reserve, scratch, train);
        }
        auto m = option_masks<float>(d, train, rec_masks, zone_h, zone_c, drop_masks,
                                     zoneout);
        return forward_impl<FusedKernel<float>>(d, fused_args(m), x, h0, c0, weights,
                                                lengths, reserve, scratch, train);
      },
      py::arg("cell"), py::arg("nonlinearity"), py::arg("num_layers"),
      py::arg("bidirectional"), py::arg("x"), py::arg("h0"), py::arg("c0"),
      py::arg("weights"), py::arg("lengths"), py::arg("reserve"), py::arg("scratch"),
      py::arg("train"), py::kw_only(), py::arg("rec_masks") = py::none(),
      py::arg("zone_h") = py::none(), py::arg("zone_c") = py::none(),
      py::arg("drop_masks") = py::none(), py::arg("zoneout") = 0.0,
      "Runs the stacked layer over x (T, B, I); returns (y, h_n, c_n or None). The "
      "option masks (training only) follow the mask contract: rec_masks L*D arrays "
      "(B, H) of x's dtype, zone_h / zone_c L*D uint8 arrays (T, B, H), drop_masks "
      "L-1 arrays (T, B, D*H) of x's dtype; zoneout is the rate used at inference.");

  m.def(
      "backward",
      [](const std::string& cell, const std::string& act, int64_t L, bool bidirectional,
         int64_t I, const py::array& dy, const py::object& dhn, const py::object& dcn,
         const py::list& weights, const py::list& dweights, const py::object& lengths,
         const py::array& reserve, const py::array& scratch,
         const py::object& rec_masks, const py::object& zone_h,
         const py::object& zone_c, const py::object& drop_masks) {
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
        if (is_f64(dy)) {
          auto m =
              option_masks<double>(d, true, rec_masks, zone_h, zone_c, drop_masks, 0.0);
          return backward_impl<FusedKernel<double>>(d, fused_args(m), dy, dhn, dcn,
                                                    weights, dweights, lengths, reserve,
                                                    scratch);
        }
        auto m =
            option_masks<float>(d, true, rec_masks, zone_h, zone_c, drop_masks, 0.0);
        return backward_impl<FusedKernel<float>>(d, fused_args(m), dy, dhn, dcn,
                                                 weights, dweights, lengths, reserve,
                                                 scratch);
      },
      py::arg("cell"), py::arg("nonlinearity"), py::arg("num_layers"),
      py::arg("bidirectional"), py::arg("input_size"), py::arg("dy"), py::arg("dh_n"),
      py::arg("dc_n"), py::arg("weights"), py::arg("dweights"), py::arg("lengths"),
      py::arg("reserve"), py::arg("scratch"), py::kw_only(),
      py::arg("rec_masks") = py::none(), py::arg("zone_h") = py::none(),
      py::arg("zone_c") = py::none(), py::arg("drop_masks") = py::none(),
      "Backpropagation through time for the training forward that filled reserve, "
      "with the same option masks; adds into dweights and returns (dx, dh0, dc0 or "
      "None).");

  bind_blocks(m);
  bind_lstmp(m);
  bind_stepper<float>(m, "Stepper32");
  bind_stepper<double>(m, "Stepper64");
  bind_layernorm(m);

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
      "contention_trips",
      [] { return __atomic_load_n(&rnnkit::contention().trips, __ATOMIC_RELAXED); },
      "Calls seen contended since the last set_num_threads/set_adaptive_threads.");
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

// ------------------------------------------------------ the projected LSTM
// lstmp_workspace_size / lstmp_forward / lstmp_backward (csrc/lstmp.h): weights
// are 5 per (layer, direction): W_ih, W_hh, b_ih, b_hh, W_hr.
namespace {

using rnnkit::LstmpArgs;
using rnnkit::LstmpDesc;

LstmpDesc lstmp_desc(int64_t T, int64_t B, int64_t I, int64_t H, int64_t P, int64_t L,
                     bool bidirectional, bool bias) {
  LstmpDesc d;
  d.T = T, d.B = B, d.I = I, d.H = H, d.P = P, d.L = L, d.D = bidirectional ? 2 : 1;
  d.bias = bias;
  d.threads = num_threads();
  if (T < 1 || B < 1 || I < 1 || H < 1 || L < 1)
    throw py::value_error(
        "T, B, I, H and num_layers must be >= 1, got T=" + std::to_string(T) +
        ", B=" + std::to_string(B) + ", I=" + std::to_string(I) +
        ", H=" + std::to_string(H) + ", num_layers=" + std::to_string(L));
  if (P < 1 || P >= H)
    throw py::value_error("proj_size must be in [1, hidden_size=" + std::to_string(H) +
                          "), got " + std::to_string(P));
  return d;
}

std::string lstmp_param_name(int kind, int64_t l, int64_t dir) {
  if (kind < 4) return param_name(kind, l, dir);
  return "weight_hr_l" + std::to_string(l) + (dir ? "_reverse" : "");
}

template <class Real, class Ptr, class Get>
std::vector<Ptr> lstmp_weight_ptrs(const LstmpDesc& d, const py::list& weights,
                                   const char* what, Get get) {
  const int64_t LD = d.L * d.D, GH = 4 * d.H, NW = rnnkit::kLstmpWeights;
  if (int64_t(weights.size()) != NW * LD)
    throw py::value_error(std::string(what) + " must hold " + std::to_string(NW * LD) +
                          " entries (5 per layer and direction: weight_ih, weight_hh, "
                          "bias_ih, bias_hh, weight_hr), got " +
                          std::to_string(weights.size()));
  std::vector<Ptr> out(NW * LD, nullptr);
  const std::string pre = std::string(what) == "dweights" ? "grad of " : "";
  for (int64_t l = 0; l < d.L; ++l)
    for (int64_t dir = 0; dir < d.D; ++dir) {
      const int64_t k = NW * (l * d.D + dir);
      out[k] = get((pre + lstmp_param_name(0, l, dir)).c_str(), weights[k],
                   {GH, d.in_size(l)});
      out[k + 1] =
          get((pre + lstmp_param_name(1, l, dir)).c_str(), weights[k + 1], {GH, d.P});
      for (int b = 2; b < 4; ++b) {
        const std::string name = pre + lstmp_param_name(b, l, dir);
        if (weights[k + b].is_none()) {
          if (d.bias) throw py::value_error(name + " is None but the layer has biases");
        } else {
          if (!d.bias) throw py::value_error(name + " given but bias=False");
          out[k + b] = get(name.c_str(), weights[k + b], {GH});
        }
      }
      out[k + 4] =
          get((pre + lstmp_param_name(4, l, dir)).c_str(), weights[k + 4], {d.P, d.H});
    }
  return out;
}

// One kind of mask of the shared contract: None, or a list of `count` arrays
// (each of `shape`, dtype Real or uint8), all given or all None. Returns the
// pointers (empty when none is given).
template <class Elem>
std::vector<const Elem*> lstmp_masks(const char* name, const py::object& obj,
                                     int64_t count, const std::vector<int64_t>& shape) {
  std::vector<const Elem*> out;
  if (obj.is_none()) return out;
  const py::list items = py::list(obj);
  int64_t given = 0;
  for (const py::handle item : items) given += item.is_none() ? 0 : 1;
  if (given == 0) return out;
  if (int64_t(items.size()) != count || given != count)
    throw py::value_error(std::string(name) + " must hold " + std::to_string(count) +
                          " arrays (or be None), got " + std::to_string(given) +
                          " arrays in " + std::to_string(items.size()) + " entries");
  for (int64_t i = 0; i < count; ++i)
    out.push_back(in_ptr<Elem>(
        (std::string(name) + "[" + std::to_string(i) + "]").c_str(), items[i], shape));
  return out;
}

// The reserve's header (lstmp.h): sizes and masks of the training forward that
// filled it, checked by its backward.
constexpr int64_t kLstmpMagic = 0x504d54534cLL;  // "LSTMP"
void lstmp_header(const LstmpDesc& d, int64_t itemsize, int64_t* h) {
  const int64_t v[] = {kLstmpMagic, d.T,    d.B,   d.I,  d.H,  d.P,    d.L,
                       d.D,         d.bias, d.rec, d.zh, d.zc, d.drop, itemsize};
  for (int64_t i = 0; i < rnnkit::kLstmpHeader; ++i)
    h[i] = i < int64_t(sizeof v / sizeof v[0]) ? v[i] : 0;
}

template <class Real>
py::tuple lstmp_forward_impl(LstmpDesc d, const py::array& x, const py::object& h0,
                             const py::object& c0, const py::list& weights,
                             const py::object& lengths, const py::object& reserve,
                             const py::array& scratch, bool train,
                             const py::object& rec_masks, const py::object& zone_h,
                             const py::object& zone_c, const py::object& drop_masks,
                             double zoneout) {
  const int64_t LD = d.L * d.D;
  LstmpArgs<Real> a;
  a.train = train;
  if (!(zoneout >= 0.0 && zoneout < 1.0))
    throw py::value_error("zoneout must be in [0, 1), got " + std::to_string(zoneout));
  a.zoneout = Real(train ? 0.0 : zoneout);
  auto rec = lstmp_masks<Real>("rec_masks", rec_masks, LD, {d.B, d.P});
  auto zh = lstmp_masks<uint8_t>("zone_h", zone_h, LD, {d.T, d.B, d.P});
  auto zc = lstmp_masks<uint8_t>("zone_c", zone_c, LD, {d.T, d.B, d.H});
  auto drop =
      lstmp_masks<Real>("drop_masks", drop_masks, d.L - 1, {d.T, d.B, d.D * d.P});
  const char* given = !rec.empty()    ? "rec_masks"
                      : !zh.empty()   ? "zone_h"
                      : !zc.empty()   ? "zone_c"
                      : !drop.empty() ? "drop_masks"
                                      : nullptr;
  if (given && !train)
    throw py::value_error(
        std::string(given) +
        ": masks belong to a training forward; train=False takes none "
        "(zoneout= gives inference its expectation)");
  d.rec = !rec.empty(), d.zh = !zh.empty(), d.zc = !zc.empty(), d.drop = !drop.empty();
  a.rec = rec.data();
  a.zh = zh.data();
  a.zc = zc.data();
  a.drop = drop.data();
  a.x = in_ptr<Real>("x", x, {d.T, d.B, d.I});
  a.h0 = in_ptr<Real>("h0", h0, {LD, d.B, d.P});
  a.c0 = in_ptr<Real>("c0", c0, {LD, d.B, d.H});
  auto w = lstmp_weight_ptrs<Real, const Real*>(d, weights, "weights", in_arg<Real>);
  a.weights = w.data();
  a.lengths = lengths_ptr(lengths, d.T, d.B);
  const int isa = rnnkit::isa_active();
  auto need = rnnkit::lstmp_workspace_size<Real>(
      isa, d, train ? rnnkit::Mode::kTrainForward : rnnkit::Mode::kInference);
  a.scratch = workspace_ptr("scratch", scratch, need.scratch);
  if (train) {
    if (reserve.is_none()) throw py::value_error("reserve is required when train=True");
    a.reserve = workspace_ptr("reserve", reserve.cast<py::array>(), need.reserve);
    lstmp_header(d, sizeof(Real), reinterpret_cast<int64_t*>(a.reserve));
  }
  py::array_t<Real> y({d.T, d.B, d.D * d.P}), hn({LD, d.B, d.P}), cn({LD, d.B, d.H});
  a.y = y.mutable_data();
  a.hn = hn.mutable_data();
  a.cn = cn.mutable_data();
  {
    py::gil_scoped_release release;
    rnnkit::lstmp_forward<Real>(isa, d, a);
  }
  return py::make_tuple(y, hn, cn);
}

template <class Real>
py::tuple lstmp_backward_impl(LstmpDesc d, const py::array& dy, const py::object& dhn,
                              const py::object& dcn, const py::list& weights,
                              const py::list& dweights, const py::object& lengths,
                              const py::array& reserve, const py::array& scratch) {
  const int64_t LD = d.L * d.D;
  LstmpArgs<Real> a;
  a.dy = in_ptr<Real>("dy", dy, {d.T, d.B, d.D * d.P});
  a.dhn = in_ptr<Real>("dh_n", dhn, {LD, d.B, d.P});
  a.dcn = in_ptr<Real>("dc_n", dcn, {LD, d.B, d.H});
  auto w = lstmp_weight_ptrs<Real, const Real*>(d, weights, "weights", in_arg<Real>);
  auto dw = lstmp_weight_ptrs<Real, Real*>(d, dweights, "dweights", out_arg<Real>);
  a.weights = w.data();
  a.dweights = dw.data();
  a.lengths = lengths_ptr(lengths, d.T, d.B);
  // the masks and sizes of the forward, from the reserve's header
  char* res = workspace_ptr("reserve", reserve, rnnkit::kLstmpHeader * sizeof(int64_t));
  int64_t h[rnnkit::kLstmpHeader], want[rnnkit::kLstmpHeader];
  std::copy_n(reinterpret_cast<const int64_t*>(res), rnnkit::kLstmpHeader, h);
  d.rec = h[9] != 0, d.zh = h[10] != 0, d.zc = h[11] != 0, d.drop = h[12] != 0;
  lstmp_header(d, sizeof(Real), want);
  if (!std::equal(h, h + rnnkit::kLstmpHeader, want)) {
    static const char* const names[] = {"",  "T",    "B", "I", "H", "P", "num_layers",
                                        "D", "bias", "",  "",  "",  "",  "itemsize"};
    std::string what = h[0] != kLstmpMagic ? "it holds no projected-LSTM forward" : "";
    for (int i = 1; i < 14 && what.empty(); ++i)
      if (h[i] != want[i])
        what = std::string(names[i]) + "=" + std::to_string(h[i]) + " there, " +
               std::to_string(want[i]) + " here";
    throw py::value_error(
        "reserve was not filled by a training forward of this problem: " + what);
  }
  const int isa = rnnkit::isa_active();
  auto need = rnnkit::lstmp_workspace_size<Real>(isa, d, rnnkit::Mode::kBackward);
  a.reserve = workspace_ptr("reserve", reserve, need.reserve);
  a.scratch = workspace_ptr("scratch", scratch, need.scratch);
  py::array_t<Real> dx({d.T, d.B, d.I}), dh0({LD, d.B, d.P}), dc0({LD, d.B, d.H});
  a.dx = dx.mutable_data();
  a.dh0 = dh0.mutable_data();
  a.dc0 = dc0.mutable_data();
  {
    py::gil_scoped_release release;
    rnnkit::lstmp_backward<Real>(isa, d, a);
  }
  return py::make_tuple(dx, dh0, dc0);
}

// H and P from weights[1] = weight_hh_l0 (4H, P).
std::pair<int64_t, int64_t> lstmp_sizes(const py::list& weights) {
  if (weights.size() < 2 || !py::isinstance<py::array>(weights[1]) ||
      py::reinterpret_borrow<py::array>(weights[1]).ndim() != 2)
    throw py::value_error("weights[1] must be weight_hh_l0, a 2-D array (4H, P)");
  const py::array whh = py::reinterpret_borrow<py::array>(weights[1]);
  if (whh.shape(0) % 4 != 0 || whh.shape(0) == 0)
    throw py::value_error("weight_hh_l0 must have 4*hidden_size rows, got " +
                          std::to_string(whh.shape(0)));
  return {whh.shape(0) / 4, whh.shape(1)};
}

}  // namespace

void bind_lstmp(py::module_& m) {
  m.def(
      "lstmp_workspace_size",
      [](const std::string& dtype, int64_t T, int64_t B, int64_t I, int64_t H,
         int64_t P, int64_t L, bool bidirectional, bool bias, rnnkit::Mode mode,
         bool rec_masks, bool zone_h, bool zone_c, bool drop_masks) {
        LstmpDesc d = lstmp_desc(T, B, I, H, P, L, bidirectional, bias);
        d.rec = rec_masks, d.zh = zone_h, d.zc = zone_c, d.drop = drop_masks && L > 1;
        const int isa = rnnkit::isa_active();
        rnnkit::WorkspaceSize w;
        if (dtype == "float32")
          w = rnnkit::lstmp_workspace_size<float>(isa, d, mode);
        else if (dtype == "float64")
          w = rnnkit::lstmp_workspace_size<double>(isa, d, mode);
        else
          throw py::type_error("dtype must be 'float32' or 'float64', got '" + dtype +
                               "'");
        return py::make_tuple(w.reserve, w.scratch);
      },
      py::arg("dtype"), py::arg("T"), py::arg("B"), py::arg("I"), py::arg("H"),
      py::arg("P"), py::arg("num_layers"), py::arg("bidirectional"), py::arg("bias"),
      py::arg("mode"), py::arg("rec_masks") = false, py::arg("zone_h") = false,
      py::arg("zone_c") = false, py::arg("drop_masks") = false,
      "Bytes of (reserve, scratch) of a projected-LSTM call of the given Mode with the "
      "active SIMD path and thread count; the flags say which masks the training "
      "forward takes (they change both).");

  m.def(
      "lstmp_forward",
      [](int64_t L, bool bidirectional, const py::array& x, const py::object& h0,
         const py::object& c0, const py::list& weights, const py::object& lengths,
         const py::object& reserve, const py::array& scratch, bool train,
         const py::object& rec_masks, const py::object& zone_h,
         const py::object& zone_c, const py::object& drop_masks, double zoneout) {
        if (x.ndim() != 3)
          throw py::value_error("x must be 3-D (T, B, I), got ndim " +
                                std::to_string(x.ndim()));
        const auto [H, P] = lstmp_sizes(weights);
        LstmpDesc d = lstmp_desc(x.shape(0), x.shape(1), x.shape(2), H, P, L,
                                 bidirectional, !weights[2].is_none());
        if (is_f64(x))
          return lstmp_forward_impl<double>(d, x, h0, c0, weights, lengths, reserve,
                                            scratch, train, rec_masks, zone_h, zone_c,
                                            drop_masks, zoneout);
        return lstmp_forward_impl<float>(d, x, h0, c0, weights, lengths, reserve,
                                         scratch, train, rec_masks, zone_h, zone_c,
                                         drop_masks, zoneout);
      },
      py::arg("num_layers"), py::arg("bidirectional"), py::arg("x"), py::arg("h0"),
      py::arg("c0"), py::arg("weights"), py::arg("lengths"), py::arg("reserve"),
      py::arg("scratch"), py::arg("train"), py::arg("rec_masks") = py::none(),
      py::arg("zone_h") = py::none(), py::arg("zone_c") = py::none(),
      py::arg("drop_masks") = py::none(), py::arg("zoneout") = 0.0,
      "Runs the stacked projected LSTM over x (T, B, I); returns (y, h_n, c_n) with y "
      "(T, B, D*P), h_n (L*D, B, P), c_n (L*D, B, H).");

  m.def(
      "lstmp_backward",
      [](int64_t L, bool bidirectional, int64_t I, const py::array& dy,
         const py::object& dhn, const py::object& dcn, const py::list& weights,
         const py::list& dweights, const py::object& lengths, const py::array& reserve,
         const py::array& scratch) {
        if (dy.ndim() != 3)
          throw py::value_error("dy must be 3-D (T, B, D*P), got ndim " +
                                std::to_string(dy.ndim()));
        const auto [H, P] = lstmp_sizes(weights);
        LstmpDesc d = lstmp_desc(dy.shape(0), dy.shape(1), I, H, P, L, bidirectional,
                                 weights.size() > 2 && !weights[2].is_none());
        if (is_f64(dy))
          return lstmp_backward_impl<double>(d, dy, dhn, dcn, weights, dweights,
                                             lengths, reserve, scratch);
        return lstmp_backward_impl<float>(d, dy, dhn, dcn, weights, dweights, lengths,
                                          reserve, scratch);
      },
      py::arg("num_layers"), py::arg("bidirectional"), py::arg("input_size"),
      py::arg("dy"), py::arg("dh_n"), py::arg("dc_n"), py::arg("weights"),
      py::arg("dweights"), py::arg("lengths"), py::arg("reserve"), py::arg("scratch"),
      "Backpropagation through time for the projected-LSTM training forward that "
      "filled "
      "reserve; adds into dweights and returns (dx, dh0, dc0).");
}

// ------------------------------------------------------------- layer norm
// The layer-normalised LSTM and GRU (layernorm.h): weights hold 8 entries per
// (layer, direction): W_ih, W_hh, b_ih, b_hh, ln_weight_ih, ln_weight_hh,
// ln_weight_c, ln_bias_c (biases None without bias; the last two None for GRU).
namespace {

RnnDesc ln_desc(const std::string& cell, int64_t T, int64_t B, int64_t I, int64_t H,
                int64_t L, bool bidirectional, bool bias) {
  RnnDesc d = make_desc(cell, "tanh", T, B, I, H, L, bidirectional, bias);
  if (!rnnkit::ln_cell_supported(d.cell))
    throw py::value_error(
        "layer_norm is an option of LSTM and GRU: cell must be "
        "'lstm' or 'gru', got '" +
        cell + "'");
  return d;
}

std::string ln_param_name(int kind, int64_t l, int64_t dir) {
  static const char* const kinds[rnnkit::kLnSlots] = {
      "weight_ih",    "weight_hh",    "bias_ih",     "bias_hh",
      "ln_weight_ih", "ln_weight_hh", "ln_weight_c", "ln_bias_c"};
  return std::string(kinds[kind]) + "_l" + std::to_string(l) + (dir ? "_reverse" : "");
}

template <class Real, class Ptr, class Get>
std::vector<Ptr> ln_weight_ptrs(const RnnDesc& d, const py::list& weights, bool grads,
                                Get get) {
  using namespace rnnkit;
  const int64_t LD = d.L * d.D, GH = d.G() * d.H, S = kLnSlots;
  const bool lstm = d.cell == rnnkit::Cell::lstm;
  const char* what = grads ? "dweights" : "weights";
  if (int64_t(weights.size()) != S * LD)
    throw py::value_error(std::string(what) + " must hold " + std::to_string(S * LD) +
                          " entries (" + std::to_string(S) +
                          " per layer and direction), got " +
                          std::to_string(weights.size()));
  std::vector<Ptr> out(S * LD, nullptr);
  const std::string pre = grads ? "grad of " : "";
  for (int64_t l = 0; l < d.L; ++l)
    for (int64_t dir = 0; dir < d.D; ++dir) {
      const int64_t k = S * (l * d.D + dir);
      auto name = [&](int kind) { return pre + ln_param_name(kind, l, dir); };
      out[k + kLnWih] = get(name(kLnWih).c_str(), weights[k], {GH, d.in_size(l)});
      out[k + kLnWhh] = get(name(kLnWhh).c_str(), weights[k + 1], {GH, d.H});
      for (int b = kLnBih; b <= kLnBhh; ++b) {
        if (weights[k + b].is_none()) {
          if (d.bias)
            throw py::value_error(name(b) + " is None but the layer has biases");
        } else {
          if (!d.bias) throw py::value_error(name(b) + " given but bias=False");
          out[k + b] = get(name(b).c_str(), weights[k + b], {GH});
        }
      }
      for (int g = kLnGih; g <= kLnGhh; ++g)
        out[k + g] = get(name(g).c_str(), weights[k + g], {GH});
      for (int g = kLnGc; g <= kLnBc; ++g) {
        if (lstm) {
          out[k + g] = get(name(g).c_str(), weights[k + g], {d.H});
        } else if (!weights[k + g].is_none()) {
          throw py::value_error(name(g) + " must be None for the GRU (it has no c)");
        }
      }
    }
  return out;
}

// The option masks of the mask contract (layernorm.h): lists of arrays (or
// None entries), validated and kept alive for the call.
template <class Real>
struct LnMasks {
  std::vector<const Real*> rec, drop;
  std::vector<const uint8_t*> zh, zc;
  double zoneout = 0.0;

  template <class T>
  static std::vector<const T*> parse(const char* what, const py::object& obj,
                                     int64_t count, const std::vector<int64_t>& shape,
                                     const char* index) {
    std::vector<const T*> out;
    if (obj.is_none()) return out;
    if (!py::isinstance<py::list>(obj) && !py::isinstance<py::tuple>(obj))
      throw py::type_error(std::string(what) + " must be a list of arrays or None");
    py::sequence seq = obj.cast<py::sequence>();
    if (int64_t(seq.size()) != count)
      throw py::value_error(std::string(what) + " must hold " + std::to_string(count) +
                            " entries (one per " + index + "), got " +
                            std::to_string(seq.size()));
    out.assign(count, nullptr);
    for (int64_t i = 0; i < count; ++i) {
      if (seq[i].is_none()) continue;
      const std::string name = std::string(what) + "[" + std::to_string(i) + "]";
      out[i] = in_ptr<T>(name.c_str(), seq[i], shape);
    }
    return out;
  }

  LnMasks(const RnnDesc& d, const py::object& rec_masks, const py::object& zone_h,
          const py::object& zone_c, const py::object& drop_masks, double p) {
    const int64_t LD = d.L * d.D;
    rec = parse<Real>("rec_masks", rec_masks, LD, {d.B, d.H}, "layer and direction");
    zh = parse<uint8_t>("zone_h", zone_h, LD, {d.T, d.B, d.H}, "layer and direction");
    zc = parse<uint8_t>("zone_c", zone_c, LD, {d.T, d.B, d.H}, "layer and direction");
    if (!rnnkit::cell_has_c(d.cell))
      for (const uint8_t* z : zc)
        if (z) throw py::value_error("zone_c must be None for the GRU (it has no c)");
    drop = parse<Real>("drop_masks", drop_masks, d.L - 1, {d.T, d.B, d.D * d.H},
                       "layer but the last");
    if (!(p >= 0.0 && p < 1.0))
      throw py::value_error("zoneout must be in [0, 1), got " + std::to_string(p));
    zoneout = p;
  }

  void fill(rnnkit::LnArgs<Real>& a) const {
    a.rec = rec.empty() ? nullptr : rec.data();
    a.zh = zh.empty() ? nullptr : zh.data();
    a.zc = zc.empty() ? nullptr : zc.data();
    a.drop = drop.empty() ? nullptr : drop.data();
    a.zoneout = zoneout;
  }
};

// The layer-normalised kernels for forward_impl / backward_impl.
template <class R>
struct LnKernel {
  using Real = R;
  using Args = rnnkit::LnArgs<R>;
  template <class Ptr, class Get>
  static std::vector<Ptr> weights(const RnnDesc& d, const py::list& w, bool grads,
                                  Get get) {
    return ln_weight_ptrs<R, Ptr>(d, w, grads, get);
  }
  static rnnkit::WorkspaceSize size(int isa, const RnnDesc& d, rnnkit::Mode mode) {
    return rnnkit::ln_workspace_size<R>(isa, d, mode);
  }
  static void forward(int isa, const RnnDesc& d, const Args& a) {
    rnnkit::ln_forward<R>(isa, d, a);
  }
  static void backward(int isa, const RnnDesc& d, const Args& a) {
    rnnkit::ln_backward<R>(isa, d, a);
  }
};

// The layer-normalised kernels' arguments with the masks m set (m must
// outlive the call).
template <class Real>
rnnkit::LnArgs<Real> ln_args(const LnMasks<Real>& m) {
  rnnkit::LnArgs<Real> a;
  m.fill(a);
  return a;
}

// H from weights[1] (W_hh, (G*H, H)), with a clear message when it is not there.
int64_t ln_hidden(const py::list& weights) {
  if (weights.size() < 3 || !py::isinstance<py::array>(weights[1]) ||
      py::reinterpret_borrow<py::array>(weights[1]).ndim() != 2)
    throw py::value_error("weights[1] must be " + ln_param_name(1, 0, 0) +
                          ", a 2-D array");
  return py::reinterpret_borrow<py::array>(weights[1]).shape(1);
}

}  // namespace

void bind_layernorm(py::module_& m) {
  m.def(
      "ln_workspace_size",
      [](const std::string& cell, const std::string& dtype, int64_t T, int64_t B,
         int64_t I, int64_t H, int64_t L, bool bidirectional, bool bias,
         rnnkit::Mode mode) {
        return workspace_tuple<LnKernel>(
            dtype, ln_desc(cell, T, B, I, H, L, bidirectional, bias), mode);
      },
      py::arg("cell"), py::arg("dtype"), py::arg("T"), py::arg("B"), py::arg("I"),
      py::arg("H"), py::arg("num_layers"), py::arg("bidirectional"), py::arg("bias"),
      py::arg("mode"),
      "Bytes of (reserve, scratch) for a layer-norm LSTM/GRU call of the given Mode "
      "with the active SIMD path and thread count.");

  m.def(
      "ln_forward",
      [](const std::string& cell, int64_t L, bool bidirectional, const py::array& x,
         const py::object& h0, const py::object& c0, const py::list& weights,
         const py::object& lengths, const py::object& reserve, const py::array& scratch,
         bool train, const py::object& rec_masks, const py::object& zone_h,
         const py::object& zone_c, const py::object& drop_masks, double zoneout) {
        if (x.ndim() != 3)
          throw py::value_error("x must be 3-D (T, B, I), got ndim " +
                                std::to_string(x.ndim()));
        const int64_t H = ln_hidden(weights);
        RnnDesc d = ln_desc(cell, x.shape(0), x.shape(1), x.shape(2), H, L,
                            bidirectional, !weights[2].is_none());
        // the masks are training-only: inference ignores them (zoneout's p stays)
        const py::object none = py::none();
        const py::object& rm = train ? rec_masks : none;
        const py::object& zhm = train ? zone_h : none;
        const py::object& zcm = train ? zone_c : none;
        const py::object& dm = train ? drop_masks : none;
        if (is_f64(x)) {
          const LnMasks<double> m(d, rm, zhm, zcm, dm, zoneout);
          return forward_impl<LnKernel<double>>(d, ln_args(m), x, h0, c0, weights,
                                                lengths, reserve, scratch, train);
        }
        const LnMasks<float> m(d, rm, zhm, zcm, dm, zoneout);
        return forward_impl<LnKernel<float>>(d, ln_args(m), x, h0, c0, weights, lengths,
                                             reserve, scratch, train);
      },
      py::arg("cell"), py::arg("num_layers"), py::arg("bidirectional"), py::arg("x"),
      py::arg("h0"), py::arg("c0"), py::arg("weights"), py::arg("lengths"),
      py::arg("reserve"), py::arg("scratch"), py::arg("train"),
      py::arg("rec_masks") = py::none(), py::arg("zone_h") = py::none(),
      py::arg("zone_c") = py::none(), py::arg("drop_masks") = py::none(),
      py::arg("zoneout") = 0.0,
      "Runs the stacked layer-norm LSTM/GRU over x (T, B, I); returns (y, h_n, c_n or "
      "None). weights: 8 per layer and direction (W_ih, W_hh, b_ih, b_hh, "
      "ln_weight_ih, ln_weight_hh, ln_weight_c, ln_bias_c). Masks (training only) as "
      "in the shared mask contract; zoneout's p is used at inference.");

  m.def(
      "ln_backward",
      [](const std::string& cell, int64_t L, bool bidirectional, int64_t I,
         const py::array& dy, const py::object& dhn, const py::object& dcn,
         const py::list& weights, const py::list& dweights, const py::object& lengths,
         const py::array& reserve, const py::array& scratch,
         const py::object& rec_masks, const py::object& zone_h,
         const py::object& zone_c, const py::object& drop_masks) {
        if (dy.ndim() != 3)
          throw py::value_error("dy must be 3-D (T, B, D*H), got ndim " +
                                std::to_string(dy.ndim()));
        const int64_t H = ln_hidden(weights);
        const int64_t D = bidirectional ? 2 : 1;
        if (dy.shape(2) != D * H)
          throw py::value_error(
              "dy must have last axis D*H = " + std::to_string(D * H) + ", got " +
              std::to_string(dy.shape(2)));
        RnnDesc d = ln_desc(cell, dy.shape(0), dy.shape(1), I, H, L, bidirectional,
                            !weights[2].is_none());
        if (is_f64(dy)) {
          const LnMasks<double> m(d, rec_masks, zone_h, zone_c, drop_masks, 0.0);
          return backward_impl<LnKernel<double>>(d, ln_args(m), dy, dhn, dcn, weights,
                                                 dweights, lengths, reserve, scratch);
        }
        const LnMasks<float> m(d, rec_masks, zone_h, zone_c, drop_masks, 0.0);
        return backward_impl<LnKernel<float>>(d, ln_args(m), dy, dhn, dcn, weights,
                                              dweights, lengths, reserve, scratch);
      },
      py::arg("cell"), py::arg("num_layers"), py::arg("bidirectional"),
      py::arg("input_size"), py::arg("dy"), py::arg("dh_n"), py::arg("dc_n"),
      py::arg("weights"), py::arg("dweights"), py::arg("lengths"), py::arg("reserve"),
      py::arg("scratch"), py::arg("rec_masks") = py::none(),
      py::arg("zone_h") = py::none(), py::arg("zone_c") = py::none(),
      py::arg("drop_masks") = py::none(),
      "Backpropagation through time for the layer-norm training forward that filled "
      "reserve (pass it the forward's masks); adds into dweights (ln_* included) and "
      "returns (dx, dh0, dc0 or "
      "None).");
}
