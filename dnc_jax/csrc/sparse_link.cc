// The indexed sparse link (dnc_jax/sparse_link.py) as XLA FFI custom calls
// for the CPU: its update, and the reads through it, each with its
// vector-Jacobian product. Under XLA:CPU these are dozens of small gathers,
// scatters and top-k's per step whose cost dwarfs their O(N*K) work; here
// each example (or example and head) is one pass. The maths is exactly that
// of sparse_link.py and addressing.read_weights (tests compare values and
// gradients).
//
// Read-out. Row i of head h's link holds K (column, value) pairs. With the
// previous read weights w [R, N]:
//   forward  f[r, h, i] = sum_k value[h, i, k] w[r, column[h, i, k]]
//   backward b[r, h, j] = sum over (i, k) with column[h, i, k] = j of
//                         value[h, i, k] w[r, i]
// and with the content read weights c [R, N], the read modes pi [R, 1 + 2H]
// (backward x H, content, forward x H) and the memory M [N, W]:
//   read weights  rw[r, n] = pi[r, H] c[r, n] + sum_h pi[r, h] b[r, h, n]
//                            + sum_h pi[r, H + 1 + h] f[r, h, n]
//   read words    words[r, :] = sum_n rw[r, n] M[n, :]
// Under XLA:CPU the backward read is a scatter and the gradient of the
// forward one a scatter too; with the mixing and the read-out around them
// they were most of a sparse step's time.
//
// Shapes (every leading axis before [R, N] is a batch axis, shared by all):
// columns int32 and values [..., H, N, K]; prev_read_weights and content
// [..., R, N]; read_modes [..., R, 1 + 2H]; memory [..., N, W].

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <string>
#include <vector>

