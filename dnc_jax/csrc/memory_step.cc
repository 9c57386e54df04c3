// The DNC memory step (DESIGN 2.3) and its vector-Jacobian product, fused
// into two XLA FFI custom calls for the CPU.
//
// Under XLA:CPU one memory step is ~100 small operations per step, each
// streaming its operands through memory; here each example's step runs
// start to finish on one core with its working set in cache, and the
// examples of a batch run in parallel on XLA's intra-op thread pool. The
// maths is exactly that of dnc_jax/addressing.py; tests compare values and
// gradients with it.
//
// Shapes (per example; every leading axis of `memory` is a batch axis):
//   interface: read_keys [R,W], read_strengths [R], write_keys [H,W],
//     write_strengths [H], erase [H,W], write_vectors [H,W], free_gates [R],
//     allocation_gates [H], write_gates [H], read_modes [R,1+2H]
//     (backward x H, content, forward x H).
//   state: memory [N,W], read_weights [R,N], write_weights [H,N],
//     link [H,N,N], precedence [H,N], usage [N].
// Without temporal links, read_modes, link and precedence have no elements
// and the read weighting is the content weighting.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <utility>
#include <vector>

#include "common.h"
#include "parallel.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace dnc {
namespace {

constexpr double kNormEpsilon = 1e-6;        // addressing.NORM_EPSILON
constexpr double kAllocationEpsilon = 1e-6;  // addressing.ALLOCATION_EPSILON

struct Dims {
  int64_t batch, slots, word, reads, writes;
  bool links;
  int64_t modes() const { return 1 + 2 * writes; }
};

// Pointers to arrays, `P` being `const T*` or `T*` (`T` float or double):
// the whole batch's as the kernel receives them, or one example's.
template <typename P>
struct InterfaceOf {
  P read_keys, read_strengths, write_keys, write_strengths, erase,
      write_vectors, free_gates, allocation_gates, write_gates, read_modes;
};

template <typename P>
struct StateOf {
  P memory, read_weights, write_weights, link, precedence, usage;
};

template <typename T>
using Interface = InterfaceOf<const T*>;
template <typename T>
using MutableInterface = InterfaceOf<T*>;
template <typename T>
using State = StateOf<const T*>;
template <typename T>
using MutableState = StateOf<T*>;

// Example `b`'s arrays within the batch's (shapes as in the header comment;
// without links the link arrays have no elements).
template <typename P>
InterfaceOf<P> ExampleOf(const InterfaceOf<P>& batch, const Dims& d,
                         int64_t b) {
  const int64_t R = d.reads, H = d.writes, W = d.word,
                M = d.links ? d.modes() : 0;
  return {batch.read_keys + b * R * W,  batch.read_strengths + b * R,
          batch.write_keys + b * H * W, batch.write_strengths + b * H,
          batch.erase + b * H * W,      batch.write_vectors + b * H * W,
          batch.free_gates + b * R,     batch.allocation_gates + b * H,
          batch.write_gates + b * H,    batch.read_modes + b * R * M};
}

template <typename P>
StateOf<P> ExampleOf(const StateOf<P>& batch, const Dims& d, int64_t b) {
  const int64_t N = d.slots, R = d.reads, H = d.writes, W = d.word,
                L = d.links ? N : 0;
  return {batch.memory + b * N * W,        batch.read_weights + b * R * N,
          batch.write_weights + b * H * N, batch.link + b * H * L * L,
          batch.precedence + b * H * L,    batch.usage + b * N};
}

// ---------------------------------------------------------------------------
// Content addressing: weights[k, n] = softmax_n(beta_k * cos(key_k, M[n])).

template <typename T>
void RowNorms(const T* memory, const Dims& d, T* norms) {
  for (int64_t n = 0; n < d.slots; ++n) {
    const T* row = memory + n * d.word;
    norms[n] = std::sqrt(Dot(row, row, d.word) + T(kNormEpsilon));
  }
}

// Fills similarity[n] (the cosine) and weights[n] for one key.
template <typename T>
void ContentWeights(const T* memory, const T* row_norms, const T* key,
                    T strength, const Dims& d, T* similarity, T* weights) {
  const T key_norm = std::sqrt(Dot(key, key, d.word) + T(kNormEpsilon));
  T max_score = -INFINITY;
  for (int64_t n = 0; n < d.slots; ++n) {
    const T dot = Dot(key, memory + n * d.word, d.word);
    similarity[n] = dot / (key_norm * row_norms[n] + T(kNormEpsilon));
    max_score = std::max(max_score, strength * similarity[n]);
  }
  T total = 0;
  for (int64_t n = 0; n < d.slots; ++n) {
    weights[n] = std::exp(strength * similarity[n] - max_score);
    total += weights[n];
  }
  for (int64_t n = 0; n < d.slots; ++n) weights[n] /= total;
}

// Backward of ContentWeights given g_weights; adds into g_memory, g_key,
// g_row_norms and returns d loss / d strength.
template <typename T>
T ContentWeightsBackward(const T* memory, const T* row_norms, const T* key,
                         T strength, const T* similarity, const T* weights,
                         const T* g_weights, const Dims& d, T* g_memory,
                         T* g_key, T* g_row_norms) {
  const T key_norm = std::sqrt(Dot(key, key, d.word) + T(kNormEpsilon));
  T weighted = 0;
  for (int64_t n = 0; n < d.slots; ++n) weighted += g_weights[n] * weights[n];
  T g_strength = 0, g_key_norm = 0;
  for (int64_t n = 0; n < d.slots; ++n) {
    const T g_score = weights[n] * (g_weights[n] - weighted);
    g_strength += g_score * similarity[n];
    const T g_similarity = strength * g_score;
    const T denominator = key_norm * row_norms[n] + T(kNormEpsilon);
    const T g_dot = g_similarity / denominator;
    // similarity = dot / denominator; d/d(denominator) = -similarity / den.
    const T g_denominator = -g_similarity * similarity[n] / denominator;
    g_key_norm += g_denominator * row_norms[n];
    g_row_norms[n] += g_denominator * key_norm;
    const T* row = memory + n * d.word;
    T* g_row = g_memory + n * d.word;
#pragma omp simd
    for (int64_t c = 0; c < d.word; ++c) {
      g_key[c] += g_dot * row[c];
      g_row[c] += g_dot * key[c];
    }
  }
  for (int64_t c = 0; c < d.word; ++c)
    g_key[c] += g_key_norm * key[c] / key_norm;
  return g_strength;
}

template <typename T>
void RowNormsBackward(const T* memory, const T* row_norms,
                      const T* g_row_norms, const Dims& d, T* g_memory) {
  for (int64_t n = 0; n < d.slots; ++n) {
    const T scale = g_row_norms[n] / row_norms[n];
    const T* row = memory + n * d.word;
    T* g_row = g_memory + n * d.word;
#pragma omp simd
    for (int64_t c = 0; c < d.word; ++c) g_row[c] += scale * row[c];
  }
}

// ---------------------------------------------------------------------------
// Allocation: a[phi_j] = (1 - u[phi_j]) prod_{i<j} u[phi_i], phi sorting the
// clipped usage ascending (stable: ties go to the lower index).

template <typename T>
struct Allocation {
  std::vector<int64_t> order;  // [N] slot of each rank
  std::vector<T> sorted;       // [N] clipped usage, sorted
  std::vector<T> before;       // [N] prod of the sorted usages before rank j
};

template <typename T>
void AllocationWeights(const T* usage, const Dims& d, Allocation<T>& alloc,
                       T* weights) {
  const int64_t n_slots = d.slots;
  alloc.order.resize(n_slots);
  alloc.sorted.resize(n_slots);
  alloc.before.resize(n_slots);
  std::vector<T> clipped(n_slots);
  for (int64_t n = 0; n < n_slots; ++n)
    clipped[n] = T(kAllocationEpsilon) + (T(1) - T(kAllocationEpsilon)) *
                                             usage[n];
  // Ranked by SortKey, as sorting.argsort / jnp.argsort rank it (NaNs
  // last, -0.0 equal to +0.0); the stable sort keeps ties in index order.
  thread_local std::vector<KeyOf<T>> keys;
  keys.resize(n_slots);
  for (int64_t n = 0; n < n_slots; ++n) keys[n] = SortKey(clipped[n]);
  std::iota(alloc.order.begin(), alloc.order.end(), 0);
  std::stable_sort(alloc.order.begin(), alloc.order.end(),
                   [&](int64_t a, int64_t b) { return keys[a] < keys[b]; });
  T product = 1;
  for (int64_t j = 0; j < n_slots; ++j) {
    const int64_t slot = alloc.order[j];
    alloc.sorted[j] = clipped[slot];
    alloc.before[j] = product;
    weights[slot] = (T(1) - clipped[slot]) * product;
    product *= clipped[slot];
  }
}

// Adds d loss / d usage for the given g_weights (the sort is a constant).
template <typename T>
void AllocationBackward(const Allocation<T>& alloc, const T* g_weights,
                        const Dims& d, T* g_usage) {
  const int64_t n_slots = d.slots;
  std::vector<T> g_sorted(n_slots), g_before(n_slots);
  for (int64_t j = 0; j < n_slots; ++j) {
    const T g = g_weights[alloc.order[j]];
    g_sorted[j] = -g * alloc.before[j];
    g_before[j] = g * (T(1) - alloc.sorted[j]);
  }
  // before[j] = before[j-1] * sorted[j-1]: the adjoint runs backwards and
  // never divides, so a zero usage is as safe as any other.
  for (int64_t j = n_slots - 1; j >= 1; --j) {
    g_before[j - 1] += g_before[j] * alloc.sorted[j - 1];
    g_sorted[j - 1] += g_before[j] * alloc.before[j - 1];
  }
  for (int64_t j = 0; j < n_slots; ++j)
    g_usage[alloc.order[j]] += (T(1) - T(kAllocationEpsilon)) * g_sorted[j];
}

// ---------------------------------------------------------------------------
// Everything the forward pass computes for one example; the backward pass
// recomputes it from the inputs rather than storing it.

template <typename T>
struct Forward {
  std::vector<T> retained_usage;  // [N] (u + w - u w) before retention
  std::vector<T> retention;       // [N] psi
  std::vector<T> usage;           // [N] u_t
  std::vector<T> prev_norms;      // [N] row norms of M_{t-1}
  std::vector<T> write_similarity, write_content;  // [H,N]
  std::vector<Allocation<T>> allocation;           // [H]
  std::vector<T> head_usage;      // [H,N] usage each head allocated from
  std::vector<T> allocation_weights;  // [H,N]
  std::vector<T> write_weights;   // [H,N]
  std::vector<T> memory;          // [N,W] M_t
  std::vector<T> norms;           // [N] row norms of M_t
  std::vector<T> read_similarity, read_content;  // [R,N]
  std::vector<T> forward, backward;  // [R,H,N] directional weightings
  std::vector<T> read_weights;    // [R,N]
};

// Steps 1-6 and 10 of DESIGN 2.3: everything but the links and the reads.
template <typename T>
void ForwardMemory(const Interface<T>& in, const State<T>& prev,
                   const Dims& d, Forward<T>& f) {
  const int64_t N = d.slots, W = d.word, R = d.reads, H = d.writes;
  f.retained_usage.assign(N, 0);
  f.retention.assign(N, 1);
  f.usage.assign(N, 0);
  for (int64_t n = 0; n < N; ++n) {
    T kept = 1;
    for (int64_t h = 0; h < H; ++h) kept *= T(1) - prev.write_weights[h * N + n];
    const T written = T(1) - kept;
    f.retained_usage[n] =
        prev.usage[n] + written - prev.usage[n] * written;
  }
  for (int64_t r = 0; r < R; ++r)
    for (int64_t n = 0; n < N; ++n)
      f.retention[n] *= T(1) - in.free_gates[r] * prev.read_weights[r * N + n];
  for (int64_t n = 0; n < N; ++n)
    f.usage[n] = f.retained_usage[n] * f.retention[n];

  f.prev_norms.resize(N);
  RowNorms(prev.memory, d, f.prev_norms.data());
  f.write_similarity.resize(H * N);
  f.write_content.resize(H * N);
  for (int64_t h = 0; h < H; ++h)
    ContentWeights(prev.memory, f.prev_norms.data(), in.write_keys + h * W,
                   in.write_strengths[h], d, &f.write_similarity[h * N],
                   &f.write_content[h * N]);

  f.allocation.resize(H);
  f.head_usage.resize(H * N);
  f.allocation_weights.resize(H * N);
  std::copy(f.usage.begin(), f.usage.end(), f.head_usage.begin());
  for (int64_t h = 0; h < H; ++h) {
    T* u = &f.head_usage[h * N];
    T* a = &f.allocation_weights[h * N];
    AllocationWeights(u, d, f.allocation[h], a);
    if (h + 1 < H) {
      const T gate = in.allocation_gates[h] * in.write_gates[h];
      T* next = &f.head_usage[(h + 1) * N];
      for (int64_t n = 0; n < N; ++n)
        next[n] = u[n] + (T(1) - u[n]) * gate * a[n];
    }
  }

  f.write_weights.resize(H * N);
  for (int64_t h = 0; h < H; ++h) {
    const T ag = in.allocation_gates[h], wg = in.write_gates[h];
    for (int64_t n = 0; n < N; ++n)
      f.write_weights[h * N + n] =
          wg * (ag * f.allocation_weights[h * N + n] +
                (T(1) - ag) * f.write_content[h * N + n]);
  }

  f.memory.resize(N * W);
  for (int64_t n = 0; n < N; ++n) {
    const T* row0 = prev.memory + n * W;
    T* row = &f.memory[n * W];
    std::copy(row0, row0 + W, row);
    for (int64_t h = 0; h < H; ++h) {  // erase, head by head
      const T w = f.write_weights[h * N + n];
      const T* e = in.erase + h * W;
#pragma omp simd
      for (int64_t c = 0; c < W; ++c) row[c] *= T(1) - w * e[c];
    }
    for (int64_t h = 0; h < H; ++h) {  // then add
      const T w = f.write_weights[h * N + n];
      const T* v = in.write_vectors + h * W;
#pragma omp simd
      for (int64_t c = 0; c < W; ++c) row[c] += w * v[c];
    }
  }

  f.norms.resize(N);
  RowNorms(f.memory.data(), d, f.norms.data());
  f.read_similarity.resize(R * N);
  f.read_content.resize(R * N);
  for (int64_t r = 0; r < R; ++r)
    ContentWeights(f.memory.data(), f.norms.data(), in.read_keys + r * W,
                   in.read_strengths[r], d, &f.read_similarity[r * N],
                   &f.read_content[r * N]);
}

// New link row i of one head: L[i, j] = (1 - w_i - w_j) L0[i, j] + w_i p0[j].
template <typename T>
inline T LinkEntry(T prev, T w_i, T w_j, T p_j) {
  return (T(1) - w_i - w_j) * prev + w_i * p_j;
}

// Rows i0 .. i0 + 3 of one head's new link (written to `link_out` unless
// null) and their part of the directional weightings: forward[r, i] =
// sum_j L[i, j] read[r, j], backward[r, j] += L[i, j] read[r, i]. The
// four rows share each load and store of `backward`. `scratch`: 4 N values.
template <typename T>
void LinkForwardBlock4(int64_t i0, int64_t N, int64_t R, int64_t H,
                       int64_t h, const T* w, const T* p, const T* L0,
                       const T* reads, T* forward, T* backward, T* link_out,
                       T* scratch) {
  T* e0 = link_out ? link_out + i0 * N : scratch;
  T* e1 = e0 + N;
  T* e2 = e1 + N;
  T* e3 = e2 + N;
  const T w0 = w[i0], w1 = w[i0 + 1], w2 = w[i0 + 2], w3 = w[i0 + 3];
  const T* r0 = L0 + i0 * N;
#pragma omp simd
  for (int64_t j = 0; j < N; ++j) {
    const T wj = w[j], pj = p[j];
    e0[j] = LinkEntry(r0[j], w0, wj, pj);
    e1[j] = LinkEntry(r0[N + j], w1, wj, pj);
    e2[j] = LinkEntry(r0[2 * N + j], w2, wj, pj);
    e3[j] = LinkEntry(r0[3 * N + j], w3, wj, pj);
  }
  e0[i0] = 0;
  e1[i0 + 1] = 0;
  e2[i0 + 2] = 0;
  e3[i0 + 3] = 0;
  for (int64_t r = 0; r < R; ++r) {
    const T* read = reads + r * N;
    T* back = backward + (r * H + h) * N;
    const T q0 = read[i0], q1 = read[i0 + 1], q2 = read[i0 + 2],
            q3 = read[i0 + 3];
    T a0 = 0, a1 = 0, a2 = 0, a3 = 0;
#pragma omp simd reduction(+ : a0, a1, a2, a3)
    for (int64_t j = 0; j < N; ++j) {
      const T rd = read[j];
      const T x0 = e0[j], x1 = e1[j], x2 = e2[j], x3 = e3[j];
      a0 += x0 * rd;
      a1 += x1 * rd;
      a2 += x2 * rd;
      a3 += x3 * rd;
      back[j] += x0 * q0 + x1 * q1 + x2 * q2 + x3 * q3;
    }
    T* fwd = forward + (r * H + h) * N + i0;
    fwd[0] = a0;
    fwd[1] = a1;
    fwd[2] = a2;
    fwd[3] = a3;
  }
}

// Steps 7-9 and 11: link, precedence, directional and read weightings.
// Writes the new link and precedence when `link_out` is given.
template <typename T>
void ForwardLinks(const Interface<T>& in, const State<T>& prev, const Dims& d,
                  Forward<T>& f, T* link_out, T* precedence_out) {
  const int64_t N = d.slots, R = d.reads, H = d.writes, M = d.modes();
  f.read_weights.resize(R * N);
  if (!d.links) {
    f.read_weights = f.read_content;
    return;
  }
  f.forward.assign(R * H * N, 0);
  f.backward.assign(R * H * N, 0);
  std::vector<T> row(N);  // one row of the new link
  std::vector<T> rows4(4 * N);  // four, for the blocks
  for (int64_t h = 0; h < H; ++h) {
    const T* w = &f.write_weights[h * N];
    const T* p = prev.precedence + h * N;
    const T* L0 = prev.link + h * N * N;
    // Blocks of four rows (as LinkBackwardBlock4), then the rest one by one.
    int64_t i = 0;
    for (; i + 4 <= N; i += 4)
      LinkForwardBlock4(i, N, R, H, h, w, p, L0, prev.read_weights,
                        f.forward.data(), f.backward.data(),
                        link_out ? link_out + h * N * N : nullptr,
                        rows4.data());
    for (; i < N; ++i) {
      const T w_i = w[i];
      const T* row0 = L0 + i * N;
#pragma omp simd
      for (int64_t j = 0; j < N; ++j) row[j] = LinkEntry(row0[j], w_i, w[j], p[j]);
      row[i] = 0;
      if (link_out) std::copy(row.begin(), row.end(), link_out + h * N * N + i * N);
      for (int64_t r = 0; r < R; ++r) {
        const T* read = prev.read_weights + r * N;
        const T read_i = read[i];
        T* back = &f.backward[(r * H + h) * N];
        T acc = 0;
#pragma omp simd reduction(+ : acc)
        for (int64_t j = 0; j < N; ++j) {
          acc += row[j] * read[j];
          back[j] += row[j] * read_i;
        }
        f.forward[(r * H + h) * N + i] = acc;
      }
    }
    if (precedence_out) {
      T written = 0;
      for (int64_t n = 0; n < N; ++n) written += w[n];
      for (int64_t n = 0; n < N; ++n)
        precedence_out[h * N + n] = (T(1) - written) * p[n] + w[n];
    }
  }
  for (int64_t r = 0; r < R; ++r) {
    const T* modes = in.read_modes + r * M;
    for (int64_t n = 0; n < N; ++n) {
      T value = modes[H] * f.read_content[r * N + n];
      for (int64_t h = 0; h < H; ++h)
        value += modes[h] * f.backward[(r * H + h) * N + n] +
                 modes[H + 1 + h] * f.forward[(r * H + h) * N + n];
      f.read_weights[r * N + n] = value;
    }
  }
}

// The link pass of the VJP (BackwardExample) for rows i0 .. i0 + 3 of one
// head: recomputes the new link's rows, accumulates the directional
// weightings forward[r, i] = sum_j L[i, j] read[r, j] and backward[r, j] +=
// L[i, j] read[r, i], and pushes the cotangents through: G[i, j] = gL[i, j]
// + sum_r (g_fwd[r, i] read[r, j] + read[r, i] g_bwd[r, j]) (zero on the
// diagonal), then into the previous link (gL0 = (1 - w_i - w_j) G), the
// write weights and the precedence. `scratch` holds 8 N values. `gL0` may
// be `gL` (each row is read before it is written).
template <typename T>
void LinkBackwardBlock4(int64_t i0, int64_t N, int64_t R, int64_t H,
                        int64_t h, const T* w, const T* p, const T* L0,
                        const T* gL, T* gL0, T* gp0, T* gw, const T* reads,
                        const T* g_fwd, const T* g_bwd, T* forward,
                        T* backward, T* g_reads_prev, T* scratch) {
  T* e0 = scratch;
  T* e1 = e0 + N;
  T* e2 = e1 + N;
  T* e3 = e2 + N;
  T* G0 = e3 + N;
  T* G1 = G0 + N;
  T* G2 = G1 + N;
  T* G3 = G2 + N;
  const T w0 = w[i0], w1 = w[i0 + 1], w2 = w[i0 + 2], w3 = w[i0 + 3];
  const T* r0 = L0 + i0 * N;
  const T* r1 = r0 + N;
  const T* r2 = r1 + N;
  const T* r3 = r2 + N;
  const T* g0 = gL + i0 * N;
#pragma omp simd
  for (int64_t j = 0; j < N; ++j) {
    e0[j] = LinkEntry(r0[j], w0, w[j], p[j]);
    e1[j] = LinkEntry(r1[j], w1, w[j], p[j]);
    e2[j] = LinkEntry(r2[j], w2, w[j], p[j]);
    e3[j] = LinkEntry(r3[j], w3, w[j], p[j]);
    G0[j] = g0[j];
    G1[j] = g0[N + j];
    G2[j] = g0[2 * N + j];
    G3[j] = g0[3 * N + j];
  }
  e0[i0] = 0;
  e1[i0 + 1] = 0;
  e2[i0 + 2] = 0;
  e3[i0 + 3] = 0;
  for (int64_t r = 0; r < R; ++r) {
    const T* read = reads + r * N;
    const T* gb = g_bwd + r * N;
    T* back = backward + (r * H + h) * N;
    T* g_read_prev = g_reads_prev + r * N;
    const T q0 = read[i0], q1 = read[i0 + 1], q2 = read[i0 + 2],
            q3 = read[i0 + 3];
    const T f0 = g_fwd[r * N + i0], f1 = g_fwd[r * N + i0 + 1],
            f2 = g_fwd[r * N + i0 + 2], f3 = g_fwd[r * N + i0 + 3];
    T a0 = 0, a1 = 0, a2 = 0, a3 = 0, b0 = 0, b1 = 0, b2 = 0, b3 = 0;
#pragma omp simd reduction(+ : a0, a1, a2, a3, b0, b1, b2, b3)
    for (int64_t j = 0; j < N; ++j) {
      const T rd = read[j], gbj = gb[j];
      const T x0 = e0[j], x1 = e1[j], x2 = e2[j], x3 = e3[j];
      a0 += x0 * rd;
      a1 += x1 * rd;
      a2 += x2 * rd;
      a3 += x3 * rd;
      b0 += gbj * x0;
      b1 += gbj * x1;
      b2 += gbj * x2;
      b3 += gbj * x3;
      back[j] += x0 * q0 + x1 * q1 + x2 * q2 + x3 * q3;
      g_read_prev[j] += f0 * x0 + f1 * x1 + f2 * x2 + f3 * x3;
      G0[j] += f0 * rd + q0 * gbj;
      G1[j] += f1 * rd + q1 * gbj;
      G2[j] += f2 * rd + q2 * gbj;
      G3[j] += f3 * rd + q3 * gbj;
    }
    T* fwd = forward + (r * H + h) * N + i0;
    fwd[0] = a0;
    fwd[1] = a1;
    fwd[2] = a2;
    fwd[3] = a3;
    g_read_prev[i0] += b0;
    g_read_prev[i0 + 1] += b1;
    g_read_prev[i0 + 2] += b2;
    g_read_prev[i0 + 3] += b3;
  }
  G0[i0] = 0;  // the diagonal is held at zero: no cotangent
  G1[i0 + 1] = 0;
  G2[i0 + 2] = 0;
  G3[i0 + 3] = 0;
  T* o0 = gL0 + i0 * N;
  T c0 = 0, c1 = 0, c2 = 0, c3 = 0;
#pragma omp simd reduction(+ : c0, c1, c2, c3)
  for (int64_t j = 0; j < N; ++j) {
    const T x0 = G0[j], x1 = G1[j], x2 = G2[j], x3 = G3[j];
    const T l0 = r0[j], l1 = r1[j], l2 = r2[j], l3 = r3[j];
    const T pj = p[j], wj = w[j];
    c0 += x0 * (pj - l0);
    c1 += x1 * (pj - l1);
    c2 += x2 * (pj - l2);
    c3 += x3 * (pj - l3);
    gw[j] -= x0 * l0 + x1 * l1 + x2 * l2 + x3 * l3;
    gp0[j] += x0 * w0 + x1 * w1 + x2 * w2 + x3 * w3;
    o0[j] = (T(1) - w0 - wj) * x0;
    o0[N + j] = (T(1) - w1 - wj) * x1;
    o0[2 * N + j] = (T(1) - w2 - wj) * x2;
    o0[3 * N + j] = (T(1) - w3 - wj) * x3;
  }
  gw[i0] += c0;
  gw[i0 + 1] += c1;
  gw[i0 + 2] += c2;
  gw[i0 + 3] += c3;
}

template <typename T>
void ForwardExample(const Interface<T>& in, const State<T>& prev,
                    const Dims& d, Forward<T>& f, T* read_words,
                    const MutableState<T>& out) {
  const int64_t N = d.slots, W = d.word, R = d.reads, H = d.writes;
  ForwardMemory(in, prev, d, f);
  ForwardLinks(in, prev, d, f, out.link, out.precedence);
  for (int64_t r = 0; r < R; ++r) {
    for (int64_t c = 0; c < W; ++c) read_words[r * W + c] = 0;
    for (int64_t n = 0; n < N; ++n) {
      const T weight = f.read_weights[r * N + n];
      const T* row = &f.memory[n * W];
#pragma omp simd
      for (int64_t c = 0; c < W; ++c) read_words[r * W + c] += weight * row[c];
    }
  }
  std::copy(f.memory.begin(), f.memory.end(), out.memory);
  std::copy(f.read_weights.begin(), f.read_weights.end(), out.read_weights);
  std::copy(f.write_weights.begin(), f.write_weights.end(),
            out.write_weights);
  std::copy(f.usage.begin(), f.usage.end(), out.usage);
  (void)H;
}

// ---------------------------------------------------------------------------
// Backward pass of one example. `g_out` holds the cotangents of the outputs
// (read words, and the next state); `g_in`/`g_prev` receive those of the
// inputs. The previous write weights get none (usage stops their gradient).

template <typename T>
void BackwardExample(const Interface<T>& in, const State<T>& prev,
                     const Dims& d, const T* g_read_words,
                     const State<T>& g_out, Forward<T>& f,
                     const MutableInterface<T>& g_in,
                     const MutableState<T>& g_prev) {
  const int64_t N = d.slots, W = d.word, R = d.reads, H = d.writes,
                M = d.modes();
  ForwardMemory(in, prev, d, f);
  // Directional weightings are recomputed inside the link pass below.

  std::vector<T> g_memory(g_out.memory, g_out.memory + N * W);
  std::vector<T> g_read(g_out.read_weights, g_out.read_weights + R * N);
  std::vector<T> g_write(g_out.write_weights, g_out.write_weights + H * N);
  std::vector<T> g_usage(g_out.usage, g_out.usage + N);

  // Read words = read_weights^T M_t. The read weights are needed first.
  if (d.links) {
    f.read_weights.assign(R * N, 0);  // filled after the link pass
  } else {
    f.read_weights = f.read_content;
  }

  std::fill(g_prev.read_weights, g_prev.read_weights + R * N, T(0));
  std::fill(g_prev.write_weights, g_prev.write_weights + H * N, T(0));

  std::vector<T> g_content(R * N);
  if (d.links) {
    // g_read (cotangent of the new read weights) needs the read words'
    // part, which depends only on M_t: add it now.
    for (int64_t r = 0; r < R; ++r)
      for (int64_t n = 0; n < N; ++n) {
        g_read[r * N + n] += Dot(g_read_words + r * W, &f.memory[n * W], W);
      }
    std::fill(g_in.read_modes, g_in.read_modes + R * M, T(0));
    for (int64_t r = 0; r < R; ++r) {
      const T* modes = in.read_modes + r * M;
      T content_mode = 0;
      for (int64_t n = 0; n < N; ++n) {
        g_content[r * N + n] = modes[H] * g_read[r * N + n];
        content_mode += g_read[r * N + n] * f.read_content[r * N + n];
      }
      g_in.read_modes[r * M + H] = content_mode;
    }
    // Link pass, head by head, one row at a time: recompute the new link
    // row, accumulate the directional weightings (for the read modes'
    // gradient and the read weights) and push every cotangent through.
    f.forward.assign(R * H * N, 0);
    f.backward.assign(R * H * N, 0);
    std::vector<T> g_fwd(R * N), g_bwd(R * N), row(N), rows4(8 * N);
    for (int64_t h = 0; h < H; ++h) {
      const T* w = &f.write_weights[h * N];
      const T* p = prev.precedence + h * N;
      const T* L0 = prev.link + h * N * N;
      const T* gL = g_out.link + h * N * N;
      T* gL0 = g_prev.link + h * N * N;
      T* gp0 = g_prev.precedence + h * N;
      T* gw = &g_write[h * N];
      // Precedence: p_t = (1 - sum w) p0 + w.
      T written = 0, g_dot_p = 0;
      for (int64_t n = 0; n < N; ++n) {
        written += w[n];
        g_dot_p += g_out.precedence[h * N + n] * p[n];
      }
      for (int64_t n = 0; n < N; ++n) {
        gp0[n] = (T(1) - written) * g_out.precedence[h * N + n];
        gw[n] += g_out.precedence[h * N + n] - g_dot_p;
      }
      for (int64_t r = 0; r < R; ++r) {
        const T* modes = in.read_modes + r * M;
        for (int64_t n = 0; n < N; ++n) {
          g_bwd[r * N + n] = modes[h] * g_read[r * N + n];
          g_fwd[r * N + n] = modes[H + 1 + h] * g_read[r * N + n];
        }
      }
      // Rows in blocks of four: the updates of the directional weightings,
      // of the previous read weights' cotangent and of the write weights'
      // and precedence's cotangents are shared by the block's rows, so
      // each of those vectors is loaded and stored once per four rows
      // instead of once per row (the pass is bound by those loads and
      // stores, not by arithmetic). The rows left over (N mod 4) take the
      // one-row loop below; both compute the same sums.
      int64_t i = 0;
      for (; i + 4 <= N; i += 4)
        LinkBackwardBlock4(i, N, R, H, h, w, p, L0, gL, gL0, gp0, gw,
                           prev.read_weights, g_fwd.data(), g_bwd.data(),
                           f.forward.data(), f.backward.data(),
                           g_prev.read_weights, rows4.data());
      for (; i < N; ++i) {
        const T w_i = w[i];
        const T* row0 = L0 + i * N;
        const T* g_row = gL + i * N;
        T* g_row0 = gL0 + i * N;
        // One pass recomputes the new link row and starts G's row from the
        // link's own cotangent; a pass per read head then accumulates
        // G[i, j] += g_fwd[r, i] read[r, j] + read[r, i] g_bwd[r, j] while
        // it pushes the cotangents through the directional weightings.
#pragma omp simd
        for (int64_t j = 0; j < N; ++j) {
          row[j] = LinkEntry(row0[j], w_i, w[j], p[j]);
          g_row0[j] = g_row[j];
        }
        row[i] = 0;
        for (int64_t r = 0; r < R; ++r) {
          const T* read = prev.read_weights + r * N;
          const T read_i = read[i];
          const T gf_i = g_fwd[r * N + i];
          const T* gb = &g_bwd[r * N];
          T* back = &f.backward[(r * H + h) * N];
          T* g_read_prev = g_prev.read_weights + r * N;
          T fwd = 0, g_read_i = 0;
#pragma omp simd reduction(+ : fwd, g_read_i)
          for (int64_t j = 0; j < N; ++j) {
            const T entry = row[j];
            fwd += entry * read[j];
            back[j] += entry * read_i;
            // forward[r, i] = sum_j L[i, j] read[r, j]
            g_read_prev[j] += gf_i * entry;
            // backward[r, j] = sum_i L[i, j] read[r, i]
            g_read_i += gb[j] * entry;
            g_row0[j] += gf_i * read[j] + read_i * gb[j];
          }
          f.forward[(r * H + h) * N + i] = fwd;
          g_read_prev[i] += g_read_i;
        }
        g_row0[i] = 0;  // the diagonal is held at zero: no cotangent
        T g_w_i = 0;
        T* gp = gp0;
#pragma omp simd reduction(+ : g_w_i)
        for (int64_t j = 0; j < N; ++j) {
          const T G = g_row0[j];
          g_w_i += G * (p[j] - row0[j]);
          gw[j] -= G * row0[j];
          gp[j] += G * w_i;
          g_row0[j] = (T(1) - w_i - w[j]) * G;
        }
        gw[i] += g_w_i;
      }
    }
    for (int64_t r = 0; r < R; ++r) {
      const T* modes = in.read_modes + r * M;
      for (int64_t h = 0; h < H; ++h) {
        T g_back = 0, g_fore = 0;
        for (int64_t n = 0; n < N; ++n) {
          g_back += g_read[r * N + n] * f.backward[(r * H + h) * N + n];
          g_fore += g_read[r * N + n] * f.forward[(r * H + h) * N + n];
        }
        g_in.read_modes[r * M + h] = g_back;
        g_in.read_modes[r * M + H + 1 + h] = g_fore;
      }
      for (int64_t n = 0; n < N; ++n) {
        T value = modes[H] * f.read_content[r * N + n];
        for (int64_t h = 0; h < H; ++h)
          value += modes[h] * f.backward[(r * H + h) * N + n] +
                   modes[H + 1 + h] * f.forward[(r * H + h) * N + n];
        f.read_weights[r * N + n] = value;
      }
    }
  } else {
    for (int64_t r = 0; r < R; ++r)
      for (int64_t n = 0; n < N; ++n) {
        g_content[r * N + n] =
            g_read[r * N + n] + Dot(g_read_words + r * W, &f.memory[n * W], W);
      }
  }

  // Read words: M_t's cotangent from read_words = read_weights^T M_t.
  for (int64_t n = 0; n < N; ++n)
    for (int64_t r = 0; r < R; ++r) {
      const T weight = f.read_weights[r * N + n];
      T* g_row = &g_memory[n * W];
#pragma omp simd
      for (int64_t c = 0; c < W; ++c) g_row[c] += weight * g_read_words[r * W + c];
    }

  // Read content weighting on M_t.
  std::vector<T> g_norms(N, 0);
  for (int64_t r = 0; r < R; ++r) {
    T* g_key = g_in.read_keys + r * W;
    std::fill(g_key, g_key + W, T(0));
    g_in.read_strengths[r] = ContentWeightsBackward(
        f.memory.data(), f.norms.data(), in.read_keys + r * W,
        in.read_strengths[r], &f.read_similarity[r * N],
        &f.read_content[r * N], &g_content[r * N], d, g_memory.data(), g_key,
        g_norms.data());
  }
  RowNormsBackward(f.memory.data(), f.norms.data(), g_norms.data(), d,
                   g_memory.data());

  // Erase and write: M_t = M_{t-1} * prod_h (1 - w_h e_h^T) + sum_h w_h v_h^T.
  // Per slot n, with F_h[c] = 1 - w_h[n] e_h[c] and keep = prod_h F_h.
  std::fill(g_in.erase, g_in.erase + H * W, T(0));
  std::fill(g_in.write_vectors, g_in.write_vectors + H * W, T(0));
  std::vector<T> factors(H * W), keep(W), g_keep(W), others(W);
  for (int64_t n = 0; n < N; ++n) {
    const T* g = &g_memory[n * W];
    const T* row0 = prev.memory + n * W;
    std::fill(keep.begin(), keep.end(), T(1));
    for (int64_t h = 0; h < H; ++h) {
      const T w = f.write_weights[h * N + n];
      const T* e = in.erase + h * W;
      T* factor = &factors[h * W];
#pragma omp simd
      for (int64_t c = 0; c < W; ++c) {
        factor[c] = T(1) - w * e[c];
        keep[c] *= factor[c];
      }
    }
    T* g_row0 = g_prev.memory + n * W;
#pragma omp simd
    for (int64_t c = 0; c < W; ++c) {
      g_row0[c] = g[c] * keep[c];
      g_keep[c] = g[c] * row0[c];
    }
    for (int64_t h = 0; h < H; ++h) {
      const T w = f.write_weights[h * N + n];
      const T* e = in.erase + h * W;
      const T* v = in.write_vectors + h * W;
      // The product over the other heads, without dividing by F_h.
      std::fill(others.begin(), others.end(), T(1));
      for (int64_t k = 0; k < H; ++k) {
        if (k == h) continue;
        const T* factor = &factors[k * W];
#pragma omp simd
        for (int64_t c = 0; c < W; ++c) others[c] *= factor[c];
      }
      T* g_v = g_in.write_vectors + h * W;
      T* g_e = g_in.erase + h * W;
      T g_w = 0;
#pragma omp simd reduction(+ : g_w)
      for (int64_t c = 0; c < W; ++c) {
        g_v[c] += w * g[c];
        g_w += g[c] * v[c] - g_keep[c] * e[c] * others[c];
        g_e[c] -= g_keep[c] * w * others[c];
      }
      g_write[h * N + n] += g_w;
    }
  }

  // Write weighting: w = g^w (g^a a + (1 - g^a) c).
  std::vector<T> g_alloc(H * N), g_wcontent(H * N);
  for (int64_t h = 0; h < H; ++h) {
    const T ag = in.allocation_gates[h], wg = in.write_gates[h];
    T g_wg = 0, g_ag = 0;
    for (int64_t n = 0; n < N; ++n) {
      const T g = g_write[h * N + n];
      const T a = f.allocation_weights[h * N + n];
      const T c = f.write_content[h * N + n];
      g_wg += g * (ag * a + (T(1) - ag) * c);
      g_ag += g * wg * (a - c);
      g_alloc[h * N + n] = g * wg * ag;
      g_wcontent[h * N + n] = g * wg * (T(1) - ag);
    }
    g_in.write_gates[h] = g_wg;
    g_in.allocation_gates[h] = g_ag;
  }

  // Allocation, head by head in reverse: u_{h+1} = u_h + (1 - u_h) gate a_h.
  std::vector<T> g_head_usage(N, 0);  // cotangent of the next head's usage
  for (int64_t h = H - 1; h >= 0; --h) {
    const T* u = &f.head_usage[h * N];
    const T* a = &f.allocation_weights[h * N];
    const T gate = in.allocation_gates[h] * in.write_gates[h];
    std::vector<T> g_a(&g_alloc[h * N], &g_alloc[h * N] + N);
    std::vector<T> g_u(N);
    T g_gate = 0;
    for (int64_t n = 0; n < N; ++n) {
      const T g = g_head_usage[n];
      g_u[n] = g * (T(1) - gate * a[n]);
      g_gate += g * (T(1) - u[n]) * a[n];
      g_a[n] += g * (T(1) - u[n]) * gate;
    }
    AllocationBackward(f.allocation[h], g_a.data(), d, g_u.data());
    g_in.allocation_gates[h] += g_gate * in.write_gates[h];
    g_in.write_gates[h] += g_gate * in.allocation_gates[h];
    g_head_usage = g_u;
  }
  for (int64_t n = 0; n < N; ++n) g_usage[n] += g_head_usage[n];

  // Write content weighting on M_{t-1}.
  std::fill(g_norms.begin(), g_norms.end(), T(0));
  for (int64_t h = 0; h < H; ++h) {
    T* g_key = g_in.write_keys + h * W;
    std::fill(g_key, g_key + W, T(0));
    g_in.write_strengths[h] = ContentWeightsBackward(
        prev.memory, f.prev_norms.data(), in.write_keys + h * W,
        in.write_strengths[h], &f.write_similarity[h * N],
        &f.write_content[h * N], &g_wcontent[h * N], d, g_prev.memory, g_key,
        g_norms.data());
  }
  RowNormsBackward(prev.memory, f.prev_norms.data(), g_norms.data(), d,
                   g_prev.memory);

  // Usage: u_t = (u + w - u w) psi, psi = prod_r (1 - f_r read_r).
  std::fill(g_in.free_gates, g_in.free_gates + R, T(0));
  for (int64_t n = 0; n < N; ++n) {
    T kept = 1;
    for (int64_t h = 0; h < H; ++h) kept *= T(1) - prev.write_weights[h * N + n];
    const T written = T(1) - kept;
    g_prev.usage[n] = g_usage[n] * f.retention[n] * (T(1) - written);
    const T g_retention = g_usage[n] * f.retained_usage[n];
    for (int64_t r = 0; r < R; ++r) {
      T others = 1;
      for (int64_t k = 0; k < R; ++k)
        if (k != r) others *= T(1) - in.free_gates[k] * prev.read_weights[k * N + n];
      g_in.free_gates[r] -= g_retention * prev.read_weights[r * N + n] * others;
      g_prev.read_weights[r * N + n] -= g_retention * in.free_gates[r] * others;
    }
  }
}

// ---------------------------------------------------------------------------
// FFI plumbing.

template <ffi::DataType DT>
using In = ffi::Buffer<DT>;
template <ffi::DataType DT>
using Out = ffi::Result<ffi::Buffer<DT>>;

// The expected shapes of the step's arrays, from memory [..., N, W],
// read_keys [..., R, W] and write_keys [..., H, W]; `links` sizes the link
// arrays and read modes (no elements without links).
struct StepShapes {
  Shape read_keys, read_strengths, write_keys, write_strengths, erase,
      write_vectors, free_gates, allocation_gates, write_gates, read_modes;
  Shape memory, read_weights, write_weights, link, precedence, usage;
  Shape read_words;
};

// Reads the dimensions into `d` and checks the 16 inputs (interface and
// previous state) against them.
template <ffi::DataType DT>
ffi::Error CheckInputs(const char* kernel, In<DT> read_keys,
                       In<DT> read_strengths, In<DT> write_keys,
                       In<DT> write_strengths, In<DT> erase,
                       In<DT> write_vectors, In<DT> free_gates,
                       In<DT> allocation_gates, In<DT> write_gates,
                       In<DT> read_modes, In<DT> memory, In<DT> read_weights,
                       In<DT> write_weights, In<DT> link, In<DT> precedence,
                       In<DT> usage, int64_t links, Dims& d,
                       StepShapes& s) {
  Shape batch;
  auto m = memory.dimensions();
  DNC_RETURN_IF_ERROR(LeadingDims(kernel, "memory", m, 2, batch));
  d.batch = Product(batch);
  d.slots = m[m.size() - 2];
  d.word = m[m.size() - 1];
  d.links = links != 0;
  const size_t axes = batch.size();
  auto rk = read_keys.dimensions(), wk = write_keys.dimensions();
  if (rk.size() != axes + 2)
    return Invalid(kernel, "read_keys has shape " + ShapeString(rk) +
                               ", expected " + std::to_string(axes + 2) +
                               " axes [..., R, W] (memory has shape " +
                               ShapeString(m) + ")");
  if (wk.size() != axes + 2)
    return Invalid(kernel, "write_keys has shape " + ShapeString(wk) +
                               ", expected " + std::to_string(axes + 2) +
                               " axes [..., H, W] (memory has shape " +
                               ShapeString(m) + ")");
  d.reads = rk[axes];
  d.writes = wk[axes];
  if (d.slots < 1 || d.word < 1 || d.reads < 1 || d.writes < 1)
    return Invalid(kernel, "N, W, R and H must be at least 1; got N = " +
                               std::to_string(d.slots) + ", W = " +
                               std::to_string(d.word) + ", R = " +
                               std::to_string(d.reads) + ", H = " +
                               std::to_string(d.writes));
  const int64_t N = d.slots, W = d.word, R = d.reads, H = d.writes,
                L = d.links ? N : 0, M = d.links ? d.modes() : 0;
  s.read_keys = ShapeOf(batch, {R, W});
  s.read_strengths = ShapeOf(batch, {R});
  s.write_keys = ShapeOf(batch, {H, W});
  s.write_strengths = ShapeOf(batch, {H});
  s.erase = s.write_vectors = s.write_keys;
  s.free_gates = s.read_strengths;
  s.allocation_gates = s.write_gates = s.write_strengths;
  s.read_modes = ShapeOf(batch, {R, M});
  s.memory = ShapeOf(batch, {N, W});
  s.read_weights = ShapeOf(batch, {R, N});
  s.write_weights = ShapeOf(batch, {H, N});
  s.link = ShapeOf(batch, {H, L, L});
  s.precedence = ShapeOf(batch, {H, L});
  s.usage = ShapeOf(batch, {N});
  s.read_words = ShapeOf(batch, {R, W});
  const std::pair<const char*, std::pair<const In<DT>*, const Shape*>>
      inputs[] = {
          {"read_keys", {&read_keys, &s.read_keys}},
          {"read_strengths", {&read_strengths, &s.read_strengths}},
          {"write_keys", {&write_keys, &s.write_keys}},
          {"write_strengths", {&write_strengths, &s.write_strengths}},
          {"erase", {&erase, &s.erase}},
          {"write_vectors", {&write_vectors, &s.write_vectors}},
          {"free_gates", {&free_gates, &s.free_gates}},
          {"allocation_gates", {&allocation_gates, &s.allocation_gates}},
          {"write_gates", {&write_gates, &s.write_gates}},
          {"read_modes", {&read_modes, &s.read_modes}},
          {"memory", {&memory, &s.memory}},
          {"read_weights", {&read_weights, &s.read_weights}},
          {"write_weights", {&write_weights, &s.write_weights}},
          {"link", {&link, &s.link}},
          {"precedence", {&precedence, &s.precedence}},
          {"usage", {&usage, &s.usage}},
      };
  for (const auto& [name, array] : inputs)
    DNC_RETURN_IF_ERROR(
        ExpectShape(kernel, name, array.first->dimensions(), *array.second));
  return ffi::Error::Success();
}

// The batch's interface and previous state: the first 16 operands of both
// custom calls.
template <ffi::DataType DT>
std::pair<Interface<ffi::NativeType<DT>>, State<ffi::NativeType<DT>>>
StepInputs(In<DT> read_keys, In<DT> read_strengths, In<DT> write_keys,
           In<DT> write_strengths, In<DT> erase, In<DT> write_vectors,
           In<DT> free_gates, In<DT> allocation_gates, In<DT> write_gates,
           In<DT> read_modes, In<DT> memory, In<DT> read_weights,
           In<DT> write_weights, In<DT> link, In<DT> precedence,
           In<DT> usage) {
  return {{read_keys.typed_data(), read_strengths.typed_data(),
           write_keys.typed_data(), write_strengths.typed_data(),
           erase.typed_data(), write_vectors.typed_data(),
           free_gates.typed_data(), allocation_gates.typed_data(),
           write_gates.typed_data(), read_modes.typed_data()},
          {memory.typed_data(), read_weights.typed_data(),
           write_weights.typed_data(), link.typed_data(),
           precedence.typed_data(), usage.typed_data()}};
}

template <ffi::DataType DT>
ffi::Error ForwardImpl(ffi::ThreadPool pool, In<DT> read_keys,
                       In<DT> read_strengths, In<DT> write_keys,
                       In<DT> write_strengths, In<DT> erase,
                       In<DT> write_vectors, In<DT> free_gates,
                       In<DT> allocation_gates, In<DT> write_gates,
                       In<DT> read_modes, In<DT> memory, In<DT> read_weights,
                       In<DT> write_weights, In<DT> link, In<DT> precedence,
                       In<DT> usage, Out<DT> read_words, Out<DT> memory_out,
                       Out<DT> read_weights_out, Out<DT> write_weights_out,
                       Out<DT> link_out, Out<DT> precedence_out,
                       Out<DT> usage_out, int64_t links) {
  using T = ffi::NativeType<DT>;
  constexpr const char* kKernel = "memory step";
  Dims d;
  StepShapes s;
  DNC_RETURN_IF_ERROR(CheckInputs<DT>(
      kKernel, read_keys, read_strengths, write_keys, write_strengths, erase,
      write_vectors, free_gates, allocation_gates, write_gates, read_modes,
      memory, read_weights, write_weights, link, precedence, usage, links, d,
      s));
  const std::pair<const char*, std::pair<Out<DT>*, const Shape*>>
      results[] = {
          {"read_words (result)", {&read_words, &s.read_words}},
          {"memory (result)", {&memory_out, &s.memory}},
          {"read_weights (result)", {&read_weights_out, &s.read_weights}},
          {"write_weights (result)", {&write_weights_out, &s.write_weights}},
          {"link (result)", {&link_out, &s.link}},
          {"precedence (result)", {&precedence_out, &s.precedence}},
          {"usage (result)", {&usage_out, &s.usage}},
      };
  for (const auto& [name, array] : results)
    DNC_RETURN_IF_ERROR(ExpectShape(kKernel, name,
                                    (*array.first)->dimensions(),
                                    *array.second));
  const auto inputs = StepInputs<DT>(
      read_keys, read_strengths, write_keys, write_strengths, erase,
      write_vectors, free_gates, allocation_gates, write_gates, read_modes,
      memory, read_weights, write_weights, link, precedence, usage);
  const Interface<T>& in = inputs.first;
  const State<T>& prev = inputs.second;
  const MutableState<T> out{memory_out->typed_data(),
                            read_weights_out->typed_data(),
                            write_weights_out->typed_data(),
                            link_out->typed_data(),
                            precedence_out->typed_data(),
                            usage_out->typed_data()};
  const int64_t N = d.slots, W = d.word, R = d.reads, H = d.writes;
  ParallelFor(pool, d.batch, N * (W * (R + H) + (d.links ? N * R : 0)),
              [&](int64_t b) {
    thread_local Forward<T> scratch;
    ForwardExample(ExampleOf(in, d, b), ExampleOf(prev, d, b), d, scratch,
                   read_words->typed_data() + b * R * W,
                   ExampleOf(out, d, b));
  });
  return ffi::Error::Success();
}

template <ffi::DataType DT>
ffi::Error BackwardImpl(
    ffi::ThreadPool pool, In<DT> read_keys, In<DT> read_strengths,
    In<DT> write_keys, In<DT> write_strengths, In<DT> erase,
    In<DT> write_vectors, In<DT> free_gates, In<DT> allocation_gates,
    In<DT> write_gates, In<DT> read_modes, In<DT> memory, In<DT> read_weights,
    In<DT> write_weights, In<DT> link, In<DT> precedence, In<DT> usage,
    In<DT> g_read_words, In<DT> g_memory, In<DT> g_read_weights,
    In<DT> g_write_weights, In<DT> g_link, In<DT> g_precedence,
    In<DT> g_usage, Out<DT> g_read_keys, Out<DT> g_read_strengths,
    Out<DT> g_write_keys, Out<DT> g_write_strengths, Out<DT> g_erase,
    Out<DT> g_write_vectors, Out<DT> g_free_gates, Out<DT> g_allocation_gates,
    Out<DT> g_write_gates, Out<DT> g_read_modes, Out<DT> g_memory_prev,
    Out<DT> g_read_weights_prev, Out<DT> g_write_weights_prev,
    Out<DT> g_link_prev, Out<DT> g_precedence_prev, Out<DT> g_usage_prev,
    int64_t links) {
  using T = ffi::NativeType<DT>;
  constexpr const char* kKernel = "memory step VJP";
  Dims d;
  StepShapes s;
  DNC_RETURN_IF_ERROR(CheckInputs<DT>(
      kKernel, read_keys, read_strengths, write_keys, write_strengths, erase,
      write_vectors, free_gates, allocation_gates, write_gates, read_modes,
      memory, read_weights, write_weights, link, precedence, usage, links, d,
      s));
  const std::pair<const char*, std::pair<const In<DT>*, const Shape*>>
      cotangents[] = {
          {"g_read_words", {&g_read_words, &s.read_words}},
          {"g_memory", {&g_memory, &s.memory}},
          {"g_read_weights", {&g_read_weights, &s.read_weights}},
          {"g_write_weights", {&g_write_weights, &s.write_weights}},
          {"g_link", {&g_link, &s.link}},
          {"g_precedence", {&g_precedence, &s.precedence}},
          {"g_usage", {&g_usage, &s.usage}},
      };
  for (const auto& [name, array] : cotangents)
    DNC_RETURN_IF_ERROR(ExpectShape(kKernel, name, array.first->dimensions(),
                                    *array.second));
  const std::pair<const char*, std::pair<Out<DT>*, const Shape*>>
      results[] = {
          {"g_read_keys (result)", {&g_read_keys, &s.read_keys}},
          {"g_read_strengths (result)",
           {&g_read_strengths, &s.read_strengths}},
          {"g_write_keys (result)", {&g_write_keys, &s.write_keys}},
          {"g_write_strengths (result)",
           {&g_write_strengths, &s.write_strengths}},
          {"g_erase (result)", {&g_erase, &s.erase}},
          {"g_write_vectors (result)", {&g_write_vectors, &s.write_vectors}},
          {"g_free_gates (result)", {&g_free_gates, &s.free_gates}},
          {"g_allocation_gates (result)",
           {&g_allocation_gates, &s.allocation_gates}},
          {"g_write_gates (result)", {&g_write_gates, &s.write_gates}},
          {"g_read_modes (result)", {&g_read_modes, &s.read_modes}},
          {"g_memory (result)", {&g_memory_prev, &s.memory}},
          {"g_read_weights (result)",
           {&g_read_weights_prev, &s.read_weights}},
          {"g_write_weights (result)",
           {&g_write_weights_prev, &s.write_weights}},
          {"g_link (result)", {&g_link_prev, &s.link}},
          {"g_precedence (result)", {&g_precedence_prev, &s.precedence}},
          {"g_usage (result)", {&g_usage_prev, &s.usage}},
      };
  for (const auto& [name, array] : results)
    DNC_RETURN_IF_ERROR(ExpectShape(kKernel, name,
                                    (*array.first)->dimensions(),
                                    *array.second));
  const auto inputs = StepInputs<DT>(
      read_keys, read_strengths, write_keys, write_strengths, erase,
      write_vectors, free_gates, allocation_gates, write_gates, read_modes,
      memory, read_weights, write_weights, link, precedence, usage);
  const Interface<T>& in = inputs.first;
  const State<T>& prev = inputs.second;
  const State<T> g_out{g_memory.typed_data(), g_read_weights.typed_data(),
                       g_write_weights.typed_data(), g_link.typed_data(),
                       g_precedence.typed_data(), g_usage.typed_data()};
  const MutableInterface<T> g_in{
      g_read_keys->typed_data(), g_read_strengths->typed_data(),
      g_write_keys->typed_data(), g_write_strengths->typed_data(),
      g_erase->typed_data(), g_write_vectors->typed_data(),
      g_free_gates->typed_data(), g_allocation_gates->typed_data(),
      g_write_gates->typed_data(), g_read_modes->typed_data()};
  const MutableState<T> g_prev{
      g_memory_prev->typed_data(), g_read_weights_prev->typed_data(),
      g_write_weights_prev->typed_data(), g_link_prev->typed_data(),
      g_precedence_prev->typed_data(), g_usage_prev->typed_data()};
  const int64_t N = d.slots, W = d.word, R = d.reads, H = d.writes;
  ParallelFor(pool, d.batch, 2 * N * (W * (R + H) + (d.links ? N * R : 0)),
              [&](int64_t b) {
    thread_local Forward<T> scratch;
    BackwardExample(ExampleOf(in, d, b), ExampleOf(prev, d, b), d,
                    g_read_words.typed_data() + b * R * W,
                    ExampleOf(g_out, d, b), scratch, ExampleOf(g_in, d, b),
                    ExampleOf(g_prev, d, b));
  });
  return ffi::Error::Success();
}

}  // namespace
}  // namespace dnc

