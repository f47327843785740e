//! Handwritten digits embedded in the crate: the UCI optical-recognition digits (1,797 images
//! of 8×8 grey levels 0–16; CC BY 4.0) and 10,000 MNIST digits (28×28, grey levels 0–255;
//! CC BY-SA 3.0). See `data/README.md` for the attributions.

use std::fmt;
use std::io::Read;

use burn::tensor::{Device, Int, Tensor, TensorData};

/// Side of a UCI digit image in pixels.
pub const SIDE: usize = 8;
/// Side of an MNIST image in pixels.
pub const MNIST_SIDE: usize = 28;
/// Number of classes.
pub const CLASSES: usize = 10;

const DIGITS_CSV_GZ: &[u8] = include_bytes!("../data/digits.csv.gz");
const MNIST_IMAGES_GZ: &[u8] = include_bytes!("../data/mnist10k-images-idx3-ubyte.gz");
const MNIST_LABELS_GZ: &[u8] = include_bytes!("../data/mnist10k-labels-idx1-ubyte.gz");

/// A data-set error: the embedded file could not be decoded.
#[derive(Debug)]
pub struct DataError(String);

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "digits data: {}", self.0)
    }
}

impl std::error::Error for DataError {}

/// A set of square digit images, pixels scaled to `[0, 1]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Digits {
    /// Row-major pixels, `side * side` values per image.
    pub pixels: Vec<f32>,
    /// Labels 0–9.
    pub labels: Vec<u8>,
    /// Side of each image in pixels.
    pub side: usize,
}

impl Digits {
    /// All 1,797 digits, in file order.
    pub fn load() -> Result<Self, DataError> {
        let mut text = String::new();
        flate2::read::GzDecoder::new(DIGITS_CSV_GZ)
            .read_to_string(&mut text)
            .map_err(|e| DataError(format!("cannot decompress: {e}")))?;
        let mut pixels = Vec::new();
        let mut labels = Vec::new();
        for (row, line) in text.lines().filter(|l| !l.trim().is_empty()).enumerate() {
            let values: Vec<u8> = line
                .split(',')
                .map(|v| v.trim().parse::<u8>())
                .collect::<Result<_, _>>()
                .map_err(|e| DataError(format!("row {row}: {e}")))?;
            let (label, image) = match values.split_last() {
                Some((label, image))
                    if image.len() == SIDE * SIDE && (*label as usize) < CLASSES =>
                {
                    (*label, image)
                }
                _ => {
                    return Err(DataError(format!(
                        "row {row}: expected 64 pixels and a label 0-9"
                    )));
                }
            };
            pixels.extend(image.iter().map(|&p| p as f32 / 16.0));
            labels.push(label);
        }
        Ok(Self {
            pixels,
            labels,
            side: SIDE,
        })
    }

    /// The 10,000 MNIST digits (28×28), in file order (classes interleaved).
    pub fn load_mnist() -> Result<Self, DataError> {
        let gunzip = |bytes: &[u8], what: &str| {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(bytes)
                .read_to_end(&mut out)
                .map_err(|e| DataError(format!("cannot decompress the MNIST {what}: {e}")))?;
            Ok::<_, DataError>(out)
        };
        let images = gunzip(MNIST_IMAGES_GZ, "images")?;
        let labels = gunzip(MNIST_LABELS_GZ, "labels")?;
        let word = |bytes: &[u8], at: usize| {
            bytes
                .get(at..at + 4)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        };
        let header = (
            word(&images, 0),
            word(&images, 4),
            word(&images, 8),
            word(&images, 12),
        );
        let (Some(2051), Some(n), Some(MNIST_SIDE), Some(MNIST_SIDE)) = header else {
            return Err(DataError(format!("bad MNIST image header {header:?}")));
        };
        let (Some(2049), Some(n_labels)) = (word(&labels, 0), word(&labels, 4)) else {
            return Err(DataError("bad MNIST label header".into()));
        };
        let px = MNIST_SIDE * MNIST_SIDE;
        if n != n_labels || images.len() != 16 + n * px || labels.len() != 8 + n {
            return Err(DataError(format!(
                "MNIST sizes disagree: {n} images, {n_labels} labels"
            )));
        }
        let labels = labels[8..].to_vec();
        if labels.iter().any(|&l| l as usize >= CLASSES) {
            return Err(DataError("an MNIST label is not 0-9".into()));
        }
        Ok(Self {
            pixels: images[16..].iter().map(|&p| p as f32 / 255.0).collect(),
            labels,
            side: MNIST_SIDE,
        })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Splits off every `k`-th image (`k = round(1 / test_fraction)`) as a test set, so both
    /// parts keep the file's class mix. Returns `(train, test)`.
    pub fn split(&self, test_fraction: f64) -> (Self, Self) {
        let every = (1.0 / test_fraction.clamp(1e-3, 1.0)).round().max(1.0) as usize;
        let (mut train, mut test) = (self.empty(), self.empty());
        for i in 0..self.len() {
            let part = if i % every == every - 1 {
                &mut test
            } else {
                &mut train
            };
            part.push(self, i);
        }
        (train, test)
    }

    /// Splits off the last `count` images (all of them if there are fewer). Returns
    /// `(first, last)`. For MNIST, whose file repeats the classes with a period of 10, this
    /// keeps both parts class-balanced where [`split`](Self::split) would not.
    pub fn split_last(&self, count: usize) -> (Self, Self) {
        let at = self.len().saturating_sub(count);
        let indices: Vec<usize> = (0..self.len()).collect();
        (self.select(&indices[..at]), self.select(&indices[at..]))
    }

    /// The images at `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> Self {
        let mut out = self.empty();
        for &i in indices {
            out.push(self, i);
        }
        out
    }

    /// The images as a `[n, 1, side, side]` tensor and the labels as a `[n]` tensor.
    pub fn to_tensors(&self, device: &Device) -> (Tensor<4>, Tensor<1, Int>) {
        let n = self.len();
        let images = Tensor::<4>::from_data(
            TensorData::new(self.pixels.clone(), [n, 1, self.side, self.side]),
            device,
        );
        let labels: Vec<i64> = self.labels.iter().map(|&l| l as i64).collect();
        let labels = Tensor::<1, Int>::from_data(TensorData::new(labels, [n]), device);
        (images, labels)
    }

    /// An empty set of images of the same side.
    fn empty(&self) -> Self {
        Self {
            pixels: Vec::new(),
            labels: Vec::new(),
            side: self.side,
        }
    }

    fn push(&mut self, from: &Self, i: usize) {
        let px = from.side * from.side;
        self.pixels
            .extend_from_slice(&from.pixels[i * px..(i + 1) * px]);
        self.labels.push(from.labels[i]);
    }
}
