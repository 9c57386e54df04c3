// Row-wise stable argsort and top-k indices as XLA FFI custom calls for the
// CPU, where XLA's own sort is slow for the long rows of large memories
// (about 50 ms for 16 rows of 16,384 usages, against ~2 ms here).
//
// Both return int32 indices only: values, and their gradients, are gathered
// in JAX, and the order itself is never differentiated.

#include <algorithm>
#include <cstdint>
#include <limits>
#include <numeric>
#include <string>
#include <utility>
#include <vector>

#include "common.h"
#include "parallel.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace dnc {
namespace {

struct Rows {
  int64_t count, length;
};

// The rows of `x` [..., L] (rank at least 1, L indexable by int32).
template <typename Dims>
ffi::Error RowsOf(const char* kernel, const Dims& dims, Rows& rows) {
  Shape batch;
  DNC_RETURN_IF_ERROR(LeadingDims(kernel, "x", dims, 1, batch));
  rows.count = Product(batch);
  rows.length = dims[dims.size() - 1];
  if (rows.length > std::numeric_limits<int32_t>::max())
    return Invalid(kernel, "rows longer than int32 indices can address");
  return ffi::Error::Success();
}

// Stable ascending order of each row; equal values (with -0.0 equal to
// +0.0 and NaNs last, as jnp.argsort) keep the lower index first.
template <ffi::DataType DT>
ffi::Error ArgsortImpl(ffi::ThreadPool pool, ffi::Buffer<DT> x,
                       ffi::ResultBuffer<ffi::S32> order) {
  constexpr const char* kKernel = "argsort";
  Rows rows;
  DNC_RETURN_IF_ERROR(RowsOf(kKernel, x.dimensions(), rows));
  DNC_RETURN_IF_ERROR(ExpectShape(kKernel, "order (result)",
                                  order->dimensions(),
                                  Shape(x.dimensions().begin(),
                                        x.dimensions().end())));
  const auto* data = x.typed_data();
  int32_t* out = order->typed_data();
  using T = ffi::NativeType<DT>;
  ParallelFor(pool, rows.count, rows.length * 16, [&](int64_t r) {
    const T* row = data + r * rows.length;
    // Sorting (key, index) pairs keeps the comparisons in cache; the
    // stable sort on keys alone keeps ties in index order.
    thread_local std::vector<std::pair<KeyOf<T>, int32_t>> pairs;
    pairs.resize(rows.length);
    for (int64_t j = 0; j < rows.length; ++j)
      pairs[j] = {SortKey(row[j]), static_cast<int32_t>(j)};
    std::stable_sort(pairs.begin(), pairs.end(),
                     [](const auto& a, const auto& b) {
                       return a.first < b.first;
                     });
    int32_t* o = out + r * rows.length;
    for (int64_t j = 0; j < rows.length; ++j) o[j] = pairs[j].second;
  });
  return ffi::Error::Success();
}

// The k largest, descending by XLA's TopK order (-0.0 below +0.0); equal
// values keep the lower index first, as jax.lax.top_k.
template <ffi::DataType DT>
ffi::Error TopKImpl(ffi::ThreadPool pool, ffi::Buffer<DT> x,
                    ffi::ResultBuffer<ffi::S32> indices, int64_t k) {
  constexpr const char* kKernel = "top_k";
  Rows rows;
  DNC_RETURN_IF_ERROR(RowsOf(kKernel, x.dimensions(), rows));
  if (k < 1 || k > rows.length)
    return Invalid(kKernel, "k = " + std::to_string(k) +
                                " must be in [1, row length " +
                                std::to_string(rows.length) + "]");
  Shape batch;
  DNC_RETURN_IF_ERROR(LeadingDims(kKernel, "x", x.dimensions(), 1, batch));
  DNC_RETURN_IF_ERROR(ExpectShape(kKernel, "indices (result)",
                                  indices->dimensions(), ShapeOf(batch, {k})));
  const auto* data = x.typed_data();
  int32_t* out = indices->typed_data();
  using T = ffi::NativeType<DT>;
  ParallelFor(pool, rows.count, rows.length * 2, [&](int64_t r) {
    const T* row = data + r * rows.length;
    thread_local std::vector<std::pair<KeyOf<T>, int32_t>> pairs;
    pairs.resize(rows.length);
    for (int64_t j = 0; j < rows.length; ++j)
      pairs[j] = {TopKKey(row[j]), static_cast<int32_t>(j)};
    std::partial_sort(pairs.begin(), pairs.begin() + k, pairs.end(),
                      [](const auto& a, const auto& b) {
                        return a.first > b.first ||
                               (a.first == b.first && a.second < b.second);
                      });
    int32_t* o = out + r * k;
    for (int64_t j = 0; j < k; ++j) o[j] = pairs[j].second;
  });
  return ffi::Error::Success();
}

}  // namespace
}  // namespace dnc

#define DNC_ARGSORT(NAME, DT)                                           \
  XLA_FFI_DEFINE_HANDLER_SYMBOL(NAME, dnc::ArgsortImpl<DT>,             \
                                ffi::Ffi::Bind()                        \
                                    .Ctx<ffi::ThreadPool>()             \
                                    .Arg<ffi::Buffer<DT>>()             \
                                    .Ret<ffi::Buffer<ffi::S32>>());
#define DNC_TOP_K(NAME, DT)                                             \
  XLA_FFI_DEFINE_HANDLER_SYMBOL(NAME, dnc::TopKImpl<DT>,                \
                                ffi::Ffi::Bind()                        \
                                    .Ctx<ffi::ThreadPool>()             \
                                    .Arg<ffi::Buffer<DT>>()             \
                                    .Ret<ffi::Buffer<ffi::S32>>()       \
                                    .Attr<int64_t>("k"));

DNC_ARGSORT(DncArgsortF32, ffi::DataType::F32)
DNC_ARGSORT(DncArgsortF64, ffi::DataType::F64)
DNC_TOP_K(DncTopKF32, ffi::DataType::F32)
DNC_TOP_K(DncTopKF64, ffi::DataType::F64)
