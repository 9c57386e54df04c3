// The indexed sparse link (dnc_jax/sparse_link.py) as XLA FFI custom calls
// for the CPU: its update, and the reads through it, each with its
// vector-Jacobian product. Under XLA:CPU these are dozens of small gathers,
// scatters and top-k's per step whose cost dwarfs their O(N*K) work; here
// each (example, head) is one pass. The maths is exactly sparse_link.py's
// (tests compare values and gradients).
//
// Reads.
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

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <vector>

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


// ---------------------------------------------------------------------------
// Update. For one head, with K pairs per row:
//   (w_hat, p_hat) = top-K of the write weights and of the previous
//     precedence, each rescaled to sum to 1 (0 if the top K sum to 0);
//   row i's candidates: its K stored pairs decayed by (1 - w_hat[i] -
//     w_hat[j]), plus K new pairs (p_hat's columns j, value w_hat[i] p_hat[j],
//     none on the diagonal), a new pair whose column is already stored (with
//     a positive value) being added to that pair instead;
//   candidates below 1/K are zeroed and the K largest kept (ties: the earlier
//     candidate first, as jax.lax.top_k).
// Shapes: columns int32 / values [..., N, K], precedence and write weights
// [..., N]; every leading axis (batch, head) indexes an independent link.

// Descending by value; equal values keep the lower index first.
template <typename T>
void TopKOrder(const T* x, int64_t n, int64_t k, int32_t* out,
               std::vector<int32_t>& order) {
  order.resize(n);
  std::iota(order.begin(), order.end(), 0);
  std::partial_sort(order.begin(), order.begin() + k, order.end(),
                    [x](int32_t a, int32_t b) {
                      return x[a] > x[b] || (x[a] == x[b] && a < b);
                    });
  std::copy(order.begin(), order.begin() + k, out);
}

// The top-K of x [N] rescaled to sum to 1; `total` is their raw sum.
template <typename T>
struct TopKNormalised {
  std::vector<int32_t> index;
  std::vector<T> value;
  T total;

  void Compute(const T* x, int64_t n, int64_t k,
               std::vector<int32_t>& scratch) {
    index.resize(k);
    value.resize(k);
    TopKOrder(x, n, k, index.data(), scratch);
    total = 0;
    for (int64_t j = 0; j < k; ++j) total += x[index[j]];
    for (int64_t j = 0; j < k; ++j)
      value[j] = total > T(0) ? x[index[j]] / total : T(0);
  }

  // Adds into g_x the gradient of the rescaled values given g_value.
  void Backward(const T* x, const T* g_value, T* g_x) const {
    if (!(total > T(0))) return;
    T dot = 0;
    for (size_t j = 0; j < index.size(); ++j) dot += g_value[j] * value[j];
    for (size_t j = 0; j < index.size(); ++j)
      g_x[index[j]] += (g_value[j] - dot) / total;
  }
};

// One row's candidates: positions [0, K) the stored pairs, [K, 2K) the new.
template <typename T>
struct RowCandidates {
  std::vector<int32_t> column;
  std::vector<T> before_cut;  // values before the 1/K threshold
  std::vector<T> value;       // after it
  std::vector<T> new_before_merge;
  std::vector<unsigned char> same;  // [K stored x K new]
  std::vector<unsigned char> merged;  // per new pair: added to a stored one
  std::vector<int32_t> chosen;

  void Reserve(int64_t k) {
    column.resize(2 * k);
    before_cut.resize(2 * k);
    value.resize(2 * k);
    new_before_merge.resize(k);
    same.resize(k * k);
    merged.resize(k);
    chosen.resize(2 * k);
  }
};

// Fills `c` for row i (`c.Reserve(k)` done); `c.chosen[0, K)` are the kept
// candidates. After the threshold every value is 0 or at least 1/K > 0, so
// the top K are the positive ones by value (ties: earlier first), then
// zeros by position: the order jax.lax.top_k gives, without a full sort.
template <typename T>
void RowForward(int64_t i, const int32_t* columns, const T* values,
                const T* w_hat, const TopKNormalised<T>& p_hat, int64_t k,
                RowCandidates<T>& c) {
  std::fill(c.same.begin(), c.same.end(), 0);
  std::fill(c.merged.begin(), c.merged.end(), 0);
  const T w_i = w_hat[i];
  for (int64_t m = 0; m < k; ++m)
    c.new_before_merge[m] =
        p_hat.index[m] == i ? T(0) : w_i * p_hat.value[m];
  for (int64_t s = 0; s < k; ++s) {
    const int32_t j = columns[s];
    T kept = (T(1) - w_i - w_hat[j]) * values[s];
    if (values[s] > T(0)) {
      for (int64_t m = 0; m < k; ++m) {
        if (j == p_hat.index[m]) {
          c.same[s * k + m] = 1;
          c.merged[m] = 1;
          kept += c.new_before_merge[m];
        }
      }
    }
    c.column[s] = j;
    c.before_cut[s] = kept;
  }
  for (int64_t m = 0; m < k; ++m) {
    c.column[k + m] = p_hat.index[m];
    c.before_cut[k + m] = c.merged[m] ? T(0) : c.new_before_merge[m];
  }
  const T cut = T(1) / T(k);
  int64_t positives = 0;
  for (int64_t q = 0; q < 2 * k; ++q) {
    const T v = c.before_cut[q] >= cut ? c.before_cut[q] : T(0);
    c.value[q] = v;
    if (v > T(0)) {  // insertion sort: larger first, earlier first on ties
      int64_t at = positives++;
      while (at > 0 && c.value[c.chosen[at - 1]] < v) {
        c.chosen[at] = c.chosen[at - 1];
        --at;
      }
      c.chosen[at] = static_cast<int32_t>(q);
    }
  }
  for (int64_t q = 0; q < 2 * k && positives < k; ++q)
    if (!(c.value[q] > T(0))) c.chosen[positives++] = static_cast<int32_t>(q);
}

