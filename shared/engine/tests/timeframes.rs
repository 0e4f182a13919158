//! Every timeframe the app offers trains: the sample's resamples (1h as stored, 4h and 1d
//! built from it), and a series whose training rows leave a feature constant, which is left
//! out with a note in the model's record, never an error.
#![allow(clippy::unwrap_used)]

mod common;

use forexgpt_engine::{CancelToken, NoProgress};
use forexgpt_protocol::{
    BacktestRequest, CsvFormat, EncoderSpec, ForecastRequest, ImportRequest, ModelConfig,
    RegressorSpec, TargetSpec, Timeframe,
};

use common::{selection, train_request, workbench};

/// One model of each kind whose fit checks its inputs hardest: a linear model on the raw
/// features (constant columns are refused there), PCA, and a small forest.
fn grid() -> Vec<ModelConfig> {
    vec![
        ModelConfig {
            encoder: EncoderSpec::None,
            regressor: RegressorSpec::Ridge { alpha: 1.0 },
        },
        ModelConfig {
            encoder: EncoderSpec::Pca {
                n_components: 4,
                whiten: false,
            },
            regressor: RegressorSpec::Lasso {
                alpha: 1e-5,
                max_iter: 1000,
                tol: 1e-4,
            },
        },
        ModelConfig {
            encoder: EncoderSpec::None,
            regressor: RegressorSpec::RandomForest(forexgpt_protocol::ForestSpec {
                n_estimators: 3,
                max_depth: Some(4),
                ..Default::default()
            }),
        },
    ]
}

/// Trains `grid()` on `timeframe` of EURUSD, then forecasts and backtests with the models.
fn train_forecast_backtest(
    wb: &forexgpt_engine::Workbench,
    timeframe: Timeframe,
    horizons: Vec<u32>,
) -> forexgpt_protocol::TrainReport {
    let mut request = train_request(grid());
    request.timeframe = timeframe;
    request.targets = TargetSpec { horizons };
    let report = wb
        .train(&request, &NoProgress, &CancelToken::new())
        .unwrap_or_else(|e| panic!("training on {timeframe}: {e}"));
    let ids: Vec<String> = report.models.iter().map(|m| m.info.id.clone()).collect();
    let mut chosen = selection(ids);
    chosen.timeframe = Some(timeframe);
    let forecast = wb
        .forecast(&ForecastRequest {
            selection: chosen.clone(),
            at_ts: None,
        })
        .unwrap_or_else(|e| panic!("forecast on {timeframe}: {e}"));
    assert!(forecast.horizons.iter().all(|h| h.price.is_finite()));
    let backtest = wb
        .backtest(
            &BacktestRequest {
                selection: chosen,
                from_ts: None,
                to_ts: None,
            },
            &NoProgress,
            &CancelToken::new(),
        )
        .unwrap_or_else(|e| panic!("backtest on {timeframe}: {e}"));
    assert!(backtest.horizons.iter().all(|h| h.n > 0), "{backtest:?}");
    report
}

#[test]
fn every_resample_of_the_sample_trains_forecasts_and_backtests() {
    let dir = tempfile::tempdir().unwrap();
    let wb = workbench(dir.path());
    // The sample is one year of hourly bars; its ~310 daily bars still hold the default
    // horizons (up to 24 bars ahead) in every part of the split.
    for timeframe in [Timeframe::H1, Timeframe::H4, Timeframe::D1] {
        let report = train_forecast_backtest(&wb, timeframe, TargetSpec::default().horizons);
        let intraday = timeframe != Timeframe::D1;
        for m in &report.models {
            let info = &m.info;
            // Daily bars all open at one hour: no hour columns are built for them at all.
            assert_eq!(info.features.hour_of_day, intraday, "{timeframe}");
            assert!(info.dropped_columns.is_empty(), "{timeframe}: {info:?}");
        }
        let expected = if intraday { 88 } else { 86 };
        assert_eq!(report.n_features, expected, "{timeframe}");
    }
}

#[test]
fn a_feature_constant_on_the_training_rows_is_left_out_with_a_note() {
    // Daily bars that all fall on a Monday: the weekday columns never change.
    let dir = tempfile::tempdir().unwrap();
    let mut wb = workbench(dir.path());
    let mut csv = String::from("time,open,high,low,close,volume\n");
    let monday = 1_483_920_000; // 2017-01-09 00:00 UTC
    let mut price = 1.05_f64;
    for week in 0..320_i64 {
        // A deterministic wiggle: enough variation for every other feature.
        let step = ((week * 7919 % 101) as f64 - 50.0) * 1e-4;
        let open = price;
        price += step;
        let (high, low) = (open.max(price) + 0.002, open.min(price) - 0.002);
        let day = forexgpt_core::timestamp::format_ts(monday + week * 7 * 86_400);
        csv.push_str(&format!(
            "{},{open:.5},{high:.5},{low:.5},{price:.5},100\n",
            day
        ));
    }
    let path = dir.path().join("mondays.csv");
    std::fs::write(&path, csv).unwrap();
    wb.import_csv(
        &ImportRequest {
            path: path.display().to_string(),
            symbol: "MONDAY".into(),
            timeframe: Timeframe::D1,
            format: CsvFormat::Auto,
            replace: false,
        },
        &NoProgress,
        &CancelToken::new(),
    )
    .unwrap();

    let mut request = train_request(grid());
    request.symbol = "MONDAY".into();
    request.timeframe = Timeframe::D1;
    request.targets = TargetSpec {
        horizons: vec![1, 4],
    };
    let report = wb
        .train(&request, &NoProgress, &CancelToken::new())
        .unwrap();
    for m in &report.models {
        assert_eq!(
            m.info.dropped_columns,
            ["weekday_sin", "weekday_cos"],
            "{}",
            m.info.id
        );
        // The model reads every built column and ignores the dropped ones.
        assert_eq!(m.info.n_features, 86);
    }
    // The note survives the file, and the loaded model still predicts.
    let id = report.models[0].info.id.clone();
    let loaded = wb.load_model(&id).unwrap();
    assert_eq!(loaded.info.dropped_columns, ["weekday_sin", "weekday_cos"]);
    let mut chosen = selection(vec![id]);
    chosen.symbol = Some("MONDAY".into());
    chosen.timeframe = Some(Timeframe::D1);
    let forecast = wb
        .forecast(&ForecastRequest {
            selection: chosen,
            at_ts: None,
        })
        .unwrap();
    assert!(forecast.horizons.iter().all(|h| h.price.is_finite()));
}
