// Spectral normalization, as CpuBackend::spectral_step / spectral_backward. Each is ONE block
// (launched with 1024 threads) doing the whole layer: the weights of the networks this serves
// are at most a few hundred rows and columns, so one launch beats several grid-wide ones.
// State layout (SpectralSlot): u[rows], v[cols], sigma.

// With `iterate`: v = normalize(W^T u); u = normalize(W v); sigma = |W v| (before normalizing).
// Otherwise sigma = u^T W v. Then sigma = max(sigma, 1e-12), stored, and w_sn = w * (1 / sigma).
extern "C" __global__ void keel_spectral_step(const float* w, float* st, float* w_sn, int rows, int cols, int iterate) {
    __shared__ float sh[32];
    float* u = st;
    float* v = st + rows;
    const int tid = threadIdx.x;
    const int nt = blockDim.x;
    const int lane = tid & 31;
    const int warp = tid >> 5;
    const int nwarps = nt >> 5;
    float sigma;
    if (iterate) {
        // v = W^T u, row order as the CPU's axpy loop.
        float part = 0.0f;
        for (int j = tid; j < cols; j += nt) {
            float a = 0.0f;
            for (int i = 0; i < rows; ++i) a += u[i] * w[(long long)i * cols + j];
            v[j] = a;
            part += a * a;
        }
        const float nv = sqrtf(keel_block_sum(part, sh));
        const float inv_v = 1.0f / fmaxf(nv, 1e-12f);
        for (int j = tid; j < cols; j += nt) v[j] *= inv_v;
        __syncthreads();
        // u = W v, one warp per row.
        part = 0.0f;
        for (int i = warp; i < rows; i += nwarps) {
            float a = 0.0f;
            for (int j = lane; j < cols; j += 32) a += w[(long long)i * cols + j] * v[j];
            a = keel_warp_sum(a);
            if (lane == 0) {
                u[i] = a;
                part += a * a;
            }
        }
        const float nu = sqrtf(keel_block_sum(part, sh));
        const float inv_u = 1.0f / fmaxf(nu, 1e-12f);
        for (int i = tid; i < rows; i += nt) u[i] *= inv_u;
        sigma = nu;
    } else {
        float part = 0.0f;
        for (int i = warp; i < rows; i += nwarps) {
            float a = 0.0f;
            for (int j = lane; j < cols; j += 32) a += w[(long long)i * cols + j] * v[j];
            a = keel_warp_sum(a);
            if (lane == 0) part += u[i] * a;
        }
        sigma = keel_block_sum(part, sh);
    }
    sigma = fmaxf(sigma, 1e-12f);
    if (tid == 0) st[rows + cols] = sigma;
    const float inv = 1.0f / sigma;
    const long long n = (long long)rows * cols;
    for (long long e = tid; e < n; e += nt) w_sn[e] = w[e] * inv;
}

// grad += (g - <g, w_sn> u v^T) / sigma.
extern "C" __global__ void keel_spectral_backward(const float* g, const float* w_sn, const float* st, float* grad, int rows, int cols) {
    __shared__ float sh[32];
    const int tid = threadIdx.x;
    const int nt = blockDim.x;
    const long long n = (long long)rows * cols;
    float part = 0.0f;
    for (long long e = tid; e < n; e += nt) part += g[e] * w_sn[e];
    const float s = keel_block_sum(part, sh);
    const float* u = st;
    const float* v = st + rows;
    const float inv = 1.0f / st[rows + cols];
    for (long long e = tid; e < n; e += nt) {
        const int i = (int)(e / cols);
        const int j = (int)(e - (long long)i * cols);
        const float c = s * u[i];
        grad[e] += (g[e] - c * v[j]) * inv;
    }
}
