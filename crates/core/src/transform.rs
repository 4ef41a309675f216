//! Transforms: composable steps from a window matrix to a scorer's input.
//!
//! Each step maps a matrix (rows = time, columns = channels or features) to another matrix, so a
//! profile's chain composes like stream transducers: moving average → decimation →
//! standardisation → FFT band energies, or any prefix of that. Output shapes are known from the
//! profile alone, which lets the profile be validated before any data arrives.

use std::sync::Arc;

use rustfft::num_complex::Complex32;
use rustfft::{Fft, FftPlanner};
use serde::{Deserialize, Serialize};

/// Dense row-major f32 matrix.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Matrix {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f32>,
}

impl Matrix {
    pub fn new(rows: usize, cols: usize, data: Vec<f32>) -> Self {
        assert_eq!(
            rows * cols,
            data.len(),
            "matrix data does not match its shape"
        );
        Self { rows, cols, data }
    }

    pub fn row(&self, r: usize) -> &[f32] {
        &self.data[r * self.cols..(r + 1) * self.cols]
    }

    pub fn column(&self, c: usize) -> impl Iterator<Item = f32> + '_ {
        (0..self.rows).map(move |r| self.data[r * self.cols + c])
    }
}

/// A transform as configured in a profile.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum TransformSpec {
    /// Trailing moving average of `width` rows; the output has `rows - width + 1` rows.
    MovingAverage { width: usize },
    /// Keeps every `factor`-th row (apply a moving average first to avoid aliasing).
    Decimate { factor: usize },
    /// `(x - mean) / std` per column with fixed constants (from training).
    Standardize { mean: Vec<f32>, std: Vec<f32> },
    /// Per-window, per-column standardisation to zero mean and unit variance.
    Normalize,
    /// Energy of the spectrum in `bands` equal-width bands per column; one output row holding
    /// column 0's bands, then column 1's, ... DC is removed first; optional Hann window and log10.
    FftBands {
        bands: usize,
        #[serde(default = "yes")]
        hann: bool,
        #[serde(default = "yes")]
        log: bool,
    },
    /// Summary statistics per column, one output row: for each column, each statistic in order.
    Stats { stats: Vec<Statistic> },
}

fn yes() -> bool {
    true
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Statistic {
    Mean,
    Std,
    Min,
    Max,
    Rms,
    PeakToPeak,
    Skewness,
    Kurtosis,
    Crest,
    /// Least-squares slope per row.
    Slope,
    First,
    Last,
}

impl TransformSpec {
    /// Output shape for an input shape, or why the step cannot apply.
    pub fn output_shape(&self, (rows, cols): (usize, usize)) -> Result<(usize, usize), String> {
        match self {
            Self::MovingAverage { width } => {
                if *width == 0 || *width > rows {
                    return Err(format!(
                        "moving_average width {width} must be within 1..={rows}"
                    ));
                }
                Ok((rows - width + 1, cols))
            }
            Self::Decimate { factor } => {
                if *factor == 0 || *factor > rows {
                    return Err(format!(
                        "decimate factor {factor} must be within 1..={rows}"
                    ));
                }
                Ok((rows.div_ceil(*factor), cols))
            }
            Self::Standardize { mean, std } => {
                if mean.len() != cols || std.len() != cols {
                    return Err(format!(
                        "standardize needs {cols} means and stds, got {} and {}",
                        mean.len(),
                        std.len()
                    ));
                }
                if std.iter().any(|s| !(s.is_finite() && *s > 0.0))
                    || mean.iter().any(|m| !m.is_finite())
                {
                    return Err("standardize constants must be finite, std > 0".into());
                }
                Ok((rows, cols))
            }
            Self::Normalize => Ok((rows, cols)),
            Self::FftBands { bands, .. } => {
                let bins = rows / 2;
                if rows < 4 || *bands == 0 || *bands > bins {
                    return Err(format!(
                        "fft_bands needs 1..={bins} bands for {rows} rows, got {bands}"
                    ));
                }
                Ok((1, cols * bands))
            }
            Self::Stats { stats } => {
                if stats.is_empty() {
                    return Err("stats needs at least one statistic".into());
                }
                Ok((1, cols * stats.len()))
            }
        }
    }
}

/// A compiled chain of transforms (FFT plans are made once, here).
#[derive(Clone)]
pub struct Chain {
    steps: Vec<Step>,
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chain")
            .field("steps", &self.steps.len())
            .finish()
    }
}

#[derive(Clone)]
enum Step {
    Plain(TransformSpec),
    Fft {
        spec: TransformSpec,
        fft: Arc<dyn Fft<f32>>,
        hann: Vec<f32>,
    },
}

