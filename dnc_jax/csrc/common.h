// What every handler shares: checking the shapes of the buffers it is given
// (so a caller's mistake is an error naming the operand, never a read or
// write past a buffer), and the one order every sort and top-k ranks by.

#ifndef DNC_JAX_CSRC_COMMON_H_
#define DNC_JAX_CSRC_COMMON_H_

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <initializer_list>
#include <string>
#include <type_traits>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace dnc {

namespace ffi = xla::ffi;

// Returns the error of `expr` from the enclosing handler if it failed.
#define DNC_RETURN_IF_ERROR(expr)                        \
  do {                                                   \
    if (auto dnc_error_ = (expr); dnc_error_.failure()) \
      return dnc_error_;                                 \
  } while (0)

using Shape = std::vector<int64_t>;

// sum_c a[c] b[c] over a short vector (a memory word: W = 64 typically).
// GCC ends a `#pragma omp simd reduction` loop with a serial, lane-by-lane
// sum of the partials; here one register's worth of partial sums is added
// pairwise instead (alone, W = 64 float: 9.2 ns against 9.6 ns; more where
// the dot products sit inside the kernels' loops, see docs/kernels.md).
// Four independent registers were slower for W = 64 (12.2 ns). The order
// of the additions differs from a plain loop's (rounding level).
template <typename T>
inline T Dot(const T* a, const T* b, int64_t n) {
  constexpr int kLanes = 64 / sizeof(T);  // one 512-bit register
  T acc[kLanes] = {};
  int64_t c = 0;
  for (; c + kLanes <= n; c += kLanes)
    for (int l = 0; l < kLanes; ++l) acc[l] += a[c + l] * b[c + l];
  for (int l = 0; c < n; ++c, ++l) acc[l] += a[c] * b[c];
  for (int half = kLanes / 2; half > 0; half /= 2)
    for (int l = 0; l < half; ++l) acc[l] += acc[l + half];
  return acc[0];
}

template <typename Dims>
std::string ShapeString(const Dims& dims) {
  std::string text = "[";
  for (size_t i = 0; i < dims.size(); ++i)
    text += (i ? ", " : "") + std::to_string(dims[i]);
  return text + "]";
}

// `batch` followed by `tail`.
inline Shape ShapeOf(const Shape& batch, std::initializer_list<int64_t> tail) {
  Shape shape(batch);
  shape.insert(shape.end(), tail.begin(), tail.end());
  return shape;
}

inline ffi::Error Invalid(const char* kernel, const std::string& message) {
  return ffi::Error::InvalidArgument(std::string(kernel) + ": " + message);
}

// Success if `operand`'s dimensions `got` are exactly `want`.
template <typename Got, typename Want>
ffi::Error ExpectShape(const char* kernel, const char* operand,
                       const Got& got, const Want& want) {
  bool same = got.size() == want.size();
  for (size_t i = 0; same && i < want.size(); ++i) same = got[i] == want[i];
  if (same) return ffi::Error::Success();
  return Invalid(kernel, std::string(operand) + " has shape " +
                             ShapeString(got) + ", expected " +
                             ShapeString(want));
}

// The leading dimensions of `operand` before its last `trailing` ones (the
// batch axes), or an error if it has fewer than `trailing`.
template <typename Dims>
ffi::Error LeadingDims(const char* kernel, const char* operand,
                       const Dims& dims, size_t trailing, Shape& batch) {
  if (dims.size() < trailing)
    return Invalid(kernel, std::string(operand) + " has shape " +
                               ShapeString(dims) + ", expected at least " +
                               std::to_string(trailing) + " axes");
  batch.assign(dims.begin(), dims.end() - trailing);
  return ffi::Error::Success();
}

inline int64_t Product(const Shape& dims) {
  int64_t product = 1;
  for (int64_t d : dims) product *= d;
  return product;
}

// ---------------------------------------------------------------------------
// The ranking order. Every sort and top-k ranks by one of two integer keys,
// equal keys keeping the lower index first (a stable sort, or the index as
// the last comparison), so kernel and XLA results agree at exact ties:
//
// * SortKey, ascending, as jnp.sort / jnp.argsort (lax.sort): -0.0 equals
//   +0.0 and every NaN equals every other, after +inf.
// * TopKKey, descending, as XLA's TopK (jax.lax.top_k) on the CPU: the
//   IEEE total order of the bits, so -0.0 ranks below +0.0 and a NaN by its
//   sign and payload.
//
// Comparing floats with `<` instead would rank -0.0 and +0.0 (and NaNs) as
// equal where XLA does not, and a NaN would break the sort's strict weak
// order (undefined behaviour in the standard sorts).

template <typename T>
using KeyOf = std::conditional_t<sizeof(T) == 4, int32_t, int64_t>;

template <typename T>
inline KeyOf<T> TopKKey(T value) {
  using Signed = KeyOf<T>;
  using Unsigned = std::make_unsigned_t<Signed>;
  Unsigned bits;
  std::memcpy(&bits, &value, sizeof bits);
  // Negative floats order backwards as integers: flip them below zero.
  return static_cast<Signed>(bits) < 0
             ? static_cast<Signed>(
                   static_cast<Unsigned>(std::numeric_limits<Signed>::max()) -
                   bits)
             : static_cast<Signed>(bits);
}

template <typename T>
inline KeyOf<T> SortKey(T value) {
  if (value == T(0)) return 0;  // either zero
  if (std::isnan(value)) return std::numeric_limits<KeyOf<T>>::max();
  return TopKKey(value);
}

}  // namespace dnc

#endif  // DNC_JAX_CSRC_COMMON_H_
