// Random-forest trees grown on the GPU, one thread block per tree (forexgpt_device::cuda_grow).
//
// Each block runs the CPU grower's algorithm (shared/regressors/src/forest/grow.rs) for its
// tree: depth first from an explicit stack, the node's rows a contiguous slice of one index
// array that is partitioned stably, features drawn with the same SplitMix64 stream in the same
// order, the same split rule, the same tie-breaking. Only the order of floating-point sums
// differs (warp reductions, atomics), so on data whose sums are exact (integers) the trees are
// the CPU's trees. The block's threads share the work of each node: its statistics
// (reductions), one feature per warp for the split search (a shared-memory histogram for big
// nodes, a rank sort for small ones), one feature per thread for tiny nodes (most nodes of a
// fully grown tree), and the partition (warp ballots).
//
// Defined in front of this source: K (outputs), D (features), WARPS (warps per block).

#define THREADS (WARPS * 32)
#define HSTRIDE (2 + K)
#define SMALL 64
#define TINY 16
#define FULL 0xffffffffu

typedef unsigned long long u64;

__device__ __forceinline__ int imin(int a, int b) { return a < b ? a : b; }
__device__ __forceinline__ int imax(int a, int b) { return a > b ? a : b; }

__device__ __forceinline__ u64 splitmix(u64* s) {
    *s += 0x9E3779B97F4A7C15ULL;
    u64 z = *s;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

// Sums V values over the block; every thread gets the totals in `out` (shared).
template <int V>
__device__ void block_sum(double* v, double* red, double* out) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    for (int j = 0; j < V; ++j) {
        double x = v[j];
        for (int o = 16; o > 0; o >>= 1) x += __shfl_down_sync(FULL, x, o);
        if (lane == 0) red[warp * V + j] = x;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int j = 0; j < V; ++j) {
            double s = 0.0;
            for (int w = 0; w < WARPS; ++w) s += red[w * V + j];
            out[j] = s;
        }
    }
    __syncthreads();
}

// The best boundary between occupied bins, as the CPU's `scan`: entries in ascending bin order,
// `h[i]` = (rows, weight, K weighted sums); empty entries (rows 0) are skipped; the bin of entry
// i is ob[i], or i when ob is null. Run by one lane.
__device__ void scan_bins(const double* h, const int* ob, int len, int m, const double* total,
                          int min_leaf, int* has, double* proxy, int* bin) {
    double total_w = 0.0;
    for (int i = 0; i < len; ++i) {
        const double* e = h + i * HSTRIDE;
        if (e[0] != 0.0) total_w += e[1];
    }
    double lw = 0.0, ls[K];
    for (int j = 0; j < K; ++j) ls[j] = 0.0;
    int ln = 0, cur = -1, have = 0, bb = 0;
    double best = 0.0;
    for (int i = 0; i < len; ++i) {
        const double* e = h + i * HSTRIDE;
        if (e[0] == 0.0) continue;
        int bi = ob ? ob[i] : i;
        if (cur >= 0 && ln >= min_leaf) {
            if (m - ln < min_leaf) break;
            double rw = total_w - lw, p = 0.0;
            for (int j = 0; j < K; ++j) {
                double l = ls[j], r = total[j] - l;
                p += l * l / lw + r * r / rw;
            }
            if (!have || p > best) {
                have = 1;
                best = p;
                bb = cur + (bi - cur - 1) / 2;
            }
        }
        ln += (int)e[0];
        lw += e[1];
        for (int j = 0; j < K; ++j) ls[j] += e[2 + j];
        cur = bi;
    }
    *has = have;
    *proxy = best;
    *bin = bb;
}

// Is candidate (has_a, pa, va) better than (has_b, pb, vb)? The higher proxy; on a tie the
// feature visited first (the CPU keeps the first strictly greater one).
__device__ __forceinline__ bool better(int has_a, double pa, int va, int has_b, double pb, int vb) {
    if (!has_a) return false;
    if (!has_b) return true;
    return pa > pb || (pa == pb && va < vb);
}