struct UpdateDims {
  int64_t links, slots, pairs;
};

template <ffi::DataType DT>
ffi::Error UpdateDimsOf(const ffi::Buffer<ffi::S32>& columns,
                        const ffi::Buffer<DT>& values,
                        const ffi::Buffer<DT>& precedence,
                        const ffi::Buffer<DT>& write_weights, UpdateDims& d) {
  auto c = columns.dimensions(), v = values.dimensions(),
       p = precedence.dimensions(), w = write_weights.dimensions();
  if (c.size() < 2 || v.size() != c.size() || p.size() + 1 != c.size() ||
      w.size() != p.size())
    return ffi::Error::InvalidArgument(
        "sparse link update: columns/values [..., N, K], precedence and "
        "write weights [..., N]");
  for (size_t i = 0; i < c.size(); ++i)
    if (c[i] != v[i] || (i + 1 < c.size() && (c[i] != p[i] || c[i] != w[i])))
      return ffi::Error::InvalidArgument(
          "sparse link update: the arrays' shapes disagree");
  d.slots = c[c.size() - 2];
  d.pairs = c[c.size() - 1];
  if (d.pairs < 1 || d.pairs > d.slots)
    return ffi::Error::InvalidArgument(
        "sparse link update: K must be in [1, N]");
  d.links = 1;
  for (size_t i = 0; i + 2 < c.size(); ++i) d.links *= c[i];
  return ffi::Error::Success();
}

// Everything one link's update needs besides its rows.
template <typename T>
struct LinkHats {
  TopKNormalised<T> w_top, p_top;
  std::vector<T> w_hat;
  std::vector<int32_t> scratch;

  void Compute(const T* precedence, const T* write_weights, int64_t n,
               int64_t k) {
    w_top.Compute(write_weights, n, k, scratch);
    p_top.Compute(precedence, n, k, scratch);
    w_hat.assign(n, T(0));
    for (int64_t j = 0; j < k; ++j) w_hat[w_top.index[j]] += w_top.value[j];
  }
};

template <ffi::DataType DT>
ffi::Error UpdateImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::S32> columns,
                      ffi::Buffer<DT> values, ffi::Buffer<DT> precedence,
                      ffi::Buffer<DT> write_weights,
                      ffi::ResultBuffer<ffi::S32> new_columns,
                      ffi::ResultBuffer<DT> new_values) {
  using T = ffi::NativeType<DT>;
  UpdateDims d;
  if (auto error = UpdateDimsOf(columns, values, precedence, write_weights, d);
      error.failure())
    return error;
  const int64_t n = d.slots, k = d.pairs;
  if (!ColumnsInRange(columns.typed_data(), d.links * n * k, n))
    return ffi::Error::InvalidArgument(
        "sparse link update: a stored column is outside [0, N)");
  ParallelFor(pool, d.links, n * k * k * 4, [&](int64_t l) {
    thread_local LinkHats<T> hats;
    thread_local RowCandidates<T> row;
    hats.Compute(precedence.typed_data() + l * n,
                 write_weights.typed_data() + l * n, n, k);
    row.Reserve(k);
    const int64_t base = l * n * k;
    for (int64_t i = 0; i < n; ++i) {
      RowForward(i, columns.typed_data() + base + i * k,
                 values.typed_data() + base + i * k, hats.w_hat.data(),
                 hats.p_top, k, row);
      for (int64_t q = 0; q < k; ++q) {
        new_columns->typed_data()[base + i * k + q] = row.column[row.chosen[q]];
        new_values->typed_data()[base + i * k + q] = row.value[row.chosen[q]];
      }
    }
  });
  return ffi::Error::Success();
}

