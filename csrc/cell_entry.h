// cell_entry.h: defines and instantiates <cell>_forward / _backward /
// _workspace_size (float and double) for one cell struct. Included at the end
// of rnn.cpp, lstm.cpp and gru.cpp.
#define RNNKIT_DEFINE_CELL(cell, Cell)                                        \
  template <class T>                                                          \
  WorkspaceSize cell##_workspace_size(const RnnDesc& d, int mode) {           \
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
  template WorkspaceSize cell##_workspace_size<float>(const RnnDesc&, int);   \
  template WorkspaceSize cell##_workspace_size<double>(const RnnDesc&, int);  \
  template void cell##_forward<float>(const RnnDesc&, const RnnArgs<float>&); \
  template void cell##_forward<double>(const RnnDesc&,                        \
                                       const RnnArgs<double>&);               \
  template void cell##_backward<float>(const RnnDesc&,                        \
                                       const RnnArgs<float>&);                \
  template void cell##_backward<double>(const RnnDesc&, const RnnArgs<double>&);
