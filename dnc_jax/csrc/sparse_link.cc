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

// Every stored column must lie in [0, N): an out-of-range one would read
// or write outside the example's arrays.
ffi::Error CheckColumns(const ffi::Buffer<ffi::S32>& columns, int64_t slots,
                        const char* kernel) {
  const int32_t* data = columns.typed_data();
  const int64_t count = static_cast<int64_t>(columns.element_count());
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
      return Invalid(kernel, "a stored column is outside [0, N): columns[" +
                                 std::to_string(i) + "] (flat) = " +
                                 std::to_string(data[i]) + ", N = " +
                                 std::to_string(slots));
  return ffi::Error::Success();
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

// f and b [R, H, N] through the link, and the read weights rw [R, N].
template <typename T>
void ReadWeights(const ReadOutArrays<const T*>& x, const LinkDims& d, T* f,
                 T* bw, T* rw) {
  const int64_t n = d.slots, h_count = d.heads, modes = 1 + 2 * d.heads;
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
  for (int64_t r = 0; r < d.reads; ++r) {
    const T* pi = x.read_modes + r * modes;
    for (int64_t i = 0; i < n; ++i) {
      T sum = pi[h_count] * x.content[r * n + i];
      for (int64_t h = 0; h < h_count; ++h) {
        const int64_t at = (r * h_count + h) * n + i;
        sum += pi[h] * bw[at] + pi[h_count + 1 + h] * f[at];
      }
      rw[r * n + i] = sum;
    }
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
    for (int64_t r = 0; r < d.reads; ++r) {
      T* out = words + r * d.width;
      std::fill(out, out + d.width, T(0));
      for (int64_t i = 0; i < d.slots; ++i) {
        const T weight = rw[r * d.slots + i];
        const T* row = x.memory + i * d.width;
        for (int64_t c = 0; c < d.width; ++c) out[c] += weight * row[c];
      }
    }
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
    thread_local std::vector<T> f, bw, rw, total;
    f.resize(directional);
    bw.resize(directional);
    rw.resize(d.reads * n);
    total.resize(d.reads * n);
    const auto x = ExampleOf(all, d, b);
    ReadWeights(x, d, f.data(), bw.data(), rw.data());
    const T* g_rw = g_read_weights.typed_data() + b * d.reads * n;
    const T* g_words = g_read_words.typed_data() + b * d.reads * d.width;
    T* g_mem = g_memory->typed_data() + b * n * d.width;
    T* g_c = g_content->typed_data() + b * d.reads * n;
    T* g_pi = g_read_modes->typed_data() + b * d.reads * modes;
    T* g_val = g_values->typed_data() + b * link_size;
    T* g_prev = g_prev_read_weights->typed_data() + b * d.reads * n;
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
    // Through the mixing: modes, content, and f and b (reusing f and bw
    // for their cotangents once each mode's sum is taken).
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
        T* fr = f.data() + (r * hs + h) * n;
        T* br = bw.data() + (r * hs + h) * n;
        T g_backward_mode = 0, g_forward_mode = 0;
        for (int64_t i = 0; i < n; ++i) {
          g_backward_mode += gt[i] * br[i];
          g_forward_mode += gt[i] * fr[i];
          br[i] = pi[h] * gt[i];
          fr[i] = pi[hs + 1 + h] * gt[i];
        }
        g_pi[r * modes + h] = g_backward_mode;
        g_pi[r * modes + hs + 1 + h] = g_forward_mode;
      }
    }
    // Through the link reads (f and bw now hold their cotangents).
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
            g += f[row + i] * wr[j] + bw[row + j] * wr[i];
            gwr[j] += f[row + i] * v;
            gwr[i] += bw[row + j] * v;
          }
          g_val[at] = g;
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
    value.resize(k);
    TopKOrder(x, n, k, index.data(), scratch);
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
    hats.w_top.Backward(g_w_top.data(), g_w);
    hats.p_top.Backward(g_p_top.data(), g_p);
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