#define DNC_FORWARD_BINDING(DT)                                            \
  ffi::Ffi::Bind()                                                         \
      .Ctx<ffi::ThreadPool>()                                              \
      .Arg<ffi::Buffer<DT>>()   /* read_keys */                            \
      .Arg<ffi::Buffer<DT>>()   /* read_strengths */                       \
      .Arg<ffi::Buffer<DT>>()   /* write_keys */                           \
      .Arg<ffi::Buffer<DT>>()   /* write_strengths */                      \
      .Arg<ffi::Buffer<DT>>()   /* erase */                                \
      .Arg<ffi::Buffer<DT>>()   /* write_vectors */                        \
      .Arg<ffi::Buffer<DT>>()   /* free_gates */                           \
      .Arg<ffi::Buffer<DT>>()   /* allocation_gates */                     \
      .Arg<ffi::Buffer<DT>>()   /* write_gates */                          \
      .Arg<ffi::Buffer<DT>>()   /* read_modes */                           \
      .Arg<ffi::Buffer<DT>>()   /* memory */                               \
      .Arg<ffi::Buffer<DT>>()   /* read_weights */                         \
      .Arg<ffi::Buffer<DT>>()   /* write_weights */                        \
      .Arg<ffi::Buffer<DT>>()   /* link */                                 \
      .Arg<ffi::Buffer<DT>>()   /* precedence */                           \
      .Arg<ffi::Buffer<DT>>()   /* usage */                                \
      .Ret<ffi::Buffer<DT>>()   /* read_words */                           \
      .Ret<ffi::Buffer<DT>>()   /* memory */                               \
      .Ret<ffi::Buffer<DT>>()   /* read_weights */                         \
      .Ret<ffi::Buffer<DT>>()   /* write_weights */                        \
      .Ret<ffi::Buffer<DT>>()   /* link */                                 \
      .Ret<ffi::Buffer<DT>>()   /* precedence */                           \
      .Ret<ffi::Buffer<DT>>()   /* usage */                                \
      .Attr<int64_t>("links")