// Cotangents of the stored values, the precedence and the write weights
// from that of the new values (the columns are integers: none).
template <ffi::DataType DT>
ffi::Error UpdateVjpImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::S32> columns,
                         ffi::Buffer<DT> values, ffi::Buffer<DT> precedence,
                         ffi::Buffer<DT> write_weights,
                         ffi::Buffer<DT> g_new_values,
                         ffi::ResultBuffer<DT> g_values,
                         ffi::ResultBuffer<DT> g_precedence,
                         ffi::ResultBuffer<DT> g_write_weights) {
  using T = ffi::NativeType<DT>;
  UpdateDims d;
  if (auto error = UpdateDimsOf(columns, values, precedence, write_weights, d);
      error.failure())
    return error;
  const int64_t n = d.slots, k = d.pairs;
  if (!ColumnsInRange(columns.typed_data(), d.links * n * k, n))
    return ffi::Error::InvalidArgument(
        "sparse link update: a stored column is outside [0, N)");
  ParallelFor(pool, d.links, n * k * k * 8, [&](int64_t l) {
    thread_local LinkHats<T> hats;
    thread_local RowCandidates<T> row;
    thread_local std::vector<T> g_w_hat, g_cand, g_new, g_w_top, g_p_top;
    const T* p = precedence.typed_data() + l * n;
    const T* w = write_weights.typed_data() + l * n;
    hats.Compute(p, w, n, k);
    row.Reserve(k);
    g_w_hat.assign(n, T(0));
    g_p_top.assign(k, T(0));
    const int64_t base = l * n * k;
    const T cut = T(1) / T(k);
    for (int64_t i = 0; i < n; ++i) {
      const int32_t* col = columns.typed_data() + base + i * k;
      const T* val = values.typed_data() + base + i * k;
      RowForward(i, col, val, hats.w_hat.data(), hats.p_top, k, row);
      g_cand.assign(2 * k, T(0));
      for (int64_t q = 0; q < k; ++q)
        g_cand[row.chosen[q]] += g_new_values.typed_data()[base + i * k + q];
      for (int64_t q = 0; q < 2 * k; ++q)
        if (!(row.before_cut[q] >= cut)) g_cand[q] = T(0);
      // New pairs: merged ones pass their gradient through the stored pair.
      g_new.assign(k, T(0));
      for (int64_t m = 0; m < k; ++m)
        if (!row.merged[m]) g_new[m] = g_cand[k + m];
      const T w_i = hats.w_hat[i];
      T* g_val = g_values->typed_data() + base + i * k;
      for (int64_t s = 0; s < k; ++s) {
        const T g_kept = g_cand[s];
        for (int64_t m = 0; m < k; ++m)
          if (row.same[s * k + m]) g_new[m] += g_kept;
        g_val[s] = g_kept * (T(1) - w_i - hats.w_hat[col[s]]);
        g_w_hat[i] -= g_kept * val[s];
        g_w_hat[col[s]] -= g_kept * val[s];
      }
      for (int64_t m = 0; m < k; ++m) {
        if (hats.p_top.index[m] == i) continue;
        g_w_hat[i] += g_new[m] * hats.p_top.value[m];
        g_p_top[m] += g_new[m] * w_i;
      }
    }
    g_w_top.resize(k);
    for (int64_t j = 0; j < k; ++j) g_w_top[j] = g_w_hat[hats.w_top.index[j]];
    T* g_w = g_write_weights->typed_data() + l * n;
    T* g_p = g_precedence->typed_data() + l * n;
    std::fill(g_w, g_w + n, T(0));
    std::fill(g_p, g_p + n, T(0));
    hats.w_top.Backward(w, g_w_top.data(), g_w);
    hats.p_top.Backward(p, g_p_top.data(), g_p);
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

#define DNC_SPARSE_LINK_UPDATE(NAME, DT)                                \
  XLA_FFI_DEFINE_HANDLER_SYMBOL(NAME, dnc::UpdateImpl<DT>,              \
                                ffi::Ffi::Bind()                        \
                                    .Ctx<ffi::ThreadPool>()             \
                                    .Arg<ffi::Buffer<ffi::S32>>()       \
                                    .Arg<ffi::Buffer<DT>>()             \
                                    .Arg<ffi::Buffer<DT>>()             \
                                    .Arg<ffi::Buffer<DT>>()             \
                                    .Ret<ffi::Buffer<ffi::S32>>()       \
                                    .Ret<ffi::Buffer<DT>>());

#define DNC_SPARSE_LINK_UPDATE_VJP(NAME, DT)                            \
  XLA_FFI_DEFINE_HANDLER_SYMBOL(NAME, dnc::UpdateVjpImpl<DT>,           \
                                ffi::Ffi::Bind()                        \
                                    .Ctx<ffi::ThreadPool>()             \
                                    .Arg<ffi::Buffer<ffi::S32>>()       \
                                    .Arg<ffi::Buffer<DT>>()             \
                                    .Arg<ffi::Buffer<DT>>()             \
                                    .Arg<ffi::Buffer<DT>>()             \
                                    .Arg<ffi::Buffer<DT>>()             \
                                    .Ret<ffi::Buffer<DT>>()             \
                                    .Ret<ffi::Buffer<DT>>()             \
                                    .Ret<ffi::Buffer<DT>>());

DNC_SPARSE_LINK_UPDATE(DncSparseLinkUpdateF32, ffi::DataType::F32)
DNC_SPARSE_LINK_UPDATE(DncSparseLinkUpdateF64, ffi::DataType::F64)
DNC_SPARSE_LINK_UPDATE_VJP(DncSparseLinkUpdateVjpF32, ffi::DataType::F32)
DNC_SPARSE_LINK_UPDATE_VJP(DncSparseLinkUpdateVjpF64, ffi::DataType::F64)
