// Random-forest trees grown on the GPU, one thread block per tree (forexgpt_device::cuda_grow).
//
// Each block runs the CPU grower's algorithm (shared/regressors/src/forest/grow.rs) for its
// tree: the node's rows a contiguous slice of one index array that is partitioned stably,
// features drawn from the node's own SplitMix64 stream, the same split rule, the same
// tie-breaking. Only the order of floating-point sums differs (warp reductions, atomics), so on
// data whose sums are exact (integers) the trees are the CPU's trees, whatever order the nodes
// are grown in.
//
// Two phases:
// - Big nodes (more than SMALL rows), one at a time with the whole block: statistics by block
//   reductions, one feature per warp for the split search (a shared-memory histogram), the
//   partition by warp ballots. Children of SMALL rows or fewer go to a list.
// - Then each warp takes the next subtree from the list and grows all of it alone, depth first:
//   one feature per lane for the split search (the node's rows sorted by bin), a two-ballot
//   partition. Most nodes of a fully grown tree are here, grown by 16 warps at once.
//
// Nodes and leaves get their indices in the order they are grown; the host puts them in the
// CPU's depth-first order (root first, left subtree before right).
//
// Defined in front of this source: K (outputs), D (features), WARPS (warps per block), REGION
// (shared bytes per warp, a multiple of 16, at least the histogram's 256 · (2 + K) doubles and
// the small-subtree staging below).

#define THREADS (WARPS * 32)
#define HSTRIDE (2 + K)
#define SMALL 64
#define STACK (SMALL + 1)
#define FULL 0xffffffffu
#define GAMMA 0x9E3779B97F4A7C15ULL
#define LEFT_SIDE 0x5851F42D4C957F2DULL
#define RIGHT_SIDE 0x2545F4914F6CDD1DULL

typedef unsigned long long u64;

// A node waiting to be grown: its rows (a slice of the tree's row array), depth, where its
// index goes (parent · 2 + 1 for a left child, parent · 2 for a right one, −1 for the root),
// the parent's split feature (−1 for the root) and its random stream.
struct Work {
    int start, end, depth, slot, pf, pad;
    u64 seed;
};

__device__ __forceinline__ int imin(int a, int b) { return a < b ? a : b; }
__device__ __forceinline__ int imax(int a, int b) { return a > b ? a : b; }