// A tiny node's split on one feature, by one thread: its m ≤ TINY rows (staged in shared
// memory as positions 0..m) sorted by bin, then the CPU's scan over the occupied bins.
__device__ void scan_tiny(const unsigned char* col, const unsigned int* s_idx, const double* s_w,
                          const double* s_y, int m, const double* total, int min_leaf,
                          int* has, double* proxy, int* bin) {
    int b[TINY], o[TINY];
    for (int i = 0; i < m; ++i) {
        int v = col[s_idx[i]], j = i;
        while (j > 0 && b[j - 1] > v) { b[j] = b[j - 1]; o[j] = o[j - 1]; --j; }
        b[j] = v;
        o[j] = i;
    }
    double total_w = 0.0;
    for (int i = 0; i < m;) {
        double gw = 0.0;
        int j = i;
        for (; j < m && b[j] == b[i]; ++j) gw += s_w[o[j]];
        total_w += gw;
        i = j;
    }
    double lw = 0.0, ls[K];
    for (int j = 0; j < K; ++j) ls[j] = 0.0;
    int ln = 0, cur = -1, have = 0, bb = 0;
    double best = 0.0;
    for (int i = 0; i < m;) {
        int bi = b[i];
        if (cur >= 0 && ln >= min_leaf) {
            if (m - ln < min_leaf) break;
            double rw = total_w - lw, p = 0.0;
            for (int j = 0; j < K; ++j) {
                double l = ls[j], r = total[j] - l;
                p += l * l / lw + r * r / rw;
            }
            if (!have || p > best) {
                have = 1;
                best = p;
                bb = cur + (bi - cur - 1) / 2;
            }
        }
        // The group of bin bi, summed in bin order as the CPU's occupied bins are.
        double gw = 0.0, gs[K];
        for (int j = 0; j < K; ++j) gs[j] = 0.0;
        int j = i;
        for (; j < m && b[j] == bi; ++j) {
            int q = o[j];
            double wr = s_w[q];
            gw += wr;
            for (int c = 0; c < K; ++c) gs[c] += wr * s_y[q * K + c];
        }
        ln += j - i;
        lw += gw;
        for (int c = 0; c < K; ++c) ls[c] += gs[c];
        cur = bi;
        i = j;
    }
    *has = have;
    *proxy = best;
    *bin = bb;
}

