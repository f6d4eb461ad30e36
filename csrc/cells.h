// cells.h: the list of cells, written once. Everything that enumerates cells
// in C++ expands this list: the Cell enum and its gate counts (common.h), the
// kernel declarations (kernels.h), the dispatch tables (dispatch.cpp), the cell
// names the bindings accept (bindings.cpp) and the kernel sources CMake builds
// (CMakeLists.txt reads the names from the lines below).
//
// X(name, Struct, gates, has_c): `name` is the cell's name in Python and the
// prefix of its kernels and source file (csrc/<name>.cpp defines Struct and
// expands RNNKIT_DEFINE_CELL(name, Struct)); `gates` is G, the gate rows per
// hidden unit; `has_c` is true when the cell carries a cell state c next to h.
//
// Adding a cell: write csrc/<name>.cpp (see cell.h for the contract) and add
// one line here. The Python side has its own registry (python/rnnkit/_cells.py).
#pragma once

#define RNNKIT_CELLS(X)      \
  X(rnn, RnnCell, 1, false)  \
  X(lstm, LstmCell, 4, true) \
  X(gru, GruCell, 3, false)