__device__ __forceinline__ u64 mix(u64 z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

// Draw i (from 0) of the stream SplitMix64::new(seed): its (i + 1)-th next_u64().
__device__ __forceinline__ u64 draw(u64 seed, int i) { return mix(seed + (u64)(i + 1) * GAMMA); }

// grow::child_seed.
__device__ __forceinline__ u64 child_seed(u64 seed, int right) {
    return mix((seed ^ (right ? RIGHT_SIDE : LEFT_SIDE)) + GAMMA);
}

// The CPU's split proxy Σₖ L²/W_L + Σₖ R²/W_R for left sums `ls` of weight `lw`.
__device__ __forceinline__ double proxy(const double* ls, double lw, const double* total,
                                        double total_w) {
    double ll = 0.0, rr = 0.0;
    for (int j = 0; j < K; ++j) {
        double l = ls[j], r = total[j] - l;
        ll += l * l;
        rr += r * r;
    }
    return ll / lw + rr / (total_w - lw);
}

// The CPU's `scan`, one occupied bin at a time in ascending order: the best boundary between
// two occupied bins, its split bin halfway between them. `total_w` is the node's weight (the
// weights are bootstrap counts, so every order of summing them gives it exactly).
struct Scan {
    double lw, ls[K], best;
    int ln, cur, have, bin;
};

__device__ __forceinline__ void scan_begin(Scan& s) {
    s.lw = 0.0;
    for (int j = 0; j < K; ++j) s.ls[j] = 0.0;
    s.best = 0.0;
    s.ln = 0; s.cur = -1; s.have = 0; s.bin = 0;
}

// Weighs the boundary before occupied bin `b` (if both sides keep `min_leaf` rows), then adds
// the bin (`rows` rows, weight `gw`, weighted sums `gs`) to the left side.
__device__ __forceinline__ void scan_add(Scan& s, int b, int rows, double gw, const double* gs,
                                         int m, const double* total, double total_w,
                                         int min_leaf) {
    if (s.cur >= 0 && s.ln >= min_leaf && m - s.ln >= min_leaf) {
        double p = proxy(s.ls, s.lw, total, total_w);
        if (!s.have || p > s.best) {
            s.have = 1;
            s.best = p;
            s.bin = s.cur + (b - s.cur - 1) / 2;
        }
    }
    s.ln += rows;
    s.lw += gw;
    for (int j = 0; j < K; ++j) s.ls[j] += gs[j];
    s.cur = b;
}

// Is candidate (has_a, pa, va) better than (has_b, pb, vb)? The higher proxy; on a tie the
// feature visited first (the CPU keeps the first strictly greater one).
__device__ __forceinline__ bool better(int has_a, double pa, int va, int has_b, double pb, int vb) {
    if (!has_a) return false;
    if (!has_b) return true;
    return pa > pb || (pa == pb && va < vb);
}

// A big node's histogram of one feature (`len` ≤ 256 bins of (rows, weight, K sums)), scanned
// by the whole warp: each lane takes 8 consecutive bins, the left side's sums before them come
// from a prefix sum over the lanes (exact on integer data, as every order of summing is), and
// each lane weighs the boundaries before its occupied bins. The best goes to lane 0; ties go to
// the lowest bin (the CPU keeps the first of equal proxies).
__device__ Scan scan_histogram(const double* h, int len, int m, const double* total,
                               double total_w, int min_leaf, int lane) {
    const int first = lane * 8, last_bin = imin(first + 8, len);
    double v[HSTRIDE];
    for (int j = 0; j < HSTRIDE; ++j) v[j] = 0.0;
    int last = -1;
    for (int i = first; i < last_bin; ++i) {
        const double* e = h + i * HSTRIDE;
        if (e[0] == 0.0) continue;
        for (int j = 0; j < HSTRIDE; ++j) v[j] += e[j];
        last = i;
    }
    // Inclusive prefix over lanes, then each lane takes its left neighbour's.
    for (int o = 1; o < 32; o <<= 1) {
        for (int j = 0; j < HSTRIDE; ++j) {
            double t = __shfl_up_sync(FULL, v[j], o);
            if (lane >= o) v[j] += t;
        }
        int tl = __shfl_up_sync(FULL, last, o);
        if (lane >= o) last = imax(last, tl);
    }
    Scan s;
    scan_begin(s);
    for (int j = 0; j < HSTRIDE; ++j) v[j] = __shfl_up_sync(FULL, v[j], 1);
    last = __shfl_up_sync(FULL, last, 1);
    if (lane > 0) {
        s.ln = (int)v[0];
        s.lw = v[1];
        for (int j = 0; j < K; ++j) s.ls[j] = v[2 + j];
        s.cur = last;
    }
    for (int i = first; i < last_bin; ++i) {
        const double* e = h + i * HSTRIDE;
        if (e[0] == 0.0) continue;
        scan_add(s, i, (int)e[0], e[1], e + 2, m, total, total_w, min_leaf);
    }
    for (int o = 16; o > 0; o >>= 1) {
        int oh = __shfl_down_sync(FULL, s.have, o);
        double op = __shfl_down_sync(FULL, s.best, o);
        int ob = __shfl_down_sync(FULL, s.bin, o);
        if (oh && (!s.have || op > s.best || (op == s.best && ob < s.bin))) {
            s.have = 1; s.best = op; s.bin = ob;
        }
    }
    return s;
}

// A small node's split on one feature, by one lane: its m ≤ SMALL rows (staged as positions
// 0..m with their weights `sw` and targets `sy`) sorted by bin, then the scan of the occupied
// bins, each bin's sums in ascending position.
__device__ Scan scan_sorted(const unsigned char* rbins, int f, const unsigned int* sidx,
                            const double* sw, const double* sy, int m, const double* total,
                            double total_w, int min_leaf) {
    unsigned char b[SMALL], o[SMALL];
    for (int i = 0; i < m; ++i) b[i] = rbins[(size_t)sidx[i] * D + f];
    for (int i = 0; i < m; ++i) o[i] = (unsigned char)i;
    for (int i = 1; i < m; ++i) {
        unsigned char v = b[i], p = o[i];
        int j = i;
        while (j > 0 && b[j - 1] > v) { b[j] = b[j - 1]; o[j] = o[j - 1]; --j; }
        b[j] = v;
        o[j] = p;
    }
    Scan s;
    scan_begin(s);
    for (int i = 0; i < m;) {
        int bi = b[i], j = i;
        double gw = 0.0, gs[K];
        for (int c = 0; c < K; ++c) gs[c] = 0.0;
        for (; j < m && b[j] == bi; ++j) {
            int q = o[j];
            double wr = sw[q];
            gw += wr;
            for (int c = 0; c < K; ++c) gs[c] += wr * sy[q * K + c];
        }
        scan_add(s, bi, j - i, gw, gs, m, total, total_w, min_leaf);
        i = j;
    }
    return s;
}

// The features a node visits, in order (thread or lane 0): `visit` holds on entry each
// position's draw (i + draw % (D − i)), on exit the visited features; `perm` starts as the
// identity. Constant features (when fewer than all are drawn) are skipped without counting, as
// the CPU skips features with fewer than two occupied bins.
__device__ int draw_features(int* perm, int* visit, const unsigned char* is_const,
                             int check_const, int max_features) {
    int visited = 0, nv = 0;
    for (int i = 0; i < D && visited < max_features; ++i) {
        int j = visit[i];
        int f = perm[j]; perm[j] = perm[i]; perm[i] = f;
        if (check_const && is_const[f]) continue;
        visit[nv++] = f;
        ++visited;
    }
    return nv;
}

// Node `index` becomes leaf `leaf`: both children point to its row of values, the means
// `sums / w` (as float, like the CPU's leaves).
__device__ __forceinline__ void write_leaf(int* feature, int* bin_of, int* left, int* right,
                                           float* values, int index, int leaf,
                                           const double* sums, double w) {
    feature[index] = -1; bin_of[index] = 0;
    left[index] = leaf; right[index] = leaf;
    for (int j = 0; j < K; ++j) values[(size_t)leaf * K + j] = (float)(sums[j] / w);
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

// Sums over the warp; lane 0's total, the same on every lane.
__device__ __forceinline__ double warp_sum(double x) {
    for (int o = 16; o > 0; o >>= 1) x += __shfl_down_sync(FULL, x, o);
    return __shfl_sync(FULL, x, 0);
}

extern "C" __global__ void __launch_bounds__(THREADS) grow_trees(
    const unsigned char* __restrict__ bins,  // D × n, column-major
    const unsigned char* __restrict__ rbins, // n × D, row-major
    int n,
    const double* __restrict__ y,            // n × K
    const int* __restrict__ n_bins,          // D
    const double* __restrict__ weights,      // trees × n (bootstrap counts)
    unsigned int* rows_all,                  // trees × n: in-bag rows, ascending
    unsigned int* tmp_all,                   // trees × n
    const int* __restrict__ n_rows,          // trees
    const u64* __restrict__ seeds,           // trees: the root's seed
    Work* work_all,                          // trees × (n + 1)
    int cap,                                 // nodes per tree (leaves: cap / 2 + 1)
    int* nodes_all,                          // 4 × trees × cap: feature, bin, left, right
    float* values_all,                       // trees × (cap / 2 + 1) × K
    double* importance_all,                  // trees × D
    int* counts_all,                         // trees × 4: nodes, leaves, depth, phase 1 kilocycles
    int max_depth, int min_split, int min_leaf, int max_features)
{
    extern __shared__ double smem[];          // WARPS × REGION, then the block's per-feature arrays
    __shared__ double red[WARPS * HSTRIDE];
    __shared__ double tot[HSTRIDE];           // weight, squares, K sums of the node
    __shared__ int w_left[WARPS];
    __shared__ int s_done, s_start, s_end, s_depth, s_index, s_pf, s_nv;
    __shared__ u64 s_seed;
    __shared__ int s_best_f, s_best_bin, s_best_has, s_left_total;
    __shared__ int s_nodes, s_leaves, s_max_depth, s_listed, s_taken;

    const int t = blockIdx.x, tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int leaf_cap = cap / 2 + 1;
    const double* weight = weights + (size_t)t * n;
    unsigned int* rows = rows_all + (size_t)t * n;
    unsigned int* tmp = tmp_all + (size_t)t * n;
    Work* work = work_all + (size_t)t * (n + 1);  // stack from the front, list from the back
    int* feature = nodes_all + ((size_t)0 * gridDim.x + t) * cap;
    int* bin_of = nodes_all + ((size_t)1 * gridDim.x + t) * cap;
    int* left = nodes_all + ((size_t)2 * gridDim.x + t) * cap;
    int* right = nodes_all + ((size_t)3 * gridDim.x + t) * cap;
    float* values = values_all + (size_t)t * leaf_cap * K;
    double* importance = importance_all + (size_t)t * D;
    char* region = (char*)smem + (size_t)warp * REGION;
    // The block's per-feature arrays: each visited feature's best split, the permutation,
    // the visiting order, and which features are constant.
    double* b_proxy = (double*)((char*)smem + (size_t)WARPS * REGION);
    int* b_perm = (int*)(b_proxy + D);
    int* b_visit = b_perm + D;
    int* b_has = b_visit + D;
    int* b_bin = b_has + D;
    unsigned char* b_const = (unsigned char*)(b_bin + D);
    const int check_const = max_features < D;

    int top = 0;  // thread 0's stack height
    const long long began = clock64();
    if (tid == 0) {
        Work root;
        root.start = 0; root.end = n_rows[t]; root.depth = 0; root.slot = -1; root.pf = -1;
        root.pad = 0; root.seed = seeds[t];
        s_nodes = 0; s_leaves = 0; s_max_depth = 0; s_taken = 0;
        if (root.end > SMALL) { work[0] = root; top = 1; s_listed = 0; }
        else { work[n] = root; s_listed = 1; }
    }
    for (int f = tid; f < D; f += THREADS) importance[f] = 0.0;

    // Phase 1: the big nodes, with the whole block.
    for (;;) {
        __syncthreads();
        if (tid == 0) {
            if (top == 0) {
                s_done = 1;
            } else {
                s_done = 0;
                const Work e = work[--top];
                s_start = e.start; s_end = e.end; s_depth = e.depth; s_pf = e.pf;
                s_seed = e.seed;
                s_index = s_nodes++;
                if (e.slot >= 0) {
                    if (e.slot & 1) left[e.slot >> 1] = s_index; else right[e.slot >> 1] = s_index;
                }
                s_max_depth = imax(s_max_depth, e.depth);
            }
        }
        __syncthreads();
        if (s_done) break;
        const int start = s_start, end = s_end, m = end - start;

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
        if (tid == 0 && s_pf >= 0) importance[s_pf] -= w * impurity;
        if (!splittable) {
            if (tid == 0) write_leaf(feature, bin_of, left, right, values, s_index, s_leaves++, tot + 2, w);
            continue;
        }

        // The features to visit: constant ones found by a warp each, the draws in parallel,
        // the permutation by thread 0.
        if (check_const) {
            for (int f = warp; f < D; f += WARPS) {
                const unsigned char* col = bins + (size_t)f * n;
                int lo = 255, hi = 0;
                for (int i = start + lane; i < end; i += 32) {
                    int b = col[rows[i]];
                    lo = imin(lo, b); hi = imax(hi, b);
                }
                for (int o = 16; o > 0; o >>= 1) {
                    lo = imin(lo, __shfl_down_sync(FULL, lo, o));
                    hi = imax(hi, __shfl_down_sync(FULL, hi, o));
                }
                if (lane == 0) b_const[f] = lo == hi;
            }
        }
        for (int i = tid; i < D; i += THREADS) {
            b_perm[i] = i;
            b_visit[i] = i + (int)(draw(s_seed, i) % (u64)(D - i));
        }
        __syncthreads();
        if (tid == 0) s_nv = draw_features(b_perm, b_visit, b_const, check_const, max_features);
        __syncthreads();

        // Split search, one feature per warp (each warp in its own histogram, no block
        // barrier between features), then the best in visiting order.
        double* h = (double*)region;
        for (int v = warp; v < s_nv; v += WARPS) {
            int f = b_visit[v];
            const unsigned char* col = bins + (size_t)f * n;
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
            Scan s = scan_histogram(h, nb, m, tot + 2, w, min_leaf, lane);
            if (lane == 0) { b_has[v] = s.have; b_proxy[v] = s.best; b_bin[v] = s.bin; }
            __syncwarp();
        }
        __syncthreads();
        if (warp == 0) {
            int has = 0, bb = 0, bv = 0;
            double p = 0.0;
            for (int v = lane; v < s_nv; v += 32) {
                if (better(b_has[v], b_proxy[v], v, has, p, bv)) {
                    has = 1; p = b_proxy[v]; bv = v; bb = b_bin[v];
                }
            }
            for (int o = 16; o > 0; o >>= 1) {
                int oh = __shfl_down_sync(FULL, has, o);
                double op = __shfl_down_sync(FULL, p, o);
                int ov = __shfl_down_sync(FULL, bv, o);
                int ob = __shfl_down_sync(FULL, bb, o);
                if (better(oh, op, ov, has, p, bv)) { has = oh; p = op; bv = ov; bb = ob; }
            }
            if (lane == 0) {
                s_best_has = has;
                s_best_f = has ? b_visit[bv] : 0;
                s_best_bin = bb;
            }
        }
        __syncthreads();
        if (!s_best_has) {
            if (tid == 0) write_leaf(feature, bin_of, left, right, values, s_index, s_leaves++, tot + 2, w);
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
            for (int side = 1; side >= 0; --side) {
                Work c;
                c.start = side ? mid : start; c.end = side ? end : mid;
                c.depth = s_depth + 1; c.slot = s_index * 2 + (1 - side); c.pf = f; c.pad = 0;
                c.seed = child_seed(s_seed, side);
                if (c.end - c.start > SMALL) work[top++] = c;
                else work[n - s_listed++] = c;
            }
        }
    }

    // Phase 2: each warp grows whole small subtrees from the list, depth first.
    Work* stack = (Work*)region;
    double* sw = (double*)(stack + STACK);
    double* sy = sw + SMALL;
    unsigned int* sidx = (unsigned int*)(sy + SMALL * K);
    int* perm = (int*)(sidx + SMALL);
    int* visit = perm + D;
    unsigned char* is_const = (unsigned char*)(visit + D);
    const int listed = s_listed;
    const long long phase1 = clock64() - began;
    for (;;) {
        int e = 0;
        if (lane == 0) e = atomicAdd(&s_taken, 1);
        e = __shfl_sync(FULL, e, 0);
        if (e >= listed) break;
        if (lane == 0) stack[0] = work[n - e];
        int height = 1;
        __syncwarp();
        while (height > 0) {
            const Work nd = stack[--height];
            const int start = nd.start, m = nd.end - nd.start;
            int index = 0;
            if (lane == 0) {
                index = atomicAdd(&s_nodes, 1);
                if (nd.slot >= 0) {
                    if (nd.slot & 1) left[nd.slot >> 1] = index; else right[nd.slot >> 1] = index;
                }
                atomicMax(&s_max_depth, nd.depth);
            }
            index = __shfl_sync(FULL, index, 0);
            for (int i = lane; i < m; i += 32) {
                unsigned int r = rows[start + i];
                sidx[i] = r;
                sw[i] = weight[r];
                for (int j = 0; j < K; ++j) sy[i * K + j] = y[(size_t)r * K + j];
            }
            __syncwarp();
            double part[HSTRIDE];
            for (int j = 0; j < HSTRIDE; ++j) part[j] = 0.0;
            int differs = 0;
            for (int i = lane; i < m; i += 32) {
                double wr = sw[i];
                const double* yr = sy + i * K;
                part[0] += wr;
                for (int j = 0; j < K; ++j) {
                    part[1] += wr * yr[j] * yr[j];
                    part[2 + j] += wr * yr[j];
                    differs |= yr[j] != sy[j];
                }
            }
            differs = __any_sync(FULL, differs);
            for (int j = 0; j < HSTRIDE; ++j) part[j] = warp_sum(part[j]);
            const double w = part[0];
            double impurity = 0.0;
            if (differs) {
                double mean_square = 0.0;
                for (int j = 0; j < K; ++j) mean_square += (part[2 + j] / w) * (part[2 + j] / w);
                impurity = (part[1] / w - mean_square) / K;
                if (!(impurity > 0.0)) impurity = 0.0;
            }
            const int splittable = differs && nd.depth < max_depth && m >= min_split && m >= 2 * min_leaf;
            if (lane == 0 && nd.pf >= 0) atomicAdd(&importance[nd.pf], -w * impurity);
            Scan best;
            scan_begin(best);
            int best_v = 0;
            if (splittable) {
                if (check_const) {
                    for (int f = lane; f < D; f += 32) {
                        int lo = 255, hi = 0;
                        for (int i = 0; i < m; ++i) {
                            int b = rbins[(size_t)sidx[i] * D + f];
                            lo = imin(lo, b); hi = imax(hi, b);
                        }
                        is_const[f] = lo == hi;
                    }
                }
                for (int i = lane; i < D; i += 32) {
                    perm[i] = i;
                    visit[i] = i + (int)(draw(nd.seed, i) % (u64)(D - i));
                }
                __syncwarp();
                int nv = 0;
                if (lane == 0) nv = draw_features(perm, visit, is_const, check_const, max_features);
                nv = __shfl_sync(FULL, nv, 0);
                __syncwarp();
                for (int v = lane; v < nv; v += 32) {
                    Scan s = scan_sorted(rbins, visit[v], sidx, sw, sy, m, part + 2, w, min_leaf);
                    if (better(s.have, s.best, v, best.have, best.best, best_v)) { best = s; best_v = v; }
                }
                for (int o = 16; o > 0; o >>= 1) {
                    int oh = __shfl_down_sync(FULL, best.have, o);
                    double op = __shfl_down_sync(FULL, best.best, o);
                    int ov = __shfl_down_sync(FULL, best_v, o);
                    int ob = __shfl_down_sync(FULL, best.bin, o);
                    if (better(oh, op, ov, best.have, best.best, best_v)) {
                        best.have = oh; best.best = op; best_v = ov; best.bin = ob;
                    }
                }
                best.have = __shfl_sync(FULL, best.have, 0);
                best.bin = __shfl_sync(FULL, best.bin, 0);
                best_v = __shfl_sync(FULL, best_v, 0);
            }
            if (!best.have) {
                if (lane == 0) {
                    write_leaf(feature, bin_of, left, right, values, index, atomicAdd(&s_leaves, 1),
                               part + 2, w);
                }
                __syncwarp();
                continue;
            }
            // Stable partition of at most 64 rows: two ballots.
            const int f = visit[best_v], split = best.bin;
            const unsigned int below = (1u << lane) - 1u;
            int g0 = lane < m && rbins[(size_t)sidx[lane] * D + f] <= split;
            int g1 = lane + 32 < m && rbins[(size_t)sidx[lane + 32] * D + f] <= split;
            unsigned int b0 = __ballot_sync(FULL, g0), b1 = __ballot_sync(FULL, g1);
            int l0 = __popc(b0), lefts = l0 + __popc(b1);
            if (lane < m) {
                int l = __popc(b0 & below);
                rows[start + (g0 ? l : lefts + lane - l)] = sidx[lane];
            }
            if (lane + 32 < m) {
                int l = __popc(b1 & below);
                rows[start + (g1 ? l0 + l : lefts + (32 - l0) + lane - l)] = sidx[lane + 32];
            }
            if (lane == 0) {
                feature[index] = f; bin_of[index] = split;
                left[index] = 0; right[index] = 0;
                atomicAdd(&importance[f], w * impurity);
                int mid = start + lefts;
                for (int side = 1; side >= 0; --side) {
                    Work c;
                    c.start = side ? mid : start; c.end = side ? nd.end : mid;
                    c.depth = nd.depth + 1; c.slot = index * 2 + (1 - side); c.pf = f; c.pad = 0;
                    c.seed = child_seed(nd.seed, side);
                    stack[height + (1 - side)] = c;
                }
            }
            height += 2;
            __syncwarp();
        }
    }
    __syncthreads();
    if (tid == 0) {
        int* c = counts_all + (size_t)t * 4;
        c[0] = s_nodes; c[1] = s_leaves; c[2] = s_max_depth; c[3] = (int)(phase1 >> 10);
    }
}
