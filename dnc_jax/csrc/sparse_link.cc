// Reads through the indexed sparse link (dnc_jax/sparse_link.py) and their
// vector-Jacobian product, as XLA FFI custom calls for the CPU.
//
// Row i of head h's link holds K (column, value) pairs. With the previous
// read weights w [R, N]:
//   forward  f[r, h, i] = sum_k value[h, i, k] w[r, column[h, i, k]]
//   backward b[r, h, j] = sum over (i, k) with column[h, i, k] = j of
//                         value[h, i, k] w[r, i]
// Under XLA:CPU the backward read is a scatter and the gradient of the
// forward one a scatter too; both were most of a sparse step's time. Here
// each example is one pass over its N*K pairs.
//
// Shapes (every leading axis of `read_weights` before [R, N] is a batch
// axis, and `columns`/`values` share them): columns int32 and values
// [..., H, N, K], read_weights [..., R, N]; forward and backward
// [..., R, H, N].

#include <cstdint>
#include <cstring>

#include "parallel.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace dnc {
namespace {

struct LinkDims {
  int64_t batch, heads, slots, pairs, reads;
};

// Reads the dimensions into `d`, or says what does not fit.
template <ffi::DataType DT>
ffi::Error DimsOf(const ffi::Buffer<ffi::S32>& columns,
                  const ffi::Buffer<DT>& values,
                  const ffi::Buffer<DT>& read_weights, LinkDims& d) {
  auto c = columns.dimensions(), v = values.dimensions(),
       w = read_weights.dimensions();
  if (c.size() != v.size() || c.size() < 3 || w.size() + 1 != c.size())
    return ffi::Error::InvalidArgument(
        "indexed link reads: columns/values [..., H, N, K] and read "
        "weights [..., R, N] need the same batch axes");
  for (size_t i = 0; i < c.size(); ++i)
    if (c[i] != v[i])
      return ffi::Error::InvalidArgument(
          "indexed link reads: columns and values differ in shape");
  d.heads = c[c.size() - 3];
  d.slots = c[c.size() - 2];
  d.pairs = c[c.size() - 1];
  d.reads = w[w.size() - 2];
  if (w[w.size() - 1] != d.slots)
    return ffi::Error::InvalidArgument(
        "indexed link reads: read weights and link disagree on N");
  d.batch = 1;
  for (size_t i = 0; i + 3 < c.size(); ++i) {
    if (c[i] != w[i])
      return ffi::Error::InvalidArgument(
          "indexed link reads: batch axes differ");
    d.batch *= c[i];
  }
  return ffi::Error::Success();
}

// Whether every stored column lies in [0, N); an out-of-range one would
// read or write outside the example's arrays.
bool ColumnsInRange(const int32_t* columns, int64_t count, int64_t slots) {
  for (int64_t i = 0; i < count; ++i)
    if (columns[i] < 0 || columns[i] >= slots) return false;
  return true;
}

template <ffi::DataType DT>
ffi::Error ReadsImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::S32> columns,
                     ffi::Buffer<DT> values, ffi::Buffer<DT> read_weights,
                     ffi::ResultBuffer<DT> forward,
                     ffi::ResultBuffer<DT> backward) {
  using T = ffi::NativeType<DT>;
  LinkDims d;
  if (auto error = DimsOf(columns, values, read_weights, d); error.failure())
    return error;
  const int64_t link_size = d.heads * d.slots * d.pairs;
  const int64_t read_size = d.reads * d.slots;
  const int64_t out_size = d.reads * d.heads * d.slots;
  if (!ColumnsInRange(columns.typed_data(), d.batch * link_size, d.slots))
    return ffi::Error::InvalidArgument(
        "indexed link reads: a stored column is outside [0, N)");
  ParallelFor(pool, d.batch, link_size * d.reads * 2, [&](int64_t b) {
    const int32_t* col = columns.typed_data() + b * link_size;
    const T* val = values.typed_data() + b * link_size;
    const T* w = read_weights.typed_data() + b * read_size;
    T* f = forward->typed_data() + b * out_size;
    T* bw = backward->typed_data() + b * out_size;
    std::memset(f, 0, sizeof(T) * out_size);
    std::memset(bw, 0, sizeof(T) * out_size);
    for (int64_t h = 0; h < d.heads; ++h)
      for (int64_t i = 0; i < d.slots; ++i)
        for (int64_t k = 0; k < d.pairs; ++k) {
          const int64_t at = (h * d.slots + i) * d.pairs + k;
          const T v = val[at];
          if (v == T(0)) continue;
          const int64_t j = col[at];
          for (int64_t r = 0; r < d.reads; ++r) {
            const T* wr = w + r * d.slots;
            const int64_t row = (r * d.heads + h) * d.slots;
            f[row + i] += v * wr[j];
            bw[row + j] += v * wr[i];
          }
        }
  });
  return ffi::Error::Success();
}

