//! The UCI optical-recognition digits (1,797 images of 8×8 grey levels 0–16, labels 0–9),
//! embedded in the crate. Licence CC BY 4.0; see `data/README.md` for the attribution.

use std::fmt;
use std::io::Read;

use burn::tensor::{Device, Int, Tensor, TensorData};

/// Side of a digit image in pixels.
pub const SIDE: usize = 8;
/// Number of classes.
pub const CLASSES: usize = 10;

const DIGITS_CSV_GZ: &[u8] = include_bytes!("../data/digits.csv.gz");

/// A data-set error: the embedded file could not be decoded.
#[derive(Debug)]
pub struct DataError(String);

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "digits data: {}", self.0)
    }
}

impl std::error::Error for DataError {}

/// A set of digit images, pixels scaled to `[0, 1]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Digits {
    /// Row-major pixels, `SIDE * SIDE` values per image.
    pub pixels: Vec<f32>,
    /// Labels 0–9.
    pub labels: Vec<u8>,
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
        Ok(Self { pixels, labels })
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
        let (mut train, mut test) = (Self::empty(), Self::empty());
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

    /// The images at `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> Self {
        let mut out = Self::empty();
        for &i in indices {
            out.push(self, i);
        }
        out
    }

    /// The images as a `[n, 1, 8, 8]` tensor and the labels as a `[n]` tensor.
    pub fn to_tensors(&self, device: &Device) -> (Tensor<4>, Tensor<1, Int>) {
        let n = self.len();
        let images = Tensor::<4>::from_data(
            TensorData::new(self.pixels.clone(), [n, 1, SIDE, SIDE]),
            device,
        );
        let labels: Vec<i64> = self.labels.iter().map(|&l| l as i64).collect();
        let labels = Tensor::<1, Int>::from_data(TensorData::new(labels, [n]), device);
        (images, labels)
    }

    fn empty() -> Self {
        Self {
            pixels: Vec::new(),
            labels: Vec::new(),
        }
    }

    fn push(&mut self, from: &Self, i: usize) {
        let px = SIDE * SIDE;
        self.pixels
            .extend_from_slice(&from.pixels[i * px..(i + 1) * px]);
        self.labels.push(from.labels[i]);
    }
}