extern "C" __global__ void __launch_bounds__(THREADS) grow_trees(
    const unsigned char* __restrict__ bins,  // D × n, column-major
    int n,
    const double* __restrict__ y,            // n × K
    const int* __restrict__ n_bins,          // D
    const double* __restrict__ weights,      // trees × n (bootstrap counts)
    unsigned int* rows_all,                  // trees × n: in-bag rows, ascending
    unsigned int* tmp_all,                   // trees × n
    const int* __restrict__ n_rows,          // trees
    const u64* __restrict__ rng_in,          // trees: SplitMix64 state after the bootstrap
    int* stack_all,                          // trees × (n + 1) × 5
    int* scratch_all,                        // trees × 3D: permutation, visit list, constant
    int* feature_all, int* bin_all,          // trees × 2n
    int* left_all, int* right_all,           // trees × 2n
    float* values_all,                       // trees × n × K
    double* importance_all,                  // trees × D
    int* counts_all,                         // trees × 4: nodes, leaves, depth, 0
    int max_depth, int min_split, int min_leaf, int max_features)
{
    extern __shared__ double hist[];          // WARPS × 256 × HSTRIDE
    __shared__ double red[WARPS * HSTRIDE];
    __shared__ double tot[HSTRIDE];           // weight, squares, K sums of the node
    __shared__ int w_has[WARPS], w_bin[WARPS], w_v[WARPS], w_left[WARPS];
    __shared__ double w_proxy[WARPS];
    // A small node's rows, staged: row id, weight and targets per position in the node.
    __shared__ unsigned int s_idx[SMALL];
    __shared__ double s_w[SMALL];
    __shared__ double s_y[SMALL * K];
    __shared__ int s_done, s_start, s_end, s_depth, s_index, s_pf, s_split, s_n_visit;
    __shared__ int s_best_f, s_best_bin, s_best_has, s_best_v, s_left_total, s_check_const;
    __shared__ double s_best_proxy;

    const int t = blockIdx.x, tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const double* weight = weights + (size_t)t * n;
    unsigned int* rows = rows_all + (size_t)t * n;
    unsigned int* tmp = tmp_all + (size_t)t * n;
    int* stack = stack_all + (size_t)t * (n + 1) * 5;
    int* feat = scratch_all + (size_t)t * 3 * D;
    int* visit = feat + D;
    int* is_const = feat + 2 * D;
    int* feature = feature_all + (size_t)t * 2 * n;
    int* bin_of = bin_all + (size_t)t * 2 * n;
    int* left = left_all + (size_t)t * 2 * n;
    int* right = right_all + (size_t)t * 2 * n;
    float* values = values_all + (size_t)t * n * K;
    double* importance = importance_all + (size_t)t * D;

    // Thread 0's state (the CPU grower's locals).
    u64 rng = rng_in[t];
    int top = 0, n_nodes = 0, n_leaves = 0, depth = 0;
    if (tid == 0) {
        stack[0] = 0; stack[1] = n_rows[t]; stack[2] = 0; stack[3] = -1; stack[4] = -1;
        top = 1;
        s_check_const = max_features < D;
    }
    for (int f = tid; f < D; f += THREADS) { feat[f] = f; importance[f] = 0.0; }

    for (;;) {
        __syncthreads();
        if (tid == 0) {
            if (top == 0) {
                s_done = 1;
            } else {
                s_done = 0;
                --top;
                const int* e = stack + top * 5;
                s_start = e[0]; s_end = e[1]; s_depth = e[2]; s_pf = e[4];
                int slot = e[3];
                s_index = n_nodes++;
                if (slot >= 0) {
                    if (slot & 1) left[slot >> 1] = s_index; else right[slot >> 1] = s_index;
                }
                if (s_depth > depth) depth = s_depth;
            }
        }
        __syncthreads();
        if (s_done) break;
        const int start = s_start, end = s_end, m = end - start;
        if (m <= SMALL) {
            for (int i = tid; i < m; i += THREADS) {
                unsigned int r = rows[start + i];
                s_idx[i] = r;
                s_w[i] = weight[r];
                for (int j = 0; j < K; ++j) s_y[i * K + j] = y[(size_t)r * K + j];
            }
            __syncthreads();
        }

        // Node statistics: weight, Σ w·y², Σ w·y per output, and whether y is constant.
        double part[HSTRIDE];
        for (int j = 0; j < HSTRIDE; ++j) part[j] = 0.0;
        int differs = 0;
        const double* yf = y + (size_t)rows[start] * K;
        for (int i = start + tid; i < end; i += THREADS) {
            unsigned int r = rows[i];
            double wr = weight[r];
            const double* yr = y + (size_t)r * K;
            part[0] += wr;
            for (int j = 0; j < K; ++j) {
                part[1] += wr * yr[j] * yr[j];
                part[2 + j] += wr * yr[j];
                differs |= yr[j] != yf[j];
            }
        }
        differs = __syncthreads_or(differs);
        block_sum<HSTRIDE>(part, red, tot);
        double w = tot[0], impurity = 0.0;
        if (differs) {
            double mean_square = 0.0;
            for (int j = 0; j < K; ++j) mean_square += (tot[2 + j] / w) * (tot[2 + j] / w);
            impurity = (tot[1] / w - mean_square) / K;
            if (!(impurity > 0.0)) impurity = 0.0;
        }
        const int splittable = differs && s_depth < max_depth && m >= min_split && m >= 2 * min_leaf;
        if (tid == 0) {
            if (s_pf >= 0) importance[s_pf] -= w * impurity;
            s_best_has = 0;
            s_best_v = 0;
        }
        if (!splittable) {
            if (tid == 0) {
                int leaf = n_leaves++;
                feature[s_index] = -1; bin_of[s_index] = 0;
                left[s_index] = leaf; right[s_index] = leaf;
                for (int j = 0; j < K; ++j) values[(size_t)leaf * K + j] = (float)(tot[2 + j] / w);
            }
            continue;
        }

        // Constant features matter only when fewer than all features are drawn.
        if (s_check_const) {
            for (int f = tid; f < D; f += THREADS) {
                const unsigned char* col = bins + (size_t)f * n;
                int lo = 255, hi = 0;
                for (int i = start; i < end; ++i) {
                    int b = col[rows[i]];
                    lo = imin(lo, b); hi = imax(hi, b);
                }
                is_const[f] = lo == hi;
            }
            __syncthreads();
        }
        if (tid == 0) {
            int visited = 0, nv = 0;
            for (int i = 0; i < D; ++i) {
                if (visited >= max_features) break;
                int j = i + (int)(splitmix(&rng) % (u64)(D - i));
                int f = feat[j]; feat[j] = feat[i]; feat[i] = f;
                if (s_check_const && is_const[f]) continue;
                visit[nv++] = f;
                ++visited;
            }
            s_n_visit = nv;
        }
        __syncthreads();

        // Tiny nodes (most nodes of a fully grown tree): one feature per thread.
        if (m <= TINY) {
            for (int v0 = 0; v0 < s_n_visit; v0 += THREADS) {
                int v = v0 + tid, has = 0, bb = 0;
                double proxy = 0.0;
                if (v < s_n_visit) {
                    const unsigned char* col = bins + (size_t)visit[v] * n;
                    scan_tiny(col, s_idx, s_w, s_y, m, tot + 2, min_leaf, &has, &proxy, &bb);
                }
                for (int o = 16; o > 0; o >>= 1) {
                    int oh = __shfl_down_sync(FULL, has, o);
                    double op = __shfl_down_sync(FULL, proxy, o);
                    int ov = __shfl_down_sync(FULL, v, o);
                    int ob = __shfl_down_sync(FULL, bb, o);
                    if (better(oh, op, ov, has, proxy, v)) { has = oh; proxy = op; v = ov; bb = ob; }
                }
                if (lane == 0) { w_has[warp] = has; w_proxy[warp] = proxy; w_v[warp] = v; w_bin[warp] = bb; }
                __syncthreads();
                if (tid == 0) {
                    for (int k = 0; k < WARPS; ++k) {
                        if (better(w_has[k], w_proxy[k], w_v[k], s_best_has, s_best_proxy, s_best_v)) {
                            s_best_has = 1;
                            s_best_proxy = w_proxy[k];
                            s_best_v = w_v[k];
                            s_best_f = visit[w_v[k]];
                            s_best_bin = w_bin[k];
                        }
                    }
                }
                __syncthreads();
            }
        }

        // Split search, one feature per warp, in visiting order.
        double* h = hist + (size_t)warp * 256 * HSTRIDE;
        for (int v0 = 0; m > TINY && v0 < s_n_visit; v0 += WARPS) {
            int v = v0 + warp;
            if (v < s_n_visit) {
                int f = visit[v];
                const unsigned char* col = bins + (size_t)f * n;
                int has = 0, bb = 0;
                double proxy = 0.0;
                if (m > SMALL) {
                    int nb = n_bins[f];
                    for (int i = lane; i < nb * HSTRIDE; i += 32) h[i] = 0.0;
                    __syncwarp();
                    for (int i = start + lane; i < end; i += 32) {
                        unsigned int r = rows[i];
                        double wr = weight[r];
                        double* e = h + (int)col[r] * HSTRIDE;
                        atomicAdd(e, 1.0);
                        atomicAdd(e + 1, wr);
                        for (int j = 0; j < K; ++j) atomicAdd(e + 2 + j, wr * y[(size_t)r * K + j]);
                    }
                    __syncwarp();
                    if (lane == 0) scan_bins(h, 0, nb, m, tot + 2, min_leaf, &has, &proxy, &bb);
                } else {
                    // Rank sort of (bin, row) by bin, then the occupied bins as a compact list.
                    int* pairs = (int*)(h + 128 * HSTRIDE);
                    int* sorted = pairs + 2 * SMALL;
                    int* ob = sorted + 2 * SMALL;
                    for (int i = lane; i < m; i += 32) {
                        pairs[2 * i] = col[s_idx[i]];
                        pairs[2 * i + 1] = i;
                    }
                    __syncwarp();
                    for (int i = lane; i < m; i += 32) {
                        int b = pairs[2 * i], rank = 0;
                        for (int j = 0; j < m; ++j) {
                            int c = pairs[2 * j];
                            rank += c < b || (c == b && j < i);
                        }
                        sorted[2 * rank] = b;
                        sorted[2 * rank + 1] = pairs[2 * i + 1];
                    }
                    __syncwarp();
                    if (lane == 0) {
                        int len = 0;
                        for (int i = 0; i < m; ++i) {
                            int b = sorted[2 * i];
                            int q = sorted[2 * i + 1];
                            if (len == 0 || ob[len - 1] != b) {
                                double* e = h + len * HSTRIDE;
                                for (int j = 0; j < HSTRIDE; ++j) e[j] = 0.0;
                                ob[len++] = b;
                            }
                            double* e = h + (len - 1) * HSTRIDE;
                            double wr = s_w[q];
                            e[0] += 1.0;
                            e[1] += wr;
                            for (int j = 0; j < K; ++j) e[2 + j] += wr * s_y[q * K + j];
                        }
                        scan_bins(h, ob, len, m, tot + 2, min_leaf, &has, &proxy, &bb);
                    }
                }
                if (lane == 0) { w_has[warp] = has; w_proxy[warp] = proxy; w_bin[warp] = bb; }
            } else if (lane == 0) {
                w_has[warp] = 0;
            }
            __syncthreads();
            if (tid == 0) {
                for (int k = 0; k < WARPS && v0 + k < s_n_visit; ++k) {
                    if (w_has[k] && (!s_best_has || w_proxy[k] > s_best_proxy)) {
                        s_best_has = 1;
                        s_best_proxy = w_proxy[k];
                        s_best_f = visit[v0 + k];
                        s_best_bin = w_bin[k];
                    }
                }
            }
            __syncthreads();
        }
        if (!s_best_has) {
            if (tid == 0) {
                int leaf = n_leaves++;
                feature[s_index] = -1; bin_of[s_index] = 0;
                left[s_index] = leaf; right[s_index] = leaf;
                for (int j = 0; j < K; ++j) values[(size_t)leaf * K + j] = (float)(tot[2 + j] / w);
            }
            continue;
        }

        // Stable partition: rows going left (bin ≤ split) first, both sides in their order.
        // Chunks of THREADS rows; within a chunk, positions from warp ballots.
        const int f = s_best_f, split = s_best_bin;
        const unsigned char* col = bins + (size_t)f * n;
        int lefts = 0;
        for (int c = start; c < end; c += THREADS) {
            int i = c + tid;
            lefts += __syncthreads_count(i < end && col[rows[i]] <= split);
        }
        int base_left = start, base_right = start + lefts;
        for (int c = start; c < end; c += THREADS) {
            int i = c + tid;
            unsigned int r = i < end ? rows[i] : 0;
            int goes_left = i < end && col[r] <= split;
            unsigned int ballot = __ballot_sync(FULL, goes_left);
            int in_warp = __popc(ballot & ((1u << lane) - 1u));
            if (lane == 0) w_left[warp] = __popc(ballot);
            __syncthreads();
            int before = 0, chunk_left = 0;
            for (int k = 0; k < WARPS; ++k) {
                if (k < warp) before += w_left[k];
                chunk_left += w_left[k];
            }
            if (i < end) {
                int left_rank = before + in_warp;
                if (goes_left) tmp[base_left + left_rank] = r;
                else tmp[base_right + (tid - left_rank)] = r;
            }
            int chunk_rows = end - c < THREADS ? end - c : THREADS;
            base_left += chunk_left;
            base_right += chunk_rows - chunk_left;
            __syncthreads();
        }
        for (int i = start + tid; i < end; i += THREADS) rows[i] = tmp[i];
        if (tid == 0) s_left_total = lefts;
        if (tid == 0) {
            int mid = start + s_left_total;
            feature[s_index] = f; bin_of[s_index] = split;
            left[s_index] = 0; right[s_index] = 0;
            importance[f] += w * impurity;
            int* e = stack + top * 5;
            e[0] = mid; e[1] = end; e[2] = s_depth + 1; e[3] = s_index * 2; e[4] = f;
            ++top;
            e = stack + top * 5;
            e[0] = start; e[1] = mid; e[2] = s_depth + 1; e[3] = s_index * 2 + 1; e[4] = f;
            ++top;
        }
    }
    if (tid == 0) {
        int* c = counts_all + (size_t)t * 4;
        c[0] = n_nodes; c[1] = n_leaves; c[2] = depth; c[3] = 0;
    }
}