// Cotangents of values and read weights from those of forward and backward.
// (Pairs with value 0 still get a value gradient: the XLA path's does.)
template <ffi::DataType DT>
ffi::Error ReadsVjpImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::S32> columns,
                        ffi::Buffer<DT> values, ffi::Buffer<DT> read_weights,
                        ffi::Buffer<DT> g_forward, ffi::Buffer<DT> g_backward,
                        ffi::ResultBuffer<DT> g_values,
                        ffi::ResultBuffer<DT> g_read_weights) {
  using T = ffi::NativeType<DT>;
  LinkDims d;
  if (auto error = DimsOf(columns, values, read_weights, d); error.failure())
    return error;
  const int64_t link_size = d.heads * d.slots * d.pairs;
  const int64_t read_size = d.reads * d.slots;
  const int64_t out_size = d.reads * d.heads * d.slots;
  if (!ColumnsInRange(columns.typed_data(), d.batch * link_size, d.slots))
    return ffi::Error::InvalidArgument(
        "indexed link reads: a stored column is outside [0, N)");
  ParallelFor(pool, d.batch, link_size * d.reads * 4, [&](int64_t b) {
    const int32_t* col = columns.typed_data() + b * link_size;
    const T* val = values.typed_data() + b * link_size;
    const T* w = read_weights.typed_data() + b * read_size;
    const T* gf = g_forward.typed_data() + b * out_size;
    const T* gb = g_backward.typed_data() + b * out_size;
    T* gv = g_values->typed_data() + b * link_size;
    T* gw = g_read_weights->typed_data() + b * read_size;
    std::memset(gw, 0, sizeof(T) * read_size);
    for (int64_t h = 0; h < d.heads; ++h)
      for (int64_t i = 0; i < d.slots; ++i)
        for (int64_t k = 0; k < d.pairs; ++k) {
          const int64_t at = (h * d.slots + i) * d.pairs + k;
          const T v = val[at];
          const int64_t j = col[at];
          T g = 0;
          for (int64_t r = 0; r < d.reads; ++r) {
            const T* wr = w + r * d.slots;
            T* gwr = gw + r * d.slots;
            const int64_t row = (r * d.heads + h) * d.slots;
            g += gf[row + i] * wr[j] + gb[row + j] * wr[i];
            gwr[j] += gf[row + i] * v;
            gwr[i] += gb[row + j] * v;
          }
          gv[at] = g;
        }
  });
  return ffi::Error::Success();
}

}  // namespace
}  // namespace dnc

#define DNC_INDEXED_READS(NAME, DT)                                     \
  XLA_FFI_DEFINE_HANDLER_SYMBOL(NAME, dnc::ReadsImpl<DT>,               \
                                ffi::Ffi::Bind()                        \
                                    .Ctx<ffi::ThreadPool>()             \
                                    .Arg<ffi::Buffer<ffi::S32>>()       \
                                    .Arg<ffi::Buffer<DT>>()             \
                                    .Arg<ffi::Buffer<DT>>()             \
                                    .Ret<ffi::Buffer<DT>>()             \
                                    .Ret<ffi::Buffer<DT>>());

#define DNC_INDEXED_READS_VJP(NAME, DT)                                 \
  XLA_FFI_DEFINE_HANDLER_SYMBOL(NAME, dnc::ReadsVjpImpl<DT>,            \
                                ffi::Ffi::Bind()                        \
                                    .Ctx<ffi::ThreadPool>()             \
                                    .Arg<ffi::Buffer<ffi::S32>>()       \
                                    .Arg<ffi::Buffer<DT>>()             \
                                    .Arg<ffi::Buffer<DT>>()             \
                                    .Arg<ffi::Buffer<DT>>()             \
                                    .Arg<ffi::Buffer<DT>>()             \
                                    .Ret<ffi::Buffer<DT>>()             \
                                    .Ret<ffi::Buffer<DT>>());

DNC_INDEXED_READS(DncIndexedReadsF32, ffi::DataType::F32)
DNC_INDEXED_READS(DncIndexedReadsF64, ffi::DataType::F64)
DNC_INDEXED_READS_VJP(DncIndexedReadsVjpF32, ffi::DataType::F32)
DNC_INDEXED_READS_VJP(DncIndexedReadsVjpF64, ffi::DataType::F64)