#include "common.h"
#include "parallel.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace dnc {
namespace {

struct LinkDims {
  int64_t batch, heads, slots, pairs, reads, width;
};

// Every index of `indices` must lie in [0, limit): an out-of-range one
// would read or write outside the example's arrays. `what` names it in the
// error: "a stored column" for the columns, whose bound is N.
ffi::Error CheckRange(const ffi::Buffer<ffi::S32>& indices, int64_t limit,
                      const char* kernel, const char* what,
                      const char* operand, const char* bound) {
  const int32_t* data = indices.typed_data();
  const int64_t count = static_cast<int64_t>(indices.element_count());
  const int64_t slots = limit;
  // One vectorised pass says whether any column is out of range (negative
  // ones wrap to large unsigned values); only then is the first one found
  // for the message. Runs on every call, so it must stay cheap.
  if (slots <= INT32_MAX) {
    const uint32_t limit = static_cast<uint32_t>(slots);
    int outside = 0;
#pragma omp simd reduction(| : outside)
    for (int64_t i = 0; i < count; ++i)
      outside |= static_cast<uint32_t>(data[i]) >= limit;
    if (!outside) return ffi::Error::Success();
  }
  for (int64_t i = 0; i < count; ++i)
    if (data[i] < 0 || data[i] >= slots)
      return Invalid(kernel, std::string(what) + " is outside [0, " + bound +
                                 "): " + operand + "[" + std::to_string(i) +
                                 "] (flat) = " + std::to_string(data[i]) +
                                 ", " + bound + " = " + std::to_string(slots));
  return ffi::Error::Success();
}

ffi::Error CheckColumns(const ffi::Buffer<ffi::S32>& columns, int64_t slots,
                        const char* kernel) {
  return CheckRange(columns, slots, kernel, "a stored column", "columns",
                    "N");
}

// Reads the dimensions into `d` from the operands, checking every operand's
// shape against them (`kernel` names the handler in the error).
template <ffi::DataType DT>
ffi::Error DimsOf(const char* kernel, const ffi::Buffer<ffi::S32>& columns,
                  const ffi::Buffer<DT>& values,
                  const ffi::Buffer<DT>& read_weights,
                  const ffi::Buffer<DT>& content,
                  const ffi::Buffer<DT>& read_modes,
                  const ffi::Buffer<DT>& memory, LinkDims& d, Shape& batch) {
  auto w = read_weights.dimensions(), c = columns.dimensions(),
       m = memory.dimensions();
  DNC_RETURN_IF_ERROR(
      LeadingDims(kernel, "prev_read_weights", w, 2, batch));
  const size_t axes = batch.size();
  d.reads = w[axes];
  d.slots = w[axes + 1];
  if (c.size() != axes + 3)
    return Invalid(kernel, "columns has shape " + ShapeString(c) +
                               ", expected " + std::to_string(axes + 3) +
                               " axes [..., H, N, K] (prev_read_weights "
                               "has shape " + ShapeString(w) + ")");
  d.heads = c[axes];
  d.pairs = c[axes + 2];
  if (m.size() != axes + 2)
    return Invalid(kernel, "memory has shape " + ShapeString(m) +
                               ", expected " + std::to_string(axes + 2) +
                               " axes [..., N, W]");
  d.width = m[axes + 1];
  const Shape link = ShapeOf(batch, {d.heads, d.slots, d.pairs});
  DNC_RETURN_IF_ERROR(ExpectShape(kernel, "columns", c, link));
  DNC_RETURN_IF_ERROR(ExpectShape(kernel, "values", values.dimensions(),
                                  link));
  DNC_RETURN_IF_ERROR(ExpectShape(kernel, "content", content.dimensions(),
                                  ShapeOf(batch, {d.reads, d.slots})));
  DNC_RETURN_IF_ERROR(ExpectShape(kernel, "read_modes",
                                  read_modes.dimensions(),
                                  ShapeOf(batch, {d.reads, 1 + 2 * d.heads})));
  DNC_RETURN_IF_ERROR(ExpectShape(kernel, "memory", m,
                                  ShapeOf(batch, {d.slots, d.width})));
  d.batch = Product(batch);
  return CheckColumns(columns, d.slots, kernel);
}

// One example's arrays (shapes as in the header, batch axes dropped).
template <typename P>
struct ReadOutArrays {
  const int32_t* columns;
  P values, prev_read_weights, content, read_modes, memory;
};

template <typename P>
ReadOutArrays<P> ExampleOf(const ReadOutArrays<P>& all, const LinkDims& d,
                           int64_t b) {
  return {all.columns + b * d.heads * d.slots * d.pairs,
          all.values + b * d.heads * d.slots * d.pairs,
          all.prev_read_weights + b * d.reads * d.slots,
          all.content + b * d.reads * d.slots,
          all.read_modes + b * d.reads * (1 + 2 * d.heads),
          all.memory + b * d.slots * d.width};
}

// The read weights rw [R, N] from the content weights and f and b
// [R, H, N], mixed by the read modes.
template <typename T>
void MixReadWeights(const T* read_modes, const T* content, const T* f,
                    const T* bw, const LinkDims& d, T* rw) {
  const int64_t n = d.slots, h_count = d.heads, modes = 1 + 2 * d.heads;
  for (int64_t r = 0; r < d.reads; ++r) {
    const T* pi = read_modes + r * modes;
    for (int64_t i = 0; i < n; ++i) {
      T sum = pi[h_count] * content[r * n + i];
      for (int64_t h = 0; h < h_count; ++h) {
        const int64_t at = (r * h_count + h) * n + i;
        sum += pi[h] * bw[at] + pi[h_count + 1 + h] * f[at];
      }
      rw[r * n + i] = sum;
    }
  }
}

// f and b [R, H, N] through the link, and the read weights rw [R, N].
template <typename T>
void ReadWeights(const ReadOutArrays<const T*>& x, const LinkDims& d, T* f,
                 T* bw, T* rw) {
  const int64_t n = d.slots, h_count = d.heads;
  std::fill(f, f + d.reads * h_count * n, T(0));
  std::fill(bw, bw + d.reads * h_count * n, T(0));
  for (int64_t h = 0; h < h_count; ++h)
    for (int64_t i = 0; i < n; ++i)
      for (int64_t k = 0; k < d.pairs; ++k) {
        const int64_t at = (h * n + i) * d.pairs + k;
        const T v = x.values[at];
        if (v == T(0)) continue;
        const int64_t j = x.columns[at];
        for (int64_t r = 0; r < d.reads; ++r) {
          const T* wr = x.prev_read_weights + r * n;
          const int64_t row = (r * h_count + h) * n;
          f[row + i] += v * wr[j];
          bw[row + j] += v * wr[i];
        }
      }
  MixReadWeights(x.read_modes, x.content, f, bw, d, rw);
}

// words [R, W] = rw [R, N] times memory [N, W].
template <typename T>
void ReadWords(const T* rw, const T* memory, const LinkDims& d, T* words) {
  for (int64_t r = 0; r < d.reads; ++r) {
    T* out = words + r * d.width;
    std::fill(out, out + d.width, T(0));
    for (int64_t i = 0; i < d.slots; ++i) {
      const T weight = rw[r * d.slots + i];
      const T* row = memory + i * d.width;
      for (int64_t c = 0; c < d.width; ++c) out[c] += weight * row[c];
    }
  }
}

// The read-out's cotangents for one example (results, batch axes dropped).
template <typename T>
struct ReadOutGrads {
  T *values, *prev_read_weights, *content, *read_modes, *memory;
};

// Cotangents of the link values, the previous read weights, the content
// weights, the read modes and the memory from those of the read weights
// (g_rw [R, N]) and words (g_words [R, W]), given the forward's f, b
// [R, H, N] and read weights rw [R, N]. Every result is assigned. (Pairs
// with value 0 still get a value gradient, as the XLA path's.) `total`,
// `gf` and `gb` are scratch.
template <typename T>
void ReadOutBackward(const ReadOutArrays<const T*>& x, const LinkDims& d,
                     const T* f, const T* bw, const T* rw, const T* g_rw,
                     const T* g_words, const ReadOutGrads<T>& g,
                     std::vector<T>& total, std::vector<T>& gf,
                     std::vector<T>& gb) {
  const int64_t n = d.slots, hs = d.heads, modes = 1 + 2 * d.heads;
  total.resize(d.reads * n);
  gf.resize(d.reads * hs * n);
  gb.resize(d.reads * hs * n);
  T* g_mem = g.memory;
  T* g_c = g.content;
  T* g_pi = g.read_modes;
  T* g_val = g.values;
  T* g_prev = g.prev_read_weights;
  // The read weights' whole cotangent: given, plus through the words.
  std::fill(g_mem, g_mem + n * d.width, T(0));
  for (int64_t r = 0; r < d.reads; ++r) {
    const T* gw = g_words + r * d.width;
    for (int64_t i = 0; i < n; ++i) {
      const T* row = x.memory + i * d.width;
      T* g_row = g_mem + i * d.width;
      const T weight = rw[r * n + i];
#pragma omp simd
      for (int64_t c = 0; c < d.width; ++c) g_row[c] += weight * gw[c];
      total[r * n + i] = g_rw[r * n + i] + Dot(gw, row, d.width);
    }
  }
  // Through the mixing: modes, content, and f and b (their cotangents in
  // gf and gb).
  for (int64_t r = 0; r < d.reads; ++r) {
    const T* pi = x.read_modes + r * modes;
    const T* gt = total.data() + r * n;
    T g_content_mode = 0;
    for (int64_t i = 0; i < n; ++i) {
      g_content_mode += gt[i] * x.content[r * n + i];
      g_c[r * n + i] = pi[hs] * gt[i];
    }
    g_pi[r * modes + hs] = g_content_mode;
    for (int64_t h = 0; h < hs; ++h) {
      const T* fr = f + (r * hs + h) * n;
      const T* br = bw + (r * hs + h) * n;
      T* gfr = gf.data() + (r * hs + h) * n;
      T* gbr = gb.data() + (r * hs + h) * n;
      T g_backward_mode = 0, g_forward_mode = 0;
      for (int64_t i = 0; i < n; ++i) {
        g_backward_mode += gt[i] * br[i];
        g_forward_mode += gt[i] * fr[i];
        gbr[i] = pi[h] * gt[i];
        gfr[i] = pi[hs + 1 + h] * gt[i];
      }
      g_pi[r * modes + h] = g_backward_mode;
      g_pi[r * modes + hs + 1 + h] = g_forward_mode;
    }
  }
  // Through the link reads.
  std::fill(g_prev, g_prev + d.reads * n, T(0));
  for (int64_t h = 0; h < hs; ++h)
    for (int64_t i = 0; i < n; ++i)
      for (int64_t k = 0; k < d.pairs; ++k) {
        const int64_t at = (h * n + i) * d.pairs + k;
        const T v = x.values[at];
        const int64_t j = x.columns[at];
        T g = 0;
        for (int64_t r = 0; r < d.reads; ++r) {
          const T* wr = x.prev_read_weights + r * n;
          T* gwr = g_prev + r * n;
          const int64_t row = (r * hs + h) * n;
          g += gf[row + i] * wr[j] + gb[row + j] * wr[i];
          gwr[j] += gf[row + i] * v;
          gwr[i] += gb[row + j] * v;
        }
        g_val[at] = g;
      }
}

template <ffi::DataType DT>
ReadOutArrays<const ffi::NativeType<DT>*> ArraysOf(
    const ffi::Buffer<ffi::S32>& columns, const ffi::Buffer<DT>& values,
    const ffi::Buffer<DT>& prev_read_weights, const ffi::Buffer<DT>& content,
    const ffi::Buffer<DT>& read_modes, const ffi::Buffer<DT>& memory) {
  return {columns.typed_data(),       values.typed_data(),
          prev_read_weights.typed_data(), content.typed_data(),
          read_modes.typed_data(),    memory.typed_data()};
}

template <ffi::DataType DT>
ffi::Error ReadOutImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::S32> columns,
                       ffi::Buffer<DT> values,
                       ffi::Buffer<DT> prev_read_weights,
                       ffi::Buffer<DT> content, ffi::Buffer<DT> read_modes,
                       ffi::Buffer<DT> memory,
                       ffi::ResultBuffer<DT> read_weights,
                       ffi::ResultBuffer<DT> read_words) {
  using T = ffi::NativeType<DT>;
  constexpr const char* kKernel = "sparse link read-out";
  LinkDims d;
  Shape batch;
  DNC_RETURN_IF_ERROR(DimsOf(kKernel, columns, values, prev_read_weights,
                             content, read_modes, memory, d, batch));
  DNC_RETURN_IF_ERROR(ExpectShape(kKernel, "read_weights (result)",
                                  read_weights->dimensions(),
                                  ShapeOf(batch, {d.reads, d.slots})));
  DNC_RETURN_IF_ERROR(ExpectShape(kKernel, "read_words (result)",
                                  read_words->dimensions(),
                                  ShapeOf(batch, {d.reads, d.width})));
  const auto all = ArraysOf(columns, values, prev_read_weights, content,
                            read_modes, memory);
  const int64_t directional = d.reads * d.heads * d.slots;
  ParallelFor(pool, d.batch, d.reads * d.slots * (d.width + d.pairs * 2),
              [&](int64_t b) {
    thread_local std::vector<T> f, bw;
    f.resize(directional);
    bw.resize(directional);
    const auto x = ExampleOf(all, d, b);
    T* rw = read_weights->typed_data() + b * d.reads * d.slots;
    T* words = read_words->typed_data() + b * d.reads * d.width;
    ReadWeights(x, d, f.data(), bw.data(), rw);
    ReadWords(rw, x.memory, d, words);
  });
  return ffi::Error::Success();
}

