//! Error measures of return forecasts: MAE, RMSE, R² (as scikit-learn's `r2_score`) and
//! directional accuracy.

use forexgpt_protocol::RegressionMetrics;

/// Metrics of `predicted` against `actual` (same length, non-empty).
pub fn regression_metrics(actual: &[f64], predicted: &[f64]) -> Option<RegressionMetrics> {
    let n = actual.len();
    if n == 0 || predicted.len() != n {
        return None;
    }
    let nf = n as f64;
    let mae = actual
        .iter()
        .zip(predicted)
        .map(|(a, p)| (a - p).abs())
        .sum::<f64>()
        / nf;
    let ss_res: f64 = actual
        .iter()
        .zip(predicted)
        .map(|(a, p)| (a - p).powi(2))
        .sum();
    let mean = actual.iter().sum::<f64>() / nf;
    let ss_tot: f64 = actual.iter().map(|a| (a - mean).powi(2)).sum();
    let r2 = if ss_tot > 0.0 {
        1.0 - ss_res / ss_tot
    } else if ss_res == 0.0 {
        1.0
    } else {
        0.0
    };
    let (hits, counted) = actual
        .iter()
        .zip(predicted)
        .filter(|(a, _)| **a != 0.0)
        .fold((0usize, 0usize), |(h, c), (a, p)| {
            (
                h + usize::from(a.signum() == p.signum() && *p != 0.0),
                c + 1,
            )
        });
    let directional_accuracy = if counted == 0 {
        f64::NAN
    } else {
        hits as f64 / counted as f64
    };
    Some(RegressionMetrics {
        mae,
        rmse: (ss_res / nf).sqrt(),
        r2,
        directional_accuracy,
        n,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_checked_values() {
        let actual = [1.0, -2.0, 3.0, 0.0];
        let predicted = [0.5, -1.0, -3.0, 1.0];
        let m = regression_metrics(&actual, &predicted).unwrap();
        assert!((m.mae - (0.5 + 1.0 + 6.0 + 1.0) / 4.0).abs() < 1e-12);
        assert!((m.rmse - ((0.25 + 1.0 + 36.0 + 1.0) / 4.0f64).sqrt()).abs() < 1e-12);
        // mean 0.5; ss_tot = 0.25 + 6.25 + 6.25 + 0.25 = 13; ss_res = 38.25
        assert!((m.r2 - (1.0 - 38.25 / 13.0)).abs() < 1e-12);
        // the zero actual is left out: 2 of 3 signs match
        assert!((m.directional_accuracy - 2.0 / 3.0).abs() < 1e-12);
        assert!(regression_metrics(&[], &[]).is_none());
        assert!(regression_metrics(&[1.0], &[1.0, 2.0]).is_none());
    }
}
