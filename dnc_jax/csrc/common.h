// What every handler shares: checking the shapes of the buffers it is given,
// so a caller's mistake is an error naming the operand, never a read or
// write past a buffer.

#ifndef DNC_JAX_CSRC_COMMON_H_
#define DNC_JAX_CSRC_COMMON_H_

#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace dnc {

namespace ffi = xla::ffi;

// Returns the error of `expr` from the enclosing handler if it failed.
#define DNC_RETURN_IF_ERROR(expr)                    \
  do {                                               \
    if (auto dnc_error_ = (expr); dnc_error_.failure()) \
      return dnc_error_;                             \
  } while (0)

using Shape = std::vector<int64_t>;

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

}  // namespace dnc

#endif  // DNC_JAX_CSRC_COMMON_H_
