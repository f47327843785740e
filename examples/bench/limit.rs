//! The machine's limit for a step's memory traffic: the best bandwidth that several kernels
//! reach for the read/write mix of an optimizer step, on the step's own footprint.
//!
//! A fused optimizer step reads the parameter, the gradient and the state and writes the
//! parameter and the state back in place. [`Mix::ADAM`] is that of the Adam family (`p, g, m,
//! v` read, `p, m, v` written: 28 B per parameter), [`Mix::SGD`] that of SGD with momentum
//! (`p, g, b` read, `p, b` written: 20 B). Each kernel does one multiply-add per word written,
//! so the memory system, not the arithmetic, sets its pace; its buffers hold `params` f32 per
//! stream, the footprint of the step it judges (a machine with a large last-level cache runs a
//! small footprint from it: a limit measured on another footprint is another limit).
//!
//! Kernels, all on the current rayon pool, each the best of 10 timed runs after 3 untimed:
//!
//! - `chunks`: the tensor cut into the fused loops' 16K-element chunks, one rayon task each;
//! - `slabs`: one contiguous slab per thread;
//!
//! each compiled for AVX2 and, where the CPU has it, AVX-512 (`-avx2`, `-avx512`). The best one
//! counts. Non-temporal stores are not among them: every word written was read just before, so
//! its cache line is already there and a streaming store saves no transfer.

use std::time::Instant;

use rayon::prelude::*;

/// Elements per task of the `chunks` kernels: the fused loops' chunk.
const CHUNK: usize = 1 << 14;

/// The f32 streams a step reads, and how many of them it writes back in place.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Mix {
    pub name: &'static str,
    pub reads: usize,
    pub writes: usize,
}

impl Mix {
    /// `p, g, m, v` read; `p, m, v` written.
    pub const ADAM: Self = Self {
        name: "adam",
        reads: 4,
        writes: 3,
    };
    /// `p, g, b` read; `p, b` written.
    pub const SGD: Self = Self {
        name: "sgd",
        reads: 3,
        writes: 2,
    };

    /// Bytes moved per parameter.
    pub fn bytes(self) -> usize {
        4 * (self.reads + self.writes)
    }
}

/// The best bandwidth measured for one mix and footprint, the kernel that reached it, and
/// every kernel's.
#[derive(Clone, Debug)]
pub struct Limit {
    pub mix: Mix,
    pub bytes_per_s: f64,
    pub kernel: &'static str,
    pub kernels: Vec<(&'static str, f64)>,
}

/// The limit of `mix` over `params` elements per stream, on the current rayon pool.
pub fn measure(mix: Mix, params: usize) -> Limit {
    let mut streams: Vec<Vec<f32>> = (0..mix.reads)
        .map(|k| (0..params).map(|i| ((i + k) % 997) as f32 * 1e-3).collect())
        .collect();
    let kernels: Vec<(&'static str, f64)> = kernels()
        .into_iter()
        .map(|(kernel, isa, layout)| {
            let seconds = best_of(|| run(mix, &mut streams, isa, layout));
            (kernel, (mix.bytes() * params) as f64 / seconds)
        })
        .collect();
    let (kernel, bytes_per_s) = kernels
        .iter()
        .copied()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .expect("at least the AVX2 kernels");
    Limit {
        mix,
        bytes_per_s,
        kernel,
        kernels,
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Isa {
    Avx2,
    Avx512,
}

#[derive(Clone, Copy)]
enum Layout {
    Chunks,
    Slabs,
}

/// Every kernel this CPU can run.
fn kernels() -> Vec<(&'static str, Isa, Layout)> {
    let mut all = vec![
        ("chunks-avx2", Isa::Avx2, Layout::Chunks),
        ("slabs-avx2", Isa::Avx2, Layout::Slabs),
    ];
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        all.push(("chunks-avx512", Isa::Avx512, Layout::Chunks));
        all.push(("slabs-avx512", Isa::Avx512, Layout::Slabs));
    }
    all
}

/// One pass of `mix` over every stream, cut by `layout`, each piece compiled for `isa`.
fn run(mix: Mix, streams: &mut [Vec<f32>], isa: Isa, layout: Layout) {
    let len = streams[0].len();
    let piece = match layout {
        Layout::Chunks => CHUNK,
        Layout::Slabs => len.div_ceil(rayon::current_num_threads()).max(1),
    };
    let mut pieces: Vec<Vec<&mut [f32]>> = (0..len.div_ceil(piece)).map(|_| Vec::new()).collect();
    for stream in streams.iter_mut() {
        for (k, part) in stream.chunks_mut(piece).enumerate() {
            pieces[k].push(part);
        }
    }
    pieces
        .into_par_iter()
        .for_each(|mut parts| step(mix, &mut parts, isa));
}

/// `mix`'s update of one piece of every stream, in the widest vectors `isa` allows.
fn step(mix: Mix, parts: &mut [&mut [f32]], isa: Isa) {
    #[cfg(target_arch = "x86_64")]
    {
        let avx2 = std::arch::is_x86_feature_detected!("avx2");
        // SAFETY: each feature is checked on this CPU before its copy runs.
        unsafe {
            if isa == Isa::Avx512 && std::arch::is_x86_feature_detected!("avx512f") {
                return with_avx512(mix, parts);
            }
            if avx2 {
                return with_avx2(mix, parts);
            }
        }
    }
    let _ = isa;
    update(mix, parts);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn with_avx2(mix: Mix, parts: &mut [&mut [f32]]) {
    update(mix, parts);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn with_avx512(mix: Mix, parts: &mut [&mut [f32]]) {
    update(mix, parts);
}

/// Reads every stream and writes the first `writes` back: `w ← 0.5·w + 1e-3·g` for each
/// written stream `w`, `g` the last stream (Adam's `p, m, v` from `g`; SGD's `p, b`).
#[inline(always)]
fn update(mix: Mix, parts: &mut [&mut [f32]]) {
    match (mix.reads, mix.writes) {
        (4, 3) => {
            let [p, m, v, g] = parts else { unreachable!() };
            for (((p, m), v), g) in p
                .iter_mut()
                .zip(m.iter_mut())
                .zip(v.iter_mut())
                .zip(g.iter())
            {
                *p = 0.5 * *p + 1e-3 * g;
                *m = 0.5 * *m + 1e-3 * g;
                *v = 0.5 * *v + 1e-3 * g;
            }
        }
        (3, 2) => {
            let [p, b, g] = parts else { unreachable!() };
            for ((p, b), g) in p.iter_mut().zip(b.iter_mut()).zip(g.iter()) {
                *p = 0.5 * *p + 1e-3 * g;
                *b = 0.5 * *b + 1e-3 * g;
            }
        }
        _ => unimplemented!("mixes are Mix::ADAM and Mix::SGD"),
    }
}

/// The shortest of 10 timed runs of `f`, after 3 untimed.
pub fn best_of(mut f: impl FnMut()) -> f64 {
    let mut best = f64::INFINITY;
    for k in 0..13 {
        let start = Instant::now();
        f();
        if k >= 3 {
            best = best.min(start.elapsed().as_secs_f64());
        }
    }
    best
}
