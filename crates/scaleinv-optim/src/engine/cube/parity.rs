//! What the parity tests of the rules' CubeCL forms share (`rules::*::cube`, compiled for
//! tests only): a wgpu client (Mesa's software Vulkan where there is no GPU; skipped with a
//! notice when no adapter answers, unless `SCALEINV_REQUIRE_WGPU=1`), buffers in and out, the
//! inputs — random magnitudes over f32's range, edge values, ±0, no subnormals — and the
//! comparison: within 2 ulp or 1e-6 relative of the formula (division and square root on a GPU
//! need not be correctly rounded), a subnormal on either side counting as zero (a GPU may flush
//! it).

use burn::cubecl::client::Client;
use burn::cubecl::prelude::*;
use burn::cubecl::server::Handle;
use burn::cubecl::wgpu::WgpuDeviceKind;

/// A wgpu client for the parity kernels.
pub(crate) struct Gpu {
    pub client: Client,
}

impl Gpu {
    /// The default wgpu device's client, or `None` (with a notice) when no adapter answers.
    pub fn get() -> Option<Self> {
        let device = || burn::cubecl::Device::wgpu(WgpuDeviceKind::DefaultDevice).ok();
        let client = std::panic::catch_unwind(|| device().map(|d| d.client()))
            .ok()
            .flatten();
        if client.is_none() {
            assert!(
                std::env::var("SCALEINV_REQUIRE_WGPU").as_deref() != Ok("1"),
                "SCALEINV_REQUIRE_WGPU=1 but wgpu found no adapter"
            );
            eprintln!("wgpu: no adapter on this machine; the parity test is not run");
        }
        client.map(|client| Self { client })
    }

    /// `values` on the device.
    pub fn upload(&self, values: &[f32]) -> Handle {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.client.create_from_slice(&bytes)
    }

    /// `n` uninitialised f32 on the device.
    pub fn empty(&self, n: usize) -> Handle {
        self.client.empty(n * size_of::<f32>())
    }

    /// `n` f32 of `handle` as a kernel's slice.
    pub fn arg(&self, handle: &Handle, n: usize) -> BufferArg {
        // SAFETY: every handle of these tests holds at least `n` f32.
        unsafe { BufferArg::from_raw_parts(handle.clone(), n) }
    }

    /// The f32 values of `handle`.
    pub fn read(&self, handle: Handle) -> Vec<f32> {
        let bytes = self
            .client
            .read_one(handle)
            .expect("a parity kernel's output");
        bytes
            .chunks_exact(size_of::<f32>())
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    }

    /// One unit per element of `n`: the cube count and dimension.
    pub fn elementwise(&self, n: usize) -> (CubeCount, CubeDim) {
        let dim = CubeDim::new(&self.client, n);
        (
            burn::cubecl::calculate_cube_count_elemwise(&self.client, n, dim),
            dim,
        )
    }
}

/// `n` inputs for stream `seed`: edge values first (±0, ±1, the smallest normal, large and
/// small powers of two), then values of random sign and magnitude `2^e`, `e` uniform in
/// `[-40, 40)`, from a fixed generator (the same inputs every run). `positive` keeps them ≥ 0.
pub(crate) fn inputs(n: usize, seed: u64, positive: bool) -> Vec<f32> {
    let edges = [
        0.0,
        -0.0,
        1.0,
        -1.0,
        f32::MIN_POSITIVE,
        -f32::MIN_POSITIVE,
        1e30,
        -1e30,
        1e-30,
        3.5,
        -0.125,
        0.1,
    ];
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut values: Vec<f32> = edges
        .into_iter()
        .cycle()
        .skip(seed as usize % 3)
        .take(12)
        .collect();
    while values.len() < n {
        let r = next();
        let mantissa = 1.0 + (r >> 40) as f32 / (1u64 << 24) as f32;
        let exponent = ((r >> 8) % 80) as i32 - 40;
        let sign = if r & 1 == 0 { 1.0 } else { -1.0 };
        values.push(sign * mantissa * 2f32.powi(exponent));
    }
    values.truncate(n);
    if positive {
        values.iter_mut().for_each(|v| *v = v.abs());
    }
    values
}

/// Whether `got` (the kernel) is within 2 ulp or 1e-6 relative of `want` (the formula); NaN
/// matches NaN, ±∞ itself, and a subnormal on either side counts as zero.
pub(crate) fn close(got: f32, want: f32) -> bool {
    let flush = |x: f32| if x.is_subnormal() { 0.0 } else { x };
    let (got, want) = (flush(got), flush(want));
    if want.is_nan() || got.is_nan() {
        return want.is_nan() && got.is_nan();
    }
    if want.is_infinite() || got.is_infinite() {
        return got == want;
    }
    if got == want {
        return true;
    }
    let ulps = (got.to_bits() as i64 - want.to_bits() as i64).unsigned_abs();
    let same_sign = got.is_sign_negative() == want.is_sign_negative();
    (same_sign && ulps <= 2) || (got - want).abs() <= 1e-6 * want.abs()
}

/// Asserts [`close`] element by element, naming the rule, the element and its inputs.
pub(crate) fn assert_close(rule: &str, got: &[f32], want: &[f32], input: impl Fn(usize) -> String) {
    assert_eq!(got.len(), want.len(), "{rule}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            close(g, w),
            "{rule}: element {i} ({}): kernel {g:e}, formula {w:e}",
            input(i)
        );
    }
}