#define DNC_BACKWARD_BINDING(DT)                                           \
  ffi::Ffi::Bind()                                                         \
      .Ctx<ffi::ThreadPool>()                                              \
      .Arg<ffi::Buffer<DT>>().Arg<ffi::Buffer<DT>>().Arg<ffi::Buffer<DT>>() \
      .Arg<ffi::Buffer<DT>>().Arg<ffi::Buffer<DT>>().Arg<ffi::Buffer<DT>>() \
      .Arg<ffi::Buffer<DT>>().Arg<ffi::Buffer<DT>>().Arg<ffi::Buffer<DT>>() \
      .Arg<ffi::Buffer<DT>>() /* interface */                              \
      .Arg<ffi::Buffer<DT>>().Arg<ffi::Buffer<DT>>().Arg<ffi::Buffer<DT>>() \
      .Arg<ffi::Buffer<DT>>().Arg<ffi::Buffer<DT>>().Arg<ffi::Buffer<DT>>() \
      /* state */                                                           \
      .Arg<ffi::Buffer<DT>>().Arg<ffi::Buffer<DT>>().Arg<ffi::Buffer<DT>>() \
      .Arg<ffi::Buffer<DT>>().Arg<ffi::Buffer<DT>>().Arg<ffi::Buffer<DT>>() \
      .Arg<ffi::Buffer<DT>>() /* cotangents of the outputs */              \
      .Ret<ffi::Buffer<DT>>().Ret<ffi::Buffer<DT>>().Ret<ffi::Buffer<DT>>() \
      .Ret<ffi::Buffer<DT>>().Ret<ffi::Buffer<DT>>().Ret<ffi::Buffer<DT>>() \
      .Ret<ffi::Buffer<DT>>().Ret<ffi::Buffer<DT>>().Ret<ffi::Buffer<DT>>() \
      .Ret<ffi::Buffer<DT>>() /* interface cotangents */                   \
      .Ret<ffi::Buffer<DT>>().Ret<ffi::Buffer<DT>>().Ret<ffi::Buffer<DT>>() \
      .Ret<ffi::Buffer<DT>>().Ret<ffi::Buffer<DT>>().Ret<ffi::Buffer<DT>>() \
      /* state cotangents */                                                \
      .Attr<int64_t>("links")

XLA_FFI_DEFINE_HANDLER_SYMBOL(DncMemoryStepForwardF32,
                              dnc::ForwardImpl<ffi::DataType::F32>,
                              DNC_FORWARD_BINDING(ffi::DataType::F32));
XLA_FFI_DEFINE_HANDLER_SYMBOL(DncMemoryStepForwardF64,
                              dnc::ForwardImpl<ffi::DataType::F64>,
                              DNC_FORWARD_BINDING(ffi::DataType::F64));
XLA_FFI_DEFINE_HANDLER_SYMBOL(DncMemoryStepBackwardF32,
                              dnc::BackwardImpl<ffi::DataType::F32>,
                              DNC_BACKWARD_BINDING(ffi::DataType::F32));
XLA_FFI_DEFINE_HANDLER_SYMBOL(DncMemoryStepBackwardF64,
                              dnc::BackwardImpl<ffi::DataType::F64>,
                              DNC_BACKWARD_BINDING(ffi::DataType::F64));
