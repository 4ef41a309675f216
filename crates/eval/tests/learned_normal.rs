//! The learned normal on real machines, trained on healthy data only:
//! - the hydraulic rig, trained on its first run of healthy cycles (cooler at 3 %, valve, pump
//!   and accumulator healthy), detects each degraded component in the later cycles of the same
//!   regime, and stays quiet on the later healthy cycles;
//! - the CWRU bearing, trained on the older part of its healthy recording, detects every seeded
//!   fault and stays quiet on the newer healthy frames.

use std::path::PathBuf;

use vigil_core::calibrate::{fit_normal, windows_from_samples, FitOptions};
use vigil_core::normal::LearnedNormalScorer;
use vigil_core::scorer::Baseline;
use vigil_core::transform::{Chain, Matrix};
use vigil_core::{Profile, Sample};
use vigil_datasets::{read_cwru, Hydraulic};

fn data(task: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/datasets")
        .join(task)
}

fn profile(name: &str) -> Profile {
    let dir = vigil_datasets::models::models_dir(None);
    let path = dir.join("profiles").join(format!("{name}.toml"));
    let text = std::fs::read_to_string(&path).unwrap();
    Profile::from_toml(&text, &path.display().to_string()).unwrap()
}

fn chain(p: &Profile) -> Chain {
    Chain::new(&p.transforms, (p.window.size as usize, p.channels.len())).unwrap()
}

fn train(p: &Profile, samples: &[Sample]) -> Baseline {
    let set = windows_from_samples(p, samples);
    let fitted = fit_normal(
        p,
        &chain(p),
        &set.ready,
        None,
        false,
        FitOptions {
            fitted_at_ms: 0,
            keep_learning: false,
        },
    )
    .unwrap();
    assert!(fitted.promoted);
    fitted.fitted.baseline
}

/// Whether each window of `samples` is judged anomalous, with the score's contributions checked.
fn judge(p: &Profile, baseline: &Baseline, samples: &[Sample]) -> Vec<bool> {
    let chain = chain(p);
    let scorer = LearnedNormalScorer::default();
    let baseline = Some(baseline.clone());
    windows_from_samples(p, samples)
        .ready
        .into_iter()
        .map(|(_, m): (_, Matrix)| {
            let s = scorer.score_sync(&chain.apply(m), &baseline);
            if s.label == "anomaly" {
                let total: f64 = s.contributions.iter().map(|c| c.share).sum();
                assert!((total - 1.0).abs() < 1e-6, "{:?}", s.contributions);
            }
            s.label == "anomaly"
        })
        .collect()
}

fn rate(v: &[bool]) -> f64 {
    v.iter().filter(|&&a| a).count() as f64 / v.len().max(1) as f64
}

#[test]
fn hydraulic_rig_trained_on_healthy_cycles_detects_each_degraded_component() {
    let p = profile("hydraulic-normal");
    let names: Vec<&str> = p.channels.iter().map(String::as_str).collect();
    let rig = Hydraulic::load(&data("hydraulic"), &names).unwrap();
    let healthy = |c: &[f32; 5]| c[1] == 100.0 && c[2] == 0.0 && c[3] == 130.0;
    // The regime: the cycles with the cooler at its first condition; its first run of healthy
    // cycles is the machine's normal.
    let cooler = rig.conditions[0][0];
    let regime: Vec<usize> = (0..rig.cycles())
        .take_while(|&i| rig.conditions[i][0] == cooler)
        .collect();
    let first_run = regime
        .iter()
        .take_while(|&&i| healthy(&rig.conditions[i]))
        .count();
    assert!(first_run >= 100, "{first_run} healthy cycles to learn from");
    let samples = |cycles: &[usize]| -> Vec<Sample> {
        cycles
            .iter()
            .flat_map(|&c| rig.cycle_samples(c, 0))
            .collect()
    };
    let baseline = train(&p, &samples(&regime[..first_run]));

    let later = &regime[first_run..];
    let group = |keep: &dyn Fn(&[f32; 5]) -> bool| -> Vec<usize> {
        later
            .iter()
            .copied()
            .filter(|&i| keep(&rig.conditions[i]))
            .collect()
    };
    let healthy_later = judge(&p, &baseline, &samples(&group(&|c| healthy(c))));
    let valve = judge(&p, &baseline, &samples(&group(&|c| c[1] != 100.0)));
    let pump = judge(&p, &baseline, &samples(&group(&|c| c[2] != 0.0)));
    let accumulator = judge(&p, &baseline, &samples(&group(&|c| c[3] != 130.0)));
    let report = format!(
        "learned normal, hydraulic: false alarms {:.3} on {} later healthy cycles; detected: \
         valve {:.3} of {}, pump {:.3} of {}, accumulator {:.3} of {}",
        rate(&healthy_later),
        healthy_later.len(),
        rate(&valve),
        valve.len(),
        rate(&pump),
        pump.len(),
        rate(&accumulator),
        accumulator.len()
    );
    println!("{report}");
    assert!(healthy_later.len() >= 5, "{report}");
    assert!(rate(&healthy_later) <= 0.1, "{report}");
    assert!(rate(&valve) >= 0.9, "{report}");
    assert!(rate(&pump) >= 0.95, "{report}");
    assert!(rate(&accumulator) >= 0.95, "{report}");
}

fn frames(values: &[f32], seq0: u64) -> Vec<Sample> {
    values
        .iter()
        .enumerate()
        .map(|(i, &v)| Sample {
            seq: seq0 + i as u64,
            ts: (seq0 + i as u64) / 12,
            values: vec![v],
        })
        .collect()
}

#[test]
fn cwru_bearing_trained_on_healthy_frames_detects_every_fault() {
    let p = profile("cwru-normal");
    let files = read_cwru(&data("cwru")).unwrap();
    let normal = files.iter().find(|f| f.normal).unwrap();
    let size = p.window.size as usize;
    let usable = normal.values.len() / size * size;
    // Older 70 % to learn (its newest quarter held out for the limits), newer 30 % to test.
    let cut = usable * 7 / 10 / size * size;
    let baseline = train(&p, &frames(&normal.values[..cut], 0));
    let quiet = judge(&p, &baseline, &frames(&normal.values[cut..usable], 0));
    let mut report = format!(
        "learned normal, cwru: false alarms {:.3} on {} newer healthy frames",
        rate(&quiet),
        quiet.len()
    );
    let mut worst = 1.0f64;
    for f in files.iter().filter(|f| !f.normal) {
        let detected = judge(&p, &baseline, &frames(&f.values, 0));
        worst = worst.min(rate(&detected));
        report += &format!("; {} {:.3}", f.name, rate(&detected));
    }
    println!("{report}");
    assert!(quiet.len() >= 40, "{report}");
    assert!(rate(&quiet) <= 0.05, "{report}");
    assert!(worst >= 0.95, "{report}");
}
