// Device-side random numbers and replay sampling. RNG: Philox4x32-10 (Salmon et al. 2011,
// counter based) keyed by a 64-bit seed; the 64-bit counter lives in device memory
// (state[0] = seed, state[1] = counter) so launches can be captured in a CUDA graph. A fill
// kernel reads the counter, thread t uses counter + t, and keel_rng_advance (launched right
// after, same stream) moves it on. The host reference is cuda/rng.rs.

#define KEEL_PHILOX_M0 0xD2511F53u
#define KEEL_PHILOX_M1 0xCD9E8D57u
#define KEEL_PHILOX_W0 0x9E3779B9u
#define KEEL_PHILOX_W1 0xBB67AE85u

__device__ __forceinline__ uint4 keel_philox(unsigned long long ctr, unsigned long long key) {
    unsigned int c0 = (unsigned int)ctr, c1 = (unsigned int)(ctr >> 32), c2 = 0u, c3 = 0u;
    unsigned int k0 = (unsigned int)key, k1 = (unsigned int)(key >> 32);
    for (int r = 0; r < 10; ++r) {
        const unsigned int hi0 = __umulhi(KEEL_PHILOX_M0, c0), lo0 = KEEL_PHILOX_M0 * c0;
        const unsigned int hi1 = __umulhi(KEEL_PHILOX_M1, c2), lo1 = KEEL_PHILOX_M1 * c2;
        c0 = hi1 ^ c1 ^ k0;
        c1 = lo1;
        c2 = hi0 ^ c3 ^ k1;
        c3 = lo0;
        k0 += KEEL_PHILOX_W0;
        k1 += KEEL_PHILOX_W1;
    }
    return make_uint4(c0, c1, c2, c3);
}

// (0, 1]: 24 random bits, never 0 (log is finite).
__device__ __forceinline__ float keel_u01(unsigned int x) {
    return (float)((x >> 8) + 1u) * 5.9604644775390625e-8f;
}

// Box-Muller on (a, b): writes up to two normals.
__device__ __forceinline__ void keel_box_muller(unsigned int a, unsigned int b, float* z0, float* z1) {
    const float r = sqrtf(-2.0f * logf(keel_u01(a)));
    const float t = 6.2831853071795864769f * keel_u01(b);
    *z0 = r * cosf(t);
    *z1 = r * sinf(t);
}

// out[i] = mean + std * N(0, 1); thread t fills out[4t..4t+4] from counter state[1] + t.
extern "C" __global__ void keel_normal(float* out, long long n, float mean, float std_dev, const unsigned long long* state) {
    const unsigned long long key = state[0], base = state[1];
    const long long quads = (n + 3) / 4;
    for (long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x; t < quads; t += (long long)gridDim.x * blockDim.x) {
        const uint4 x = keel_philox(base + (unsigned long long)t, key);
        float z[4];
        keel_box_muller(x.x, x.y, &z[0], &z[1]);
        keel_box_muller(x.z, x.w, &z[2], &z[3]);
        for (int k = 0; k < 4; ++k) {
            const long long i = 4 * t + k;
            if (i < n) out[i] = mean + std_dev * z[k];
        }
    }
}

// idx[i] = uniform in [0, bound) by multiply-shift; thread t fills idx[4t..4t+4].
extern "C" __global__ void keel_uniform_index(unsigned int* idx, long long n, unsigned int bound, const unsigned long long* state) {
    const unsigned long long key = state[0], base = state[1];
    const long long quads = (n + 3) / 4;
    for (long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x; t < quads; t += (long long)gridDim.x * blockDim.x) {
        const uint4 x = keel_philox(base + (unsigned long long)t, key);
        const unsigned int w[4] = {x.x, x.y, x.z, x.w};
        for (int k = 0; k < 4; ++k) {
            const long long i = 4 * t + k;
            if (i < n) idx[i] = (unsigned int)(((unsigned long long)w[k] * bound) >> 32);
        }
    }
}

// One thread: the counter moves past the `used` counters of the previous launch.
extern "C" __global__ void keel_rng_advance(unsigned long long* state, unsigned long long used) {
    if (blockIdx.x == 0 && threadIdx.x == 0) state[1] += used;
}

// dst[r, :] = src[idx[r], :] for r < count, rows of `row_len` floats.
extern "C" __global__ void keel_gather_rows(const float* src, const unsigned int* idx, float* dst, long long count, int row_len) {
    const long long n = count * row_len;
    for (long long e = (long long)blockIdx.x * blockDim.x + threadIdx.x; e < n; e += (long long)gridDim.x * blockDim.x) {
        const long long r = e / row_len;
        const long long c = e - r * row_len;
        dst[e] = src[(long long)idx[r] * row_len + c];
    }
}