// Cotangents of the link values, the previous read weights, the content
// weights, the read modes and the memory from those of the read weights and
// words. (Pairs with value 0 still get a value gradient, as the XLA path's.)
template <ffi::DataType DT>
ffi::Error ReadOutVjpImpl(
    ffi::ThreadPool pool, ffi::Buffer<ffi::S32> columns,
    ffi::Buffer<DT> values, ffi::Buffer<DT> prev_read_weights,
    ffi::Buffer<DT> content, ffi::Buffer<DT> read_modes,
    ffi::Buffer<DT> memory, ffi::Buffer<DT> g_read_weights,
    ffi::Buffer<DT> g_read_words, ffi::ResultBuffer<DT> g_values,
    ffi::ResultBuffer<DT> g_prev_read_weights,
    ffi::ResultBuffer<DT> g_content, ffi::ResultBuffer<DT> g_read_modes,
    ffi::ResultBuffer<DT> g_memory) {
  using T = ffi::NativeType<DT>;
  constexpr const char* kKernel = "sparse link read-out VJP";
  LinkDims d;
  Shape batch;
  DNC_RETURN_IF_ERROR(DimsOf(kKernel, columns, values, prev_read_weights,
                             content, read_modes, memory, d, batch));
  const Shape weights = ShapeOf(batch, {d.reads, d.slots});
  const Shape words = ShapeOf(batch, {d.reads, d.width});
  DNC_RETURN_IF_ERROR(ExpectShape(kKernel, "g_read_weights",
                                  g_read_weights.dimensions(), weights));
  DNC_RETURN_IF_ERROR(ExpectShape(kKernel, "g_read_words",
                                  g_read_words.dimensions(), words));
  DNC_RETURN_IF_ERROR(ExpectShape(kKernel, "g_values (result)",
                                  g_values->dimensions(),
                                  values.dimensions()));
  DNC_RETURN_IF_ERROR(ExpectShape(kKernel, "g_prev_read_weights (result)",
                                  g_prev_read_weights->dimensions(), weights));
  DNC_RETURN_IF_ERROR(ExpectShape(kKernel, "g_content (result)",
                                  g_content->dimensions(), weights));
  DNC_RETURN_IF_ERROR(ExpectShape(kKernel, "g_read_modes (result)",
                                  g_read_modes->dimensions(),
                                  read_modes.dimensions()));
  DNC_RETURN_IF_ERROR(ExpectShape(kKernel, "g_memory (result)",
                                  g_memory->dimensions(),
                                  memory.dimensions()));
  const int64_t link_size = d.heads * d.slots * d.pairs;
  const auto all = ArraysOf(columns, values, prev_read_weights, content,
                            read_modes, memory);
  const int64_t n = d.slots, hs = d.heads, modes = 1 + 2 * d.heads;
  const int64_t directional = d.reads * hs * n;
  ParallelFor(pool, d.batch, d.reads * n * (2 * d.width + d.pairs * 4),
              [&](int64_t b) {
    thread_local std::vector<T> f, bw, rw, total, gf, gb;
    f.resize(directional);
    bw.resize(directional);
    rw.resize(d.reads * n);
    const auto x = ExampleOf(all, d, b);
    ReadWeights(x, d, f.data(), bw.data(), rw.data());
    ReadOutBackward<T>(
        x, d, f.data(), bw.data(), rw.data(),
        g_read_weights.typed_data() + b * d.reads * n,
        g_read_words.typed_data() + b * d.reads * d.width,
        {g_values->typed_data() + b * link_size,
         g_prev_read_weights->typed_data() + b * d.reads * n,
         g_content->typed_data() + b * d.reads * n,
         g_read_modes->typed_data() + b * d.reads * modes,
         g_memory->typed_data() + b * n * d.width},
        total, gf, gb);
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

// Descending by XLA's TopK order (TopKKey); equal values keep the lower
// index first, as jax.lax.top_k.
template <typename T>
void TopKOrder(const T* x, int64_t n, int64_t k, int32_t* out,
               std::vector<int32_t>& order) {
  order.resize(n);
  std::iota(order.begin(), order.end(), 0);
  std::partial_sort(order.begin(), order.begin() + k, order.end(),
                    [x](int32_t a, int32_t b) {
                      const auto key_a = TopKKey(x[a]), key_b = TopKKey(x[b]);
                      return key_a > key_b || (key_a == key_b && a < b);
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
    TopKOrder(x, n, k, index.data(), scratch);
    Rescale(x, k);
  }

  // The same from already ranked indices `top` [K].
  void FromIndex(const T* x, const int32_t* top, int64_t k) {
    index.assign(top, top + k);
    Rescale(x, k);
  }

  void Rescale(const T* x, int64_t k) {
    value.resize(k);
    total = 0;
    for (int64_t j = 0; j < k; ++j) total += x[index[j]];
    for (int64_t j = 0; j < k; ++j)
      value[j] = total > T(0) ? x[index[j]] / total : T(0);
  }

  // Adds into g_x the gradient of the rescaled values given g_value.
  void Backward(const T* g_value, T* g_x) const {
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
  std::vector<int32_t> same;  // per stored pair: the new pair added to it, -1
  std::vector<unsigned char> merged;  // per new pair: added to a stored one
  std::vector<int32_t> chosen;

  void Reserve(int64_t k) {
    column.resize(2 * k);
    before_cut.resize(2 * k);
    value.resize(2 * k);
    new_before_merge.resize(k);
    same.resize(k);
    merged.resize(k);
    chosen.resize(2 * k);
  }
};

// Fills `c` for row i (`c.Reserve(k)` done); `c.chosen[0, K)` are the kept
// candidates. After the threshold every value is 0 or at least 1/K > 0, so
// the top K are the positive ones by value (ties: earlier first), then
// zeros by position: the order jax.lax.top_k gives, without a full sort.
// `p_slot[j]` is the m with p_hat.index[m] = j, or -1 (p_hat's columns are
// distinct), so a stored pair finds the new pair it merges with in O(1):
// O(K) per row, besides the ranking of the (few) positive candidates.
template <typename T>
void RowForward(int64_t i, const int32_t* columns, const T* values,
                const T* w_hat, const TopKNormalised<T>& p_hat,
                const int32_t* p_slot, int64_t k, RowCandidates<T>& c) {
  std::fill(c.merged.begin(), c.merged.end(), 0);
  const T w_i = w_hat[i];
  for (int64_t m = 0; m < k; ++m)
    c.new_before_merge[m] =
        p_hat.index[m] == i ? T(0) : w_i * p_hat.value[m];
  for (int64_t s = 0; s < k; ++s) {
    const int32_t j = columns[s];
    T kept = (T(1) - w_i - w_hat[j]) * values[s];
    c.same[s] = -1;
    if (values[s] > T(0) && p_slot[j] >= 0) {
      const int32_t m = p_slot[j];
      c.same[s] = m;
      c.merged[m] = 1;
      kept += c.new_before_merge[m];
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

// Reads the dimensions into `d` from the operands, checking them.
template <ffi::DataType DT>
ffi::Error UpdateDimsOf(const char* kernel,
                        const ffi::Buffer<ffi::S32>& columns,
                        const ffi::Buffer<DT>& values,
                        const ffi::Buffer<DT>& precedence,
                        const ffi::Buffer<DT>& write_weights, UpdateDims& d,
                        Shape& batch) {
  auto c = columns.dimensions();
  DNC_RETURN_IF_ERROR(LeadingDims(kernel, "columns", c, 2, batch));
  d.slots = c[c.size() - 2];
  d.pairs = c[c.size() - 1];
  DNC_RETURN_IF_ERROR(ExpectShape(kernel, "values", values.dimensions(),
                                  ShapeOf(batch, {d.slots, d.pairs})));
  DNC_RETURN_IF_ERROR(ExpectShape(kernel, "precedence",
                                  precedence.dimensions(),
                                  ShapeOf(batch, {d.slots})));
  DNC_RETURN_IF_ERROR(ExpectShape(kernel, "write_weights",
                                  write_weights.dimensions(),
                                  ShapeOf(batch, {d.slots})));
  if (d.pairs < 1 || d.pairs > d.slots)
    return Invalid(kernel, "K = " + std::to_string(d.pairs) +
                               " (columns' last axis) must be in [1, N = " +
                               std::to_string(d.slots) + "]");
  d.links = Product(batch);
  return CheckColumns(columns, d.slots, kernel);
}

// Everything one link's update needs besides its rows.
template <typename T>
struct LinkHats {
  TopKNormalised<T> w_top, p_top;
  std::vector<T> w_hat;
  std::vector<int32_t> p_slot;  // column -> its place in p_top, or -1
  std::vector<int32_t> scratch;

  void Compute(const T* precedence, const T* write_weights, int64_t n,
               int64_t k) {
    w_top.Compute(write_weights, n, k, scratch);
    p_top.Compute(precedence, n, k, scratch);
    Finish(n, k);
  }

  // As Compute, from the top-K indices a forward pass found (`w_index`,
  // `p_index`, each K in [0, N)): O(N) instead of the two top-K searches,
  // with the same values (the same sums in the same order).
  void FromIndices(const T* precedence, const T* write_weights, int64_t n,
                   int64_t k, const int32_t* w_index, const int32_t* p_index) {
    w_top.FromIndex(write_weights, w_index, k);
    p_top.FromIndex(precedence, p_index, k);
    Finish(n, k);
  }

 private:
  void Finish(int64_t n, int64_t k) {
    w_hat.assign(n, T(0));
    for (int64_t j = 0; j < k; ++j) w_hat[w_top.index[j]] += w_top.value[j];
    p_slot.assign(n, -1);
    for (int64_t m = 0; m < k; ++m)
      p_slot[p_top.index[m]] = static_cast<int32_t>(m);
  }
};

template <ffi::DataType DT>
ffi::Error UpdateImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::S32> columns,
                      ffi::Buffer<DT> values, ffi::Buffer<DT> precedence,
                      ffi::Buffer<DT> write_weights,
                      ffi::ResultBuffer<ffi::S32> new_columns,
                      ffi::ResultBuffer<DT> new_values) {
  using T = ffi::NativeType<DT>;
  constexpr const char* kKernel = "sparse link update";
  UpdateDims d;
  Shape batch;
  DNC_RETURN_IF_ERROR(UpdateDimsOf(kKernel, columns, values, precedence,
                                   write_weights, d, batch));
  DNC_RETURN_IF_ERROR(ExpectShape(kKernel, "new_columns (result)",
                                  new_columns->dimensions(),
                                  values.dimensions()));
  DNC_RETURN_IF_ERROR(ExpectShape(kKernel, "new_values (result)",
                                  new_values->dimensions(),
                                  values.dimensions()));
  const int64_t n = d.slots, k = d.pairs;
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
                 hats.p_top, hats.p_slot.data(), k, row);
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
  constexpr const char* kKernel = "sparse link update VJP";
  UpdateDims d;
  Shape batch;
  DNC_RETURN_IF_ERROR(UpdateDimsOf(kKernel, columns, values, precedence,
                                   write_weights, d, batch));
  DNC_RETURN_IF_ERROR(ExpectShape(kKernel, "g_new_values",
                                  g_new_values.dimensions(),
                                  values.dimensions()));
  DNC_RETURN_IF_ERROR(ExpectShape(kKernel, "g_values (result)",
                                  g_values->dimensions(),
                                  values.dimensions()));
  DNC_RETURN_IF_ERROR(ExpectShape(kKernel, "g_precedence (result)",
                                  g_precedence->dimensions(),
                                  precedence.dimensions()));
  DNC_RETURN_IF_ERROR(ExpectShape(kKernel, "g_write_weights (result)",
                                  g_write_weights->dimensions(),
                                  write_weights.dimensions()));
  const int64_t n = d.slots, k = d.pairs;
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
      RowForward(i, col, val, hats.w_hat.data(), hats.p_top,
                 hats.p_slot.data(), k, row);
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
        if (row.same[s] >= 0) g_new[row.same[s]] += g_kept;
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
    hats.w_top.Backward(g_w_top.data(), g_w);
    hats.p_top.Backward(g_p_top.data(), g_p);
  });
  return ffi::Error::Success();
}

// ---------------------------------------------------------------------------
// The whole step (DncSparseLinkStep): for each example, every head's update
// and the read-out through the new link, in one pass: each row's new pairs
// are read (f and b accumulated) as soon as they are chosen. Operands: the
// update's (columns, values [..., H, N, K], precedence, write weights
// [..., H, N]) then the read-out's other ones (prev_read_weights, content
// [..., R, N], read_modes [..., R, 1 + 2H], memory [..., N, W]). Results:
// new_columns, new_values [..., H, N, K], read_weights [..., R, N],
// read_words [..., R, W], then the residuals its VJP takes so as not to
// redo the update:
//   chosen [..., H, N, K] int32: the candidate each new pair came from
//     ([0, K) a stored pair, [K, 2K) the new pair K + m);
//   tops [..., H, 2, K] int32: the top-K indices of the write weights, then
//     of the precedence (their rescaled values are O(K) to redo, exactly).
// Work and memory per example: O(H N K) for the link (plus the ranking of
// the few candidates above 1/K in each row) and O(R N (H K + W)) for the
// read-out.

// Reads all dimensions, checking every operand's shape (and the columns).
template <ffi::DataType DT>
ffi::Error StepDimsOf(const char* kernel, const ffi::Buffer<ffi::S32>& columns,
                      const ffi::Buffer<DT>& values,
                      const ffi::Buffer<DT>& precedence,
                      const ffi::Buffer<DT>& write_weights,
                      const ffi::Buffer<DT>& prev_read_weights,
                      const ffi::Buffer<DT>& content,
                      const ffi::Buffer<DT>& read_modes,
                      const ffi::Buffer<DT>& memory, LinkDims& d,
                      Shape& batch) {
  DNC_RETURN_IF_ERROR(DimsOf(kernel, columns, values, prev_read_weights,
                             content, read_modes, memory, d, batch));
  const Shape heads = ShapeOf(batch, {d.heads, d.slots});
  DNC_RETURN_IF_ERROR(ExpectShape(kernel, "precedence",
                                  precedence.dimensions(), heads));
  DNC_RETURN_IF_ERROR(ExpectShape(kernel, "write_weights",
                                  write_weights.dimensions(), heads));
  if (d.pairs < 1 || d.pairs > d.slots)
    return Invalid(kernel, "K = " + std::to_string(d.pairs) +
                               " (columns' last axis) must be in [1, N = " +
                               std::to_string(d.slots) + "]");
  return ffi::Error::Success();
}

// Shapes of the results (forward) or residuals (VJP), in order.
inline std::vector<std::pair<const char*, Shape>> StepOutputShapes(
    const Shape& batch, const LinkDims& d) {
  return {{"new_columns", ShapeOf(batch, {d.heads, d.slots, d.pairs})},
          {"new_values", ShapeOf(batch, {d.heads, d.slots, d.pairs})},
          {"read_weights", ShapeOf(batch, {d.reads, d.slots})},
          {"read_words", ShapeOf(batch, {d.reads, d.width})},
          {"chosen", ShapeOf(batch, {d.heads, d.slots, d.pairs})},
          {"tops", ShapeOf(batch, {d.heads, 2, d.pairs})}};
}

template <typename Dims>
ffi::Error ExpectOutput(const char* kernel, const std::string& name,
                        const Dims& got, const Shape& want) {
  return ExpectShape(kernel, name.c_str(), got, want);
}

template <ffi::DataType DT>
ffi::Error StepImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::S32> columns,
                    ffi::Buffer<DT> values, ffi::Buffer<DT> precedence,
                    ffi::Buffer<DT> write_weights,
                    ffi::Buffer<DT> prev_read_weights,
                    ffi::Buffer<DT> content, ffi::Buffer<DT> read_modes,
                    ffi::Buffer<DT> memory,
                    ffi::ResultBuffer<ffi::S32> new_columns,
                    ffi::ResultBuffer<DT> new_values,
                    ffi::ResultBuffer<DT> read_weights,
                    ffi::ResultBuffer<DT> read_words,
                    ffi::ResultBuffer<ffi::S32> chosen,
                    ffi::ResultBuffer<ffi::S32> tops) {
  using T = ffi::NativeType<DT>;
  constexpr const char* kKernel = "sparse link step";
  LinkDims d;
  Shape batch;
  DNC_RETURN_IF_ERROR(StepDimsOf(kKernel, columns, values, precedence,
                                 write_weights, prev_read_weights, content,
                                 read_modes, memory, d, batch));
  const auto want = StepOutputShapes(batch, d);
  const std::vector<Shape> got = {
      Shape(new_columns->dimensions().begin(),
            new_columns->dimensions().end()),
      Shape(new_values->dimensions().begin(), new_values->dimensions().end()),
      Shape(read_weights->dimensions().begin(),
            read_weights->dimensions().end()),
      Shape(read_words->dimensions().begin(), read_words->dimensions().end()),
      Shape(chosen->dimensions().begin(), chosen->dimensions().end()),
      Shape(tops->dimensions().begin(), tops->dimensions().end())};
  for (size_t o = 0; o < want.size(); ++o)
    DNC_RETURN_IF_ERROR(ExpectOutput(
        kKernel, std::string(want[o].first) + " (result)", got[o],
        want[o].second));
  const auto all = ArraysOf(columns, values, prev_read_weights, content,
                            read_modes, memory);
  const int64_t n = d.slots, k = d.pairs, hs = d.heads;
  const int64_t link_size = hs * n * k, reads = d.reads * hs * n;
  ParallelFor(pool, d.batch,
              link_size * 4 + d.reads * n * (d.width + 2 * hs * k),
              [&](int64_t b) {
    thread_local LinkHats<T> hats;
    thread_local RowCandidates<T> row;
    thread_local std::vector<T> directional;
    row.Reserve(k);
    directional.assign(2 * reads, T(0));
    const auto x = ExampleOf(all, d, b);
    int32_t* out_columns = new_columns->typed_data() + b * link_size;
    T* out_values = new_values->typed_data() + b * link_size;
    int32_t* out_chosen = chosen->typed_data() + b * link_size;
    int32_t* out_tops = tops->typed_data() + b * hs * 2 * k;
    T* f = directional.data();
    T* bw = f + reads;
    T* rw = read_weights->typed_data() + b * d.reads * n;
    for (int64_t h = 0; h < hs; ++h) {
      hats.Compute(precedence.typed_data() + (b * hs + h) * n,
                   write_weights.typed_data() + (b * hs + h) * n, n, k);
      std::copy(hats.w_top.index.begin(), hats.w_top.index.end(),
                out_tops + h * 2 * k);
      std::copy(hats.p_top.index.begin(), hats.p_top.index.end(),
                out_tops + h * 2 * k + k);
      for (int64_t i = 0; i < n; ++i) {
        const int64_t at = (h * n + i) * k;
        RowForward(i, x.columns + at, x.values + at, hats.w_hat.data(),
                   hats.p_top, hats.p_slot.data(), k, row);
        for (int64_t q = 0; q < k; ++q) {
          const int32_t c = row.chosen[q];
          const int32_t j = row.column[c];
          const T v = row.value[c];
          out_columns[at + q] = j;
          out_values[at + q] = v;
          out_chosen[at + q] = c;
          if (v == T(0)) continue;
          // The read through the new pair, as ReadWeights (same order).
          for (int64_t r = 0; r < d.reads; ++r) {
            const T* wr = x.prev_read_weights + r * n;
            const int64_t line = (r * hs + h) * n;
            f[line + i] += v * wr[j];
            bw[line + j] += v * wr[i];
          }
        }
      }
    }
    MixReadWeights(x.read_modes, x.content, f, bw, d, rw);
    ReadWords(rw, x.memory, d,
              read_words->typed_data() + b * d.reads * d.width);
  });
  return ffi::Error::Success();
}

// Cotangents of the old link's values, the precedence, the write weights,
// the previous read weights, the content weights, the read modes and the
// memory, from those of the new values, the read weights and the read
// words. Operands: the step's, the new link and the residuals (new_columns,
// new_values, chosen, tops), then the cotangents. The update is not redone:
// the read-out's f, b and read weights are re-read from the new link
// (O(R H N K), cheaper than keeping them: measured, docs/kernels.md), the
// new values' whole cotangent (given plus through the read-out) then flows
// back through each kept pair to the candidate `chosen` names, and through
// the top-K's from `tops`.
template <ffi::DataType DT>
ffi::Error StepVjpImpl(
    ffi::ThreadPool pool, ffi::Buffer<ffi::S32> columns,
    ffi::Buffer<DT> values, ffi::Buffer<DT> precedence,
    ffi::Buffer<DT> write_weights, ffi::Buffer<DT> prev_read_weights,
    ffi::Buffer<DT> content, ffi::Buffer<DT> read_modes,
    ffi::Buffer<DT> memory, ffi::Buffer<ffi::S32> new_columns,
    ffi::Buffer<DT> new_values, ffi::Buffer<ffi::S32> chosen,
    ffi::Buffer<ffi::S32> tops, ffi::Buffer<DT> g_new_values,
    ffi::Buffer<DT> g_read_weights, ffi::Buffer<DT> g_read_words,
    ffi::ResultBuffer<DT> g_values, ffi::ResultBuffer<DT> g_precedence,
    ffi::ResultBuffer<DT> g_write_weights,
    ffi::ResultBuffer<DT> g_prev_read_weights,
    ffi::ResultBuffer<DT> g_content, ffi::ResultBuffer<DT> g_read_modes,
    ffi::ResultBuffer<DT> g_memory) {
  using T = ffi::NativeType<DT>;
  constexpr const char* kKernel = "sparse link step VJP";
  LinkDims d;
  Shape batch;
  DNC_RETURN_IF_ERROR(StepDimsOf(kKernel, columns, values, precedence,
                                 write_weights, prev_read_weights, content,
                                 read_modes, memory, d, batch));
  const auto want = StepOutputShapes(batch, d);
  // The new link and the residuals, then the cotangents.
  DNC_RETURN_IF_ERROR(ExpectShape(kKernel, "new_columns",
                                  new_columns.dimensions(), want[0].second));
  DNC_RETURN_IF_ERROR(ExpectShape(kKernel, "new_values",
                                  new_values.dimensions(), want[1].second));
  DNC_RETURN_IF_ERROR(ExpectShape(kKernel, "chosen", chosen.dimensions(),
                                  want[4].second));
  DNC_RETURN_IF_ERROR(ExpectShape(kKernel, "tops", tops.dimensions(),
                                  want[5].second));
  DNC_RETURN_IF_ERROR(ExpectShape(kKernel, "g_new_values",
                                  g_new_values.dimensions(), want[1].second));
  DNC_RETURN_IF_ERROR(ExpectShape(kKernel, "g_read_weights",
                                  g_read_weights.dimensions(),
                                  want[2].second));
  DNC_RETURN_IF_ERROR(ExpectShape(kKernel, "g_read_words",
                                  g_read_words.dimensions(), want[3].second));
  DNC_RETURN_IF_ERROR(ExpectShape(kKernel, "g_values (result)",
                                  g_values->dimensions(),
                                  values.dimensions()));
  DNC_RETURN_IF_ERROR(ExpectShape(kKernel, "g_precedence (result)",
                                  g_precedence->dimensions(),
                                  precedence.dimensions()));
  DNC_RETURN_IF_ERROR(ExpectShape(kKernel, "g_write_weights (result)",
                                  g_write_weights->dimensions(),
                                  write_weights.dimensions()));
  DNC_RETURN_IF_ERROR(ExpectShape(kKernel, "g_prev_read_weights (result)",
                                  g_prev_read_weights->dimensions(),
                                  prev_read_weights.dimensions()));
  DNC_RETURN_IF_ERROR(ExpectShape(kKernel, "g_content (result)",
                                  g_content->dimensions(),
                                  content.dimensions()));
  DNC_RETURN_IF_ERROR(ExpectShape(kKernel, "g_read_modes (result)",
                                  g_read_modes->dimensions(),
                                  read_modes.dimensions()));
  DNC_RETURN_IF_ERROR(ExpectShape(kKernel, "g_memory (result)",
                                  g_memory->dimensions(),
                                  memory.dimensions()));
  // The index residuals are read as indices: check them as the columns.
  DNC_RETURN_IF_ERROR(CheckRange(new_columns, d.slots, kKernel,
                                 "a new column", "new_columns", "N"));
  DNC_RETURN_IF_ERROR(CheckRange(tops, d.slots, kKernel, "a top-K index",
                                 "tops", "N"));
  DNC_RETURN_IF_ERROR(CheckRange(chosen, 2 * d.pairs, kKernel,
                                 "a chosen candidate", "chosen", "2K"));
  const auto all = ArraysOf(columns, values, prev_read_weights, content,
                            read_modes, memory);
  const int64_t n = d.slots, k = d.pairs, hs = d.heads;
  const int64_t modes = 1 + 2 * hs;
  const int64_t link_size = hs * n * k, reads = d.reads * hs * n;
  const T cut = T(1) / T(k);
  ParallelFor(pool, d.batch,
              link_size * 4 + d.reads * n * (2 * d.width + 4 * hs * k),
              [&](int64_t b) {
    thread_local LinkHats<T> hats;
    thread_local std::vector<T> directional, rw, g_link, total, gf, gb,
        g_w_hat, g_new, g_w_top, g_p_top;
    const auto x = ExampleOf(all, d, b);
    // The read-out's backward, through the new link.
    ReadOutArrays<const T*> through_new = x;
    through_new.columns = new_columns.typed_data() + b * link_size;
    through_new.values = new_values.typed_data() + b * link_size;
    directional.resize(2 * reads);
    rw.resize(d.reads * n);
    T* f = directional.data();
    ReadWeights(through_new, d, f, f + reads, rw.data());
    g_link.resize(link_size);
    ReadOutBackward<T>(
        through_new, d, f, f + reads, rw.data(),
        g_read_weights.typed_data() + b * d.reads * n,
        g_read_words.typed_data() + b * d.reads * d.width,
        {g_link.data(), g_prev_read_weights->typed_data() + b * d.reads * n,
         g_content->typed_data() + b * d.reads * n,
         g_read_modes->typed_data() + b * d.reads * modes,
         g_memory->typed_data() + b * n * d.width},
        total, gf, gb);
    const T* g_given = g_new_values.typed_data() + b * link_size;
    for (int64_t at = 0; at < link_size; ++at) g_link[at] += g_given[at];
    // The update's backward, head by head.
    const int32_t* kept_from = chosen.typed_data() + b * link_size;
    const T* kept = through_new.values;
    for (int64_t h = 0; h < hs; ++h) {
      const int64_t l = b * hs + h;
      const T* p = precedence.typed_data() + l * n;
      const T* w = write_weights.typed_data() + l * n;
      const int32_t* top = tops.typed_data() + l * 2 * k;
      hats.FromIndices(p, w, n, k, top, top + k);
      g_w_hat.assign(n, T(0));
      g_p_top.assign(k, T(0));
      T* g_val = g_values->typed_data() + l * n * k;
      std::fill(g_val, g_val + n * k, T(0));
      for (int64_t i = 0; i < n; ++i) {
        const int64_t at = (h * n + i) * k;
        const int32_t* col = x.columns + at;
        const T* val = x.values + at;
        const T w_i = hats.w_hat[i];
        g_new.assign(k, T(0));
        for (int64_t q = 0; q < k; ++q) {
          // Only pairs that passed the 1/K cut carry a gradient back.
          if (!(kept[at + q] >= cut)) continue;
          const T g = g_link[at + q];
          const int32_t c = kept_from[at + q];
          if (c >= k) {  // a new pair
            g_new[c - k] += g;
            continue;
          }
          const int32_t j = col[c];  // a stored pair, decayed (and merged)
          g_val[i * k + c] = g * (T(1) - w_i - hats.w_hat[j]);
          g_w_hat[i] -= g * val[c];
          g_w_hat[j] -= g * val[c];
          if (val[c] > T(0) && hats.p_slot[j] >= 0) g_new[hats.p_slot[j]] += g;
        }
        for (int64_t m = 0; m < k; ++m) {
          if (hats.p_top.index[m] == i) continue;
          g_w_hat[i] += g_new[m] * hats.p_top.value[m];
          g_p_top[m] += g_new[m] * w_i;
        }
      }
      g_w_top.resize(k);
      for (int64_t j = 0; j < k; ++j)
        g_w_top[j] = g_w_hat[hats.w_top.index[j]];
      T* g_w = g_write_weights->typed_data() + l * n;
      T* g_p = g_precedence->typed_data() + l * n;
      std::fill(g_w, g_w + n, T(0));
      std::fill(g_p, g_p + n, T(0));
      hats.w_top.Backward(g_w_top.data(), g_w);
      hats.p_top.Backward(g_p_top.data(), g_p);
    }
  });
  return ffi::Error::Success();
}

}  // namespace
}  // namespace dnc

#define DNC_SPARSE_READ_OUT(NAME, DT)                                   \
  XLA_FFI_DEFINE_HANDLER_SYMBOL(NAME, dnc::ReadOutImpl<DT>,             \
                                ffi::Ffi::Bind()                        \
                                    .Ctx<ffi::ThreadPool>()             \
                                    .Arg<ffi::Buffer<ffi::S32>>()       \
                                    .Arg<ffi::Buffer<DT>>()             \
                                    .Arg<ffi::Buffer<DT>>()             \
                                    .Arg<ffi::Buffer<DT>>()             \
                                    .Arg<ffi::Buffer<DT>>()             \
                                    .Arg<ffi::Buffer<DT>>()             \
                                    .Ret<ffi::Buffer<DT>>()             \
                                    .Ret<ffi::Buffer<DT>>());

#define DNC_SPARSE_READ_OUT_VJP(NAME, DT)                               \
  XLA_FFI_DEFINE_HANDLER_SYMBOL(NAME, dnc::ReadOutVjpImpl<DT>,          \
                                ffi::Ffi::Bind()                        \
                                    .Ctx<ffi::ThreadPool>()             \
                                    .Arg<ffi::Buffer<ffi::S32>>()       \
                                    .Arg<ffi::Buffer<DT>>()             \
                                    .Arg<ffi::Buffer<DT>>()             \
                                    .Arg<ffi::Buffer<DT>>()             \
                                    .Arg<ffi::Buffer<DT>>()             \
                                    .Arg<ffi::Buffer<DT>>()             \
                                    .Arg<ffi::Buffer<DT>>()             \
                                    .Arg<ffi::Buffer<DT>>()             \
                                    .Ret<ffi::Buffer<DT>>()             \
                                    .Ret<ffi::Buffer<DT>>()             \
                                    .Ret<ffi::Buffer<DT>>()             \
                                    .Ret<ffi::Buffer<DT>>()             \
                                    .Ret<ffi::Buffer<DT>>());

DNC_SPARSE_READ_OUT(DncSparseReadOutF32, ffi::DataType::F32)
DNC_SPARSE_READ_OUT(DncSparseReadOutF64, ffi::DataType::F64)
DNC_SPARSE_READ_OUT_VJP(DncSparseReadOutVjpF32, ffi::DataType::F32)
DNC_SPARSE_READ_OUT_VJP(DncSparseReadOutVjpF64, ffi::DataType::F64)

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

#define DNC_SPARSE_LINK_STEP(NAME, DT)                                  \
  XLA_FFI_DEFINE_HANDLER_SYMBOL(NAME, dnc::StepImpl<DT>,                \
                                ffi::Ffi::Bind()                        \
                                    .Ctx<ffi::ThreadPool>()             \
                                    .Arg<ffi::Buffer<ffi::S32>>()       \
                                    .Arg<ffi::Buffer<DT>>()             \
                                    .Arg<ffi::Buffer<DT>>()             \
                                    .Arg<ffi::Buffer<DT>>()             \
                                    .Arg<ffi::Buffer<DT>>()             \
                                    .Arg<ffi::Buffer<DT>>()             \
                                    .Arg<ffi::Buffer<DT>>()             \
                                    .Arg<ffi::Buffer<DT>>()             \
                                    .Ret<ffi::Buffer<ffi::S32>>()       \
                                    .Ret<ffi::Buffer<DT>>()             \
                                    .Ret<ffi::Buffer<DT>>()             \
                                    .Ret<ffi::Buffer<DT>>()             \
                                    .Ret<ffi::Buffer<ffi::S32>>()       \
                                    .Ret<ffi::Buffer<ffi::S32>>());

#define DNC_SPARSE_LINK_STEP_VJP(NAME, DT)                              \
  XLA_FFI_DEFINE_HANDLER_SYMBOL(NAME, dnc::StepVjpImpl<DT>,             \
                                ffi::Ffi::Bind()                        \
                                    .Ctx<ffi::ThreadPool>()             \
                                    .Arg<ffi::Buffer<ffi::S32>>()       \
                                    .Arg<ffi::Buffer<DT>>()             \
                                    .Arg<ffi::Buffer<DT>>()             \
                                    .Arg<ffi::Buffer<DT>>()             \
                                    .Arg<ffi::Buffer<DT>>()             \
                                    .Arg<ffi::Buffer<DT>>()             \
                                    .Arg<ffi::Buffer<DT>>()             \
                                    .Arg<ffi::Buffer<DT>>()             \
                                    .Arg<ffi::Buffer<ffi::S32>>()       \
                                    .Arg<ffi::Buffer<DT>>()             \
                                    .Arg<ffi::Buffer<ffi::S32>>()       \
                                    .Arg<ffi::Buffer<ffi::S32>>()       \
                                    .Arg<ffi::Buffer<DT>>()             \
                                    .Arg<ffi::Buffer<DT>>()             \
                                    .Arg<ffi::Buffer<DT>>()             \
                                    .Ret<ffi::Buffer<DT>>()             \
                                    .Ret<ffi::Buffer<DT>>()             \
                                    .Ret<ffi::Buffer<DT>>()             \
                                    .Ret<ffi::Buffer<DT>>()             \
                                    .Ret<ffi::Buffer<DT>>()             \
                                    .Ret<ffi::Buffer<DT>>()             \
                                    .Ret<ffi::Buffer<DT>>());

DNC_SPARSE_LINK_STEP(DncSparseLinkStepF32, ffi::DataType::F32)
DNC_SPARSE_LINK_STEP(DncSparseLinkStepF64, ffi::DataType::F64)
DNC_SPARSE_LINK_STEP_VJP(DncSparseLinkStepVjpF32, ffi::DataType::F32)
DNC_SPARSE_LINK_STEP_VJP(DncSparseLinkStepVjpF64, ffi::DataType::F64)