impl Chain {
    /// Compiles the chain for windows of `input` shape. The profile has validated the shapes.
    pub fn new(specs: &[TransformSpec], input: (usize, usize)) -> Result<Self, String> {
        let mut planner = FftPlanner::new();
        let mut shape = input;
        let mut steps = Vec::with_capacity(specs.len());
        for spec in specs {
            let next = spec.output_shape(shape)?;
            steps.push(match spec {
                TransformSpec::FftBands { .. } => {
                    let n = shape.0;
                    let hann = (0..n)
                        .map(|i| {
                            0.5 - 0.5 * (2.0 * std::f32::consts::PI * i as f32 / n as f32).cos()
                        })
                        .collect();
                    Step::Fft {
                        spec: spec.clone(),
                        fft: planner.plan_fft_forward(n),
                        hann,
                    }
                }
                other => Step::Plain(other.clone()),
            });
            shape = next;
        }
        Ok(Self { steps })
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    pub fn apply(&self, mut m: Matrix) -> Matrix {
        for step in &self.steps {
            m = match step {
                Step::Plain(spec) => apply_plain(spec, m),
                Step::Fft {
                    spec:
                        TransformSpec::FftBands {
                            bands,
                            hann: use_hann,
                            log,
                        },
                    fft,
                    hann,
                } => fft_bands(
                    &m,
                    fft.as_ref(),
                    if *use_hann { Some(hann) } else { None },
                    *bands,
                    *log,
                ),
                Step::Fft { .. } => unreachable!("only fft_bands compiles to an FFT step"),
            };
        }
        m
    }
}

fn apply_plain(spec: &TransformSpec, m: Matrix) -> Matrix {
    match spec {
        TransformSpec::MovingAverage { width } => moving_average(&m, *width),
        TransformSpec::Decimate { factor } => {
            let rows: Vec<usize> = (0..m.rows).step_by(*factor).collect();
            let mut data = Vec::with_capacity(rows.len() * m.cols);
            for r in &rows {
                data.extend_from_slice(m.row(*r));
            }
            Matrix::new(rows.len(), m.cols, data)
        }
        TransformSpec::Standardize { mean, std } => {
            let mut m = m;
            let cols = m.cols;
            for (i, x) in m.data.iter_mut().enumerate() {
                let c = i % cols;
                *x = (*x - mean[c]) / std[c];
            }
            m
        }
        TransformSpec::Normalize => {
            let mut m = m;
            for c in 0..m.cols {
                let (mean, var) = mean_var(m.column(c));
                let sd = if var > 0.0 { var.sqrt() } else { 1.0 };
                for r in 0..m.rows {
                    let x = &mut m.data[r * m.cols + c];
                    *x = ((f64::from(*x) - mean) / sd) as f32;
                }
            }
            m
        }
        TransformSpec::Stats { stats } => {
            let mut out = Vec::with_capacity(m.cols * stats.len());
            for c in 0..m.cols {
                let col: Vec<f64> = m.column(c).map(f64::from).collect();
                for s in stats {
                    out.push(statistic(*s, &col) as f32);
                }
            }
            let n = out.len();
            Matrix::new(1, n, out)
        }
        TransformSpec::FftBands { .. } => unreachable!("fft_bands is compiled to an FFT step"),
    }
}

fn moving_average(m: &Matrix, width: usize) -> Matrix {
    let rows = m.rows - width + 1;
    let mut data = vec![0f32; rows * m.cols];
    for c in 0..m.cols {
        // Running sum in f64: exact enough over long windows, and O(rows) per column.
        let mut sum: f64 = (0..width).map(|r| f64::from(m.data[r * m.cols + c])).sum();
        data[c] = (sum / width as f64) as f32;
        for r in 1..rows {
            sum += f64::from(m.data[(r + width - 1) * m.cols + c])
                - f64::from(m.data[(r - 1) * m.cols + c]);
            data[r * m.cols + c] = (sum / width as f64) as f32;
        }
    }
    Matrix::new(rows, m.cols, data)
}

fn fft_bands(
    m: &Matrix,
    fft: &dyn Fft<f32>,
    hann: Option<&Vec<f32>>,
    bands: usize,
    log: bool,
) -> Matrix {
    let n = m.rows;
    let bins = n / 2; // bins 1..=n/2, DC excluded
    let mut out = Vec::with_capacity(m.cols * bands);
    let mut buf = vec![Complex32::new(0.0, 0.0); n];
    let mut scratch = vec![Complex32::new(0.0, 0.0); fft.get_inplace_scratch_len()];
    for c in 0..m.cols {
        let (mean, _) = mean_var(m.column(c));
        for (r, slot) in buf.iter_mut().enumerate() {
            let x = (f64::from(m.data[r * m.cols + c]) - mean) as f32;
            *slot = Complex32::new(hann.map_or(x, |h| x * h[r]), 0.0);
        }
        fft.process_with_scratch(&mut buf, &mut scratch);
        for b in 0..bands {
            let lo = 1 + b * bins / bands;
            let hi = 1 + (b + 1) * bins / bands;
            let energy: f64 = buf[lo..hi]
                .iter()
                .map(|z| f64::from(z.norm_sqr()))
                .sum::<f64>()
                / n as f64;
            out.push(if log {
                (energy + 1e-12).log10() as f32
            } else {
                energy as f32
            });
        }
    }
    let cols = out.len();
    Matrix::new(1, cols, out)
}

fn mean_var(values: impl Iterator<Item = f32>) -> (f64, f64) {
    // Welford: numerically stable in one pass.
    let (mut n, mut mean, mut m2) = (0f64, 0f64, 0f64);
    for x in values {
        n += 1.0;
        let x = f64::from(x);
        let d = x - mean;
        mean += d / n;
        m2 += d * (x - mean);
    }
    (mean, if n > 0.0 { m2 / n } else { 0.0 })
}

fn statistic(s: Statistic, col: &[f64]) -> f64 {
    let n = col.len() as f64;
    let mean = col.iter().sum::<f64>() / n;
    let var = col.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
    let sd = var.sqrt();
    let min = col.iter().copied().fold(f64::INFINITY, f64::min);
    let max = col.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let rms = (col.iter().map(|x| x * x).sum::<f64>() / n).sqrt();
    let moment = |k: i32| col.iter().map(|x| (x - mean).powi(k)).sum::<f64>() / n;
    match s {
        Statistic::Mean => mean,
        Statistic::Std => sd,
        Statistic::Min => min,
        Statistic::Max => max,
        Statistic::Rms => rms,
        Statistic::PeakToPeak => max - min,
        Statistic::Skewness => {
            if sd > 0.0 {
                moment(3) / sd.powi(3)
            } else {
                0.0
            }
        }
        Statistic::Kurtosis => {
            if sd > 0.0 {
                moment(4) / var.powi(2)
            } else {
                0.0
            }
        }
        Statistic::Crest => {
            if rms > 0.0 {
                min.abs().max(max.abs()) / rms
            } else {
                0.0
            }
        }
        Statistic::Slope => {
            let tm = (n - 1.0) / 2.0;
            let num: f64 = col
                .iter()
                .enumerate()
                .map(|(i, x)| (i as f64 - tm) * (x - mean))
                .sum();
            let den: f64 = (0..col.len()).map(|i| (i as f64 - tm).powi(2)).sum();
            if den > 0.0 {
                num / den
            } else {
                0.0
            }
        }
        Statistic::First => col[0],
        Statistic::Last => col[col.len() - 1],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(values: &[f32]) -> Matrix {
        Matrix::new(values.len(), 1, values.to_vec())
    }

    #[test]
    fn moving_average_and_decimate_compose() {
        let specs = [
            TransformSpec::MovingAverage { width: 2 },
            TransformSpec::Decimate { factor: 2 },
        ];
        let chain = Chain::new(&specs, (5, 1)).unwrap();
        let out = chain.apply(col(&[1.0, 3.0, 5.0, 7.0, 9.0]));
        assert_eq!(out.data, vec![2.0, 6.0]);
    }

    #[test]
    fn standardize_and_normalize() {
        let s = apply_plain(
            &TransformSpec::Standardize {
                mean: vec![1.0],
                std: vec![2.0],
            },
            col(&[1.0, 5.0]),
        );
        assert_eq!(s.data, vec![0.0, 2.0]);
        let n = apply_plain(&TransformSpec::Normalize, col(&[1.0, 3.0]));
        assert_eq!(n.data, vec![-1.0, 1.0]);
    }

    #[test]
    fn fft_bands_find_the_tone() {
        // A tone at bin 12 of 64 lands in band 1 of 4 (bins 9..=16), and nowhere else.
        let n = 64;
        let tone: Vec<f32> = (0..n)
            .map(|i| (2.0 * std::f32::consts::PI * 12.0 * i as f32 / n as f32).sin() + 5.0)
            .collect();
        let spec = TransformSpec::FftBands {
            bands: 4,
            hann: false,
            log: false,
        };
        let chain = Chain::new(&[spec], (n, 1)).unwrap();
        let out = chain.apply(col(&tone));
        assert_eq!((out.rows, out.cols), (1, 4));
        let best = out
            .data
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap()
            .0;
        assert_eq!(best, 1);
        assert!(
            out.data[0] < 1e-6 && out.data[2] < 1e-6 && out.data[3] < 1e-6,
            "{:?}",
            out.data
        );
        // Parseval: a unit sine over n samples carries n/4 in the positive half spectrum / n.
        assert!(
            (out.data[1] - n as f32 / 4.0).abs() < 1e-2,
            "{}",
            out.data[1]
        );
    }

    #[test]
    fn stats_per_column() {
        let m = Matrix::new(4, 2, vec![1.0, 0.0, 2.0, 0.0, 3.0, 0.0, 4.0, 4.0]);
        let out = apply_plain(
            &TransformSpec::Stats {
                stats: vec![Statistic::Mean, Statistic::Max, Statistic::Slope],
            },
            m,
        );
        assert_eq!(out.data, vec![2.5, 4.0, 1.0, 1.0, 4.0, 1.2]);
    }

    #[test]
    fn shapes_are_checked() {
        assert!(TransformSpec::MovingAverage { width: 7 }
            .output_shape((5, 1))
            .is_err());
        assert_eq!(
            TransformSpec::FftBands {
                bands: 8,
                hann: true,
                log: true
            }
            .output_shape((600, 6)),
            Ok((1, 48))
        );
        assert!(TransformSpec::Standardize {
            mean: vec![0.0],
            std: vec![0.0]
        }
        .output_shape((3, 1))
        .is_err());
    }
}
