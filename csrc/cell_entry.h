#define RNNKIT_INSTANTIATE_CELL(cell, T)                                      \
  template size_t cell##_step_size<T>(const RnnDesc&);                        \
  template void cell##_step_init<T>(const RnnDesc&, char*, const T* const*);  \
  template void cell##_step_state<T>(const RnnDesc&, char*, T*, T*, bool);    \
  template void cell##_step<T>(const RnnDesc&, char*, const T*, T*);

// cell_entry.h: defines and instantiates <cell>_forward / _backward /
// _workspace_size (float and double) for one cell struct. Included at the end
// of rnn.cpp, lstm.cpp and gru.cpp.
#define RNNKIT_DEFINE_CELL(cell, Cell)                                        \
  template <class T>                                                          \
  WorkspaceSize cell##_workspace_size(const RnnDesc& d, Mode mode) {           \
    return Recurrent<T, Cell<T>>::workspace_size(d, mode);                    \
  }                                                                           \
  template <class T>                                                          \
  void cell##_forward(const RnnDesc& d, const RnnArgs<T>& a) {                \
    Recurrent<T, Cell<T>>::forward(d, a);                                     \
  }                                                                           \
  template <class T>                                                          \
  void cell##_backward(const RnnDesc& d, const RnnArgs<T>& a) {               \
    Recurrent<T, Cell<T>>::backward(d, a);                                    \
  }                                                                           \
  template <class T>                                                          \
  size_t cell##_step_size(const RnnDesc& d) {                                 \
    return Recurrent<T, Cell<T>>::step_size(d);                               \
  }                                                                           \
  template <class T>                                                          \
  void cell##_step_init(const RnnDesc& d, char* ws, const T* const* w) {      \
    Recurrent<T, Cell<T>>::step_init(d, ws, w);                               \
  }                                                                           \
  template <class T>                                                          \
  void cell##_step_state(const RnnDesc& d, char* ws, T* h, T* c, bool set) {  \
    Recurrent<T, Cell<T>>::step_state(d, ws, h, c, set);                      \
  }                                                                           \
  template <class T>                                                          \
  void cell##_step(const RnnDesc& d, char* ws, const T* x, T* y) {            \
    Recurrent<T, Cell<T>>::step(d, ws, x, y);                                 \
  }                                                                           \
  RNNKIT_INSTANTIATE_CELL(cell, float)                                        \
  RNNKIT_INSTANTIATE_CELL(cell, double)                                       \
  template WorkspaceSize cell##_workspace_size<float>(const RnnDesc&, Mode);   \
  template WorkspaceSize cell##_workspace_size<double>(const RnnDesc&, Mode);  \
  template void cell##_forward<float>(const RnnDesc&, const RnnArgs<float>&); \
  template void cell##_forward<double>(const RnnDesc&,                        \
                                       const RnnArgs<double>&);               \
  template void cell##_backward<float>(const RnnDesc&,                        \
                                       const RnnArgs<float>&);                \
  template void cell##_backward<double>(const RnnDesc&, const RnnArgs<double>&);
