// Elementwise kernels of CudaBackend. The math mirrors trainer/src/nn/cpu.rs and activation.rs
// operation for operation; the module is compiled with --fmad=false (no FMA contraction), so
// everything but the transcendental functions (expf, tanhf) rounds exactly as on the CPU.
//
// Activation codes (kernels.rs `act_code`): 0 identity, 1 relu, 2 silu, 3 tanh, 4 fast tanh.

#define KEEL_FAST_TANH_CLAMP 4.785f

__device__ __forceinline__ float keel_fast_tanh(float x) {
    // keel_runtime::fast_tanh: clamp (NaN stays NaN, as f32::clamp), then the (7, 6) rational.
    x = x > KEEL_FAST_TANH_CLAMP ? KEEL_FAST_TANH_CLAMP : (x < -KEEL_FAST_TANH_CLAMP ? -KEEL_FAST_TANH_CLAMP : x);
    const float x2 = x * x;
    const float p = x * (135135.0f + x2 * (17325.0f + x2 * (378.0f + x2)));
    const float q = 135135.0f + x2 * (62370.0f + x2 * (3150.0f + x2 * 28.0f));
    return p / q;
}

__device__ __forceinline__ float keel_fast_tanh_derivative(float x) {
    // activation.rs fast_tanh_derivative.
    if (fabsf(x) >= KEEL_FAST_TANH_CLAMP) return 0.0f;
    const float x2 = x * x;
    const float p = x * (135135.0f + x2 * (17325.0f + x2 * (378.0f + x2)));
    const float q = 135135.0f + x2 * (62370.0f + x2 * (3150.0f + x2 * 28.0f));
    const float dp = 135135.0f + x2 * (51975.0f + x2 * (1890.0f + x2 * 7.0f));
    const float dq = x * (124740.0f + x2 * (12600.0f + x2 * 168.0f));
    if (fabsf(p / q) > 1.0f) return 0.0f;
    return (dp * q - p * dq) / (q * q);
}

__device__ __forceinline__ float keel_act(int act, float z) {
    switch (act) {
        case 1: return z > 0.0f ? z : 0.0f;
        case 2: return z / (1.0f + expf(-z));
        case 3: return tanhf(z);
        case 4: return keel_fast_tanh(z);
        default: return z;
    }
}

// Derivative from `s`: the output for relu and tanh, the pre-activation for silu and fast tanh
// (Activation::needs_pre).
__device__ __forceinline__ float keel_act_grad(int act, float s) {
    switch (act) {
        case 1: return s > 0.0f ? 1.0f : 0.0f;
        case 2: {
            const float sg = 1.0f / (1.0f + expf(-s));
            return sg * (1.0f + s * (1.0f - sg));
        }
        case 3: return 1.0f - s * s;
        case 4: return keel_fast_tanh_derivative(s);
        default: return 1.0f;
    }
}

#define KEEL_GRID_STRIDE(i, n) \
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (long long)gridDim.x * blockDim.x)

extern "C" __global__ void keel_fill(float* x, long long n, float value) {
    KEEL_GRID_STRIDE(i, n) x[i] = value;
}

extern "C" __global__ void keel_scale(float* x, long long n, float s) {
    KEEL_GRID_STRIDE(i, n) x[i] *= s;
}

// dst = tau src + (1 - tau) dst.
extern "C" __global__ void keel_polyak(float* dst, const float* src, long long n, float tau) {
    const float keep = 1.0f - tau;
    KEEL_GRID_STRIDE(i, n) dst[i] = tau * src[i] + keep * dst[i];
}

// out = act(out + bias[col]).
extern "C" __global__ void keel_bias_act_fwd(float* out, const float* bias, long long n, int cols, int act) {
    KEEL_GRID_STRIDE(i, n) out[i] = keel_act(act, out[i] + bias[i % cols]);
}

// pre = out + bias[col]; out = act(pre).
extern "C" __global__ void keel_bias_act_fwd_pre(float* out, float* pre, const float* bias, long long n, int cols, int act) {
    KEEL_GRID_STRIDE(i, n) {
        const float z = out[i] + bias[i % cols];
        pre[i] = z;
        out[i] = keel_act(act, z);
    }
}

// d *= act'(src).
extern "C" __global__ void keel_act_bwd(float* d, const float* src, long long n, int act) {
    KEEL_GRID_STRIDE(i, n) d[i] *= keel_act_grad(act, src[i]);
}

// d *= act'(src) and dbias[col] += column sums of the result. Block (32, 8): threadIdx.x picks the
// column within a 32-column tile (blockIdx.x), threadIdx.y strides the rows; no atomics, so the sum
// order is fixed (deterministic), though not the CPU's row-by-row order.
extern "C" __global__ void keel_act_bwd_bias(float* d, const float* src, float* dbias, int rows, int cols, int act) {
    __shared__ float sh[8][33];
    const int c = blockIdx.x * 32 + threadIdx.x;
    float acc = 0.0f;
    if (c < cols) {
        for (int r = threadIdx.y; r < rows; r += 8) {
            const long long i = (long long)r * cols + c;
            const float g = d[i] * keel_act_grad(act, src[i]);
            d[i] = g;
            acc += g;
        }
    }
    sh[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && c < cols) {
        float s = 0.0f;
        for (int k = 0; k < 8; ++k) s += sh[k][threadIdx.x];
        dbias[c] += s;
    }
}

// PyTorch's Adam with L2 weight decay, as CpuBackend::adam: step = lr / bc1 and
// inv_sqrt_bc2 = 1 / sqrt(bc2) are computed on the host exactly as there.
extern "C" __global__ void keel_adam(float* p, const float* g, float* m, float* v, long long n,
                                     float step, float inv_sqrt_bc2, float b1, float b2, float eps, float wd) {
    KEEL_GRID_STRIDE(i, n) {
        const float gi = g[i] + wd * p[i];
        const float mi = b1 * m[i] + (1.0f - b1) * gi;
        const float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        p[i] -= step * mi / (sqrtf(vi) * inv_sqrt_bc2 + eps);
    }
}

// partials[blockIdx.x] = sum over this block's grid-stride share of x^2 (the host sums the
// partials in f64).
extern "C" __global__ void keel_sum_squares(const float* x, long long n, float* partials) {
    __shared__ float sh[32];
    float acc = 0.0f;
    KEEL_GRID_STRIDE(i, n) acc += x[i] * x[i];
    const float s = keel_block_sum(acc, sh);
    if (threadIdx.x == 0) partials[blockIdx.x] = s;
}
