// Shared helpers, prepended to every kernel source by kernels.rs (NVRTC has no include path
// set up, and these are small). Block sizes are multiples of 32.

#define KEEL_FULL_MASK 0xffffffffu

__device__ __forceinline__ float keel_warp_sum(float x) {
    for (int o = 16; o > 0; o >>= 1) x += __shfl_down_sync(KEEL_FULL_MASK, x, o);
    return x;
}

// Sum of `x` over the block, returned to every thread. `sh` holds at least 32 floats. Contains
// __syncthreads (so global writes made before it are visible to the whole block after it).
__device__ float keel_block_sum(float x, float* sh) {
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int nwarps = (blockDim.x + 31) >> 5;
    x = keel_warp_sum(x);
    __syncthreads();
    if (lane == 0) sh[warp] = x;
    __syncthreads();
    if (warp == 0) {
        float y = lane < nwarps ? sh[lane] : 0.0f;
        y = keel_warp_sum(y);
        if (lane == 0) sh[0] = y;
    }
    __syncthreads();
    const float r = sh[0];
    __syncthreads();
    return r;
}
